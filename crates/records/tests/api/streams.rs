//! WatchRecordChanges, ExportRecords and ImportRecords.

use std::collections::HashSet;
use std::time::Duration;

use carerecord_contracts::common::v1::{ChangeType, Period};
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{
    ExportRecordsRequest, ExportRecordsResponse, ImportItem, ImportRecordsRequest,
    ImportRejectionReason, PatientIdList, RecordChange, RecordView, WatchRecordChangesRequest,
    WatchRecordChangesResponse,
};
use carerecord_platform::testing::TestDatabase;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::helpers::*;

async fn next(stream: &mut Streaming<WatchRecordChangesResponse>) -> WatchRecordChangesResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message within 10 s")
        .expect("watch message")
        .expect("stream open")
}

/// Reads messages until `n` changes arrived; returns them and the last message's cursor.
async fn changes(
    stream: &mut Streaming<WatchRecordChangesResponse>,
    n: usize,
) -> (Vec<RecordChange>, String) {
    let (changes, last) = changes_until(stream, n).await;
    (changes, last.cursor)
}

/// Reads messages until `n` changes arrived; returns them and the last message (without changes).
async fn changes_until(
    stream: &mut Streaming<WatchRecordChangesResponse>,
    n: usize,
) -> (Vec<RecordChange>, WatchRecordChangesResponse) {
    let mut changes = Vec::new();
    loop {
        let mut message = next(stream).await;
        changes.append(&mut message.changes);
        if changes.len() >= n {
            return (changes, message);
        }
    }
}

/// Reads messages until one says the stream has caught up, unless `last` already did.
async fn until_caught_up(
    stream: &mut Streaming<WatchRecordChangesResponse>,
    last: &WatchRecordChangesResponse,
) {
    let mut caught_up = last.caught_up;
    while !caught_up {
        let message = next(stream).await;
        assert!(
            message.changes.is_empty(),
            "no change was written meanwhile"
        );
        caught_up = message.caught_up;
    }
}

fn watch_from(cursor: &str) -> WatchRecordChangesRequest {
    WatchRecordChangesRequest {
        after_cursor: cursor.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn watch_replays_history_then_live_changes_in_commit_order() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let v1 = create(&mut client, record(&patient)).await;
        let v2 = update(&mut client, update_request(v1.clone(), &v1.etag, &[])).await;
        retract(
            &mut client,
            retract_request(&v1.record_id, &v2.etag, "error"),
        )
        .await;

        let mut stream = open_watch(&mut client, watch_from("")).await;
        let (history, last) = changes_until(&mut stream, 3).await;
        let kinds: Vec<i32> = history.iter().map(|c| c.change_type).collect();
        assert_eq!(
            kinds,
            [
                ChangeType::Created as i32,
                ChangeType::Updated as i32,
                ChangeType::Retracted as i32
            ]
        );
        assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));
        assert_eq!(
            history[1].record.as_ref().unwrap(),
            &v2,
            "each change carries the version it wrote"
        );
        assert_eq!(history[0].requester.as_ref().unwrap(), &requester());
        assert_eq!(history[2].patient_id, patient);
        // Then a caught-up message, then live changes.
        until_caught_up(&mut stream, &last).await;
        let live = create(&mut client, record(&patient)).await;
        let (more, _) = changes(&mut stream, 1).await;
        assert_eq!(more[0].record_id, live.record_id);
        assert!(more[0].sequence > history[2].sequence);

        // Concurrent writers: the feed still comes in strictly increasing sequence, complete.
        let mut stream = open_watch(
            &mut client,
            WatchRecordChangesRequest {
                start_at_head: true,
                ..Default::default()
            },
        )
        .await;
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let mut client = client.clone();
                let patient = patient.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        create(&mut client, record(&patient)).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let (live, _) = changes(&mut stream, 80).await;
        assert_eq!(live.len(), 80);
        assert!(live.windows(2).all(|w| w[0].sequence < w[1].sequence));
    })
    .await;
}

