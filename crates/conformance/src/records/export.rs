//! ExportRecords: completeness, order, batching, resumption, validation.

use std::time::Duration;

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{
    ExportRecordsRequest, ExportRecordsResponse, PatientIdList, Record, RecordStatus, RecordView,
};
use tonic::{Code, Status};

use super::support::{
    FORGED_TOKEN, client, create, day, ids, new_record, new_record_of, patient_with_record,
    patient_with_records, relabel, retract, tamper,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail};
use crate::refusal::{Refusal, refused};

pub(super) fn by_patients(pids: &[&str]) -> ExportRecordsRequest {
    ExportRecordsRequest {
        scope: Some(Scope::Patients(PatientIdList {
            patient_ids: pids.iter().map(|p| (*p).to_owned()).collect(),
        })),
        ..Default::default()
    }
}

/// Runs an export to the end; returns every message. Fails on a non-OK ending.
pub(super) async fn export_all(
    ctx: &Ctx,
    request: ExportRecordsRequest,
) -> TestResult<Vec<ExportRecordsResponse>> {
    match export_until(ctx, request, usize::MAX).await? {
        (messages, Ok(())) => Ok(messages),
        (_, Err(status)) => fail!(
            "ExportRecords: expected the stream to end OK, got {}",
            describe(&status)
        ),
    }
}

/// Reads up to `limit` messages; returns them and how the stream ended (Ok for a clean end,
/// or for stopping at the limit).
async fn export_until(
    ctx: &Ctx,
    request: ExportRecordsRequest,
    limit: usize,
) -> TestResult<(Vec<ExportRecordsResponse>, Result<(), Status>)> {
    let mut stream = match client(ctx).export_records(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => return Ok((Vec::new(), Err(status))),
    };
    let mut messages = Vec::new();
    while messages.len() < limit {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Err(_) => fail!("ExportRecords: no message or end of stream within 30 s"),
            Ok(Ok(Some(m))) => messages.push(m),
            Ok(Ok(None)) => return Ok((messages, Ok(()))),
            Ok(Err(status)) => return Ok((messages, Err(status))),
        }
    }
    Ok((messages, Ok(())))
}

fn records_of(messages: &[ExportRecordsResponse]) -> Vec<Record> {
    messages
        .iter()
        .flat_map(|m| m.records.iter().cloned())
        .collect()
}

pub(super) async fn export_complete(ctx: Ctx) -> TestResult {
    let (pa, pb, pc) = (ctx.new_patient(), ctx.new_patient(), ctx.new_patient());
    let a1 = create(&ctx, new_record(&pa)).await?;
    let b1 = create(&ctx, new_record(&pb)).await?;
    let a2 = create(&ctx, new_record_of(&pa, "Condition")).await?;
    create(&ctx, new_record(&pc)).await?;
    let b2 = create(&ctx, new_record(&pb)).await?;
    let a3 = create(&ctx, new_record(&pa)).await?;
    retract(&ctx, &a3, "retract").await?;
    let a1v2 = relabel(&ctx, &a1, &["genomic"]).await?;
    let messages = export_all(&ctx, by_patients(&[&pa, &pb, &pb])).await?;
    ensure!(!messages.is_empty(), "an export sends at least one message");
    let records = records_of(&messages);
    ensure_eq!(
        records,
        vec![a1v2, b1, a2, b2],
        "exported records (latest versions, creation order, duplicates of ids ignored)"
    );
    // Ids in any case select the same patients.
    let messages = export_all(&ctx, by_patients(&[&pa.to_uppercase()])).await?;
    ensure_eq!(
        records_of(&messages).len(),
        2,
        "records exported for an upper-case patient id"
    );
    Ok(())
}

pub(super) async fn export_batching(ctx: Ctx) -> TestResult {
    let (pid, records) = patient_with_records(&ctx, 105).await?;
    let made = ids(&records);
    let messages = export_all(&ctx, by_patients(&[&pid])).await?;
    ensure!(
        messages.len() >= 2,
        "105 records need at least 2 messages of at most 100, got {}",
        messages.len()
    );
    let watch = messages[0].watch_cursor.clone();
    ensure!(!watch.is_empty(), "watch_cursor must be set");
    for (i, m) in messages.iter().enumerate() {
        ensure!(
            m.records.len() <= 100,
            "message {i} holds {} records (at most 100)",
            m.records.len()
        );
        ensure!(
            !m.resume_cursor.is_empty(),
            "message {i} has no resume_cursor"
        );
        ensure_eq!(m.watch_cursor, watch, "watch_cursor of message {i}");
    }
    ensure_eq!(
        ids(&records_of(&messages)),
        made,
        "every record once, in creation order"
    );
    Ok(())
}

