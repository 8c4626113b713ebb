//! FollowRecordChanges: live changes delivered, cursors that resume without gaps and refuse
//! tampering, validation, withheld data classes never delivered, and each delivery audited.
//!
//! The kit writes the changes it follows directly through the deployment's record hosting.

use std::time::Duration;

use carerecord_contracts::access::v1::{
    AuditAction, ChangeNotification, FollowRecordChangesRequest, FollowRecordChangesResponse,
    PatientRecordCount, RecordRef,
};
use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::Record;
use tonic::{Code, Status, Streaming};

use super::support::{
    Client, by_demographics, by_id, client, disclosed_entry, invalid, record_hosting, refusal,
    refused_audited, register, withhold_hiv,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail};
use crate::refusal::{Refusal, altered, refuse_all};

/// The longest the kit waits for a change to be delivered.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// Follows one patient for direct care: from now, or after `cursor`.
pub(super) fn follow(patient_id: &str, cursor: &str) -> FollowRecordChangesRequest {
    FollowRecordChangesRequest {
        patients: vec![by_id(patient_id).unwrap_or_default()],
        purpose_of_use: "TREAT".into(),
        after_cursor: cursor.to_owned(),
        start_at_head: cursor.is_empty(),
        ..Default::default()
    }
}

/// Opens a stream, requiring the call to be accepted.
pub(super) async fn open(
    c: &Client,
    request: FollowRecordChangesRequest,
) -> TestResult<Streaming<FollowRecordChangesResponse>> {
    match c.clone().follow_record_changes(request).await {
        Ok(stream) => Ok(stream.into_inner()),
        Err(status) => fail!(
            "FollowRecordChanges: expected OK, got {}",
            describe(&status)
        ),
    }
}

/// Opens a stream expecting a refusal, which the contract lets come before the first message:
/// as the call's status or as the stream's first item.
async fn open_refused(mut c: Client, request: FollowRecordChangesRequest) -> Result<(), Status> {
    let mut stream = c.follow_record_changes(request).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        Ok(Err(status)) => Err(status),
        _ => Ok(()),
    }
}

/// What a stream delivered while the kit waited.
#[derive(Default)]
pub(super) struct Delivered {
    pub(super) notifications: Vec<ChangeNotification>,
    /// Every message, in order.
    pub(super) messages: Vec<FollowRecordChangesResponse>,
}

impl Delivered {
    /// The (record, version, change type) of every notification, duplicates removed.
    fn changes(&self) -> Vec<(String, i64, i32)> {
        let mut seen = Vec::new();
        for n in &self.notifications {
            let change = (n.record_id.clone(), n.version, n.change_type);
            if !seen.contains(&change) {
                seen.push(change);
            }
        }
        seen
    }
}

/// Reads messages until `done` holds for what was delivered, failing after [`DELIVERY_WAIT`].
pub(super) async fn read_until(
    stream: &mut Streaming<FollowRecordChangesResponse>,
    what: &str,
    done: impl Fn(&Delivered) -> bool,
) -> TestResult<Delivered> {
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    let mut delivered = Delivered::default();
    while !done(&delivered) {
        let message = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => fail!(
                "FollowRecordChanges: {what} was not delivered within {DELIVERY_WAIT:?}; delivered {:?}",
                delivered.changes()
            ),
            Ok(Err(status)) => fail!(
                "FollowRecordChanges: the stream failed: {}",
                describe(&status)
            ),
            Ok(Ok(None)) => fail!("FollowRecordChanges: the server ended the stream before {what}"),
            Ok(Ok(Some(message))) => message,
        };
        ensure!(
            !message.cursor.is_empty(),
            "every message carries a cursor to resume after it"
        );
        if message.notifications.is_empty() {
            ensure!(
                message.audit_entry_id.is_empty() && message.audit_index == 0,
                "a message without notifications has no audit entry"
            );
        } else {
            ensure!(
                uuid::Uuid::parse_str(&message.audit_entry_id).is_ok(),
                "a message with notifications names its audit entry"
            );
        }
        delivered
            .notifications
            .extend(message.notifications.iter().cloned());
        delivered.messages.push(message);
    }
    Ok(delivered)
}

/// Whether `record`'s version `version` was notified.
fn has(delivered: &Delivered, record: &Record) -> bool {
    delivered
        .notifications
        .iter()
        .any(|n| n.record_id == record.record_id && n.version == record.version)
}

/// The cursor of the message that notified `record`.
fn cursor_of(delivered: &Delivered, record: &Record) -> String {
    delivered
        .messages
        .iter()
        .find(|m| {
            m.notifications
                .iter()
                .any(|n| n.record_id == record.record_id && n.version == record.version)
        })
        .map(|m| m.cursor.clone())
        .unwrap_or_default()
}