#[tokio::test]
async fn a_watcher_reconnecting_across_a_restart_misses_nothing() {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app(&db).await;
        let mut client = app.client.clone();
        let patient = new_id();
        let mut written = Vec::new();
        for _ in 0..5 {
            written.push(create(&mut client, record(&patient)).await.record_id);
        }
        let mut stream = open_watch(&mut client, watch_from("")).await;
        let (mut seen, mut cursor) = changes(&mut stream, 3).await;
        // Writes continue while the service goes down and comes back on the same database.
        for _ in 0..3 {
            written.push(create(&mut client, record(&patient)).await.record_id);
        }
        app.stop().await;
        let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends at shutdown");
        if let Ok(Some(message)) = end {
            seen.extend(message.changes);
            cursor = message.cursor;
        }
        let app = spawn_app_with(&db.url, &[]).await;
        let mut client = app.client.clone();
        for _ in 0..2 {
            written.push(create(&mut client, record(&patient)).await.record_id);
        }
        let mut stream = open_watch(&mut client, watch_from(&cursor)).await;
        let unique = |seen: &[RecordChange]| {
            seen.iter()
                .map(|c| c.sequence)
                .collect::<HashSet<_>>()
                .len()
        };
        while unique(&seen) < written.len() {
            let message = next(&mut stream).await;
            seen.extend(message.changes);
        }
        let mut sequences: Vec<i64> = seen.iter().map(|c| c.sequence).collect();
        sequences.dedup();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        let ids: Vec<String> = seen.iter().map(|c| c.record_id.clone()).collect::<Vec<_>>();
        let mut deduped = ids.clone();
        deduped.dedup();
        assert_eq!(deduped, written);
        app.stop().await;
    }
}

#[tokio::test]
async fn watch_filters_and_progress_cursors() {
    on_each_backend(async |mut client| {
        let (alice, bob) = (new_id(), new_id());
        for _ in 0..3 {
            create(&mut client, record(&bob)).await;
        }
        let mine = create(&mut client, record(&alice)).await;
        let request = WatchRecordChangesRequest {
            patient_ids: vec![alice.to_uppercase()],
            view: RecordView::Metadata as i32,
            ..Default::default()
        };
        let mut stream = open_watch(&mut client, request.clone()).await;
        let (seen, last) = changes_until(&mut stream, 1).await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].record_id, mine.record_id);
        assert!(seen[0].record.as_ref().unwrap().payload.is_empty());
        // Events of other patients advance the cursor without changes.
        until_caught_up(&mut stream, &last).await;
        let last_bob = create(&mut client, record(&bob)).await;
        let progress = loop {
            let message = next(&mut stream).await;
            assert!(message.changes.is_empty());
            if message.cursor != seen[0].cursor {
                break message;
            }
        };
        // Resuming from the progress cursor without the filter starts after bob's record.
        let mut stream = open_watch(&mut client, watch_from(&progress.cursor)).await;
        let next_one = create(&mut client, record(&bob)).await;
        let (after, _) = changes(&mut stream, 1).await;
        assert_eq!(after[0].record_id, next_one.record_id);
        assert_ne!(after[0].record_id, last_bob.record_id);
    })
    .await;
}

#[tokio::test]
async fn watch_refuses_bad_cursors() {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app(&db).await;
        let mut client = app.client.clone();
        for _ in 0..3 {
            create(&mut client, record(&new_id())).await;
        }
        let mut stream = open_watch(&mut client, watch_from("")).await;
        let (seen, _) = changes(&mut stream, 3).await;
        let cursor = seen[2].cursor.clone();

        let invalid: [(WatchRecordChangesRequest, &[&str]); 4] = [
            (watch_from("garbage"), &["after_cursor"]),
            (watch_from(&format!("{cursor}x")), &["after_cursor"]),
            (
                WatchRecordChangesRequest {
                    after_cursor: cursor.clone(),
                    start_at_head: true,
                    ..Default::default()
                },
                &["after_cursor"],
            ),
            (
                WatchRecordChangesRequest {
                    patient_ids: vec!["x".into()],
                    resource_types: vec!["Nope".into()],
                    ..Default::default()
                },
                &["patient_ids[0]", "resource_types[0]"],
            ),
        ];
        for (request, fields) in invalid {
            assert_invalid(
                &client.watch_record_changes(request).await.unwrap_err(),
                fields,
            );
        }
        // Another deployment's cursor.
        let other = spawn_app_with(
            &db.url,
            &[("CARERECORD_TOKEN_SECRET", "another-deployment-secret")],
        )
        .await;
        assert_invalid(
            &other
                .client
                .clone()
                .watch_record_changes(watch_from(&cursor))
                .await
                .unwrap_err(),
            &["after_cursor"],
        );
        other.stop().await;
        app.stop().await;

        // The same deployment's cursor against a store behind it (restored from a backup).
        let fresh = TestDatabase::each_backend()
            .await
            .into_iter()
            .find(|d| d.backend == db.backend)
            .unwrap();
        let restored = spawn_app(&fresh).await;
        let status = restored
            .client
            .clone()
            .watch_record_changes(watch_from(&cursor))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(
            details.precondition_failure().unwrap().violations[0].r#type,
            "CURSOR_AHEAD_OF_FEED"
        );
        restored.stop().await;
    }
}

