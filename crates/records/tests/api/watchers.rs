//! Many concurrent watchers sharing the process's reader of new changes: each sees exactly its
//! events, in order, whether it started live, replayed history while writes went on, or watches
//! another replica's writes.

use std::collections::HashSet;
use std::time::Duration;

use carerecord_contracts::records::v1::{
    RecordChange, RecordView, WatchRecordChangesRequest, WatchRecordChangesResponse,
};
use carerecord_platform::testing::TestDatabase;
use tokio::task::JoinHandle;
use tonic::Streaming;

use crate::helpers::*;

const PATIENTS: usize = 12;
const WRITERS: usize = 4;
const WRITES_PER_WRITER: usize = 40;
const IMPORTED: usize = 150;

/// (record_id, version): one write.
type Write = (String, i64);

/// Reads a stream until it has delivered `count` changes, then a little longer to catch extras.
fn collect(
    mut stream: Streaming<WatchRecordChangesResponse>,
    count: usize,
) -> JoinHandle<Vec<RecordChange>> {
    tokio::spawn(async move {
        let mut changes = Vec::new();
        let mut caught_up = false;
        let mut cursor_seq = 0;
        while changes.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .expect("changes within 30 s")
                .unwrap()
                .expect("stream open");
            assert!(
                caught_up <= message.caught_up,
                "caught_up never goes back to false"
            );
            caught_up = message.caught_up;
            for change in &message.changes {
                assert!(
                    change.sequence > cursor_seq,
                    "strictly increasing sequences"
                );
                cursor_seq = change.sequence;
            }
            changes.extend(message.changes);
        }
        // Nothing more may come: every write was counted.
        if let Ok(extra) = tokio::time::timeout(Duration::from_millis(300), stream.message()).await
        {
            let extra = extra.unwrap().expect("stream open");
            assert!(
                extra.changes.is_empty(),
                "an unexpected change: {:?}",
                extra.changes
            );
        }
        changes
    })
}

fn writes_of(changes: &[RecordChange]) -> Vec<Write> {
    changes
        .iter()
        .map(|c| (c.record_id.clone(), c.version))
        .collect()
}

