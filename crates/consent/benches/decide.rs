//! Decide and BatchDecide against PostgreSQL with 1,000,000 directives stored.
//!
//! `make bench` (TEST_DATABASE_URL names the server; a fresh database is created and dropped).
//! CARERECORD_BENCH_SCALE (default 1.0) scales the directives stored and the requests made;
//! CARERECORD_DB_MAX_CONNECTIONS, when set, is passed to the service (its pool size).
//!
//! Figures: single Decide over gRPC on loopback (p50/p99, one call in flight), Decide throughput (32 in
//! flight), BatchDecide of 10,000 patients; baselines measured in the same run: a bare gRPC call
//! answering a constant decision (one, and 10,000 in a batch), the bare indexed select Decide makes,
//! and the batch's select for 10,000 patients as one statement and as the service runs it (chunks of
//! 1,000, concurrently).

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_consent::domain::codes::{DataClass, LegalBasis as CodesLegalBasis, Purpose};
use carerecord_consent::domain::decide::Context;
use carerecord_consent::{Application, Config};
use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::consent_service_server::{
    ConsentService, ConsentServiceServer,
};
use carerecord_contracts::consent::v1::*;
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::env::Env;
use carerecord_platform::testing::TestDatabase;
use prost::Message;
use prost_types::Timestamp;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Executor, Postgres, QueryBuilder};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const SERVER_WORKERS: usize = 2;
const ROWS_PER_INSERT: usize = 1000;
const ROWS_PER_TRANSACTION: usize = 50_000;
const BATCH: usize = 10_000;
const IN_FLIGHT: usize = 32;

fn scaled(n: usize) -> usize {
    ((n as f64 * carerecord_platform::testing::bench_scale()).round() as usize).max(1)
}

