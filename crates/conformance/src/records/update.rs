//! UpdateRecord: versions, etags, update masks and the order of checks.

use carerecord_contracts::records::v1::{Record, RecordStatus, UpdateRecordRequest};
use prost_types::FieldMask;

use super::support::{
    FHIR_JSON, client, create, day, ensure_latest, ensure_version, etag_mismatch, new_record,
    observation, patient_with_record, payload_with, relabel, requester, retract, retracted,
    sha256_hex, ts_key, unknown, update,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq};
use crate::refusal::{Refusal, masks_refused, refuse_each, refused};

fn update_request(record: Record, etag: &str, paths: &[&str]) -> UpdateRecordRequest {
    UpdateRecordRequest {
        record: Some(record),
        etag: etag.to_owned(),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        requester: Some(requester("update")),
    }
}

pub(super) async fn update_payload(ctx: Ctx) -> TestResult {
    let (pid, v1) = patient_with_record(&ctx).await?;
    let payload = observation(&pid);
    let change = Record {
        record_id: v1.record_id.clone(),
        payload: payload.clone(),
        content_type: FHIR_JSON.to_owned(),
        // Record.etag is ignored: only the request's etag counts.
        etag: "not-the-etag".to_owned(),
        ..Default::default()
    };
    let v2 = update(&ctx, change, &v1.etag, &["payload"], "update").await?;
    ensure_eq!(v2.version, 2, "version");
    ensure!(v2.etag != v1.etag, "the etag must change on every write");
    ensure_eq!(v2.payload, payload, "payload");
    ensure_eq!(v2.content_hash, sha256_hex(&payload), "content_hash");
    ensure_eq!(v2.create_time, v1.create_time, "create_time");
    ensure!(
        ts_key(&v2.update_time) >= ts_key(&v1.update_time),
        "update_time must not go backwards"
    );
    ensure_eq!(v2.patient_id, v1.patient_id, "patient_id");
    ensure_eq!(v2.resource_type, v1.resource_type, "resource_type");
    ensure_eq!(v2.recorded_time, v1.recorded_time, "recorded_time");
    ensure_eq!(v2.status, RecordStatus::Current as i32, "status");
    ensure_latest(&ctx, &v1.record_id, &v2, "GetRecord after UpdateRecord").await?;
    Ok(())
}

pub(super) async fn stale_etag(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let v2 = relabel(&ctx, &v1, &["genomic"]).await?;
    let change = Record {
        record_id: v1.record_id.clone(),
        data_classes: vec!["hiv".into()],
        ..Default::default()
    };
    refused(
        client(&ctx)
            .update_record(update_request(change, &v1.etag, &["data_classes"]))
            .await,
        &etag_mismatch(),
        "UpdateRecord(version 1's etag after version 2)",
    )?;
    ensure_latest(
        &ctx,
        &v1.record_id,
        &v2,
        "the latest version after a stale update",
    )
    .await?;
    Ok(())
}

pub(super) async fn update_without_change(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let same = Record {
        record_id: v1.record_id.clone(),
        ..v1.clone()
    };
    let v2 = update(&ctx, same, &v1.etag, &[], "update").await?;
    ensure_eq!(v2.version, 2, "version after an update changing nothing");
    ensure!(v2.etag != v1.etag, "the etag must change on every write");
    ensure_eq!(v2.payload, v1.payload, "payload");
    Ok(())
}

pub(super) async fn update_mask_partial(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(
        &ctx,
        Record {
            author: "https://fhir.nhs.uk/Id/sds-user-id|123456789012".into(),
            ..new_record(&pid)
        },
    )
    .await?;
    let new_payload = observation(&pid);
    // Everything set, but only data_classes selected.
    let change = Record {
        record_id: v1.record_id.clone(),
        payload: new_payload.clone(),
        content_type: FHIR_JSON.into(),
        data_classes: vec!["sexual-health".into()],
        source_system: "ignored".into(),
        author: String::new(),
        ..Default::default()
    };
    let v2 = update(&ctx, change.clone(), &v1.etag, &["data_classes"], "update").await?;
    ensure_eq!(v2.data_classes, vec!["sexual-health"], "data_classes");
    ensure_eq!(v2.payload, v1.payload, "payload (not in the mask)");
    ensure_eq!(
        v2.source_system,
        v1.source_system,
        "source_system (not in the mask)"
    );
    ensure_eq!(v2.author, v1.author, "author (not in the mask)");
    let v3 = update(&ctx, change, &v2.etag, &["payload"], "update").await?;
    ensure_eq!(v3.payload, new_payload, "payload");
    ensure_eq!(v3.content_hash, sha256_hex(&new_payload), "content_hash");
    ensure_eq!(
        v3.data_classes,
        vec!["sexual-health"],
        "data_classes (not in the mask)"
    );
    ensure_eq!(v3.author, v1.author, "author (not in the mask)");
    ensure_eq!(v3.version, 3, "version");
    Ok(())
}

