-- The privacy officer's review queue holds more than break-glass reads: every find or read of a
-- restricted patient's record too. `kind` says why an event needs review (ReviewEventKind: 1 break
-- glass, 2 restricted patient), `action` the call's audit action, `restricted_patient` whether the
-- patient was restricted at the time. Events recorded before are break-glass reads.
ALTER TABLE break_glass_events ADD COLUMN kind BIGINT NOT NULL DEFAULT 1;
ALTER TABLE break_glass_events ADD COLUMN action BIGINT NOT NULL DEFAULT 3;
ALTER TABLE break_glass_events ADD COLUMN restricted_patient BIGINT NOT NULL DEFAULT 0;
CREATE INDEX break_glass_events_kind ON break_glass_events (kind, audit_index);
