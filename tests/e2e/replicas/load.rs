//! The mixed load of the replica tests: clients that retry on the same or another instance with the
//! same request ids, and watchers that reconnect with their last cursor; what they were answered is
//! kept in a [`Tally`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::{
    self as api, FollowRecordChangesRequest, ImportItem, ImportOutcome, ImportRecordsRequest,
    RecordContent,
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
use carerecord_e2e::{authed, by_id, read_request, token_at, uuid};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

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

pub(crate) fn with<R>(tally: &Shared, f: impl FnOnce(&mut Tally) -> R) -> R {
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

/// A client of one module's instances: it keeps to the instance that last answered, as a client
/// keeps the connection that works, and notes its retries in the tally.
#[derive(Clone)]
pub(crate) struct Caller {
    channels: Arc<[Channel]>,
    preferred: Arc<AtomicUsize>,
    tally: Shared,
}

impl Caller {
    /// A client of the instances behind `channels`, starting on instance `first`.
    pub(crate) fn new(channels: &[Channel], first: usize, tally: &Shared) -> Caller {
        Caller {
            channels: channels.into(),
            preferred: Arc::new(AtomicUsize::new(first)),
            tally: tally.clone(),
        }
    }

    /// Calls until answered, moving to the next instance on each retryable failure. Any other
    /// failure fails the test: it would not be retryable.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> T
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        let count = self.channels.len();
        let mut at = self.preferred.load(Ordering::Relaxed);
        loop {
            let channel = self.channels[at % count].clone();
            let (code, message) =
                match tokio::time::timeout(Duration::from_secs(20), call(channel)).await {
                    Ok(Ok(answer)) => {
                        self.preferred.store(at % count, Ordering::Relaxed);
                        return answer;
                    }
                    Ok(Err(status)) if retryable(&status) => {
                        (status.code(), status.message().to_owned())
                    }
                    Ok(Err(status)) => {
                        panic!("{what} failed with {status:?}, not a retryable status")
                    }
                    Err(_) => (Code::DeadlineExceeded, "no answer within 20 s".to_owned()),
                };
            self.tally(|t| {
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

    /// [`Caller::call`] on data access, `request` sent with `token` each time; `call` makes the
    /// call on the client it is given. The answer's message.
    pub(crate) async fn front_door<R, T, F, Fut>(
        &self,
        what: &str,
        request: &R,
        token: &str,
        call: F,
    ) -> T
    where
        R: Clone,
        F: Fn(DataAccessServiceClient<Channel>, tonic::Request<R>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let answer = self
            .call(what, |channel| {
                call(
                    DataAccessServiceClient::new(channel),
                    authed(request.clone(), token),
                )
            })
            .await;
        answer.into_inner()
    }

    /// Notes what was answered in the tally.
    pub(crate) fn tally<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        with(&self.tally, f)
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

/// CreatePatient on identity, retried with its request_id until acknowledged; the registration is
/// noted in the tally.
pub(crate) async fn create_patient(
    identity: &Caller,
    patient: Patient,
    requester: Requester,
) -> Patient {
    let request = CreatePatientRequest {
        request_id: uuid(),
        patient: Some(patient),
        requester: Some(requester),
    };
    let created = identity
        .call("CreatePatient", |channel| {
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
    identity.tally(|t| {
        t.patients
            .insert(request.request_id, created.patient_id.clone())
    });
    created
}

/// Registers `count` patients through identity; their patient ids.
pub(crate) async fn register(
    channels: &[Channel],
    count: usize,
    tally: &Shared,
) -> Vec<(String, Patient)> {
    let identity = Caller::new(channels, 0, tally);
    let mut patients = Vec::new();
    for n in 0..count {
        let created = create_patient(&identity, demographics(n), requester()).await;
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

/// Runs `round` (numbered from 0, each given its own clone of `context`) until `stop`; a round
/// under way when it comes is finished.
pub(crate) fn until_stopped<C, F, Fut>(
    stop: &CancellationToken,
    context: C,
    mut round: F,
) -> JoinHandle<()>
where
    C: Clone + Send + 'static,
    F: FnMut(C, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.is_cancelled() {
            round(context.clone(), n).await;
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
) -> Vec<JoinHandle<()>> {
    let mut load = Vec::new();
    for i in 0..2 {
        load.push(reader(
            Caller::new(access, i, tally),
            patients.clone(),
            stop,
        ));
        load.push(contributor(
            Caller::new(access, i, tally),
            patients.clone(),
            i,
            stop,
        ));
    }
    load.push(importer(
        Caller::new(access, 0, tally),
        patients.clone(),
        stop,
    ));
    load
}

/// ReadPatientRecord through data access, for a random patient, the disclosure's audit entry
/// noted.
fn reader(access: Caller, patients: Arc<Vec<String>>, stop: &CancellationToken) -> JoinHandle<()> {
    let context = (access, patients, clinician());
    until_stopped(stop, context, |(access, patients, token), n| async move {
        let request = read_request(by_id(&patients[n % patients.len()]), "TREAT");
        let page = access
            .front_door(
                "ReadPatientRecord",
                &request,
                &token,
                |mut c, r| async move { c.read_patient_record(r).await },
            )
            .await;
        assert!(
            !page.audit_entry_id.is_empty(),
            "every disclosure is audited"
        );
        access.tally(|t| {
            t.reads += 1;
            t.audited.push(page.audit_entry_id);
        });
    })
}

/// CreateRecord through data access, each retried with its request_id until acknowledged.
fn contributor(
    access: Caller,
    patients: Arc<Vec<String>>,
    first: usize,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let context = (access, patients, clinician());
    until_stopped(
        stop,
        context,
        move |(access, patients, token), n| async move {
            let patient = &patients[(first + n) % patients.len()];
            let request = api::CreateRecordRequest {
                request_id: uuid(),
                patient: by_id(patient),
                purpose_of_use: "TREAT".into(),
                content: Some(observation(patient, n)),
                ..api::CreateRecordRequest::default()
            };
            let created = access
                .front_door("CreateRecord", &request, &token, |mut c, r| async move {
                    c.create_record(r).await
                })
                .await;
            let record_id = created.record.expect("the record").record_id;
            access.tally(|t| {
                t.creates += 1;
                t.audited.push(created.audit_entry_id);
                acknowledge(t, &request.request_id, record_id);
            });
        },
    )
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
fn importer(
    access: Caller,
    patients: Arc<Vec<String>>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let context = (access, patients, device());
    until_stopped(stop, context, |(access, patients, token), n| async move {
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
        let responses = access
            .call("ImportRecords", |ch| {
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
        access.tally(|t| {
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
    })
}

/// MatchPatients on identity's instances: each patient's demographics find that patient.
pub(crate) fn matcher(
    identity: Caller,
    patients: Arc<Vec<(String, Patient)>>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    until_stopped(
        stop,
        (identity, patients),
        |(identity, patients), n| async move {
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
            let answer = identity
                .call("MatchPatients", |ch| {
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
            identity.tally(|t| t.matches += 1);
        },
    )
}

/// Decide on consent's instances.
pub(crate) fn decider(
    consent: Caller,
    patients: Arc<Vec<String>>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    until_stopped(
        stop,
        (consent, patients),
        |(consent, patients), n| async move {
            let request = DecideRequest {
                patient_id: patients[n % patients.len()].clone(),
                requester: Some(requester()),
                purpose_of_use: "TREAT".into(),
                ..DecideRequest::default()
            };
            let answer = consent
                .call("Decide", |ch| {
                    let request = request.clone();
                    async move { ConsentServiceClient::new(ch).decide(request).await }
                })
                .await
                .into_inner();
            assert!(answer.decision.is_some());
            consent.tally(|t| t.decisions += 1);
        },
    )
}

/// What a watcher has seen: each (record_id, version) once, and how often it reconnected.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) changes: HashSet<(String, i64)>,
    pub(crate) reconnects: usize,
    pub(crate) deliveries: usize,
}

/// Follows a change stream on `channels`, starting on instance `first`, from the start; on any
/// failure it reconnects with its last cursor to the next instance. `open` starts the stream after
/// a cursor; `note` notes a message in `seen` and answers its cursor.
fn resuming<M, O, Fut, N>(
    channels: Vec<Channel>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: &CancellationToken,
    mut open: O,
    mut note: N,
) -> JoinHandle<()>
where
    M: Send + 'static,
    O: FnMut(Channel, String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<tonic::Response<Streaming<M>>, Status>> + Send,
    N: FnMut(M, &mut Seen) -> String + Send + 'static,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let (mut cursor, mut at) = (String::new(), first);
        while !stop.is_cancelled() {
            let channel = channels[at % channels.len()].clone();
            if let Ok(stream) = open(channel, cursor.clone()).await {
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.message() => message,
                    };
                    let Ok(Some(message)) = message else { break };
                    cursor = note(message, &mut seen.lock().expect("seen lock"));
                }
            }
            seen.lock().expect("seen lock").reconnects += 1;
            at += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// WatchRecordChanges on record hosting's instances, from the start of the feed, reconnecting as
/// [`resuming`] does. Checks commit order: a change it had not seen never comes after a later one.
pub(crate) fn record_watcher(
    records: Vec<Channel>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let mut last_sequence = 0i64;
    let open = |channel: Channel, after_cursor: String| async move {
        let request = WatchRecordChangesRequest {
            after_cursor,
            view: RecordView::Metadata as i32,
            ..WatchRecordChangesRequest::default()
        };
        RecordHostingServiceClient::new(channel)
            .watch_record_changes(request)
            .await
    };
    resuming(records, first, seen, stop, open, move |message, seen| {
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
        message.cursor
    })
}

/// FollowRecordChanges through data access's instances, for every patient, from the start of their
/// history, reconnecting as [`resuming`] does.
pub(crate) fn follower(
    access: Vec<Channel>,
    patients: Arc<Vec<String>>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let token = clinician();
    let open = move |channel: Channel, after_cursor: String| {
        let request = FollowRecordChangesRequest {
            patients: patients
                .iter()
                .map(|p| by_id(p).expect("a reference"))
                .collect(),
            purpose_of_use: "TREAT".into(),
            after_cursor,
            ..FollowRecordChangesRequest::default()
        };
        let request = authed(request, &token);
        async move {
            DataAccessServiceClient::new(channel)
                .follow_record_changes(request)
                .await
        }
    };
    resuming(access, first, seen, stop, open, |message, seen| {
        if !message.notifications.is_empty() {
            assert!(!message.audit_entry_id.is_empty(), "deliveries are audited");
        }
        for notification in message.notifications {
            seen.changes
                .insert((notification.record_id, notification.version));
            seen.deliveries += 1;
        }
        message.cursor
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

/// How long a test's load runs: `variable` in seconds, else `default`.
pub(crate) fn load_seconds(variable: &str, default: f64) -> f64 {
    std::env::var(variable)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(default)
}
