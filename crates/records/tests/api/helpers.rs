//! Starting the service in-process and building requests.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, ExportRecordsRequest, ExportRecordsResponse, GetRecordRequest, ImportItem,
    ImportRecordsRequest, ImportRecordsResponse, ListRecordsRequest, ListRecordsResponse, Record,
    RecordView, RetractRecordRequest, UpdateRecordRequest, WatchRecordChangesRequest,
    WatchRecordChangesResponse,
};
use carerecord_platform::testing::{TestDatabase, spawn_on};
use carerecord_records::Application;
use prost_types::FieldMask;
use tonic::Streaming;
use tonic::transport::Channel;

pub const BASE_URL: &str = "https://fhir.example-ics.nhs.uk/R4";
pub const SECRET: &str = "records-test-secret-0123456789";

pub type Client = RecordHostingServiceClient<Channel>;

/// A running service and a client of it.
pub struct TestApp {
    pub client: Client,
    app: carerecord_platform::testing::TestApp,
}

impl TestApp {
    /// Stops the service and waits for it to drain.
    pub async fn stop(self) {
        self.app.stop().await;
    }
}

/// Runs `test` with a client of a fresh service on each backend under test.
pub async fn on_each_backend(test: impl AsyncFn(Client)) {
    on_each_backend_with(&[], test).await;
}

/// [`on_each_backend`] with these settings added.
pub async fn on_each_backend_with(vars: &[(&str, &str)], test: impl AsyncFn(Client)) {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app_with(&db.url, vars).await;
        test(app.client.clone()).await;
        app.stop().await;
    }
}

pub async fn spawn_app(db: &TestDatabase) -> TestApp {
    spawn_app_with(&db.url, &[]).await
}

/// Starts the service on `db_url` with extra settings.
pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let settings = [
        ("CARERECORD_TOKEN_SECRET", SECRET),
        ("CARERECORD_RECORDS_FHIR_BASE_URLS", BASE_URL),
        ("CARERECORD_RECORDS_WATCH_POLL_INTERVAL", "50ms"),
    ];
    let app = spawn_on::<Application>(db_url, &settings, extra).await;
    TestApp {
        client: RecordHostingServiceClient::new(app.channel.clone()),
        app,
    }
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn requester() -> Requester {
    Requester {
        user_id: "555021935107".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: "Test Clinician".into(),
    }
}

pub fn observation(patient_id: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"glucose"}},"subject":{{"reference":"Patient/{patient_id}"}},"valueQuantity":{{"value":5.4,"unit":"mmol/L"}}}}"#
    )
    .into_bytes()
}

pub fn record(patient_id: &str) -> Record {
    Record {
        patient_id: patient_id.to_owned(),
        resource_type: "Observation".into(),
        content_type: "application/fhir+json".into(),
        payload: observation(patient_id),
        authoring_organisation_ods_code: "RR8".into(),
        source_system: "test-epr".into(),
        ..Default::default()
    }
}

pub fn create_request(record: Record) -> CreateRecordRequest {
    CreateRecordRequest {
        request_id: new_id(),
        record: Some(record),
        requester: Some(requester()),
    }
}

/// The record in a successful answer.
fn answered<R>(
    answer: Result<tonic::Response<R>, tonic::Status>,
    record: impl FnOnce(R) -> Option<Record>,
) -> Record {
    record(answer.expect("an answer").into_inner()).expect("a record")
}

/// Creates a record and returns it as stored.
pub async fn create(client: &mut Client, record: Record) -> Record {
    create_with(client, create_request(record)).await
}

/// Sends a CreateRecord request and returns the record as stored.
pub async fn create_with(client: &mut Client, request: CreateRecordRequest) -> Record {
    answered(client.create_record(request).await, |r| r.record)
}

/// A version of a record (0: the latest) in a view.
pub fn get_request(record_id: &str, version: i64, view: RecordView) -> GetRecordRequest {
    GetRecordRequest {
        record_id: record_id.to_owned(),
        version,
        view: view as i32,
    }
}

/// Reads a version of a record (0: the latest).
pub async fn get(client: &mut Client, record_id: &str, version: i64, view: RecordView) -> Record {
    answered(
        client
            .get_record(get_request(record_id, version, view))
            .await,
        |r| r.record,
    )
}

/// An update of `record` read with `etag`, replacing `paths` (none: every field).
pub fn update_request(record: Record, etag: &str, paths: &[&str]) -> UpdateRecordRequest {
    UpdateRecordRequest {
        record: Some(record),
        etag: etag.to_owned(),
        update_mask: (!paths.is_empty()).then(|| FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        requester: Some(requester()),
    }
}

/// Sends an UpdateRecord request and returns the version written.
pub async fn update(client: &mut Client, request: UpdateRecordRequest) -> Record {
    answered(client.update_record(request).await, |r| r.record)
}

/// A retraction of a record read with `etag`.
pub fn retract_request(record_id: &str, etag: &str, reason: &str) -> RetractRecordRequest {
    RetractRecordRequest {
        record_id: record_id.to_owned(),
        etag: etag.to_owned(),
        reason: reason.to_owned(),
        requester: Some(requester()),
    }
}

/// Sends a RetractRecord request and returns the version written.
pub async fn retract(client: &mut Client, request: RetractRecordRequest) -> Record {
    answered(client.retract_record(request).await, |r| r.record)
}

/// An import item.
pub fn item(record: Record, request_id: &str) -> ImportItem {
    ImportItem {
        request_id: request_id.to_owned(),
        record: Some(record),
    }
}

/// Sends an import stream and returns its answer.
/// An import message of `items` from the test requester, asking for the ids of the records written.
pub fn import_message(items: Vec<ImportItem>) -> ImportRecordsRequest {
    ImportRecordsRequest {
        items,
        requester: Some(requester()),
        return_record_ids: true,
    }
}

pub async fn import(
    client: &mut Client,
    messages: Vec<ImportRecordsRequest>,
) -> ImportRecordsResponse {
    client
        .import_records(tokio_stream::iter(messages))
        .await
        .expect("import")
        .into_inner()
}

/// One page of ListRecords.
pub async fn list_page(client: &mut Client, request: ListRecordsRequest) -> ListRecordsResponse {
    client
        .list_records(request)
        .await
        .expect("list")
        .into_inner()
}

/// Every record of a patient, all pages, including retracted ones.
pub async fn list_all(client: &mut Client, patient_id: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let mut request = ListRecordsRequest {
        patient_id: patient_id.to_owned(),
        include_retracted: true,
        ..Default::default()
    };
    loop {
        let page = list_page(client, request.clone()).await;
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return records;
        }
        request.page_token = page.next_page_token;
    }
}

pub use carerecord_platform::testing::{assert_invalid, first_description, reason, resource_info};

/// Every message of an export, to the end of the stream.
pub async fn export_all(
    client: &mut Client,
    request: ExportRecordsRequest,
) -> Vec<ExportRecordsResponse> {
    let mut stream = client.export_records(request).await.unwrap().into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        messages.push(message);
    }
    messages
}

/// A WatchRecordChanges stream, opened.
pub async fn open_watch(
    client: &mut Client,
    request: WatchRecordChangesRequest,
) -> Streaming<WatchRecordChangesResponse> {
    client
        .watch_record_changes(request)
        .await
        .unwrap()
        .into_inner()
}
