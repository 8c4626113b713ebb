//! Reading a patient's record through data access with all four real services on this machine.
//!
//! The sandbox starts identity, record hosting, consent and data access in-process, each on its
//! own listener and database, talking gRPC to each other as when deployed apart. 200 patients with
//! 20 records each are loaded (every tenth patient withholds mental-health data, which two of
//! their records carry). Then 64 concurrent clients, for a fixed time each:
//!
//! - direct: ListRecords on record hosting for a random patient (the baseline);
//! - through: ReadPatientRecord on data access by NHS number for the same patients (token check,
//!   identity resolution, consent decision, records, withholding, one audit append).
//!
//! Goals (issue 6): through p99 under 20 ms, and through throughput at least 0.4 of direct.
//!
//! Runtimes: the four services share a 2-worker runtime; the load generator has its own 1-worker
//! runtime. Each service's pool has `CARERECORD_BENCH_POOL` connections (default 16, the services'
//! default; the test sandbox's 4 is for tests running in parallel). `CARERECORD_BENCH_SCALE`
//! (default 1.0) scales the durations. The database is `TEST_DATABASE_URL` (PostgreSQL, as
//! `make bench` sets it), else SQLite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_e2e::{Overrides, Platform, authed, token, uuid};
use carerecord_platform::db::Backend;
use futures::StreamExt;
use tonic::transport::Channel;

const CLIENTS: usize = 64;
const PATIENTS: usize = 200;
const RECORDS_PER_PATIENT: usize = 20;
/// Concurrent calls while loading the data.
const LOADERS: usize = 16;

