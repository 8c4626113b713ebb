//! WatchRecordChanges under concurrent writes: many watchers at once, filtered or not, live or
//! replaying history, each seeing exactly its events, once each, in commit order.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use carerecord_contracts::records::v1::{
    ImportRecordsRequest, Record, RecordChange, RecordView, WatchRecordChangesRequest,
    WatchRecordChangesResponse,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::codec::Streaming;

use super::import::{first, import, item};
use super::support::{create, new_record, new_record_of, relabel, retract};
use super::watch::{open, read_until_caught_up, strictly_increasing};
use crate::harness::{Ctx, Fail, TestResult, describe, ensure, ensure_eq, fail};

/// Patients written to, split among the writers.
const PATIENTS: usize = 12;
/// Tasks writing at the same time.
const WRITERS: usize = 4;
/// Items of the import running alongside the writers.
const IMPORTED: usize = 150;
/// How long a watcher that has every change it expects keeps listening for one too many.
const QUIET: Duration = Duration::from_millis(300);
/// Longest a watcher waits for a message while changes it expects are outstanding.
const STALL: Duration = Duration::from_secs(30);

/// One write of the workload: the record version it produced, and its patient.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Write {
    record_id: String,
    version: i64,
    patient_id: String,
}

/// What a watcher asks for and which changes it counts as the workload's.
struct Watcher {
    name: String,
    /// The patients whose changes it counts.
    patients: HashSet<String>,
    /// Whether it asks the server for those patients only (every change must then be theirs).
    filtered: bool,
    view: RecordView,
}

impl Watcher {
    fn new(name: String, patients: &[String], filtered: bool, view: RecordView) -> Self {
        Watcher {
            name,
            patients: patients.iter().cloned().collect(),
            filtered,
            view,
        }
    }

    fn request(&self, start_at_head: bool) -> WatchRecordChangesRequest {
        WatchRecordChangesRequest {
            start_at_head,
            patient_ids: if self.filtered {
                self.patients.iter().cloned().collect()
            } else {
                Vec::new()
            },
            view: self.view as i32,
            ..Default::default()
        }
    }
}

/// The workload's writes, once they are all acknowledged.
type Target = watch::Receiver<Option<Arc<Vec<Write>>>>;

/// Reads a watcher's stream until it has every change of its patients the workload wrote, then
/// listens a little longer for one too many. Returns the changes of its patients, in order.
async fn observe(
    mut stream: Streaming<WatchRecordChangesResponse>,
    watcher: Arc<Watcher>,
    mut caught_up: bool,
    mut target: Target,
) -> TestResult<Vec<RecordChange>> {
    let name = &watcher.name;
    let mut seen: Vec<RecordChange> = Vec::new();
    let mut expected: Option<usize> = None;
    let mut quiet_until = None;
    loop {
        if expected.is_none() {
            expected = target.borrow().as_ref().map(|writes| {
                writes
                    .iter()
                    .filter(|w| watcher.patients.contains(&w.patient_id))
                    .count()
            });
        }
        if let Some(n) = expected {
            ensure!(
                seen.len() <= n,
                "{name}: {} changes of its patients, but the workload wrote {n}",
                seen.len()
            );
            if seen.len() == n && quiet_until.is_none() {
                quiet_until = Some(tokio::time::Instant::now() + QUIET);
            }
        }
        let received = if let Some(deadline) = quiet_until {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => return Ok(seen),
                Ok(received) => received,
            }
        } else {
            tokio::select! {
                received = tokio::time::timeout(STALL, stream.message()) => match received {
                    Err(_) => fail!(
                        "{name}: no message within {STALL:?}, with {} change(s) of its patients received{}",
                        seen.len(),
                        expected.map(|n| format!(" of {n}")).unwrap_or_default()
                    ),
                    Ok(received) => received,
                },
                changed = target.changed(), if expected.is_none() => {
                    if changed.is_err() {
                        fail!("{name}: the workload ended without its writes");
                    }
                    continue;
                }
            }
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => fail!("{name}: the stream ended while the client listened"),
            Err(status) => fail!("{name}: the stream failed: {}", describe(&status)),
        };
        ensure!(
            !caught_up || message.caught_up,
            "{name}: caught_up went from true back to false"
        );
        caught_up |= message.caught_up;
        for change in message.changes {
            if !watcher.patients.contains(&change.patient_id) {
                ensure!(
                    !watcher.filtered,
                    "{name}: a change of patient {} outside its filter",
                    change.patient_id
                );
                continue;
            }
            let payload = change.record.as_ref().map_or(0, |r| r.payload.len());
            if watcher.view == RecordView::Metadata {
                ensure!(
                    payload == 0,
                    "{name}: a payload in RECORD_VIEW_METADATA ({} v{})",
                    change.record_id,
                    change.version
                );
            } else {
                ensure!(
                    payload > 0,
                    "{name}: no payload in RECORD_VIEW_FULL ({} v{})",
                    change.record_id,
                    change.version
                );
            }
            seen.push(change);
        }
    }
}

