-- The append-only audit log: one row per leaf of the Merkle tree, never updated or deleted.
CREATE TABLE audit_entries (
    idx          BIGINT PRIMARY KEY,
    entry_id     TEXT NOT NULL UNIQUE,
    leaf_data    BLOB NOT NULL,
    -- SHA-256(0x00 || leaf_data), stored at append time; verification recomputes and compares it.
    leaf_hash    BLOB NOT NULL,
    time_micros  BIGINT NOT NULL,
    action       BIGINT NOT NULL,
    patient_id   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_entries_patient ON audit_entries (patient_id, idx);

-- Signed tree heads handed out, so a later rewrite of the leaves they cover is detected.
CREATE TABLE tree_heads (
    tree_size         BIGINT PRIMARY KEY,
    root_hash         BLOB NOT NULL,
    timestamp_micros  BIGINT NOT NULL,
    key_id            TEXT NOT NULL,
    signature         BLOB NOT NULL
);

-- Every key that has signed tree heads.
CREATE TABLE audit_keys (
    key_id            TEXT PRIMARY KEY,
    public_key        BLOB NOT NULL,
    valid_from_micros BIGINT NOT NULL,
    valid_until_micros BIGINT
);

-- Break-glass reads awaiting or having had a privacy officer's review.
CREATE TABLE break_glass_events (
    event_id            TEXT PRIMARY KEY,
    audit_index         BIGINT NOT NULL UNIQUE,
    time_micros         BIGINT NOT NULL,
    user_id             TEXT NOT NULL,
    organisation_ods_code TEXT NOT NULL,
    role_code           TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    patient_id          TEXT NOT NULL,
    reason              TEXT NOT NULL,
    outcome             BIGINT NOT NULL,
    returned_count      BIGINT NOT NULL,
    withheld_count      BIGINT NOT NULL,
    version             BIGINT NOT NULL,
    etag                TEXT NOT NULL,
    review_outcome      BIGINT NOT NULL DEFAULT 0,
    review_notes        TEXT NOT NULL DEFAULT '',
    reviewer_user_id    TEXT NOT NULL DEFAULT '',
    reviewer_organisation_ods_code TEXT NOT NULL DEFAULT '',
    reviewer_role_code  TEXT NOT NULL DEFAULT '',
    reviewer_display_name TEXT NOT NULL DEFAULT '',
    review_time_micros  BIGINT NOT NULL DEFAULT 0,
    review_entry_id     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX break_glass_events_patient ON break_glass_events (patient_id, audit_index);
