//! Conformance tests of `carerecord.consent.v1.ConsentService`.
//!
//! Test ids: `CON-<AREA>-<NNN>`; the decision table is `CON-DT-<NN>`. Every test works on freshly
//! invented patient ids, so directives and opt-outs it records affect no one else.

mod decision_table;
mod decisions;
mod directives;
mod lifecycle;
mod opt_out;
mod support;
mod validation;

use crate::harness::Case;

pub(crate) use support::{create, directive};

/// The catalogue: every test of the module, in run order.
pub(crate) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Consent directives: create, idempotency, get, list and update.
    cases.extend([
        Case::new(
            "CON-DIR-001",
            "CreateConsentDirective returns version 1 with a lower-case directive_id, an etag, times, and recorded_by/updated_by from the requester",
            directives::create_basics,
        ),
        Case::new(
            "CON-DIR-002",
            "A create retried with the same request_id and body returns the first directive; a different body -> FAILED_PRECONDITION REQUEST_ID_REUSED",
            directives::create_idempotent,
        ),
        Case::new(
            "CON-DIR-003",
            "GetConsentDirective returns the latest or a given version; unknown id or version -> NOT_FOUND with ResourceInfo; bad id or negative version -> INVALID_ARGUMENT",
            directives::get_versions,
        ),
        Case::new(
            "CON-DIR-004",
            "ListConsentDirectives: newest first, statuses filter, pages without gaps, empty for an unknown patient; bad token or UNSPECIFIED status -> INVALID_ARGUMENT",
            directives::list_directives,
        ),
        Case::new(
            "CON-DIR-005",
            "UpdateConsentDirective: DRAFT -> ACTIVE writes a new version; stale etag -> ABORTED; an update changing nothing writes nothing",
            directives::update_basics,
        ),
    ]);
    // Consent directive lifecycle: status transitions, update validation, revocation and versions.
    cases.extend([
        Case::new(
            "CON-DIR-006",
            "UpdateConsentDirective refuses ACTIVE -> INACTIVE (INVALID_ARGUMENT), edits of ENTERED_IN_ERROR and transitions out of it (FAILED_PRECONDITION STATUS)",
            lifecycle::update_transitions,
        ),
        Case::new(
            "CON-DIR-007",
            "UpdateConsentDirective update_mask missing, unknown, immutable or output-only -> INVALID_ARGUMENT `update_mask`; unknown directive -> NOT_FOUND",
            lifecycle::update_invalid,
        ),
        Case::new(
            "CON-DIR-008",
            "RevokeConsentDirective: ACTIVE -> INACTIVE with reason and revoke_time; not ACTIVE -> FAILED_PRECONDITION STATUS; stale etag -> ABORTED; bad reason -> INVALID_ARGUMENT",
            lifecycle::revoke,
        ),
        Case::new(
            "CON-DIR-009",
            "ListConsentDirectiveVersions lists complete snapshots newest first, in pages; unknown directive -> NOT_FOUND; token of another directive -> INVALID_ARGUMENT",
            lifecycle::versions,
        ),
    ]);
    // The national data opt-out: GetNationalDataOptOut and SetNationalDataOptOut.
    cases.extend([
        Case::new(
            "CON-NDOO-001",
            "GetNationalDataOptOut of a patient never recorded: not opted out, version 0, empty etag, no update_time (never NOT_FOUND)",
            opt_out::opt_out_default,
        ),
        Case::new(
            "CON-NDOO-002",
            "SetNationalDataOptOut writes a version per change; a write not changing opted_out writes nothing",
            opt_out::opt_out_set,
        ),
        Case::new(
            "CON-NDOO-003",
            "SetNationalDataOptOut with a stale etag (any etag for a never-recorded patient) -> ABORTED; empty etag writes unconditionally",
            opt_out::opt_out_etag,
        ),
        Case::new(
            "CON-NDOO-004",
            "Opt-out validation: malformed patient_id, missing requester -> INVALID_ARGUMENT",
            opt_out::opt_out_invalid,
        ),
    ]);
    // CreateConsentDirective validation: one test per rule of the contract.
    cases.extend(validation::cases());
    // The decision table: the contract's DECISION SEMANTICS, case by case, through Decide.
    cases.extend(decision_table::cases());
    // Decide and BatchDecide beyond the decision table: determinism, batches, validation.
    cases.extend([
        Case::new(
            "CON-DEC-001",
            "Decide is deterministic and echoes the patient: same outcome, obligations and reasons; policy_set_version and decided_at set",
            decisions::deterministic,
        ),
        Case::new(
            "CON-DEC-002",
            "Decide validation: bad patient_id, requester without role, unknown or lower-case purpose, unknown class, inconsistent legal basis, break-glass reason rules, long study id -> INVALID_ARGUMENT",
            decisions::decide_invalid,
        ),
        Case::new(
            "CON-BATCH-001",
            "BatchDecide returns one decision per entry, in order, duplicates decided independently, each as Decide would",
            decisions::batch,
        ),
        Case::new(
            "CON-BATCH-002",
            "BatchDecide validation: no ids, over 10000 ids, a malformed id, ETREAT -> INVALID_ARGUMENT",
            decisions::batch_invalid,
        ),
    ]);
    cases
}
