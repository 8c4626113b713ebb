//! Clients of the identity, consent and record hosting modules.
//!
//! Every call has a deadline (sent as `grpc-timeout` and enforced locally), carries the trace
//! context, and is retried with backoff only when it is a read answered UNAVAILABLE (every call
//! made here is a read). Whatever goes wrong surfaces as DEPENDENCY_UNAVAILABLE naming the module,
//! except the answers that mean something to the caller (a patient not found, an ambiguous match).

use std::future::Future;
use std::time::Duration;

use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::identity::v1 as identity;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_platform::telemetry::PropagateTrace;
use carerecord_platform::tls::ClientTls;
use carerecord_platform::transport::channel;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::error::{Dependency, Error};

pub type Traced = InterceptedService<Channel, PropagateTrace>;

/// The largest message accepted from another module (record hosting keeps responses under 4 MiB;
/// consent's batch decisions with explanations may reach 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub identity: PatientIdentityServiceClient<Traced>,
    pub consent: ConsentServiceClient<Traced>,
    pub records: RecordHostingServiceClient<Traced>,
    pub timeout: Duration,
    pub retries: u32,
}

impl Upstream {
    /// Lazily connecting clients: a module that is down at start-up only fails the calls that need it.
    pub fn new(
        identity: &str,
        consent: &str,
        records: &str,
        tls: &ClientTls,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, String> {
        let channel =
            |name: &str, url: &str| channel(name, url, tls, timeout).map_err(|e| e.to_string());
        let identity = PatientIdentityServiceClient::with_interceptor(
            channel("CARERECORD_IDENTITY_ENDPOINT", identity)?,
            PropagateTrace,
        )
        .max_decoding_message_size(MAX_MESSAGE);
        let consent = ConsentServiceClient::with_interceptor(
            channel("CARERECORD_CONSENT_ENDPOINT", consent)?,
            PropagateTrace,
        )
        .max_decoding_message_size(MAX_MESSAGE);
        let records = RecordHostingServiceClient::with_interceptor(
            channel("CARERECORD_RECORDS_ENDPOINT", records)?,
            PropagateTrace,
        )
        .max_decoding_message_size(MAX_MESSAGE);
        Ok(Upstream {
            identity,
            consent,
            records,
            timeout,
            retries,
        })
    }

    /// A request carrying the per-hop deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// One idempotent call of `dependency` through `client` (see [`Upstream::call`]): each attempt
    /// gets a fresh client handle and a fresh request carrying `message` and the deadline.
    pub async fn ask<C, M, T, F, Fut>(
        &self,
        dependency: Dependency,
        rpc: &'static str,
        client: &C,
        message: M,
        call: F,
    ) -> Result<T, Status>
    where
        C: Clone,
        M: Clone,
        F: Fn(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call(dependency, || {
            call(client.clone(), self.request(message.clone()))
        })
        .instrument(tracing::info_span!("upstream", rpc))
        .await
    }

    /// Runs an idempotent call with deadline and retries; returns the module's final answer.
    pub async fn call<T, F, Fut>(&self, dependency: Dependency, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            let outcome = tokio::time::timeout(self.timeout, call()).await;
            match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if status.code() == Code::Unavailable && attempt < self.retries => {
                    tracing::debug!(
                        dependency = dependency.as_str(),
                        attempt,
                        "retrying after UNAVAILABLE"
                    );
                }
                Ok(Err(status)) => return Err(status),
                Err(_) => return Err(Status::deadline_exceeded("the call's deadline passed")),
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.timeout / 4);
        }
    }
}

/// A module's final answer to a call that failed (after any retries), and which module it was.
#[derive(Debug)]
pub struct Failed {
    pub dependency: Dependency,
    pub status: Status,
}

/// A failed call means the module is unavailable (see [`unavailable`]), unless the caller gives
/// the module's answer a meaning of its own first.
impl From<Failed> for Error {
    fn from(failed: Failed) -> Self {
        unavailable(failed.dependency, &failed.status)
    }
}

/// One method per RPC data access makes, each through [`Upstream::ask`]: the module's answer, or
/// [`Failed`] (the module and its final status after retries).
macro_rules! rpcs {
    ($($dependency:ident $client:ident . $rpc:ident($request:ty) -> $response:ty;)*) => {
        impl Upstream {
            $(pub async fn $rpc(&self, request: $request) -> Result<$response, Failed> {
                let dependency = Dependency::$dependency;
                self.ask(dependency, stringify!($rpc), &self.$client, request, |mut c, r| async move {
                    c.$rpc(r).await
                })
                .await
                .map_err(|status| Failed { dependency, status })
            })*
        }
    };
}

