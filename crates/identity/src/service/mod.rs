//! gRPC handlers for `carerecord.identity.v1.PatientIdentityService`, one file per area:
//! `patients` (create, get, update, versions), `search` (resolve an identifier, search by
//! name), `matching` (match patients, and the match parameters: read and estimate), `merges`
//! (merge and unmerge), `feed` (the change feed) and `confidentiality` (the confidentiality
//! marker).
//!
//! Each handler parses its request into typed values (what several share is in `request`), calls
//! the domain and the store, and returns `Result<_, Error>`; the trait implementation below only
//! unwraps requests and maps errors to statuses.

mod confidentiality;
mod feed;
mod matching;
mod merges;
mod parameters;
mod patients;
mod request;
mod search;

use std::pin::Pin;
use std::sync::Arc;

use carerecord_contracts::identity::v1::patient_identity_service_server::PatientIdentityService;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::page_token::PageTokens;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Settings;
use crate::error::Error;
use crate::store::Store;
use parameters::{CurrentFrequencies, CurrentParameters};

/// The identity API.
#[derive(Debug, Clone)]
pub struct IdentityService {
    store: Store,
    settings: Arc<Settings>,
    tokens: PageTokens,
    /// Woken after every committed write, so change-feed streams deliver without waiting a poll.
    notify: Arc<Notify>,
    /// Cancelled when the server shuts down: open feed streams end with UNAVAILABLE.
    shutdown: CancellationToken,
    parameters: Arc<CurrentParameters>,
    frequencies: Arc<CurrentFrequencies>,
    /// Held while an estimation runs: one at a time per replica.
    estimating: Arc<tokio::sync::Mutex<()>>,
}

impl IdentityService {
    pub(crate) fn new(
        store: Store,
        settings: Settings,
        tokens: PageTokens,
        shutdown: CancellationToken,
    ) -> Self {
        IdentityService {
            parameters: Arc::new(CurrentParameters::new(store.clone())),
            frequencies: Arc::new(CurrentFrequencies::new(store.clone())),
            store,
            settings: Arc::new(settings),
            tokens,
            notify: Arc::new(Notify::new()),
            shutdown,
            estimating: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Wakes the change-feed streams after a committed write.
    fn written(&self) {
        self.notify.notify_waiters();
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchPatientChangesResponse, Status>> + Send>>;

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl PatientIdentityService for IdentityService {
    async fn create_patient(
        &self,
        request: Request<CreatePatientRequest>,
    ) -> Result<Response<CreatePatientResponse>, Status> {
        reply(self.create(request.into_inner()).await)
    }

    async fn batch_create_patients(
        &self,
        request: Request<BatchCreatePatientsRequest>,
    ) -> Result<Response<BatchCreatePatientsResponse>, Status> {
        reply(self.batch_create(request.into_inner()).await)
    }

    async fn get_patient(
        &self,
        request: Request<GetPatientRequest>,
    ) -> Result<Response<GetPatientResponse>, Status> {
        reply(self.get(request.into_inner()).await)
    }

    async fn update_patient(
        &self,
        request: Request<UpdatePatientRequest>,
    ) -> Result<Response<UpdatePatientResponse>, Status> {
        reply(self.update(request.into_inner()).await)
    }

    async fn list_patient_versions(
        &self,
        request: Request<ListPatientVersionsRequest>,
    ) -> Result<Response<ListPatientVersionsResponse>, Status> {
        reply(self.versions(request.into_inner()).await)
    }

    async fn resolve_identifier(
        &self,
        request: Request<ResolveIdentifierRequest>,
    ) -> Result<Response<ResolveIdentifierResponse>, Status> {
        reply(self.resolve(request.into_inner()).await)
    }

    async fn search_patients(
        &self,
        request: Request<SearchPatientsRequest>,
    ) -> Result<Response<SearchPatientsResponse>, Status> {
        reply(self.search(request.into_inner()).await)
    }

    async fn match_patients(
        &self,
        request: Request<MatchPatientsRequest>,
    ) -> Result<Response<MatchPatientsResponse>, Status> {
        reply(self.find_matches(request.into_inner()).await)
    }

    async fn get_match_parameters(
        &self,
        request: Request<GetMatchParametersRequest>,
    ) -> Result<Response<GetMatchParametersResponse>, Status> {
        reply(self.match_parameters(request.into_inner()).await)
    }

    async fn estimate_match_parameters(
        &self,
        request: Request<EstimateMatchParametersRequest>,
    ) -> Result<Response<EstimateMatchParametersResponse>, Status> {
        reply(self.estimate(request.into_inner()).await)
    }

    async fn merge_patients(
        &self,
        request: Request<MergePatientsRequest>,
    ) -> Result<Response<MergePatientsResponse>, Status> {
        reply(self.merge(request.into_inner()).await)
    }

    async fn unmerge_patient(
        &self,
        request: Request<UnmergePatientRequest>,
    ) -> Result<Response<UnmergePatientResponse>, Status> {
        reply(self.unmerge(request.into_inner()).await)
    }

    async fn set_patient_confidentiality(
        &self,
        request: Request<SetPatientConfidentialityRequest>,
    ) -> Result<Response<SetPatientConfidentialityResponse>, Status> {
        reply(self.set_confidentiality(request.into_inner()).await)
    }

    async fn list_patient_changes(
        &self,
        request: Request<ListPatientChangesRequest>,
    ) -> Result<Response<ListPatientChangesResponse>, Status> {
        reply(self.list_changes(request.into_inner()).await)
    }

    async fn watch_patient_changes(
        &self,
        request: Request<WatchPatientChangesRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        reply(self.watch(request.into_inner()))
    }
}
