//! What the benches share: an in-process identity server on its own runtime, and a client.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{
    EstimateMatchParametersRequest, EstimateMatchParametersResponse,
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

/// Estimates the match parameters (as the bench's requester), and says how it went and how long
/// it took.
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
