//! Group commit of creates: concurrent CreateRecord calls are written together in one
//! transaction, so that many creates share one commit (one WAL flush) and one hold of the feed
//! head lock. Alone, a create is written at once; under load, batches grow by themselves.
//! Concurrent batches are safe: the head lock orders their commits, and a request id raced by
//! another batch fails that batch's statement on the unique key, which is then planned again.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::Error;
use crate::store::{CreateOutcome, NewRecord, Store};

/// Creates per transaction at most.
const MAX_BATCH: usize = 256;
/// Batches being written at once.
const BATCHES_IN_FLIGHT: usize = 2;

struct Job {
    record: NewRecord,
    reply: oneshot::Sender<Result<CreateOutcome, Error>>,
}

/// The handle CreateRecord calls; the writing task stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct CreateWriter {
    jobs: mpsc::Sender<Job>,
}

impl CreateWriter {
    /// Starts the writing task on the current runtime.
    pub fn start(store: Store) -> CreateWriter {
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, receiver));
        CreateWriter { jobs }
    }

    /// Writes one record (with whatever else is waiting) and returns its outcome.
    pub async fn create(&self, record: NewRecord) -> Result<CreateOutcome, Error> {
        let (reply, outcome) = oneshot::channel();
        let stopped = || Error::Unavailable("the create writer has stopped".to_owned());
        self.jobs
            .send(Job { record, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Job>) {
    // Two batches in flight: while one commits, the next is looked up and sent, so the head
    // lock (which orders commits) is never left waiting for a round trip.
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if receiver.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            let (records, replies): (Vec<NewRecord>, Vec<_>) =
                jobs.into_iter().map(|j| (j.record, j.reply)).unzip();
            match store.create_batch(&records).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        // A caller that went away still had its record written; a retry deduplicates.
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let error = Error::from(e);
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
