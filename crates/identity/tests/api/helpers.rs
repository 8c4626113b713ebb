//! Starting the service in-process and building requests.

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, Date, HumanName, Identifier, Requester,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::*;
use carerecord_identity::Application;
use carerecord_platform::testing::spawn;

pub type Client = PatientIdentityServiceClient<tonic::transport::Channel>;

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const MRN: &str = "https://fhir.rxx.nhs.uk/Id/mrn";

/// A running service; stopped (and its streams ended) by `stop` or on drop.
pub struct App {
    pub client: Client,
    app: carerecord_platform::testing::TestApp,
}

impl App {
    pub async fn stop(self) {
        self.app.stop().await;
    }
}

pub async fn spawn_app(db_url: &str) -> App {
    spawn_app_with(db_url, &[]).await
}

pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> App {
    let mut vars = vec![
        ("DATABASE_URL", db_url),
        ("CARERECORD_TOKEN_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    let app = spawn::<Application>(&vars).await;
    App {
        client: PatientIdentityServiceClient::new(app.channel.clone()),
        app,
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

pub use carerecord_platform::testing::{reason, violations};

/// One `ErrorInfo.metadata` value of a status.
pub fn metadata(status: &tonic::Status, key: &str) -> String {
    carerecord_platform::testing::error_info(status)
        .metadata
        .get(key)
        .cloned()
        .unwrap_or_default()
}
