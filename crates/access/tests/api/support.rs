//! Test doubles of identity, consent and record hosting (in-memory, implementing just the RPCs
//! data access calls), tokens, and an in-process data access service wired to them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use carerecord_access::{Application, Config};
use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::identity::v1 as identity;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::env::Env;
pub use carerecord_platform::testing::error_info;
use carerecord_platform::testing::spawn_with_config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "carerecord-access";
pub const KEYS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/keys");
pub const PROJECT_A: &str = "study-a";
pub const PROJECT_B: &str = "study-b";

/// Everything the doubles hold.
#[derive(Default)]
pub struct World {
    pub patients: HashMap<String, identity::Patient>,
    pub records: Vec<records::Record>,
    /// Patients whose directives deny everything (overridable by break glass).
    pub dissent: HashSet<String>,
    /// Patients whose directives withhold these data classes.
    pub withhold: HashMap<String, Vec<String>>,
    /// Patients opted out of research and planning.
    pub opted_out: HashSet<String>,
}

#[derive(Clone, Default)]
pub struct Fakes {
    pub world: Arc<Mutex<World>>,
    pub consent_down: Arc<AtomicBool>,
    pub identity_down: Arc<AtomicBool>,
    pub decide_calls: Arc<AtomicUsize>,
    /// Makes Decide slow, in milliseconds.
    pub consent_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Fakes {
    pub fn add_patient(&self, nhs_number: &str, family: &str) -> String {
        let id = uuid();
        let patient = identity::Patient {
            patient_id: id.clone(),
            nhs_number: nhs_number.to_owned(),
            names: vec![common::HumanName {
                family: family.to_owned(),
                given: vec!["Alex".into()],
                ..Default::default()
            }],
            birth_date: Some(common::Date {
                year: 1970,
                month: 5,
                day: 17,
            }),
            state: identity::PatientState::Active as i32,
            version: 1,
            ..Default::default()
        };
        self.world
            .lock()
            .unwrap()
            .patients
            .insert(id.clone(), patient);
        id
    }

    /// A patient (NHS number 9434765919, family name Smith) with one Observation.
    pub fn patient_with_an_observation(&self) -> String {
        let p = self.add_patient("9434765919", "Smith");
        self.add_record(&p, "Observation", &[], Some(1_600_000_000));
        p
    }

    /// Merges `duplicate` into `survivor`.
    pub fn merge(&self, duplicate: &str, survivor: &str) {
        let mut world = self.world.lock().unwrap();
        let dup = world.patients.get_mut(duplicate).unwrap();
        dup.state = identity::PatientState::Merged as i32;
        dup.merged_into_patient_id = survivor.to_owned();
        world
            .patients
            .get_mut(survivor)
            .unwrap()
            .merged_from_patient_ids
            .push(duplicate.to_owned());
    }

    /// Adds a record; `effective_secs` is seconds since the epoch.
    pub fn add_record(
        &self,
        patient_id: &str,
        resource_type: &str,
        classes: &[&str],
        effective_secs: Option<i64>,
    ) -> String {
        let id = uuid();
        let payload = serde_json::json!({
            "resourceType": resource_type,
            "id": id,
            "subject": {"reference": format!("Patient/{patient_id}"), "display": "Alex Smith"},
            "identifier": [{"system": "https://trust.example/obs", "value": "OBS-1"}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
            "note": [{"text": "private remark"}],
            "status": "final"
        });
        let record = records::Record {
            record_id: id.clone(),
            patient_id: patient_id.to_owned(),
            resource_type: resource_type.to_owned(),
            content_type: "application/fhir+json".into(),
            payload: serde_json::to_vec(&payload).unwrap(),
            data_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            authoring_organisation_ods_code: "RR8".into(),
            source_system: "test".into(),
            effective_time: effective_secs.map(|s| prost_types::Timestamp {
                seconds: s,
                nanos: 0,
            }),
            status: records::RecordStatus::Current as i32,
            version: 1,
            etag: "e1".into(),
            ..Default::default()
        };
        self.world.lock().unwrap().records.push(record);
        id
    }

    fn patient(&self, id: &str) -> Option<identity::Patient> {
        self.world.lock().unwrap().patients.get(id).cloned()
    }

    fn decision(&self, patient_id: &str, purpose: &str) -> consent::Decision {
        let world = self.world.lock().unwrap();
        let reason = |source: consent::DecisionSource, effect: consent::DecisionOutcome| {
            consent::DecisionReason {
                source: source as i32,
                effect: effect as i32,
                explanation: String::new(),
                ..Default::default()
            }
        };
        let direct_care = matches!(purpose, "TREAT" | "ETREAT" | "PATRQT");
        let mut decision = consent::Decision {
            patient_id: patient_id.to_owned(),
            outcome: consent::DecisionOutcome::Permit as i32,
            policy_set_version: "test-1".into(),
            ..Default::default()
        };
        if world.opted_out.contains(patient_id) && !direct_care {
            decision.outcome = consent::DecisionOutcome::Deny as i32;
            decision.reasons = vec![reason(
                consent::DecisionSource::NationalDataOptOut,
                consent::DecisionOutcome::Deny,
            )];
        } else if world.dissent.contains(patient_id) {
            decision.outcome = consent::DecisionOutcome::Deny as i32;
            decision.reasons = vec![reason(
                consent::DecisionSource::PatientDirective,
                consent::DecisionOutcome::Deny,
            )];
        } else if let Some(classes) = world.withhold.get(patient_id) {
            decision.obligations = vec![consent::Obligation {
                r#type: consent::ObligationType::WithholdDataClasses as i32,
                data_classes: classes.clone(),
                include_general_data: false,
                data_period: None,
            }];
            decision.reasons = vec![
                reason(
                    consent::DecisionSource::PatientDirective,
                    consent::DecisionOutcome::Deny,
                ),
                reason(
                    consent::DecisionSource::Default,
                    consent::DecisionOutcome::Permit,
                ),
            ];
        } else {
            decision.reasons = vec![reason(
                consent::DecisionSource::Default,
                consent::DecisionOutcome::Permit,
            )];
        }
        if purpose == "ETREAT" {
            decision.obligations.push(consent::Obligation {
                r#type: consent::ObligationType::FlagForReview as i32,
                ..Default::default()
            });
        }
        decision
    }
}

/// Consent's rule: a requester has a user, and an organisation and role unless it is the patient
/// themselves asking (PATRQT).
fn check_requester(requester: Option<&common::Requester>, purpose: &str) -> Result<(), Status> {
    let r = requester.ok_or_else(|| Status::invalid_argument("requester missing"))?;
    let the_patient =
        purpose == "PATRQT" && r.organisation_ods_code.is_empty() && r.role_code.is_empty();
    if r.user_id.is_empty() || (r.role_code.is_empty() && !the_patient) {
        return Err(Status::invalid_argument("requester incomplete"));
    }
    Ok(())
}

#[tonic::async_trait]
impl identity::patient_identity_service_server::PatientIdentityService for Fakes {
    async fn get_patient(
        &self,
        request: Request<identity::GetPatientRequest>,
    ) -> Result<Response<identity::GetPatientResponse>, Status> {
        if self.identity_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("identity is down"));
        }
        let patient = self
            .patient(&request.into_inner().patient_id)
            .ok_or_else(|| Status::not_found("no such patient"))?;
        Ok(Response::new(identity::GetPatientResponse {
            patient: Some(patient),
        }))
    }

