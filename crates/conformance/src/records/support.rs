//! What the record hosting tests share: the client, invented records, and the calls that set up
//! a test (each must succeed).

use std::time::{Duration, SystemTime};

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, GetRecordRequest, ListRecordsRequest, Record, RecordView,
    RetractRecordRequest, UpdateRecordRequest,
};
use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use tonic::Code;

use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok, present};
use crate::refusal::Refusal;

pub(crate) type Client =
    RecordHostingServiceClient<InterceptedService<Channel, crate::harness::Auth>>;

/// The only content type v1 accepts.
pub(crate) const FHIR_JSON: &str = "application/fhir+json";
/// The protobuf type named in ResourceInfo for records.
pub(crate) const RESOURCE_TYPE: &str = "carerecord.records.v1.Record";
/// The smallest payload limit a deployment may configure (64 KiB).
pub(crate) const MIN_PAYLOAD_LIMIT: usize = 64 * 1024;
/// The largest payload limit a deployment may configure (3 MiB).
pub(crate) const MAX_PAYLOAD_LIMIT: usize = 3 * 1024 * 1024;

pub(crate) fn client(ctx: &Ctx) -> Client {
    RecordHostingServiceClient::with_interceptor(ctx.channel.clone(), ctx.auth.clone())
        // The contract: clients and servers accept messages of at least 4 MiB.
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20)
}

/// NOT_FOUND with ResourceInfo naming the record.
pub(crate) fn unknown(record_id: &str) -> Refusal {
    Refusal::not_found(RESOURCE_TYPE, record_id)
}

/// ABORTED with ErrorInfo ETAG_MISMATCH: the etag is not the latest version's.
pub(crate) fn etag_mismatch() -> Refusal {
    Refusal::new(Code::Aborted).reason("ETAG_MISMATCH")
}

/// FAILED_PRECONDITION with PreconditionFailure RECORD_STATUS on the (retracted) record.
pub(crate) fn retracted(record_id: &str) -> Refusal {
    Refusal::new(Code::FailedPrecondition).precondition("RECORD_STATUS", Some(record_id))
}

/// FAILED_PRECONDITION with ErrorInfo REQUEST_ID_REUSED.
pub(crate) fn reused_request_id() -> Refusal {
    Refusal::new(Code::FailedPrecondition).reason("REQUEST_ID_REUSED")
}

/// A requester naming the kit; `who` distinguishes writes in history.
pub(crate) fn requester(who: &str) -> Requester {
    Requester {
        user_id: format!("conformance-kit-{who}"),
        organisation_ods_code: "X26".to_owned(),
        role_code: "R8000".to_owned(),
        display_name: "carerecord conformance kit".to_owned(),
    }
}

/// A FHIR resource of `resource_type` whose `element` (`subject` or `patient`) references
/// `reference`, with a unique identifier so no two payloads are equal.
pub(crate) fn payload_with(resource_type: &str, element: &str, reference: &str) -> Vec<u8> {
    serde_json::json!({
        "resourceType": resource_type,
        "identifier": [{"system": "https://conformance.carerecord.invalid/Id/test", "value": uuid::Uuid::new_v4().to_string()}],
        "status": "final",
        "code": {"text": "carerecord conformance kit test data"},
        element: {"reference": reference},
    })
    .to_string()
    .into_bytes()
}

/// A record of `resource_type` about `patient_id` whose payload's top-level members `fields`
/// (for example `code`, `category`, `status`) replace the defaults; a member given as null is left
/// out.
pub(crate) fn record_with(
    patient_id: &str,
    resource_type: &str,
    fields: serde_json::Value,
) -> Record {
    let mut payload = serde_json::json!({
        "resourceType": resource_type,
        "identifier": [{"system": "https://conformance.carerecord.invalid/Id/test", "value": uuid::Uuid::new_v4().to_string()}],
        "status": "final",
        "code": {"text": "carerecord conformance kit test data"},
        "subject": {"reference": format!("Patient/{patient_id}")},
    });
    if let (Some(members), Some(changes)) = (payload.as_object_mut(), fields.as_object()) {
        for (name, value) in changes {
            if value.is_null() {
                members.remove(name);
            } else {
                members.insert(name.clone(), value.clone());
            }
        }
    }
    Record {
        resource_type: resource_type.to_owned(),
        payload: payload.to_string().into_bytes(),
        ..new_record(patient_id)
    }
}