/// The ids of the records in export messages, in order.
fn exported_ids(messages: &[ExportRecordsResponse]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m.records.iter().map(|r| r.record_id.clone()))
        .collect()
}

#[tokio::test]
async fn export_streams_in_creation_order_and_resumes_identically() {
    on_each_backend(async |mut client| {
        let (alice, bob, carol) = (new_id(), new_id(), new_id());
        let mut expected = Vec::new();
        for i in 0..250 {
            let patient = if i % 2 == 0 { &alice } else { &bob };
            expected.push(create_fast(&mut client, patient).await);
        }
        create(&mut client, record(&carol)).await;
        let request = ExportRecordsRequest {
            scope: Some(Scope::Patients(PatientIdList {
                patient_ids: vec![alice.clone(), bob.clone(), alice.to_uppercase()],
            })),
            view: RecordView::Metadata as i32,
            ..Default::default()
        };
        let messages = export_all(&mut client, request.clone()).await;
        assert!(messages.iter().all(|m| m.records.len() <= 100));
        assert_eq!(exported_ids(&messages), expected);
        assert!(
            messages
                .windows(2)
                .all(|w| w[0].watch_cursor == w[1].watch_cursor)
        );

        // Written after the export started: not in a resumed export either.
        create(&mut client, record(&alice)).await;
        let mut resume = request.clone();
        resume.resume_cursor = messages[0].resume_cursor.clone();
        let resumed = export_all(&mut client, resume.clone()).await;
        assert_eq!(
            exported_ids(&resumed),
            expected[messages[0].records.len()..]
        );

        // A cancelled export leaves the service working and can be resumed (this export's
        // snapshot includes the record written above: 251 records, 100 in its first message).
        let mut stream = client
            .export_records(request.clone())
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        drop(stream);
        let mut resume_after_cancel = request.clone();
        resume_after_cancel.resume_cursor = first.resume_cursor;
        // Then a whole-store export.
        let everything = ExportRecordsRequest {
            scope: Some(Scope::UpdatedBetween(Period::default())),
            ..Default::default()
        };
        for (request, count) in [(resume_after_cancel, 151), (everything, 252)] {
            let messages = export_all(&mut client, request).await;
            assert_eq!(exported_ids(&messages).len(), count);
        }
        // An export matching nothing.
        let nothing = ExportRecordsRequest {
            scope: Some(Scope::Patients(PatientIdList {
                patient_ids: vec![new_id()],
            })),
            ..Default::default()
        };
        let messages = export_all(&mut client, nothing).await;
        assert_eq!(messages.len(), 1);
        assert!(messages[0].records.is_empty());

        // Bad requests.
        let mut other_query = resume.clone();
        other_query.include_retracted = true;
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let invalid: [(ExportRecordsRequest, &[&str]); 4] = [
            (ExportRecordsRequest::default(), &["scope"]),
            (
                ExportRecordsRequest {
                    scope: Some(Scope::Patients(PatientIdList::default())),
                    ..Default::default()
                },
                &["patients.patient_ids"],
            ),
            (other_query, &["resume_cursor"]),
            (
                ExportRecordsRequest {
                    scope: Some(Scope::UpdatedBetween(Period {
                        start: at(5),
                        end: at(1),
                    })),
                    excluded_data_classes: vec!["x".into()],
                    ..Default::default()
                },
                &["updated_between", "excluded_data_classes[0]"],
            ),
        ];
        for (request, fields) in invalid {
            assert_invalid(&client.export_records(request).await.unwrap_err(), fields);
        }
    })
    .await;
}

