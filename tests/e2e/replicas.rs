//! Replicas: two instances of every module on one PostgreSQL, each its own process (the service
//! binaries), as a deployment's horizontal autoscalers run them. Each module's two instances share
//! its database and `CARERECORD_TOKEN_SECRET`; data access reaches each module through a TCP
//! balancer in front of its instances, as a Kubernetes Service would; the test's clients are spread
//! over the instances and move to the other one when theirs fails.
//!
//! A mixed load runs for a bounded time (reads, contributions and imports through data access,
//! identity matches, consent decisions, a FollowRecordChanges watcher through data access and a
//! WatchRecordChanges watcher on record hosting), and halfway through one instance of every module
//! is killed with SIGKILL. Afterwards: the audit log is one gap-free Merkle log that verifies
//! offline, every acknowledged write is stored exactly once (by request_id), every read the clients
//! received has its audit entry, and both watchers, reconnecting with their last cursor to the
//! surviving instance, saw every change.
//!
//! `CARERECORD_TEST_REPLICAS_SECONDS` sets how long the load runs (default 4; the kills come at
//! half time). The test needs PostgreSQL (`TEST_DATABASE_URL`, which CI always sets): SQLite is an
//! embedded database that replicas in separate processes cannot share, so without it the test
//! says so and checks nothing.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::{
    self as api, FollowRecordChangesRequest, GetAuditPublicKeyRequest, GetSignedTreeHeadRequest,
    ImportItem, ImportOutcome, ImportRecordsRequest, ListAuditEntriesRequest, PatientReference,
    ReadPatientRecordRequest, RecordContent, patient_reference::Reference,
};
use carerecord_contracts::common::v1::{AdministrativeGender, Date, HumanName, NameUse, Requester};
use carerecord_contracts::consent::v1::DecideRequest;
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{
    CreatePatientRequest, MatchPatientsRequest, Patient, match_patients_request::Probe,
};
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{RecordView, WatchRecordChangesRequest};
use carerecord_e2e::{authed, token_at, uuid};
use carerecord_platform::testing::{ServiceProcess, TestDatabase, workspace_binary};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The four modules, in the order they start (data access needs the other three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    Identity,
    Records,
    Consent,
    Access,
}

impl Module {
    pub(crate) const ALL: [Module; 4] = [
        Module::Identity,
        Module::Records,
        Module::Consent,
        Module::Access,
    ];

