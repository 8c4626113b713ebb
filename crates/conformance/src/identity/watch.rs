//! WatchPatientChanges: the change feed.

use std::time::Duration;

use super::support::{client, create, merge, new_patient, regender};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail, ok};
use crate::refusal::{Refusal, refused};
use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::identity::v1::{WatchPatientChangesRequest, WatchPatientChangesResponse};

async fn next_event(
    stream: &mut tonic::codec::Streaming<WatchPatientChangesResponse>,
) -> TestResult<WatchPatientChangesResponse> {
    match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
        Err(_) => fail!("WatchPatientChanges: no event within 30 s"),
        Ok(Ok(Some(e))) => Ok(e),
        Ok(Ok(None)) => fail!("WatchPatientChanges: the stream ended"),
        Ok(Err(s)) => fail!("WatchPatientChanges: the stream failed: {}", describe(&s)),
    }
}

pub(super) async fn watch(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    // Find a's creation event from the start of the feed to get a cursor.
    let mut stream = ok(
        client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: String::new(),
            })
            .await,
        "WatchPatientChanges(from the start)",
    )?;
    let cursor = loop {
        let e = next_event(&mut stream).await?;
        if e.patient_id == a.patient_id {
            ensure_eq!(
                (e.change_type, e.version),
                (ChangeType::Created as i32, 1),
                "a's first event"
            );
            break e.cursor;
        }
    };
    drop(stream);
    let b = create(&ctx, new_patient()).await?;
    let a2 = regender(&ctx, &a, 1).await?;
    merge(&ctx, &b, &a2).await?;
    let mut stream = ok(
        client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: cursor,
            })
            .await,
        "WatchPatientChanges(after a's creation)",
    )?;
    let mut ours = Vec::new();
    let mut last = i64::MIN;
    while ours.len() < 4 {
        let e = next_event(&mut stream).await?;
        ensure!(
            e.sequence > last,
            "sequences must strictly increase: {} then {}",
            last,
            e.sequence
        );
        last = e.sequence;
        ensure!(!e.cursor.is_empty(), "every event carries a cursor");
        if e.patient_id == a.patient_id || e.patient_id == b.patient_id {
            ensure_eq!(
                e.patient.as_ref().map(|p| p.version),
                Some(e.version),
                "the event's patient is the version written"
            );
            ours.push((
                e.patient_id.clone(),
                e.change_type,
                e.version,
                e.related_patient_id.clone(),
            ));
        }
    }
    ensure_eq!(
        ours,
        vec![
            (
                b.patient_id.clone(),
                ChangeType::Created as i32,
                1,
                String::new()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Updated as i32,
                2,
                String::new()
            ),
            (
                b.patient_id.clone(),
                ChangeType::Merged as i32,
                2,
                a.patient_id.clone()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Merged as i32,
                3,
                b.patient_id.clone()
            ),
        ],
        "events after the cursor (patient, type, version, related patient)"
    );
    Ok(())
}

pub(super) async fn watch_invalid(ctx: Ctx) -> TestResult {
    for cursor in [crate::records::FORGED_TOKEN, "not a cursor"] {
        let result = match client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: cursor.into(),
            })
            .await
        {
            Err(s) => Err(s),
            Ok(s) => {
                let mut s = s.into_inner();
                match tokio::time::timeout(Duration::from_secs(20), s.message()).await {
                    Ok(Err(status)) => Err(status),
                    Ok(Ok(_)) => Ok(()),
                    Err(_) => fail!(
                        "WatchPatientChanges({cursor:?}): neither an error nor an event within 20 s"
                    ),
                }
            }
        };
        refused(
            result,
            &Refusal::invalid("after_cursor"),
            &format!("WatchPatientChanges(after_cursor {cursor:?})"),
        )?;
    }
    Ok(())
}
