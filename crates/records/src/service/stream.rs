//! Server streams: a task per call feeds a small channel, so the channel's capacity and gRPC flow
//! control bound memory (a slow reader slows the producer), and a task ends as soon as its client
//! goes away, leaving nothing behind (exports and watches only read).

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::Error;

/// Records or changes per message at most.
pub const PER_MESSAGE: usize = 100;

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The sending end of a server stream.
pub type Sender<T> = mpsc::Sender<Result<T, Status>>;

pub fn channel<T: Send + 'static>() -> (Sender<T>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(2);
    (tx, Box::pin(ReceiverStream::new(rx)))
}

/// Ends a stream with `error` (unless its client has gone already).
pub async fn fail<T>(tx: &Sender<T>, error: impl Into<Error>) {
    let _ = tx.send(Err(Status::from(error.into()))).await;
}

/// Ends a stream because the service is shutting down.
pub async fn shutting_down<T>(tx: &Sender<T>) {
    fail(tx, Error::Unavailable("shutting down".into())).await;
}
