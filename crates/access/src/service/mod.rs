//! gRPC handlers for `carerecord.access.v1.DataAccessService`.
//!
//! The trait implementation below only dispatches: each RPC calls a method of [`AccessService`]
//! that returns `Result<_, crate::Error>`, and `Status::from` (in `error.rs`) answers.
//!
//! Each audited handler authenticates (unaudited on failure), validates (unaudited on failure),
//! then runs its body, appends exactly one audit entry whatever the body's outcome, and only then
//! answers (see `audited.rs`). Audited calls run detached from the connection, so a client that
//! goes away cannot stop its attempt being audited.
//!
//! - `audited.rs`: authentication, audit leaves, appending, answering.
//! - `parse.rs`: request fields several RPCs share (patient references, purposes, periods, types,
//!   page tokens).
//! - `patients.rs`: resolving patients through identity (`resolutions.rs`: resolutions kept
//!   between calls, validated by identity's change listing); reads made at the patient's request
//!   (their consent choices, their disclosures); FindPatient, ListDisclosures.
//! - `read.rs`: ReadPatientRecord and BreakGlassReadPatientRecord (one generic handler).
//! - `review.rs`: the review queue (break-glass events, restricted patients' accesses) and reviews.
//! - `restricted.rs`: restricted patients: what a call learns about them, for the review queue.
//! - `audit_log.rs`: the audit log's read side (entries, heads, keys, proofs, VerifyAuditLog).
//! - `cohort.rs`, `extract.rs`, `aggregate.rs`: research and planning extracts.
//! - `contribute.rs`: CreateRecord and what contributions share; `change.rs`: UpdateRecord and
//!   RetractRecord (one generic handler); `import.rs`: ImportRecords.
//! - `record.rs`: ReadRecord and ListRecordVersions (one record by id).
//! - `follow.rs`: FollowRecordChanges (notifications decided and audited at delivery).
//! - `disclose.rs`: a record of record hosting as the front door discloses it.
//! - `consent.rs`: asking the consent module, one patient or a batch (`decisions.rs`: decisions
//!   kept between calls, validated by consent's change listing).
//! - `nhs_login.rs`: the patient an NHS login token acts for (its NHS number through identity).
//! - `limits.rs`: per-client rate and concurrency limits, applied once a token is verified.
//! - `self_service.rs`: a patient's own consent directives and national data opt-out status.

mod aggregate;
mod audit_log;
mod audited;
mod change;
mod cohort;
mod consent;
mod contribute;
mod decisions;
mod disclose;
mod extract;
mod follow;
mod import;
mod limits;
mod nhs_login;
mod parse;
mod patients;
mod read;
mod record;
mod resolutions;
mod restricted;
mod review;
mod self_service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_server::DataAccessService;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::config::AccessConfig;
use crate::error::Error;
use crate::store::Store;
use crate::upstream::Upstream;

/// The access API.
#[derive(Debug, Clone)]
pub struct AccessService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    upstream: Upstream,
    config: AccessConfig,
    /// Per-client rate and concurrency limits.
    limiter: limits::Limiter,
    /// Patient resolutions kept between calls.
    resolutions: resolutions::Resolutions,
    /// Consent decisions kept between calls.
    decisions: decisions::Decisions,
}