    /// The package, which is also the binary's name.
    fn package(self) -> &'static str {
        match self {
            Module::Identity => "carerecord-identity",
            Module::Records => "carerecord-records",
            Module::Consent => "carerecord-consent",
            Module::Access => "carerecord-access",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every module's instances on PostgreSQL, each a process of its service binary.
pub(crate) struct Cluster {
    /// The modules' databases, in [`Module::ALL`] order.
    pub(crate) databases: Vec<TestDatabase>,
    instances: Vec<Vec<ServiceProcess>>,
    /// Data access's way to identity, records and consent: a balancer in front of each.
    _balancers: Vec<Balancer>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cluster {
    /// `replicas` instances of every module on fresh PostgreSQL databases; `None` without
    /// PostgreSQL.
    pub(crate) async fn start(replicas: usize) -> Option<Cluster> {
        let mut databases = Vec::new();
        for _ in Module::ALL {
            databases.push(TestDatabase::postgres().await?);
        }
        let stop = CancellationToken::new();
        let mut cluster = Cluster {
            databases,
            instances: Vec::new(),
            _balancers: Vec::new(),
            stop,
        };
        let mut upstreams: Vec<String> = Vec::new();
        for module in Module::ALL {
            let binary = workspace_binary(module.package(), module.package());
            let binary = binary.to_str().expect("a UTF-8 path");
            let secret = format!("replicas-token-secret-{}", module.package());
            let mut env: Vec<(String, String)> = vec![
                (
                    "DATABASE_URL".into(),
                    cluster.databases[module.index()].url.clone(),
                ),
                ("CARERECORD_TOKEN_SECRET".into(), secret),
                // Eight processes and other tests share PostgreSQL's 100 connections.
                ("CARERECORD_DB_MAX_CONNECTIONS".into(), "3".into()),
                ("CARERECORD_SHUTDOWN_GRACE".into(), "1s".into()),
                (
                    "CARERECORD_RECORDS_WATCH_POLL_INTERVAL".into(),
                    "50ms".into(),
                ),
                (
                    "RUST_LOG".into(),
                    "warn,carerecord_platform::app=info".into(),
                ),
            ];
            if module == Module::Access {
                env.extend([
                    ("CARERECORD_DEV_TOKENS".into(), "true".into()),
                    ("CARERECORD_IDENTITY_ENDPOINT".into(), upstreams[0].clone()),
                    ("CARERECORD_RECORDS_ENDPOINT".into(), upstreams[1].clone()),
                    ("CARERECORD_CONSENT_ENDPOINT".into(), upstreams[2].clone()),
                ]);
            }
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // One after the other: the first applies the migrations.
            let mut instances = Vec::new();
            for _ in 0..replicas {
                instances.push(ServiceProcess::start(binary, &env).await);
            }
            if module != Module::Access {
                let balancer =
                    Balancer::start(instances.iter().map(|p| p.addr).collect(), &cluster.stop)
                        .await;
                upstreams.push(format!("http://{}", balancer.addr));
                cluster._balancers.push(balancer);
            }
            cluster.instances.push(instances);
        }
        Some(cluster)
    }

    /// A lazily connected channel to each instance of `module`.
    pub(crate) fn channels(&self, module: Module) -> Vec<Channel> {
        self.instances[module.index()]
            .iter()
            .map(|p| {
                tonic::transport::Endpoint::from_shared(p.endpoint())
                    .expect("endpoint")
                    .connect_lazy()
            })
            .collect()
    }

    /// SIGKILLs instance `replica` of `module`.
    pub(crate) async fn kill(&mut self, module: Module, replica: usize) {
        self.instances[module.index()][replica].kill().await;
    }

    /// Every instance's process id, or `None` for one that is not running.
    pub(crate) fn process_ids(&mut self) -> Vec<Option<u32>> {
        self.instances
            .iter_mut()
            .flatten()
            .map(|p| p.is_running().then(|| p.id()).flatten())
            .collect()
    }

    /// The URL of `module`'s database.
    pub(crate) fn database_url(&self, module: Module) -> &str {
        &self.databases[module.index()].url
    }
}

/// A TCP balancer, as a Kubernetes Service in front of a module's pods: each connection goes to the
/// next instance in turn, or to the one after when that one refuses it (a killed instance).
struct Balancer {
    addr: SocketAddr,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>, stop: &CancellationToken) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                next += 1;
                let order: Vec<SocketAddr> = (0..backends.len())
                    .map(|i| backends[(next + i) % backends.len()])
                    .collect();
                let stop = stop.clone();
                tokio::spawn(async move {
                    for backend in order {
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr }
    }
}

/// What the clients were answered, and what they retried.
#[derive(Default)]
pub(crate) struct Tally {
    /// Acknowledged contributions: request_id -> record_id (for CreateRecord and import items).
    pub(crate) contributions: HashMap<String, String>,
    /// The audit entry ids every disclosure and contribution the clients received named.
    pub(crate) audited: Vec<String>,
    pub(crate) reads: usize,
    pub(crate) creates: usize,
    pub(crate) imported: usize,
    pub(crate) matches: usize,
    pub(crate) decisions: usize,
    /// Acknowledged patient registrations: request_id -> patient_id.
    pub(crate) patients: HashMap<String, String>,
    /// Retried failures, by gRPC code name, and the first message of each.
    pub(crate) retried: HashMap<String, usize>,
    pub(crate) retried_first: HashMap<String, String>,
}

pub(crate) type Shared = Arc<Mutex<Tally>>;

fn with<R>(tally: &Shared, f: impl FnOnce(&mut Tally) -> R) -> R {
    f(&mut tally.lock().expect("tally lock"))
}

/// Failures a client retries (on the same or another instance, with the same request ids): the
/// instance or its database was unreachable, or the connection broke under the call.
fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled => true,
        Code::Unknown => {
            let message = status.message();
            ["transport", "connection", "h2 protocol", "stream"]
                .iter()
                .any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// Calls until answered, starting on the instance `preferred` names and moving to the next on each
/// retryable failure; `preferred` is left naming the instance that answered, as a client keeps
/// the connection that works. Any other failure fails the test: it would not be retryable.
pub(crate) async fn until_answered<T, F, Fut>(
    what: &str,
    channels: &[Channel],
    preferred: &AtomicUsize,
    tally: &Shared,
    mut call: F,
) -> T
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at = preferred.load(Ordering::Relaxed);
    loop {
        let channel = channels[at % channels.len()].clone();
        let (code, message) = match tokio::time::timeout(Duration::from_secs(20), call(channel))
            .await
        {
            Ok(Ok(answer)) => {
                preferred.store(at % channels.len(), Ordering::Relaxed);
                return answer;
            }
            Ok(Err(status)) if retryable(&status) => (status.code(), status.message().to_owned()),
            Ok(Err(status)) => {
                panic!("{what} failed with {status:?}, not a retryable status")
            }
            Err(_) => (Code::DeadlineExceeded, "no answer within 20 s".to_owned()),
        };
        with(tally, |t| {
            let code = format!("{code:?}");
            *t.retried.entry(code.clone()).or_default() += 1;
            t.retried_first.entry(code).or_insert(message);
        });
        assert!(
            Instant::now() < deadline,
            "{what} was not answered within a minute"
        );
        at += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The clinician every contribution and read comes from.
pub(crate) fn clinician() -> String {
    token_at("RR8", "R8000", "user/*.*", "e2e-replicas")
}

fn device() -> String {
    token_at("DEV01", "", "system/Observation.c", "e2e-replicas-device")
}

fn requester() -> Requester {
    Requester {
        user_id: "e2e-replicas".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

fn by_id(patient_id: &str) -> Option<PatientReference> {
    Some(PatientReference {
        reference: Some(Reference::PatientId(patient_id.into())),
    })
}

/// A patient of the load, distinct by family name.
pub(crate) fn demographics(n: usize) -> Patient {
    Patient {
        nhs_number: carerecord_e2e::fresh_nhs_number(),
        names: vec![HumanName {
            r#use: NameUse::Official as i32,
            given: vec!["Rhea".into()],
            family: format!("Replica{n}"),
            ..HumanName::default()
        }],
        birth_date: Some(Date {
            year: 1930 + (n % 70) as i32,
            month: 1 + (n % 12) as i32,
            day: 1 + (n % 28) as i32,
        }),
        gender: AdministrativeGender::Female as i32,
        ..Patient::default()
    }
}

/// Registers `count` patients through identity; their patient ids.
pub(crate) async fn register(
    channels: &[Channel],
    count: usize,
    tally: &Shared,
) -> Vec<(String, Patient)> {
    let mut patients = Vec::new();
    let preferred = AtomicUsize::new(0);
    for n in 0..count {
        let request = CreatePatientRequest {
            request_id: uuid(),
            patient: Some(demographics(n)),
            requester: Some(requester()),
        };
        let created = until_answered("CreatePatient", channels, &preferred, tally, |channel| {
            let request = request.clone();
            async move {
                PatientIdentityServiceClient::new(channel)
                    .create_patient(request)
                    .await
            }
        })
        .await
        .into_inner()
        .patient
        .expect("the patient");
        with(tally, |t| {
            t.patients
                .insert(request.request_id.clone(), created.patient_id.clone())
        });
        patients.push((created.patient_id.clone(), created));
    }
    patients
}

fn observation(patient_id: &str, n: usize) -> RecordContent {
    let payload = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": format!("2026-10-01T09:{:02}:00Z", n % 60),
        "valueQuantity": {"value": 60 + n % 40, "unit": "/min"}});
    RecordContent {
        resource_type: "Observation".into(),
        payload: payload.to_string().into_bytes(),
        ..RecordContent::default()
    }
}

/// Runs `round` (numbered from 0) until `stop`; a round under way when it comes is finished.
pub(crate) fn until_stopped<F, Fut>(
    stop: &CancellationToken,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.is_cancelled() {
            round(n).await;
            n += 1;
        }
    })
}

/// The front door's share of a mixed load: two readers and two contributors (each starting on a
/// different instance) and one importer.
pub(crate) fn front_door_load(
    access: &[Channel],
    patients: &Arc<Vec<String>>,
    tally: &Shared,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut load = Vec::new();
    for i in 0..2 {
        load.push(reader(
            access.to_vec(),
            patients.clone(),
            i,
            tally.clone(),
            stop,
        ));
        load.push(contributor(
            access.to_vec(),
            patients.clone(),
            i,
            tally.clone(),
            stop,
        ));
    }
    load.push(importer(
        access.to_vec(),
        patients.clone(),
        0,
        tally.clone(),
        stop,
    ));
    load
}

/// ReadPatientRecord through data access, for a random patient, the disclosure's audit entry
/// noted.
pub(crate) fn reader(
    access: Vec<Channel>,
    patients: Arc<Vec<String>>,
    first: usize,
    tally: Shared,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let token = clinician();
    let preferred = Arc::new(AtomicUsize::new(first));
    until_stopped(stop, move |n| {
        let preferred = preferred.clone();
        let (access, patients, tally, token) = (
            access.clone(),
            patients.clone(),
            tally.clone(),
            token.clone(),
        );
        async move {
            let request = ReadPatientRecordRequest {
                patient: by_id(&patients[n % patients.len()]),
                purpose_of_use: "TREAT".into(),
                ..ReadPatientRecordRequest::default()
            };
            let page = until_answered("ReadPatientRecord", &access, &preferred, &tally, |ch| {
                let request = authed(request.clone(), &token);
                async move {
                    DataAccessServiceClient::new(ch)
                        .read_patient_record(request)
                        .await
                }
            })
            .await
            .into_inner();
            assert!(
                !page.audit_entry_id.is_empty(),
                "every disclosure is audited"
            );
            with(&tally, |t| {
                t.reads += 1;
                t.audited.push(page.audit_entry_id);
            });
        }
    })
}

/// CreateRecord through data access, each retried with its request_id until acknowledged.
pub(crate) fn contributor(
    access: Vec<Channel>,
    patients: Arc<Vec<String>>,
    first: usize,
    tally: Shared,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let token = clinician();
    let preferred = Arc::new(AtomicUsize::new(first));
    until_stopped(stop, move |n| {
        let preferred = preferred.clone();
        let (access, patients, tally, token) = (
            access.clone(),
            patients.clone(),
            tally.clone(),
            token.clone(),
        );
        async move {
            let patient = &patients[(first + n) % patients.len()];
            let request = api::CreateRecordRequest {
                request_id: uuid(),
                patient: by_id(patient),
                purpose_of_use: "TREAT".into(),
                content: Some(observation(patient, n)),
                ..api::CreateRecordRequest::default()
            };
            let created = until_answered("CreateRecord", &access, &preferred, &tally, |ch| {
                let request = authed(request.clone(), &token);
                async move {
                    DataAccessServiceClient::new(ch)
                        .create_record(request)
                        .await
                }
            })
            .await
            .into_inner();
            let record_id = created.record.expect("the record").record_id;
            with(&tally, |t| {
                t.creates += 1;
                t.audited.push(created.audit_entry_id);
                acknowledge(t, &request.request_id, record_id);
            });
        }
    })
}

/// Notes an acknowledged write; the same request_id must always name the same record.
fn acknowledge(tally: &mut Tally, request_id: &str, record_id: String) {
    if let Some(earlier) = tally.contributions.get(request_id) {
        assert_eq!(
            earlier, &record_id,
            "request {request_id} was acknowledged twice with different records"
        );
    }
    tally.contributions.insert(request_id.to_owned(), record_id);
}

/// Items per import message and messages per import stream.
const IMPORT_ITEMS: usize = 25;
const IMPORT_MESSAGES: usize = 2;

/// ImportRecords through data access: a stream re-sent whole, with the same request ids, until
/// every message is answered.
pub(crate) fn importer(
    access: Vec<Channel>,
    patients: Arc<Vec<String>>,
    first: usize,
    tally: Shared,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let token = device();
    let preferred = Arc::new(AtomicUsize::new(first));
    until_stopped(stop, move |n| {
        let preferred = preferred.clone();
        let (access, patients, tally, token) = (
            access.clone(),
            patients.clone(),
            tally.clone(),
            token.clone(),
        );
        async move {
            let messages: Vec<ImportRecordsRequest> = (0..IMPORT_MESSAGES)
                .map(|m| ImportRecordsRequest {
                    purpose_of_use: if m == 0 {
                        "TREAT".into()
                    } else {
                        String::new()
                    },
                    items: (0..IMPORT_ITEMS)
                        .map(|i| {
                            let patient = &patients[(n + i) % patients.len()];
                            ImportItem {
                                request_id: uuid(),
                                patient: by_id(patient),
                                content: Some(observation(patient, i)),
                            }
                        })
                        .collect(),
                    ..ImportRecordsRequest::default()
                })
                .collect();
            let responses = until_answered("ImportRecords", &access, &preferred, &tally, |ch| {
                let request = authed(tokio_stream::iter(messages.clone()), &token);
                async move {
                    let mut stream = DataAccessServiceClient::new(ch)
                        .import_records(request)
                        .await?
                        .into_inner();
                    let mut responses = Vec::new();
                    while let Some(response) = stream.message().await? {
                        responses.push(response);
                    }
                    if responses.len() == IMPORT_MESSAGES {
                        Ok(responses)
                    } else {
                        Err(Status::unavailable("the import stream ended early"))
                    }
                }
            })
            .await;
            with(&tally, |t| {
                for (message, response) in messages.iter().zip(responses) {
                    t.audited.push(response.audit_entry_id);
                    assert_eq!(response.results.len(), message.items.len());
                    for (item, result) in message.items.iter().zip(response.results) {
                        let outcome = ImportOutcome::try_from(result.outcome);
                        assert!(
                            matches!(
                                outcome,
                                Ok(ImportOutcome::Accepted | ImportOutcome::Deduplicated)
                            ),
                            "import item: {result:?}"
                        );
                        t.imported += 1;
                        acknowledge(t, &item.request_id, result.record_id);
                    }
                }
            });
        }
    })
}

/// MatchPatients on identity's instances: each patient's demographics find that patient.
fn matcher(
    identity: Vec<Channel>,
    patients: Arc<Vec<(String, Patient)>>,
    tally: Shared,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let preferred = Arc::new(AtomicUsize::new(0));
    until_stopped(stop, move |n| {
        let preferred = preferred.clone();
        let (identity, patients, tally) = (identity.clone(), patients.clone(), tally.clone());
        async move {
            let (patient_id, patient) = &patients[n % patients.len()];
            let probe = Patient {
                nhs_number: String::new(),
                ..patient.clone()
            };
            let request = MatchPatientsRequest {
                probe: Some(Probe::Demographics(probe)),
                max_candidates: 5,
                ..MatchPatientsRequest::default()
            };
            let answer = until_answered("MatchPatients", &identity, &preferred, &tally, |ch| {
                let request = request.clone();
                async move {
                    PatientIdentityServiceClient::new(ch)
                        .match_patients(request)
                        .await
                }
            })
            .await
            .into_inner();
            assert!(
                answer.candidates.iter().any(|c| c
                    .patient
                    .as_ref()
                    .is_some_and(|p| &p.patient_id == patient_id)),
                "the patient's own demographics find them"
            );
            with(&tally, |t| t.matches += 1);
        }
    })
}

/// Decide on consent's instances.
fn decider(
    consent: Vec<Channel>,
    patients: Arc<Vec<String>>,
    tally: Shared,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let preferred = Arc::new(AtomicUsize::new(1));
    until_stopped(stop, move |n| {
        let preferred = preferred.clone();
        let (consent, patients, tally) = (consent.clone(), patients.clone(), tally.clone());
        async move {
            let request = DecideRequest {
                patient_id: patients[n % patients.len()].clone(),
                requester: Some(requester()),
                purpose_of_use: "TREAT".into(),
                ..DecideRequest::default()
            };
            let answer = until_answered("Decide", &consent, &preferred, &tally, |ch| {
                let request = request.clone();
                async move { ConsentServiceClient::new(ch).decide(request).await }
            })
            .await
            .into_inner();
            assert!(answer.decision.is_some());
            with(&tally, |t| t.decisions += 1);
        }
    })
}

/// What a watcher has seen: each (record_id, version) once, and how often it reconnected.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) changes: HashSet<(String, i64)>,
    pub(crate) reconnects: usize,
    pub(crate) deliveries: usize,
}

/// WatchRecordChanges on record hosting's instances, from the start of the feed; on any failure it
/// reconnects with its last cursor to the next instance. Checks commit order: a change it had not
/// seen never comes after a later one.
fn record_watcher(
    records: Vec<Channel>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let (mut cursor, mut last_sequence, mut at) = (String::new(), 0i64, first);
        while !stop.is_cancelled() {
            let request = WatchRecordChangesRequest {
                after_cursor: cursor.clone(),
                view: RecordView::Metadata as i32,
                ..WatchRecordChangesRequest::default()
            };
            let mut client = RecordHostingServiceClient::new(records[at % records.len()].clone());
            if let Ok(stream) = client.watch_record_changes(request).await {
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.message() => message,
                    };
                    let Ok(Some(message)) = message else { break };
                    let mut seen = seen.lock().expect("seen lock");
                    for change in message.changes {
                        let new = seen
                            .changes
                            .insert((change.record_id.clone(), change.version));
                        assert!(
                            !new || change.sequence > last_sequence,
                            "change {} delivered after {last_sequence}: out of commit order",
                            change.sequence
                        );
                        last_sequence = last_sequence.max(change.sequence);
                        seen.deliveries += 1;
                    }
                    cursor = message.cursor;
                }
            }
            seen.lock().expect("seen lock").reconnects += 1;
            at += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// FollowRecordChanges through data access's instances, for every patient, from the start of their
/// history; on any failure it reconnects with its last cursor to the next instance.
fn follower(
    access: Vec<Channel>,
    patients: Arc<Vec<String>>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stop = stop.clone();
    let token = clinician();
    tokio::spawn(async move {
        let (mut cursor, mut at) = (String::new(), first);
        while !stop.is_cancelled() {
            let request = FollowRecordChangesRequest {
                patients: patients
                    .iter()
                    .map(|p| by_id(p).expect("a reference"))
                    .collect(),
                purpose_of_use: "TREAT".into(),
                after_cursor: cursor.clone(),
                ..FollowRecordChangesRequest::default()
            };
            let mut client = DataAccessServiceClient::new(access[at % access.len()].clone());
            if let Ok(stream) = client.follow_record_changes(authed(request, &token)).await {
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.message() => message,
                    };
                    let Ok(Some(message)) = message else { break };
                    if !message.notifications.is_empty() {
                        assert!(!message.audit_entry_id.is_empty(), "deliveries are audited");
                    }
                    let mut seen = seen.lock().expect("seen lock");
                    for notification in message.notifications {
                        seen.changes
                            .insert((notification.record_id, notification.version));
                        seen.deliveries += 1;
                    }
                    cursor = message.cursor;
                }
            }
            seen.lock().expect("seen lock").reconnects += 1;
            at += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Waits (up to 30 s) until `seen` holds every one of `expected`; the ones still missing.
pub(crate) async fn missing_after_wait(
    seen: &Arc<Mutex<Seen>>,
    expected: &HashSet<(String, i64)>,
) -> Vec<(String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<(String, i64)> = {
            let seen = seen.lock().expect("seen lock");
            expected.difference(&seen.changes).cloned().collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole audit log, read through data access (as `carerecord audit verify` does) and verified
/// offline against the current signed tree head and its key; the ids of its entries.
pub(crate) async fn verified_audit_log(access: &[Channel], tally: &Shared) -> HashSet<String> {
    let officer = token_at("RR8", "R0001", "user/*.rs", "e2e-replicas-audit");
    let head = until_answered(
        "GetSignedTreeHead",
        access,
        &AtomicUsize::new(0),
        tally,
        |ch| {
            let request = authed(GetSignedTreeHeadRequest { tree_size: 0 }, &officer);
            async move {
                DataAccessServiceClient::new(ch)
                    .get_signed_tree_head(request)
                    .await
            }
        },
    )
    .await
    .into_inner()
    .tree_head
    .expect("a tree head");
    let key = until_answered(
        "GetAuditPublicKey",
        access,
        &AtomicUsize::new(0),
        tally,
        |ch| {
            let request = authed(
                GetAuditPublicKeyRequest {
                    key_id: head.key_id.clone(),
                },
                &officer,
            );
            async move {
                DataAccessServiceClient::new(ch)
                    .get_audit_public_key(request)
                    .await
            }
        },
    )
    .await
    .into_inner()
    .key
    .expect("the head's key");
    let public_key: [u8; 32] = key.public_key.as_slice().try_into().expect("Ed25519");
    let mut entries = Vec::new();
    while (entries.len() as i64) < head.tree_size {
        let request = ListAuditEntriesRequest {
            start_index: entries.len() as i64,
            tree_size: head.tree_size,
            page_size: 1000,
            page_token: String::new(),
        };
        let page = until_answered(
            "ListAuditEntries",
            access,
            &AtomicUsize::new(0),
            tally,
            |ch| {
                let request = authed(request.clone(), &officer);
                async move {
                    DataAccessServiceClient::new(ch)
                        .list_audit_entries(request)
                        .await
                }
            },
        )
        .await
        .into_inner();
        assert!(
            !page.entries.is_empty(),
            "the log ends before its tree head"
        );
        entries.extend(page.entries);
    }
    let report = carerecord_access::audit::verify_entries(&entries, &public_key, Some(&head));
    assert!(
        report.ok,
        "the audit log does not verify: {}",
        report.message
    );
    assert_eq!(report.tree_size, head.tree_size as u64);
    entries
        .into_iter()
        .map(|e| e.leaf.expect("decoded leaf").entry_id)
        .collect()
}

/// The audit log in the database is one sequence of indexes from 0 with no gap or repeat.
pub(crate) async fn assert_gap_free(access_database: &str) {
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(access_database)
        .await
        .expect("the access database");
    let (count, next): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(MAX(idx) + 1, 0) AS BIGINT) FROM audit_entries",
    )
    .fetch_one(&mut db)
    .await
    .expect("count the audit entries");
    assert_eq!(count, next, "the audit log has gaps or repeated indexes");
}

/// Every acknowledged write of a module is stored once, under its request_id, and nothing else is:
/// `by_request` lists (request_id, the id acknowledged) as the module stores them, `total` counts
/// what was written.
pub(crate) async fn assert_stored_once(
    database: &str,
    by_request: &'static str,
    total: &'static str,
    acknowledged: &HashMap<String, String>,
) {
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(database)
        .await
        .expect("the module's database");
    let rows: Vec<(String, String)> = sqlx::query_as(by_request)
        .fetch_all(&mut db)
        .await
        .expect("request ids");
    let stored: HashMap<String, String> = rows.into_iter().collect();
    let (written,): (i64,) = sqlx::query_as(total)
        .fetch_one(&mut db)
        .await
        .expect("count what was written");
    for (request_id, id) in acknowledged {
        assert_eq!(
            stored.get(request_id),
            Some(id),
            "acknowledged write {request_id} is not stored as acknowledged"
        );
    }
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "writes nobody acknowledged"
    );
    assert_eq!(
        written as usize,
        acknowledged.len(),
        "a write is stored more than once"
    );
}

/// Record hosting's request ids and record versions, for [`assert_stored_once`].
pub(crate) const RECORDS_STORED: (&str, &str) = (
    "SELECT request_id, record_id FROM request_ids",
    "SELECT CAST(COUNT(*) AS BIGINT) FROM record_versions",
);

/// How long a test's load runs: `variable` in seconds, else `default`.
pub(crate) fn load_seconds(variable: &str, default: f64) -> f64 {
    std::env::var(variable)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_of_every_module_lose_nothing_when_one_of_each_is_killed() {
    let Some(mut cluster) = Cluster::start(2).await else {
        eprintln!(
            "replicas: TEST_DATABASE_URL is unset; replicas of a module need one PostgreSQL \
             database to share (SQLite is embedded in one process), so nothing was checked"
        );
        return;
    };
    let started = Instant::now();
    let tally = Shared::default();
    let identity = cluster.channels(Module::Identity);
    let records = cluster.channels(Module::Records);
    let consent = cluster.channels(Module::Consent);
    let access = cluster.channels(Module::Access);
    let registered = Arc::new(register(&identity, 8, &tally).await);
    let patients: Arc<Vec<String>> =
        Arc::new(registered.iter().map(|(id, _)| id.clone()).collect());

    let stop = CancellationToken::new();
    let watching = CancellationToken::new();
    let (watched, followed) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    // The watchers start on the instances that will be killed.
    let watchers = [
        record_watcher(records.clone(), 1, watched.clone(), &watching),
        follower(
            access.clone(),
            patients.clone(),
            1,
            followed.clone(),
            &watching,
        ),
    ];
    let mut load = front_door_load(&access, &patients, &tally, &stop);
    load.push(matcher(
        identity.clone(),
        registered.clone(),
        tally.clone(),
        &stop,
    ));
    load.push(decider(
        consent.clone(),
        patients.clone(),
        tally.clone(),
        &stop,
    ));

    let seconds = load_seconds("CARERECORD_TEST_REPLICAS_SECONDS", 4.0);
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    // One instance of each module, not all the same index, so each survivor loses a peer.
    let killed = [
        (Module::Identity, 0),
        (Module::Records, 1),
        (Module::Consent, 0),
        (Module::Access, 1),
    ];
    for (module, replica) in killed {
        cluster.kill(module, replica).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    stop.cancel();
    for worker in load {
        worker.await.expect("a load worker failed");
    }
    let load_ended = started.elapsed();

    with(&tally, |t| {
        let counts = [t.reads, t.creates, t.imported, t.matches, t.decisions];
        assert!(
            counts.iter().all(|c| *c > 0),
            "every kind of call was answered: {counts:?}"
        );
    });
    let acknowledged = with(&tally, |t| t.contributions.clone());
    let expected: HashSet<(String, i64)> =
        acknowledged.values().map(|id| (id.clone(), 1)).collect();
    let missing_watched = missing_after_wait(&watched, &expected).await;
    let missing_followed = missing_after_wait(&followed, &expected).await;
    watching.cancel();
    for watcher in watchers {
        watcher.await.expect("a watcher failed");
    }
    assert!(
        missing_watched.is_empty(),
        "WatchRecordChanges missed {} of {} changes: {:?}",
        missing_watched.len(),
        expected.len(),
        &missing_watched[..missing_watched.len().min(5)]
    );
    assert!(
        missing_followed.is_empty(),
        "FollowRecordChanges missed {} of {} changes: {:?}",
        missing_followed.len(),
        expected.len(),
        &missing_followed[..missing_followed.len().min(5)]
    );

    let survivors = vec![access[0].clone()];
    let log = verified_audit_log(&survivors, &tally).await;
    assert_gap_free(cluster.database_url(Module::Access)).await;
    let audited = with(&tally, |t| t.audited.clone());
    let unaudited: Vec<&String> = audited.iter().filter(|id| !log.contains(*id)).collect();
    assert!(
        unaudited.is_empty(),
        "answers without their audit entry: {unaudited:?}"
    );
    let (by_request, total) = RECORDS_STORED;
    let records_database = cluster.database_url(Module::Records);
    assert_stored_once(records_database, by_request, total, &acknowledged).await;

    let running = cluster.process_ids().iter().filter(|p| p.is_some()).count();
    assert_eq!(running, 4, "one instance of each module still runs");
    let (watched, followed) = (watched.lock().unwrap(), followed.lock().unwrap());
    with(&tally, |t| {
        eprintln!(
            "replicas: {seconds} s of load (ended after {:.1} s), 4 of 8 instances killed with \
             SIGKILL at half time; acknowledged and verified: {} reads, {} creates, {} imported \
             items, {} matches, {} decisions; {} contributions stored once; {} audit entries \
             verified offline, {} answers' entries found; retried: {:?} (first: {:?}); WatchRecordChanges saw \
             {} changes ({} deliveries, {} reconnects), FollowRecordChanges {} ({} deliveries, \
             {} reconnects)",
            load_ended.as_secs_f64(),
            t.reads,
            t.creates,
            t.imported,
            t.matches,
            t.decisions,
            acknowledged.len(),
            log.len(),
            audited.len(),
            t.retried,
            t.retried_first,
            watched.changes.len(),
            watched.deliveries,
            watched.reconnects,
            followed.changes.len(),
            followed.deliveries,
            followed.reconnects,
        )
    });
}
