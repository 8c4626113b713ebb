//! gRPC handlers for `carerecord.consent.v1.ConsentService`. Each handler parses its request into
//! typed values, calls the domain and the store, and returns the response or a `crate::Error`;
//! the trait impl below only hands each call to its handler and maps the error to a status.
//!
//! `directives` creates, reads, updates and revokes directives, `listing` pages through a
//! patient's directives and a directive's versions, `decisions` answers Decide and BatchDecide
//! (with `context` parsing their request context), `opt_out` reads and sets the national data
//! opt-out and records batches of the national service's answers, and `changes` lists the
//! patients whose decisions writes may have changed (ListDecisionChanges).

mod changes;
mod context;
mod decisions;
mod directives;
mod listing;
mod opt_out;

use std::sync::Arc;

use carerecord_contracts::consent::v1 as pb;
use carerecord_contracts::consent::v1::consent_service_server::ConsentService as ConsentApi;
use carerecord_platform::db::{Database, now_micros};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;
use tonic::{Request, Response, Status};

use crate::domain::optout::CheckValidity;
use crate::domain::time::{Instant, instant_from_micros};
use crate::error::Error;
use crate::policy::PlatformPolicies;
use crate::store::Store;

/// The consent API.
#[derive(Debug, Clone)]
pub struct ConsentService {
    store: Store,
    policies: Arc<PlatformPolicies>,
    tokens: PageTokens,
    opt_out_validity: CheckValidity,
}

impl ConsentService {
    /// The service, with national data opt-out checks valid for [`CheckValidity::DEFAULT`].
    pub fn new(database: Database, policies: Arc<PlatformPolicies>, tokens: PageTokens) -> Self {
        ConsentService {
            store: Store::new(database),
            policies,
            tokens,
            opt_out_validity: CheckValidity::DEFAULT,
        }
    }

    /// The service with national data opt-out checks valid for `validity`.
    pub fn with_opt_out_validity(self, validity: CheckValidity) -> Self {
        ConsentService {
            opt_out_validity: validity,
            ..self
        }
    }
}

/// The time now, as stored (microseconds) and as the domain reads it.
fn now() -> (i64, Instant) {
    let micros = now_micros();
    (micros, instant_from_micros(micros))
}

/// A fresh etag for a new version.
fn new_etag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_owned()
}

/// What `parse` makes of a request, or every violation it recorded as one INVALID_ARGUMENT.
/// `parse` yields `None` only with a violation, so `None` without one is a fault of this service.
fn parse<T>(parse: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, Error> {
    let mut violations = Violations::new();
    let parsed = parse(&mut violations);
    violations.into_result()?;
    parsed.ok_or(Error::Internal(
        "a request parsed to nothing without a violation",
    ))
}

fn reply<T>(handled: Result<T, Error>) -> Result<Response<T>, Status> {
    handled.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ConsentApi for ConsentService {
    async fn create_consent_directive(
        &self,
        request: Request<pb::CreateConsentDirectiveRequest>,
    ) -> Result<Response<pb::CreateConsentDirectiveResponse>, Status> {
        reply(self.create_directive(request.into_inner()).await)
    }

    async fn get_consent_directive(
        &self,
        request: Request<pb::GetConsentDirectiveRequest>,
    ) -> Result<Response<pb::GetConsentDirectiveResponse>, Status> {
        reply(self.get_directive(request.into_inner()).await)
    }

    async fn list_consent_directives(
        &self,
        request: Request<pb::ListConsentDirectivesRequest>,
    ) -> Result<Response<pb::ListConsentDirectivesResponse>, Status> {
        reply(self.list_directives(request.into_inner()).await)
    }

    async fn update_consent_directive(
        &self,
        request: Request<pb::UpdateConsentDirectiveRequest>,
    ) -> Result<Response<pb::UpdateConsentDirectiveResponse>, Status> {
        reply(self.update_directive(request.into_inner()).await)
    }

    async fn revoke_consent_directive(
        &self,
        request: Request<pb::RevokeConsentDirectiveRequest>,
    ) -> Result<Response<pb::RevokeConsentDirectiveResponse>, Status> {
        reply(self.revoke_directive(request.into_inner()).await)
    }

    async fn list_consent_directive_versions(
        &self,
        request: Request<pb::ListConsentDirectiveVersionsRequest>,
    ) -> Result<Response<pb::ListConsentDirectiveVersionsResponse>, Status> {
        reply(self.list_versions(request.into_inner()).await)
    }

    async fn get_national_data_opt_out(
        &self,
        request: Request<pb::GetNationalDataOptOutRequest>,
    ) -> Result<Response<pb::GetNationalDataOptOutResponse>, Status> {
        reply(self.get_opt_out(request.into_inner()).await)
    }

    async fn set_national_data_opt_out(
        &self,
        request: Request<pb::SetNationalDataOptOutRequest>,
    ) -> Result<Response<pb::SetNationalDataOptOutResponse>, Status> {
        reply(self.set_opt_out(request.into_inner()).await)
    }

    async fn record_national_data_opt_out_check(
        &self,
        request: Request<pb::RecordNationalDataOptOutCheckRequest>,
    ) -> Result<Response<pb::RecordNationalDataOptOutCheckResponse>, Status> {
        reply(self.record_check(request.into_inner()).await)
    }

    async fn list_decision_changes(
        &self,
        request: Request<pb::ListDecisionChangesRequest>,
    ) -> Result<Response<pb::ListDecisionChangesResponse>, Status> {
        reply(self.list_decision_changes(request.into_inner()).await)
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        reply(self.decide_patient(request.into_inner()).await)
    }

    async fn batch_decide(
        &self,
        request: Request<pb::BatchDecideRequest>,
    ) -> Result<Response<pb::BatchDecideResponse>, Status> {
        reply(self.decide_batch(request.into_inner()).await)
    }
}
