//! Starting the service in-process and building requests.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{CreateRecordRequest, ListRecordsRequest, Record};
use carerecord_platform::testing::{TestDatabase, spawn};
use carerecord_records::Application;
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

pub async fn spawn_app(db: &TestDatabase) -> TestApp {
    spawn_app_with(&db.url, &[]).await
}

/// Starts the service on `db_url` with extra settings.
pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("DATABASE_URL", db_url),
        ("CARERECORD_TOKEN_SECRET", SECRET),
        ("CARERECORD_RECORDS_FHIR_BASE_URLS", BASE_URL),
        ("CARERECORD_RECORDS_WATCH_POLL_INTERVAL", "50ms"),
    ];
    vars.extend_from_slice(extra);
    let app = spawn::<Application>(&vars).await;
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

/// Creates a record and returns it as stored.
pub async fn create(client: &mut Client, record: Record) -> Record {
    client
        .create_record(create_request(record))
        .await
        .expect("create")
        .into_inner()
        .record
        .expect("record")
}

/// Every record of a patient, all pages, including retracted ones.
pub async fn list_all(client: &mut Client, patient_id: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_records(ListRecordsRequest {
                patient_id: patient_id.to_owned(),
                include_retracted: true,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return records;
        }
        page_token = page.next_page_token;
    }
}

pub use carerecord_platform::testing::{assert_invalid, first_description, reason};
