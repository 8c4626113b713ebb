//! UpdateRecord, RetractRecord and ListRecordVersions: versions, etags, order of checks.

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::{
    ListRecordVersionsRequest, Record, RecordStatus, RecordVersion, RecordView,
    RetractRecordRequest, UpdateRecordRequest,
};
use prost_types::FieldMask;
use tonic::Code;

use super::{
    RESOURCE_TYPE, client, create, get, new_record, observation, payload_with, relabel, requester,
    retract, sha256_hex, update,
};
use crate::harness::{
    Case, Ctx, TestResult, ensure, ensure_eq, err, fail, has_precondition, has_reason,
    has_resource, has_violation, ok,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "REC-UPD-001",
            "UpdateRecord with the latest etag writes version 2 with a new etag; create_time, patient_id and resource_type unchanged",
            update_payload,
        ),
        Case::new(
            "REC-UPD-002",
            "UpdateRecord with a stale etag -> ABORTED, ErrorInfo ETAG_MISMATCH, nothing written",
            stale_etag,
        ),
        Case::new(
            "REC-UPD-003",
            "Every successful UpdateRecord writes a new version, even if no value changed",
            update_without_change,
        ),
        Case::new(
            "REC-UPD-004",
            "update_mask `data_classes` replaces only the data classes; `payload` replaces payload and content_type only",
            update_mask_partial,
        ),
        Case::new(
            "REC-UPD-005",
            "An empty update_mask or `*` replaces every updatable field: empty optional fields are cleared",
            update_full_replacement,
        ),
        Case::new(
            "REC-UPD-006",
            "A full replacement with an empty required field -> INVALID_ARGUMENT naming it",
            update_full_replacement_required,
        ),
        Case::new(
            "REC-UPD-007",
            "update_mask naming an unknown or non-updatable path -> INVALID_ARGUMENT naming `update_mask`",
            update_mask_invalid,
        ),
        Case::new(
            "REC-UPD-008",
            "record.patient_id or record.resource_type set and different from the stored value -> INVALID_ARGUMENT",
            update_immutable,
        ),
        Case::new(
            "REC-UPD-009",
            "UpdateRecord without record_id, etag or requester -> INVALID_ARGUMENT naming the field",
            update_missing_fields,
        ),
        Case::new(
            "REC-UPD-010",
            "UpdateRecord of an unknown record -> NOT_FOUND with ResourceInfo",
            update_unknown,
        ),
        Case::new(
            "REC-UPD-011",
            "UpdateRecord of a retracted record -> FAILED_PRECONDITION, PreconditionFailure RECORD_STATUS on the record_id",
            update_retracted,
        ),
        Case::new(
            "REC-UPD-012",
            "Order of checks: validation, then existence, then etag, then state, then the payload against stored values",
            update_order_of_checks,
        ),
        Case::new(
            "REC-UPD-013",
            "A new payload is checked against the stored patient: referencing another patient -> INVALID_ARGUMENT `record.payload`",
            update_payload_checked,
        ),
        Case::new(
            "REC-RET-001",
            "RetractRecord writes a version with status ENTERED_IN_ERROR, the reason and the same payload; GetRecord still returns it",
            retract_basics,
        ),
        Case::new(
            "REC-RET-002",
            "RetractRecord of a retracted record -> FAILED_PRECONDITION, PreconditionFailure RECORD_STATUS",
            retract_twice,
        ),
        Case::new(
            "REC-RET-003",
            "RetractRecord with a stale etag -> ABORTED, ErrorInfo ETAG_MISMATCH",
            retract_stale,
        ),
        Case::new(
            "REC-RET-004",
            "RetractRecord reason: missing, white space only or over 1024 characters -> INVALID_ARGUMENT `reason`; 1024 accepted",
            retract_reason,
        ),
        Case::new(
            "REC-RET-005",
            "RetractRecord without record_id, etag or requester -> INVALID_ARGUMENT; unknown record -> NOT_FOUND",
            retract_invalid,
        ),
        Case::new(
            "REC-VER-001",
            "ListRecordVersions lists every version newest first, with its change type and requester",
            versions_basics,
        ),
        Case::new(
            "REC-VER-002",
            "ListRecordVersions pages through every version without gaps or duplicates; later writes are not listed",
            versions_paging,
        ),
        Case::new(
            "REC-VER-003",
            "ListRecordVersions page_token forged, tampered with or issued for another record -> INVALID_ARGUMENT `page_token`",
            versions_bad_token,
        ),
        Case::new(
            "REC-VER-004",
            "ListRecordVersions of an unknown record -> NOT_FOUND; malformed record_id -> INVALID_ARGUMENT; METADATA view has no payload",
            versions_errors_and_view,
        ),
    ]
}

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

