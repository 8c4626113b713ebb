//! One reader of the change feed per process, fanning each new batch of events out to the live
//! watchers in memory, so that live watching costs the database the same whatever the number of
//! watchers: one read of the new events per batch of commits (and one of the head every poll
//! interval, for other replicas' commits).
//!
//! The reader keeps a window of the newest events, every event of the feed with `start < seq <=
//! head`, in sequence order. It reads them without payloads unless some watcher wants the full
//! view. A watcher whose position is inside the window (and, for the full view, past the point
//! from which the window holds payloads) takes its next events from the window; one behind it
//! (replaying history, or too slow to keep up) reads the database as before until it reaches the
//! window. Both give exactly the events after a position up to a head, in order, so a watcher
//! switches between them at any message with no gap and no duplicate.
//!
//! The reader wakes on this process's commits (whose sequence tells it how far to read) and every
//! poll interval (other replicas' commits: it reads the head), and reads only while some watcher
//! is registered; after an idle spell its window starts afresh, empty, at the head.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::store::{FeedFilter, Store, Version};

/// Events read per query at most.
const READ_CHUNK: i64 = 1000;
/// Events kept in the window at most.
const WINDOW_EVENTS: usize = 20_000;
/// Payload bytes kept in the window at most.
const WINDOW_BYTES: usize = 64 << 20;
/// How long the reader waits before reading again after a database error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared reader of one process; cloning gives another handle to it.
#[derive(Debug, Clone)]
pub struct FeedHub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    window: RwLock<Window>,
    /// The window's head, each time it advances.
    head: watch::Sender<i64>,
    watchers: AtomicUsize,
    full_watchers: AtomicUsize,
    /// Wakes the reader when the first watcher registers.
    wake: Notify,
}

#[derive(Debug)]
struct Window {
    /// Whether the window is kept up; false while nobody watches.
    live: bool,
    start: i64,
    head: i64,
    /// Every event with a sequence above this carries its payload (`i64::MAX`: none need to).
    payloads_from: i64,
    events: VecDeque<Arc<Version>>,
    payload_bytes: usize,
}

/// The next events for one message, from the window.
#[derive(Debug)]
pub struct Taken {
    /// The head the events were taken up to, unless the message is full.
    pub head: i64,
    pub rows: Vec<Version>,
    /// Whether the message is full: it ends at its last row, not at head.
    pub full: bool,
}

impl FeedHub {
    /// Starts the reader on the current runtime; it stops at `shutdown`.
    pub fn start(store: Store, poll_interval: Duration, shutdown: CancellationToken) -> FeedHub {
        let hub = FeedHub::idle();
        tokio::spawn(read_feed(
            hub.shared.clone(),
            store,
            poll_interval,
            shutdown,
        ));
        hub
    }

    /// A hub whose window is not kept up, without its reader.
    fn idle() -> FeedHub {
        let shared = Arc::new(Shared {
            window: RwLock::new(Window {
                live: false,
                start: 0,
                head: 0,
                payloads_from: i64::MAX,
                events: VecDeque::new(),
                payload_bytes: 0,
            }),
            head: watch::Sender::new(0),
            watchers: AtomicUsize::new(0),
            full_watchers: AtomicUsize::new(0),
            wake: Notify::new(),
        });
        FeedHub { shared }
    }

    /// Registers a watcher until the registration is dropped.
    pub fn register(&self, with_payload: bool) -> Registration {
        let shared = &self.shared;
        if with_payload {
            shared.full_watchers.fetch_add(1, Ordering::SeqCst);
        }
        if shared.watchers.fetch_add(1, Ordering::SeqCst) == 0 {
            shared.wake.notify_one();
        }
        Registration {
            shared: self.shared.clone(),
            with_payload,
            advanced: shared.head.subscribe(),
        }
    }
}