/// Opens a watcher at the head of the feed and waits until it has caught up, so that it misses
/// none of the writes that follow.
async fn open_at_head(
    ctx: &Ctx,
    watcher: &Watcher,
) -> TestResult<Streaming<WatchRecordChangesResponse>> {
    let mut stream = open(ctx, watcher.request(true)).await?;
    read_until_caught_up(&mut stream).await?;
    Ok(stream)
}

/// One writer: two records for each of its patients, then the first updated and the second
/// retracted.
async fn write_for(
    ctx: Ctx,
    patients: Vec<String>,
    done: Arc<AtomicUsize>,
) -> TestResult<Vec<Write>> {
    let mut writes = Vec::new();
    let mut noted = |record: &Record| {
        done.fetch_add(1, Ordering::SeqCst);
        writes.push(Write {
            record_id: record.record_id.clone(),
            version: record.version,
            patient_id: record.patient_id.clone(),
        });
    };
    let mut made = Vec::new();
    for patient in &patients {
        for resource_type in ["Observation", "Condition"] {
            let record = create(&ctx, new_record_of(patient, resource_type)).await?;
            noted(&record);
            made.push(record);
        }
    }
    for pair in made.chunks(2) {
        noted(&relabel(&ctx, &pair[0], &["hiv"]).await?);
        if let Some(second) = pair.get(1) {
            noted(&retract(&ctx, second, "retract").await?);
        }
    }
    Ok(writes)
}

/// An import of IMPORTED items spread over the patients, in three messages.
async fn import_for(ctx: Ctx, patients: Vec<String>) -> TestResult<Vec<Write>> {
    let items: Vec<_> = (0..IMPORTED)
        .map(|i| {
            let patient = &patients[i % patients.len()];
            item(&uuid::Uuid::new_v4().to_string(), new_record(patient))
        })
        .collect();
    let owners: Vec<String> = (0..IMPORTED)
        .map(|i| patients[i % patients.len()].clone())
        .collect();
    let mut messages = vec![first(items[..50].to_vec(), true)];
    for chunk in items[50..].chunks(50) {
        messages.push(ImportRecordsRequest {
            items: chunk.to_vec(),
            ..Default::default()
        });
    }
    let response = import(&ctx, messages).await?;
    ensure_eq!(
        (response.accepted_count, response.rejected_count),
        (IMPORTED as i64, 0),
        "ImportRecords alongside the writers: (accepted, rejected)"
    );
    let mut writes = Vec::new();
    for accepted in &response.accepted_records {
        let Some(patient) = usize::try_from(accepted.index)
            .ok()
            .and_then(|i| owners.get(i))
        else {
            fail!(
                "ImportRecords: an accepted index {} out of range",
                accepted.index
            )
        };
        writes.push(Write {
            record_id: accepted.record_id.clone(),
            version: 1,
            patient_id: patient.clone(),
        });
    }
    Ok(writes)
}