impl AccessService {
    pub fn new(store: Store, upstream: Upstream, config: AccessConfig) -> Self {
        AccessService {
            inner: Arc::new(Inner {
                store,
                upstream,
                limiter: limits::Limiter::new(config.limits.clone()),
                resolutions: resolutions::Resolutions::new(
                    "identity resolutions",
                    config.resolution_cache_entries,
                ),
                decisions: decisions::Decisions::new(config.decision_cache_entries),
                config,
            }),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

tokio::task_local! {
    /// The client's deadline for the current call (from `grpc-timeout`), if it set one.
    static DEADLINE: Option<tokio::time::Instant>;
}

/// The instant a `grpc-timeout` header (e.g. `250m`, `5S`) ends at.
fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<tokio::time::Instant> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let duration = match unit {
        "H" => std::time::Duration::from_secs(amount.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(amount.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(amount),
        "m" => std::time::Duration::from_millis(amount),
        "u" => std::time::Duration::from_micros(amount),
        "n" => std::time::Duration::from_nanos(amount),
        _ => return None,
    };
    tokio::time::Instant::now().checked_add(duration)
}

/// Whether the current call's client deadline has passed (its answer can no longer arrive).
fn deadline_passed() -> bool {
    DEADLINE
        .try_with(|d| d.is_some_and(|d| tokio::time::Instant::now() >= d))
        .unwrap_or(false)
}

/// Runs an audited call to completion even if the client goes away, so every attempt that
/// passed validation is audited (a dropped handler future would write nothing).
async fn detached<M, T, F, Fut>(request: Request<M>, call: F) -> Result<Response<T>, Status>
where
    F: FnOnce(Request<M>) -> Fut,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    use tracing::Instrument;
    let deadline = deadline(request.metadata());
    let outcome = tokio::spawn(
        restricted::noting(DEADLINE.scope(deadline, call(request)))
            .instrument(tracing::Span::current()),
    )
    .await
    .unwrap_or_else(|e| Err(Error::Internal(format!("handler task failed: {e}"))));
    answer(outcome)
}

fn answer<T>(outcome: Result<T, Error>) -> Result<Response<T>, Status> {
    outcome.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl DataAccessService for AccessService {
    async fn find_patient(
        &self,
        request: Request<api::FindPatientRequest>,
    ) -> Result<Response<api::FindPatientResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.find(r).await }).await
    }

    async fn read_patient_record(
        &self,
        request: Request<api::ReadPatientRecordRequest>,
    ) -> Result<Response<api::ReadPatientRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.read_patient(r).await }).await
    }

    async fn break_glass_read_patient_record(
        &self,
        request: Request<api::BreakGlassReadPatientRecordRequest>,
    ) -> Result<Response<api::BreakGlassReadPatientRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.read_patient(r).await }).await
    }

    async fn list_break_glass_events(
        &self,
        request: Request<api::ListBreakGlassEventsRequest>,
    ) -> Result<Response<api::ListBreakGlassEventsResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.events(r).await }).await
    }

    async fn review_break_glass_event(
        &self,
        request: Request<api::ReviewBreakGlassEventRequest>,
    ) -> Result<Response<api::ReviewBreakGlassEventResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.review(r).await }).await
    }

    async fn list_disclosures(
        &self,
        request: Request<api::ListDisclosuresRequest>,
    ) -> Result<Response<api::ListDisclosuresResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.disclosures(r).await }).await
    }

    async fn list_audit_entries(
        &self,
        request: Request<api::ListAuditEntriesRequest>,
    ) -> Result<Response<api::ListAuditEntriesResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.audit_entries(r).await }).await
    }

    async fn get_signed_tree_head(
        &self,
        request: Request<api::GetSignedTreeHeadRequest>,
    ) -> Result<Response<api::GetSignedTreeHeadResponse>, Status> {
        answer(self.signed_tree_head(request).await)
    }

    async fn get_audit_public_key(
        &self,
        request: Request<api::GetAuditPublicKeyRequest>,
    ) -> Result<Response<api::GetAuditPublicKeyResponse>, Status> {
        answer(self.audit_public_key(request).await)
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<api::GetInclusionProofRequest>,
    ) -> Result<Response<api::GetInclusionProofResponse>, Status> {
        answer(self.inclusion_proof(request).await)
    }

    async fn get_consistency_proof(
        &self,
        request: Request<api::GetConsistencyProofRequest>,
    ) -> Result<Response<api::GetConsistencyProofResponse>, Status> {
        answer(self.consistency_proof(request).await)
    }

    async fn verify_audit_log(
        &self,
        request: Request<api::VerifyAuditLogRequest>,
    ) -> Result<Response<api::VerifyAuditLogResponse>, Status> {
        answer(self.verify_log(request).await)
    }

    async fn extract_pseudonymised(
        &self,
        request: Request<api::ExtractPseudonymisedRequest>,
    ) -> Result<Response<BoxStream<api::ExtractPseudonymisedResponse>>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.extract(r).await }).await
    }

    async fn aggregate_extract(
        &self,
        request: Request<api::AggregateExtractRequest>,
    ) -> Result<Response<BoxStream<api::AggregateExtractResponse>>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.aggregate(r).await }).await
    }

    async fn create_record(
        &self,
        request: Request<api::CreateRecordRequest>,
    ) -> Result<Response<api::CreateRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.create_record(r).await }).await
    }

    async fn update_record(
        &self,
        request: Request<api::UpdateRecordRequest>,
    ) -> Result<Response<api::UpdateRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.change_record(r).await }).await
    }

    async fn retract_record(
        &self,
        request: Request<api::RetractRecordRequest>,
    ) -> Result<Response<api::RetractRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.change_record(r).await }).await
    }

    async fn import_records(
        &self,
        request: Request<tonic::Streaming<api::ImportRecordsRequest>>,
    ) -> Result<Response<BoxStream<api::ImportRecordsResponse>>, Status> {
        answer(self.import_records(request).await)
    }

    async fn read_record(
        &self,
        request: Request<api::ReadRecordRequest>,
    ) -> Result<Response<api::ReadRecordResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move { this.read_record(r).await }).await
    }

    async fn list_record_versions(
        &self,
        request: Request<api::ListRecordVersionsRequest>,
    ) -> Result<Response<api::ListRecordVersionsResponse>, Status> {
        let this = self.clone();
        detached(
            request,
            |r| async move { this.list_record_versions(r).await },
        )
        .await
    }

    async fn list_consent_directives(
        &self,
        request: Request<api::ListConsentDirectivesRequest>,
    ) -> Result<Response<api::ListConsentDirectivesResponse>, Status> {
        let this = self.clone();
        detached(
            request,
            |r| async move { this.list_consent_directives(r).await },
        )
        .await
    }

    async fn create_consent_directive(
        &self,
        request: Request<api::CreateConsentDirectiveRequest>,
    ) -> Result<Response<api::CreateConsentDirectiveResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move {
            this.create_consent_directive(r).await
        })
        .await
    }

    async fn revoke_consent_directive(
        &self,
        request: Request<api::RevokeConsentDirectiveRequest>,
    ) -> Result<Response<api::RevokeConsentDirectiveResponse>, Status> {
        let this = self.clone();
        detached(request, |r| async move {
            this.revoke_consent_directive(r).await
        })
        .await
    }

    async fn get_national_data_opt_out(
        &self,
        request: Request<api::GetNationalDataOptOutRequest>,
    ) -> Result<Response<api::GetNationalDataOptOutResponse>, Status> {
        let this = self.clone();
        detached(
            request,
            |r| async move { this.national_data_opt_out(r).await },
        )
        .await
    }

    async fn follow_record_changes(
        &self,
        request: Request<api::FollowRecordChangesRequest>,
    ) -> Result<Response<BoxStream<api::FollowRecordChangesResponse>>, Status> {
        answer(self.follow_record_changes(request).await)
    }
}
