//! A sandbox of the whole platform for end-to-end tests: the four real services started in-process,
//! each on its own ephemeral port with its own database, talking gRPC to each other exactly as when
//! deployed apart. The FHIR gateway runs in front of the sandbox's data access, as it would be
//! deployed in front of any supplier's.

mod fhir_client;

use std::net::SocketAddr;

use carerecord_access::dev_token::{DevToken, mint};
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    AuditEntry, ListAuditEntriesRequest, PatientReference, ReadPatientRecordRequest,
};
use carerecord_contracts::common::v1::{Date, HumanName, NameUse, Requester};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    Provision, RecordNationalDataOptOutCheckRequest,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{CreatePatientRequest, Patient};
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{CreateRecordRequest, Record};
use carerecord_platform::app::Service;
use carerecord_platform::db::Backend;
use carerecord_platform::env::Env;
use carerecord_platform::testing::TestDatabase;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use fhir_client::{Fhir, FhirConnection, KICK_OFF, Reply};

/// Where each module of the sandbox is; any may be another implementation (or nothing at all).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub identity: Option<String>,
    pub records: Option<String>,
    pub consent: Option<String>,
    /// Cedar platform rules for our consent service instead of the ones it ships with.
    pub consent_policies: Option<String>,
}

pub struct Platform {
    pub backend: Backend,
    pub access: String,
    /// The FHIR gateway (`http://127.0.0.1:<port>`), calling this sandbox's data access.
    pub fhir: String,
    pub identity: String,
    pub records: String,
    pub consent: String,
    /// The access service's database, for tests that tamper with the audit log.
    pub access_database_url: String,
    /// Data access's settings, to start another instance of it (a restart, a replica).
    pub access_env: Vec<(String, String)>,
    /// One lazily connected channel per module, shared by the helpers (loading data for a
    /// benchmark would otherwise open a connection per record).
    identity_channel: Channel,
    records_channel: Channel,
    shutdown: CancellationToken,
    _databases: Vec<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The sandbox's `CARERECORD_TOKEN_SECRET`.
pub const TOKEN_SECRET: &str = "e2e-token-secret-0123456789abcdef";

/// A research project every sandbox registers, with its pseudonymisation key.
pub const PROJECT: &str = "e2e-research";
pub const OTHER_PROJECT: &str = "e2e-planning";

fn service_env(database_url: &str, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("CARERECORD_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("DATABASE_URL".into(), database_url.into()),
        // Four pools per sandbox and tests in parallel: stay well inside PostgreSQL's 100 connections.
        ("CARERECORD_DB_MAX_CONNECTIONS".into(), "4".into()),
        ("CARERECORD_UPSTREAM_TIMEOUT".into(), "2s".into()),
        // Shared by restarts of a service, so its cursors and page tokens stay valid.
        ("CARERECORD_TOKEN_SECRET".into(), TOKEN_SECRET.into()),
        (
            "CARERECORD_RECORDS_WATCH_POLL_INTERVAL".into(),
            "50ms".into(),
        ),
    ];
    with(&mut vars, extra);
    vars
}

/// The SMART issuer the sandbox's gateway advertises in its discovery document.
pub const SMART_ISSUER: &str = "https://login.e2e.carerecord.example";

/// The gateway's settings: in front of `access`, export files under `exports`.
fn fhir_env(
    access: &str,
    exports: &std::path::Path,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("CARERECORD_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("CARERECORD_ACCESS_ENDPOINT".into(), access.into()),
        ("CARERECORD_UPSTREAM_TIMEOUT".into(), "10s".into()),
        ("CARERECORD_FHIR_SMART_ISSUER".into(), SMART_ISSUER.into()),
        (
            "CARERECORD_FHIR_EXPORT_DIR".into(),
            exports.display().to_string(),
        ),
    ];
    with(&mut vars, extra);
    vars
}

/// `vars` with `extra` added, replacing any variable of the same name.
fn with(vars: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    vars.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    vars.extend(extra.iter().cloned());
}

/// `endpoint` when the test gives one, else `S` started with `vars`.
async fn given_or_started<S: Service>(
    endpoint: Option<String>,
    vars: Vec<(String, String)>,
    shutdown: &CancellationToken,
) -> String {
    match endpoint {
        Some(endpoint) => endpoint,
        None => start::<S>(vars, shutdown).await,
    }
}

async fn start<S: Service>(vars: Vec<(String, String)>, shutdown: &CancellationToken) -> String {
    let running = carerecord_platform::app::start_from_env::<S>(&Env::from_pairs(vars))
        .await
        .unwrap_or_else(|e| panic!("{} failed to start: {e}", S::NAME));
    let addr: SocketAddr = running.local_addr();
    tokio::spawn(running.run(shutdown.clone()));
    format!("http://{addr}")
}

impl Platform {
    /// One platform per backend under test (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set).
    pub async fn each_backend(overrides: Overrides) -> Vec<Platform> {
        Self::each_backend_with(overrides, &[]).await
    }