pub(super) async fn export_empty(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let messages = export_all(&ctx, by_patients(&[&pid])).await?;
    ensure_eq!(messages.len(), 1, "messages for an export matching nothing");
    ensure!(
        messages[0].records.is_empty(),
        "the message holds no records"
    );
    Ok(())
}

pub(super) async fn export_resume(ctx: Ctx) -> TestResult {
    let (pid, made) = patient_with_records(&ctx, 150).await?;
    let request = by_patients(&[&pid]);
    let full = export_all(&ctx, request.clone()).await?;
    let full_records = records_of(&full);
    ensure_eq!(
        full_records.len(),
        150,
        "records in an uninterrupted export"
    );
    // Interrupt after the first message.
    let (first, _) = export_until(&ctx, request.clone(), 1).await?;
    let Some(first) = first.into_iter().next() else {
        fail!("ExportRecords sent no message")
    };
    ensure!(
        first.records.len() < 150,
        "150 records cannot fit one message of at most 100"
    );
    // Writes after the snapshot: a new record, an update and a retraction of records not yet sent.
    create(&ctx, new_record(&pid)).await?;
    let sent = first.records.len();
    relabel(&ctx, &made[sent], &["hiv"]).await?;
    retract(&ctx, &made[149], "retract").await?;
    let resumed = export_all(
        &ctx,
        ExportRecordsRequest {
            resume_cursor: first.resume_cursor.clone(),
            ..request.clone()
        },
    )
    .await?;
    for m in &resumed {
        ensure_eq!(
            m.watch_cursor,
            first.watch_cursor,
            "watch_cursor of a resumed export"
        );
    }
    let mut combined = first.records.clone();
    combined.extend(records_of(&resumed));
    ensure!(
        combined == full_records,
        "the interrupted and resumed export differs from the uninterrupted one ({} vs {} records)",
        combined.len(),
        full_records.len()
    );
    Ok(())
}

pub(super) async fn export_filters(ctx: Ctx) -> TestResult {
    let (pid, a) = patient_with_record(&ctx).await?;
    let b = create(
        &ctx,
        Record {
            data_classes: vec!["safeguarding".into()],
            ..new_record_of(&pid, "Condition")
        },
    )
    .await?;
    let c = create(&ctx, new_record(&pid)).await?;
    let c = retract(&ctx, &c, "retract").await?;
    let base = by_patients(&[&pid]);
    let cases: Vec<(&str, ExportRecordsRequest, Vec<String>)> = vec![
        (
            "include_retracted",
            ExportRecordsRequest {
                include_retracted: true,
                ..base.clone()
            },
            vec![
                a.record_id.clone(),
                b.record_id.clone(),
                c.record_id.clone(),
            ],
        ),
        (
            "resource_types [Condition]",
            ExportRecordsRequest {
                resource_types: vec!["Condition".into()],
                ..base.clone()
            },
            vec![b.record_id.clone()],
        ),
        (
            "excluded_data_classes [safeguarding]",
            ExportRecordsRequest {
                excluded_data_classes: vec!["safeguarding".into()],
                ..base.clone()
            },
            vec![a.record_id.clone()],
        ),
    ];
    for (what, request, expected) in cases {
        let messages = export_all(&ctx, request).await?;
        ensure_eq!(
            ids(&records_of(&messages)),
            expected,
            "ExportRecords({what})"
        );
    }
    let messages = export_all(
        &ctx,
        ExportRecordsRequest {
            include_retracted: true,
            view: RecordView::Metadata as i32,
            ..base
        },
    )
    .await?;
    let records = records_of(&messages);
    ensure_eq!(records.len(), 3, "records in METADATA view");
    for r in &records {
        ensure!(
            r.payload.is_empty(),
            "payload must be empty in METADATA view"
        );
        ensure!(
            !r.content_hash.is_empty() && r.payload_size > 0,
            "content_hash and payload_size are set in METADATA view"
        );
    }
    ensure_eq!(
        records[2].status,
        RecordStatus::EnteredInError as i32,
        "status of the retracted record"
    );
    Ok(())
}

