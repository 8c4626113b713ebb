//! PostgreSQL lost under load on all four modules (record hosting alone has this in its own
//! tests): each module a process of its service binary, every client retrying with the same
//! request ids. Afterwards: no acknowledged write of any module is lost or doubled, every
//! disclosure the clients received has its entry in the audit log (which verifies offline and has
//! no gap), and every module serves again within seconds, as the same process.
//!
//! The load runs `CARERECORD_TEST_RESTART_SECONDS` (default 2), the fault at half time. In `make
//! test` the fault is every server connection of the four modules' databases terminated,
//! five times 200 ms apart (other tests share the server). `CARERECORD_TEST_POSTGRES_RESTART` names
//! a shell command that restarts the server instead, for example `pg_ctlcluster 15 main restart -m
//! fast`; run the test alone then (`cargo test -p carerecord-e2e --test e2e restart::`), since a
//! restart breaks every other test's connections too. The test needs PostgreSQL
//! (`TEST_DATABASE_URL`, which CI always sets); without it, it says so and checks nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    DecideRequest, Provision, ProvisionActor,
};
use carerecord_contracts::identity::v1::GetPatientRequest;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::records::v1::ListRecordsRequest;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_e2e::{authed, by_id, read_request, uuid};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::replicas::{
    Caller, Cluster, Module, RECORDS_STORED, Shared, assert_gap_free, assert_stored_once,
    clinician, create_patient, demographics, front_door_load, load_seconds, register,
    until_stopped, verified_audit_log,
};

/// How soon after the fault every module must serve again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

