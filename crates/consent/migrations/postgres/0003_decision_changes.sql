-- Which patients' decisions may have changed, in commit order: every write of a directive, an
-- opt-out or an opt-out check adds a row for each patient it touched, in the same transaction and
-- under an exclusive lock taken right before commit, so `seq` order is commit order. Holders of
-- cached decisions (data access) list it with ListDecisionChanges.
CREATE TABLE consent_changes (
    seq         BIGSERIAL PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    change_time BIGINT NOT NULL
);