fn scale() -> f64 {
    std::env::var("CARERECORD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

fn pool_size() -> u32 {
    std::env::var("CARERECORD_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &u32| *n > 0)
        .unwrap_or(16)
}

struct Stats {
    calls: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self) -> String {
        format!(
            "{} calls ({} failed) in {:.1?}: {:.0}/s, p50 {:.2?}, p99 {:.2?}",
            self.calls,
            self.errors,
            self.elapsed,
            self.per_second(),
            self.p50,
            self.p99
        )
    }
}

/// Runs `CLIENTS` loops of `call` for `duration`; `call` answers whether the call succeeded.
async fn load<F, Fut>(duration: Duration, call: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !call(i).await {
                        errors += 1;
                    }
                    latencies.push(t.elapsed());
                    i += CLIENTS;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await.expect("client task");
        all.extend(latencies);
        errors += failed;
    }
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        calls: all.len(),
        errors,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

struct Patient {
    id: String,
    nhs_number: String,
}

/// Registers the patients, their records and the withholding directives.
async fn load_data(platform: &Platform) -> Vec<Patient> {
    let patients: Vec<Patient> = futures::stream::iter(0..PATIENTS)
        .map(|i| async move {
            let (id, nhs_number) = platform
                .register_patient(&format!("Bench{i}"), "Patient")
                .await;
            Patient { id, nhs_number }
        })
        .buffered(LOADERS)
        .collect()
        .await;
    let records = patients.iter().flat_map(|p| {
        (0..RECORDS_PER_PATIENT).map(move |r| {
            let classes: &'static [&'static str] =
                if r % 10 == 0 { &["mental-health"] } else { &[] };
            (p.id.as_str(), classes)
        })
    });
    futures::stream::iter(records)
        .for_each_concurrent(LOADERS, |(id, classes)| async move {
            platform.add_record(id, classes).await;
        })
        .await;
    let mut consent_client = platform.consent_client().await;
    for patient in patients.iter().step_by(10) {
        let directive = consent::ConsentDirective {
            patient_id: patient.id.clone(),
            status: consent::ConsentDirectiveStatus::Active as i32,
            decision: consent::ConsentDecision::Permit as i32,
            provisions: vec![consent::Provision {
                data_classes: vec!["mental-health".into()],
                ..Default::default()
            }],
            date_time: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        };
        consent_client
            .create_consent_directive(consent::CreateConsentDirectiveRequest {
                request_id: uuid(),
                directive: Some(directive),
                requester: Some(Requester {
                    user_id: "bench-loader".into(),
                    organisation_ods_code: "RR8".into(),
                    role_code: "R8000".into(),
                    display_name: String::new(),
                }),
            })
            .await
            .expect("record a directive");
    }
    patients
}

async fn connect(endpoint: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

fn direct_read(
    client: &RecordHostingServiceClient<Channel>,
    patients: &Arc<Vec<Patient>>,
    i: usize,
) -> impl std::future::Future<Output = bool> + Send + use<> {
    let mut client = client.clone();
    let request = records::ListRecordsRequest {
        patient_id: patients[i % patients.len()].id.clone(),
        order: records::RecordOrder::EffectiveTimeDescending as i32,
        ..Default::default()
    };
    async move {
        client
            .list_records(request)
            .await
            .is_ok_and(|r| r.into_inner().records.len() == RECORDS_PER_PATIENT)
    }
}

fn read_through(
    client: &DataAccessServiceClient<Channel>,
    patients: &Arc<Vec<Patient>>,
    clinician: &str,
    i: usize,
) -> impl std::future::Future<Output = bool> + Send + use<> {
    let mut client = client.clone();
    let request = api::ReadPatientRecordRequest {
        patient: Some(api::PatientReference {
            reference: Some(api::patient_reference::Reference::NhsNumber(
                patients[i % patients.len()].nhs_number.clone(),
            )),
        }),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let request = authed(request, clinician);
    async move {
        client.read_patient_record(request).await.is_ok_and(|r| {
            let summary = r.into_inner().disclosure.unwrap_or_default();
            summary.returned_count + summary.withheld_count == RECORDS_PER_PATIENT as i64
        })
    }
}

fn main() {
    let scale = scale();
    let pool = pool_size();
    let backend = if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let services = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("services runtime");
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("load runtime");
    let settings = [("CARERECORD_DB_MAX_CONNECTIONS".to_owned(), pool.to_string())];
    let platform = services.block_on(Platform::start_with(
        backend,
        Overrides::default(),
        &settings,
    ));
    println!(
        "read_four_services: backend {backend:?}; four services on 2 workers, load on 1 worker; \
         pools of {pool}; {PATIENTS} patients x {RECORDS_PER_PATIENT} records; {CLIENTS} clients; scale {scale}"
    );
    let started = Instant::now();
    let patients = Arc::new(services.block_on(load_data(&platform)));
    println!(
        "loaded {} records in {:.1?}",
        PATIENTS * RECORDS_PER_PATIENT,
        started.elapsed()
    );

    let duration = Duration::from_secs_f64(5.0 * scale);
    let warm_up = Duration::from_secs_f64(1.0 * scale);
    let clinician = token("R8000", "user/*.rs");
    let (direct, through) = load_rt.block_on(async {
        let records_client = RecordHostingServiceClient::new(connect(&platform.records).await);
        let access_client = DataAccessServiceClient::new(connect(&platform.access).await);
        let direct_call = {
            let (client, patients) = (records_client.clone(), patients.clone());
            move |i| direct_read(&client, &patients, i)
        };
        let through_call = {
            let (client, patients, clinician) =
                (access_client.clone(), patients.clone(), clinician.clone());
            move |i| read_through(&client, &patients, &clinician, i)
        };
        // Warm both paths (connections, pools, caches) before measuring either.
        load(warm_up, direct_call.clone()).await;
        load(warm_up, through_call.clone()).await;
        let direct = load(duration, direct_call).await;
        let through = load(duration, through_call).await;
        (direct, through)
    });
    let ratio = through.per_second() / direct.per_second();
    let p99_met = through.p99 < Duration::from_millis(20);
    let ratio_met = ratio >= 0.4;
    let clean = direct.errors == 0 && through.errors == 0;
    println!("read, direct from record hosting: {}", direct.line());
    println!(
        "read through data access (token, identity, consent, records, audit): {}",
        through.line()
    );
    println!(
        "goal p99 < 20 ms: {} ({:.2?})",
        if p99_met { "met" } else { "MISSED" },
        through.p99
    );
    println!(
        "goal throughput through/direct >= 0.40: {} ({ratio:.2})",
        if ratio_met { "met" } else { "MISSED" }
    );
    if !clean {
        println!(
            "WARNING: some calls failed or returned the wrong records; the figures are not valid"
        );
    }
    drop(platform);
    drop(load_rt);
    drop(services);
}
