//! Data access's own overhead on the read path and the extract path.
//!
//! Identity, consent and record hosting are the in-memory doubles of the API tests (so this
//! measures data access itself: token check, resolution, decision, withholding, audit append on
//! the real database); the four-service benchmark belongs to the workspace's end-to-end suite.
//!
//! - Read: 64 concurrent clients call ReadPatientRecord for random patients, for a fixed time;
//!   the baseline, measured in the same run, is the same 64 clients reading the same pages from
//!   the record hosting double directly. Goals: p99 under 20 ms; throughput >= 0.4 of direct.
//! - Extract: one ExtractPseudonymised of 100,000 records (1,000 patients x 100). Goal: >= 20,000
//!   records/s.
//!
//! Runtimes: the service and the doubles share a 2-worker runtime; the load generator has its own
//! 1-worker runtime. `CARERECORD_BENCH_SCALE` (default 1.0) scales durations and the extract size.
//! The database is `TEST_DATABASE_URL` (PostgreSQL, as `make bench` sets it), else SQLite.

#[allow(dead_code)]
#[path = "../tests/api/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::records::v1 as records;
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_platform::testing::TestDatabase;
use support::{Claims, PROJECT_A, authed, patient_ref, spawn_app, token};

const CLIENTS: usize = 64;
const PATIENTS: usize = 200;
const RECORDS_PER_PATIENT: usize = 20;

struct Stats {
    calls: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `CLIENTS` loops of `call` for `duration` and collects latencies.
async fn load<F, Fut>(duration: Duration, call: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    call(i).await;
                    latencies.push(t.elapsed());
                    i += CLIENTS;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
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
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn main() {
    let scale = carerecord_platform::testing::bench_scale();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("load runtime");
    let db = server.block_on(async {
        TestDatabase::postgres()
            .await
            .unwrap_or_else(TestDatabase::sqlite)
    });
    let app = server.block_on(spawn_app(&db.url));
    println!(
        "read_path: backend {:?}; service+doubles on 2 workers, load on 1 worker; scale {scale}",
        db.backend
    );

    // Patients with records; the decision withholds one class for every tenth patient.
    let mut patients = Vec::new();
    for i in 0..PATIENTS {
        let p = app.fakes.add_patient("", &format!("P{i}"));
        for r in 0..RECORDS_PER_PATIENT {
            let classes: &[&str] = if r % 10 == 0 { &["mental-health"] } else { &[] };
            app.fakes
                .add_record(&p, "Observation", classes, Some(1_600_000_000 + r as i64));
        }
        if i % 10 == 0 {
            app.fakes
                .world
                .lock()
                .expect("world")
                .withhold
                .insert(p.clone(), vec!["mental-health".into()]);
        }
        patients.push(p);
    }
    let patients = Arc::new(patients);
    let clinician = token(&Claims::clinician("user/*.rs"));
    let duration = Duration::from_secs_f64(5.0 * scale);
    let access_endpoint = format!("http://{}", app.addr);
    let upstream = app.upstream.clone();

    let clinician_find = clinician.clone();
    let (direct, find, through) = load_rt.block_on(async {
        let records_channel = tonic::transport::Endpoint::from_shared(upstream)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let access_channel = tonic::transport::Endpoint::from_shared(access_endpoint)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let direct = {
            let patients = patients.clone();
            let client = RecordHostingServiceClient::new(records_channel);
            load(duration, move |i| {
                let mut client = client.clone();
                let patient_id = patients[i % patients.len()].clone();
                async move {
                    let request = records::ListRecordsRequest {
                        patient_id,
                        order: records::RecordOrder::EffectiveTimeDescending as i32,
                        ..Default::default()
                    };
                    client.list_records(request).await.expect("direct read");
                }
            })
            .await
        };
        let find = {
            let patients = patients.clone();
            let client = DataAccessServiceClient::new(access_channel.clone());
            load(duration, move |i| {
                let mut client = client.clone();
                let request = api::FindPatientRequest {
                    patient: patient_ref(&patients[i % patients.len()]),
                    purpose_of_use: "TREAT".into(),
                };
                let request = authed(request, &clinician_find);
                async move {
                    client
                        .find_patient(request)
                        .await
                        .expect("find through data access");
                }
            })
            .await
        };
        let through = {
            let patients = patients.clone();
            let client = DataAccessServiceClient::new(access_channel);
            load(duration, move |i| {
                let mut client = client.clone();
                let request = api::ReadPatientRecordRequest {
                    patient: patient_ref(&patients[i % patients.len()]),
                    purpose_of_use: "TREAT".into(),
                    ..Default::default()
                };
                let request = authed(request, &clinician);
                async move {
                    client
                        .read_patient_record(request)
                        .await
                        .expect("read through data access");
                }
            })
            .await
        };
        (direct, find, through)
    });
    println!(
        "read, direct from the record hosting double: {} calls in {:.1?}: {:.0}/s, p50 {:.2?}, p99 {:.2?}",
        direct.calls,
        direct.elapsed,
        direct.per_second(),
        direct.p50,
        direct.p99
    );
    println!(
        "find patient through data access (token, identity, audit; no consent or records): {} calls: {:.0}/s, p50 {:.2?}, p99 {:.2?}",
        find.calls,
        find.per_second(),
        find.p50,
        find.p99
    );
    println!(
        "read through data access ({CLIENTS} clients): {} calls in {:.1?}: {:.0}/s, p50 {:.2?}, p99 {:.2?} (goal < 20 ms)",
        through.calls,
        through.elapsed,
        through.per_second(),
        through.p50,
        through.p99
    );
    println!(
        "throughput ratio through/direct: {:.2} (goal >= 0.40)",
        through.per_second() / direct.per_second()
    );

    // Extract: 1,000 patients x 100 records at scale 1.
    let extract_patients = ((1000.0 * scale) as usize).max(10);
    let mut cohort = Vec::new();
    for i in 0..extract_patients {
        let p = app.fakes.add_patient("", &format!("E{i}"));
        for r in 0..100 {
            app.fakes
                .add_record(&p, "Observation", &[], Some(1_600_000_000 + r));
        }
        cohort.push(p);
    }
    let researcher = token(&Claims::system("system/*.rs"));
    let addr = format!("http://{}", app.addr);
    let (rows, elapsed) = load_rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(addr)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = DataAccessServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let request = api::ExtractPseudonymisedRequest {
            project_id: PROJECT_A.into(),
            purpose_of_use: "HRESCH".into(),
            cohort: Some(api::Cohort {
                selection: Some(api::cohort::Selection::PatientList(api::PatientIdList {
                    patient_ids: cohort,
                })),
            }),
            ..Default::default()
        };
        let start = Instant::now();
        let mut stream = client
            .extract_pseudonymised(authed(request, &researcher))
            .await
            .expect("extract")
            .into_inner();
        let mut rows = 0u64;
        while let Some(message) = stream.message().await.expect("extract stream") {
            if let Some(api::extract_pseudonymised_response::Item::Row(_)) = message.item {
                rows += 1;
            }
        }
        (rows, start.elapsed())
    });
    println!(
        "extract: {rows} pseudonymised rows in {elapsed:.2?}: {:.0} records/s (goal >= 20000)",
        rows as f64 / elapsed.as_secs_f64()
    );
    drop(app);
    drop(load_rt);
    drop(server);
}