/// Deterministic, well-spread ids (xorshift) so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn patient_id(i: usize) -> String {
    uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | (i as u128) << 20)
        .hyphenated()
        .to_string()
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// A mix of realistic directives: privacy directives with nested exceptions, research consents, refusals.
fn directive_for(patient: &str, kind: usize, directive_id: &str) -> ConsentDirective {
    let actor = |ods: &str| ProvisionActor {
        organisation_ods_code: ods.into(),
        ..Default::default()
    };
    let (decision, scope, provisions) = match kind % 4 {
        0 | 1 => (
            ConsentDecision::Permit,
            vec![],
            vec![
                Provision {
                    data_classes: vec!["mental-health".into(), "sexual-health".into()],
                    provisions: vec![Provision {
                        actors: vec![actor("RXA"), actor("RYJ")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                Provision {
                    actors: vec![actor("X26")],
                    data_period: Some(Period {
                        start: None,
                        end: ts(1_577_836_800),
                    }),
                    ..Default::default()
                },
            ],
        ),
        2 => (
            ConsentDecision::Deny,
            vec!["HRESCH".into()],
            vec![Provision {
                study_ids: vec![format!("IRAS-{}", kind % 50)],
                provisions: vec![Provision {
                    data_classes: vec!["genomic".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        ),
        _ => (
            ConsentDecision::Deny,
            vec!["HOPERAT".into(), "HMARKT".into()],
            vec![],
        ),
    };
    ConsentDirective {
        directive_id: directive_id.into(),
        patient_id: patient.into(),
        status: ConsentDirectiveStatus::Active as i32,
        decision: decision as i32,
        scope_purposes: scope,
        provisions,
        date_time: ts(1_700_000_000),
        grantor_role: GrantorRole::Patient as i32,
        version: 1,
        etag: "bench".into(),
        create_time: ts(1_700_000_000),
        update_time: ts(1_700_000_000),
        ..Default::default()
    }
}

fn rules_of(d: &ConsentDirective) -> ConsentDirective {
    ConsentDirective {
        decision: d.decision,
        scope_purposes: d.scope_purposes.clone(),
        period: d.period,
        provisions: d.provisions.clone(),
        ..Default::default()
    }
}

/// Loads `directives` directives over `patients` patients (every patient checked against the
/// national data opt-out just now, every 20th opted out) with
/// multi-row inserts in large transactions, then settles the database. The versions table is not
/// loaded: decisions never read it.
async fn load(db: &TestDatabase, directives: usize, patients: usize) -> Duration {
    let started = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .expect("connect for loading");
    let mut written = 0;
    while written < directives {
        let mut tx = pool.begin().await.expect("begin");
        let end = (written + ROWS_PER_TRANSACTION).min(directives);
        while written < end {
            let rows = written..(written + ROWS_PER_INSERT).min(end);
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO consent_directives \
                 (directive_id, patient_id, status, version, etag, create_time, update_time, body, rules) ",
            );
            insert.push_values(rows.clone(), |mut row, i| {
                let patient = patient_id(i % patients);
                let id = uuid::Uuid::from_u128(
                    0xd1ec_0000_0000_4000_8000_0000_0000_0000 | (i as u128) << 20,
                )
                .hyphenated()
                .to_string();
                let d = directive_for(&patient, i / patients + i, &id);
                let micros = 1_700_000_000_000_000 + i as i64;
                row.push_bind(id)
                    .push_bind(patient)
                    .push("2")
                    .push("1")
                    .push("'bench'")
                    .push_bind(micros)
                    .push_bind(micros)
                    .push_bind(d.encode_to_vec())
                    .push_bind(rules_of(&d).encode_to_vec());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .expect("insert directives");
            written = rows.end;
        }
        tx.commit().await.expect("commit");
        if written % 200_000 < ROWS_PER_TRANSACTION {
            eprintln!("  loaded {written} directives");
        }
    }
    // Every patient was checked against the national service just now, as in a deployment that
    // checks its population each month.
    let checked_at = carerecord_platform::db::now_micros();
    let mut tx = pool.begin().await.expect("begin");
    let everyone: Vec<usize> = (0..patients).collect();
    for rows in everyone.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO national_data_opt_outs \
             (patient_id, opted_out, version, etag, update_time, updated_by, check_time, \
             check_source) ",
        );
        insert.push_values(rows, |mut row, i| {
            row.push_bind(patient_id(*i))
                .push(if i % 20 == 0 { "1" } else { "0" })
                .push("1")
                .push("'bench'")
                .push_bind(checked_at)
                .push("''::bytea")
                .push_bind(checked_at)
                .push("'bench'");
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .expect("insert opt-outs");
    }
    tx.commit().await.expect("commit");
    pool.close().await;
    // The visibility map lets decisions read the covering index without visiting the heap.
    db.settle().await;
    started.elapsed()
}

/// A ConsentService that answers every Decide with a constant: the cost of gRPC alone.
struct Constant;

#[tonic::async_trait]
impl ConsentService for Constant {
    async fn decide(
        &self,
        request: tonic::Request<DecideRequest>,
    ) -> Result<tonic::Response<DecideResponse>, tonic::Status> {
        let patient_id = request.into_inner().patient_id;
        Ok(tonic::Response::new(DecideResponse {
            decision: Some(Decision {
                patient_id,
                outcome: DecisionOutcome::Permit as i32,
                policy_set_version: "constant".into(),
                ..Default::default()
            }),
        }))
    }

    async fn batch_decide(
        &self,
        request: tonic::Request<BatchDecideRequest>,
    ) -> Result<tonic::Response<BatchDecideResponse>, tonic::Status> {
        // A decision of the usual size per patient: the cost of moving 10,000 of them.
        let decisions = request
            .into_inner()
            .patient_ids
            .into_iter()
            .map(|patient_id| Decision {
                patient_id,
                outcome: DecisionOutcome::Deny as i32,
                reasons: vec![DecisionReason {
                    source: DecisionSource::PatientDirective as i32,
                    effect: DecisionOutcome::Deny as i32,
                    directive_id: "d1ec0000-0000-4000-8000-000000000000".into(),
                    directive_version: 1,
                    ..Default::default()
                }],
                policy_set_version: "sha256:0123456789abcdef".into(),
                decided_at: ts(1_700_000_000),
                ..Default::default()
            })
            .collect();
        Ok(tonic::Response::new(BatchDecideResponse { decisions }))
    }
}

/// The select BatchDecide makes, for `ids` in one statement.
const BATCH_SELECT: &str = "SELECT patient_id, directive_id, version, rules, CAST(0 AS BIGINT) \
     FROM consent_directives \
     WHERE status = 2 AND patient_id = ANY(string_to_array($1, ',')) \
     UNION ALL \
     SELECT patient_id, '', opted_out, NULL, check_time FROM national_data_opt_outs \
     WHERE patient_id = ANY(string_to_array($1, ','))";

/// The service's chunk size for BatchDecide (see service.rs).
const BATCH_CHUNK: usize = 1_000;

async fn batch_select(pool: &sqlx::AnyPool, ids: &[String]) -> usize {
    sqlx::query(BATCH_SELECT)
        .bind(ids.join(","))
        .fetch_all(pool)
        .await
        .expect("batch select")
        .len()
}

fn batch_request(ids: Vec<String>) -> BatchDecideRequest {
    BatchDecideRequest {
        patient_ids: ids,
        requester: Some(requester(0)),
        purpose_of_use: "HRESCH".into(),
        legal_basis: LegalBasis::ExplicitConsent as i32,
        study_id: "IRAS-7".into(),
        ..Default::default()
    }
}

fn requester(i: usize) -> Requester {
    Requester {
        user_id: format!("user-{}", i % 50),
        organisation_ods_code: ["RXA", "A81001", "X26", "RYJ"][i % 4].into(),
        role_code: ["R8000", "R8001", "R8003"][i % 3].into(),
        display_name: String::new(),
    }
}

fn decide_request(patient: String, i: usize) -> DecideRequest {
    let (purpose, study) = match i % 4 {
        0 | 1 => ("TREAT", ""),
        2 => ("HRESCH", "IRAS-7"),
        _ => ("HOPERAT", ""),
    };
    DecideRequest {
        patient_id: patient,
        requester: Some(requester(i)),
        purpose_of_use: purpose.into(),
        study_id: study.into(),
        legal_basis: if purpose == "HRESCH" {
            LegalBasis::ExplicitConsent as i32
        } else {
            0
        },
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:>8.1} µs", d.as_secs_f64() * 1e6)
}

struct Latencies {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarise(mut samples: Vec<Duration>) -> Latencies {
    samples.sort_unstable();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Latencies {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        mean,
    }
}

async fn sequential_decides(
    client: &mut ConsentServiceClient<Channel>,
    patients: usize,
    n: usize,
    seed: u64,
) -> Latencies {
    let mut rng = Rng(seed);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let request = decide_request(patient_id(rng.below(patients)), i);
        let started = Instant::now();
        let response = client.decide(request).await.expect("decide");
        samples.push(started.elapsed());
        std::hint::black_box(response);
    }
    summarise(samples)
}

/// The 1, 5 and 15 minute load averages (Linux), to judge how quiet the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

async fn connect(addr: std::net::SocketAddr) -> ConsentServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    ConsentServiceClient::new(channel)
}

fn main() {
    let Some(server_url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "decide bench: TEST_DATABASE_URL is not set; it needs PostgreSQL (make bench sets it). Skipped."
        );
        return;
    };
    let directives = scaled(1_000_000);
    let patients = (directives / 2).max(1);
    let requests = scaled(5_000).max(200);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_WORKERS)
        .enable_all()
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    println!(
        "consent decide bench: PostgreSQL, {directives} directives over {patients} patients (1 in 20 opted out)"
    );
    println!(
        "machine: {} CPUs; server runtime {SERVER_WORKERS} workers, load generator 1 thread (current-thread runtime), loopback gRPC",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("load average at start: {}", load_average());
    let db = client_rt
        .block_on(TestDatabase::postgres())
        .expect("TEST_DATABASE_URL is set");
    let url = db.url.clone();

    // The service (migrates the fresh database), then the data.
    let shutdown = CancellationToken::new();
    let pool_size = std::env::var("CARERECORD_DB_MAX_CONNECTIONS").ok();
    println!(
        "service pool: {} connections",
        pool_size.as_deref().unwrap_or("16 (default)")
    );
    let addr = server_rt.block_on(async {
        let mut env = vec![
            ("DATABASE_URL", url.as_str()),
            ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "warn"),
        ];
        if let Some(size) = &pool_size {
            env.push(("CARERECORD_DB_MAX_CONNECTIONS", size.as_str()));
        }
        let config = Config::from_env(&Env::from_pairs(env)).expect("config");
        let app = carerecord_platform::app::start::<Application>(config)
            .await
            .expect("build");
        let addr = app.local_addr();
        tokio::spawn(app.run(shutdown.clone()));
        addr
    });
    let load_time = client_rt.block_on(load(&db, directives, patients));
    println!(
        "loaded in {:.1} s ({:.0} directives/s)",
        load_time.as_secs_f64(),
        directives as f64 / load_time.as_secs_f64()
    );

    // Baseline 1: a constant gRPC answer on the same server runtime.
    let constant_addr = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let token = shutdown.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ConsentServiceServer::new(Constant))
                .serve_with_incoming_shutdown(incoming, async move { token.cancelled().await }),
        );
        addr
    });

    client_rt.block_on(async {
        let mut client = connect(addr).await;
        let mut constant = connect(constant_addr).await;

        // Warm up: connections, caches, the policy verdict cache.
        sequential_decides(&mut client, patients, 500, 1).await;
        sequential_decides(&mut constant, patients, 500, 1).await;

        let grpc_only = sequential_decides(&mut constant, patients, requests, 2).await;
        let single = sequential_decides(&mut client, patients, requests, 3).await;

        // Baseline 2: the bare indexed select Decide makes, on a pool of its own.
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("pool");
        let mut rng = Rng(4);
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            let rows = sqlx::query("SELECT directive_id, version, rules FROM consent_directives WHERE patient_id = $1 AND status = 2")
                .bind(patient_id(rng.below(patients)))
                .fetch_all(&pool)
                .await
                .expect("select");
            samples.push(started.elapsed());
            std::hint::black_box(rows);
        }
        let select = summarise(samples);

        // Throughput: IN_FLIGHT concurrent callers on one HTTP/2 connection each... sharing the channel.
        let total = requests * 4;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for w in 0..IN_FLIGHT {
            let mut c = client.clone();
            let next = next.clone();
            tasks.spawn(async move {
                let mut rng = Rng(100 + w as u64);
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    c.decide(decide_request(patient_id(rng.below(patients)), w)).await.expect("decide");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let throughput = total as f64 / started.elapsed().as_secs_f64();

        // BatchDecide of 10,000 patients, and its baselines on the same patients: the gRPC cost of
        // 10,000 constant decisions, and the select alone (sorted ids, as the service sends them).
        let batch_size = BATCH.min(patients);
        let runs = 8;
        let select_pool = AnyPoolOptions::new()
            .max_connections((batch_size.div_ceil(BATCH_CHUNK)) as u32)
            .connect(&url)
            .await
            .expect("pool");
        let mut batch_samples = Vec::new();
        let mut constant_samples = Vec::new();
        let mut one_statement = Vec::new();
        let mut chunked = Vec::new();
        let mut rng = Rng(5);
        for run in 0..runs + 1 {
            let ids: Vec<String> = (0..batch_size).map(|_| patient_id(rng.below(patients))).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();

            let started = Instant::now();
            let response = constant.batch_decide(batch_request(ids.clone())).await.expect("constant batch");
            let constant_elapsed = started.elapsed();
            std::hint::black_box(response);

            let started = Instant::now();
            let rows = batch_select(&select_pool, &sorted).await;
            let one_elapsed = started.elapsed();

            let started = Instant::now();
            let mut reads = tokio::task::JoinSet::new();
            for chunk in sorted.chunks(BATCH_CHUNK) {
                let (pool, chunk) = (select_pool.clone(), chunk.to_vec());
                reads.spawn(async move { batch_select(&pool, &chunk).await });
            }
            let mut chunk_rows = 0;
            while let Some(n) = reads.join_next().await {
                chunk_rows += n.expect("chunk");
            }
            let chunked_elapsed = started.elapsed();
            assert_eq!(rows, chunk_rows);

            let started = Instant::now();
            let response = client.batch_decide(batch_request(ids)).await.expect("batch");
            let elapsed = started.elapsed();
            assert_eq!(response.into_inner().decisions.len(), batch_size);
            if run > 0 {
                // The first run warms the cache of database pages.
                batch_samples.push(elapsed);
                constant_samples.push(constant_elapsed);
                one_statement.push(one_elapsed);
                chunked.push(chunked_elapsed);
            }
        }
        select_pool.close().await;
        let batch_max = batch_samples.iter().max().copied().unwrap_or_default();
        let batch = summarise(batch_samples);
        let constant_batch = summarise(constant_samples);
        let one_statement = summarise(one_statement);
        let chunked = summarise(chunked);

        // The platform rules for a context never seen before (Cedar, 8 cell classes), i.e. a cache miss.
        let policies = carerecord_consent::PlatformPolicies::embedded().expect("policies");
        let cold: Vec<Duration> = (0..2000)
            .map(|i| {
                let ctx = Context {
                    time: 0,
                    user_id: format!("cold-{i}"),
                    organisation_ods_code: "RXA".into(),
                    role_code: "R8000".into(),
        requester_is_patient: false,
                    purpose: Purpose::Hresch,
                    classes: DataClass::ALL.to_vec(),
                    legal_basis: CodesLegalBasis::ExplicitConsent,
                    study_id: Some("IRAS-7".into()),
                    break_glass: false,
                };
                let started = Instant::now();
                std::hint::black_box(policies.evaluate(&ctx).expect("evaluate"));
                started.elapsed()
            })
            .collect();
        let cold = summarise(cold);

        println!();
        println!("{:<44} {:>11} {:>11} {:>11}", "single Decide, 1 in flight", "p50", "p99", "mean");
        println!("{:<44} {} {} {}", "  baseline: gRPC constant answer", micros(grpc_only.p50), micros(grpc_only.p99), micros(grpc_only.mean));
        println!("{:<44} {} {} {}", "  baseline: bare indexed select (sqlx)", micros(select.p50), micros(select.p99), micros(select.mean));
        println!("{:<44} {} {} {}", "  Decide (gRPC + select + policy + eval)", micros(single.p50), micros(single.p99), micros(single.mean));
        println!("{:<44} {} {} {}", "  (Cedar rules for an uncached context)", micros(cold.p50), micros(cold.p99), micros(cold.mean));
        println!(
            "  Decide p99 / (gRPC p99 + select p99) = {:.2}; target p99 < 2 ms: {}",
            single.p99.as_secs_f64() / (grpc_only.p99 + select.p99).as_secs_f64(),
            if single.p99 < Duration::from_millis(2) { "MET" } else { "MISSED" }
        );
        println!("Decide throughput, {IN_FLIGHT} in flight: {throughput:.0} decisions/s ({total} calls)");
        let ms = |d: Duration| format!("{:>8.1} ms", d.as_secs_f64() * 1e3);
        println!();
        println!("{:<44} {:>11} {:>11} {:>11}", format!("BatchDecide of {batch_size} patients, {runs} runs"), "p50", "p99", "mean");
        println!("{:<44} {} {} {}", "  baseline: gRPC constant answers", ms(constant_batch.p50), ms(constant_batch.p99), ms(constant_batch.mean));
        println!("{:<44} {} {} {}", "  baseline: the select, one statement", ms(one_statement.p50), ms(one_statement.p99), ms(one_statement.mean));
        println!("{:<44} {} {} {}", format!("  baseline: the select, chunks of {BATCH_CHUNK} at once"), ms(chunked.p50), ms(chunked.p99), ms(chunked.mean));
        println!("{:<44} {} {} {}", "  BatchDecide (gRPC + chunked select + eval)", ms(batch.p50), ms(batch.p99), ms(batch.mean));
        println!(
            "  BatchDecide p50 / (constant p50 + chunked select p50) = {:.2}; one statement / chunked select = {:.2}; max {:.1} ms; target < 100 ms: {}",
            batch.p50.as_secs_f64() / (constant_batch.p50 + chunked.p50).as_secs_f64(),
            one_statement.p50.as_secs_f64() / chunked.p50.as_secs_f64(),
            batch_max.as_secs_f64() * 1e3,
            if batch.p50 < Duration::from_millis(100) { "MET" } else { "MISSED" }
        );
        println!(
            "load average at end: {} (other work on the machine inflates the tails)",
            load_average()
        );
        pool.close().await;
    });
    shutdown.cancel();
    drop(server_rt);

    // Drop the bench database (it holds ~0.5 GB at full scale).
    client_rt.block_on(async {
        use sqlx::Connection;
        let name = url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&server_url).await {
            let _ = conn
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    });
}