async fn update_payload(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let payload = observation(&pid);
    let change = Record {
        record_id: v1.record_id.clone(),
        payload: payload.clone(),
        content_type: super::FHIR_JSON.to_owned(),
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
        super::ts_key(&v2.update_time) >= super::ts_key(&v1.update_time),
        "update_time must not go backwards"
    );
    ensure_eq!(v2.patient_id, v1.patient_id, "patient_id");
    ensure_eq!(v2.resource_type, v1.resource_type, "resource_type");
    ensure_eq!(v2.recorded_time, v1.recorded_time, "recorded_time");
    ensure_eq!(v2.status, RecordStatus::Current as i32, "status");
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v2,
        "GetRecord after UpdateRecord"
    );
    Ok(())
}

async fn stale_etag(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let v2 = relabel(&ctx, &v1, &["genomic"]).await?;
    let change = Record {
        record_id: v1.record_id.clone(),
        data_classes: vec!["hiv".into()],
        ..Default::default()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(change, &v1.etag, &["data_classes"]))
            .await,
        Code::Aborted,
        "UpdateRecord(version 1's etag after version 2)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v2,
        "the latest version after a stale update"
    );
    Ok(())
}

async fn update_without_change(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
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

async fn update_mask_partial(ctx: Ctx) -> TestResult {
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
        content_type: super::FHIR_JSON.into(),
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

async fn update_full_replacement(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    for mask in [&[][..], &["*"][..]] {
        let v1 = create(
            &ctx,
            Record {
                author: "device|cgm-1".into(),
                data_classes: vec!["genomic".into()],
                effective_time: Some(super::day(3)),
                ..new_record(&pid)
            },
        )
        .await?;
        let payload = observation(&pid);
        let change = Record {
            record_id: v1.record_id.clone(),
            content_type: super::FHIR_JSON.into(),
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

async fn update_full_replacement_required(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let change = Record {
        record_id: v1.record_id.clone(),
        source_system: String::new(),
        ..v1.clone()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(change, &v1.etag, &[]))
            .await,
        Code::InvalidArgument,
        "UpdateRecord(full replacement, empty source_system)",
    )?;
    has_violation(&status, "record.source_system")?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.version,
        1,
        "version after a refused update"
    );
    Ok(())
}

async fn update_mask_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    for path in [
        "status",
        "patient_id",
        "resource_type",
        "recorded_time",
        "etag",
        "no_such_field",
    ] {
        let change = Record {
            record_id: v1.record_id.clone(),
            ..v1.clone()
        };
        let status = err(
            client(&ctx)
                .update_record(update_request(change, &v1.etag, &[path]))
                .await,
            Code::InvalidArgument,
            &format!("UpdateRecord(update_mask [{path:?}])"),
        )?;
        has_violation(&status, "update_mask")?;
    }
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

async fn update_immutable(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let other = uuid::Uuid::new_v4().to_string();
    let moved = Record {
        patient_id: other,
        ..v1.clone()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(moved, &v1.etag, &[]))
            .await,
        Code::InvalidArgument,
        "UpdateRecord(different patient_id)",
    )?;
    has_violation(&status, "record.patient_id")?;
    let retyped = Record {
        resource_type: "Condition".into(),
        ..v1.clone()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(retyped, &v1.etag, &["data_classes"]))
            .await,
        Code::InvalidArgument,
        "UpdateRecord(different resource_type)",
    )?;
    has_violation(&status, "record.resource_type")?;
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

async fn update_missing_fields(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let base = || {
        update_request(
            Record {
                record_id: v1.record_id.clone(),
                data_classes: vec!["hiv".into()],
                ..Default::default()
            },
            &v1.etag,
            &["data_classes"],
        )
    };
    let mut no_id = base();
    if let Some(r) = no_id.record.as_mut() {
        r.record_id.clear();
    }
    let mut bad_id = base();
    if let Some(r) = bad_id.record.as_mut() {
        r.record_id = "12345".into();
    }
    let mut no_etag = base();
    no_etag.etag.clear();
    let mut no_requester = base();
    no_requester.requester = None;
    for (request, field) in [
        (no_id, "record.record_id"),
        (bad_id, "record.record_id"),
        (no_etag, "etag"),
        (no_requester, "requester"),
    ] {
        let status = err(
            client(&ctx).update_record(request).await,
            Code::InvalidArgument,
            &format!("UpdateRecord(bad {field})"),
        )?;
        has_violation(&status, field)?;
    }
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

async fn update_unknown(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    let change = Record {
        record_id: id.clone(),
        data_classes: vec!["hiv".into()],
        ..Default::default()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(change, "some-etag", &["data_classes"]))
            .await,
        Code::NotFound,
        "UpdateRecord(unknown record)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &id)
}

async fn update_retracted(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let v2 = retract(&ctx, &v1, "retract").await?;
    let change = Record {
        record_id: v1.record_id.clone(),
        data_classes: vec!["hiv".into()],
        ..Default::default()
    };
    let status = err(
        client(&ctx)
            .update_record(update_request(change, &v2.etag, &["data_classes"]))
            .await,
        Code::FailedPrecondition,
        "UpdateRecord(retracted record)",
    )?;
    has_precondition(&status, "RECORD_STATUS", Some(&v1.record_id))?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v2,
        "latest version after a refused update"
    );
    Ok(())
}

async fn update_order_of_checks(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let relabelled = relabel(&ctx, &v1, &["hiv"]).await?;
    let stale = v1.etag.clone();

    // Validation before existence: an unknown record and no requester.
    let mut request = update_request(
        Record {
            record_id: uuid::Uuid::new_v4().to_string(),
            data_classes: vec!["hiv".into()],
            ..Default::default()
        },
        &stale,
        &["data_classes"],
    );
    request.requester = None;
    let status = err(
        client(&ctx).update_record(request).await,
        Code::InvalidArgument,
        "UpdateRecord(unknown record, no requester)",
    )?;
    has_violation(&status, "requester")?;

    // Existence before etag.
    let unknown = uuid::Uuid::new_v4().to_string();
    let request = update_request(
        Record {
            record_id: unknown.clone(),
            data_classes: vec!["hiv".into()],
            ..Default::default()
        },
        &stale,
        &["data_classes"],
    );
    let status = err(
        client(&ctx).update_record(request).await,
        Code::NotFound,
        "UpdateRecord(unknown record, any etag)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;

    // Etag before the payload's check against the stored patient.
    let wrong_patient = payload_with(
        "Observation",
        "subject",
        &format!("Patient/{}", uuid::Uuid::new_v4()),
    );
    let request = update_request(
        Record {
            record_id: v1.record_id.clone(),
            content_type: super::FHIR_JSON.into(),
            payload: wrong_patient,
            ..Default::default()
        },
        &stale,
        &["payload"],
    );
    let status = err(
        client(&ctx).update_record(request).await,
        Code::Aborted,
        "UpdateRecord(stale etag, payload about another patient)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;

    // Etag before state.
    let retracted = retract(&ctx, &relabelled, "retract").await?;
    let request = update_request(
        Record {
            record_id: v1.record_id.clone(),
            data_classes: vec!["genomic".into()],
            ..Default::default()
        },
        &relabelled.etag,
        &["data_classes"],
    );
    let status = err(
        client(&ctx).update_record(request).await,
        Code::Aborted,
        "UpdateRecord(retracted record, stale etag)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;

    // State before the payload's check against the stored patient.
    let wrong_patient = payload_with(
        "Observation",
        "subject",
        &format!("Patient/{}", uuid::Uuid::new_v4()),
    );
    let request = update_request(
        Record {
            record_id: v1.record_id.clone(),
            content_type: super::FHIR_JSON.into(),
            payload: wrong_patient,
            ..Default::default()
        },
        &retracted.etag,
        &["payload"],
    );
    let status = err(
        client(&ctx).update_record(request).await,
        Code::FailedPrecondition,
        "UpdateRecord(retracted record, payload about another patient)",
    )?;
    has_precondition(&status, "RECORD_STATUS", Some(&v1.record_id))
}

async fn update_payload_checked(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let cases = [
        (
            payload_with(
                "Observation",
                "subject",
                &format!("Patient/{}", uuid::Uuid::new_v4()),
            ),
            "another patient",
        ),
        (
            payload_with("Condition", "subject", &format!("Patient/{pid}")),
            "another resourceType",
        ),
        (b"{\"resourceType\":".to_vec(), "not JSON"),
    ];
    for (payload, what) in cases {
        let request = update_request(
            Record {
                record_id: v1.record_id.clone(),
                content_type: super::FHIR_JSON.into(),
                payload,
                ..Default::default()
            },
            &v1.etag,
            &["payload"],
        );
        let status = err(
            client(&ctx).update_record(request).await,
            Code::InvalidArgument,
            &format!("UpdateRecord(payload: {what})"),
        )?;
        has_violation(&status, "record.payload")?;
    }
    let request = update_request(
        Record {
            record_id: v1.record_id.clone(),
            content_type: "text/plain".into(),
            payload: observation(&pid),
            ..Default::default()
        },
        &v1.etag,
        &["payload"],
    );
    let status = err(
        client(&ctx).update_record(request).await,
        Code::InvalidArgument,
        "UpdateRecord(content_type text/plain)",
    )?;
    has_violation(&status, "record.content_type")?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v1,
        "the record after refused updates"
    );
    Ok(())
}

async fn retract_basics(ctx: Ctx) -> TestResult {
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
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v2,
        "GetRecord returns a retracted record"
    );
    ensure_eq!(
        get(&ctx, &v1.record_id, 1).await?,
        v1,
        "version 1 stays readable"
    );
    Ok(())
}

async fn retract_twice(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let v2 = retract(&ctx, &v1, "retract").await?;
    let status = err(
        client(&ctx)
            .retract_record(RetractRecordRequest {
                record_id: v1.record_id.clone(),
                etag: v2.etag.clone(),
                reason: "again".into(),
                requester: Some(requester("retract")),
            })
            .await,
        Code::FailedPrecondition,
        "RetractRecord(already retracted)",
    )?;
    has_precondition(&status, "RECORD_STATUS", Some(&v1.record_id))?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.version,
        2,
        "version after a refused retraction"
    );
    Ok(())
}

async fn retract_stale(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    relabel(&ctx, &v1, &["hiv"]).await?;
    let status = err(
        client(&ctx)
            .retract_record(RetractRecordRequest {
                record_id: v1.record_id.clone(),
                etag: v1.etag.clone(),
                reason: "stale".into(),
                requester: Some(requester("retract")),
            })
            .await,
        Code::Aborted,
        "RetractRecord(stale etag)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?.status,
        RecordStatus::Current as i32,
        "status after a refused retraction"
    );
    Ok(())
}

async fn retract_reason(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    for reason in [String::new(), " \t\n ".to_owned(), "r".repeat(1025)] {
        let status = err(
            client(&ctx)
                .retract_record(RetractRecordRequest {
                    record_id: v1.record_id.clone(),
                    etag: v1.etag.clone(),
                    reason: reason.clone(),
                    requester: Some(requester("retract")),
                })
                .await,
            Code::InvalidArgument,
            &format!(
                "RetractRecord(reason of {} characters)",
                reason.chars().count()
            ),
        )?;
        has_violation(&status, "reason")?;
    }
    // 1024 characters, counted as characters, not bytes.
    let reason = "é".repeat(1024);
    let retracted = ok(
        client(&ctx)
            .retract_record(RetractRecordRequest {
                record_id: v1.record_id.clone(),
                etag: v1.etag.clone(),
                reason: reason.clone(),
                requester: Some(requester("retract")),
            })
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

async fn retract_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, new_record(&pid)).await?;
    let base = RetractRecordRequest {
        record_id: v1.record_id.clone(),
        etag: v1.etag.clone(),
        reason: "test".into(),
        requester: Some(requester("retract")),
    };
    for (request, field) in [
        (
            RetractRecordRequest {
                record_id: String::new(),
                ..base.clone()
            },
            "record_id",
        ),
        (
            RetractRecordRequest {
                record_id: "x".into(),
                ..base.clone()
            },
            "record_id",
        ),
        (
            RetractRecordRequest {
                etag: String::new(),
                ..base.clone()
            },
            "etag",
        ),
        (
            RetractRecordRequest {
                requester: None,
                ..base.clone()
            },
            "requester",
        ),
    ] {
        let status = err(
            client(&ctx).retract_record(request).await,
            Code::InvalidArgument,
            &format!("RetractRecord(bad {field})"),
        )?;
        has_violation(&status, field)?;
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .retract_record(RetractRecordRequest {
                record_id: unknown.clone(),
                ..base
            })
            .await,
        Code::NotFound,
        "RetractRecord(unknown record)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    ensure_eq!(
        get(&ctx, &v1.record_id, 0).await?,
        v1,
        "the record after refused retractions"
    );
    Ok(())
}

async fn list_versions(
    ctx: &Ctx,
    record_id: &str,
    page_size: i32,
    view: RecordView,
) -> TestResult<Vec<RecordVersion>> {
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = ok(
            client(ctx)
                .list_record_versions(ListRecordVersionsRequest {
                    record_id: record_id.to_owned(),
                    page_size,
                    page_token: token.clone(),
                    view: view as i32,
                })
                .await,
            "ListRecordVersions",
        )?;
        all.extend(page.versions);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
    fail!("ListRecordVersions: still returning next_page_token after 10000 pages")
}

/// Creates a record with 4 versions (created, updated twice, retracted), each by a different requester.
async fn four_versions(ctx: &Ctx) -> TestResult<Vec<Record>> {
    let pid = ctx.new_patient();
    let v1 = create(ctx, new_record(&pid)).await?;
    let v2 = update(
        ctx,
        Record {
            record_id: v1.record_id.clone(),
            data_classes: vec!["hiv".into()],
            ..Default::default()
        },
        &v1.etag,
        &["data_classes"],
        "second",
    )
    .await?;
    let v3 = update(
        ctx,
        Record {
            record_id: v1.record_id.clone(),
            content_type: super::FHIR_JSON.into(),
            payload: observation(&pid),
            ..Default::default()
        },
        &v2.etag,
        &["payload"],
        "third",
    )
    .await?;
    let v4 = retract(ctx, &v3, "fourth").await?;
    Ok(vec![v1, v2, v3, v4])
}

async fn versions_basics(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let versions = list_versions(&ctx, &written[0].record_id, 0, RecordView::Unspecified).await?;
    let expected = [
        (&written[3], ChangeType::Retracted, "fourth"),
        (&written[2], ChangeType::Updated, "third"),
        (&written[1], ChangeType::Updated, "second"),
        (&written[0], ChangeType::Created, "create"),
    ];
    ensure_eq!(versions.len(), 4, "number of versions");
    for (got, (record, change, who)) in versions.iter().zip(expected) {
        ensure_eq!(
            got.record.as_ref(),
            Some(record),
            "version {}",
            record.version
        );
        ensure_eq!(
            got.change_type,
            change as i32,
            "change_type of version {}",
            record.version
        );
        ensure_eq!(
            got.requester,
            Some(requester(who)),
            "requester of version {}",
            record.version
        );
    }
    Ok(())
}

async fn versions_paging(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let id = written[0].record_id.clone();
    let first = ok(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: id.clone(),
                page_size: 1,
                ..Default::default()
            })
            .await,
        "ListRecordVersions(page_size 1)",
    )?;
    ensure_eq!(first.versions.len(), 1, "versions on a page of size 1");
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while versions remain"
    );
    // A write after the first page: never listed by this pagination.
    let pid = written[0].patient_id.clone();
    let extra = create(&ctx, new_record(&pid)).await?;
    let _ = extra;
    let mut versions: Vec<i64> = first
        .versions
        .iter()
        .filter_map(|v| v.record.as_ref().map(|r| r.version))
        .collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = ok(
            client(&ctx)
                .list_record_versions(ListRecordVersionsRequest {
                    record_id: id.clone(),
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await,
            "ListRecordVersions(next page)",
        )?;
        ensure!(
            page.versions.len() <= 1,
            "a page of size 1 held {} versions",
            page.versions.len()
        );
        versions.extend(
            page.versions
                .iter()
                .filter_map(|v| v.record.as_ref().map(|r| r.version)),
        );
        token = page.next_page_token;
        ensure!(versions.len() <= 10, "pagination does not end");
    }
    ensure_eq!(versions, vec![4, 3, 2, 1], "versions over all pages");
    // Page sizes above 1000 are coerced, not refused.
    let all = ok(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: id.clone(),
                page_size: 5000,
                ..Default::default()
            })
            .await,
        "ListRecordVersions(page_size 5000)",
    )?;
    ensure_eq!(all.versions.len(), 4, "versions with page_size 5000");
    Ok(())
}

