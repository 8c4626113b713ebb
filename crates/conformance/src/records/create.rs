//! CreateRecord, GetRecord and idempotency by request_id.

use carerecord_contracts::records::v1::{
    CreateRecordRequest, GetRecordRequest, Record, RecordStatus, RecordView,
};

use super::support::{
    FHIR_JSON, MIN_PAYLOAD_LIMIT, client, create, create_request, create_with, day,
    ensure_nothing_written, get, got_record, ids, list_all, list_request, new_record, observation,
    patient_with_record, payload_with, relabel, requester, reused_request_id, sha256_hex, unknown,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ensure_new_id};
use crate::refusal::{Refusal, refuse_each, refused};

pub(super) async fn create_basics(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let input = new_record(&pid);
    let r = create(&ctx, input.clone()).await?;
    ensure_new_id("record_id", &r.record_id)?;
    ensure!(
        r.record_id != uuid::Uuid::nil().to_string(),
        "record_id must not be the nil UUID"
    );
    ensure_eq!(r.version, 1, "version");
    ensure_eq!(r.status, RecordStatus::Current as i32, "status");
    ensure!(!r.etag.is_empty(), "etag must be set");
    ensure_eq!(r.patient_id, pid, "patient_id");
    ensure_eq!(r.resource_type, "Observation", "resource_type");
    ensure_eq!(r.content_type, FHIR_JSON, "content_type");
    ensure_eq!(r.payload, input.payload, "payload bytes");
    ensure_eq!(r.content_hash, sha256_hex(&input.payload), "content_hash");
    ensure_eq!(r.payload_size, input.payload.len() as i64, "payload_size");
    ensure_eq!(
        r.authoring_organisation_ods_code,
        "RR8",
        "authoring_organisation_ods_code"
    );
    ensure_eq!(r.source_system, "carerecord-conformance", "source_system");
    ensure!(r.create_time.is_some(), "create_time must be set");
    ensure_eq!(r.update_time, r.create_time, "update_time of version 1");
    ensure!(
        r.retraction_reason.is_empty(),
        "retraction_reason must be empty"
    );
    let read = get(&ctx, &r.record_id, 0).await?;
    ensure_eq!(read, r, "GetRecord after CreateRecord");
    Ok(())
}

pub(super) async fn payload_byte_for_byte(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    // Unusual but valid JSON a server might be tempted to normalise.
    let text = format!(
        "{{\n  \"status\" : \"final\",\t\"resourceType\":\"Observation\",\n  \"id\": \"client-side-id\", \"meta\": {{\"versionId\": \"42\"}},\n  \"valueQuantity\": {{\"value\": 1.50e1, \"unit\": \"\\u006dmol/L\"}},\n  \"note\": [{{\"text\": \"caf\u{e9} \\ud83d\\ude00 \\/ \"}}],\n  \"subject\": {{ \"reference\": \"Patient/{pid}\", \"display\": \"\" }}\n}}\n"
    );
    let input = Record {
        payload: text.clone().into_bytes(),
        ..new_record(&pid)
    };
    let r = create(&ctx, input).await?;
    ensure!(
        r.payload == text.as_bytes(),
        "CreateRecord must return the payload byte for byte; got {:?}",
        String::from_utf8_lossy(&r.payload)
    );
    let read = get(&ctx, &r.record_id, 0).await?;
    ensure!(
        read.payload == text.as_bytes(),
        "GetRecord must return the payload byte for byte; got {:?}",
        String::from_utf8_lossy(&read.payload)
    );
    ensure_eq!(
        read.content_hash,
        sha256_hex(text.as_bytes()),
        "content_hash"
    );
    Ok(())
}

pub(super) async fn data_classes_as_set(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let input = Record {
        data_classes: ["safeguarding", "hiv", "safeguarding", "genomic"]
            .map(String::from)
            .to_vec(),
        ..new_record(&pid)
    };
    let r = create(&ctx, input).await?;
    ensure_eq!(
        r.data_classes,
        vec!["genomic", "hiv", "safeguarding"],
        "data_classes"
    );
    let all = [
        "mental-health",
        "sexual-health",
        "reproductive-health",
        "safeguarding",
        "genomic",
        "substance-misuse",
        "hiv",
    ];
    let r = create(
        &ctx,
        Record {
            data_classes: all.map(String::from).to_vec(),
            ..new_record(&pid)
        },
    )
    .await?;
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    ensure_eq!(
        r.data_classes,
        sorted,
        "every defined data class is accepted"
    );
    Ok(())
}

