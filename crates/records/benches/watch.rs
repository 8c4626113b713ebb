//! Live change feed watchers at scale against PostgreSQL: many filtered WatchRecordChanges streams
//! on one replica while creates arrive open-loop at a fixed rate.
//!
//! Each watcher follows its own few patients; every write is to one of them, so each write is one
//! event for exactly one watcher. Reported: event delivery latency (the event's change_time, set
//! by the server just before the commit, to its arrival at the watcher) p50/p99/max, events
//! delivered against events expected, and the database transactions per second that the watchers
//! add: `pg_stat_database.xact_commit` of the bench database (every statement outside an explicit
//! transaction is one) with the watchers, minus the same writes without them, each counted over
//! the writes and the statistics flush after them.
//!
//! `CARERECORD_BENCH_SCALE` (default 1.0) scales the phase durations; `CARERECORD_BENCH_WATCHERS`
//! (default 100) and `CARERECORD_BENCH_WRITES` (writes per second, default 1000) the load.
//! Needs TEST_DATABASE_URL (PostgreSQL).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, Record, RecordView, WatchRecordChangesRequest,
};
use carerecord_platform::db::Database;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const PATIENTS_PER_WATCHER: usize = 3;
/// Watchers that ask for the full view (payloads); the others ask for metadata.
const FULL_VIEW_EVERY: usize = 5;

fn record(patient_id: &str) -> Record {
    Record {
        patient_id: patient_id.to_owned(),
        resource_type: "Observation".into(),
        content_type: "application/fhir+json".into(),
        payload: format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"434912009"}}]}},"subject":{{"reference":"Patient/{patient_id}"}},"valueQuantity":{{"value":5.4,"unit":"mmol/L"}}}}"#
        )
        .into_bytes(),
        authoring_organisation_ods_code: "RR8".into(),
        source_system: "cgm-feed".into(),
        ..Default::default()
    }
}

