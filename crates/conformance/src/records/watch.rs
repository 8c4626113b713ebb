//! WatchRecordChanges: history after a cursor, caught_up, live changes, resumption, filters.

use std::time::Duration;

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::{
    Record, RecordChange, RecordView, WatchRecordChangesRequest, WatchRecordChangesResponse,
};
use tonic::codec::Streaming;
use tonic::{Code, Status};

use super::support::{
    FORGED_TOKEN, client, create, ensure_metadata_only, list_all, list_request, new_record,
    new_record_of, relabel, requester, retract, tamper,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail};
use crate::refusal::{Refusal, refused};

const WAIT: Duration = Duration::from_secs(20);

pub(super) async fn open(
    ctx: &Ctx,
    request: WatchRecordChangesRequest,
) -> TestResult<Streaming<WatchRecordChangesResponse>> {
    match client(ctx).watch_record_changes(request).await {
        Ok(s) => Ok(s.into_inner()),
        Err(status) => fail!(
            "WatchRecordChanges: expected a stream, got {}",
            describe(&status)
        ),
    }
}

pub(super) async fn next(
    stream: &mut Streaming<WatchRecordChangesResponse>,
) -> TestResult<WatchRecordChangesResponse> {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Err(_) => fail!("WatchRecordChanges: no message within {WAIT:?}"),
        Ok(Ok(Some(m))) => Ok(m),
        Ok(Ok(None)) => fail!("WatchRecordChanges: the stream ended while the client listened"),
        Ok(Err(status)) => fail!(
            "WatchRecordChanges: the stream failed: {}",
            describe(&status)
        ),
    }
}

/// Reads until the first caught_up message (inclusive). Returns the changes delivered before
/// and in it, and the last message's cursor. Requires changes before catching up to arrive in
/// messages with caught_up false, as the contract says.
pub(super) async fn read_until_caught_up(
    stream: &mut Streaming<WatchRecordChangesResponse>,
) -> TestResult<(Vec<RecordChange>, String)> {
    let mut changes = Vec::new();
    for _ in 0..100_000 {
        let m = next(stream).await?;
        ensure!(!m.cursor.is_empty(), "every message carries a cursor");
        if m.caught_up {
            changes.extend(m.changes);
            return Ok((changes, m.cursor));
        }
        changes.extend(m.changes);
    }
    fail!("WatchRecordChanges: no caught_up message after 100000 messages")
}

/// Reads until `n` changes have arrived (after catching up if needed).
async fn read_changes(
    stream: &mut Streaming<WatchRecordChangesResponse>,
    n: usize,
) -> TestResult<Vec<RecordChange>> {
    let mut changes = Vec::new();
    while changes.len() < n {
        changes.extend(next(stream).await?.changes);
    }
    Ok(changes)
}

fn watch(after: &str, patients: &[&str]) -> WatchRecordChangesRequest {
    WatchRecordChangesRequest {
        after_cursor: after.to_owned(),
        patient_ids: patients.iter().map(|p| (*p).to_owned()).collect(),
        ..Default::default()
    }
}

pub(super) fn strictly_increasing(changes: &[RecordChange]) -> TestResult {
    for pair in changes.windows(2) {
        ensure!(
            pair[0].sequence < pair[1].sequence,
            "sequences must strictly increase: {} then {}",
            pair[0].sequence,
            pair[1].sequence
        );
    }
    Ok(())
}

fn summary(changes: &[RecordChange]) -> Vec<(String, i32, i64)> {
    changes
        .iter()
        .map(|c| (c.record_id.clone(), c.change_type, c.version))
        .collect()
}

/// A patient with one record before a listing, then three writes after it.
struct Scenario {
    pid: String,
    cursor: String,
    a: Record,
    a2: Record,
    b: Record,
    b2: Record,
}

async fn scenario(ctx: &Ctx) -> TestResult<Scenario> {
    let pid = ctx.new_patient();
    let a = create(ctx, new_record(&pid)).await?;
    let (_, cursor) = list_all(ctx, list_request(&pid)).await?;
    ensure!(!cursor.is_empty(), "ListRecords must return a watch_cursor");
    let b = create(ctx, new_record_of(&pid, "Condition")).await?;
    let a2 = relabel(ctx, &a, &["genomic"]).await?;
    let b2 = retract(ctx, &b, "retract").await?;
    Ok(Scenario {
        pid,
        cursor,
        a,
        a2,
        b,
        b2,
    })
}