/// A registered watcher's access to the window.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    with_payload: bool,
    advanced: watch::Receiver<i64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.with_payload {
            self.shared.full_watchers.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registration {
    /// Waits until the window's head advances.
    pub async fn advanced(&mut self) {
        if self.advanced.changed().await.is_err() {
            // The reader has stopped (shutdown): nothing more will come from it.
            std::future::pending::<()>().await;
        }
    }

    /// The next events after `position` that `filter` wants, for one message (at most `limit`
    /// rows and, past the first, `budget` payload bytes), if the window can give them; None if
    /// the watcher must read the database. A position beyond the window's head gets no rows.
    pub fn take(
        &self,
        position: i64,
        filter: &FeedFilter,
        limit: usize,
        budget: usize,
    ) -> Option<Taken> {
        let window = self.shared.window.read().unwrap_or_else(|e| e.into_inner());
        if !window.live
            || position < window.start
            || (self.with_payload && position < window.payloads_from)
        {
            return None;
        }
        let first = window.events.partition_point(|e| e.seq <= position);
        let mut rows = Vec::new();
        let mut bytes = 0;
        for event in window.events.range(first..) {
            if !filter.matches(event) {
                continue;
            }
            let size = if self.with_payload {
                event.fields.payload.len()
            } else {
                0
            };
            if !rows.is_empty() && bytes + size > budget {
                return Some(Taken {
                    head: window.head,
                    rows,
                    full: true,
                });
            }
            bytes += size;
            rows.push(if self.with_payload {
                (**event).clone()
            } else {
                event.without_payload()
            });
            if rows.len() == limit {
                return Some(Taken {
                    head: window.head,
                    rows,
                    full: true,
                });
            }
        }
        Some(Taken {
            head: window.head.max(position),
            rows,
            full: false,
        })
    }
}

/// The reader: reads new events while watchers are registered, after each commit of this process
/// and every poll interval.
async fn read_feed(
    shared: Arc<Shared>,
    store: Store,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut commits = store.subscribe();
    // The newest sequence known to be committed, when this process's own commit says so: every
    // lower sequence is committed too (writers take sequences under the head lock, in commit
    // order), so the head need not be read. None: read it (other replicas' commits).
    let mut committed = None;
    loop {
        if shared.watchers.load(Ordering::SeqCst) == 0 {
            shared.lock().stop();
            tokio::select! {
                () = shared.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        let wait = match read_new_events(&shared, &store, committed).await {
            Ok(()) => poll_interval,
            Err(e) => {
                tracing::warn!(error = %e, "reading the change feed for watchers");
                RETRY_AFTER.min(poll_interval)
            }
        };
        committed = tokio::select! {
            changed = commits.changed() => changed.ok().map(|()| *commits.borrow_and_update()),
            () = tokio::time::sleep(wait) => None,
            () = shared.wake.notified() => None,
            () = shutdown.cancelled() => return,
        };
    }
}

/// Reads every event committed after the window's head, up to `committed` if known, otherwise up
/// to the feed's head, into the window.
async fn read_new_events(
    shared: &Shared,
    store: &Store,
    committed: Option<i64>,
) -> Result<(), sqlx::Error> {
    let newest = match committed {
        Some(seq) => seq,
        None => store.head().await?,
    };
    let mut head = {
        let mut window = shared.lock();
        if !window.live {
            window.restart(newest);
            drop(window);
            shared.head.send_replace(newest);
            return Ok(());
        }
        window.head
    };
    while head < newest {
        let with_payload = shared.full_watchers.load(Ordering::SeqCst) > 0;
        let events: Vec<Version> = store
            .changes(
                &FeedFilter::default(),
                head,
                newest,
                READ_CHUNK,
                with_payload,
            )
            .collect::<Result<_, _>>()
            .await?;
        let read_to = match events.last() {
            Some(last) if events.len() as i64 == READ_CHUNK => last.seq,
            _ => newest,
        };
        shared.lock().append(head, read_to, events, with_payload);
        shared.head.send_replace(read_to);
        head = read_to;
    }
    Ok(())
}

impl Shared {
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Window> {
        self.window.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Window {
    /// Nobody watches: the window is no longer kept up.
    fn stop(&mut self) {
        self.live = false;
        self.events.clear();
        self.payload_bytes = 0;
    }

    /// Starts keeping the window up again, empty, at `head`.
    fn restart(&mut self, head: i64) {
        self.stop();
        self.live = true;
        self.start = head;
        self.head = head;
        self.payloads_from = head;
    }

    /// Adds the events after `from` up to `to`, then forgets the oldest beyond the window's size.
    fn append(&mut self, from: i64, to: i64, events: Vec<Version>, with_payload: bool) {
        if !with_payload {
            self.payloads_from = i64::MAX;
        } else if self.payloads_from == i64::MAX {
            self.payloads_from = from;
        }
        for event in events {
            self.payload_bytes += event.fields.payload.len();
            self.events.push_back(Arc::new(event));
        }
        self.head = to;
        while self.events.len() > WINDOW_EVENTS || self.payload_bytes > WINDOW_BYTES {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.payload_bytes -= oldest.fields.payload.len();
            self.start = oldest.seq;
        }
    }
}

#[cfg(test)]
mod tests;
