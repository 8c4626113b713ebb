//! Scale: a synthetic UK-style population registered through BatchCreatePatients, then match
//! and resolve latency and throughput at 16 concurrent clients.
//!
//! Sizes scale with `CARERECORD_BENCH_SCALE` (1.0 = 1,000,000 patients). Uses the PostgreSQL
//! server in `TEST_DATABASE_URL` (a fresh database), else SQLite. Baseline measured in the same
//! run: GetPatient (one primary-key read) under the same load.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::common::v1::Identifier;
use carerecord_contracts::identity::v1::*;
use carerecord_synthetic::{Generated, Generator};

const CLIENTS: usize = 16;
const SERVER_WORKERS: usize = 2;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Load {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Load {
    fn report(&self, name: &str) -> (f64, f64) {
        let mut l = self.latencies.clone();
        l.sort();
        let rate = l.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<22} {:>7} calls {:>8.0}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
            l.len(),
            rate,
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.9)),
            ms(percentile(&l, 0.99)),
            ms(percentile(&l, 1.0)),
        );
        (rate, ms(percentile(&l, 0.99)))
    }
}

/// Runs `calls` requests from `CLIENTS` concurrent clients as fast as they are answered, each
/// call built by `make(i)`.
async fn load<F, Fut>(client: &common::Client, calls: usize, make: F) -> Load
where
    F: Fn(common::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    paced(client, calls, CLIENTS, None, make).await
}

