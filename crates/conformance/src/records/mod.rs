//! Conformance tests of `carerecord.records.v1.RecordHostingService`.
//!
//! Test ids: `REC-<AREA>-<NNN>`. Every test invents its own patients (fresh UUIDs), so tests are
//! independent of each other and of any data already in the store.

mod create;
mod export;
mod filters;
mod import;
mod list;
mod provenance;
mod retract;
mod support;
mod update;
mod validation;
mod versions;
mod watch;
mod watch_concurrent;

use crate::harness::Case;

pub(crate) use support::{
    FORGED_TOKEN, create, day, ensure_nothing_written, new_record, requester, retract,
    seconds_from_now, tamper, ts_key, update,
};

/// The catalogue: every test of the module, in run order.
pub(crate) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // CreateRecord, GetRecord and idempotency by request_id.
    cases.extend([
        Case::new(
            "REC-CREATE-001",
            "CreateRecord returns version 1, status CURRENT, a lower-case record_id, an etag, the payload byte for byte, its SHA-256 and size",
            create::create_basics,
        ),
        Case::new(
            "REC-CREATE-002",
            "The payload is stored and returned exactly as submitted: white space, member order, escapes, `id` and `meta` untouched",
            create::payload_byte_for_byte,
        ),
        Case::new(
            "REC-CREATE-003",
            "data_classes are stored as a set: duplicates removed, sorted ascending",
            create::data_classes_as_set,
        ),
        Case::new(
            "REC-CREATE-004",
            "Identifiers are accepted in any letter case and returned lower case; the ODS code is upper-cased",
            create::identifiers_case,
        ),
        Case::new(
            "REC-CREATE-005",
            "Every patient reference form is accepted: Patient/<id>, urn:uuid:<id>, the `patient` element, typed references, upper-case UUIDs",
            create::reference_forms,
        ),
        Case::new(
            "REC-CREATE-006",
            "recorded_time defaults to create_time; a past recorded_time and effective_time are kept as given",
            create::recorded_time_default,
        ),
        Case::new(
            "REC-CREATE-007",
            "A payload just under 64 KiB (the smallest limit a deployment may configure) is accepted",
            create::payload_under_min_limit,
        ),
        Case::new(
            "REC-GET-001",
            "GetRecord returns the latest version; version N returns that version as it was written",
            create::get_versions,
        ),
        Case::new(
            "REC-GET-002",
            "RECORD_VIEW_METADATA leaves payload empty but keeps content_hash and payload_size",
            create::get_metadata_view,
        ),
        Case::new(
            "REC-GET-003",
            "GetRecord of an unknown record_id -> NOT_FOUND with ResourceInfo(carerecord.records.v1.Record, record_id)",
            create::get_unknown,
        ),
        Case::new(
            "REC-GET-004",
            "GetRecord of a version greater than the latest -> NOT_FOUND with ResourceInfo",
            create::get_version_too_high,
        ),
        Case::new(
            "REC-GET-005",
            "GetRecord with a missing, malformed or nil record_id, or a negative version -> INVALID_ARGUMENT naming the field",
            create::get_invalid,
        ),
        Case::new(
            "REC-GET-006",
            "GetRecord accepts an upper-case record_id",
            create::get_upper_case,
        ),
        Case::new(
            "REC-IDEM-001",
            "A CreateRecord retry with the same request_id and record returns the first result and writes nothing",
            create::idempotent_retry,
        ),
        Case::new(
            "REC-IDEM-002",
            "A retry after the record has changed still returns version 1 as first created",
            create::idempotent_retry_after_update,
        ),
        Case::new(
            "REC-IDEM-003",
            "The same request_id with a different record -> FAILED_PRECONDITION, ErrorInfo REQUEST_ID_REUSED, nothing written",
            create::request_id_reused,
        ),
    ]);
    // CreateRecord validation: one test per rule of the contract.
    cases.extend(validation::cases());
    // UpdateRecord: versions, etags, update masks and the order of checks.
    cases.extend([
        Case::new(
            "REC-UPD-001",
            "UpdateRecord with the latest etag writes version 2 with a new etag; create_time, patient_id and resource_type unchanged",
            update::update_payload,
        ),
        Case::new(
            "REC-UPD-002",
            "UpdateRecord with a stale etag -> ABORTED, ErrorInfo ETAG_MISMATCH, nothing written",
            update::stale_etag,
        ),
        Case::new(
            "REC-UPD-003",
            "Every successful UpdateRecord writes a new version, even if no value changed",
            update::update_without_change,
        ),
        Case::new(
            "REC-UPD-004",
            "update_mask `data_classes` replaces only the data classes; `payload` replaces payload and content_type only",
            update::update_mask_partial,
        ),
        Case::new(
            "REC-UPD-005",
            "An empty update_mask or `*` replaces every updatable field: empty optional fields are cleared",
            update::update_full_replacement,
        ),
        Case::new(
            "REC-UPD-006",
            "A full replacement with an empty required field -> INVALID_ARGUMENT naming it",
            update::update_full_replacement_required,
        ),
        Case::new(
            "REC-UPD-007",
            "update_mask naming an unknown or non-updatable path -> INVALID_ARGUMENT naming `update_mask`",
            update::update_mask_invalid,
        ),
        Case::new(
            "REC-UPD-008",
            "record.patient_id or record.resource_type set and different from the stored value -> INVALID_ARGUMENT",
            update::update_immutable,
        ),
        Case::new(
            "REC-UPD-009",
            "UpdateRecord without record_id, etag or requester -> INVALID_ARGUMENT naming the field",
            update::update_missing_fields,
        ),
        Case::new(
            "REC-UPD-010",
            "UpdateRecord of an unknown record -> NOT_FOUND with ResourceInfo",
            update::update_unknown,
        ),
        Case::new(
            "REC-UPD-011",
            "UpdateRecord of a retracted record -> FAILED_PRECONDITION, PreconditionFailure RECORD_STATUS on the record_id",
            update::update_retracted,
        ),
        Case::new(
            "REC-UPD-012",
            "Order of checks: validation, then existence, then etag, then state, then the payload against stored values",
            update::update_order_of_checks,
        ),
        Case::new(
            "REC-UPD-013",
            "A new payload is checked against the stored patient: referencing another patient -> INVALID_ARGUMENT `record.payload`",
            update::update_payload_checked,
        ),
    ]);
    // RetractRecord: the retraction version, its reason, and refusals.
    cases.extend([
        Case::new(
            "REC-RET-001",
            "RetractRecord writes a version with status ENTERED_IN_ERROR, the reason and the same payload; GetRecord still returns it",
            retract::retract_basics,
        ),
        Case::new(
            "REC-RET-002",
            "RetractRecord of a retracted record -> FAILED_PRECONDITION, PreconditionFailure RECORD_STATUS",
            retract::retract_twice,
        ),
        Case::new(
            "REC-RET-003",
            "RetractRecord with a stale etag -> ABORTED, ErrorInfo ETAG_MISMATCH",
            retract::retract_stale,
        ),
        Case::new(
            "REC-RET-004",
            "RetractRecord reason: missing, white space only or over 1024 characters -> INVALID_ARGUMENT `reason`; 1024 accepted",
            retract::retract_reason,
        ),
        Case::new(
            "REC-RET-005",
            "RetractRecord without record_id, etag or requester -> INVALID_ARGUMENT; unknown record -> NOT_FOUND",
            retract::retract_invalid,
        ),
    ]);
    // ListRecordVersions: every version newest first, in pages, with its change type and requester.
    cases.extend([
        Case::new(
            "REC-VER-001",
            "ListRecordVersions lists every version newest first, with its change type and requester",
            versions::versions_basics,
        ),
        Case::new(
            "REC-VER-002",
            "ListRecordVersions pages through every version without gaps or duplicates; later writes are not listed",
            versions::versions_paging,
        ),
        Case::new(
            "REC-VER-003",
            "ListRecordVersions page_token forged, tampered with or issued for another record -> INVALID_ARGUMENT `page_token`",
            versions::versions_bad_token,
        ),
        Case::new(
            "REC-VER-004",
            "ListRecordVersions of an unknown record -> NOT_FOUND; malformed record_id -> INVALID_ARGUMENT; METADATA view has no payload",
            versions::versions_errors_and_view,
        ),
    ]);
    // Record.modified_by: who wrote each version, wherever records are returned.
    cases.extend([
        Case::new(
            "REC-PROV-001",
            "Every returned record names who wrote its version (modified_by): each write's response, and GetRecord of each version in FULL and METADATA views, an imported record the stream's requester",
            provenance::modified_by_on_writes_and_get,
        ),
        Case::new(
            "REC-PROV-002",
            "modified_by in lists, history, export and the feed: ListRecords, ListRecordVersions (equal to each version's requester), ExportRecords and WatchRecordChanges",
            provenance::modified_by_everywhere,
        ),
    ]);
    // ListRecords: snapshot pagination, filters, order, page tokens.
    cases.extend([
        Case::new(
            "REC-LIST-001",
            "ListRecords lists a patient's records (latest versions) in creation order; an unknown patient gives an empty list, not NOT_FOUND",
            list::list_basics,
        ),
        Case::new(
            "REC-LIST-002",
            "ListRecords pages through every record exactly once, in order, with the same watch_cursor on every page",
            list::list_paging,
        ),
        Case::new(
            "REC-LIST-003",
            "Snapshot pagination: writes after the first page (new records, updates, retractions) do not change later pages",
            list::list_snapshot,
        ),
        Case::new(
            "REC-LIST-004",
            "Filters resource_types, data_classes, excluded_data_classes, include_retracted, effective_time and updated_since combine with AND",
            list::list_filters,
        ),
        Case::new(
            "REC-LIST-005",
            "RECORD_ORDER_EFFECTIVE_TIME_DESCENDING: latest effective_time first, records without one last, ties newest creation first",
            list::list_effective_order,
        ),
        Case::new(
            "REC-LIST-006",
            "A page token reused with different filters, forged or tampered with -> INVALID_ARGUMENT `page_token`; page_size may change",
            list::list_bad_token,
        ),
        Case::new(
            "REC-LIST-007",
            "ListRecords validation: patient_id missing or malformed, unknown data class, malformed or over 50 resource types, empty period -> INVALID_ARGUMENT",
            list::list_invalid,
        ),
        Case::new(
            "REC-LIST-008",
            "ListRecords RECORD_VIEW_METADATA returns records without payload but with content_hash and payload_size",
            list::list_metadata_view,
        ),
        Case::new(
            "REC-LIST-009",
            "codes matches `code.coding` by system|code, code, |code and system|, case-sensitively; codings without a code or with a tab or line break never match",
            filters::codes_match,
        ),
        Case::new(
            "REC-LIST-010",
            "categories matches a list of CodeableConcepts, a single CodeableConcept, or plain strings (codes without system)",
            filters::categories_match,
        ),
        Case::new(
            "REC-LIST-011",
            "statuses matches the payload's top-level status string, case-sensitively; a non-string or missing status never matches",
            filters::statuses_match,
        ),
        Case::new(
            "REC-LIST-012",
            "Payload filters (codes, categories, statuses) AND with each other and with the existing filters",
            filters::filters_combine,
        ),
        Case::new(
            "REC-LIST-013",
            "Payload filters use each record's state as of the snapshot: later pages, retractions and metadata-only updates",
            filters::filters_use_the_snapshot,
        ),
        Case::new(
            "REC-LIST-014",
            "updated_before bounds update_time (exclusive), alone and with updated_since",
            filters::updated_before,
        ),
        Case::new(
            "REC-LIST-015",
            "Validation of codes, categories, statuses and updated_before: INVALID_ARGUMENT naming exactly the values at fault or the list; the limits themselves accepted",
            filters::filters_invalid,
        ),
        Case::new(
            "REC-LIST-016",
            "The page token binds codes, categories, statuses and updated_before: reused with other values -> INVALID_ARGUMENT `page_token`",
            filters::token_binds_new_filters,
        ),
    ]);
    // ExportRecords: completeness, order, batching, resumption, validation.
    cases.extend([
        Case::new(
            "REC-EXP-001",
            "ExportRecords of a set of patients streams every current record (latest version) once, in creation order, then ends OK",
            export::export_complete,
        ),
        Case::new(
            "REC-EXP-002",
            "Every export message holds at most 100 records, a resume_cursor and the same watch_cursor",
            export::export_batching,
        ),
        Case::new(
            "REC-EXP-003",
            "An export matching nothing sends one message with no records and ends OK",
            export::export_empty,
        ),
        Case::new(
            "REC-EXP-004",
            "A resumed export (resume_cursor) continues the same snapshot: identical to an uninterrupted one, despite writes in between",
            export::export_resume,
        ),
        Case::new(
            "REC-EXP-005",
            "Export filters: include_retracted, resource_types, excluded_data_classes and RECORD_VIEW_METADATA",
            export::export_filters,
        ),
        Case::new(
            "REC-EXP-006",
            "updated_between selects records by update_time (start inclusive, end exclusive) across patients",
            export::export_updated_between,
        ),
        Case::new(
            "REC-EXP-007",
            "ExportRecords validation: no scope, no or over 1000 or malformed ids, empty period, forged or foreign resume_cursor -> INVALID_ARGUMENT",
            export::export_invalid,
        ),
    ]);
    // WatchRecordChanges: history after a cursor, caught_up, live changes, resumption, filters.
    cases.extend([
        Case::new(
            "REC-WATCH-001",
            "Watching after a listing's watch_cursor delivers every later write once, in increasing sequence, then caught_up",
            watch::watch_after_listing,
        ),
        Case::new(
            "REC-WATCH-002",
            "Every change carries its sequence, cursor, type, record_id, patient_id, version, change_time, requester and the record at that version",
            watch::watch_change_fields,
        ),
        Case::new(
            "REC-WATCH-003",
            "Resuming from a change's cursor continues with the next change: nothing missed, nothing repeated",
            watch::watch_resume,
        ),
        Case::new(
            "REC-WATCH-004",
            "start_at_head delivers only live changes, which arrive after caught_up",
            watch::watch_live,
        ),
        Case::new(
            "REC-WATCH-005",
            "Filters patient_ids and resource_types select changes; progress messages keep the cursor moving",
            watch::watch_filters,
        ),
        Case::new(
            "REC-WATCH-006",
            "RECORD_VIEW_METADATA: changes carry the record without payload but with content_hash",
            watch::watch_metadata_view,
        ),
        Case::new(
            "REC-WATCH-007",
            "Watching from the beginning of the feed (no cursor) reaches this run's writes",
            watch::watch_from_beginning,
        ),
        Case::new(
            "REC-WATCH-008",
            "WatchRecordChanges validation: cursor with start_at_head, forged or tampered cursor, over 1000 patient ids or 50 types, malformed id -> INVALID_ARGUMENT",
            watch::watch_invalid,
        ),
        Case::new(
            "REC-WATCH-009",
            "Concurrent filtered watchers each see exactly their events in commit order, while four writers and an import write at once",
            watch_concurrent::concurrent_filtered_watchers,
        ),
        Case::new(
            "REC-WATCH-010",
            "A watcher replaying history while writes continue reaches live with no gap or duplicate",
            watch_concurrent::replaying_watchers_reach_live,
        ),
    ]);
    // ImportRecords: per-item rejections, idempotency shared with CreateRecord, stream errors.
    cases.extend([
        Case::new(
            "REC-IMP-001",
            "ImportRecords accepts valid items and reports each invalid one (index over the whole stream, reason, field violations) without failing the others",
            import::import_mixed,
        ),
        Case::new(
            "REC-IMP-002",
            "Re-sending an import stream deduplicates the items with request_ids: same record ids, nothing written",
            import::import_resend,
        ),
        Case::new(
            "REC-IMP-003",
            "Import items share CreateRecord's request_id space: same record -> deduplicated, different record -> REQUEST_ID_REUSED",
            import::import_shared_request_ids,
        ),
        Case::new(
            "REC-IMP-004",
            "Accepted items are written in index order with the stream's requester; return_record_ids off lists none",
            import::import_order_and_requester,
        ),
        Case::new(
            "REC-IMP-005",
            "ImportRecords with no message, no requester in the first message, or over 1000 items in a message -> INVALID_ARGUMENT",
            import::import_stream_errors,
        ),
    ]);
    cases
}
