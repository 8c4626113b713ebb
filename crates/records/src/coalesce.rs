//! Coalescing of concurrent calls: each call queues its request, and a task hands whatever has
//! queued, up to a maximum, to one batch function, with a few batches under way at once. Alone, a
//! call is served at once; under load, batches grow by themselves.
//!
//! Two services are built on it: the create writer (group commit: many CreateRecord calls share
//! one transaction, one WAL flush and one hold of the feed head lock) and the latest-version
//! reader (many GetRecord calls share one query: one round trip and one wake-up of a database
//! process).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use carerecord_platform::db::is_transient;

use crate::error::Error;
use crate::store::{CreateOutcome, NewRecord, Store, Turn, Version};

type Reply<Resp> = oneshot::Sender<Result<Resp, Error>>;

/// The handle calls go through; the batching task stops when every handle is dropped.
#[derive(Debug)]
pub struct Coalescer<Req, Resp> {
    jobs: mpsc::Sender<(Req, Reply<Resp>)>,
    name: &'static str,
}

impl<Req, Resp> Clone for Coalescer<Req, Resp> {
    fn clone(&self) -> Self {
        Coalescer {
            jobs: self.jobs.clone(),
            name: self.name,
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// Starts the batching task on the current runtime. `batch` answers its requests in order.
    pub fn start<F, Fut>(name: &'static str, max_batch: usize, in_flight: usize, batch: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, Error>> + Send + 'static,
    {
        let (jobs, receiver) = mpsc::channel(4 * max_batch);
        tokio::spawn(run(receiver, max_batch, in_flight, Arc::new(batch)));
        Coalescer { jobs, name }
    }

    pub async fn call(&self, request: Req) -> Result<Resp, Error> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Unavailable(format!("the {} has stopped", self.name));
        self.jobs
            .send((request, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<Req, Resp, F, Fut>(
    mut receiver: mpsc::Receiver<(Req, Reply<Resp>)>,
    max_batch: usize,
    in_flight: usize,
    batch: Arc<F>,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Resp>, Error>> + Send + 'static,
{
    // While some batches wait for the database, the next calls gather.
    let in_flight = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = Vec::with_capacity(max_batch);
        if receiver.recv_many(&mut jobs, max_batch).await == 0 {
            return;
        }
        let batch = batch.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = jobs.into_iter().unzip();
            let count = requests.len();
            match batch(requests).await {
                Ok(answers) if answers.len() == count => {
                    // A caller that went away still had its request served.
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(answers) => {
                    let error = Error::Internal(format!(
                        "a batch of {count} requests was answered {} times",
                        answers.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Group commit of CreateRecord calls.
pub type CreateWriter = Coalescer<NewRecord, CreateOutcome>;

/// Starts the create writer: up to 256 creates a transaction, two transactions at once (while
/// one commits, the next is looked up and sent, so the head lock is never left waiting for a
/// round trip). A request id raced by another batch fails that batch's write on the unique key,
/// which is then planned again.
pub fn create_writer(store: Store) -> CreateWriter {
    Coalescer::start("create writer", 256, 2, move |records: Vec<NewRecord>| {
        let store = store.clone();
        async move { Ok(store.create_batch(&records, Turn::default()).await?) }
    })
}

/// Coalesced reads of latest versions (with payloads) by record id.
pub type LatestReader = Coalescer<String, Option<Version>>;

/// Starts the latest-version reader: up to 64 records a query, four queries at once.
pub fn latest_reader(store: Store) -> LatestReader {
    Coalescer::start("record reader", 64, 4, move |ids: Vec<String>| {
        let store = store.clone();
        async move { read_latest(&store, ids).await }
    })
}

/// Retries of a read that failed for its connection.
const READ_RETRIES: usize = 3;

async fn read_latest(store: &Store, ids: Vec<String>) -> Result<Vec<Option<Version>>, Error> {
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // A read is safe to repeat: a pooled connection that the database dropped (a restart) fails
    // once and is replaced, so the calls are not failed for it.
    let mut read = store.latest_many(&distinct).await;
    for _ in 0..READ_RETRIES {
        match &read {
            Err(e) if is_transient(e) => read = store.latest_many(&distinct).await,
            _ => break,
        }
    }
    let found = read?;
    let by_id: HashMap<&str, &Version> = found.iter().map(|v| (v.record_id.as_str(), v)).collect();
    Ok(ids
        .iter()
        .map(|id| by_id.get(id.as_str()).map(|v| (*v).clone()))
        .collect())
}