fn expected(s: &Scenario) -> Vec<(String, i32, i64)> {
    vec![
        (s.b.record_id.clone(), ChangeType::Created as i32, 1),
        (s.a.record_id.clone(), ChangeType::Updated as i32, 2),
        (s.b.record_id.clone(), ChangeType::Retracted as i32, 2),
    ]
}

pub(super) async fn watch_after_listing(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let mut stream = open(&ctx, watch(&s.cursor, &[&s.pid])).await?;
    let (changes, _) = read_until_caught_up(&mut stream).await?;
    strictly_increasing(&changes)?;
    ensure_eq!(
        summary(&changes),
        expected(&s),
        "changes after the listing's watch_cursor (record_id, type, version)"
    );
    Ok(())
}

pub(super) async fn watch_change_fields(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let mut stream = open(&ctx, watch(&s.cursor, &[&s.pid])).await?;
    let (changes, _) = read_until_caught_up(&mut stream).await?;
    ensure_eq!(changes.len(), 3, "changes");
    let records = [(&s.b, "create"), (&s.a2, "relabel"), (&s.b2, "retract")];
    for (change, (record, who)) in changes.iter().zip(records) {
        let what = format!("change {} v{}", change.record_id, change.version);
        ensure!(!change.cursor.is_empty(), "{what}: cursor must be set");
        ensure_eq!(change.patient_id, s.pid, "{what}: patient_id");
        ensure_eq!(
            change.record.as_ref(),
            Some(record),
            "{what}: record as of the version written"
        );
        ensure_eq!(
            change.change_time,
            record.update_time,
            "{what}: change_time is the version's update_time"
        );
        ensure_eq!(change.requester, Some(requester(who)), "{what}: requester");
    }
    Ok(())
}

pub(super) async fn watch_resume(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let mut stream = open(&ctx, watch(&s.cursor, &[&s.pid])).await?;
    let (changes, caught_up_cursor) = read_until_caught_up(&mut stream).await?;
    drop(stream);
    ensure_eq!(changes.len(), 3, "changes");
    for i in 0..changes.len() {
        let mut stream = open(&ctx, watch(&changes[i].cursor, &[&s.pid])).await?;
        let (rest, _) = read_until_caught_up(&mut stream).await?;
        ensure_eq!(
            summary(&rest),
            summary(&changes[i + 1..]),
            "changes after change {i}'s cursor"
        );
    }
    // Resuming from the caught-up message's cursor: nothing old again; the next write arrives.
    let mut stream = open(&ctx, watch(&caught_up_cursor, &[&s.pid])).await?;
    let (old, _) = read_until_caught_up(&mut stream).await?;
    ensure!(
        old.is_empty(),
        "resuming from the caught_up message's cursor replayed {} change(s)",
        old.len()
    );
    let c = create(&ctx, new_record(&s.pid)).await?;
    let live = read_changes(&mut stream, 1).await?;
    ensure_eq!(
        summary(&live),
        vec![(c.record_id, ChangeType::Created as i32, 1)],
        "the next write"
    );
    ensure!(
        live[0].sequence > changes[2].sequence,
        "the new change's sequence is higher than every earlier one"
    );
    Ok(())
}

pub(super) async fn watch_live(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    create(&ctx, new_record(&pid)).await?;
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            start_at_head: true,
            ..watch("", &[&pid])
        },
    )
    .await?;
    let (old, _) = read_until_caught_up(&mut stream).await?;
    ensure!(
        old.is_empty(),
        "start_at_head replayed {} earlier change(s)",
        old.len()
    );
    let r = create(&ctx, new_record(&pid)).await?;
    let r2 = relabel(&ctx, &r, &["hiv"]).await?;
    let mut live = Vec::new();
    while live.len() < 2 {
        let m = next(&mut stream).await?;
        ensure!(m.caught_up, "live messages must have caught_up true");
        live.extend(m.changes);
    }
    strictly_increasing(&live)?;
    ensure_eq!(
        summary(&live),
        vec![
            (r.record_id.clone(), ChangeType::Created as i32, 1),
            (r.record_id.clone(), ChangeType::Updated as i32, 2)
        ],
        "live changes"
    );
    ensure_eq!(
        live[1].record.as_ref(),
        Some(&r2),
        "the live change's record"
    );
    Ok(())
}

