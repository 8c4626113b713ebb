//! The order in which the batches of one import take the feed head lock.

use tokio::sync::oneshot;

/// The place of a batch in a sequence of batches that must commit in order (an import's). A batch
/// takes the feed head lock only once the batch before has taken it, and says when it has; until
/// then it may look up its request ids, so that one batch is prepared while the one before is
/// written. A batch that ends, or fails, lets the next one in. The default turn stands alone.
#[derive(Debug, Default)]
pub struct Turn {
    after: Option<oneshot::Receiver<()>>,
    locked: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// The turn of a part of this batch other than its last: it waits for the batch before, but
    /// leaves letting the next one in to the last part.
    pub(super) fn part(&mut self) -> Turn {
        Turn {
            after: self.after.take(),
            locked: None,
        }
    }

    /// Waits for the batch before to hold the head lock (or to have ended).
    pub(super) async fn wait(&mut self) {
        if let Some(after) = self.after.take() {
            let _ = after.await; // an error: the batch before ended or failed
        }
    }

    /// Lets the next batch take the lock after this one.
    pub(super) fn locked(&mut self) {
        if let Some(locked) = self.locked.take() {
            let _ = locked.send(());
        }
    }
}

/// Hands out the turns of one sequence of batches, in commit order.
#[derive(Debug, Default)]
pub struct Turns {
    last: Option<oneshot::Receiver<()>>,
}

impl Turns {
    pub fn next_turn(&mut self) -> Turn {
        let (locked, after_this) = oneshot::channel();
        Turn {
            after: self.last.replace(after_this),
            locked: Some(locked),
        }
    }
}