/// Creates, updates and retractions of records of `patients`, each writer on its own.
async fn write_concurrently(client: &Client, patients: &[String]) -> Vec<(Write, String)> {
    let writers: Vec<JoinHandle<Vec<(Write, String)>>> = (0..WRITERS)
        .map(|w| {
            let mut client = client.clone();
            let patients = patients.to_vec();
            tokio::spawn(async move {
                let mut written = Vec::new();
                let mut latest = None;
                for i in 0..WRITES_PER_WRITER {
                    let patient = &patients[(w * 7 + i * 5) % patients.len()];
                    let record = match (i % 5, latest.take()) {
                        (3, Some(previous)) => {
                            let previous: carerecord_contracts::records::v1::Record = previous;
                            let mut change = previous.clone();
                            change.author = format!("writer {w} change {i}");
                            update(
                                &mut client,
                                update_request(change, &previous.etag, &["author"]),
                            )
                            .await
                        }
                        (4, Some(previous)) => {
                            retract(
                                &mut client,
                                retract_request(&previous.record_id, &previous.etag, "error"),
                            )
                            .await
                        }
                        _ => create(&mut client, record(patient)).await,
                    };
                    written.push((
                        (record.record_id.clone(), record.version),
                        record.patient_id.clone(),
                    ));
                    latest = (record.status == 1).then_some(record);
                }
                written
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        all.extend(writer.await.unwrap());
    }
    all
}

#[tokio::test]
async fn many_watchers_each_see_exactly_their_events_in_order() {
    on_each_backend(async |mut client| {
        let patients: Vec<String> = (0..PATIENTS).map(|_| new_id()).collect();
        // Live watchers, started at the head before any write: one of everything, then one per
        // pair of patients, every third with payloads.
        let everything = open_watch(
            &mut client,
            WatchRecordChangesRequest {
                start_at_head: true,
                ..Default::default()
            },
        )
        .await;
        let mut live = Vec::new();
        for (i, pair) in patients.chunks(2).enumerate() {
            let view = if i % 3 == 0 {
                RecordView::Full
            } else {
                RecordView::Metadata
            };
            let request = WatchRecordChangesRequest {
                start_at_head: true,
                patient_ids: pair.to_vec(),
                view: view as i32,
                ..Default::default()
            };
            live.push((pair.to_vec(), view, open_watch(&mut client, request).await));
        }

        // Writes from several tasks at once, an import among them; watchers replaying from the
        // beginning join while they go on.
        let import_patient = patients[0].clone();
        let mut importer = client.clone();
        let import = tokio::spawn(async move {
            let items = (0..IMPORTED)
                .map(|_| item(record(&import_patient), &new_id()))
                .collect();
            let response = import(&mut importer, vec![import_message(items)]).await;
            response
                .accepted_records
                .into_iter()
                .map(|r| ((r.record_id, 1), import_patient.clone()))
                .collect::<Vec<_>>()
        });
        let writes = write_concurrently(&client, &patients);
        let mut replaying_client = client.clone();
        let replaying_patients = patients.clone();
        let replaying = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut streams = Vec::new();
            for (i, patient) in replaying_patients.iter().enumerate().step_by(3) {
                let view = if i % 2 == 0 {
                    RecordView::Full
                } else {
                    RecordView::Metadata
                };
                let request = WatchRecordChangesRequest {
                    patient_ids: vec![patient.clone()],
                    view: view as i32,
                    ..Default::default()
                };
                streams.push((
                    vec![patient.clone()],
                    view,
                    open_watch(&mut replaying_client, request).await,
                ));
            }
            streams
        });
        let mut written = writes.await;
        written.extend(import.await.unwrap());
        let replaying = replaying.await.unwrap();
        let total = WRITERS * WRITES_PER_WRITER + IMPORTED;
        assert_eq!(written.len(), total);

        // The unfiltered watcher saw every write exactly once; its order is the commit order.
        let order = collect(everything, total).await.unwrap();
        let seen: HashSet<Write> = writes_of(&order).into_iter().collect();
        assert_eq!(seen.len(), total, "no duplicates");
        let expected_all: HashSet<Write> = written.iter().map(|(w, _)| w.clone()).collect();
        assert_eq!(seen, expected_all);

        for (own, view, stream) in live.into_iter().chain(replaying) {
            let expected: Vec<Write> = order
                .iter()
                .filter(|c| own.contains(&c.patient_id))
                .map(|c| (c.record_id.clone(), c.version))
                .collect();
            let changes = collect(stream, expected.len()).await.unwrap();
            assert_eq!(
                writes_of(&changes),
                expected,
                "watcher of {own:?} ({view:?})"
            );
            for change in &changes {
                let record = change.record.as_ref().unwrap();
                assert_eq!(record.record_id, change.record_id);
                assert_eq!(record.version, change.version);
                assert_eq!(
                    record.payload.is_empty(),
                    view == RecordView::Metadata,
                    "payload in {view:?}"
                );
                assert_eq!(
                    record.payload_size as usize,
                    observation(&change.patient_id).len()
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_watcher_sees_the_writes_of_another_replica() {
    for db in TestDatabase::each_backend().await {
        let watched = spawn_app(&db).await;
        let other = spawn_app(&db).await;
        let patient = new_id();
        let mut client = watched.client.clone();
        let stream = open_watch(
            &mut client,
            WatchRecordChangesRequest {
                start_at_head: true,
                patient_ids: vec![patient.clone()],
                ..Default::default()
            },
        )
        .await;
        let mut writer = other.client.clone();
        let first = create(&mut writer, record(&patient)).await;
        let local = create(&mut client, record(&patient)).await;
        let last = create(&mut writer, record(&patient)).await;
        let changes = collect(stream, 3).await.unwrap();
        let ids: Vec<&str> = changes.iter().map(|c| c.record_id.as_str()).collect();
        assert_eq!(ids, [&first.record_id, &local.record_id, &last.record_id]);
        other.stop().await;
        watched.stop().await;
    }
}