    /// [`Platform::each_backend`] with more settings (see [`Platform::start_with`]).
    pub async fn each_backend_with(
        overrides: Overrides,
        extra: &[(String, String)],
    ) -> Vec<Platform> {
        let mut platforms =
            vec![Platform::start_with(Backend::Sqlite, overrides.clone(), extra).await];
        if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
            platforms.push(Platform::start_with(Backend::Postgres, overrides, extra).await);
        }
        platforms
    }

    pub async fn start(backend: Backend, overrides: Overrides) -> Platform {
        Self::start_with(backend, overrides, &[]).await
    }

    /// [`Platform::start`] with more settings: `extra` is given to every service, replacing the
    /// sandbox's own values (its pool sizes, development tokens...).
    pub async fn start_with(
        backend: Backend,
        overrides: Overrides,
        extra: &[(String, String)],
    ) -> Platform {
        let mut databases = Vec::new();
        for _ in 0..4 {
            databases.push(match backend {
                Backend::Sqlite => TestDatabase::sqlite(),
                Backend::Postgres => TestDatabase::postgres()
                    .await
                    .expect("TEST_DATABASE_URL is set"),
            });
        }
        let shutdown = CancellationToken::new();
        let dir = tempfile::tempdir().expect("temporary directory");
        let identity = given_or_started::<carerecord_identity::Application>(
            overrides.identity,
            service_env(&databases[0].url, extra),
            &shutdown,
        )
        .await;
        let records = given_or_started::<carerecord_records::Application>(
            overrides.records,
            service_env(&databases[1].url, extra),
            &shutdown,
        )
        .await;
        let consent = match overrides.consent {
            Some(endpoint) => endpoint,
            None => {
                let mut env = service_env(&databases[2].url, extra);
                if let Some(policies) = &overrides.consent_policies {
                    let file = dir.path().join("platform.cedar");
                    std::fs::write(&file, policies).expect("write consent policies");
                    with(
                        &mut env,
                        &[(
                            carerecord_consent::POLICY_FILE_VAR.into(),
                            file.display().to_string(),
                        )],
                    );
                }
                start::<carerecord_consent::Application>(env, &shutdown).await
            }
        };
        let projects = dir.path().join("projects.json");
        let project = |id: &str, key: &str| serde_json::json!({"project_id": id, "key": key, "purposes": ["HRESCH", "HOPERAT"], "organisations": [], "clients": []});
        let projects_json = serde_json::json!({"projects": [project(PROJECT, &"1a".repeat(32)), project(OTHER_PROJECT, &"2b".repeat(32))]});
        std::fs::write(&projects, projects_json.to_string()).expect("write projects file");
        let mut access_env = service_env(&databases[3].url, &[]);
        access_env.extend([
            ("CARERECORD_IDENTITY_ENDPOINT".into(), identity.clone()),
            ("CARERECORD_RECORDS_ENDPOINT".into(), records.clone()),
            ("CARERECORD_CONSENT_ENDPOINT".into(), consent.clone()),
            ("CARERECORD_DEV_TOKENS".into(), "true".into()),
            (
                "CARERECORD_PROJECTS_FILE".into(),
                projects.display().to_string(),
            ),
        ]);
        with(&mut access_env, extra);
        let access = start::<carerecord_access::Application>(access_env.clone(), &shutdown).await;
        let fhir = start::<carerecord_fhir::Application>(
            fhir_env(&access, &dir.path().join("fhir-exports"), extra),
            &shutdown,
        )
        .await;
        let identity_channel = Self::channel(&identity).await;
        let records_channel = Self::channel(&records).await;
        Platform {
            backend,
            access,
            fhir,
            identity,
            records,
            consent,
            access_database_url: databases[3].url.clone(),
            access_env,
            identity_channel,
            records_channel,
            shutdown,
            _databases: databases,
            _dir: dir,
        }
    }

