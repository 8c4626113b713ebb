//! Conformance tests of `carerecord.access.v1.DataAccessService`.
//!
//! Test ids: `ACC-<AREA>-<NNN>`. Data access holds no patient data of its own, so tests that read
//! a patient's record first register a test patient and records through the deployment's identity
//! and record hosting contracts (`Options::identity_endpoint`, `records_endpoint`; consent's for
//! the refusal test) and are skipped without them. Tests that need a registered project
//! (`Options::project_id`) are skipped without one.

mod audit;
mod auth;
mod extracts;
mod lookups;
mod merkle;
mod reads;
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
