//! Starting the service in-process and building requests.

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, Date, HumanName, Identifier, Requester,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::*;
use carerecord_identity::{Application, Config};
use carerecord_platform::app::Service;
use carerecord_platform::config::Env;
use tokio_util::sync::CancellationToken;
use tonic_types::StatusExt;

pub type Client = PatientIdentityServiceClient<tonic::transport::Channel>;

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const MRN: &str = "https://fhir.rxx.nhs.uk/Id/mrn";

/// A running service; stopped (and its streams ended) by `stop` or on drop.
pub struct App {
    pub client: Client,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_app(db_url: &str) -> App {
    spawn_app_with(db_url, &[]).await
}

pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> App {
    let mut pairs = vec![
        ("DATABASE_URL", db_url),
        ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0"),
        ("CARERECORD_TOKEN_SECRET", SECRET),
        ("CARERECORD_SHUTDOWN_GRACE", "5s"),
    ];
    pairs.extend_from_slice(extra);
    let config = Config::from_env(&Env::from_pairs(pairs)).expect("config");
    let app = Application::build(config).await.expect("build");
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        app.run(token).await.expect("serve");
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    App {
        client: PatientIdentityServiceClient::new(channel),
        stop,
        task: Some(task),
    }
}

pub fn requester() -> Requester {
    Requester {
        user_id: "clerk-1".into(),
        organisation_ods_code: "RXX".into(),
        ..Requester::default()
    }
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn patient(given: &str, family: &str, birth: (i32, i32, i32)) -> Patient {
    Patient {
        names: vec![HumanName {
            given: vec![given.into()],
            family: family.into(),
            ..HumanName::default()
        }],
        birth_date: Some(Date {
            year: birth.0,
            month: birth.1,
            day: birth.2,
        }),
        gender: AdministrativeGender::Female as i32,
        addresses: vec![Address {
            lines: vec!["1 High Street".into()],
            city: "Leeds".into(),
            postal_code: "ls1 4ap".into(),
            ..Address::default()
        }],
        ..Patient::default()
    }
}

pub fn with_mrn(mut p: Patient, mrn: &str) -> Patient {
    p.identifiers.push(Identifier {
        system: MRN.into(),
        value: mrn.into(),
    });
    p
}

pub async fn create(client: &mut Client, p: Patient) -> Patient {
    client
        .create_patient(CreatePatientRequest {
            request_id: request_id(),
            patient: Some(p),
            requester: Some(requester()),
        })
        .await
        .expect("create")
        .into_inner()
        .patient
        .expect("patient")
}

/// The field paths of an INVALID_ARGUMENT's BadRequest.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .expect("BadRequest detail")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

pub fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

pub fn metadata(status: &tonic::Status, key: &str) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
        .unwrap_or_default()
}