/// An Observation about `patient_id`.
pub(crate) fn observation(patient_id: &str) -> Vec<u8> {
    payload_with("Observation", "subject", &format!("Patient/{patient_id}"))
}

/// A valid new Record: an Observation about `patient_id`.
pub(crate) fn new_record(patient_id: &str) -> Record {
    Record {
        patient_id: patient_id.to_owned(),
        resource_type: "Observation".to_owned(),
        content_type: FHIR_JSON.to_owned(),
        payload: observation(patient_id),
        authoring_organisation_ods_code: "RR8".to_owned(),
        source_system: "carerecord-conformance".to_owned(),
        ..Default::default()
    }
}

/// A valid new Record of another resource type.
pub(crate) fn new_record_of(patient_id: &str, resource_type: &str) -> Record {
    Record {
        resource_type: resource_type.to_owned(),
        payload: payload_with(resource_type, "subject", &format!("Patient/{patient_id}")),
        ..new_record(patient_id)
    }
}

pub(crate) fn create_request(record: Record) -> CreateRecordRequest {
    CreateRecordRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        record: Some(record),
        requester: Some(requester("create")),
    }
}

/// Creates `record`, requiring success, and notes it as left behind.
pub(crate) async fn create(ctx: &Ctx, record: Record) -> TestResult<Record> {
    create_with(ctx, create_request(record)).await
}

/// A fresh patient and a new record of theirs, created: where most record tests start.
pub(crate) async fn patient_with_record(ctx: &Ctx) -> TestResult<(String, Record)> {
    let pid = ctx.new_patient();
    let record = create(ctx, new_record(&pid)).await?;
    Ok((pid, record))
}

/// A fresh patient and `count` new records of theirs, created one after another.
pub(crate) async fn patient_with_records(
    ctx: &Ctx,
    count: usize,
) -> TestResult<(String, Vec<Record>)> {
    let pid = ctx.new_patient();
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(create(ctx, new_record(&pid)).await?);
    }
    Ok((pid, records))
}

pub(crate) async fn create_with(ctx: &Ctx, request: CreateRecordRequest) -> TestResult<Record> {
    let response = ok(client(ctx).create_record(request).await, "CreateRecord")?;
    let record = present(response.record, "CreateRecord: the response has no record")?;
    ctx.created("record", &record.record_id);
    Ok(record)
}

pub(crate) async fn get(ctx: &Ctx, record_id: &str, version: i64) -> TestResult<Record> {
    let response = ok(
        client(ctx)
            .get_record(GetRecordRequest {
                record_id: record_id.to_owned(),
                version,
                view: RecordView::Unspecified as i32,
            })
            .await,
        "GetRecord",
    )?;
    present(response.record, "GetRecord: the response has no record")
}

/// Requires the latest version of `record_id` to be `expected`.
pub(crate) async fn ensure_latest(
    ctx: &Ctx,
    record_id: &str,
    expected: &Record,
    what: &str,
) -> TestResult {
    ensure_eq!(get(ctx, record_id, 0).await?, *expected, "{what}");
    Ok(())
}

/// Requires the latest version number of `record_id` to be `version`.
pub(crate) async fn ensure_version(
    ctx: &Ctx,
    record_id: &str,
    version: i64,
    what: &str,
) -> TestResult {
    ensure_eq!(get(ctx, record_id, 0).await?.version, version, "{what}");
    Ok(())
}

/// Updates with the given mask (empty for a full replacement), requiring success.
pub(crate) async fn update(
    ctx: &Ctx,
    record: Record,
    etag: &str,
    paths: &[&str],
    who: &str,
) -> TestResult<Record> {
    let response = ok(
        client(ctx)
            .update_record(UpdateRecordRequest {
                record: Some(record),
                etag: etag.to_owned(),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                requester: Some(requester(who)),
            })
            .await,
        "UpdateRecord",
    )?;
    present(response.record, "UpdateRecord: the response has no record")
}

/// Changes a record's data classes (a new version), requiring success.
pub(crate) async fn relabel(ctx: &Ctx, current: &Record, classes: &[&str]) -> TestResult<Record> {
    let record = Record {
        record_id: current.record_id.clone(),
        data_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    };
    update(ctx, record, &current.etag, &["data_classes"], "relabel").await
}

