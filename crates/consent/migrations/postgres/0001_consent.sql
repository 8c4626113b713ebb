-- Consent directives: the latest version of each (what List and Decide read) plus every version.
-- Directives are stored as prost-encoded carerecord.consent.v1.ConsentDirective messages: `body` is the
-- complete latest version; `rules` holds only what decisions read (decision, scope_purposes, period,
-- provisions), so Decide decodes little. Times are microseconds since the Unix epoch.
CREATE TABLE consent_directives (
    directive_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    status BIGINT NOT NULL,
    version BIGINT NOT NULL,
    etag TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    body BYTEA NOT NULL,
    rules BYTEA NOT NULL
);
-- Decide: a patient's ACTIVE directives (status 2), covering what decisions read so that they are
-- index-only scans (BatchDecide reads thousands of patients scattered over the table).
CREATE INDEX consent_directives_active ON consent_directives (patient_id)
    INCLUDE (directive_id, version, rules) WHERE status = 2;
-- ListConsentDirectives: newest first, then directive_id.
CREATE INDEX consent_directives_by_patient ON consent_directives (patient_id, create_time DESC, directive_id);

CREATE TABLE consent_directive_versions (
    directive_id TEXT NOT NULL REFERENCES consent_directives (directive_id),
    version BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (directive_id, version)
);

-- CreateConsentDirective idempotency (AIP-155): the request id, a hash of the request, the directive.
CREATE TABLE consent_create_requests (
    request_id TEXT PRIMARY KEY,
    body_hash TEXT NOT NULL,
    directive_id TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

-- The national data opt-out: current status per patient, and every change.
CREATE TABLE national_data_opt_outs (
    patient_id TEXT PRIMARY KEY,
    opted_out BIGINT NOT NULL,
    version BIGINT NOT NULL,
    etag TEXT NOT NULL,
    update_time BIGINT NOT NULL,
    updated_by BYTEA NOT NULL
);

CREATE TABLE national_data_opt_out_versions (
    patient_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    opted_out BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    updated_by BYTEA NOT NULL,
    PRIMARY KEY (patient_id, version)
);