rpcs! {
    Identity identity.get_patient(identity::GetPatientRequest) -> identity::GetPatientResponse;
    Identity identity.resolve_identifier(identity::ResolveIdentifierRequest)
        -> identity::ResolveIdentifierResponse;
    Identity identity.match_patients(identity::MatchPatientsRequest)
        -> identity::MatchPatientsResponse;
    Identity identity.list_patient_changes(identity::ListPatientChangesRequest)
        -> identity::ListPatientChangesResponse;
    Consent consent.decide(consent::DecideRequest) -> consent::DecideResponse;
    Consent consent.list_decision_changes(consent::ListDecisionChangesRequest)
        -> consent::ListDecisionChangesResponse;
    Consent consent.batch_decide(consent::BatchDecideRequest) -> consent::BatchDecideResponse;
    Consent consent.list_consent_directives(consent::ListConsentDirectivesRequest)
        -> consent::ListConsentDirectivesResponse;
    Consent consent.get_consent_directive(consent::GetConsentDirectiveRequest)
        -> consent::GetConsentDirectiveResponse;
    Consent consent.create_consent_directive(consent::CreateConsentDirectiveRequest)
        -> consent::CreateConsentDirectiveResponse;
    Consent consent.revoke_consent_directive(consent::RevokeConsentDirectiveRequest)
        -> consent::RevokeConsentDirectiveResponse;
    Consent consent.get_national_data_opt_out(consent::GetNationalDataOptOutRequest)
        -> consent::GetNationalDataOptOutResponse;
    Records records.list_records(records::ListRecordsRequest) -> records::ListRecordsResponse;
    Records records.get_record(records::GetRecordRequest) -> records::GetRecordResponse;
    Records records.list_record_versions(records::ListRecordVersionsRequest)
        -> records::ListRecordVersionsResponse;
    Records records.create_record(records::CreateRecordRequest) -> records::CreateRecordResponse;
    Records records.watch_record_changes(records::WatchRecordChangesRequest)
        -> tonic::Streaming<records::WatchRecordChangesResponse>;
    Records records.export_records(records::ExportRecordsRequest)
        -> tonic::Streaming<records::ExportRecordsResponse>;
}

impl Upstream {
    /// UpdateRecord, sent once: a retry after a lost answer would meet its own new etag.
    pub async fn update_record(
        &self,
        request: records::UpdateRecordRequest,
    ) -> Result<records::UpdateRecordResponse, Failed> {
        let mut client = self.records.clone();
        self.once(client.update_record(self.request(request))).await
    }

    /// RetractRecord, sent once, as UpdateRecord.
    pub async fn retract_record(
        &self,
        request: records::RetractRecordRequest,
    ) -> Result<records::RetractRecordResponse, Failed> {
        let mut client = self.records.clone();
        self.once(client.retract_record(self.request(request)))
            .await
    }

    /// One ImportRecords stream of `items`, its record ids returned: sent once (items carry
    /// request ids, so the caller's retry is safe).
    pub async fn import_records(
        &self,
        request: records::ImportRecordsRequest,
    ) -> Result<records::ImportRecordsResponse, Failed> {
        let mut client = self.records.clone();
        let mut call = tonic::Request::new(tokio_stream::once(request));
        call.set_timeout(self.timeout * 4);
        records_once(self.timeout * 4, client.import_records(call)).await
    }

    async fn once<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Failed> {
        records_once(self.timeout, call).await
    }
}

/// A call of record hosting made once, within `timeout`.
async fn records_once<T>(
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failed> {
    let status = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => return Ok(response.into_inner()),
        Ok(Err(status)) => status,
        Err(_) => Status::deadline_exceeded("the call's deadline passed"),
    };
    Err(Failed {
        dependency: Dependency::Records,
        status,
    })
}

/// The error for a module's failed answer: a transient one (the module is down, slow or
/// overloaded) is DEPENDENCY_UNAVAILABLE, which the caller may retry; any other answer to a call
/// this service made is a fault between the modules (a bug here or in the module), reported as
/// INTERNAL rather than dressed up as something a retry would cure.
pub fn unavailable(dependency: Dependency, status: &Status) -> Error {
    tracing::warn!(
        dependency = dependency.as_str(),
        code = ?status.code(),
        message = status.message(),
        "dependency call failed"
    );
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Aborted
        | Code::Unknown => Error::DependencyUnavailable(dependency),
        code => Error::Internal(format!(
            "{} answered {code:?}: {}",
            dependency.as_str(),
            carerecord_platform::status_policy::bounded(status.message(), 256)
        )),
    }
}
