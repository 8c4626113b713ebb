-- Which patients' decisions may have changed, in commit order: every write of a directive, an
-- opt-out or an opt-out check adds a row for each patient it touched, in the same transaction;
-- SQLite's single writer makes `seq` order commit order. Holders of cached decisions (data access)
-- list it with ListDecisionChanges.
CREATE TABLE consent_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id  TEXT NOT NULL,
    change_time INTEGER NOT NULL
);
