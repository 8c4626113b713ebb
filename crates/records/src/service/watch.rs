//! WatchRecordChanges: the change feed from a cursor, history first (from the database), then live
//! (from the events the process's shared reader holds, see [`crate::fanout`]).

use std::time::Duration;

use carerecord_contracts::records::v1::{WatchRecordChangesRequest, WatchRecordChangesResponse};
use carerecord_platform::errors::Violations;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::cursor::{feed_cursor, parse_feed_cursor};
use super::messages::change_message;
use super::paging::PAGE_PAYLOAD_BUDGET;
use super::request::{id_list, with_payload};
use super::state::RecordsService;
use super::stream::{PER_MESSAGE, ResponseStream, Sender, channel, fail, shutting_down};
use crate::domain::record::check_type_filter;
use crate::error::Error;
use crate::fanout::{Registration, Taken};
use crate::store::{FeedFilter, Version};

/// Filtered watchers get a progress message for skipped events at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl RecordsService {
    pub(super) async fn watch(
        &self,
        request: WatchRecordChangesRequest,
    ) -> Result<ResponseStream<WatchRecordChangesResponse>, Error> {
        let mut violations = Violations::new();
        if request.start_at_head && !request.after_cursor.is_empty() {
            violations.add("after_cursor", "must be empty when start_at_head is set");
        }
        let patient_ids = id_list(&request.patient_ids, "patient_ids", 1000, &mut violations);
        check_type_filter(
            &request.resource_types,
            "resource_types",
            50,
            &mut violations,
        );
        let with_payload = with_payload(request.view, &mut violations);
        let cursor = if request.after_cursor.is_empty() {
            None
        } else {
            parse_feed_cursor(
                &self.tokens,
                &request.after_cursor,
                "after_cursor",
                &mut violations,
            )
        };
        violations.into_result()?;
        // Register before reading the head, so that no event after it goes unnoticed.
        let registration = self.hub.register(with_payload);
        let head_at_call = self.store.head().await?;
        let position = match cursor {
            Some(seq) if seq > head_at_call => {
                return Err(Error::CursorAhead {
                    cursor: seq,
                    head: head_at_call,
                });
            }
            Some(seq) => seq,
            None if request.start_at_head => head_at_call,
            None => 0,
        };
        let (tx, stream) = channel();
        let mut patient_ids = patient_ids;
        patient_ids.sort_unstable();
        let watcher = Watcher {
            service: self.clone(),
            filter: FeedFilter {
                patient_ids,
                resource_types: request.resource_types,
            },
            with_payload,
            head_at_call,
            registration,
        };
        tokio::spawn(watcher.send(tx, position));
        Ok(stream)
    }
}

/// One watch being streamed.
struct Watcher {
    service: RecordsService,
    filter: FeedFilter,
    with_payload: bool,
    /// Once the stream reaches it, it says it has caught up.
    head_at_call: i64,
    /// The newest events, shared with the other watchers of this process.
    registration: Registration,
}

impl Watcher {
    /// Sends the changes after `position` until the client goes away or the service shuts down:
    /// a message for changes, for catching up, for progress over filtered-out events, and at
    /// least every heartbeat.
    async fn send(mut self, tx: Sender<WatchRecordChangesResponse>, mut position: i64) {
        let config = self.service.config.clone();
        let mut caught_up = false;
        let mut last_sent: Option<Instant> = None;
        let mut progress_due = false;
        loop {
            let (head, rows, full) = match self.next(position).await {
                Ok(next) => next,
                Err(e) => return fail(&tx, e).await,
            };
            let mut changes = Vec::new();
            if head > position {
                // A full message ends at its last change; otherwise every event up to head is accounted for.
                position = match rows.last() {
                    Some(last) if full => last.seq,
                    _ => head,
                };
                changes = rows
                    .into_iter()
                    .map(|v| change_message(&self.service.tokens, v))
                    .collect();
                progress_due |= changes.is_empty();
            }
            let catching_up_now = !caught_up && position >= self.head_at_call;
            let heartbeat_due = last_sent.is_none_or(|t| t.elapsed() >= config.watch_heartbeat);
            let progress_now =
                progress_due && last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if !changes.is_empty() || catching_up_now || heartbeat_due || progress_now {
                caught_up |= catching_up_now;
                let message = WatchRecordChangesResponse {
                    changes,
                    cursor: feed_cursor(&self.service.tokens, position),
                    caught_up,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return; // the client went away
                }
                last_sent = Some(Instant::now());
                progress_due = false;
            }
            if position < head {
                continue; // more history to replay
            }
            // New events wake the watcher (the shared reader also sees other replicas' writes);
            // otherwise it wakes only to send a message that falls due.
            let silent = last_sent.map_or(Duration::ZERO, |t| t.elapsed());
            let heartbeat_in = config.watch_heartbeat.saturating_sub(silent);
            let wait = if progress_due {
                PROGRESS_EVERY.min(heartbeat_in)
            } else {
                heartbeat_in
            };
            tokio::select! {
                () = self.registration.advanced() => {}
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => return,
                () = self.service.shutdown.cancelled() => return shutting_down(&tx).await,
            }
        }
    }

    /// A head, the next changes after `position` up to it for one message, and whether the
    /// message is full: from the shared window when it holds them, otherwise from the database.
    async fn next(&self, position: i64) -> Result<(i64, Vec<Version>, bool), sqlx::Error> {
        let shared =
            self.registration
                .take(position, &self.filter, PER_MESSAGE, PAGE_PAYLOAD_BUDGET);
        if let Some(Taken { head, rows, full }) = shared {
            return Ok((head, rows, full));
        }
        let head = self.service.store.head().await?;
        if head <= position {
            return Ok((head, Vec::new(), false));
        }
        let (rows, full) = self.read(position, head).await?;
        Ok((head, rows, full))
    }

    /// The next changes after `position` up to `head` in the database for one message, and
    /// whether the message is full. Rows are read one by one so that a message stops at its count
    /// or at the size budget without holding more than it sends.
    async fn read(&self, position: i64, head: i64) -> Result<(Vec<Version>, bool), sqlx::Error> {
        let mut stream = self.service.store.changes(
            &self.filter,
            position,
            head,
            PER_MESSAGE as i64,
            self.with_payload,
        );
        let mut rows = Vec::new();
        let mut bytes = 0;
        while let Some(version) = stream.next().await.transpose()? {
            let size = version.fields.payload.len();
            if !rows.is_empty() && bytes + size > PAGE_PAYLOAD_BUDGET {
                return Ok((rows, true)); // this row opens the next message
            }
            bytes += size;
            rows.push(version);
            if rows.len() == PER_MESSAGE {
                return Ok((rows, true));
            }
        }
        Ok((rows, false))
    }
}