    /// Every database of the sandbox as autovacuum leaves it within a minute of a load
    /// ([`TestDatabase::settle`]); benchmarks call it between loading and measuring.
    pub async fn settle(&self) {
        for db in &self._databases {
            db.settle().await;
        }
    }

    /// Starts another data access on the same database and modules, as a restart or a replica
    /// would be; it stops when the platform does.
    pub async fn another_access(&self) -> String {
        let mut env = self.access_env.clone();
        with(
            &mut env,
            &[("CARERECORD_LISTEN_ADDR".into(), "127.0.0.1:0".into())],
        );
        start::<carerecord_access::Application>(env, &self.shutdown).await
    }

    /// Starts another FHIR gateway in front of `access` (this sandbox's, another instance of it, or
    /// an address where nothing answers), with `extra` settings; it stops when the platform does.
    pub async fn another_fhir(&self, access: &str, extra: &[(String, String)]) -> String {
        let exports = self._dir.path().join(format!("fhir-exports-{}", uuid()));
        start::<carerecord_fhir::Application>(fhir_env(access, &exports, extra), &self.shutdown)
            .await
    }

    /// A client of this sandbox's FHIR gateway.
    pub fn fhir(&self) -> Fhir {
        Fhir::new(&self.fhir)
    }

    pub async fn channel(endpoint: &str) -> Channel {
        tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .expect("endpoint")
            .connect_lazy()
    }

    pub async fn access_client(&self) -> DataAccessServiceClient<Channel> {
        DataAccessServiceClient::new(Self::channel(&self.access).await)
    }

    pub async fn identity_client(&self) -> PatientIdentityServiceClient<Channel> {
        PatientIdentityServiceClient::new(Self::channel(&self.identity).await)
    }

    pub async fn records_client(&self) -> RecordHostingServiceClient<Channel> {
        RecordHostingServiceClient::new(Self::channel(&self.records).await)
    }

    pub async fn consent_client(&self) -> ConsentServiceClient<Channel> {
        ConsentServiceClient::new(Self::channel(&self.consent).await)
    }

    /// Registers a patient with a fresh valid NHS number; returns (patient_id, nhs_number).
    pub async fn register_patient(&self, given: &str, family: &str) -> (String, String) {
        let patient = self.register(new_patient(given, family), loader()).await;
        (patient.patient_id, patient.nhs_number)
    }

    /// Registers `patient` in identity as `requester`; returns the patient as identity keeps them.
    pub async fn register(&self, patient: Patient, requester: Requester) -> Patient {
        let request = CreatePatientRequest {
            request_id: uuid(),
            patient: Some(patient),
            requester: Some(requester),
        };
        PatientIdentityServiceClient::new(self.identity_channel.clone())
            .create_patient(request)
            .await
            .expect("register patient")
            .into_inner()
            .patient
            .expect("patient")
    }