/// Runs the writers and the import at the same time; returns every write once all are
/// acknowledged. `done` counts the writers' acknowledged writes as they come.
async fn workload(
    ctx: &Ctx,
    patients: &[String],
    done: Arc<AtomicUsize>,
) -> TestResult<Vec<Write>> {
    let mut tasks = JoinSet::new();
    for share in patients.chunks(patients.len().div_ceil(WRITERS)) {
        tasks.spawn(write_for(ctx.clone(), share.to_vec(), done.clone()));
    }
    tasks.spawn(import_for(ctx.clone(), patients.to_vec()));
    let mut writes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => writes.extend(result?),
            Err(e) => fail!("a writer crashed: {e}"),
        }
    }
    Ok(writes)
}

/// (record_id, version, sequence) of each change.
fn events(changes: &[RecordChange]) -> Vec<(String, i64, i64)> {
    changes
        .iter()
        .map(|c| (c.record_id.clone(), c.version, c.sequence))
        .collect()
}

/// Requires the reference watcher (every patient, unfiltered) to have seen every write exactly
/// once, and every other watcher to have seen the reference's order filtered to its patients.
fn check(
    writes: &[Write],
    reference: &[RecordChange],
    others: &[(Arc<Watcher>, Vec<RecordChange>)],
) -> TestResult {
    strictly_increasing(reference)?;
    let delivered: Vec<(String, i64)> = reference
        .iter()
        .map(|c| (c.record_id.clone(), c.version))
        .collect();
    let unique: BTreeSet<&(String, i64)> = delivered.iter().collect();
    ensure_eq!(
        unique.len(),
        delivered.len(),
        "the unfiltered watcher: distinct (record_id, version) among the changes delivered"
    );
    let wanted: BTreeSet<(String, i64)> = writes
        .iter()
        .map(|w| (w.record_id.clone(), w.version))
        .collect();
    let got: BTreeSet<(String, i64)> = delivered.iter().cloned().collect();
    let missing: Vec<_> = wanted.difference(&got).collect();
    let extra: Vec<_> = got.difference(&wanted).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "the unfiltered watcher must see every write exactly once: {} missing {missing:?}, {} not written {extra:?}",
        missing.len(),
        extra.len()
    );
    for (watcher, changes) in others {
        strictly_increasing(changes).map_err(|fail| match fail {
            Fail::Failed(m) => Fail::Failed(format!("{}: {m}", watcher.name)),
            other => other,
        })?;
        let theirs: Vec<RecordChange> = reference
            .iter()
            .filter(|c| watcher.patients.contains(&c.patient_id))
            .cloned()
            .collect();
        ensure_eq!(
            events(changes),
            events(&theirs),
            "{}: (record_id, version, sequence) of its changes, against the unfiltered order",
            watcher.name
        );
    }
    Ok(())
}

/// Collects every observer's changes, in the order the watchers were given.
/// Tells the observers every write made, then checks what each watcher saw: the first (the
/// unfiltered reference) against the writes, every other against the first.
async fn check_all(
    writes: Vec<Write>,
    writes_known: &watch::Sender<Option<Arc<Vec<Write>>>>,
    observers: JoinSet<(usize, TestResult<Vec<RecordChange>>)>,
    watchers: &[Arc<Watcher>],
) -> TestResult {
    writes_known.send_replace(Some(Arc::new(writes.clone())));
    let seen = gather(observers, watchers.len()).await?;
    let others: Vec<_> = watchers
        .iter()
        .cloned()
        .zip(seen.iter().cloned())
        .skip(1)
        .collect();
    check(&writes, &seen[0], &others)
}

