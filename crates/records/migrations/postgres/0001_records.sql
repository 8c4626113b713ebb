-- The feed head: the change sequence of the last committed write. Every write transaction
-- increments it first, which takes this row's lock until commit; sequences are therefore
-- assigned in commit order (a plain SEQUENCE is not: a later nextval can commit first).
CREATE TABLE feed_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO feed_head (id, seq) VALUES (1, 0);

-- Every version of every record, never deleted. It is at once the version history, the change
-- feed (ordered by seq) and, through superseded_seq, the current state: the latest version of a
-- record is its row with superseded_seq NULL, and its state as of a snapshot S is the row with
-- seq <= S < coalesce(superseded_seq, infinity). A create writes one row here.
CREATE TABLE record_versions (
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    superseded_seq BIGINT,
    creation_seq BIGINT NOT NULL,
    change_type BIGINT NOT NULL,
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    status BIGINT NOT NULL,
    retraction_reason TEXT NOT NULL,
    content_type TEXT NOT NULL,
    payload BYTEA NOT NULL,
    content_hash TEXT NOT NULL,
    payload_size BIGINT NOT NULL,
    -- Sorted labels as `|a|b|` (empty when none), so a label matches with LIKE '%|a|%'.
    data_classes TEXT NOT NULL,
    authoring_org TEXT NOT NULL,
    author TEXT NOT NULL,
    source_system TEXT NOT NULL,
    effective_time BIGINT,
    recorded_time BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    requester_user_id TEXT NOT NULL,
    requester_org TEXT NOT NULL,
    requester_role TEXT NOT NULL,
    requester_display TEXT NOT NULL,
    PRIMARY KEY (record_id, version)
);
CREATE UNIQUE INDEX record_versions_seq ON record_versions (seq);
CREATE INDEX record_versions_patient ON record_versions (patient_id, creation_seq);
CREATE INDEX record_versions_creation ON record_versions (creation_seq);

-- Request ids of creates and import items, kept for ever (AIP-155).
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    fingerprint BYTEA NOT NULL,
    record_id TEXT NOT NULL
);