/// Creates a record with CreateRecord, returning its id.
async fn create_fast(client: &mut Client, patient: &str) -> String {
    create(client, record(patient)).await.record_id
}

#[tokio::test]
async fn import_keeps_good_items_and_reports_bad_ones_by_position() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let used = create_request(record(&patient));
        client.create_record(used.clone()).await.unwrap();

        let mut wrong_patient = record(&patient);
        wrong_patient.payload = observation(&new_id());
        let repeated = new_id();
        let mut different = record(&patient);
        different.author = "different".into();
        let first_message = vec![
            item(record(&patient), &new_id()),                    // 0 ok
            item(wrong_patient, ""),                              // 1 invalid payload
            item(used.record.clone().unwrap(), &used.request_id), // 2 deduplicated against CreateRecord
            item(record(&patient), &repeated),                    // 3 ok
            item(different.clone(), &repeated),                   // 4 reused within the stream
        ];
        let second_message = vec![
            item(record(&patient), "not-a-uuid"), // 5 invalid request id
            item(record(&patient), &repeated),    // 6 deduplicated within the stream
            ImportItem {
                request_id: String::new(),
                record: None,
            }, // 7 no record
            item(record(&patient), ""),           // 8 ok
        ];
        let messages = vec![
            import_message(first_message),
            ImportRecordsRequest {
                items: second_message,
                requester: None,
                return_record_ids: false,
            },
        ];
        let response = import(&mut client, messages.clone()).await;
        assert_eq!(
            (
                response.accepted_count,
                response.deduplicated_count,
                response.rejected_count
            ),
            (5, 2, 4)
        );
        let rejected: Vec<(i64, i32)> = response
            .rejections
            .iter()
            .map(|r| (r.index, r.reason))
            .collect();
        let (invalid, reused) = (
            ImportRejectionReason::InvalidRecord as i32,
            ImportRejectionReason::RequestIdReused as i32,
        );
        assert_eq!(
            rejected,
            [(1, invalid), (4, reused), (5, invalid), (7, invalid)]
        );
        assert_eq!(
            response.rejections[0].field_violations[0].field,
            "record.payload"
        );
        assert_eq!(
            response.rejections[2].field_violations[0].field,
            "request_id"
        );
        assert_eq!(response.rejections[3].field_violations[0].field, "record");
        assert!(!response.rejections_truncated);
        let accepted: Vec<(i64, bool)> = response
            .accepted_records
            .iter()
            .map(|a| (a.index, a.deduplicated))
            .collect();
        assert_eq!(
            accepted,
            [(0, false), (2, true), (3, false), (6, true), (8, false)]
        );
        assert_eq!(
            response.accepted_records[3].record_id,
            response.accepted_records[2].record_id
        );
        for accepted in &response.accepted_records {
            get(&mut client, &accepted.record_id, 0, RecordView::Unspecified).await;
        }
        assert_eq!(list_all(&mut client, &patient).await.len(), 4);

        // Re-sending the whole stream writes only the item without a request id again.
        let again = import(&mut client, messages).await;
        assert_eq!(
            (
                again.accepted_count,
                again.deduplicated_count,
                again.rejected_count
            ),
            (5, 4, 4)
        );
        assert_eq!(list_all(&mut client, &patient).await.len(), 5);
    })
    .await;
}

