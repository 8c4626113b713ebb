//! The change feed: WatchPatientChanges (replayed from a cursor, then followed live) and
//! ListPatientChanges (who the feed touched after a cursor, in one call).

use carerecord_contracts::common::v1::Identifier;
use carerecord_contracts::identity::v1::{
    ListPatientChangesRequest, ListPatientChangesResponse, PatientChange,
    WatchPatientChangesRequest, WatchPatientChangesResponse,
};
use carerecord_platform::change_log::{self, Listing};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;
use tokio::sync::mpsc::Sender;
use tonic::Status;

use super::{IdentityService, WatchStream};
use crate::convert::feed_event;
use crate::domain::validate::NHS_NUMBER_SYSTEM;
use crate::error::Error;
use crate::store::feed::ChangeRow;

/// What feed cursors are bound to. Integrators keep cursors durably, so these bytes and the
/// cursor's position (the sequence, 8 bytes big-endian) never change.
const FEED_QUERY: &[u8] = b"carerecord.identity.v1/feed";

/// Events read from the store at a time.
const FEED_PAGE: i64 = 500;

/// Events buffered for a slow client before the feed waits for it.
const STREAM_BUFFER: usize = 256;

fn cursor(tokens: &PageTokens, seq: i64) -> String {
    change_log::cursor(tokens, FEED_QUERY, seq)
}

/// The sequence a cursor resumes after.
fn resume_after(tokens: &PageTokens, cursor: &str) -> Result<i64, Error> {
    change_log::resume_after(tokens, FEED_QUERY, cursor).ok_or_else(|| {
        Error::invalid(
            "after_cursor",
            "is malformed or was not issued by this index",
        )
    })
}

impl IdentityService {
    pub(super) async fn list_changes(
        &self,
        request: ListPatientChangesRequest,
    ) -> Result<ListPatientChangesResponse, Error> {
        let mut v = Violations::new();
        let listing = Listing::parse(
            &mut v,
            &self.tokens,
            FEED_QUERY,
            &request.after_cursor,
            request.page_size,
        );
        let Some(listing) = listing else {
            return Err(v.into());
        };
        let (rows, listed) = match listing {
            Listing::Head => (Vec::new(), vec![self.store.feed_head().await?]),
            Listing::After { sequence, limit } => {
                let rows = self.store.feed_changes(sequence, limit).await?;
                let listed = rows.iter().map(|row| row.seq).collect();
                (rows, listed)
            }
        };
        let (next_cursor, more) = listing.answer(&self.tokens, FEED_QUERY, &listed);
        Ok(ListPatientChangesResponse {
            changes: rows.into_iter().map(patient_change).collect(),
            next_cursor,
            more,
        })
    }

    pub(super) fn watch(&self, request: WatchPatientChangesRequest) -> Result<WatchStream, Error> {
        let after = resume_after(&self.tokens, &request.after_cursor)?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().follow(after, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Sends every event after `after`, then each new one as it commits, until the client goes
    /// away or the server shuts down.
    async fn follow(self, mut after: i64, tx: Sender<Result<WatchPatientChangesResponse, Status>>) {
        let poll = self.settings.watch_poll_interval;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shutdown.is_cancelled() {
                let _ = tx
                    .send(Err(carerecord_platform::errors::unavailable(
                        "the change feed (server shutting down)",
                    )))
                    .await;
                return;
            }
            let rows = match self.store.feed(after, FEED_PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let full = rows.len() as i64 == FEED_PAGE;
            for row in rows {
                after = row.seq;
                let event = feed_event(row, cursor(&self.tokens, after));
                if tx.send(Ok(event)).await.is_err() {
                    return; // the client went away
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(poll) => {}
                () = tx.closed() => return,
                () = self.shutdown.cancelled() => {}
            }
        }
    }
}

/// A version as ListPatientChanges lists it: the patient, the merge's other patient, and the
/// identifiers the patient now holds (its NHS number among them).
fn patient_change(row: ChangeRow) -> PatientChange {
    let mut identifiers = row.patient.identifiers;
    if !row.patient.nhs_number.is_empty() {
        identifiers.push(Identifier {
            system: NHS_NUMBER_SYSTEM.to_owned(),
            value: row.patient.nhs_number,
        });
    }
    PatientChange {
        sequence: row.seq,
        patient_id: row.patient.patient_id,
        related_patient_id: row.related_patient_id,
        identifiers,
        change_type: row.change_type as i32,
    }
}
