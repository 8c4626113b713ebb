//! Conformance tests of `carerecord.access.v1.DataAccessService`.
//!
//! Test ids: `ACC-<AREA>-<NNN>`. Data access holds no patient data of its own, so tests that read
//! a patient's record first register a test patient and records through the deployment's identity
//! and record hosting contracts (`Options::identity_endpoint`, `records_endpoint`; consent's for
//! the tests of refusals and withheld data classes) and are skipped without them. Tests that need
//! a registered project (`Options::project_id`), a contributor's token
//! (`Options::contributor_token`) or another organisation's (`Options::other_org_token`) are
//! skipped without one.

mod audit;
mod auth;
mod change;
mod contribute;
mod contribution_log;
mod extracts;
mod follow;
mod import;
mod lookups;
mod merkle;
mod reads;
mod record;
mod restricted;
mod self_service;
mod support;

use crate::harness::Case;

/// The catalogue: every test of the module, in run order.
pub(crate) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Authentication: missing, malformed, altered and unsigned tokens, and missing scopes.
    cases.extend([
        Case::new(
            "ACC-AUTH-001",
            "A call without authorization metadata -> UNAUTHENTICATED, ErrorInfo TOKEN_MISSING",
            auth::auth_missing,
        ),
        Case::new(
            "ACC-AUTH-002",
            "A bearer value that is not a JWT -> UNAUTHENTICATED, ErrorInfo TOKEN_INVALID",
            auth::auth_malformed,
        ),
        Case::new(
            "ACC-AUTH-003",
            "The given token with its signature altered -> UNAUTHENTICATED TOKEN_INVALID",
            auth::auth_tampered,
        ),
        Case::new(
            "ACC-AUTH-004",
            "The given token's claims re-sent with `alg: none` and no signature -> UNAUTHENTICATED TOKEN_INVALID",
            auth::auth_alg_none,
        ),
        Case::new(
            "ACC-AUTH-005",
            "A valid token without the needed scope -> PERMISSION_DENIED SCOPE_MISSING with metadata required_scope",
            auth::auth_scope_missing,
        ),
        Case::new(
            "ACC-FIND-001",
            "FindPatient of an unknown patient_id -> NOT_FOUND PATIENT_NOT_FOUND with ResourceInfo(Patient, id), audited (audit_entry_id, audit_index)",
            lookups::find_unknown_id,
        ),
        Case::new(
            "ACC-FIND-002",
            "FindPatient of an unknown NHS number -> NOT_FOUND PATIENT_NOT_FOUND with ResourceInfo(Patient), audited",
            lookups::find_unknown_nhs,
        ),
        Case::new(
            "ACC-FIND-003",
            "FindPatient validation: no reference, malformed id, bad NHS check digit, identifier without system, demographics without family, missing or unknown purpose -> INVALID_ARGUMENT INVALID_REQUEST naming the field",
            lookups::find_invalid,
        ),
        Case::new(
            "ACC-FIND-004",
            "FindPatient by patient_id, NHS number and identifier returns one summary without address or contact details, audited",
            lookups::find_seeded,
        ),
        Case::new(
            "ACC-READ-001",
            "ReadPatientRecord returns the patient's current records, effective time descending (none last) then record_id, payload byte for byte, counted and audited",
            reads::read_seeded,
        ),
        Case::new(
            "ACC-READ-002",
            "ReadPatientRecord pages without gaps or duplicates; a tampered page token or one reused with other filters -> INVALID_ARGUMENT INVALID_PAGE_TOKEN",
            reads::read_paging,
        ),
        Case::new(
            "ACC-READ-003",
            "ReadPatientRecord validation: ETREAT, unknown resource type, period end before start -> INVALID_ARGUMENT INVALID_REQUEST",
            reads::read_invalid,
        ),
        Case::new(
            "ACC-READ-004",
            "A consent DENY -> PERMISSION_DENIED CONSENT_DENIED with decision_outcome DENY, reason codes and audit metadata; nothing disclosed",
            reads::read_consent_denied,
        ),
        Case::new(
            "ACC-DISC-001",
            "ListDisclosures shows the patient's finds and reads newest first, refused ones too; the listing is audited but not in its own page",
            reads::disclosures,
        ),
        Case::new(
            "ACC-EXT-001",
            "ExtractPseudonymised and AggregateExtract validation: purpose other than HRESCH/HOPERAT, malformed project id, no cohort, repeated or unspecified dimension -> INVALID_ARGUMENT",
            extracts::extract_invalid,
        ),
        Case::new(
            "ACC-EXT-002",
            "An extract for an unregistered project -> NOT_FOUND PROJECT_NOT_FOUND with ResourceInfo(Project, id), before any row",
            extracts::extract_unknown_project,
        ),
        Case::new(
            "ACC-EXT-003",
            "ExtractPseudonymised streams de-identified rows then exactly one summary, last, whose counts add up; pseudonyms are 64 lower-case hex",
            extracts::extract_shape,
        ),
        Case::new(
            "ACC-AGG-001",
            "AggregateExtract streams protected counts (suppressed 1-7 as 0, others multiples of 5) in order, then one summary counting the rows",
            extracts::aggregate_shape,
        ),
    ]);
    // Contributions: CreateRecord, UpdateRecord, RetractRecord and what they leave in the logs.
    cases.extend([
        Case::new(
            "ACC-CONTRIB-001",
            "CreateRecord without `patient`, the payload naming the patient by NHS number alone: version 1 for the resolved patient, stored with `\"reference\": \"Patient/<id>\"` inserted first in subject and every other byte kept (the identifier too), audited",
            contribute::create_by_nhs,
        ),
        Case::new(
            "ACC-CONTRIB-002",
            "A contribution's provenance comes from the token, never the request: source organisation, agent and source system as the token says, read back so by another requester (ReadRecord, ReadPatientRecord, ListRecordVersions)",
            contribute::provenance_from_token,
        ),
        Case::new(
            "ACC-CONTRIB-003",
            "CreateRecord is idempotent by request_id: the same content returns the first record and writes nothing; other content -> FAILED_PRECONDITION REQUEST_ID_REUSED, audited",
            contribute::create_idempotent,
        ),
        Case::new(
            "ACC-CONTRIB-004",
            "CreateRecord validation: request_id missing or malformed, no content, a patient by demographics, resource type Patient, empty payload, purpose missing or not TREAT, no patient anywhere -> INVALID_ARGUMENT INVALID_REQUEST naming the field",
            contribute::create_invalid,
        ),
        Case::new(
            "ACC-CONTRIB-005",
            "A payload naming another patient than `patient` (or than an updated record's) -> INVALID_ARGUMENT naming `content.payload`, audited, nothing written",
            contribute::payload_names_another,
        ),
        Case::new(
            "ACC-CONTRIB-006",
            "A contribution of a type the token cannot create -> PERMISSION_DENIED SCOPE_MISSING with a required_scope that creates it, audited, nothing written",
            contribute::scope_missing,
        ),
        Case::new(
            "ACC-CONTRIB-007",
            "UpdateRecord needs the latest version: by etag or expected_version it writes the next version with a new etag; a stale etag or version (or a stale etag on RetractRecord) -> ABORTED ETAG_MISMATCH, audited, nothing written",
            change::update_guarded,
        ),
        Case::new(
            "ACC-CONTRIB-008",
            "UpdateRecord is idempotent by request_id: a retry returns the version the first call wrote though its etag is no longer the latest; other content -> FAILED_PRECONDITION REQUEST_ID_REUSED",
            change::update_idempotent,
        ),
        Case::new(
            "ACC-CONTRIB-009",
            "UpdateRecord and RetractRecord by another organisation than the contributor's -> PERMISSION_DENIED RECORD_NOT_OWNED, audited, the record unchanged",
            change::not_owned,
        ),
        Case::new(
            "ACC-CONTRIB-010",
            "RetractRecord writes a version ENTERED_IN_ERROR with the reason (a retry returns it); the record leaves the patient's current records, ReadRecord still returns it; a later change -> FAILED_PRECONDITION RECORD_STATUS",
            change::retract,
        ),
        Case::new(
            "ACC-CONTRIB-011",
            "UpdateRecord and RetractRecord validation: neither or both of etag and expected_version, negative expected_version, request_id or record_id bad, no content, demographics, purpose, reason missing or over 1000 characters -> INVALID_ARGUMENT naming the field",
            change::change_invalid,
        ),
        Case::new(
            "ACC-CONTRIB-012",
            "UpdateRecord and RetractRecord of an unknown record -> NOT_FOUND RECORD_NOT_FOUND with ResourceInfo(Record, id), audited",
            change::change_unknown,
        ),
        Case::new(
            "ACC-CONTRIB-013",
            "Contributions' audit entries: CREATE_RECORD, UPDATE_RECORD, RETRACT_RECORD with the request_id, the patient, the contributor's organisation and the version written in returned_records; a refused one REFUSED with its reason",
            contribution_log::contribution_entries,
        ),
        Case::new(
            "ACC-CONTRIB-014",
            "A patient who refuses all sharing: CreateRecord -> PERMISSION_DENIED CONSENT_DENIED, audited, and an import item REJECTED CONSENT_DENIED; nothing written",
            contribute::patient_dissent,
        ),
        Case::new(
            "ACC-DISC-002",
            "ListDisclosures shows the patient who added to their record and who was told: CREATE_RECORD, UPDATE_RECORD, RETRACT_RECORD and IMPORT_RECORDS entries with the contributor's organisation, and the FOLLOW_RECORD_CHANGES delivery",
            contribution_log::disclosures_of_contributions,
        ),
    ]);
    // Bulk contributions: ImportRecords.
    cases.extend([
        Case::new(
            "ACC-IMPORT-001",
            "ImportRecords answers every message (an empty one too) once, with a result per item in index order numbered on over the stream, each answer audited; items are stored as CreateRecord stores them",
            import::answers_in_order,
        ),
        Case::new(
            "ACC-IMPORT-002",
            "Item problems are results, never errors, and never reject a good item: PATIENT_NOT_FOUND, SCOPE_MISSING, REQUEST_ID_REUSED, INVALID_REQUEST with field_violations `request_id`, `patient.demographics`, `content.payload`",
            import::item_reasons,
        ),
        Case::new(
            "ACC-IMPORT-003",
            "A re-sent stream writes nothing twice: every item comes back DEDUPLICATED, naming the record written the first time",
            import::resent_deduplicated,
        ),
        Case::new(
            "ACC-IMPORT-004",
            "ImportRecords stream errors: no purpose in the first message, more than 1000 items in a message -> INVALID_ARGUMENT",
            import::stream_errors,
        ),
        Case::new(
            "ACC-IMPORT-005",
            "An import message's audit entry: IMPORT_RECORDS, the records written in returned_records, patients with their counts in ascending order, rejected_count, no request_id",
            import::import_entry,
        ),
    ]);
    // One record by id: ReadRecord and ListRecordVersions.
    cases.extend([
        Case::new(
            "ACC-READREC-001",
            "ReadRecord returns the latest version (version 0) or the one asked for, as record hosting holds it, status CURRENT, with the patient_id and a non-DENY decision, audited",
            record::read_versions,
        ),
        Case::new(
            "ACC-READREC-002",
            "ReadRecord and ListRecordVersions of an unknown record, or ReadRecord of a version beyond the latest -> NOT_FOUND RECORD_NOT_FOUND with ResourceInfo(Record, id), audited",
            record::read_not_found,
        ),
        Case::new(
            "ACC-READREC-003",
            "ReadRecord and ListRecordVersions validation: record_id missing or malformed, negative version, purpose missing, unknown or ETREAT, negative page size -> INVALID_ARGUMENT naming the field",
            record::read_invalid,
        ),
        Case::new(
            "ACC-READREC-004",
            "ListRecordVersions lists every version newest first, payload byte for byte, paging without gaps or duplicates; a tampered page token or one of another record -> INVALID_ARGUMENT INVALID_PAGE_TOKEN",
            record::list_versions,
        ),
        Case::new(
            "ACC-READREC-005",
            "A record of a data class the patient withholds: ReadRecord -> PERMISSION_DENIED CONSENT_DENIED revealing neither type nor labels, audited; ListRecordVersions leaves its versions out and counts them withheld",
            record::withheld_record,
        ),
        Case::new(
            "ACC-READREC-006",
            "ReadRecord and ListRecordVersions with a token that cannot read the record's type -> PERMISSION_DENIED SCOPE_MISSING, audited, without revealing the record's type in the message or any detail",
            record::scope_missing,
        ),
    ]);
    // Following changes: FollowRecordChanges.
    cases.extend([
        Case::new(
            "ACC-FOLLOW-001",
            "FollowRecordChanges from the head delivers a change written after the stream opened, and nothing before: record_id, version, type, patient_id, CHANGE_TYPE_CREATED and provenance; every message carries a cursor",
            follow::live_change,
        ),
        Case::new(
            "ACC-FOLLOW-002",
            "A stream resumed with a message's cursor delivers every change written since (created, updated, retracted) in commit order with no gap; an empty cursor replays the patient's history before caught_up",
            follow::resume,
        ),
        Case::new(
            "ACC-FOLLOW-003",
            "A tampered cursor, or one reused with other resource types or another purpose -> INVALID_ARGUMENT INVALID_PAGE_TOKEN",
            follow::cursor_refused,
        ),
        Case::new(
            "ACC-FOLLOW-004",
            "FollowRecordChanges validation: no patient or over 1000, a demographics reference, purpose missing or ETREAT, an unknown type, start_at_head with a cursor -> INVALID_ARGUMENT; an unknown patient -> NOT_FOUND PATIENT_NOT_FOUND, audited",
            follow::follow_invalid,
        ),
        Case::new(
            "ACC-FOLLOW-005",
            "A change to a record of a data class the patient withholds is never delivered, not even as withheld; the next change is",
            follow::withheld_not_delivered,
        ),
        Case::new(
            "ACC-FOLLOW-006",
            "A delivery's audit entry: FOLLOW_RECORD_CHANGES, DISCLOSED, the versions notified in returned_records, the patient with their count",
            follow::delivery_entry,
        ),
    ]);
    // Restricted patients (identity's confidentiality marker).
    cases.extend([
        Case::new(
            "ACC-RESTRICT-001",
            "FindPatient of a patient identity marks restricted answers restricted true (the summary never has an address, telecom or GP); an unrestricted patient's false",
            restricted::summary,
        ),
        Case::new(
            "ACC-RESTRICT-002",
            "FindPatient by demographics with the postcode finds the patient until identity restricts them, then -> NOT_FOUND PATIENT_NOT_FOUND; without a postcode they are found",
            restricted::postcode_search,
        ),
        Case::new(
            "ACC-RESTRICT-003",
            "Every find and read of a restricted patient's record is in the review queue: ListBreakGlassEvents kind RESTRICTED_PATIENT lists the calls' entries (action FIND_PATIENT, READ; restricted_patient); kind BREAK_GLASS leaves them out",
            restricted::reads_reviewed,
        ),
        Case::new(
            "ACC-RESTRICT-004",
            "A restricted patient's event is reviewed with ReviewBreakGlassEvent like a break-glass event (new version, kind kept); ListBreakGlassEvents with an unknown kind -> INVALID_ARGUMENT naming `kind`",
            restricted::review,
        ),
    ]);
    // A patient's consent through the front door (the kit's staff token, at the patient's request).
    cases.extend([
        Case::new(
            "ACC-CONSENT-001",
            "ListConsentDirectives and GetNationalDataOptOut for a new patient: no directives, status UNKNOWN with no check time, each audited (LIST_CONSENT_DIRECTIVES, GET_NATIONAL_DATA_OPT_OUT, DISCLOSED); an unknown patient -> NOT_FOUND PATIENT_NOT_FOUND",
            self_service::listing_and_opt_out,
        ),
        Case::new(
            "ACC-CONSENT-002",
            "CreateConsentDirective records an ACTIVE directive (audited with its request_id) that ListConsentDirectives lists; a retry returns it, the request_id with another directive -> FAILED_PRECONDITION REQUEST_ID_REUSED; RevokeConsentDirective with a stale etag -> ABORTED ETAG_MISMATCH, else INACTIVE with the reason (audited), a retry answers the same version, a second withdrawal -> FAILED_PRECONDITION CONSENT_DIRECTIVE_STATUS, an unknown directive -> NOT_FOUND CONSENT_DIRECTIVE_NOT_FOUND",
            self_service::create_and_revoke,
        ),
        Case::new(
            "ACC-CONSENT-003",
            "CreateConsentDirective with a request_id not a UUID, a demographics reference, no directive or no date_time, and RevokeConsentDirective with no reason, no etag or a directive_id not a UUID -> INVALID_ARGUMENT naming the field",
            self_service::validation,
        ),
    ]);
    // The tamper-evident audit log: signed tree heads, keys, proofs, VerifyAuditLog.
    cases.extend([
        Case::new(
            "ACC-LOG-001",
            "The latest signed tree head covers every entry appended before the call and its Ed25519 signature verifies with the key its key_id names",
            audit::tree_head,
        ),
        Case::new(
            "ACC-LOG-002",
            "A consistency proof between two heads verifies (RFC 9162 §2.1.4.2): the earlier log is a prefix of the later",
            audit::consistency,
        ),
        Case::new(
            "ACC-LOG-003",
            "An audited call's audit_index has an inclusion proof that verifies (RFC 9162 §2.1.3.2) against a signed head",
            audit::inclusion,
        ),
        Case::new(
            "ACC-LOG-004",
            "The audit entry of a refused lookup records it: entry_id, action FIND_PATIENT, outcome FAILED, status 5, reason PATIENT_NOT_FOUND; leaf decodes leaf_data",
            audit::leaf_contents,
        ),
        Case::new(
            "ACC-LOG-005",
            "A head for an earlier tree size is signed and consistent with the latest",
            audit::earlier_head,
        ),
        Case::new(
            "ACC-LOG-006",
            "Audit errors: tree size beyond the log -> OUT_OF_RANGE TREE_SIZE_OUT_OF_RANGE; negative sizes, leaf not below the size, first size 0, malformed key_id -> INVALID_ARGUMENT; unknown key -> NOT_FOUND KEY_NOT_FOUND",
            audit::audit_errors,
        ),
        Case::new(
            "ACC-LOG-007",
            "VerifyAuditLog reports ok with a genuine trusted head and not ok with an altered one",
            audit::verify_log,
        ),
    ]);
    cases
}