#[tokio::test]
async fn import_stream_errors() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let no_requester = ImportRecordsRequest {
            items: vec![item(record(&patient), "")],
            requester: None,
            return_record_ids: false,
        };
        let too_many = ImportRecordsRequest {
            items: vec![item(record(&patient), ""); 1001],
            requester: Some(requester()),
            return_record_ids: false,
        };
        let invalid: [(Vec<ImportRecordsRequest>, &[&str]); 3] = [
            (Vec::new(), &["items"]),
            (vec![no_requester], &["requester"]),
            (vec![too_many], &["items"]),
        ];
        for (messages, fields) in invalid {
            let status = client
                .import_records(tokio_stream::iter(messages))
                .await
                .unwrap_err();
            assert_invalid(&status, fields);
        }
        assert!(list_all(&mut client, &patient).await.is_empty());

        // Many items over several transactions, with the rejection list capped.
        let messages: Vec<ImportRecordsRequest> = (0..3)
            .map(|m| ImportRecordsRequest {
                items: (0..1000)
                    .map(|i| {
                        let mut r = record(&patient);
                        if (m * 1000 + i) % 2 == 1 {
                            r.source_system = String::new();
                        }
                        item(r, "")
                    })
                    .collect(),
                requester: Some(requester()),
                return_record_ids: false,
            })
            .collect();
        let response = import(&mut client, messages).await;
        assert_eq!(
            (response.accepted_count, response.rejected_count),
            (1500, 1500)
        );
        assert_eq!(response.rejections.len(), 1000);
        assert!(response.rejections_truncated);
        assert!(
            response
                .rejections
                .windows(2)
                .all(|w| w[0].index < w[1].index)
        );
        assert_eq!(response.rejections[999].index, 1999);
        assert!(response.accepted_records.is_empty());
        assert_eq!(list_all(&mut client, &patient).await.len(), 1500);
    })
    .await;
}

/// A stored record without what differs between two writes of the same content.
fn content(
    mut record: carerecord_contracts::records::v1::Record,
) -> carerecord_contracts::records::v1::Record {
    record.record_id.clear();
    record.etag.clear();
    record.create_time = None;
    record.update_time = None;
    record.recorded_time = None;
    record
}

