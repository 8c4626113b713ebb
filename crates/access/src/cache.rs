//! Another module's answers kept between calls, and validated before every use by one listing of
//! that module's changes per batch of calls (docs/design/read-path-caches.md).
//!
//! A call that would use a kept answer first waits for a check that *began after the call
//! arrived*: the check lists what the module changed since the last check (one unary call), drops
//! every answer those changes touch, and moves the cache's cursor on. A write the module
//! acknowledged before the call arrived committed before the check began, so the check's listing
//! includes it and no answer from before it survives. At most one check runs at a time; calls that
//! arrive while one runs wait for the next, which then serves all of them.
//!
//! An answer fetched while checks completed is used for its own call, and kept only if none of
//! those checks listed a change it depends on: otherwise it may predate a write they passed over
//! (under steady load a check completes during almost every fetch, so "none completed" would keep
//! nothing). A module that answers the listing UNIMPLEMENTED turns
//! the cache off for good; any other failed check leaves the calls waiting for it to ask the
//! module directly.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter};
use tonic::{Code, Status};

/// What a check learnt from the module.
#[derive(Debug, Default)]
pub struct Changes {
    /// What the changes touched: every kept answer carrying one of these tags is dropped.
    pub tags: Vec<String>,
    /// Where the next check lists from.
    pub next_cursor: String,
    /// More changes than one listing holds: everything is dropped.
    pub more: bool,
}

/// Whether a call may use and keep answers, after waiting for its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Kept answers are current; a fetched answer may be kept with this generation.
    Valid(u64),
    /// Ask the module and keep nothing: the cache is off, or the check failed.
    Bypass,
}

/// Counts of what the cache did.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypassed: AtomicU64,
    pub checks: AtomicU64,
    pub dropped: AtomicU64,
}

/// A snapshot of [`Stats`].
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
    pub bypassed: u64,
    pub checks: u64,
    pub dropped: u64,
}

/// How many changes a check asks a module to list; beyond them it drops every kept answer.
pub const LISTED_PER_CHECK: i32 = 1000;

/// How many recent checks' changes are remembered, to decide whether an answer fetched while
/// they completed may be kept.
const REMEMBERED_CHECKS: usize = 64;

#[derive(Debug)]
pub struct ValidatedCache<K, V> {
    name: &'static str,
    capacity: usize,
    state: Mutex<State<K, V>>,
    /// Held while a check runs: one at a time, waiters served in arrival order.
    checking: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
    /// Kept for as long as the cache: the metrics that report `stats`.
    _metrics: [ObservableCounter<u64>; 3],
}

#[derive(Debug)]
struct State<K, V> {
    off: bool,
    /// Where the next check lists from; empty before the first (which answers the head).
    cursor: String,
    entries: HashMap<K, Entry<V>>,
    by_tag: HashMap<String, HashSet<K>>,
    /// The number of the last check begun, and of the last that ended (checks are numbered from
    /// 1 in the order they begin, and run one at a time).
    begun: u64,
    ended: u64,
    /// The number of the last check that succeeded (0: none yet).
    valid_through: u64,
    /// What the last checks to end listed, oldest first, by check number: the tags, or `None`
    /// when a check dropped everything (a failed check listed nothing: an empty set).
    recent: VecDeque<(u64, Option<HashSet<String>>)>,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    tags: Vec<String>,
}

impl<K: Clone + Eq + Hash, V: Clone> ValidatedCache<K, V> {
    /// A cache of at most `capacity` answers (0: off, every call asks the module), reporting its
    /// metrics to the process's meter provider.
    pub fn new(name: &'static str, capacity: usize) -> Self {
        Self::with_meter(
            name,
            capacity,
            &opentelemetry::global::meter("carerecord-access"),
        )
    }