pub(super) async fn update_full_replacement(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    for mask in [&[][..], &["*"][..]] {
        let v1 = create(
            &ctx,
            Record {
                author: "device|cgm-1".into(),
                data_classes: vec!["genomic".into()],
                effective_time: Some(day(3)),
                ..new_record(&pid)
            },
        )
        .await?;
        let payload = observation(&pid);
        let change = Record {
            record_id: v1.record_id.clone(),
            content_type: FHIR_JSON.into(),
            payload: payload.clone(),
            authoring_organisation_ods_code: "rx1".into(),
            source_system: "replacement".into(),
            ..Default::default()
        };
        let v2 = update(&ctx, change, &v1.etag, mask, "update").await?;
        let what = format!("update_mask {mask:?}");
        ensure_eq!(v2.payload, payload, "{what}: payload");
        ensure!(
            v2.data_classes.is_empty(),
            "{what}: data_classes must be cleared, got {:?}",
            v2.data_classes
        );
        ensure_eq!(
            v2.effective_time,
            None,
            "{what}: effective_time must be cleared"
        );
        ensure_eq!(v2.author, "", "{what}: author must be cleared");
        ensure_eq!(
            v2.authoring_organisation_ods_code,
            "RX1",
            "{what}: authoring_organisation_ods_code"
        );
        ensure_eq!(v2.source_system, "replacement", "{what}: source_system");
        ensure_eq!(
            v2.recorded_time,
            v1.recorded_time,
            "{what}: recorded_time is immutable"
        );
    }
    Ok(())
}

/// A change of `record_id`'s data classes to `hiv` alone.
fn relabelling(record_id: &str) -> Record {
    Record {
        record_id: record_id.to_owned(),
        data_classes: vec!["hiv".into()],
        ..Default::default()
    }
}

/// A change of `record_id`'s payload (and content type).
fn new_payload(record_id: &str, content_type: &str, payload: Vec<u8>) -> Record {
    Record {
        record_id: record_id.to_owned(),
        content_type: content_type.to_owned(),
        payload,
        ..Default::default()
    }
}

/// An Observation about a patient no test created.
fn about_someone_else() -> Vec<u8> {
    payload_with(
        "Observation",
        "subject",
        &format!("Patient/{}", uuid::Uuid::new_v4()),
    )
}

pub(super) async fn update_full_replacement_required(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let change = Record {
        record_id: v1.record_id.clone(),
        source_system: String::new(),
        ..v1.clone()
    };
    refused(
        client(&ctx)
            .update_record(update_request(change, &v1.etag, &[]))
            .await,
        &Refusal::invalid("record.source_system"),
        "UpdateRecord(full replacement, empty source_system)",
    )?;
    ensure_version(&ctx, &v1.record_id, 1, "version after a refused update").await?;
    Ok(())
}

pub(super) async fn update_mask_invalid(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let masks: &[&[&str]] = &[
        &["status"],
        &["patient_id"],
        &["resource_type"],
        &["recorded_time"],
        &["etag"],
        &["no_such_field"],
    ];
    let table = masks_refused(
        masks,
        |paths| update_request(v1.clone(), &v1.etag, paths),
        || Refusal::invalid("update_mask"),
    );
    refuse_each!(client(&ctx), update_record, table).await?;
    ensure_version(&ctx, &v1.record_id, 1, "version after refused updates").await?;
    Ok(())
}

pub(super) async fn update_immutable(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let moved = Record {
        patient_id: uuid::Uuid::new_v4().to_string(),
        ..v1.clone()
    };
    let retyped = Record {
        resource_type: "Condition".into(),
        ..v1.clone()
    };
    let table = vec![
        (
            "different patient_id".to_owned(),
            update_request(moved, &v1.etag, &[]),
            Refusal::invalid("record.patient_id"),
        ),
        (
            "different resource_type".to_owned(),
            update_request(retyped, &v1.etag, &["data_classes"]),
            Refusal::invalid("record.resource_type"),
        ),
    ];
    refuse_each!(client(&ctx), update_record, table).await?;
    // Equal values are allowed.
    let same = Record {
        data_classes: vec!["hiv".into()],
        ..v1.clone()
    };
    let v2 = update(&ctx, same, &v1.etag, &["data_classes"], "update").await?;
    ensure_eq!(
        v2.version,
        2,
        "an update repeating patient_id and resource_type succeeds"
    );
    Ok(())
}