/// Runs `calls` requests from `clients` concurrent clients; with `rate`, call `i` is not sent
/// before `i / rate` seconds after the start (an offered load), else as fast as answered.
async fn paced<F, Fut>(
    client: &common::Client,
    calls: usize,
    clients: usize,
    rate: Option<f64>,
    make: F,
) -> Load
where
    F: Fn(common::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, next, client) = (make.clone(), next.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                if let Some(rate) = rate {
                    tokio::time::sleep_until(
                        (started + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let t = Instant::now();
                make(client.clone(), i).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    Load {
        latencies,
        elapsed: started.elapsed(),
    }
}

fn main() {
    let scale = carerecord_platform::testing::bench_scale();
    let n = ((1_000_000.0 * scale) as usize).max(2_000);
    let probes = ((20_000.0 * scale) as usize).clamp(1_000, 20_000);
    let mut server = common::Server::start(SERVER_WORKERS);
    println!(
        "scale: {n} patients (CARERECORD_BENCH_SCALE={scale}) on {}; server runtime {SERVER_WORKERS} workers, load generator 1 thread with {CLIENTS} concurrent clients; machine: {} cores",
        server.backend,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let population = runtime.block_on(async {
        let client = server.client().await;
        let t = Instant::now();
        let population: Arc<Vec<Generated>> = Arc::new(Generator::new(2024).population(n, 0.1));
        let duplicates = population.iter().filter(|g| g.duplicate_of.is_some()).count();
        println!("generated {n} patients ({duplicates} noisy duplicates) in {:.1}s (not timed below)", t.elapsed().as_secs_f64());

        // Bulk registration: batches of 1000, four in flight.
        let batches = n.div_ceil(1000);
        let ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::new(std::sync::Mutex::new(vec![String::new(); n]));
        let started = Instant::now();
        let registered = {
            let (population, ids) = (population.clone(), ids.clone());
            let mut in_flight = Vec::new();
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for _ in 0..4 {
                let (population, ids, next, mut client) = (population.clone(), ids.clone(), next.clone(), client.clone());
                in_flight.push(tokio::spawn(async move {
                    let mut ok = 0usize;
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= batches {
                            break ok;
                        }
                        let range = b * 1000..((b + 1) * 1000).min(population.len());
                        let batch = population[range.clone()].iter().map(|g| &g.patient);
                        let results = common::batch_create(&mut client, batch).await;
                        let mut ids = ids.lock().expect("ids");
                        for (i, r) in range.zip(results) {
                            if let Some(batch_create_patients_result::Outcome::Patient(p)) = r.outcome {
                                ids[i] = p.patient_id;
                                ok += 1;
                            }
                        }
                    }
                }));
            }
            let mut total = 0;
            for t in in_flight {
                total += t.await.expect("registration task");
            }
            total
        };
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "bulk registration: {registered} of {n} patients in {elapsed:.1}s = {:.0} patients/s (target >= 5000/s)",
            registered as f64 / elapsed
        );

        let started = Instant::now();
        server.settle().await;
        println!("VACUUM ANALYZE after the load (as autovacuum would leave it): {:.1}s", started.elapsed().as_secs_f64());

        common::estimate(
            &mut client.clone(),
            EstimateMatchParametersRequest {
                max_random_pairs: 500_000,
                max_blocked_pairs: 2_000_000,
                random_seed: 7,
                ..Default::default()
            },
        )
        .await;

        let ids: Arc<Vec<String>> = Arc::new(ids.lock().expect("ids").clone());
        // Probes: every other probe a noisy duplicate's demographics, else an original's.
        let dup_idx: Arc<Vec<usize>> = Arc::new(population.iter().enumerate().filter(|(_, g)| g.duplicate_of.is_some()).map(|(i, _)| i).collect());
        let spread = |i: usize, len: usize| i.wrapping_mul(2_654_435_761) % len.max(1);

        // Warm-up (caches, connections), not measured.
        let (p, d) = (population.clone(), dup_idx.clone());
        load(&client, 500, move |mut c, i| {
            let probe = p[d[spread(i, d.len())]].patient.clone();
            async move {
                c.match_patients(MatchPatientsRequest { probe: Some(match_patients_request::Probe::Demographics(probe)), ..Default::default() }).await.expect("match");
            }
        })
        .await;

        let ids_for_get = ids.clone();
        let get = load(&client, probes, move |mut c, i| {
            let id = ids_for_get[spread(i, ids_for_get.len())].clone();
            async move {
                c.get_patient(GetPatientRequest { patient_id: id }).await.expect("get");
            }
        })
        .await;
        let (p, d) = (population.clone(), dup_idx.clone());
        let matched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let m2 = matched.clone();
        let with_original = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w2 = with_original.clone();
        let ids_m = ids.clone();
        let compared = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c2 = compared.clone();
        let matching = load(&client, probes, move |mut c, i| {
            let index = if i % 2 == 0 { d[spread(i, d.len())] } else { spread(i, p.len()) };
            let probe = p[index].patient.clone();
            let want = p[index].duplicate_of.map(|o| ids_m[o].clone());
            let m2 = m2.clone();
            let c2 = c2.clone();
            if want.is_some() {
                w2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            async move {
                let r = c
                    .match_patients(MatchPatientsRequest { probe: Some(match_patients_request::Probe::Demographics(probe)), ..Default::default() })
                    .await
                    .expect("match")
                    .into_inner();
                c2.fetch_add(r.pairs_compared as usize, std::sync::atomic::Ordering::Relaxed);
                if let Some(want) = want
                    && r.candidates.iter().any(|c| c.patient.as_ref().is_some_and(|p| p.patient_id == want))
                {
                    m2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
        .await;
        // Matches at an offered 500/s from 16 clients: the latency the target is about.
        let (p, d) = (population.clone(), dup_idx.clone());
        let matching_500 = paced(&client, probes.min(10_000), CLIENTS, Some(500.0), move |mut c, i| {
            let index = if i % 2 == 0 { d[spread(i, d.len())] } else { spread(i, p.len()) };
            let probe = p[index].patient.clone();
            async move {
                c.match_patients(MatchPatientsRequest { probe: Some(match_patients_request::Probe::Demographics(probe)), ..Default::default() })
                    .await
                    .expect("match");
            }
        })
        .await;
        let p = population.clone();
        let resolve_one = paced(&client, probes.min(5_000), 1, None, move |mut c, i| {
            let mrn = p[spread(i, p.len())].patient.identifiers[0].clone();
            async move {
                c.resolve_identifier(ResolveIdentifierRequest { identifier: Some(Identifier { system: mrn.system, value: mrn.value }) })
                    .await
                    .expect("resolve");
            }
        })
        .await;
        let p = population.clone();
        let resolve = load(&client, probes, move |mut c, i| {
            let index = spread(i, p.len());
            let mrn = p[index].patient.identifiers[0].clone();
            async move {
                c.resolve_identifier(ResolveIdentifierRequest { identifier: Some(Identifier { system: mrn.system, value: mrn.value }) })
                    .await
                    .expect("resolve");
            }
        })
        .await;
                println!("\n{:<22} {:>13} {:>10} {:>15} {:>15} {:>15} {:>15}", "call", "", "throughput", "", "", "", "");
        let (get_rate, get_p99) = get.report("GetPatient (baseline)");
        let (match_rate, match_p99) = matching.report("MatchPatients (max)");
        let (_, match_500_p99) = matching_500.report("MatchPatients @500/s");
        let (_, resolve_p99) = resolve.report("ResolveIdentifier");
        let (_, resolve_one_p99) = resolve_one.report("Resolve (1 client)");
        println!(
            "\nmatch: saturated by 16 clients {match_rate:.0}/s (target >= 500) with p99 {match_p99:.2} ms; at an offered 500/s from 16 clients p99 {match_500_p99:.2} ms (target < 25); {:.1}x the baseline's p99, {:.2}x its throughput",
            match_p99 / get_p99.max(1e-9),
            match_rate / get_rate.max(1e-9)
        );
        println!(
            "match probes that were duplicates found their original among the candidates: {} of {}",
            matched.load(std::sync::atomic::Ordering::Relaxed),
            with_original.load(std::sync::atomic::Ordering::Relaxed)
        );
        println!(
            "candidates compared per match (blocking): {:.1} on average",
            compared.load(std::sync::atomic::Ordering::Relaxed) as f64 / probes as f64
        );
        println!("resolve: p99 {resolve_one_p99:.2} ms from one client (target < 3), {resolve_p99:.2} ms saturated by 16 clients");
        // As a release that changes the blocking keys finds the index (see BLOCKING_SCHEME).
        server.execute("UPDATE blocking_scheme SET version = 0").await;
        population
    });
    let took = server.restart(SERVER_WORKERS);
    println!(
        "start-up that rebuilds the blocking keys of {n} patients (an upgrade that changes them): {:.1}s",
        took.as_secs_f64()
    );
    runtime.block_on(async {
        // Matching finds registered patients through the rebuilt keys.
        let mut client = server.client().await;
        let found = client
            .match_patients(MatchPatientsRequest {
                probe: Some(match_patients_request::Probe::Demographics(
                    population[0].patient.clone(),
                )),
                ..Default::default()
            })
            .await
            .expect("match after the rebuild")
            .into_inner();
        assert!(
            found.pairs_compared > 0 && !found.candidates.is_empty(),
            "a registered patient is found after the rebuild"
        );
    });
}
