//! RetractRecord: the retraction version, its reason, and refusals.

use carerecord_contracts::records::v1::{Record, RecordStatus, RetractRecordRequest};

use super::support::{
    client, create, ensure_latest, ensure_version, etag_mismatch, get, new_record,
    patient_with_record, relabel, requester, retract, retracted, unknown,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok};
use crate::refusal::{Refusal, refuse_each, refused};

pub(super) async fn retract_basics(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(
        &ctx,
        Record {
            data_classes: vec!["hiv".into()],
            ..new_record(&pid)
        },
    )
    .await?;
    let v2 = retract(&ctx, &v1, "retract").await?;
    ensure_eq!(v2.version, 2, "version");
    ensure_eq!(v2.status, RecordStatus::EnteredInError as i32, "status");
    ensure_eq!(
        v2.retraction_reason,
        "carerecord conformance kit: test data",
        "retraction_reason"
    );
    ensure!(v2.etag != v1.etag, "the etag must change");
    ensure_eq!(v2.payload, v1.payload, "payload");
    ensure_eq!(v2.data_classes, v1.data_classes, "data_classes");
    ensure_eq!(v2.source_system, v1.source_system, "source_system");
    ensure_eq!(v2.create_time, v1.create_time, "create_time");
    ensure_latest(
        &ctx,
        &v1.record_id,
        &v2,
        "GetRecord returns a retracted record",
    )
    .await?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 1).await?,
        v1,
        "version 1 stays readable"
    );
    Ok(())
}

pub(super) async fn retract_twice(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let v2 = retract(&ctx, &v1, "retract").await?;
    refused(
        client(&ctx)
            .retract_record(retract_request(&v1.record_id, &v2.etag, "again"))
            .await,
        &retracted(&v1.record_id),
        "RetractRecord(already retracted)",
    )?;
    ensure_version(&ctx, &v1.record_id, 2, "version after a refused retraction").await?;
    Ok(())
}

pub(super) async fn retract_stale(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    relabel(&ctx, &v1, &["hiv"]).await?;
    refused(
        client(&ctx)
            .retract_record(retract_request(&v1.record_id, &v1.etag, "stale"))
            .await,
        &etag_mismatch(),
        "RetractRecord(stale etag)",
    )?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.status,
        RecordStatus::Current as i32,
        "status after a refused retraction"
    );
    Ok(())
}

/// A retraction of `record_id` by the kit's `retract` requester.
fn retract_request(record_id: &str, etag: &str, reason: &str) -> RetractRecordRequest {
    RetractRecordRequest {
        record_id: record_id.to_owned(),
        etag: etag.to_owned(),
        reason: reason.to_owned(),
        requester: Some(requester("retract")),
    }
}

pub(super) async fn retract_reason(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let table = [String::new(), " \t\n ".to_owned(), "r".repeat(1025)]
        .into_iter()
        .map(|reason| {
            (
                format!("reason of {} characters", reason.chars().count()),
                retract_request(&v1.record_id, &v1.etag, &reason),
                Refusal::invalid("reason"),
            )
        })
        .collect();
    refuse_each!(client(&ctx), retract_record, table).await?;
    // 1024 characters, counted as characters, not bytes.
    let reason = "é".repeat(1024);
    let retracted = ok(
        client(&ctx)
            .retract_record(retract_request(&v1.record_id, &v1.etag, &reason))
            .await,
        "RetractRecord(reason of 1024 characters)",
    )?;
    ensure_eq!(
        retracted.record.map(|r| r.retraction_reason),
        Some(reason),
        "retraction_reason"
    );
    Ok(())
}

pub(super) async fn retract_invalid(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let base = retract_request(&v1.record_id, &v1.etag, "test");
    let mut table = Vec::new();
    for (request, field) in [
        (retract_request("", &v1.etag, "test"), "record_id"),
        (retract_request("x", &v1.etag, "test"), "record_id"),
        (retract_request(&v1.record_id, "", "test"), "etag"),
        (
            RetractRecordRequest {
                requester: None,
                ..base.clone()
            },
            "requester",
        ),
    ] {
        table.push((format!("bad {field}"), request, Refusal::invalid(field)));
    }
    let unknown_id = uuid::Uuid::new_v4().to_string();
    table.push((
        "unknown record".to_owned(),
        RetractRecordRequest {
            record_id: unknown_id.clone(),
            ..base
        },
        unknown(&unknown_id),
    ));
    refuse_each!(client(&ctx), retract_record, table).await?;
    ensure_latest(
        &ctx,
        &v1.record_id,
        &v1,
        "the record after refused retractions",
    )
    .await?;
    Ok(())
}
