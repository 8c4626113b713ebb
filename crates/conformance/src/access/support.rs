//! What the data access tests share: clients with and without the given tokens, patient
//! references, test patients and their data seeded through the deployment's other modules,
//! contributions, reads of what was written, and the audit metadata and entries of calls.

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    AuditAction, AuditEntry, AuditLeaf, AuditOutcome, CreateRecordRequest, CreateRecordResponse,
    Demographics, DisclosedRecord, FindPatientRequest, ListAuditEntriesRequest,
    ListRecordVersionsRequest, ListRecordVersionsResponse, PatientReference,
    ReadPatientRecordRequest, ReadRecordRequest, RecordContent,
};
use carerecord_contracts::common::v1::Date;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::harness::{
    Auth, Ctx, Fail, TestResult, describe, ensure, ensure_eq, every_page, fail, ok, present,
};
use crate::refusal::{Refusal, refused};

pub(crate) type Client = DataAccessServiceClient<InterceptedService<Channel, Auth>>;

/// The ErrorInfo domain of every data access error.
pub(crate) const DOMAIN: &str = "carerecord.access.v1";

pub(crate) fn client(ctx: &Ctx) -> Client {
    with_auth(ctx, ctx.auth.clone())
}

pub(crate) fn with_auth(ctx: &Ctx, auth: Auth) -> Client {
    DataAccessServiceClient::with_interceptor(ctx.channel.clone(), auth)
        .max_decoding_message_size(64 << 20)
}

/// A client sending `authorization: <value>` verbatim.
pub(crate) fn with_header(ctx: &Ctx, value: &str) -> TestResult<Client> {
    match MetadataValue::try_from(value) {
        Ok(v) => Ok(with_auth(ctx, Auth(Some(v)))),
        Err(_) => fail!("cannot send {value:?} as metadata"),
    }
}

/// A client with `token`, or a skip saying which option gives it.
fn given(ctx: &Ctx, token: Option<&str>, needs: &str) -> TestResult<Client> {
    match token {
        Some(token) => with_header(ctx, &format!("Bearer {token}")),
        None => Err(Fail::Skipped(needs.to_owned())),
    }
}

/// A client with the unscoped token, or a skip when none was given.
pub(crate) fn unscoped(ctx: &Ctx) -> TestResult<Client> {
    given(
        ctx,
        ctx.options.unscoped_token.as_deref(),
        "needs a second valid token without read scopes (--unscoped-token)",
    )
}

/// A client with the contributor token, or a skip when none was given.
pub(crate) fn contributor(ctx: &Ctx) -> TestResult<Client> {
    given(
        ctx,
        ctx.options.contributor_token.as_deref(),
        "needs a token of one organisation with c and u on Observation and no c on Condition (--contributor-token)",
    )
}

/// A client with the other organisation's token, or a skip when none was given.
pub(crate) fn other_org(ctx: &Ctx) -> TestResult<Client> {
    given(
        ctx,
        ctx.options.other_org_token.as_deref(),
        "needs a token of another organisation than the contributor's, with u on Observation (--other-org-token)",
    )
}

/// The claims of a token in compact JWS form, when it is one.
pub(crate) fn claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// A client with the auditor token, or with the main token when none was given.
pub(crate) fn auditor(ctx: &Ctx) -> TestResult<Client> {
    match &ctx.options.auditor_token {
        Some(token) => with_header(ctx, &format!("Bearer {token}")),
        None => Ok(client(ctx)),
    }
}

/// Requires ErrorInfo with domain `carerecord.access.v1` and `reason`; returns its metadata.
pub(crate) fn has_reason(
    status: &Status,
    reason: &str,
) -> TestResult<std::collections::HashMap<String, String>> {
    let info = crate::harness::has_reason(status, reason)?;
    if info.domain != DOMAIN {
        fail!(
            "ErrorInfo domain must be {DOMAIN}, got {:?} ({})",
            info.domain,
            describe(status)
        );
    }
    Ok(info.metadata)
}

/// Requires the ErrorInfo metadata of an audited call's error: audit_entry_id (a UUID) and
/// audit_index (a non-negative integer). Returns the index.
pub(crate) fn audited(metadata: &std::collections::HashMap<String, String>) -> TestResult<i64> {
    let id_ok = metadata
        .get("audit_entry_id")
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    let index = metadata
        .get("audit_index")
        .and_then(|i| i.parse::<i64>().ok())
        .filter(|i| *i >= 0);
    match (id_ok, index) {
        (true, Some(i)) => Ok(i),
        _ => fail!(
            "an audited call's error must carry ErrorInfo metadata audit_entry_id and audit_index, got {metadata:?}"
        ),
    }
}