async fn versions_bad_token(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let id = written[0].record_id.clone();
    let other = create(&ctx, new_record(&written[0].patient_id)).await?;
    let first = ok(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: id.clone(),
                page_size: 1,
                ..Default::default()
            })
            .await,
        "ListRecordVersions(page_size 1)",
    )?;
    let token = first.next_page_token;
    ensure!(!token.is_empty(), "a next_page_token while versions remain");
    for (record_id, page_token, what) in [
        (id.clone(), super::FORGED_TOKEN.to_owned(), "a forged token"),
        (id.clone(), super::tamper(&token), "a tampered token"),
        (
            other.record_id.clone(),
            token.clone(),
            "a token issued for another record",
        ),
    ] {
        let status = err(
            client(&ctx)
                .list_record_versions(ListRecordVersionsRequest {
                    record_id,
                    page_size: 1,
                    page_token,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &format!("ListRecordVersions({what})"),
        )?;
        has_violation(&status, "page_token")?;
    }
    Ok(())
}

async fn versions_errors_and_view(ctx: Ctx) -> TestResult {
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: unknown.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "ListRecordVersions(unknown record)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    for bad in ["", "not-a-uuid"] {
        let status = err(
            client(&ctx)
                .list_record_versions(ListRecordVersionsRequest {
                    record_id: bad.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &format!("ListRecordVersions(record_id {bad:?})"),
        )?;
        has_violation(&status, "record_id")?;
    }
    let written = four_versions(&ctx).await?;
    let versions = list_versions(&ctx, &written[0].record_id, 0, RecordView::Metadata).await?;
    ensure_eq!(versions.len(), 4, "number of versions");
    for v in &versions {
        let Some(r) = &v.record else {
            fail!("a version without its record")
        };
        ensure!(
            r.payload.is_empty(),
            "payload must be empty in METADATA view (version {})",
            r.version
        );
        ensure!(
            !r.content_hash.is_empty(),
            "content_hash must be set in METADATA view"
        );
    }
    Ok(())
}
