//! The tonic trait, thin: each method hands its request to the handler of the same name and maps
//! the handler's error to a status.

use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingService;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, CreateRecordResponse, ExportRecordsRequest, ExportRecordsResponse,
    GetRecordRequest, GetRecordResponse, ImportRecordsRequest, ImportRecordsResponse,
    ListRecordVersionsRequest, ListRecordVersionsResponse, ListRecordsRequest, ListRecordsResponse,
    RetractRecordRequest, RetractRecordResponse, UpdateRecordRequest, UpdateRecordResponse,
    WatchRecordChangesRequest, WatchRecordChangesResponse,
};
use tonic::{Request, Response, Status, Streaming};

use super::state::RecordsService;
use super::stream::ResponseStream;
use crate::error::Error;

/// A handler's answer as tonic returns it.
fn respond<T>(answer: Result<T, Error>) -> Result<Response<T>, Status> {
    answer.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl RecordHostingService for RecordsService {
    async fn create_record(
        &self,
        request: Request<CreateRecordRequest>,
    ) -> Result<Response<CreateRecordResponse>, Status> {
        let record = self.create(request.into_inner()).await;
        respond(record.map(|record| CreateRecordResponse {
            record: Some(record),
        }))
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let record = self.get(request.into_inner()).await;
        respond(record.map(|record| GetRecordResponse {
            record: Some(record),
        }))
    }

    async fn update_record(
        &self,
        request: Request<UpdateRecordRequest>,
    ) -> Result<Response<UpdateRecordResponse>, Status> {
        let record = self.update(request.into_inner()).await;
        respond(record.map(|record| UpdateRecordResponse {
            record: Some(record),
        }))
    }

    async fn retract_record(
        &self,
        request: Request<RetractRecordRequest>,
    ) -> Result<Response<RetractRecordResponse>, Status> {
        let record = self.retract(request.into_inner()).await;
        respond(record.map(|record| RetractRecordResponse {
            record: Some(record),
        }))
    }

    async fn list_record_versions(
        &self,
        request: Request<ListRecordVersionsRequest>,
    ) -> Result<Response<ListRecordVersionsResponse>, Status> {
        respond(self.list_versions(request.into_inner()).await)
    }

    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        respond(self.list(request.into_inner()).await)
    }

    async fn export_records(
        &self,
        request: Request<ExportRecordsRequest>,
    ) -> Result<Response<ResponseStream<ExportRecordsResponse>>, Status> {
        respond(self.export(request.into_inner()).await)
    }

    async fn watch_record_changes(
        &self,
        request: Request<WatchRecordChangesRequest>,
    ) -> Result<Response<ResponseStream<WatchRecordChangesResponse>>, Status> {
        respond(self.watch(request.into_inner()).await)
    }

    async fn import_records(
        &self,
        request: Request<Streaming<ImportRecordsRequest>>,
    ) -> Result<Response<ImportRecordsResponse>, Status> {
        respond(self.import(request.into_inner()).await)
    }
}
