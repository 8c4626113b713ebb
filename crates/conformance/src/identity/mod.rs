//! Conformance tests of `carerecord.identity.v1.PatientIdentityService`.
//!
//! Test ids: `ID-<AREA>-<NNN>`. Tests register their own patients with invented names and NHS
//! numbers from the 999 range (reserved for testing, never issued to a person), so they collide
//! with no real patient and no other run.

mod changes;
mod matching;
mod merges;
mod registration;
mod restricted;
mod search;
mod support;
mod updates;
mod validation;
mod watch;

use crate::harness::Case;

pub(crate) use restricted::set as set_confidentiality;
pub(crate) use support::{bad_check_digit, create, new_patient, nhs_number};

/// The catalogue: every test of the module, in run order.
pub(crate) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // CreatePatient, BatchCreatePatients and GetPatient.
    cases.extend([
        Case::new(
            "ID-CREATE-001",
            "CreatePatient returns version 1, ACTIVE, a lower-case patient_id, an etag, and normalised NHS number, identifiers and postcode",
            registration::create_basics,
        ),
        Case::new(
            "ID-CREATE-002",
            "A create retried with the same request_id and body returns the first result; another body -> FAILED_PRECONDITION REQUEST_ID_REUSED with metadata patient_id",
            registration::create_idempotent,
        ),
        Case::new(
            "ID-CREATE-003",
            "An NHS number or identifier held by another patient -> ALREADY_EXISTS with ResourceInfo naming the holder",
            registration::create_conflicts,
        ),
        Case::new(
            "ID-BATCH-001",
            "BatchCreatePatients: one result per item in order, bad items fail alone, a duplicate within the batch names the earlier item's patient; retry safe",
            registration::batch_create,
        ),
        Case::new(
            "ID-BATCH-002",
            "BatchCreatePatients with no items, over 1000 items, no requester or a repeated request_id -> INVALID_ARGUMENT, nothing written",
            registration::batch_invalid,
        ),
        Case::new(
            "ID-GET-001",
            "GetPatient returns the current version; unknown id -> NOT_FOUND with ResourceInfo; malformed id -> INVALID_ARGUMENT",
            registration::get_patient,
        ),
    ]);
    // UpdatePatient and ListPatientVersions.
    cases.extend([
        Case::new(
            "ID-UPD-001",
            "UpdatePatient replaces masked fields in a new version; an update changing nothing writes nothing",
            updates::update_basics,
        ),
        Case::new(
            "ID-UPD-002",
            "UpdatePatient with a stale etag -> ABORTED ETAG_MISMATCH with metadata current_version",
            updates::update_stale,
        ),
        Case::new(
            "ID-UPD-003",
            "UpdatePatient update_mask missing, empty, unknown, output-only or a sub-path -> INVALID_ARGUMENT `update_mask`; unknown patient -> NOT_FOUND",
            updates::update_invalid,
        ),
        Case::new(
            "ID-UPD-004",
            "UpdatePatient to an NHS number held by another patient -> ALREADY_EXISTS naming the holder",
            updates::update_conflict,
        ),
        Case::new(
            "ID-VER-001",
            "ListPatientVersions lists every version oldest first with change type, changed fields, requester and reason, in pages",
            updates::versions,
        ),
        Case::new(
            "ID-VER-002",
            "ListPatientVersions: token of another patient or forged -> INVALID_ARGUMENT; unknown patient -> NOT_FOUND",
            updates::versions_invalid,
        ),
    ]);
    // ResolveIdentifier, MergePatients and UnmergePatient.
    cases.extend([
        Case::new(
            "ID-RES-001",
            "ResolveIdentifier finds the holder of an NHS number (spaces and dashes accepted) and of a local identifier (trimmed, case-sensitive)",
            merges::resolve_case,
        ),
        Case::new(
            "ID-RES-002",
            "ResolveIdentifier of an unknown identifier -> NOT_FOUND with ResourceInfo(carerecord.common.v1.Identifier, system|value); invalid -> INVALID_ARGUMENT",
            merges::resolve_errors,
        ),
        Case::new(
            "ID-MERGE-001",
            "MergePatients freezes the source as MERGED into the target, appends it to merged_from, and identifiers resolve through the merge",
            merges::merge_basics,
        ),
        Case::new(
            "ID-MERGE-002",
            "Merge chains resolve to the last survivor, listing the merged patients passed through",
            merges::merge_chain,
        ),
        Case::new(
            "ID-MERGE-003",
            "Merge errors: same patient, already merged (PATIENT_MERGED), unknown patient, stale etag, reused request_id; a retry returns the first result",
            merges::merge_errors,
        ),
        Case::new(
            "ID-MERGE-004",
            "UpdatePatient of a merged patient -> FAILED_PRECONDITION PATIENT_MERGED",
            merges::update_merged,
        ),
        Case::new(
            "ID-UNMERGE-001",
            "UnmergePatient restores the duplicate exactly and removes it from the survivor's merged_from",
            merges::unmerge,
        ),
        Case::new(
            "ID-UNMERGE-002",
            "UnmergePatient of an active patient -> FAILED_PRECONDITION PATIENT_NOT_MERGED; stale etag -> ABORTED; bad reason -> INVALID_ARGUMENT",
            merges::unmerge_errors,
        ),
    ]);
    // SetPatientConfidentiality: restricted patients.
    cases.extend([
        Case::new(
            "ID-RESTRICT-001",
            "New patients are UNRESTRICTED; a privacy officer (R0001) restricts one: a new version whose confidentiality_change records who, when (the update_time) and why; the same level again writes nothing",
            restricted::restrict,
        ),
        Case::new(
            "ID-RESTRICT-002",
            "The marker's history: ListPatientVersions lists each change (changed field `confidentiality`, UPDATED, requester, reason); UpdatePatient keeps the marker; lifting it is a change too",
            restricted::history,
        ),
        Case::new(
            "ID-RESTRICT-003",
            "SetPatientConfidentiality refusals: a role that may not -> PERMISSION_DENIED ROLE_NOT_PERMITTED, nothing written; patient_id, confidentiality, etag, reason, requester invalid -> INVALID_ARGUMENT; unknown -> NOT_FOUND; stale etag -> ABORTED; merged -> PATIENT_MERGED",
            restricted::refusals,
        ),
        Case::new(
            "ID-RESTRICT-004",
            "A restricted source merged into an unrestricted target -> FAILED_PRECONDITION PATIENT_RESTRICTED naming the target, nothing written; into a restricted target it merges",
            restricted::merges,
        ),
    ]);
    // WatchPatientChanges: the change feed.
    cases.extend([
        Case::new(
            "ID-WATCH-001",
            "WatchPatientChanges replays events after a cursor in commit order: creates, updates and merges (source first, then target)",
            watch::watch,
        ),
        Case::new(
            "ID-WATCH-002",
            "WatchPatientChanges with a malformed or foreign cursor -> INVALID_ARGUMENT",
            watch::watch_invalid,
        ),
    ]);
    // ListPatientChanges: the feed's patients after a cursor (optional: skipped if UNIMPLEMENTED).
    cases.extend([
        Case::new(
            "ID-CHANGES-001",
            "ListPatientChanges from an empty cursor answers the head; from it, every patient written since in commit order, with its identifiers (NHS number included) and a merge's other patient; nothing twice",
            changes::list_changes,
        ),
        Case::new(
            "ID-CHANGES-002",
            "ListPatientChanges honours page_size (a full page says more), and a WatchPatientChanges cursor resumes it where the feed's next event is",
            changes::list_changes_paged,
        ),
        Case::new(
            "ID-CHANGES-003",
            "ListPatientChanges with a malformed or foreign cursor, or a negative page_size -> INVALID_ARGUMENT",
            changes::list_changes_invalid,
        ),
    ]);
    // CreatePatient validation: one test per rule of the contract.
    cases.extend(validation::cases());
    // SearchPatients: exact and fuzzy search, ordering, limits and validation.
    cases.extend([
        Case::new(
            "ID-SEARCH-001",
            "Exact search by family name and birth date finds the patient with score 1.0; given name, gender and postcode narrow it",
            search::search_exact,
        ),
        Case::new(
            "ID-SEARCH-002",
            "Exact search: a final `*` after two characters matches by prefix; birth date ranges are inclusive; historic names match",
            search::search_prefix_and_range,
        ),
        Case::new(
            "ID-SEARCH-003",
            "Search excludes merged patients and reports max_results_applied (default 10)",
            search::search_merged_and_limits,
        ),
        Case::new(
            "ID-SEARCH-004",
            "Fuzzy search returns every exact match with score 1.0, ordered by score then patient_id",
            search::search_fuzzy_includes_exact,
        ),
        Case::new(
            "ID-SEARCH-005",
            "Search validation: empty family name, no birth date, empty or reversed range, invalid date, bad wildcard, any wildcard when fuzzy, negative max_results -> INVALID_ARGUMENT",
            search::search_invalid,
        ),
    ]);
    // GetMatchParameters, MatchPatients and EstimateMatchParameters.
    cases.extend([
        Case::new(
            "ID-PARAM-001",
            "GetMatchParameters: per field the m and u probabilities each sum to 1, weights are log2(m/u), thresholds ordered; none -> NOT_FOUND `current`",
            matching::parameters,
        ),
        Case::new(
            "ID-MATCH-001",
            "MatchPatients: the probe patient is never a candidate; weights sum to match_weight, probability and class follow the parameters; ranked by weight",
            matching::match_arithmetic,
        ),
        Case::new(
            "ID-MATCH-002",
            "MatchPatients validation: no probe, malformed id, empty demographics, bad NHS number, negative max_candidates -> INVALID_ARGUMENT; unknown id -> NOT_FOUND",
            matching::match_invalid,
        ),
        Case::new(
            "ID-EST-001",
            "EstimateMatchParameters validation: no requester, negative bound, convergence_threshold outside [0, 1) -> INVALID_ARGUMENT",
            matching::estimate_invalid,
        ),
    ]);
    cases
}
