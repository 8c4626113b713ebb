//! What the four-service benchmarks share: load generators (closed loop at a number of clients,
//! open loop at an offered rate, two ways compared in alternating rounds), their statistics,
//! connections, and the patients they load.

// Each bench uses part of this module.
#![allow(dead_code)]

pub mod cpu;
pub mod perf;
pub mod spans;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::common::v1::Requester;
use carerecord_e2e::{Overrides, Platform};
use carerecord_platform::db::Backend;
use futures::StreamExt;
use tonic::transport::Channel;

use cpu::{CpuMeter, Spent};
use spans::{SpanTimes, Totals};

/// The services' runtime: `workers` threads named [`cpu::SERVICES`].
pub fn services_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(cpu::SERVICES)
        .enable_all()
        .build()
        .expect("services runtime")
}

/// Where the benches keep their data: PostgreSQL at TEST_DATABASE_URL when it is set (and its
/// URL), else SQLite.
pub fn database() -> (Backend, Option<String>) {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let backend = if url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    (backend, url)
}

/// The services' runtime (two workers), the load generator's, and the whole platform on
/// `backend` started on the former, each service's database pool `pool` connections large.
pub fn start_platform(
    backend: Backend,
    pool: u32,
) -> (tokio::runtime::Runtime, tokio::runtime::Runtime, Platform) {
    let services = services_runtime(2);
    let settings = [("CARERECORD_DB_MAX_CONNECTIONS".to_owned(), pool.to_string())];
    let platform = services.block_on(Platform::start_with(
        backend,
        Overrides::default(),
        &settings,
    ));
    (services, load_runtime(), platform)
}

/// The load generator's runtime: one thread named [`cpu::LOAD`].
pub fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(cpu::LOAD)
        .enable_all()
        .build()
        .expect("load runtime")
}

/// The machine's load average, as `/proc/loadavg` gives it (1, 5 and 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn pool_size() -> u32 {
    std::env::var("CARERECORD_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &u32| *n > 0)
        .unwrap_or(16)
}

/// A registered patient.
pub struct Patient {
    pub id: String,
    pub nhs_number: String,
}

/// Concurrent calls while loading a bench's data.
pub const LOADERS: usize = 16;

/// Registers `count` patients, [`LOADERS`] at a time; `name(i)` is patient i's given and family
/// name.
pub async fn register_patients(
    platform: &Platform,
    count: usize,
    name: impl Fn(usize) -> (String, String),
) -> Vec<Patient> {
    futures::stream::iter(0..count)
        .map(|i| {
            let (given, family) = name(i);
            async move {
                let (id, nhs_number) = platform.register_patient(&given, &family).await;
                Patient { id, nhs_number }
            }
        })
        .buffered(LOADERS)
        .collect()
        .await
}

/// Who loads the benches' data directly into the modules.
pub fn loader() -> Requester {
    Requester {
        user_id: "bench-loader".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

/// The calls of one or more timed runs.
#[derive(Default)]
pub struct Stats {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub elapsed: Duration,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    pub fn line(&self) -> String {
        format!(
            "{} calls ({} failed) in {:.1?}: {:.0}/s, p50 {:.2?}, p99 {:.2?}",
            self.latencies.len(),
            self.errors,
            self.elapsed,
            self.per_second(),
            self.quantile(0.50),
            self.p99()
        )
    }
}

/// Runs `clients` loops of `call` for `duration`; `call` answers whether the call succeeded.
pub async fn load<F, Fut>(clients: usize, duration: Duration, call: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                // Clients start at different patients and stride through them.
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !call(i).await {
                        errors += 1;
                    }
                    latencies.push(t.elapsed());
                    i += clients;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        let (latencies, errors) = task.await.expect("client task");
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats
}

pub async fn connect(endpoint: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

/// Offers `call` at `rate` calls per second for `duration`, whatever the calls' progress (open
/// loop): each call starts at its scheduled instant, and its latency counts from that instant, so
/// queueing behind slow calls is measured rather than hidden (coordinated omission).
pub async fn offer<F, Fut>(rate: f64, duration: Duration, call: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let start = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let ok = call(i).await;
            (scheduled.elapsed(), ok)
        }));
    }
    let mut stats = Stats::default();
    for task in tasks {
        let (latency, ok) = task.await.expect("call task");
        stats.latencies.push(latency);
        stats.errors += usize::from(!ok);
    }
    stats.elapsed = start.elapsed();
    stats
}

/// A phase's calls, the CPU they cost, and (with `CARERECORD_BENCH_SPANS=1`) their hops.
#[derive(Default)]
pub struct Phase {
    pub stats: Stats,
    pub cpu: Spent,
    pub spans: BTreeMap<String, Totals>,
}

impl Phase {
    pub fn merge(&mut self, other: Phase) {
        self.stats.merge(other.stats);
        self.cpu.add(&other.cpu);
        for (key, totals) in other.spans {
            self.spans.entry(key).or_default().add(&totals);
        }
    }

    pub fn print(&self, name: &str) {
        let calls = self.stats.latencies.len();
        println!("{name}: {}", self.stats.line());
        println!("  {}", self.cpu.per_call(calls));
        for (key, totals) in &self.spans {
            println!("    {key}: {}", totals.line(calls));
        }
    }
}

/// Runs `run` as the phase `name` (see `perf.rs`), measuring the CPU it costs and the spans it
/// records.
pub async fn measured<F: std::future::Future<Output = Stats>>(
    name: &str,
    meter: &CpuMeter,
    spans: Option<&SpanTimes>,
    run: F,
) -> Phase {
    if let Some(spans) = spans {
        spans.take();
    }
    let before = meter.snapshot().await;
    perf::enter(name);
    let stats = run.await;
    perf::leave(name);
    let cpu = meter.since(&before).await;
    Phase {
        spans: spans.map(SpanTimes::take).unwrap_or_default(),
        stats,
        cpu,
    }
}

/// Two ways of making a call compared: `rounds` alternating rounds of each at `clients` clients,
/// `duration` in all for each, so other work on the machine weighs on both alike. Each is measured
/// as the phase its name gives.
pub async fn alternating<A, AFut, B, BFut>(
    rounds: u32,
    clients: usize,
    duration: Duration,
    meter: &CpuMeter,
    spans: Option<&SpanTimes>,
    (a_name, a): (&str, A),
    (b_name, b): (&str, B),
) -> (Phase, Phase)
where
    A: Fn(usize) -> AFut + Clone + Send + Sync + 'static,
    AFut: std::future::Future<Output = bool> + Send,
    B: Fn(usize) -> BFut + Clone + Send + Sync + 'static,
    BFut: std::future::Future<Output = bool> + Send,
{
    let (mut first, mut second) = (Phase::default(), Phase::default());
    for _ in 0..rounds {
        let round = load(clients, duration / rounds, a.clone());
        first.merge(measured(a_name, meter, spans, round).await);
        let round = load(clients, duration / rounds, b.clone());
        second.merge(measured(b_name, meter, spans, round).await);
    }
    (first, second)
}
