//! Replicas: two instances of every module on one PostgreSQL, each its own process (the service
//! binaries), as a deployment's horizontal autoscalers run them. Each module's two instances share
//! its database and `CARERECORD_TOKEN_SECRET`; data access reaches each module through a TCP
//! balancer in front of its instances, as a Kubernetes Service would; the test's clients are spread
//! over the instances and move to the other one when theirs fails.
//!
//! A mixed load runs for a bounded time (reads, contributions and imports through data access,
//! identity matches, consent decisions, a FollowRecordChanges watcher through data access and a
//! WatchRecordChanges watcher on record hosting), and halfway through one instance of every module
//! is killed with SIGKILL. Afterwards: the audit log is one gap-free Merkle log that verifies
//! offline, every acknowledged write is stored exactly once (by request_id), every read the clients
//! received has its audit entry, and both watchers, reconnecting with their last cursor to the
//! surviving instance, saw every change.
//!
//! `CARERECORD_TEST_REPLICAS_SECONDS` sets how long the load runs (default 4; the kills come at
//! half time). The test needs PostgreSQL (`TEST_DATABASE_URL`, which CI always sets): SQLite is an
//! embedded database that replicas in separate processes cannot share, so without it the test
//! says so and checks nothing.

mod checks;
mod cluster;
mod load;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use checks::{RECORDS_STORED, assert_gap_free, assert_stored_once, verified_audit_log};
pub(crate) use cluster::{Cluster, Module};
pub(crate) use load::{
    Caller, Shared, clinician, create_patient, demographics, front_door_load, load_seconds,
    register, until_stopped,
};
use load::{Seen, decider, follower, matcher, missing_after_wait, record_watcher, with};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_of_every_module_lose_nothing_when_one_of_each_is_killed() {
    let Some(mut cluster) = Cluster::start(2).await else {
        eprintln!(
            "replicas: TEST_DATABASE_URL is unset; replicas of a module need one PostgreSQL \
             database to share (SQLite is embedded in one process), so nothing was checked"
        );
        return;
    };
    let started = Instant::now();
    let tally = Shared::default();
    let [identity, records, consent, access] = Module::ALL.map(|m| cluster.channels(m));
    let registered = Arc::new(register(&identity, 8, &tally).await);
    let patients: Arc<Vec<String>> =
        Arc::new(registered.iter().map(|(id, _)| id.clone()).collect());

    let stop = CancellationToken::new();
    let watching = CancellationToken::new();
    let (watched, followed) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    // The watchers start on the instances that will be killed.
    let watchers = [
        record_watcher(records.clone(), 1, watched.clone(), &watching),
        follower(
            access.clone(),
            patients.clone(),
            1,
            followed.clone(),
            &watching,
        ),
    ];
    let mut load = front_door_load(&access, &patients, &tally, &stop);
    load.push(matcher(
        Caller::new(&identity, 0, &tally),
        registered.clone(),
        &stop,
    ));
    load.push(decider(
        Caller::new(&consent, 1, &tally),
        patients.clone(),
        &stop,
    ));

    let seconds = load_seconds("CARERECORD_TEST_REPLICAS_SECONDS", 4.0);
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    // One instance of each module, not all the same index, so each survivor loses a peer.
    let killed = [
        (Module::Identity, 0),
        (Module::Records, 1),
        (Module::Consent, 0),
        (Module::Access, 1),
    ];
    for (module, replica) in killed {
        cluster.kill(module, replica).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    stop.cancel();
    for worker in load {
        worker.await.expect("a load worker failed");
    }
    let load_ended = started.elapsed();

    with(&tally, |t| {
        let counts = [t.reads, t.creates, t.imported, t.matches, t.decisions];
        assert!(
            counts.iter().all(|c| *c > 0),
            "every kind of call was answered: {counts:?}"
        );
    });
    let acknowledged = with(&tally, |t| t.contributions.clone());
    let expected: HashSet<(String, i64)> =
        acknowledged.values().map(|id| (id.clone(), 1)).collect();
    let missing_watched = missing_after_wait(&watched, &expected).await;
    let missing_followed = missing_after_wait(&followed, &expected).await;
    watching.cancel();
    for watcher in watchers {
        watcher.await.expect("a watcher failed");
    }
    for (watcher, missing) in [
        ("WatchRecordChanges", &missing_watched),
        ("FollowRecordChanges", &missing_followed),
    ] {
        assert!(
            missing.is_empty(),
            "{watcher} missed {} of {} changes: {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
    }

    let survivors = vec![access[0].clone()];
    let log = verified_audit_log(&survivors, &tally).await;
    assert_gap_free(cluster.database_url(Module::Access)).await;
    let audited = with(&tally, |t| t.audited.clone());
    let unaudited: Vec<&String> = audited.iter().filter(|id| !log.contains(*id)).collect();
    assert!(
        unaudited.is_empty(),
        "answers without their audit entry: {unaudited:?}"
    );
    let (by_request, total) = RECORDS_STORED;
    let records_database = cluster.database_url(Module::Records);
    assert_stored_once(records_database, by_request, total, &acknowledged).await;

    let running = cluster.process_ids().iter().filter(|p| p.is_some()).count();
    assert_eq!(running, 4, "one instance of each module still runs");
    let (watched, followed) = (watched.lock().unwrap(), followed.lock().unwrap());
    with(&tally, |t| {
        eprintln!(
            "replicas: {seconds} s of load (ended after {:.1} s), 4 of 8 instances killed with \
             SIGKILL at half time; acknowledged and verified: {} reads, {} creates, {} imported \
             items, {} matches, {} decisions; {} contributions stored once; {} audit entries \
             verified offline, {} answers' entries found; retried: {:?} (first: {:?}); WatchRecordChanges saw \
             {} changes ({} deliveries, {} reconnects), FollowRecordChanges {} ({} deliveries, \
             {} reconnects)",
            load_ended.as_secs_f64(),
            t.reads,
            t.creates,
            t.imported,
            t.matches,
            t.decisions,
            acknowledged.len(),
            log.len(),
            audited.len(),
            t.retried,
            t.retried_first,
            watched.changes.len(),
            watched.deliveries,
            watched.reconnects,
            followed.changes.len(),
            followed.deliveries,
            followed.reconnects,
        )
    });
}
