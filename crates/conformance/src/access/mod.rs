//! Conformance tests of `carerecord.access.v1.DataAccessService`.
//!
//! Test ids: `ACC-<AREA>-<NNN>`. Data access holds no patient data of its own, so tests that read
//! a patient's record first register a test patient and records through the deployment's identity
//! and record hosting contracts (`Options::identity_endpoint`, `records_endpoint`; consent's for
//! the refusal test) and are skipped without them. Tests that need a registered project
//! (`Options::project_id`) are skipped without one.

mod audit;
mod merkle;
mod reads;

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{FindPatientRequest, PatientReference};
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Auth, Case, Ctx, Fail, TestResult, describe, fail};

pub(crate) type Client = DataAccessServiceClient<InterceptedService<Channel, Auth>>;

/// The ErrorInfo domain of every data access error.
pub(crate) const DOMAIN: &str = "carerecord.access.v1";

pub(crate) fn cases() -> Vec<Case> {
    let mut cases = reads::cases();
    cases.extend(audit::cases());
    cases
}

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
