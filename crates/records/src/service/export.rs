//! ExportRecords: the records of a scope as of a snapshot, streamed in creation order.

use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{ExportRecordsRequest, ExportRecordsResponse};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::QueryKey;
use tokio_stream::StreamExt;

use super::cursor::feed_cursor;
use super::messages::record_message;
use super::paging::{PAGE_PAYLOAD_BUDGET, issue, resume};
use super::request::{id_list, labels, period, with_payload};
use super::state::RecordsService;
use super::stream::{PER_MESSAGE, ResponseStream, Sender, channel, fail, shutting_down};
use crate::domain::record::check_type_filter;
use crate::error::Error;
use crate::store::{Filter, Version};

/// Rows per export query: large enough to amortise the query, small enough to bound memory.
const EXPORT_CHUNK: i64 = 500;

/// An ExportRecords request, parsed.
struct ExportQuery {
    /// Every condition but the snapshot, which comes from the resume cursor or the feed head.
    filter: Filter,
    with_payload: bool,
    /// What the resume cursors of this export are bound to.
    key: QueryKey,
}

impl ExportQuery {
    fn parse(request: &ExportRecordsRequest) -> Result<ExportQuery, Violations> {
        let mut violations = Violations::new();
        let mut key = QueryKey::new("export");
        let mut filter = Filter::default();
        match &request.scope {
            None => violations.add("scope", "required: set patients or updated_between"),
            Some(Scope::Patients(list)) => {
                if list.patient_ids.is_empty() {
                    violations.add("patients.patient_ids", "at least one patient id");
                }
                filter.patient_ids = id_list(
                    &list.patient_ids,
                    "patients.patient_ids",
                    1000,
                    &mut violations,
                );
                key.text("patients").set(&filter.patient_ids);
            }
            Some(Scope::UpdatedBetween(window)) => {
                (filter.updated_from, filter.updated_to) =
                    period(Some(window), "updated_between", &mut violations);
                key.text("updated_between")
                    .optional(filter.updated_from)
                    .optional(filter.updated_to);
            }
        }
        check_type_filter(
            &request.resource_types,
            "resource_types",
            50,
            &mut violations,
        );
        filter.resource_types = request.resource_types.clone();
        filter.excluded_data_classes = labels(
            &request.excluded_data_classes,
            "excluded_data_classes",
            &mut violations,
        );
        filter.include_retracted = request.include_retracted;
        let with_payload = with_payload(request.view, &mut violations);
        violations.into_result()?;
        key.set(&filter.resource_types)
            .set(&filter.excluded_data_classes)
            .flag(filter.include_retracted)
            .int(i64::from(request.view));
        Ok(ExportQuery {
            filter,
            with_payload,
            key,
        })
    }
}

impl RecordsService {
    pub(super) async fn export(
        &self,
        request: ExportRecordsRequest,
    ) -> Result<ResponseStream<ExportRecordsResponse>, Error> {
        let mut query = ExportQuery::parse(&request)?;
        // Position: the snapshot and the creation sequence of the last record sent.
        let cursor = &request.resume_cursor;
        let [snapshot, after] = match resume(&self.tokens, &query.key, cursor, "resume_cursor")? {
            Some(position) => position,
            None => [self.store.head().await?, 0],
        };
        query.filter.snapshot = snapshot;
        let (tx, stream) = channel();
        let service = self.clone();
        tokio::spawn(async move {
            let export = Export {
                watch_cursor: feed_cursor(&service.tokens, snapshot),
                service: &service,
                query,
            };
            export.send(&tx, after).await;
        });
        Ok(stream)
    }
}

/// One export being streamed.
struct Export<'a> {
    service: &'a RecordsService,
    query: ExportQuery,
    watch_cursor: String,
}

impl Export<'_> {
    /// A message of `records`, resumable after creation sequence `after`.
    fn message(&self, records: Vec<Version>, after: i64) -> ExportRecordsResponse {
        ExportRecordsResponse {
            records: records.into_iter().map(record_message).collect(),
            resume_cursor: issue(
                &self.service.tokens,
                &self.query.key,
                &[self.query.filter.snapshot, after],
            ),
            watch_cursor: self.watch_cursor.clone(),
        }
    }

    /// Sends the records created after sequence `after`, chunk by chunk, until the client goes
    /// away, the service shuts down, or the export is complete.
    async fn send(&self, tx: &Sender<ExportRecordsResponse>, mut after: i64) {
        let service = self.service;
        let mut sent_any = false;
        loop {
            let mut rows = service.store.export_chunk(
                &self.query.filter,
                after,
                EXPORT_CHUNK,
                self.query.with_payload,
            );
            let mut batch = Vec::with_capacity(PER_MESSAGE);
            let mut batch_bytes = 0;
            let mut fetched = 0;
            loop {
                let row = tokio::select! {
                    row = rows.next() => row,
                    () = service.shutdown.cancelled() => return shutting_down(tx).await,
                };
                let version = match row {
                    None => break,
                    Some(Ok(version)) => version,
                    Some(Err(e)) => return fail(tx, e).await,
                };
                fetched += 1;
                let size = version.fields.payload.len();
                if !batch.is_empty()
                    && (batch.len() == PER_MESSAGE || batch_bytes + size > PAGE_PAYLOAD_BUDGET)
                {
                    let full = std::mem::take(&mut batch);
                    if tx.send(Ok(self.message(full, after))).await.is_err() {
                        return; // the client went away
                    }
                    sent_any = true;
                    batch_bytes = 0;
                }
                after = version.creation_seq;
                batch_bytes += size;
                batch.push(version);
            }
            drop(rows);
            let done = fetched < EXPORT_CHUNK;
            if !batch.is_empty() || (done && !sent_any) {
                if tx.send(Ok(self.message(batch, after))).await.is_err() {
                    return;
                }
                sent_any = true;
            }
            if done {
                return;
            }
        }
    }
}