    async fn resolve_identifier(
        &self,
        request: Request<identity::ResolveIdentifierRequest>,
    ) -> Result<Response<identity::ResolveIdentifierResponse>, Status> {
        if self.identity_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("identity is down"));
        }
        let identifier = request.into_inner().identifier.unwrap_or_default();
        let holders: Vec<identity::Patient> = {
            let world = self.world.lock().unwrap();
            world
                .patients
                .values()
                .filter(|p| {
                    (identifier.system == "https://fhir.nhs.uk/Id/nhs-number"
                        && p.nhs_number == identifier.value)
                        || p.identifiers
                            .iter()
                            .any(|i| i.system == identifier.system && i.value == identifier.value)
                })
                .cloned()
                .collect()
        };
        // Another supplier's index might hold one identifier twice.
        if holders.len() > 1 {
            return Err(Status::failed_precondition("held by more than one patient"));
        }
        let mut patient = holders
            .into_iter()
            .next()
            .ok_or_else(|| Status::not_found("no holder"))?;
        let mut merged = Vec::new();
        while patient.state == identity::PatientState::Merged as i32 {
            merged.push(patient.patient_id.clone());
            patient = self.patient(&patient.merged_into_patient_id).unwrap();
        }
        Ok(Response::new(identity::ResolveIdentifierResponse {
            patient_id: patient.patient_id.clone(),
            followed_merge: !merged.is_empty(),
            merged_patient_ids: merged,
            patient: Some(patient),
        }))
    }

    async fn match_patients(
        &self,
        request: Request<identity::MatchPatientsRequest>,
    ) -> Result<Response<identity::MatchPatientsResponse>, Status> {
        let Some(identity::match_patients_request::Probe::Demographics(probe)) =
            request.into_inner().probe
        else {
            return Err(Status::invalid_argument("demographics expected"));
        };
        let family = probe
            .names
            .first()
            .map(|n| n.family.to_lowercase())
            .unwrap_or_default();
        let world = self.world.lock().unwrap();
        let candidates = world
            .patients
            .values()
            .filter(|p| p.state == identity::PatientState::Active as i32)
            .filter(|p| {
                p.birth_date == probe.birth_date
                    && p.names.iter().any(|n| n.family.to_lowercase() == family)
            })
            .map(|p| identity::MatchCandidate {
                patient: Some(p.clone()),
                match_probability: 0.999,
                classification: identity::MatchClassification::Match as i32,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(identity::MatchPatientsResponse {
            candidates,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl consent::consent_service_server::ConsentService for Fakes {
    async fn decide(
        &self,
        request: Request<consent::DecideRequest>,
    ) -> Result<Response<consent::DecideResponse>, Status> {
        self.decide_calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.consent_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.consent_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("consent is down"));
        }
        let req = request.into_inner();
        check_requester(req.requester.as_ref(), &req.purpose_of_use)?;
        if (req.purpose_of_use == "ETREAT") == req.break_glass_reason.is_empty() {
            return Err(Status::invalid_argument("break_glass_reason iff ETREAT"));
        }
        Ok(Response::new(consent::DecideResponse {
            decision: Some(self.decision(&req.patient_id, &req.purpose_of_use)),
        }))
    }

    async fn batch_decide(
        &self,
        request: Request<consent::BatchDecideRequest>,
    ) -> Result<Response<consent::BatchDecideResponse>, Status> {
        if self.consent_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("consent is down"));
        }
        let req = request.into_inner();
        check_requester(req.requester.as_ref(), &req.purpose_of_use)?;
        if req.patient_ids.is_empty()
            || req.patient_ids.len() > 10_000
            || req.purpose_of_use == "ETREAT"
        {
            return Err(Status::invalid_argument("bad batch"));
        }
        let decisions = req
            .patient_ids
            .iter()
            .map(|id| self.decision(id, &req.purpose_of_use))
            .collect();
        Ok(Response::new(consent::BatchDecideResponse { decisions }))
    }
}

fn micros(ts: &Option<prost_types::Timestamp>) -> Option<i64> {
    ts.as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
}

fn in_period(record: &records::Record, period: &Option<common::Period>) -> bool {
    let Some(period) = period else { return true };
    if period.start.is_none() && period.end.is_none() {
        return true;
    }
    let Some(t) = micros(&record.effective_time) else {
        return false;
    };
    micros(&period.start).is_none_or(|s| s <= t) && micros(&period.end).is_none_or(|e| t < e)
}

#[tonic::async_trait]
impl records::record_hosting_service_server::RecordHostingService for Fakes {
    async fn list_records(
        &self,
        request: Request<records::ListRecordsRequest>,
    ) -> Result<Response<records::ListRecordsResponse>, Status> {
        let req = request.into_inner();
        let mut matching: Vec<records::Record> = {
            let world = self.world.lock().unwrap();
            world
                .records
                .iter()
                .filter(|r| r.patient_id == req.patient_id)
                .filter(|r| {
                    req.resource_types.is_empty() || req.resource_types.contains(&r.resource_type)
                })
                .filter(|r| in_period(r, &req.effective_time))
                .cloned()
                .collect()
        };
        matching.sort_by_key(|r| std::cmp::Reverse(micros(&r.effective_time).unwrap_or(i64::MIN)));
        let offset: usize = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| Status::invalid_argument("bad token"))?
        };
        let size = if req.page_size == 0 {
            50
        } else {
            req.page_size as usize
        };
        let page: Vec<records::Record> = matching.iter().skip(offset).take(size).cloned().collect();
        let next = offset + page.len();
        Ok(Response::new(records::ListRecordsResponse {
            records: page,
            next_page_token: if next < matching.len() {
                next.to_string()
            } else {
                String::new()
            },
            watch_cursor: "c".into(),
        }))
    }

    async fn export_records(
        &self,
        request: Request<records::ExportRecordsRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<records::ExportRecordsResponse>>, Status> {
        let req = request.into_inner();
        let patients: Option<HashSet<String>> = match req.scope {
            Some(records::export_records_request::Scope::Patients(list)) => {
                Some(list.patient_ids.into_iter().collect())
            }
            Some(records::export_records_request::Scope::UpdatedBetween(_)) => None,
            None => return Err(Status::invalid_argument("scope")),
        };
        let matching: Vec<records::Record> = {
            let world = self.world.lock().unwrap();
            world
                .records
                .iter()
                .filter(|r| patients.as_ref().is_none_or(|p| p.contains(&r.patient_id)))
                .filter(|r| {
                    req.resource_types.is_empty() || req.resource_types.contains(&r.resource_type)
                })
                .cloned()
                .map(|mut r| {
                    if req.view == records::RecordView::Metadata as i32 {
                        r.payload.clear();
                    }
                    r
                })
                .collect()
        };
        let mut messages: Vec<Result<records::ExportRecordsResponse, Status>> = matching
            .chunks(100)
            .map(|c| {
                Ok(records::ExportRecordsResponse {
                    records: c.to_vec(),
                    resume_cursor: "r".into(),
                    watch_cursor: "w".into(),
                })
            })
            .collect();
        if messages.is_empty() {
            messages.push(Ok(records::ExportRecordsResponse::default()));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }
}

/// The doubles, served on one ephemeral port.
async fn serve_fakes(fakes: Fakes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                identity::patient_identity_service_server::PatientIdentityServiceServer::new(
                    fakes.clone(),
                ),
            )
            .add_service(consent::consent_service_server::ConsentServiceServer::new(
                fakes.clone(),
            ))
            .add_service(
                records::record_hosting_service_server::RecordHostingServiceServer::new(fakes),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

pub struct TestApp {
    pub client: DataAccessServiceClient<Channel>,
    /// Where data access listens.
    pub addr: SocketAddr,
    /// Where the doubles listen (all three modules on one port).
    #[allow(dead_code)] // the benchmark reads from record hosting directly
    pub upstream: String,
    pub fakes: Fakes,
    pub db_url: String,
    _app: carerecord_platform::testing::TestApp,
    _dir: tempfile::TempDir,
}

/// Data access on `db_url`, wired to fresh doubles.
pub async fn spawn_app(db_url: &str) -> TestApp {
    spawn_app_with(db_url, &[]).await
}

/// [`spawn_app`] with these settings added.
pub async fn spawn_app_with(db_url: &str, extra: &[(&str, String)]) -> TestApp {
    let fakes = Fakes::default();
    let upstream = format!("http://{}", serve_fakes(fakes.clone()).await);
    let upstream_endpoint = upstream.clone();
    let dir = tempfile::tempdir().unwrap();
    let projects = dir.path().join("projects.json");
    std::fs::write(
        &projects,
        serde_json::json!({"projects": [
            {"project_id": PROJECT_A, "key": "11".repeat(32), "purposes": ["HRESCH", "HOPERAT"]},
            {"project_id": PROJECT_B, "key": "22".repeat(32), "purposes": ["HRESCH"], "organisations": ["X26"]}
        ]})
        .to_string(),
    )
    .unwrap();
    let mut vars = vec![
        ("DATABASE_URL", db_url.to_owned()),
        ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0".into()),
        ("CARERECORD_IDENTITY_ENDPOINT", upstream.clone()),
        ("CARERECORD_CONSENT_ENDPOINT", upstream.clone()),
        ("CARERECORD_RECORDS_ENDPOINT", upstream),
        ("CARERECORD_JWKS_FILE", format!("{KEYS_DIR}/jwks.json")),
        ("CARERECORD_JWT_ISSUER", ISSUER.into()),
        ("CARERECORD_DEV_TOKENS", "true".into()),
        ("CARERECORD_PROJECTS_FILE", projects.display().to_string()),
        (
            "CARERECORD_TOKEN_SECRET",
            "0123456789abcdef0123456789abcdef".into(),
        ),
        ("CARERECORD_UPSTREAM_TIMEOUT", "2s".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let env = Env::from_pairs(vars);
    let app = spawn_with_config::<Application>(Config::from_env(&env).unwrap()).await;
    let addr = app.addr;
    let channel = app.channel.clone();
    TestApp {
        client: DataAccessServiceClient::new(channel).max_decoding_message_size(64 << 20),
        addr,
        upstream: upstream_endpoint,
        fakes,
        db_url: db_url.to_owned(),
        _app: app,
        _dir: dir,
    }
}

/// Claims of a test token.
#[derive(Clone)]
pub struct Claims {
    pub sub: String,
    pub org: String,
    pub role: String,
    pub scope: String,
    pub patient: String,
    pub exp_offset: i64,
}

impl Claims {
    pub fn clinician(scope: &str) -> Self {
        Claims {
            sub: "dr-who".into(),
            org: "RR8".into(),
            role: "R8000".into(),
            scope: scope.into(),
            patient: String::new(),
            exp_offset: 300,
        }
    }
    pub fn privacy_officer() -> Self {
        Claims {
            sub: "po-1".into(),
            org: "RR8".into(),
            role: "R0001".into(),
            scope: "user/AuditEvent.rs user/AuditEvent.u".into(),
            patient: String::new(),
            exp_offset: 300,
        }
    }
    pub fn system(scope: &str) -> Self {
        Claims {
            sub: "svc-research".into(),
            org: "X26".into(),
            role: String::new(),
            scope: scope.into(),
            patient: String::new(),
            exp_offset: 300,
        }
    }
}

/// A token signed by the test issuer's RSA key (kid `test-rsa`), or by `key_file` with `kid`.
pub fn token_signed(claims: &Claims, key_file: &str, kid: &str, alg: Algorithm) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let mut body = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": claims.sub, "iat": now, "exp": now + claims.exp_offset,
        "scope": claims.scope, "client_id": "test-client", "organisation_ods_code": claims.org, "name": "Test User",
    });
    if !claims.role.is_empty() {
        body["role_code"] = claims.role.clone().into();
    }
    if !claims.patient.is_empty() {
        body["patient"] = claims.patient.clone().into();
    }
    sign(&body, alg, kid, key_file)
}

/// `claims` signed with `alg` by the key in `key_file` (EC for ES256, else RSA), naming `kid`.
pub fn sign(claims: &serde_json::Value, alg: Algorithm, kid: &str, key_file: &str) -> String {
    let pem = std::fs::read(format!("{KEYS_DIR}/{key_file}")).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

pub fn token(claims: &Claims) -> String {
    token_signed(claims, "issuer_rsa.pem", "test-rsa", Algorithm::RS256)
}

/// A request carrying a bearer token.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The audit entry at `index`, read through ListAuditEntries.
pub async fn audit_leaf(app: &mut TestApp, index: i64) -> api::AuditLeaf {
    let officer = token(&Claims::privacy_officer());
    let response = app
        .client
        .list_audit_entries(authed(
            api::ListAuditEntriesRequest {
                start_index: index,
                page_size: 1,
                ..Default::default()
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner();
    let entry = response.entries.into_iter().next().expect("an entry");
    assert_eq!(entry.index, index);
    api::AuditLeaf::decode(entry.leaf_data.as_slice()).unwrap()
}

/// The index of the audit entry an error names.
pub fn audit_index(status: &Status) -> i64 {
    error_info(status).metadata["audit_index"].parse().unwrap()
}

/// A read of the patient's record (by id) for `purpose`.
pub fn read(patient_id: &str, purpose: &str) -> api::ReadPatientRecordRequest {
    api::ReadPatientRecordRequest {
        patient: patient_ref(patient_id),
        purpose_of_use: purpose.into(),
        ..Default::default()
    }
}

pub fn patient_ref(id: &str) -> Option<api::PatientReference> {
    Some(api::PatientReference {
        reference: Some(api::patient_reference::Reference::PatientId(id.to_owned())),
    })
}