/// Requires the response of a successful audited call to name its audit entry: `entry_id` a UUID
/// and `index` not negative.
pub(crate) fn ensure_audit_named(call: &str, entry_id: &str, index: i64) -> TestResult {
    ensure!(
        uuid::Uuid::parse_str(entry_id).is_ok() && index >= 0,
        "{call}: audit_entry_id and audit_index must be set"
    );
    Ok(())
}

/// Requires a call to be refused as `expected` (which names an ErrorInfo reason) and the refusal
/// to be audited, as every call that passes validation is; returns the ErrorInfo metadata.
pub(crate) fn refused_audited<T>(
    result: Result<T, Status>,
    expected: &Refusal,
    call: &str,
) -> TestResult<std::collections::HashMap<String, String>> {
    let status = refused(result, expected, call)?;
    let Some(reason) = expected.required_reason() else {
        fail!("{call}: the kit expects an audited refusal without naming its reason")
    };
    let metadata = has_reason(&status, reason)?;
    audited(&metadata)?;
    Ok(metadata)
}

pub(crate) fn by_id(id: &str) -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::PatientId(id.to_owned())),
    })
}

pub(crate) fn find(reference: Option<PatientReference>, purpose: &str) -> FindPatientRequest {
    FindPatientRequest {
        patient: reference,
        purpose_of_use: purpose.into(),
    }
}

/// A context for one of the deployment's other modules, or a skip naming the option that gives it.
async fn module(ctx: &Ctx, endpoint: Option<&String>, needs: &str) -> TestResult<Ctx> {
    match endpoint {
        Some(endpoint) => ctx.for_endpoint(endpoint).await,
        None => Err(Fail::Skipped(needs.to_owned())),
    }
}

/// The deployment's record hosting, where the kit stores and changes records directly.
pub(crate) async fn record_hosting(ctx: &Ctx) -> TestResult<Ctx> {
    let needs =
        "needs the deployment's record hosting endpoint to store test records (--records-endpoint)";
    module(ctx, ctx.options.records_endpoint.as_ref(), needs).await
}

/// Registers a patient, with an NHS number and a local identifier, through the deployment's
/// identity contract.
pub(crate) async fn register(ctx: &Ctx) -> TestResult<carerecord_contracts::identity::v1::Patient> {
    let needs =
        "needs the deployment's identity endpoint to register a test patient (--identity-endpoint)";
    let identity = module(ctx, ctx.options.identity_endpoint.as_ref(), needs).await?;
    let patient = crate::identity::create(&identity, crate::identity::new_patient()).await?;
    ctx.absorb(&identity);
    Ok(patient)
}

/// Records an active directive of a test patient's through the deployment's consent contract.
pub(crate) async fn record_directive(
    ctx: &Ctx,
    directive: carerecord_contracts::consent::v1::ConsentDirective,
) -> TestResult {
    let needs = "needs the deployment's consent endpoint to record the test patient's directive (--consent-endpoint)";
    let consent = module(ctx, ctx.options.consent_endpoint.as_ref(), needs).await?;
    crate::consent::create(&consent, directive).await?;
    ctx.absorb(&consent);
    Ok(())
}

/// The patient withholds records labelled `hiv` from every requester (a PERMIT directive with one
/// provision, which has the opposite effect, for that data class).
pub(crate) async fn withhold_hiv(ctx: &Ctx, patient_id: &str) -> TestResult {
    let provision = carerecord_contracts::consent::v1::Provision {
        data_classes: vec!["hiv".to_owned()],
        ..Default::default()
    };
    let directive = crate::consent::directive(
        patient_id,
        carerecord_contracts::consent::v1::ConsentDecision::Permit,
        vec![provision],
    );
    record_directive(ctx, directive).await
}

/// A patient registered through identity, with three records in record hosting.
pub(crate) struct Seeded {
    pub(crate) patient: carerecord_contracts::identity::v1::Patient,
    pub(crate) records: Vec<carerecord_contracts::records::v1::Record>,
}

