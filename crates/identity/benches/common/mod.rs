//! What the benches share: an in-process identity server on its own runtime, and a client.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{
    BatchCreatePatientsRequest, BatchCreatePatientsResult, ComparisonLevel, CreatePatientRequest,
    EstimateMatchParametersRequest, EstimateMatchParametersResponse, MatchCandidate,
    MatchClassification, MatchPatientsRequest, MatchPatientsResponse, Patient,
    match_patients_request,
};
use carerecord_identity::{Application, Config};
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::env::Env;
use carerecord_platform::testing::TestDatabase;
use tokio_util::sync::CancellationToken;

pub type Client = PatientIdentityServiceClient<tonic::transport::Channel>;

/// A server on a runtime of `workers` threads, stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub backend: String,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _db: TestDatabase,
}

impl Server {
    /// A fresh database: PostgreSQL when `TEST_DATABASE_URL` is set, else SQLite.
    pub fn start(workers: usize) -> Server {
        let setup = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = setup.block_on(async {
            match TestDatabase::postgres().await {
                Some(db) => db,
                None => TestDatabase::sqlite(),
            }
        });
        let backend = format!("{:?}", db.backend);
        let (addr, stop, thread) = spawn(&db.url, workers);
        Server {
            addr,
            backend,
            stop,
            thread: Some(thread),
            _db: db,
        }
    }

    /// Stops the server and starts another on the same database; returns how long the new one
    /// took to start (its migrations and start-up work included).
    pub fn restart(&mut self, workers: usize) -> std::time::Duration {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let started = std::time::Instant::now();
        let (addr, stop, thread) = spawn(&self._db.url, workers);
        let took = started.elapsed();
        (self.addr, self.stop, self.thread) = (addr, stop, Some(thread));
        took
    }

    /// Runs one statement on the server's database.
    pub async fn execute(&self, statement: &'static str) {
        use sqlx::{ConnectOptions, Executor};
        let options =
            <sqlx::any::AnyConnectOptions as std::str::FromStr>::from_str(&self._db.url).unwrap();
        let mut conn = options.connect().await.expect("connect");
        conn.execute(statement).await.expect("execute");
    }

    /// See [`TestDatabase::settle`].
    pub async fn settle(&self) {
        self._db.settle().await;
    }

    pub async fn client(&self) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        PatientIdentityServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

/// Starts a server on `db_url` on its own thread; returns once it listens.
fn spawn(
    db_url: &str,
    workers: usize,
) -> (SocketAddr, CancellationToken, std::thread::JoinHandle<()>) {
    let env = Env::from_pairs([
        ("DATABASE_URL", db_url),
        ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0"),
        ("CARERECORD_TOKEN_SECRET", "bench-secret-0123456789"),
        ("CARERECORD_DB_MAX_CONNECTIONS", "24"),
        ("CARERECORD_REQUEST_TIMEOUT", "30m"),
        ("CARERECORD_MAX_MESSAGE_BYTES", "64MiB"),
    ]);
    let config = Config::from_env(&env).expect("config");
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let app = carerecord_platform::app::start::<Application>(config)
                .await
                .expect("build the identity service");
            tx.send(app.local_addr()).expect("send addr");
            app.run(token).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("server address");
    (addr, stop, thread)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Bench databases are large: drop this one (tests' small ones are left to the harness).
        if let (Ok(server_url), Some(name)) = (
            std::env::var("TEST_DATABASE_URL"),
            self._db
                .url
                .rsplit('/')
                .next()
                .map(|n| n.split('?').next().unwrap_or(n).to_owned()),
        ) && self.backend == "Postgres"
            && name.starts_with("carerecord_test_")
        {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    use sqlx::{ConnectOptions, Executor};
                    if let Ok(options) =
                        <sqlx::any::AnyConnectOptions as std::str::FromStr>::from_str(&server_url)
                        && let Ok(mut conn) = options.connect().await
                    {
                        let _ = conn
                            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))))
                            .await;
                    }
                });
            }
        }
    }
}

pub fn requester() -> Requester {
    Requester {
        user_id: "bench".into(),
        ..Requester::default()
    }
}

/// Registers `patients` in one BatchCreatePatients (each under a fresh request id, as the
/// bench's requester); the result of each, in order.
pub async fn batch_create<'a>(
    client: &mut Client,
    patients: impl IntoIterator<Item = &'a Patient>,
) -> Vec<BatchCreatePatientsResult> {
    let request = BatchCreatePatientsRequest {
        requests: patients
            .into_iter()
            .map(|p| CreatePatientRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                patient: Some(p.clone()),
                requester: None,
            })
            .collect(),
        requester: Some(requester()),
    };
    client
        .batch_create_patients(request)
        .await
        .expect("batch create")
        .into_inner()
        .results
}