pub(super) async fn identifiers_case(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let upper = pid.to_uppercase();
    let input = Record {
        patient_id: upper.clone(),
        payload: payload_with("Observation", "subject", &format!("Patient/{upper}")),
        authoring_organisation_ods_code: "b86001".to_owned(),
        ..new_record(&pid)
    };
    let r = create(&ctx, input).await?;
    ensure_eq!(r.patient_id, pid, "patient_id is returned lower case");
    ensure_eq!(
        r.authoring_organisation_ods_code,
        "B86001",
        "the ODS code is upper-cased"
    );
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        ids(&listed),
        vec![r.record_id.clone()],
        "ListRecords by the lower-case patient_id"
    );
    let (listed, _) = list_all(&ctx, list_request(&upper)).await?;
    ensure_eq!(
        ids(&listed),
        vec![r.record_id],
        "ListRecords by the upper-case patient_id"
    );
    Ok(())
}

pub(super) async fn reference_forms(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let typed = serde_json::json!({
        "resourceType": "Condition",
        "code": {"text": "conformance"},
        "subject": {"reference": format!("Patient/{pid}"), "type": "Patient", "display": "someone",
                    "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "not checked"}},
    });
    let both = serde_json::json!({
        "resourceType": "Observation",
        "subject": {"reference": format!("urn:uuid:{pid}")},
        "patient": {"reference": format!("Patient/{pid}")},
    });
    let forms: Vec<(&str, Vec<u8>)> = vec![
        (
            "Observation",
            payload_with("Observation", "subject", &format!("urn:uuid:{pid}")),
        ),
        (
            "AllergyIntolerance",
            payload_with("AllergyIntolerance", "patient", &format!("Patient/{pid}")),
        ),
        (
            "Observation",
            payload_with(
                "Observation",
                "subject",
                &format!("Patient/{}", pid.to_uppercase()),
            ),
        ),
        ("Condition", typed.to_string().into_bytes()),
        ("Observation", both.to_string().into_bytes()),
    ];
    for (resource_type, payload) in forms {
        let text = String::from_utf8_lossy(&payload).into_owned();
        let request = create_request(Record {
            resource_type: resource_type.to_owned(),
            payload,
            ..new_record(&pid)
        });
        let result = client(&ctx).create_record(request).await;
        match result {
            Ok(r) => {
                if let Some(r) = r.into_inner().record {
                    ctx.created("record", &r.record_id);
                }
            }
            Err(s) => crate::harness::fail!(
                "a payload the contract accepts was refused ({}): {text}",
                crate::harness::describe(&s)
            ),
        }
    }
    Ok(())
}

pub(super) async fn recorded_time_default(ctx: Ctx) -> TestResult {
    let (pid, r) = patient_with_record(&ctx).await?;
    ensure_eq!(r.recorded_time, r.create_time, "recorded_time when unset");
    ensure_eq!(r.effective_time, None, "effective_time when unset");
    let recorded = day(10);
    let effective = day(9);
    let r = create(
        &ctx,
        Record {
            recorded_time: Some(recorded),
            effective_time: Some(effective),
            ..new_record(&pid)
        },
    )
    .await?;
    ensure_eq!(r.recorded_time, Some(recorded), "recorded_time as given");
    ensure_eq!(r.effective_time, Some(effective), "effective_time as given");
    Ok(())
}

pub(super) async fn payload_under_min_limit(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let base = String::from_utf8(observation(&pid)).unwrap_or_default();
    // Pad inside a note so the whole payload is 63 KiB.
    let pad = (MIN_PAYLOAD_LIMIT - 1024).saturating_sub(base.len() + 32);
    let mut value: serde_json::Value = serde_json::from_str(&base).unwrap_or_default();
    value["note"] = serde_json::json!([{"text": "x".repeat(pad)}]);
    let payload = value.to_string().into_bytes();
    let size = payload.len();
    let r = create(
        &ctx,
        Record {
            payload,
            ..new_record(&pid)
        },
    )
    .await?;
    ensure_eq!(r.payload_size, size as i64, "payload_size");
    Ok(())
}

pub(super) async fn get_versions(ctx: Ctx) -> TestResult {
    let (_, v1) = patient_with_record(&ctx).await?;
    let v2 = relabel(&ctx, &v1, &["genomic"]).await?;
    let latest = get(&ctx, &v1.record_id, 0).await?;
    ensure_eq!(latest, v2, "GetRecord version 0 (latest)");
    let first = get(&ctx, &v1.record_id, 1).await?;
    ensure_eq!(first, v1, "GetRecord version 1");
    let second = get(&ctx, &v1.record_id, 2).await?;
    ensure_eq!(second, v2, "GetRecord version 2");
    Ok(())
}

pub(super) async fn get_metadata_view(ctx: Ctx) -> TestResult {
    let (_, r) = patient_with_record(&ctx).await?;
    let in_view = |view: RecordView| GetRecordRequest {
        record_id: r.record_id.clone(),
        version: 0,
        view: view as i32,
    };
    let got = got_record(
        client(&ctx).get_record(in_view(RecordView::Metadata)).await,
        "GetRecord(view METADATA)",
    )?;
    ensure!(
        got.payload.is_empty(),
        "payload must be empty in METADATA view"
    );
    ensure_eq!(
        got.content_hash,
        r.content_hash,
        "content_hash in METADATA view"
    );
    ensure_eq!(
        got.payload_size,
        r.payload_size,
        "payload_size in METADATA view"
    );
    ensure_eq!(got.etag, r.etag, "etag in METADATA view");
    let full = got_record(
        client(&ctx).get_record(in_view(RecordView::Full)).await,
        "GetRecord(view FULL)",
    )?;
    ensure_eq!(full.payload, r.payload, "payload in FULL view");
    Ok(())
}

/// A request for `version` of `record_id` (0: the latest), full view.
fn get_request(record_id: &str, version: i64) -> GetRecordRequest {
    GetRecordRequest {
        record_id: record_id.to_owned(),
        version,
        ..Default::default()
    }
}

pub(super) async fn get_unknown(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    let table = vec![("unknown id".to_owned(), get_request(&id, 0), unknown(&id))];
    refuse_each!(client(&ctx), get_record, table).await
}

pub(super) async fn get_version_too_high(ctx: Ctx) -> TestResult {
    let (_, r) = patient_with_record(&ctx).await?;
    let table = vec![(
        "version 2 of a record with one version".to_owned(),
        get_request(&r.record_id, 2),
        unknown(&r.record_id),
    )];
    refuse_each!(client(&ctx), get_record, table).await
}

pub(super) async fn get_invalid(ctx: Ctx) -> TestResult {
    let (_, r) = patient_with_record(&ctx).await?;
    let table = [
        ("", 0, "record_id"),
        ("not-a-uuid", 0, "record_id"),
        ("00000000-0000-0000-0000-000000000000", 0, "record_id"),
        ("0f8fad5b-d9cb-469f-a165-70867728950", 0, "record_id"),
        (r.record_id.as_str(), -1, "version"),
    ]
    .into_iter()
    .map(|(record_id, version, field)| {
        (
            format!("record_id {record_id:?}, version {version}"),
            get_request(record_id, version),
            Refusal::invalid(field),
        )
    })
    .collect();
    refuse_each!(client(&ctx), get_record, table).await
}

pub(super) async fn get_upper_case(ctx: Ctx) -> TestResult {
    let (_, r) = patient_with_record(&ctx).await?;
    let got = get(&ctx, &r.record_id.to_uppercase(), 0).await?;
    ensure_eq!(
        got.record_id,
        r.record_id,
        "record_id is returned lower case"
    );
    Ok(())
}

pub(super) async fn idempotent_retry(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let request = create_request(new_record(&pid));
    let first = create_with(&ctx, request.clone()).await?;
    let again = create_with(&ctx, request).await?;
    ensure_eq!(again, first, "the retry's result");
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(listed.len(), 1, "records after a retried create");
    Ok(())
}

pub(super) async fn idempotent_retry_after_update(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let request = create_request(new_record(&pid));
    let first = create_with(&ctx, request.clone()).await?;
    let v2 = relabel(&ctx, &first, &["hiv"]).await?;
    let again = create_with(&ctx, request).await?;
    ensure_eq!(
        again,
        first,
        "a retry after an update returns version 1 as first created"
    );
    let latest = get(&ctx, &first.record_id, 0).await?;
    ensure_eq!(latest, v2, "the retry wrote nothing");
    Ok(())
}

pub(super) async fn request_id_reused(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let request = create_request(new_record(&pid));
    let first = create_with(&ctx, request.clone()).await?;
    let other_patient = ctx.new_patient();
    let reused = CreateRecordRequest {
        record: Some(new_record(&other_patient)),
        requester: Some(requester("create")),
        ..request.clone()
    };
    refused(
        client(&ctx).create_record(reused).await,
        &reused_request_id(),
        "CreateRecord(same request_id, different record)",
    )?;
    ensure_nothing_written(&ctx, &other_patient).await?;
    // Same patient, different payload: still a different record.
    let mut changed = request.clone();
    if let Some(r) = changed.record.as_mut() {
        r.payload = observation(&pid);
    }
    refused(
        client(&ctx).create_record(changed).await,
        &reused_request_id(),
        "CreateRecord(same request_id, different payload)",
    )?;
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        ids(&listed),
        vec![first.record_id],
        "records of the patient"
    );
    Ok(())
}