    /// Records an active consent directive of the patient's, as a clinician at RR8 would on their
    /// behalf.
    pub async fn record_directive(
        &self,
        patient_id: &str,
        decision: ConsentDecision,
        provisions: Vec<Provision>,
    ) {
        let directive = ConsentDirective {
            patient_id: patient_id.into(),
            status: ConsentDirectiveStatus::Active as i32,
            decision: decision as i32,
            provisions,
            date_time: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        };
        self.consent_client()
            .await
            .create_consent_directive(CreateConsentDirectiveRequest {
                request_id: uuid(),
                directive: Some(directive),
                requester: Some(loader()),
            })
            .await
            .expect("record the directive");
    }

    /// Records the national data opt-out service's answer for `checked` patients, checked now:
    /// those in `not_opted_out` may be used for research and planning, the rest have opted out.
    pub async fn record_opt_out_check(&self, checked: &[String], not_opted_out: &[String]) {
        self.consent_client()
            .await
            .record_national_data_opt_out_check(RecordNationalDataOptOutCheckRequest {
                checked_patient_ids: checked.to_vec(),
                not_opted_out_patient_ids: not_opted_out.to_vec(),
                check_time: Some(std::time::SystemTime::now().into()),
                source: "e2e: national data opt-out service".into(),
                requester: Some(loader()),
            })
            .await
            .expect("record the opt-out check");
    }

    /// The audit log's first 1,000 entries, as `token` (a privacy officer's) lists them.
    pub async fn audit_entries(&self, token: &str) -> Vec<AuditEntry> {
        let request = ListAuditEntriesRequest {
            page_size: 1000,
            ..Default::default()
        };
        self.access_client()
            .await
            .list_audit_entries(authed(request, token))
            .await
            .expect("the audit log")
            .into_inner()
            .entries
    }

    /// Records the national data opt-out service's answer that the patient has not opted out.
    pub async fn record_not_opted_out(&self, patient_id: &str) {
        let checked = [patient_id.to_owned()];
        self.record_opt_out_check(&checked, &checked).await;
    }

    /// A research cohort of two patients with a record each, both checked by the national data
    /// opt-out service: the first (named `may`) may be used, the second has opted out. Returns
    /// their ids.
    pub async fn opt_out_cohort(
        &self,
        (given, family): (&str, &str),
        (opted_out_given, opted_out_family): (&str, &str),
    ) -> (String, String) {
        let (may, _) = self.register_patient(given, family).await;
        let (opted_out, _) = self
            .register_patient(opted_out_given, opted_out_family)
            .await;
        self.add_record(&may, &[]).await;
        self.add_record(&opted_out, &[]).await;
        let checked = [may.clone(), opted_out.clone()];
        self.record_opt_out_check(&checked, std::slice::from_ref(&may))
            .await;
        (may, opted_out)
    }

    /// Stores an Observation (or, with a data class, a Condition) for a patient; returns the record id.
    pub async fn add_record(&self, patient_id: &str, data_classes: &[&str]) -> String {
        let payload = if data_classes.is_empty() {
            serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "effectiveDateTime": "2026-10-01T09:00:00Z", "valueQuantity": {"value": 72, "unit": "/min"}})
        } else {
            serde_json::json!({"resourceType": "Condition",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "35489007"}]},
                "subject": {"reference": format!("Patient/{patient_id}")}, "onsetDateTime": "2024-02-02"})
        };
        let record = Record {
            patient_id: patient_id.into(),
            resource_type: payload["resourceType"].as_str().unwrap_or_default().into(),
            content_type: "application/fhir+json".into(),
            payload: payload.to_string().into_bytes(),
            data_classes: data_classes.iter().map(|c| c.to_string()).collect(),
            source_system: "e2e".into(),
            authoring_organisation_ods_code: "RR8".into(),
            ..Default::default()
        };
        let request = CreateRecordRequest {
            request_id: uuid(),
            record: Some(record),
            requester: Some(loader()),
        };
        RecordHostingServiceClient::new(self.records_channel.clone())
            .create_record(request)
            .await
            .expect("create record")
            .into_inner()
            .record
            .expect("record")
            .record_id
    }
}