/// Registers a patient and three records (effective 2020-01-02, 2020-01-04 and none; the second
/// labelled `hiv`) through the deployment's identity and record hosting contracts.
pub(crate) async fn seed(ctx: &Ctx) -> TestResult<Seeded> {
    let records_ctx = record_hosting(ctx).await?;
    let patient = register(ctx).await?;
    let pid = patient.patient_id.clone();
    let mut made = Vec::new();
    for (days, classes) in [
        (Some(1), vec![]),
        (Some(3), vec!["hiv".to_owned()]),
        (None, vec![]),
    ] {
        let r = carerecord_contracts::records::v1::Record {
            effective_time: days.map(crate::records::day),
            data_classes: classes,
            ..crate::records::new_record(&pid)
        };
        made.push(crate::records::create(&records_ctx, r).await?);
    }
    ctx.absorb(&records_ctx);
    Ok(Seeded {
        patient,
        records: made,
    })
}

pub(crate) const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

pub(crate) fn by_nhs(nhs: &str) -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::NhsNumber(nhs.to_owned())),
    })
}

/// Demographics naming a patient: refused wherever a contribution or a follow names a patient.
pub(crate) fn by_demographics() -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::Demographics(Demographics {
            given: "Alexandra".into(),
            family: "Kitdemographics".into(),
            birth_date: Some(Date {
                year: 1984,
                month: 3,
                day: 17,
            }),
            ..Default::default()
        })),
    })
}

/// A `resource_type` naming its patient by NHS number alone, as UK Core does, written with
/// spaces and members in an order no serialiser would choose, so that a payload rewritten
/// rather than stored as submitted shows. Unique per call.
pub(crate) fn naming_by_nhs(resource_type: &str, nhs: &str) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    format!(
        r#"{{"resourceType": "{resource_type}",  "status": "final", "code": {{"text": "carerecord conformance kit {id}"}}, "subject": {{"identifier": {{"value": "{nhs}", "system": "{NHS_SYSTEM}"}}}}, "effectiveDateTime": "2021-03-04T05:06:07Z"}}"#
    )
    .into_bytes()
}

/// An Observation naming its patient by NHS number alone.
pub(crate) fn observation_by_nhs(nhs: &str) -> Vec<u8> {
    naming_by_nhs("Observation", nhs)
}

/// An Observation referencing the patient by id (`Patient/<id>`).
pub(crate) fn observation_of(patient_id: &str) -> Vec<u8> {
    crate::records::new_record(patient_id).payload
}

pub(crate) fn content(resource_type: &str, payload: Vec<u8>) -> Option<RecordContent> {
    Some(RecordContent {
        resource_type: resource_type.to_owned(),
        payload,
        ..Default::default()
    })
}

pub(crate) fn observation(payload: Vec<u8>) -> Option<RecordContent> {
    content("Observation", payload)
}

/// A contribution for direct care, with a fresh request_id.
pub(crate) fn create_request(
    patient: Option<PatientReference>,
    content: Option<RecordContent>,
) -> CreateRecordRequest {
    CreateRecordRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        patient,
        purpose_of_use: "TREAT".into(),
        content,
        ..Default::default()
    }
}

/// Requires `stored` to be `submitted` with `"reference": "Patient/<patient_id>"` inserted as the
/// first member of the payload's `subject` object, every other byte kept.
pub(crate) fn ensure_reference_inserted(
    submitted: &[u8],
    stored: &[u8],
    patient_id: &str,
) -> TestResult {
    let opening = b"\"subject\": {";
    let Some(at) = submitted
        .windows(opening.len())
        .position(|w| w == opening)
        .map(|i| i + opening.len())
    else {
        fail!("the kit's payload has no subject object")
    };
    let (before, after) = submitted.split_at(at);
    ensure!(
        stored.len() > submitted.len() && stored.starts_with(before) && stored.ends_with(after),
        "the stored payload must be the submitted JSON with one member added at the start of `subject`, every other byte kept; submitted {}, stored {}",
        String::from_utf8_lossy(submitted),
        String::from_utf8_lossy(stored)
    );
    let added: String = String::from_utf8_lossy(&stored[at..stored.len() - after.len()])
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    ensure_eq!(
        added,
        format!("\"reference\":\"Patient/{patient_id}\","),
        "the member inserted first in the payload's subject"
    );
    Ok(())
}

/// Contributes a record with `client`, requiring success, and notes it as left behind.
pub(crate) async fn contribute(
    ctx: &Ctx,
    mut client: Client,
    request: CreateRecordRequest,
) -> TestResult<(CreateRecordResponse, DisclosedRecord)> {
    let response = ok(client.create_record(request).await, "CreateRecord")?;
    let record = present(
        response.record.clone(),
        "CreateRecord: the response has no record",
    )?;
    ctx.created("record", &record.record_id);
    Ok((response, record))
}