fn requester() -> Requester {
    Requester {
        user_id: "cgm-feed".into(),
        organisation_ods_code: "RR8".into(),
        ..Default::default()
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Transactions committed in the bench database so far, and when they were counted.
async fn transactions(db: &Database) -> (i64, Instant) {
    // The statistics are flushed by each backend within a second or so of its work.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let count = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    (count, Instant::now())
}

/// Transactions per second between two counts.
fn per_second(from: (i64, Instant), to: (i64, Instant)) -> f64 {
    (to.0 - from.0) as f64 / to.1.duration_since(from.1).as_secs_f64()
}

/// Creates at `rate` per second, open-loop (each sent on schedule whatever the previous ones do),
/// for `duration`, each for a patient picked in turn. Returns how many were acknowledged.
async fn write(
    clients: &[common::Client],
    patients: &[String],
    rate: usize,
    duration: Duration,
) -> usize {
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut calls = Vec::new();
    let mut n = 0;
    while start.elapsed() < duration {
        tick.tick().await;
        let mut client = clients[n % clients.len()].clone();
        let request = CreateRecordRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            record: Some(record(&patients[(n * 7919) % patients.len()])),
            requester: Some(requester()),
        };
        let acknowledged = acknowledged.clone();
        calls.push(tokio::spawn(async move {
            if client.create_record(request).await.is_ok() {
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }));
        n += 1;
    }
    for call in calls {
        call.await.unwrap();
    }
    acknowledged.load(Ordering::Relaxed)
}

fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn main() {
    if !common::have_postgres("watch") {
        return;
    }
    let scale = carerecord_platform::testing::bench_scale();
    let phase = Duration::from_secs_f64(10.0 * scale);
    let watchers = env_usize("CARERECORD_BENCH_WATCHERS", 100);
    let rate = env_usize("CARERECORD_BENCH_WRITES", 1000);
    let (server, generator) = common::runtimes();
    println!(
        "watch bench: PostgreSQL, 2 cores; server runtime 1 worker; {watchers} watchers of {PATIENTS_PER_WATCHER} patients each (1 in {FULL_VIEW_EVERY} full view, the others metadata); {rate} creates/s open-loop; phases of {:.1} s (CARERECORD_BENCH_SCALE={scale})",
        phase.as_secs_f64()
    );
    let shutdown = CancellationToken::new();
    let (db, addr) = server.block_on(async {
        let (db, service) = common::service(&shutdown).await;
        let addr = common::serve(service, shutdown.clone()).await;
        (db, addr)
    });
    generator.block_on(async {
        let clients = common::clients(addr).await;
        let patients: Vec<Vec<String>> = (0..watchers)
            .map(|_| {
                (0..PATIENTS_PER_WATCHER)
                    .map(|_| uuid::Uuid::new_v4().to_string())
                    .collect()
            })
            .collect();
        let all: Vec<String> = patients.iter().flatten().cloned().collect();

        // Writes alone: the database transactions they cost.
        write(&clients, &all, rate, phase / 5).await; // warm-up
        let before = transactions(&db).await;
        let start = Instant::now();
        let written = write(&clients, &all, rate, phase).await;
        let elapsed = start.elapsed().as_secs_f64();
        let writes_only = per_second(before, transactions(&db).await);
        println!(
            "  writes alone: {:.0} creates/s acknowledged; database {writes_only:.0} transactions/s",
            written as f64 / elapsed
        );

        // The watchers, from the head, each until it says it has caught up.
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let delivered = Arc::new(AtomicUsize::new(0));
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let mut streams = Vec::new();
        for (i, own) in patients.iter().enumerate() {
            let mut client = clients[i % clients.len()].clone();
            let view = if i % FULL_VIEW_EVERY == 0 {
                RecordView::Full
            } else {
                RecordView::Metadata
            };
            let request = WatchRecordChangesRequest {
                start_at_head: true,
                patient_ids: own.clone(),
                view: view as i32,
                ..Default::default()
            };
            let mut stream = client
                .watch_record_changes(request)
                .await
                .unwrap()
                .into_inner();
            loop {
                let message = stream.message().await.unwrap().unwrap();
                if message.caught_up {
                    break;
                }
            }
            let (latencies, delivered, measuring, stop) = (
                latencies.clone(),
                delivered.clone(),
                measuring.clone(),
                stop.clone(),
            );
            streams.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        () = stop.cancelled() => break,
                    };
                    let Ok(Some(message)) = message else { break };
                    let now = micros_now();
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    for change in &message.changes {
                        let at = change.change_time.as_ref().unwrap();
                        let committed = at.seconds * 1_000_000 + i64::from(at.nanos) / 1000;
                        mine.push(Duration::from_micros((now - committed).max(0) as u64));
                    }
                    delivered.fetch_add(message.changes.len(), Ordering::Relaxed);
                }
                latencies.lock().await.extend(mine);
            }));
        }
        write(&clients, &all, rate, phase / 5).await; // warm-up with watchers
        tokio::time::sleep(Duration::from_secs(1)).await;
        measuring.store(true, Ordering::Relaxed);
        let before = transactions(&db).await;
        let start = Instant::now();
        let written = write(&clients, &all, rate, phase).await;
        let elapsed = start.elapsed().as_secs_f64();
        // Transactions are counted over the writes and the flush after them, as without watchers.
        let with_watchers = per_second(before, transactions(&db).await);
        let settle = Instant::now();
        while delivered.load(Ordering::Relaxed) < written && settle.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        measuring.store(false, Ordering::Relaxed);
        stop.cancel();
        for stream in streams {
            stream.await.unwrap();
        }
        let mut latencies = std::mem::take(&mut *latencies.lock().await);
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "  with {watchers} watchers: {:.0} creates/s acknowledged; {} of {written} events delivered; delivery latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            written as f64 / elapsed,
            delivered.load(Ordering::Relaxed),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        println!(
            "  database {with_watchers:.0} transactions/s, of which the watchers' {:.0}/s",
            with_watchers - writes_only
        );
    });
    shutdown.cancel();
}