pub(super) async fn export_updated_between(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let x = create(&ctx, new_record_of(&pid, "Immunization")).await?;
    let y = create(&ctx, new_record_of(&pid, "Immunization")).await?;
    let (Some(xt), Some(yt)) = (x.update_time, y.update_time) else {
        fail!("records without update_time")
    };
    if xt == yt {
        return Err(crate::harness::Fail::Skipped(
            "two consecutive writes got the same update_time".into(),
        ));
    }
    let ours = |messages: &[ExportRecordsResponse]| -> Vec<String> {
        records_of(messages)
            .into_iter()
            .filter(|r| r.patient_id == pid)
            .map(|r| r.record_id)
            .collect()
    };
    let types = vec!["Immunization".to_owned()];
    let from_x = ExportRecordsRequest {
        scope: Some(Scope::UpdatedBetween(Period {
            start: Some(xt),
            end: None,
        })),
        resource_types: types.clone(),
        ..Default::default()
    };
    let messages = export_all(&ctx, from_x).await?;
    ensure_eq!(
        ours(&messages),
        vec![x.record_id.clone(), y.record_id.clone()],
        "records updated at or after the first's update_time"
    );
    let x_only = ExportRecordsRequest {
        scope: Some(Scope::UpdatedBetween(Period {
            start: Some(xt),
            end: Some(yt),
        })),
        resource_types: types.clone(),
        ..Default::default()
    };
    let messages = export_all(&ctx, x_only).await?;
    ensure_eq!(
        ours(&messages),
        vec![x.record_id.clone()],
        "records updated in [x, y) (end exclusive)"
    );
    // Relabelling x moves its update_time past y's: a window from y now includes both.
    let x2 = relabel(&ctx, &x, &["genomic"]).await?;
    let from_y = ExportRecordsRequest {
        scope: Some(Scope::UpdatedBetween(Period {
            start: Some(yt),
            end: None,
        })),
        resource_types: types,
        ..Default::default()
    };
    let messages = export_all(&ctx, from_y).await?;
    let got: Vec<Record> = records_of(&messages)
        .into_iter()
        .filter(|r| r.patient_id == pid)
        .collect();
    ensure_eq!(
        got,
        vec![x2, y],
        "records updated since y's update_time, in creation order, latest versions"
    );
    Ok(())
}

pub(super) async fn export_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    create(&ctx, new_record(&pid)).await?;
    create(&ctx, new_record(&pid)).await?;
    let other = ctx.new_patient();
    create(&ctx, new_record(&other)).await?;
    // A genuine cursor of one query, to try with another.
    let messages = export_all(&ctx, by_patients(&[&pid])).await?;
    let Some(cursor) = messages.first().map(|m| m.resume_cursor.clone()) else {
        fail!("ExportRecords sent no message")
    };
    let too_many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let resuming = |cursor: &str, patient: &str| ExportRecordsRequest {
        resume_cursor: cursor.to_owned(),
        ..by_patients(&[patient])
    };
    let bad_cursor = || Refusal::invalid_under("resume_cursor");
    // No scope: the contract does not say which field the violation names.
    let any_field = Refusal::new(Code::InvalidArgument).any_bad_request();
    let cases: Vec<(&str, ExportRecordsRequest, Refusal)> = vec![
        ("no scope", ExportRecordsRequest::default(), any_field),
        (
            "no patient ids",
            by_patients(&[]),
            Refusal::invalid_under("patients"),
        ),
        (
            "1001 patient ids",
            ExportRecordsRequest {
                scope: Some(Scope::Patients(PatientIdList {
                    patient_ids: too_many,
                })),
                ..Default::default()
            },
            Refusal::invalid_under("patients"),
        ),
        (
            "a malformed patient id",
            by_patients(&[&pid, "not-a-uuid"]),
            Refusal::invalid_under("patients"),
        ),
        (
            "updated_between.start equal to end",
            ExportRecordsRequest {
                scope: Some(Scope::UpdatedBetween(Period {
                    start: Some(day(1)),
                    end: Some(day(1)),
                })),
                ..Default::default()
            },
            Refusal::invalid_under("updated_between"),
        ),
        (
            "an unknown excluded data class",
            ExportRecordsRequest {
                excluded_data_classes: vec!["secret".into()],
                ..by_patients(&[&pid])
            },
            Refusal::invalid_under("excluded_data_classes"),
        ),
        (
            "a malformed resource type",
            ExportRecordsRequest {
                resource_types: vec!["not a type".into()],
                ..by_patients(&[&pid])
            },
            Refusal::invalid_under("resource_types"),
        ),
        (
            "a forged resume_cursor",
            resuming(FORGED_TOKEN, &pid),
            bad_cursor(),
        ),
        (
            "a tampered resume_cursor",
            resuming(&tamper(&cursor), &pid),
            bad_cursor(),
        ),
        (
            "a resume_cursor of another query",
            resuming(&cursor, &other),
            bad_cursor(),
        ),
        (
            "a resume_cursor with other filters",
            ExportRecordsRequest {
                include_retracted: true,
                ..resuming(&cursor, &pid)
            },
            bad_cursor(),
        ),
    ];
    for (what, request, expected) in cases {
        let (messages, end) = export_until(&ctx, request, usize::MAX).await?;
        refused(end, &expected, &format!("ExportRecords({what})"))?;
        ensure!(
            records_of(&messages).is_empty(),
            "ExportRecords({what}): records were sent before the error"
        );
    }
    Ok(())
}
