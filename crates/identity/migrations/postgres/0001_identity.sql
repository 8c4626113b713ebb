-- The master patient index. Patients are never deleted; every write adds a version.

-- Current state of each patient: `data` is the encoded carerecord.identity.v1.Patient,
-- `features` its normalised comparable form (matching reads only this).
CREATE TABLE patients (
    patient_id  TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    state       BIGINT NOT NULL,
    merged_into TEXT,
    data        BYTEA NOT NULL,
    features    BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

-- Every version of every patient, and the change feed: `seq` is assigned under a transaction
-- lock right before commit, so feed order is commit order.
CREATE TABLE patient_versions (
    seq                BIGSERIAL PRIMARY KEY,
    patient_id         TEXT NOT NULL,
    version            BIGINT NOT NULL,
    change_type        BIGINT NOT NULL,
    data               BYTEA NOT NULL,
    changed_fields     TEXT NOT NULL,
    requester          BYTEA NOT NULL,
    reason             TEXT NOT NULL,
    related_patient_id TEXT NOT NULL,
    change_time        BIGINT NOT NULL,
    UNIQUE (patient_id, version)
);

-- Identifiers (the NHS number under its system too): one holder each, resolved in one lookup.
-- The unique index leads with `value` so a batch can look many values up at once.
CREATE TABLE identifiers (
    system     TEXT NOT NULL,
    value      TEXT NOT NULL,
    patient_id TEXT NOT NULL
);
CREATE UNIQUE INDEX identifiers_value_system ON identifiers (value, system);
CREATE INDEX identifiers_patient ON identifiers (patient_id);

-- request_id of creates and merges (AIP-155), kept for ever.
CREATE TABLE request_ids (
    request_id   TEXT PRIMARY KEY,
    body_hash    TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    version      BIGINT NOT NULL,
    related_id   TEXT NOT NULL,
    related_version BIGINT NOT NULL,
    create_time  BIGINT NOT NULL
);

-- Blocking keys for matching: candidates are the patients sharing a key with the probe.
CREATE TABLE blocking_keys (
    key        TEXT COLLATE "C" NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
);

-- Names for search (PDS-style trace), normalised, with birth date (YYYYMMDD, 0 if unknown).
CREATE TABLE patient_names (
    patient_id  TEXT NOT NULL,
    family      TEXT COLLATE "C" NOT NULL,
    given       TEXT COLLATE "C" NOT NULL,
    family_code TEXT COLLATE "C" NOT NULL,
    birth_date  BIGINT NOT NULL
);
CREATE INDEX patient_names_family ON patient_names (family, birth_date);
CREATE INDEX patient_names_code ON patient_names (family_code, birth_date);
CREATE INDEX patient_names_birth ON patient_names (birth_date);
CREATE INDEX patient_names_patient ON patient_names (patient_id);

-- Versions of the Fellegi-Sunter parameters (encoded MatchParameters).
CREATE TABLE match_parameters (
    version     BIGINT PRIMARY KEY,
    is_current  BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    create_time BIGINT NOT NULL
);