#[tokio::test]
async fn an_import_stores_exactly_what_a_create_stores() {
    // On PostgreSQL an import's batches are written with COPY and a single create with INSERT:
    // both must store the same columns, the same way, in feed order.
    on_each_backend(async |mut client| {
        let patient = new_id();
        let mut dated = record(&patient);
        dated.author = "Dr Zoë Ó'Brien — 診療所".into();
        dated.data_classes = vec!["safeguarding".into(), "mental-health".into()];
        dated.effective_time = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000,
        });
        let mut undated = dated.clone();
        undated.effective_time = None;
        let created = [
            create(&mut client, dated.clone()).await,
            create(&mut client, undated.clone()).await,
        ];
        let mut watch = open_watch(&mut client, watch_from("")).await;
        let (before, _) = changes(&mut watch, 2).await;

        let items: Vec<ImportItem> = (0..300)
            .map(|i| item([&dated, &undated][i % 2].clone(), &new_id()))
            .collect();
        let message = import_message(items);
        let response = import(&mut client, vec![message.clone()]).await;
        assert_eq!((response.accepted_count, response.rejected_count), (300, 0));
        for (i, accepted) in response.accepted_records.iter().enumerate() {
            let stored = get(&mut client, &accepted.record_id, 0, RecordView::Unspecified).await;
            assert_eq!(stored.record_id, accepted.record_id);
            assert_eq!(content(stored), content(created[i % 2].clone()), "item {i}");
        }

        // The feed has every item once, in index order, right after the creates.
        let (imported, _) = changes(&mut watch, 300).await;
        assert_eq!(imported.len(), 300);
        let ids: Vec<&str> = imported.iter().map(|c| c.record_id.as_str()).collect();
        let expected: Vec<&str> = response
            .accepted_records
            .iter()
            .map(|a| a.record_id.as_str())
            .collect();
        assert_eq!(ids, expected);
        let mut last = before[1].sequence;
        for change in &imported {
            assert_eq!(change.sequence, last + 1, "no gap in the feed");
            assert_eq!(change.change_type, ChangeType::Created as i32);
            last = change.sequence;
        }

        // The request ids were kept with their records: sending again writes nothing.
        let again = import(&mut client, vec![message]).await;
        assert_eq!((again.accepted_count, again.deduplicated_count), (300, 300));
        assert_eq!(
            again.accepted_records,
            response
                .accepted_records
                .iter()
                .map(|a| carerecord_contracts::records::v1::ImportedRecord {
                    deduplicated: true,
                    ..a.clone()
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(list_all(&mut client, &patient).await.len(), 302);
    })
    .await;
}

#[tokio::test]
async fn racing_import_and_create_with_one_request_id_make_one_record() {
    on_each_backend(async |client| {
        let patient = new_id();
        // Imports of one item and of many (written with COPY on PostgreSQL), each carrying the
        // raced request id.
        for size in [1, 1, 1, 1, 1, 1, 1, 1, 150, 150] {
            let request = create_request(record(&patient));
            let mut items: Vec<ImportItem> =
                (0..size).map(|_| item(record(&patient), "")).collect();
            items[size / 2] = item(record(&patient), &request.request_id);
            let message = import_message(items);
            let (mut a, mut b) = (client.clone(), client.clone());
            let (created, imported) =
                tokio::join!(create_with(&mut a, request), import(&mut b, vec![message]));
            assert_eq!(imported.accepted_count, size as i64);
            // Only the raced item can have been deduplicated, when the create got there first.
            assert_eq!(
                imported.deduplicated_count,
                i64::from(imported.accepted_records[size / 2].deduplicated)
            );
            assert_eq!(
                imported.accepted_records[size / 2].record_id,
                created.record_id
            );
        }
        assert_eq!(
            list_all(&mut client.clone(), &patient).await.len(),
            8 + 2 * 150
        );
    })
    .await;
}

#[tokio::test]
async fn large_records_keep_every_message_under_4_mib() {
    let vars = [("CARERECORD_RECORDS_MAX_PAYLOAD_BYTES", "3MiB")];
    // The client keeps tonic's default 4 MiB limit on messages it receives.
    on_each_backend_with(&vars, async |mut client| {
        let patient = new_id();
        for _ in 0..3 {
            let mut big = record(&patient);
            big.payload = format!(
                r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{patient}"}},"note":[{{"text":"{}"}}]}}"#,
                "x".repeat(1_200_000)
            )
            .into_bytes();
            create(&mut client, big).await;
        }
        let request = carerecord_contracts::records::v1::ListRecordsRequest {
            patient_id: patient.clone(),
            ..Default::default()
        };
        let page = list_page(&mut client, request).await;
        assert_eq!(page.records.len(), 2);
        assert_eq!(list_all(&mut client, &patient).await.len(), 3);

        let mut stream = open_watch(&mut client, watch_from("")).await;
        let first = next(&mut stream).await;
        assert_eq!(first.changes.len(), 2);
        let (rest, _) = changes(&mut stream, 1).await;
        assert!(rest[0].sequence > first.changes[1].sequence);

        let export = ExportRecordsRequest {
            scope: Some(Scope::Patients(PatientIdList {
                patient_ids: vec![patient.clone()],
            })),
            ..Default::default()
        };
        let sizes: Vec<usize> = export_all(&mut client, export)
            .await
            .iter()
            .map(|m| m.records.len())
            .collect();
        assert_eq!(sizes, [2, 1]);
    })
    .await;
}

#[tokio::test]
async fn a_large_import_refreshes_the_planner_statistics() {
    // Only PostgreSQL keeps planner statistics that a bulk load makes stale.
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let app = spawn_app(&db).await;
    let mut client = app.client.clone();
    let analyzed = || async {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let at: Option<String> = sqlx::query_scalar(
            "SELECT last_analyze::text FROM pg_stat_user_tables WHERE relname = 'record_versions'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        at
    };
    let patient = new_id();
    let messages_of = |count: usize| {
        let messages: Vec<ImportRecordsRequest> = (0..count.div_ceil(1000))
            .map(|m| ImportRecordsRequest {
                items: (0..(count - m * 1000).min(1000))
                    .map(|_| item(record(&patient), ""))
                    .collect(),
                requester: Some(requester()),
                return_record_ids: false,
            })
            .collect();
        messages
    };
    let small = import(&mut client, messages_of(100)).await;
    assert_eq!(small.accepted_count, 100);
    assert_eq!(
        analyzed().await,
        None,
        "a small import leaves statistics to autovacuum"
    );
    let large = import(&mut client, messages_of(10_000)).await;
    assert_eq!(large.accepted_count, 10_000);
    assert!(
        analyzed().await.is_some(),
        "ANALYZE ran at the end of the import"
    );
    app.stop().await;
}