/// A patient followed from now, a record stored for them before the stream opened and one after.
struct FirstDelivery {
    patient_id: String,
    earlier: Record,
    record: Record,
    delivered: Delivered,
}

async fn first_delivery(ctx: &Ctx) -> TestResult<FirstDelivery> {
    let records = record_hosting(ctx).await?;
    let patient = register(ctx).await?;
    let pid = patient.patient_id.clone();
    // A record written before the stream opens is not delivered to a stream started at the head.
    let earlier = crate::records::create(&records, crate::records::new_record(&pid)).await?;
    let mut stream = open(&client(ctx), follow(&pid, "")).await?;
    let record = crate::records::create(&records, crate::records::new_record(&pid)).await?;
    ctx.absorb(&records);
    let delivered = read_until(
        &mut stream,
        "a record created after the stream opened",
        |d| has(d, &record),
    )
    .await?;
    Ok(FirstDelivery {
        patient_id: pid,
        earlier,
        record,
        delivered,
    })
}

pub(super) async fn live_change(ctx: Ctx) -> TestResult {
    let first = first_delivery(&ctx).await?;
    let record = &first.record;
    ensure_eq!(
        first.delivered.changes(),
        vec![(record.record_id.clone(), 1, ChangeType::Created as i32)],
        "the one change written since the stream opened"
    );
    let Some(n) = first.delivered.notifications.first() else {
        fail!("no notification")
    };
    ensure_eq!(
        (n.resource_type.as_str(), n.patient_id.as_str()),
        (record.resource_type.as_str(), first.patient_id.as_str()),
        "the notification's resource_type and patient_id"
    );
    let writer = crate::records::requester("create");
    ensure!(
        n.provenance
            .as_ref()
            .is_some_and(|p| p.recorded_time.is_some()
                && p.agent.as_ref().map(|a| a.user_id.as_str()) == Some(writer.user_id.as_str())),
        "the notification's provenance names who wrote the change and when, got {:?}",
        n.provenance
    );
    Ok(())
}

pub(super) async fn resume(ctx: Ctx) -> TestResult {
    let first = first_delivery(&ctx).await?;
    let (pid, a) = (first.patient_id.as_str(), &first.record);
    let cursor = cursor_of(&first.delivered, a);
    // Written while nobody follows: created, updated, retracted.
    let records = record_hosting(&ctx).await?;
    let b1 = crate::records::create(&records, crate::records::new_record(pid)).await?;
    let next = Record {
        record_id: b1.record_id.clone(),
        ..crate::records::new_record(pid)
    };
    let b2 = crate::records::update(&records, next, &b1.etag, &[], "kit").await?;
    let b3 = crate::records::retract(&records, &b2, "kit").await?;
    ctx.absorb(&records);
    let expected_b = vec![
        (b1.record_id.clone(), 1, ChangeType::Created as i32),
        (b1.record_id.clone(), 2, ChangeType::Updated as i32),
        (b1.record_id.clone(), 3, ChangeType::Retracted as i32),
    ];
    let mut resumed = open(&client(&ctx), follow(pid, &cursor)).await?;
    let delivered = read_until(&mut resumed, "the changes written since the cursor", |d| {
        has(d, &b3)
    })
    .await?;
    let after: Vec<_> = delivered
        .changes()
        .into_iter()
        .filter(|(id, ..)| *id != a.record_id)
        .collect();
    ensure_eq!(
        after,
        expected_b,
        "resumed after the cursor: every change since, in commit order, none missed"
    );
    // From the beginning: the patient's whole history, then caught up.
    let from_start = FollowRecordChangesRequest {
        start_at_head: false,
        ..follow(pid, "")
    };
    let mut replay = open(&client(&ctx), from_start).await?;
    let delivered = read_until(&mut replay, "the replay up to caught_up", |d| {
        d.messages.iter().any(|m| m.caught_up)
    })
    .await?;
    let mut expected = vec![
        (
            first.earlier.record_id.clone(),
            1,
            ChangeType::Created as i32,
        ),
        (a.record_id.clone(), 1, ChangeType::Created as i32),
    ];
    expected.extend(expected_b);
    ensure_eq!(
        delivered.changes(),
        expected,
        "an empty cursor replays the patient's history in commit order before caught_up"
    );
    Ok(())
}

