//! Conformance tests of `carerecord.consent.v1.ConsentService`.
//!
//! Test ids: `CON-<AREA>-<NNN>`; the decision table is `CON-DT-<NN>`. Every test works on freshly
//! invented patient ids, so directives and opt-outs it records affect no one else.

mod changes;
mod decision_table;
mod decisions;
mod directives;
mod lifecycle;
mod opt_out;
mod opt_out_checks;
mod requests;
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
        Case::new(
            "CON-DIR-010",
            "policy_basis accepts an https URL with a host and a URN, schemes in any letter case, stored as given",
            directives::policy_basis_accepted,
        ),
    ]);
    // The national data opt-out: GetNationalDataOptOut and SetNationalDataOptOut.
    cases.extend([
        Case::new(
            "CON-NDOO-001",
            "GetNationalDataOptOut of a patient never recorded: not opted out, version 0, empty etag, no update_time, never checked (no check_time, check_source or check_expire_time); never NOT_FOUND",
            opt_out::opt_out_default,
        ),
        Case::new(
            "CON-NDOO-002",
            "SetNationalDataOptOut writes a version per change, a manual check (check_time its update_time, check_source manual, check_expire_time after it); a write not changing opted_out writes nothing",
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
        Case::new(
            "CON-NDOO-005",
            "RecordNationalDataOptOutCheck records an answer: counts distinct patients, opted out those not returned, check_time, source and updated_by as sent",
            opt_out_checks::record_answer,
        ),
        Case::new(
            "CON-NDOO-006",
            "The same or an older answer writes nothing (patients_recorded 0); a newer one writes a version",
            opt_out_checks::only_newer_answers_write,
        ),
        Case::new(
            "CON-NDOO-007",
            "RecordNationalDataOptOutCheck validation, all or nothing: ids, returned ids not checked, check_time missing, ahead or too old, source, requester -> INVALID_ARGUMENT naming the field",
            opt_out_checks::record_invalid,
        ),
        Case::new(
            "CON-NDOO-008",
            "A check stops counting at check_expire_time: the opt-out then applies as status unknown (reason_code opt-out-status-unknown)",
            opt_out_checks::check_expires,
        ),
    ]);
    // ListDecisionChanges and Decision.valid_until (optional: skipped if UNIMPLEMENTED).
    cases.extend([
        Case::new(
            "CON-CHANGES-001",
            "ListDecisionChanges from an empty cursor answers the head and the policy set; from it, the patient of every directive write, opt-out and opt-out check in commit order; nothing twice",
            changes::list_changes,
        ),
        Case::new(
            "CON-CHANGES-002",
            "ListDecisionChanges honours page_size (a full page says more); a malformed or foreign cursor, or a negative page_size -> INVALID_ARGUMENT",
            changes::list_changes_paged_and_invalid,
        ),
        Case::new(
            "CON-CHANGES-003",
            "Decision.valid_until: unset with nothing recorded; at a directive's period end; after decided_at for a recent opt-out check",
            changes::valid_until,
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
            "CON-DEC-003",
            "A requester without an organisation: the patient themselves (PATRQT, user_id only) accepted by Decide and BatchDecide; otherwise INVALID_ARGUMENT naming each empty field",
            decisions::requester_without_organisation,
        ),
        Case::new(
            "CON-DEC-004",
            "SECTION_251_SUPPORT consistency: HRESCH needs a study_id; TREAT and HMARKT refused on legal_basis; HOPERAT and HPAYMT accepted",
            decisions::section_251_consistency,
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
    // What every request shares: no NUL in text, small errors.
    cases.extend([
        Case::new(
            "CON-TEXT-001",
            "NUL in any text field (create, revoke, update mask, decide, batch, set, record) -> INVALID_ARGUMENT naming it, description citing U+0000, nothing written",
            requests::nul_refused_everywhere,
        ),
        Case::new(
            "CON-ERR-001",
            "Errors stay small: 1000 malformed ids of 10 KiB -> at most 20 violations in 4 KiB, the message saying how many in all, no value quoted beyond 32 characters",
            requests::errors_stay_small,
        ),
    ]);
    cases
}
