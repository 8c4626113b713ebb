//! Starting the service in-process and building requests.

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, Date, HumanName, Identifier, Requester,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::*;
use carerecord_identity::Application;
use carerecord_platform::testing::{TestDatabase, spawn_on};

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

/// Runs `test` with a client of a fresh service on each backend under test.
pub async fn on_each_backend(test: impl AsyncFn(&mut Client)) {
    on_each_backend_with(&[], test).await;
}

/// [`on_each_backend`] with these settings added.
pub async fn on_each_backend_with(vars: &[(&str, &str)], test: impl AsyncFn(&mut Client)) {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app_with(&db.url, vars).await;
        test(&mut app.client).await;
        app.stop().await;
    }
}

pub async fn spawn_app(db_url: &str) -> App {
    spawn_app_with(db_url, &[]).await
}

pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> App {
    let settings = [("CARERECORD_TOKEN_SECRET", SECRET)];
    let app = spawn_on::<Application>(db_url, &settings, extra).await;
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

/// Registers `patients` in batches of 500; returns them as registered, in order.
pub async fn register_all(client: &mut Client, patients: &[&Patient]) -> Vec<Patient> {
    let mut out = Vec::new();
    for chunk in patients.chunks(500) {
        let requests = chunk
            .iter()
            .map(|p| CreatePatientRequest {
                request_id: request_id(),
                patient: Some((*p).clone()),
                requester: None,
            })
            .collect();
        let response = ok(client
            .batch_create_patients(BatchCreatePatientsRequest {
                requests,
                requester: Some(requester()),
            })
            .await);
        for r in response.results {
            match r.outcome.unwrap() {
                batch_create_patients_result::Outcome::Patient(p) => out.push(p),
                batch_create_patients_result::Outcome::Error(e) => panic!("{e:?}"),
            }
        }
    }
    out
}

pub use carerecord_platform::testing::{reason, resource_info, violations};

/// The message of a call that must succeed.
pub fn ok<T>(response: Result<tonic::Response<T>, tonic::Status>) -> T {
    response.expect("the call succeeds").into_inner()
}

/// The status of a call that must fail.
pub fn refused<T>(response: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match response {
        Ok(_) => panic!("the call succeeded; it should have been refused"),
        Err(status) => status,
    }
}

pub fn resolve_request(system: &str, value: &str) -> ResolveIdentifierRequest {
    ResolveIdentifierRequest {
        identifier: Some(Identifier {
            system: system.into(),
            value: value.into(),
        }),
    }
}

/// An update of the fields `paths` names to their values in `p`, from the version `etag` names.
pub fn update_request(
    p: Patient,
    etag: &str,
    paths: &[&str],
    reason: &str,
) -> UpdatePatientRequest {
    UpdatePatientRequest {
        patient: Some(p),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
        }),
        etag: etag.to_owned(),
        requester: Some(requester()),
        reason: reason.into(),
    }
}

/// The stored patient `patient_id`.
pub async fn get(client: &mut Client, patient_id: &str) -> Patient {
    ok(client
        .get_patient(GetPatientRequest {
            patient_id: patient_id.to_owned(),
        })
        .await)
    .patient
    .expect("patient")
}

/// A patient's versions, oldest first (one page).
pub async fn versions(client: &mut Client, patient_id: &str) -> Vec<PatientVersion> {
    ok(client
        .list_patient_versions(ListPatientVersionsRequest {
            patient_id: patient_id.to_owned(),
            ..Default::default()
        })
        .await)
    .versions
}

/// The first violation of a FAILED_PRECONDITION status's `PreconditionFailure`.
pub fn precondition(status: &tonic::Status) -> tonic_types::PreconditionViolation {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .precondition_failure()
        .and_then(|p| p.violations.first().cloned())
        .unwrap_or_else(|| panic!("no PreconditionFailure in {status:?}"))
}

/// One `ErrorInfo.metadata` value of a status.
pub fn metadata(status: &tonic::Status, key: &str) -> String {
    carerecord_platform::testing::error_info(status)
        .metadata
        .get(key)
        .cloned()
        .unwrap_or_default()
}