pub(super) async fn cursor_refused(ctx: Ctx) -> TestResult {
    let first = first_delivery(&ctx).await?;
    let pid = first.patient_id.as_str();
    let cursor = cursor_of(&first.delivered, &first.record);
    let bad_cursor = || refusal(Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    let table = vec![
        (
            "a tampered cursor",
            follow(pid, &crate::records::tamper(&cursor)),
            bad_cursor(),
        ),
        (
            "a cursor of a request for other resource types",
            FollowRecordChangesRequest {
                resource_types: vec!["Observation".into()],
                ..follow(pid, &cursor)
            },
            bad_cursor(),
        ),
        (
            "a cursor of a request for another purpose",
            FollowRecordChangesRequest {
                purpose_of_use: "HOPERAT".into(),
                ..follow(pid, &cursor)
            },
            bad_cursor(),
        ),
    ];
    refuse_all(&client(&ctx), "FollowRecordChanges", open_refused, table).await
}

pub(super) async fn follow_invalid(ctx: Ctx) -> TestResult {
    let pid = uuid::Uuid::new_v4().to_string();
    let base = follow(&pid, "");
    let with = |f: fn(&mut FollowRecordChangesRequest)| altered(&base, f);
    let some = || refusal(Code::InvalidArgument, "INVALID_REQUEST").bad_request();
    let table: Vec<(&str, FollowRecordChangesRequest, Refusal)> = vec![
        (
            "no patient",
            with(|r| r.patients.clear()),
            invalid("patients"),
        ),
        (
            "1001 patients",
            with(|r| {
                r.patients = (0..1001)
                    .map(|_| by_id(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
                    .collect();
            }),
            some().under("patients"),
        ),
        (
            "a patient named by demographics",
            with(|r| r.patients = vec![by_demographics().unwrap_or_default()]),
            some().under("patients[0]"),
        ),
        (
            "purpose ETREAT",
            with(|r| r.purpose_of_use = "ETREAT".into()),
            invalid("purpose_of_use"),
        ),
        (
            "no purpose",
            with(|r| r.purpose_of_use.clear()),
            invalid("purpose_of_use"),
        ),
        (
            "an unknown resource type",
            with(|r| r.resource_types = vec!["CarePathway".into()]),
            some().under("resource_types"),
        ),
        (
            "start_at_head with a cursor",
            with(|r| r.after_cursor = "a-cursor".into()),
            some(),
        ),
    ];
    refuse_all(&client(&ctx), "FollowRecordChanges", open_refused, table).await?;
    let unknown = refusal(Code::NotFound, "PATIENT_NOT_FOUND").resource("Patient", &pid);
    let result = open_refused(client(&ctx), base.clone()).await;
    refused_audited(result, &unknown, "FollowRecordChanges(an unknown patient)").map(drop)
}

pub(super) async fn withheld_not_delivered(ctx: Ctx) -> TestResult {
    let records = record_hosting(&ctx).await?;
    let patient = register(&ctx).await?;
    let pid = patient.patient_id.as_str();
    withhold_hiv(&ctx, pid).await?;
    let mut stream = open(&client(&ctx), follow(pid, "")).await?;
    let labelled = Record {
        data_classes: vec!["hiv".into()],
        ..crate::records::new_record(pid)
    };
    let labelled = crate::records::create(&records, labelled).await?;
    let general = crate::records::create(&records, crate::records::new_record(pid)).await?;
    ctx.absorb(&records);
    let delivered = read_until(
        &mut stream,
        "a general record written after a withheld one",
        |d| has(d, &general),
    )
    .await?;
    ensure!(
        delivered
            .notifications
            .iter()
            .all(|n| n.record_id != labelled.record_id),
        "a change to a record of a withheld data class must never be delivered, got {:?}",
        delivered.changes()
    );
    Ok(())
}

pub(super) async fn delivery_entry(ctx: Ctx) -> TestResult {
    let first = first_delivery(&ctx).await?;
    let Some(message) = first
        .delivered
        .messages
        .iter()
        .find(|m| !m.notifications.is_empty())
    else {
        fail!("no message carried the notification")
    };
    let (index, entry) = (message.audit_index, &message.audit_entry_id);
    let leaf = disclosed_entry(&ctx, index, entry, AuditAction::FollowRecordChanges).await?;
    let notified: Vec<RecordRef> = message
        .notifications
        .iter()
        .map(|n| RecordRef {
            record_id: n.record_id.clone(),
            version: n.version,
        })
        .collect();
    ensure_eq!(
        leaf.returned_records,
        notified,
        "returned_records: the versions notified"
    );
    ensure_eq!(
        leaf.patients,
        vec![PatientRecordCount {
            patient_id: first.patient_id.clone(),
            record_count: notified.len() as i64,
        }],
        "patients: the followed patient and how many of the notified records are theirs"
    );
    ensure_eq!(leaf.purpose_of_use, "TREAT", "purpose_of_use");
    Ok(())
}