pub(super) async fn watch_filters(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    // Another patient's write in the same window must not appear under a patient filter.
    let other = ctx.new_patient();
    create(&ctx, new_record_of(&other, "Condition")).await?;
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            resource_types: vec!["Condition".into()],
            ..watch(&s.cursor, &[&s.pid])
        },
    )
    .await?;
    let (changes, cursor) = read_until_caught_up(&mut stream).await?;
    ensure_eq!(
        summary(&changes),
        vec![
            (s.b.record_id.clone(), ChangeType::Created as i32, 1),
            (s.b.record_id.clone(), ChangeType::Retracted as i32, 2)
        ],
        "Condition changes of the patient"
    );
    drop(stream);
    // Two patients: both patients' changes.
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            resource_types: vec!["Condition".into()],
            ..watch(&s.cursor, &[&s.pid, &other])
        },
    )
    .await?;
    let (both, _) = read_until_caught_up(&mut stream).await?;
    ensure_eq!(both.len(), 3, "Condition changes of the two patients");
    drop(stream);
    // The filtered watcher's cursor moved past everything it skipped: nothing more to replay.
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            resource_types: vec!["Condition".into()],
            ..watch(&cursor, &[&s.pid])
        },
    )
    .await?;
    let (again, _) = read_until_caught_up(&mut stream).await?;
    ensure!(
        again.is_empty(),
        "resuming a filtered watch replayed {} change(s)",
        again.len()
    );
    Ok(())
}

pub(super) async fn watch_metadata_view(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            view: RecordView::Metadata as i32,
            ..watch(&s.cursor, &[&s.pid])
        },
    )
    .await?;
    let (changes, _) = read_until_caught_up(&mut stream).await?;
    ensure_eq!(changes.len(), 3, "changes");
    for c in &changes {
        let Some(r) = &c.record else {
            fail!("a change without its record")
        };
        ensure_metadata_only(r)?;
    }
    Ok(())
}

pub(super) async fn watch_from_beginning(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let mut stream = open(&ctx, watch("", &[&s.pid])).await?;
    let (changes, _) = read_until_caught_up(&mut stream).await?;
    let mut all = vec![(s.a.record_id.clone(), ChangeType::Created as i32, 1)];
    all.extend(expected(&s));
    ensure_eq!(
        summary(&changes),
        all,
        "every change of the patient from the beginning of the feed"
    );
    Ok(())
}

async fn stream_error(
    ctx: &Ctx,
    request: WatchRecordChangesRequest,
) -> TestResult<Result<(), Status>> {
    let mut stream = match client(ctx).watch_record_changes(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => return Ok(Err(status)),
    };
    match tokio::time::timeout(WAIT, stream.message()).await {
        Err(_) => fail!("WatchRecordChanges: neither a message nor an error within {WAIT:?}"),
        Ok(Err(status)) => Ok(Err(status)),
        Ok(Ok(_)) => Ok(Ok(())),
    }
}

pub(super) async fn watch_invalid(ctx: Ctx) -> TestResult {
    let s = scenario(&ctx).await?;
    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let types: Vec<String> = (0..51).map(|_| "Observation".to_owned()).collect();
    let cases: Vec<(&str, WatchRecordChangesRequest, Refusal)> = vec![
        (
            "after_cursor with start_at_head",
            WatchRecordChangesRequest {
                start_at_head: true,
                ..watch(&s.cursor, &[])
            },
            Refusal::new(Code::InvalidArgument).any_bad_request(),
        ),
        (
            "a forged cursor",
            watch(FORGED_TOKEN, &[]),
            Refusal::invalid_under("after_cursor"),
        ),
        (
            "a tampered cursor",
            watch(&tamper(&s.cursor), &[]),
            Refusal::invalid_under("after_cursor"),
        ),
        (
            "1001 patient ids",
            WatchRecordChangesRequest {
                patient_ids: many,
                ..watch(&s.cursor, &[])
            },
            Refusal::invalid_under("patient_ids"),
        ),
        (
            "a malformed patient id",
            watch(&s.cursor, &["12345"]),
            Refusal::invalid_under("patient_ids"),
        ),
        (
            "51 resource types",
            WatchRecordChangesRequest {
                resource_types: types,
                ..watch(&s.cursor, &[&s.pid])
            },
            Refusal::invalid_under("resource_types"),
        ),
        (
            "a malformed resource type",
            WatchRecordChangesRequest {
                resource_types: vec!["Obs ervation".into()],
                ..watch(&s.cursor, &[&s.pid])
            },
            Refusal::invalid_under("resource_types"),
        ),
    ];
    for (what, request, expected) in cases {
        let result = stream_error(&ctx, request).await?;
        refused(result, &expected, &format!("WatchRecordChanges({what})"))?;
    }
    Ok(())
}