/// The patient's current records as the main token reads them, every page.
pub(crate) async fn current_records(
    ctx: &Ctx,
    patient_id: &str,
) -> TestResult<Vec<DisclosedRecord>> {
    let base = ReadPatientRecordRequest {
        patient: by_id(patient_id),
        purpose_of_use: "TREAT".into(),
        page_size: 1000,
        ..Default::default()
    };
    let (all, _) = every_page!(
        client(ctx),
        read_patient_record,
        "ReadPatientRecord",
        records,
        100,
        base,
    )?;
    Ok(all)
}

/// The ids of the patient's current records.
pub(crate) async fn current_ids(ctx: &Ctx, patient_id: &str) -> TestResult<Vec<String>> {
    let mut ids: Vec<String> = current_records(ctx, patient_id)
        .await?
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    ids.sort();
    Ok(ids)
}

pub(crate) fn read_record_request(record_id: &str, version: i64) -> ReadRecordRequest {
    ReadRecordRequest {
        record_id: record_id.to_owned(),
        version,
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    }
}

/// A version of a record (0: the latest) as the main token reads it with ReadRecord.
pub(crate) async fn read_record(
    ctx: &Ctx,
    record_id: &str,
    version: i64,
) -> TestResult<DisclosedRecord> {
    let response = ok(
        client(ctx)
            .read_record(read_record_request(record_id, version))
            .await,
        "ReadRecord",
    )?;
    present(response.record, "ReadRecord: the response has no record")
}

pub(crate) fn versions_request(record_id: &str) -> ListRecordVersionsRequest {
    ListRecordVersionsRequest {
        record_id: record_id.to_owned(),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    }
}

/// A page of a record's history as the main token reads it.
pub(crate) async fn record_versions(
    ctx: &Ctx,
    request: ListRecordVersionsRequest,
    call: &str,
) -> TestResult<ListRecordVersionsResponse> {
    ok(client(ctx).list_record_versions(request).await, call)
}

/// Entry `index` of the audit log, when the auditor token (or else the main token) may list it.
pub(crate) async fn audit_entry(ctx: &Ctx, index: i64) -> TestResult<AuditEntry> {
    let request = ListAuditEntriesRequest {
        start_index: index,
        tree_size: index + 1,
        page_size: 1,
        page_token: String::new(),
    };
    match auditor(ctx)?.list_audit_entries(request).await {
        Ok(r) => match r.into_inner().entries.into_iter().next() {
            Some(e) => Ok(e),
            None => fail!("ListAuditEntries: entry {index} missing"),
        },
        Err(st) if st.code() == Code::PermissionDenied => Err(Fail::Skipped(format!(
            "the token may not list audit entries; give an auditor token ({})",
            describe(&st)
        ))),
        Err(st) => fail!("ListAuditEntries: expected OK, got {}", describe(&st)),
    }
}

/// The leaf of audit entry `index`, decoded from its leaf_data.
pub(crate) async fn audit_leaf(ctx: &Ctx, index: i64) -> TestResult<AuditLeaf> {
    let entry = audit_entry(ctx, index).await?;
    match AuditLeaf::decode(entry.leaf_data.as_slice()) {
        Ok(leaf) => Ok(leaf),
        Err(_) => fail!("leaf_data of entry {index} does not decode as an AuditLeaf"),
    }
}

/// A refusal with `code` and ErrorInfo `reason` of the data access domain.
pub(crate) fn refusal(code: Code, reason: &str) -> Refusal {
    Refusal::new(code).reason_in(DOMAIN, reason)
}

/// The leaf of a successful call's audit entry, `index` and `entry_id` as its response named them,
/// required to record `action` with outcome DISCLOSED.
pub(crate) async fn disclosed_entry(
    ctx: &Ctx,
    index: i64,
    entry_id: &str,
    action: AuditAction,
) -> TestResult<AuditLeaf> {
    let leaf = audit_leaf(ctx, index).await?;
    ensure_eq!(leaf.entry_id, entry_id, "entry {index}: entry_id");
    ensure_eq!(
        (leaf.action, leaf.outcome),
        (action as i32, AuditOutcome::Disclosed as i32),
        "entry {index}: action and outcome"
    );
    Ok(leaf)
}

/// INVALID_ARGUMENT INVALID_REQUEST with a violation of exactly `field`.
pub(crate) fn invalid(field: &str) -> Refusal {
    refusal(Code::InvalidArgument, "INVALID_REQUEST").field(field)
}