pub(crate) async fn retract(ctx: &Ctx, current: &Record, who: &str) -> TestResult<Record> {
    let response = ok(
        client(ctx)
            .retract_record(RetractRecordRequest {
                record_id: current.record_id.clone(),
                etag: current.etag.clone(),
                reason: "carerecord conformance kit: test data".to_owned(),
                requester: Some(requester(who)),
            })
            .await,
        "RetractRecord",
    )?;
    present(response.record, "RetractRecord: the response has no record")
}

/// Every record of a listing, following next_page_token to the end (at most 10000 pages).
/// Checks that every page carries the same watch_cursor; returns the records and that cursor.
pub(crate) async fn list_all(
    ctx: &Ctx,
    mut request: ListRecordsRequest,
) -> TestResult<(Vec<Record>, String)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = ok(
            client(ctx).list_records(request.clone()).await,
            "ListRecords",
        )?;
        all.extend(page.records);
        match &cursor {
            None => cursor = Some(page.watch_cursor.clone()),
            Some(c) => ensure_eq!(
                page.watch_cursor,
                *c,
                "watch_cursor must be the same on every page"
            ),
        }
        if page.next_page_token.is_empty() {
            return Ok((all, cursor.unwrap_or_default()));
        }
        request.page_token = page.next_page_token;
    }
    crate::harness::fail!("ListRecords: still returning next_page_token after 10000 pages")
}

/// A listing of one patient's records with default filters.
pub(crate) fn list_request(patient_id: &str) -> ListRecordsRequest {
    ListRecordsRequest {
        patient_id: patient_id.to_owned(),
        ..Default::default()
    }
}

/// Requires the patient to have no records at all (including retracted ones): a refused
/// request wrote nothing.
pub(crate) async fn ensure_nothing_written(ctx: &Ctx, patient_id: &str) -> TestResult {
    let (records, _) = list_all(
        ctx,
        ListRecordsRequest {
            include_retracted: true,
            ..list_request(patient_id)
        },
    )
    .await?;
    ensure!(
        records.is_empty(),
        "a refused request must write nothing, but patient {patient_id} now has {} record(s)",
        records.len()
    );
    Ok(())
}

/// Requires a record as the METADATA view returns it: no payload, its content_hash still set.
pub(crate) fn ensure_metadata_only(r: &Record) -> TestResult {
    ensure!(
        r.payload.is_empty(),
        "payload must be empty in METADATA view (version {})",
        r.version
    );
    ensure!(
        !r.content_hash.is_empty(),
        "content_hash must be set in METADATA view"
    );
    Ok(())
}

pub(crate) fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.record_id.clone()).collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

pub(crate) fn seconds_from_now(seconds: i64) -> Timestamp {
    let now = SystemTime::now();
    let t = if seconds >= 0 {
        now + Duration::from_secs(seconds.unsigned_abs())
    } else {
        now - Duration::from_secs(seconds.unsigned_abs())
    };
    timestamp(t)
}

/// A timestamp at midnight UTC of a day in 2020-2023 (`days` after 2020-01-01).
pub(crate) fn day(days: i64) -> Timestamp {
    Timestamp {
        seconds: 1_577_836_800 + days * 86_400,
        nanos: 0,
    }
}

/// Alters a token so that it is the same length but no longer what the server issued.
pub(crate) fn tamper(token: &str) -> String {
    let mut bytes: Vec<char> = token.chars().collect();
    let i = bytes.len() / 2;
    if let Some(c) = bytes.get_mut(i) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    bytes.into_iter().collect()
}

/// A made-up token no server issued.
pub(crate) const FORGED_TOKEN: &str = "Y29uZm9ybWFuY2Uta2l0LWZvcmdlZC10b2tlbg";

/// The record of a successful GetRecord.
pub(crate) fn got_record(
    result: Result<
        tonic::Response<carerecord_contracts::records::v1::GetRecordResponse>,
        tonic::Status,
    >,
    call: &str,
) -> TestResult<Record> {
    present(
        ok(result, call)?.record,
        &format!("{call}: the response has no record"),
    )
}

/// A timestamp as a comparable (seconds, nanos) pair; unset sorts first.
pub(crate) fn ts_key(t: &Option<Timestamp>) -> (i64, i32) {
    t.as_ref().map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
}
