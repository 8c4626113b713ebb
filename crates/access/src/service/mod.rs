//! gRPC handlers for `carerecord.access.v1.DataAccessService`.
//!
//! Each audited handler: authenticates (unaudited on failure), validates (unaudited on failure),
//! then runs its body, appends exactly one audit entry whatever the body's outcome, and only then
//! answers.

mod audit_log;
mod extract;
mod patients;
mod read;
mod review;

use std::pin::Pin;
use std::sync::Arc;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_server::DataAccessService;
use carerecord_platform::errors::Violations;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::config::AccessConfig;
use crate::domain::auth::{self, Caller};
use crate::error::Error;
use crate::store::{Appended, BreakGlassRow, Effect, Store};
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
}

/// Default and maximum page sizes of every list.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 1000;

/// Checks `page_size` (negative is invalid) and applies the default and maximum.
fn page_size(violations: &mut Violations, field: &str, raw: i32) -> i64 {
    match i64::from(raw) {
        n if n < 0 => {
            violations.add(field, "must not be negative");
            DEFAULT_PAGE
        }
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// The W3C trace id of the request's `traceparent`, or a fresh one.
fn trace_id(metadata: &tonic::metadata::MetadataMap) -> String {
    let from_header = metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let parts: Vec<&str> = v.trim().split('-').collect();
            let id = *parts.get(1)?;
            let valid = parts.len() >= 4
                && id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && id.bytes().any(|b| b != b'0');
            valid.then(|| id.to_owned())
        });
    from_header.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

impl AccessService {
    pub fn new(store: Store, upstream: Upstream, config: AccessConfig) -> Self {
        AccessService {
            inner: Arc::new(Inner {
                store,
                upstream,
                config,
            }),
        }
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = auth::bearer(request.metadata())?;
        Ok(self.inner.config.tokens.verify(token).await?)
    }

    /// A new audit leaf for a call by `caller`.
    fn leaf(&self, caller: &Caller, trace_id: &str, action: api::AuditAction) -> api::AuditLeaf {
        api::AuditLeaf {
            entry_id: uuid::Uuid::new_v4().to_string(),
            time: Some(crate::domain::timestamp(
                carerecord_platform::db::now_micros(),
            )),
            action: action as i32,
            requester: Some(caller.requester()),
            client_id: caller.client_id.clone(),
            trace_id: trace_id.to_owned(),
            ..Default::default()
        }
    }

    /// Appends `leaf` with the outcome of `result`; a break-glass call also becomes an event.
    /// On failure to append, the call fails UNAVAILABLE and nothing is disclosed.
    async fn audit(
        &self,
        mut leaf: api::AuditLeaf,
        error: Option<&Error>,
        break_glass: bool,
    ) -> Result<Appended, Status> {
        match error {
            None => {
                leaf.outcome = api::AuditOutcome::Disclosed as i32;
            }
            Some(e) => {
                leaf.outcome = if e.code() == tonic::Code::PermissionDenied {
                    api::AuditOutcome::Refused as i32
                } else {
                    api::AuditOutcome::Failed as i32
                };
                leaf.status_code = e.code() as i32;
                leaf.error_reason = e.reason().to_owned();
                // Nothing is disclosed by a failed call.
                leaf.returned_records.clear();
                leaf.returned_count = 0;
            }
        }
        let effect = if break_glass {
            let requester = leaf.requester.clone().unwrap_or_default();
            Effect::BreakGlass(Box::new(BreakGlassRow {
                event_id: leaf.entry_id.clone(),
                time_micros: leaf
                    .time
                    .as_ref()
                    .and_then(crate::domain::micros)
                    .unwrap_or_default(),
                user_id: requester.user_id,
                organisation_ods_code: requester.organisation_ods_code,
                role_code: requester.role_code,
                display_name: requester.display_name,
                client_id: leaf.client_id.clone(),
                patient_id: leaf.patient_id.clone(),
                reason: leaf.break_glass_reason.clone(),
                outcome: i64::from(leaf.outcome),
                returned_count: leaf.returned_count,
                withheld_count: leaf.withheld_count,
                version: 1,
                etag: uuid::Uuid::new_v4().simple().to_string(),
                ..Default::default()
            }))
        } else {
            Effect::None
        };
        self.inner.store.append(&leaf, effect).await.map_err(|e| {
            tracing::error!(error = %e, "cannot append to the audit log");
            Error::AuditLogUnavailable.to_status(None)
        })
    }

    /// Audits and answers: the response (with the entry filled in by `attach`) or the error
    /// carrying the entry's id and index.
    async fn finish<T>(
        &self,
        leaf: api::AuditLeaf,
        result: Result<T, Error>,
        break_glass: bool,
        attach: impl FnOnce(&mut T, &Appended),
    ) -> Result<Response<T>, Status> {
        // A client that stopped waiting received nothing: the attempt is audited as failed.
        let result = match result {
            Ok(_) if deadline_passed() => Err(Error::DeadlineExceeded),
            other => other,
        };
        let appended = self.audit(leaf, result.as_ref().err(), break_glass).await?;
        match result {
            Ok(mut response) => {
                attach(&mut response, &appended);
                Ok(Response::new(response))
            }
            Err(e) => Err(e.to_status(Some((&appended.entry_id, appended.index)))),
        }
    }
}

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
async fn detached<T: Send + 'static>(
    deadline: Option<tokio::time::Instant>,
    call: impl std::future::Future<Output = Result<Response<T>, Status>> + Send + 'static,
) -> Result<Response<T>, Status> {
    use tracing::Instrument;
    tokio::spawn(
        DEADLINE
            .scope(deadline, call)
            .instrument(tracing::Span::current()),
    )
    .await
    .unwrap_or_else(|e| Err(Error::Internal(format!("handler task failed: {e}")).to_status(None)))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DataAccessService for AccessService {
    async fn find_patient(
        &self,
        request: Request<api::FindPatientRequest>,
    ) -> Result<Response<api::FindPatientResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(
            deadline,
            async move { this.find_patient_rpc(request).await },
        )
        .await
    }

    async fn read_patient_record(
        &self,
        request: Request<api::ReadPatientRecordRequest>,
    ) -> Result<Response<api::ReadPatientRecordResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.read_rpc(request).await }).await
    }

    async fn break_glass_read_patient_record(
        &self,
        request: Request<api::BreakGlassReadPatientRecordRequest>,
    ) -> Result<Response<api::BreakGlassReadPatientRecordResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.break_glass_rpc(request).await }).await
    }

    async fn list_break_glass_events(
        &self,
        request: Request<api::ListBreakGlassEventsRequest>,
    ) -> Result<Response<api::ListBreakGlassEventsResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.list_events_rpc(request).await }).await
    }

    async fn review_break_glass_event(
        &self,
        request: Request<api::ReviewBreakGlassEventRequest>,
    ) -> Result<Response<api::ReviewBreakGlassEventResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.review_rpc(request).await }).await
    }

    async fn list_disclosures(
        &self,
        request: Request<api::ListDisclosuresRequest>,
    ) -> Result<Response<api::ListDisclosuresResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(
            deadline,
            async move { this.list_disclosures_rpc(request).await },
        )
        .await
    }

    async fn list_audit_entries(
        &self,
        request: Request<api::ListAuditEntriesRequest>,
    ) -> Result<Response<api::ListAuditEntriesResponse>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move {
            this.list_audit_entries_rpc(request).await
        })
        .await
    }

    async fn get_signed_tree_head(
        &self,
        request: Request<api::GetSignedTreeHeadRequest>,
    ) -> Result<Response<api::GetSignedTreeHeadResponse>, Status> {
        self.get_signed_tree_head_rpc(request).await
    }

    async fn get_audit_public_key(
        &self,
        request: Request<api::GetAuditPublicKeyRequest>,
    ) -> Result<Response<api::GetAuditPublicKeyResponse>, Status> {
        self.get_audit_public_key_rpc(request).await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<api::GetInclusionProofRequest>,
    ) -> Result<Response<api::GetInclusionProofResponse>, Status> {
        self.get_inclusion_proof_rpc(request).await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<api::GetConsistencyProofRequest>,
    ) -> Result<Response<api::GetConsistencyProofResponse>, Status> {
        self.get_consistency_proof_rpc(request).await
    }

    async fn verify_audit_log(
        &self,
        request: Request<api::VerifyAuditLogRequest>,
    ) -> Result<Response<api::VerifyAuditLogResponse>, Status> {
        self.verify_audit_log_rpc(request).await
    }

    async fn extract_pseudonymised(
        &self,
        request: Request<api::ExtractPseudonymisedRequest>,
    ) -> Result<Response<BoxStream<api::ExtractPseudonymisedResponse>>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.extract_rpc(request).await }).await
    }

    async fn aggregate_extract(
        &self,
        request: Request<api::AggregateExtractRequest>,
    ) -> Result<Response<BoxStream<api::AggregateExtractResponse>>, Status> {
        let this = self.clone();
        let deadline = deadline(request.metadata());
        detached(deadline, async move { this.aggregate_rpc(request).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_traceparent_or_are_made() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_id(&md), "4bf92f3577b34da6a3ce929d0e0e4736");
        md.insert(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let made = trace_id(&md);
        assert_eq!(made.len(), 32);
        assert_ne!(made, "00000000000000000000000000000000");
    }

    #[test]
    fn page_sizes_default_and_cap() {
        let mut v = Violations::new();
        assert_eq!(page_size(&mut v, "page_size", 0), 50);
        assert_eq!(page_size(&mut v, "page_size", 5000), 1000);
        assert!(v.is_empty());
        page_size(&mut v, "page_size", -1);
        assert!(!v.is_empty());
    }
}