fn requester() -> Requester {
    Requester {
        user_id: "e2e-restart".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

/// Acknowledged consent directives: request_id -> directive_id.
type Directives = Arc<Mutex<HashMap<String, String>>>;

/// CreatePatient on identity, each retried with its request_id until acknowledged.
fn registrar(identity: Caller, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    until_stopped(stop, identity, |identity, n| async move {
        create_patient(&identity, demographics(1000 + n), requester()).await;
    })
}

/// CreateConsentDirective on consent, each retried with its request_id until acknowledged.
fn consenter(
    consent: Caller,
    patients: Arc<Vec<String>>,
    directives: Directives,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let context = (consent, patients, directives);
    until_stopped(
        stop,
        context,
        |(consent, patients, directives), n| async move {
            let directive = ConsentDirective {
                patient_id: patients[n % patients.len()].clone(),
                status: ConsentDirectiveStatus::Active as i32,
                decision: ConsentDecision::Permit as i32,
                provisions: vec![Provision {
                    actors: vec![ProvisionActor {
                        organisation_ods_code: "RR8".into(),
                        ..ProvisionActor::default()
                    }],
                    data_classes: vec!["safeguarding".into()],
                    ..Provision::default()
                }],
                date_time: Some(std::time::SystemTime::now().into()),
                ..ConsentDirective::default()
            };
            let request = CreateConsentDirectiveRequest {
                request_id: uuid(),
                directive: Some(directive),
                requester: Some(requester()),
            };
            let created = consent
                .call("CreateConsentDirective", |ch| {
                    let request = request.clone();
                    async move {
                        ConsentServiceClient::new(ch)
                            .create_consent_directive(request)
                            .await
                    }
                })
                .await
                .into_inner()
                .directive
                .expect("the directive");
            directives
                .lock()
                .expect("directives lock")
                .insert(request.request_id, created.directive_id);
        },
    )
}

/// Terminates every server connection to the databases of `urls`, five times, 200 ms apart.
async fn kill_connections(urls: &[&str]) {
    let names: Vec<String> = urls
        .iter()
        .map(|url| {
            url.rsplit('/')
                .next()
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut admin = sqlx::AnyConnection::connect(urls[0])
        .await
        .expect("connect");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for name in &names {
            sqlx::query(
                "SELECT CAST(count(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(name.as_str())
            .fetch_one(&mut admin)
            .await
            .expect("terminate the database's connections");
        }
    }
}

/// The fault: a real restart when `CARERECORD_TEST_POSTGRES_RESTART` names its command, else the
/// four databases' connections killed. Returns what it did.
async fn fault(cluster: &Cluster) -> String {
    match std::env::var("CARERECORD_TEST_POSTGRES_RESTART") {
        Ok(command) if !command.trim().is_empty() => {
            let status = tokio::process::Command::new("sh")
                .args(["-c", &command])
                .status()
                .await
                .expect("run the restart command");
            assert!(status.success(), "{command:?} failed: {status}");
            format!("PostgreSQL restarted with {command:?}")
        }
        _ => {
            let urls: Vec<&str> = Module::ALL
                .iter()
                .map(|m| cluster.database_url(*m))
                .collect();
            kill_connections(&urls).await;
            "every connection of the four databases terminated, 5 times 200 ms apart".into()
        }
    }
}

/// Calls `probe` until it succeeds, at most [`RECOVERY_LIMIT`]; how long it took.
async fn serving_again<F, Fut, T>(module: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let since = Instant::now();
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(5), probe()).await {
            Ok(Ok(_)) => return since.elapsed(),
            Ok(Err(status)) => format!("{status:?}"),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        assert!(
            since.elapsed() < RECOVERY_LIMIT,
            "{module} is not serving {RECOVERY_LIMIT:?} after the fault: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_lost_under_load_on_four_modules_loses_no_acknowledged_write() {
    let Some(mut cluster) = Cluster::start(1).await else {
        eprintln!(
            "restart: TEST_DATABASE_URL is unset; the fault is PostgreSQL's, so nothing was checked"
        );
        return;
    };
    let tally = Shared::default();
    let directives = Directives::default();
    let [identity, records, consent, access] = Module::ALL.map(|m| cluster.channels(m));
    let registered = register(&identity, 6, &tally).await;
    let patients: Arc<Vec<String>> =
        Arc::new(registered.iter().map(|(id, _)| id.clone()).collect());
    let processes = cluster.process_ids();

    let stop = CancellationToken::new();
    let mut load = front_door_load(&access, &patients, &tally, &stop);
    load.push(registrar(Caller::new(&identity, 0, &tally), &stop));
    let consent_writer = consenter(
        Caller::new(&consent, 0, &tally),
        patients.clone(),
        directives.clone(),
        &stop,
    );
    load.push(consent_writer);

    let seconds = load_seconds("CARERECORD_TEST_RESTART_SECONDS", 2.0);
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    let what = fault(&cluster).await;

    // Each module answers a call of its own again, soon, as the same process.
    let patient = patients[0].clone();
    let token = clinician();
    let recovered = [
        (
            "identity",
            serving_again("identity", || {
                let (ch, patient_id) = (identity[0].clone(), patient.clone());
                async move {
                    PatientIdentityServiceClient::new(ch)
                        .get_patient(GetPatientRequest { patient_id })
                        .await
                }
            })
            .await,
        ),
        (
            "records",
            serving_again("records", || {
                let (ch, patient_id) = (records[0].clone(), patient.clone());
                async move {
                    RecordHostingServiceClient::new(ch)
                        .list_records(ListRecordsRequest {
                            patient_id,
                            page_size: 1,
                            ..ListRecordsRequest::default()
                        })
                        .await
                }
            })
            .await,
        ),
        (
            "consent",
            serving_again("consent", || {
                let (ch, patient_id) = (consent[0].clone(), patient.clone());
                async move {
                    ConsentServiceClient::new(ch)
                        .decide(DecideRequest {
                            patient_id,
                            requester: Some(requester()),
                            purpose_of_use: "TREAT".into(),
                            ..DecideRequest::default()
                        })
                        .await
                }
            })
            .await,
        ),
        (
            "access",
            serving_again("access", || {
                let (ch, patient_id) = (access[0].clone(), patient.clone());
                let request = authed(read_request(by_id(&patient_id), "TREAT"), &token);
                async move {
                    DataAccessServiceClient::new(ch)
                        .read_patient_record(request)
                        .await
                }
            })
            .await,
        ),
    ];
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    stop.cancel();
    for worker in load {
        worker.await.expect("a load worker failed");
    }
    assert_eq!(
        cluster.process_ids(),
        processes,
        "every module recovered as the same process"
    );

    // No acknowledged write lost or doubled, on any module.
    let (contributions, patients_acknowledged) = {
        let t = tally.lock().unwrap();
        (t.contributions.clone(), t.patients.clone())
    };
    let directives = directives.lock().unwrap().clone();
    let (by_request, total) = RECORDS_STORED;
    assert_stored_once(
        cluster.database_url(Module::Records),
        by_request,
        total,
        &contributions,
    )
    .await;
    assert_stored_once(
        cluster.database_url(Module::Identity),
        "SELECT request_id, patient_id FROM request_ids",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM patients",
        &patients_acknowledged,
    )
    .await;
    assert_stored_once(
        cluster.database_url(Module::Consent),
        "SELECT request_id, directive_id FROM consent_create_requests",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM consent_directives",
        &directives,
    )
    .await;

    // No disclosure (nor contribution) without its audit entry; the log verifies and has no gap.
    let log = verified_audit_log(&access, &tally).await;
    assert_gap_free(cluster.database_url(Module::Access)).await;
    let t = tally.lock().unwrap();
    let unaudited: Vec<&String> = t.audited.iter().filter(|id| !log.contains(*id)).collect();
    assert!(
        unaudited.is_empty(),
        "answers without their audit entry: {unaudited:?}"
    );
    eprintln!(
        "restart: {seconds} s of load; {what}; serving again after {:?}; acknowledged and found: {} reads (each \
         disclosure's audit entry in the verified log of {} entries), {} creates and {} imported \
         items ({} records stored once), {} patients, {} consent directives; retried: {:?} \
         (first: {:?})",
        recovered.map(|(module, took)| format!("{module} {:.2} s", took.as_secs_f64())),
        t.reads,
        log.len(),
        t.creates,
        t.imported,
        contributions.len(),
        patients_acknowledged.len(),
        directives.len(),
        t.retried,
        t.retried_first,
    );
}