    /// A cache reporting its metrics to `meter`.
    pub fn with_meter(name: &'static str, capacity: usize, meter: &Meter) -> Self {
        let stats = Arc::new(Stats::default());
        ValidatedCache {
            name,
            capacity,
            state: Mutex::new(State {
                off: capacity == 0,
                cursor: String::new(),
                entries: HashMap::new(),
                by_tag: HashMap::new(),
                begun: 0,
                ended: 0,
                valid_through: 0,
                recent: VecDeque::new(),
            }),
            checking: tokio::sync::Mutex::new(()),
            _metrics: metrics(meter, name, &stats),
            stats,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that matters
        // more than losing them: start again empty.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.clear();
            state
        })
    }

    /// Waits for a check that began after this call, running it if none is under way;
    /// `list(cursor)` asks the module for its changes after `cursor` (empty: its head).
    pub async fn validate<F, Fut>(&self, list: F) -> Checked
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Changes, Status>>,
    {
        let arrived_after = {
            let state = self.state();
            if state.off {
                return self.bypass();
            }
            state.begun
        };
        let _turn = self.checking.lock().await;
        let (number, cursor) = {
            let mut state = self.state();
            if state.ended > arrived_after {
                // A check that began after this call arrived has ended while it waited.
                return if state.valid_through > arrived_after {
                    Checked::Valid(state.valid_through)
                } else {
                    self.bypass()
                };
            }
            if state.off {
                return self.bypass();
            }
            state.begun += 1;
            (state.begun, state.cursor.clone())
        };
        self.stats.checks.fetch_add(1, Ordering::Relaxed);
        let listed = list(cursor).await;
        // A check whose caller went away ended nothing and listed nothing: the next one numbers
        // on from it.
        let mut state = self.state();
        state.ended = number;
        let (checked, listed_tags) = match listed {
            Ok(changes) if !changes.next_cursor.is_empty() => {
                let dropped = if changes.more {
                    let all = state.entries.len();
                    state.clear();
                    all
                } else {
                    changes.tags.iter().map(|tag| state.drop_tagged(tag)).sum()
                };
                self.stats
                    .dropped
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                state.cursor = changes.next_cursor;
                state.valid_through = number;
                let tags = (!changes.more).then(|| changes.tags.into_iter().collect());
                (Checked::Valid(number), tags)
            }
            Ok(_) => {
                tracing::warn!(
                    cache = self.name,
                    "the module's change listing gave no cursor to resume from: cache turned off"
                );
                state.turn_off();
                (self.bypass(), None)
            }
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    cache = self.name,
                    "the module does not list its changes: every call asks it"
                );
                state.turn_off();
                (self.bypass(), None)
            }
            Err(status) => {
                tracing::warn!(cache = self.name, code = ?status.code(), message = status.message(),
                    "checking the cache failed: calls waiting for the check ask the module");
                (self.bypass(), Some(HashSet::new()))
            }
        };
        if state.recent.len() == REMEMBERED_CHECKS {
            state.recent.pop_front();
        }
        state.recent.push_back((number, listed_tags));
        checked
    }

    fn bypass(&self) -> Checked {
        self.stats.bypassed.fetch_add(1, Ordering::Relaxed);
        Checked::Bypass
    }

    /// The answer kept for `key`, if the call's check allows using it.
    pub fn get(&self, checked: Checked, key: &K) -> Option<V> {
        let Checked::Valid(_) = checked else {
            return None;
        };
        let hit = self.state().entries.get(key).map(|e| e.value.clone());
        let counter = if hit.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Keeps `value` for `key`, dropped when a check lists one of `tags`; unless no check allowed
    /// it, or a check that completed since it was allowed listed one of `tags` (the answer may
    /// predate that change) or is no longer remembered.
    pub fn insert(&self, checked: Checked, key: K, value: V, tags: Vec<String>) {
        let Checked::Valid(generation) = checked else {
            return;
        };
        let mut state = self.state();
        if state.off || !state.unchanged_since(generation, &tags) {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            state.evict(self.capacity / 8 + 1);
        }
        state.remove(&key);
        for tag in &tags {
            state
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        state.entries.insert(key, Entry { value, tags });
    }

    #[cfg(test)]
    pub fn counts(&self) -> Counts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            hits: load(&self.stats.hits),
            misses: load(&self.stats.misses),
            bypassed: load(&self.stats.bypassed),
            checks: load(&self.stats.checks),
            dropped: load(&self.stats.dropped),
        }
    }

    /// How many answers are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }
}

