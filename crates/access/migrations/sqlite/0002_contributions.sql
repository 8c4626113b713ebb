-- Patients an entry concerns beyond its single patient_id (imports and follow deliveries name
-- many), with how many of the entry's records are theirs: a patient's disclosure log finds them.
CREATE TABLE audit_entry_patients (
    patient_id    TEXT NOT NULL,
    idx           BIGINT NOT NULL,
    record_count  BIGINT NOT NULL,
    PRIMARY KEY (patient_id, idx)
);

-- Updates and retractions made through the front door, by request_id, so a retry returns the
-- first result and a reuse with other content is refused (creates are deduplicated by record
-- hosting, which shares their request ids). version is 0 while the write is in flight.
CREATE TABLE contributions (
    request_id     TEXT PRIMARY KEY,
    fingerprint    BLOB NOT NULL,
    record_id      TEXT NOT NULL,
    base_version   BIGINT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 0,
    created_micros BIGINT NOT NULL
);
