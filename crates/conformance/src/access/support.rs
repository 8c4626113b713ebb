//! What the data access tests share: clients with and without the given tokens, patient
//! references, and the audit metadata of refused calls.

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{FindPatientRequest, PatientReference};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::harness::{Auth, Ctx, Fail, TestResult, describe, fail};
use crate::refusal::Refusal;

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

/// A client with the unscoped token, or a skip when none was given.
pub(crate) fn unscoped(ctx: &Ctx) -> TestResult<Client> {
    match &ctx.options.unscoped_token {
        Some(token) => with_header(ctx, &format!("Bearer {token}")),
        None => Err(Fail::Skipped(
            "needs a second valid token without read scopes (--unscoped-token)".into(),
        )),
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

/// A patient registered through identity, with three records in record hosting.
pub(crate) struct Seeded {
    pub(crate) patient: carerecord_contracts::identity::v1::Patient,
    pub(crate) records: Vec<carerecord_contracts::records::v1::Record>,
}

/// Registers a patient and three records (effective 2020-01-02, 2020-01-04 and none; the second
/// labelled `hiv`) through the deployment's identity and record hosting contracts.
pub(crate) async fn seed(ctx: &Ctx) -> TestResult<Seeded> {
    let (Some(identity), Some(records)) = (
        ctx.options.identity_endpoint.clone(),
        ctx.options.records_endpoint.clone(),
    ) else {
        return Err(Fail::Skipped("needs the deployment's identity and record hosting endpoints to register a test patient (--identity-endpoint, --records-endpoint)".into()));
    };
    let identity_ctx = ctx.for_endpoint(&identity).await?;
    let records_ctx = ctx.for_endpoint(&records).await?;
    let patient = crate::identity::create(&identity_ctx, crate::identity::new_patient()).await?;
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
    ctx.absorb(&identity_ctx);
    ctx.absorb(&records_ctx);
    Ok(Seeded {
        patient,
        records: made,
    })
}

/// A refusal with `code` and ErrorInfo `reason` of the data access domain.
pub(crate) fn refusal(code: Code, reason: &str) -> Refusal {
    Refusal::new(code).reason_in(DOMAIN, reason)
}