async fn gather(
    mut observers: JoinSet<(usize, TestResult<Vec<RecordChange>>)>,
    count: usize,
) -> TestResult<Vec<Vec<RecordChange>>> {
    let mut seen: Vec<Option<Vec<RecordChange>>> = vec![None; count];
    while let Some(joined) = observers.join_next().await {
        match joined {
            Ok((i, result)) => seen[i] = Some(result?),
            Err(e) => fail!("a watcher crashed: {e}"),
        }
    }
    Ok(seen.into_iter().map(Option::unwrap_or_default).collect())
}

pub(super) async fn concurrent_filtered_watchers(ctx: Ctx) -> TestResult {
    let patients: Vec<String> = (0..PATIENTS).map(|_| ctx.new_patient()).collect();
    let mut watchers = vec![Arc::new(Watcher::new(
        "the unfiltered watcher".into(),
        &patients,
        false,
        RecordView::Metadata,
    ))];
    for (i, pair) in patients.chunks(2).enumerate() {
        let view = if i % 3 == 0 {
            RecordView::Full
        } else {
            RecordView::Metadata
        };
        let name = format!("the watcher of patients {} and {}", 2 * i, 2 * i + 1);
        watchers.push(Arc::new(Watcher::new(name, pair, true, view)));
    }
    let (writes_known, target) = watch::channel(None);
    let mut observers = JoinSet::new();
    for (i, watcher) in watchers.iter().enumerate() {
        let stream = open_at_head(&ctx, watcher).await?;
        let (watcher, target) = (watcher.clone(), target.clone());
        observers.spawn(async move { (i, observe(stream, watcher, true, target).await) });
    }
    let writes = workload(&ctx, &patients, Arc::default()).await?;
    check_all(writes, &writes_known, observers, &watchers).await
}

pub(super) async fn replaying_watchers_reach_live(ctx: Ctx) -> TestResult {
    let patients: Vec<String> = (0..PATIENTS).map(|_| ctx.new_patient()).collect();
    let reference = Arc::new(Watcher::new(
        "the unfiltered watcher".into(),
        &patients,
        false,
        RecordView::Metadata,
    ));
    let (writes_known, target) = watch::channel(None);
    let mut observers = JoinSet::new();
    let stream = open_at_head(&ctx, &reference).await?;
    let (watcher, receiver) = (reference.clone(), target.clone());
    observers.spawn(async move { (0, observe(stream, watcher, true, receiver).await) });
    let done = Arc::new(AtomicUsize::new(0));
    let mut writing = JoinSet::new();
    {
        let (ctx, patients, done) = (ctx.clone(), patients.clone(), done.clone());
        writing.spawn(async move { workload(&ctx, &patients, done).await });
    }
    // Once a third of the writers' writes are acknowledged, watchers of single patients start
    // from the beginning of the feed: they replay those patients' history while writes go on.
    let writers_total = PATIENTS * 4;
    let started = tokio::time::Instant::now();
    while done.load(Ordering::SeqCst) < writers_total / 3 {
        ensure!(
            started.elapsed() < STALL,
            "the writers acknowledged only {} writes within {STALL:?}",
            done.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut watchers = vec![reference];
    for (i, patient) in [0, 1, 6, 7].into_iter().enumerate() {
        let view = if i % 2 == 0 {
            RecordView::Full
        } else {
            RecordView::Metadata
        };
        let name = format!("the watcher of patient {patient} from the beginning");
        let watcher = Arc::new(Watcher::new(name, &patients[patient..=patient], true, view));
        let stream = open(&ctx, watcher.request(false)).await?;
        let receiver = target.clone();
        let index = watchers.len();
        let observed = watcher.clone();
        observers.spawn(async move { (index, observe(stream, observed, false, receiver).await) });
        watchers.push(watcher);
    }
    let writes = match writing.join_next().await {
        Some(Ok(result)) => result?,
        Some(Err(e)) => fail!("the workload crashed: {e}"),
        None => fail!("the workload did not run"),
    };
    check_all(writes, &writes_known, observers, &watchers).await
}