fn set_record_id(request: &mut UpdateRecordRequest, record_id: &str) {
    if let Some(r) = request.record.as_mut() {
        r.record_id = record_id.to_owned();
    }
}

pub(super) async fn update_missing_fields(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let with = |change: fn(&mut UpdateRecordRequest)| {
        let mut request = update_request(relabelling(&v1.record_id), &v1.etag, &["data_classes"]);
        change(&mut request);
        request
    };
    let mut table = Vec::new();
    for (request, field) in [
        (with(|r| set_record_id(r, "")), "record.record_id"),
        (with(|r| set_record_id(r, "12345")), "record.record_id"),
        (with(|r| r.etag.clear()), "etag"),
        (with(|r| r.requester = None), "requester"),
    ] {
        table.push((format!("bad {field}"), request, Refusal::invalid(field)));
    }
    refuse_each!(client(&ctx), update_record, table).await?;
    ensure_version(&ctx, &v1.record_id, 1, "version after refused updates").await?;
    Ok(())
}

pub(super) async fn update_unknown(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    refused(
        client(&ctx)
            .update_record(update_request(
                relabelling(&id),
                "some-etag",
                &["data_classes"],
            ))
            .await,
        &unknown(&id),
        "UpdateRecord(unknown record)",
    )
    .map(|_| ())
}

pub(super) async fn update_retracted(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let v2 = retract(&ctx, &v1, "retract").await?;
    refused(
        client(&ctx)
            .update_record(update_request(
                relabelling(&v1.record_id),
                &v2.etag,
                &["data_classes"],
            ))
            .await,
        &retracted(&v1.record_id),
        "UpdateRecord(retracted record)",
    )?;
    ensure_latest(
        &ctx,
        &v1.record_id,
        &v2,
        "latest version after a refused update",
    )
    .await?;
    Ok(())
}

pub(super) async fn update_order_of_checks(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let relabelled = relabel(&ctx, &v1, &["hiv"]).await?;
    let stale = v1.etag.clone();
    let id = &v1.record_id;
    // Validation before existence: an unknown record and no requester.
    let mut no_requester = update_request(
        relabelling(&uuid::Uuid::new_v4().to_string()),
        &stale,
        &["data_classes"],
    );
    no_requester.requester = None;
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let payload = |etag: &str| {
        let change = new_payload(id, FHIR_JSON, about_someone_else());
        update_request(change, etag, &["payload"])
    };
    let table = vec![
        (
            "unknown record, no requester".to_owned(),
            no_requester,
            Refusal::invalid("requester"),
        ),
        // Existence before etag.
        (
            "unknown record, any etag".to_owned(),
            update_request(relabelling(&unknown_id), &stale, &["data_classes"]),
            unknown(&unknown_id),
        ),
        // Etag before the payload's check against the stored patient.
        (
            "stale etag, payload about another patient".to_owned(),
            payload(&stale),
            etag_mismatch(),
        ),
    ];
    refuse_each!(client(&ctx), update_record, table).await?;
    let retracted_v3 = retract(&ctx, &relabelled, "retract").await?;
    let genomic = Record {
        record_id: id.clone(),
        data_classes: vec!["genomic".into()],
        ..Default::default()
    };
    let table = vec![
        // Etag before state.
        (
            "retracted record, stale etag".to_owned(),
            update_request(genomic, &relabelled.etag, &["data_classes"]),
            etag_mismatch(),
        ),
        // State before the payload's check against the stored patient.
        (
            "retracted record, payload about another patient".to_owned(),
            payload(&retracted_v3.etag),
            retracted(id),
        ),
    ];
    refuse_each!(client(&ctx), update_record, table).await
}

pub(super) async fn update_payload_checked(ctx: Ctx) -> TestResult {
    let (pid, v1) = patient_with_record(&ctx).await?;
    let fhir = |payload| new_payload(&v1.record_id, FHIR_JSON, payload);
    let mut table = Vec::new();
    for (payload, what) in [
        (about_someone_else(), "another patient"),
        (
            payload_with("Condition", "subject", &format!("Patient/{pid}")),
            "another resourceType",
        ),
        (b"{\"resourceType\":".to_vec(), "not JSON"),
    ] {
        table.push((
            format!("payload: {what}"),
            update_request(fhir(payload), &v1.etag, &["payload"]),
            Refusal::invalid("record.payload"),
        ));
    }
    let plain = new_payload(&v1.record_id, "text/plain", observation(&pid));
    table.push((
        "content_type text/plain".to_owned(),
        update_request(plain, &v1.etag, &["payload"]),
        Refusal::invalid("record.content_type"),
    ));
    refuse_each!(client(&ctx), update_record, table).await?;
    ensure_latest(&ctx, &v1.record_id, &v1, "the record after refused updates").await?;
    Ok(())
}