/// Values of a metric read from the counts, each with its `outcome` attribute (if any).
type Readings = fn(&Stats) -> Vec<(u64, Option<&'static str>)>;

/// The cache's counts as OpenTelemetry counters, each with the cache's name as `cache`:
/// `carerecord.access.cache.lookups` by `outcome` (hit, miss, bypass), `.checks` and `.dropped`.
fn metrics(meter: &Meter, name: &'static str, stats: &Arc<Stats>) -> [ObservableCounter<u64>; 3] {
    let cache = KeyValue::new("cache", name);
    let counter = |metric: &'static str, description: &'static str, read: Readings| {
        let (stats, cache) = (stats.clone(), cache.clone());
        meter
            .u64_observable_counter(metric)
            .with_description(description)
            .with_callback(move |observer| {
                for (value, outcome) in read(&stats) {
                    match outcome {
                        Some(outcome) => observer
                            .observe(value, &[cache.clone(), KeyValue::new("outcome", outcome)]),
                        None => observer.observe(value, std::slice::from_ref(&cache)),
                    }
                }
            })
            .build()
    };
    [
        counter(
            "carerecord.access.cache.lookups",
            "Answers looked up in data access's caches of other modules' answers, by cache and outcome (bypass: the cache was off or its check failed)",
            |s| {
                vec![
                    (s.hits.load(Ordering::Relaxed), Some("hit")),
                    (s.misses.load(Ordering::Relaxed), Some("miss")),
                    (s.bypassed.load(Ordering::Relaxed), Some("bypass")),
                ]
            },
        ),
        counter(
            "carerecord.access.cache.checks",
            "Listings of a module's changes that validated a cache (each serves every call waiting for it)",
            |s| vec![(s.checks.load(Ordering::Relaxed), None)],
        ),
        counter(
            "carerecord.access.cache.dropped",
            "Cached answers dropped because a listing named a change they depend on",
            |s| vec![(s.dropped.load(Ordering::Relaxed), None)],
        ),
    ]
}

impl<K: Clone + Eq + Hash, V> State<K, V> {
    fn clear(&mut self) {
        self.entries.clear();
        self.by_tag.clear();
    }

    /// Whether no check after check `generation` listed any of `tags` (and each is remembered).
    fn unchanged_since(&self, generation: u64, tags: &[String]) -> bool {
        if self.valid_through == generation {
            return true;
        }
        let Some(&(oldest, _)) = self.recent.front() else {
            return false;
        };
        if oldest > generation + 1 {
            return false;
        }
        self.recent
            .iter()
            .filter(|(number, _)| *number > generation)
            .all(|(_, listed)| {
                listed
                    .as_ref()
                    .is_some_and(|listed| tags.iter().all(|tag| !listed.contains(tag)))
            })
    }

    fn turn_off(&mut self) {
        self.off = true;
        self.clear();
    }

    fn remove(&mut self, key: &K) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        for tag in &entry.tags {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        true
    }

    /// Drops every answer tagged `tag`; returns how many.
    fn drop_tagged(&mut self, tag: &str) -> usize {
        let Some(keys) = self.by_tag.remove(tag) else {
            return 0;
        };
        keys.iter().filter(|key| self.remove(key)).count()
    }

    /// Drops `count` answers, whichever the map yields first (no recency is tracked: keeping
    /// every answer's last use would cost a write on every hit).
    fn evict(&mut self, count: usize) {
        let victims: Vec<K> = self.entries.keys().take(count).cloned().collect();
        for key in victims {
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