/// The patient with NHS number `nhs_number`, as the front door's requests name a patient.
pub fn by_nhs(nhs_number: &str) -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::NhsNumber(nhs_number.into())),
    })
}

/// The patient with identity's id `patient_id`, as the front door's requests name a patient.
pub fn by_id(patient_id: &str) -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::PatientId(patient_id.into())),
    })
}

/// ReadPatientRecord of `patient` for `purpose` (a PurposeOfUse code), with the defaults otherwise.
pub fn read_request(patient: Option<PatientReference>, purpose: &str) -> ReadPatientRecordRequest {
    ReadPatientRecordRequest {
        patient,
        purpose_of_use: purpose.into(),
        ..ReadPatientRecordRequest::default()
    }
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A patient to register: an official name, born 12 April 1961, female, with a fresh valid NHS
/// number.
pub fn new_patient(given: &str, family: &str) -> Patient {
    Patient {
        nhs_number: fresh_nhs_number(),
        names: vec![HumanName {
            r#use: NameUse::Official as i32,
            given: vec![given.into()],
            family: family.into(),
            ..Default::default()
        }],
        birth_date: Some(Date {
            year: 1961,
            month: 4,
            day: 12,
        }),
        gender: carerecord_contracts::common::v1::AdministrativeGender::Female as i32,
        ..Default::default()
    }
}

fn loader() -> Requester {
    Requester {
        user_id: "e2e-loader".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

/// A valid NHS number in the 999 test range, never the same twice in one process: serials follow
/// on from a random start (random serials collided: 1,000 of them share one with odds of 2 in 5).
pub fn fresh_nhs_number() -> String {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128() % 1_000_000);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let serial = (start + u128::from(n)) % 1_000_000;
        let first_nine = format!("999{serial:06}");
        // Serials whose check digit would be 10 make no valid number.
        if let Some(check) = carerecord_platform::nhs_number::check_digit(first_nine.as_bytes()) {
            return format!("{first_nine}{check}");
        }
    }
}

/// A development token of `claims` for the sandbox's data access: its audience, ten minutes.
fn sandbox_token(claims: DevToken) -> String {
    mint(&DevToken {
        audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
        ttl_seconds: 600,
        ..claims
    })
    .expect("mint a development token")
}

/// A development token acting for `organisation` (the sandbox's data access accepts them).
pub fn token_at(organisation: &str, role: &str, scope: &str, client_id: &str) -> String {
    sandbox_token(DevToken {
        subject: format!("e2e-user-{organisation}-{role}"),
        organisation_ods_code: organisation.into(),
        role_code: role.into(),
        display_name: format!("E2E User at {organisation}"),
        client_id: client_id.into(),
        scope: scope.into(),
        ..Default::default()
    })
}

/// A development token of a patient-facing app acting for `patient_id`.
pub fn patient_token(patient_id: &str, scope: &str) -> String {
    sandbox_token(DevToken {
        subject: format!("e2e-patient-{patient_id}"),
        client_id: "e2e-patient-app".into(),
        scope: scope.into(),
        patient: patient_id.into(),
        ..Default::default()
    })
}

/// A development token (the sandbox's data access accepts them).
pub fn token(role: &str, scope: &str) -> String {
    sandbox_token(DevToken {
        subject: format!("e2e-user-{role}"),
        organisation_ods_code: "RR8".into(),
        role_code: role.into(),
        display_name: "E2E User".into(),
        client_id: "e2e".into(),
        scope: scope.into(),
        ..Default::default()
    })
}

pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}