/// Runs `run` for each data set of `sets`, each against a fresh server (2 workers) from a client on
/// one thread; `bench` names the bench in what it prints.
pub fn for_each_set<'a>(
    bench: &str,
    sets: impl IntoIterator<Item = &'a str>,
    run: impl AsyncFn(&str, &mut Client),
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for set in sets {
        let server = Server::start(2);
        println!(
            "{bench}: identity server on {} (2 worker threads), client on 1 thread",
            server.backend
        );
        runtime.block_on(async {
            let mut client = server.client().await;
            run(set, &mut client).await;
        });
    }
}

/// What the quality benches print of a candidate: each compared field's comparator, adjustment,
/// weight and values.
pub fn evidence(candidate: &MatchCandidate) -> Vec<String> {
    candidate
        .evidence
        .iter()
        .filter(|e| e.level != ComparisonLevel::Missing as i32)
        .map(|e| {
            let adjustment = if e.adjustment.is_empty() {
                String::new()
            } else {
                format!("/{}", e.adjustment)
            };
            format!(
                "{}:{:?}/{}{adjustment}({:+.1}) {:?}~{:?}",
                e.field,
                ComparisonLevel::try_from(e.level).unwrap_or_default(),
                e.comparator,
                e.weight,
                e.probe_value,
                e.candidate_value
            )
        })
        .collect()
}

/// MatchPatients with `patient`'s demographics as the probe.
pub async fn match_demographics(
    client: &mut Client,
    patient: &Patient,
    max_candidates: i32,
    include_non_matches: bool,
) -> Result<MatchPatientsResponse, tonic::Status> {
    let request = MatchPatientsRequest {
        probe: Some(match_patients_request::Probe::Demographics(patient.clone())),
        max_candidates,
        include_non_matches,
    };
    Ok(client.match_patients(request).await?.into_inner())
}

/// The patient id of each candidate, and whether it was classified MATCH (else POSSIBLE).
pub fn classified(candidates: &[MatchCandidate]) -> impl Iterator<Item = (&str, bool)> {
    candidates.iter().map(|c| {
        let id = c.patient.as_ref().map(|p| p.patient_id.as_str());
        let is_match = c.classification == MatchClassification::Match as i32;
        (id.unwrap_or_default(), is_match)
    })
}

/// Estimates the match parameters as the quality benches do: one fixed seed, so that runs compare.
pub async fn estimate_seeded(client: &mut Client) -> EstimateMatchParametersResponse {
    let request = EstimateMatchParametersRequest {
        random_seed: 20_240_601,
        ..Default::default()
    };
    estimate(client, request).await
}

/// Estimates the match parameters (as the bench's requester), and says how it went, how long it
/// took and whether the new parameters were activated.
pub async fn estimate(
    client: &mut Client,
    request: EstimateMatchParametersRequest,
) -> EstimateMatchParametersResponse {
    let started = std::time::Instant::now();
    let estimated = client
        .estimate_match_parameters(EstimateMatchParametersRequest {
            requester: Some(requester()),
            ..request
        })
        .await
        .expect("estimate")
        .into_inner();
    let params = estimated.parameters.as_ref().expect("parameters");
    println!(
        "estimated parameters v{} in {:.1}s: converged {} after {} iterations, {} random and {} blocked pairs, lambda {:.3e}, thresholds match {} possible {}",
        params.parameters_version,
        started.elapsed().as_secs_f64(),
        params.converged,
        params.iterations,
        params.random_pairs_used,
        params.blocked_pairs_used,
        params.prior_match_probability,
        params.match_threshold,
        params.possible_threshold
    );
    println!("estimation activated: {}", estimated.activated);
    for check in &estimated.activation_checks {
        println!(
            "    check {:<28} {:<6} {}",
            check.check,
            if check.passed { "passed" } else { "FAILED" },
            check.detail
        );
    }
    estimated
}

/// Precision, recall and F1 over pairs.
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted: usize,
    pub true_positives: usize,
}

pub fn scores(predicted: &HashSet<(usize, usize)>, truth: &HashSet<(usize, usize)>) -> Scores {
    let tp = predicted.intersection(truth).count();
    let precision = if predicted.is_empty() {
        0.0
    } else {
        tp as f64 / predicted.len() as f64
    };
    let recall = if truth.is_empty() {
        0.0
    } else {
        tp as f64 / truth.len() as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Scores {
        precision,
        recall,
        f1,
        predicted: predicted.len(),
        true_positives: tp,
    }
}

/// A pair in a canonical order.
pub fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
