//! The streaming RPCs: ExportRecords, WatchRecordChanges and ImportRecords.
//!
//! Server streams run in a task per call that feeds a small channel: the channel's capacity and
//! gRPC flow control bound memory (a slow reader slows the producer), and a task ends as soon as
//! its client goes away, leaving nothing behind (exports and watches only read).

use std::pin::Pin;
use std::time::Duration;

use carerecord_contracts::common::v1::FieldViolation;
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{
    ExportRecordsRequest, ExportRecordsResponse, ImportRecordsRequest, ImportRecordsResponse,
    ImportRejection, ImportRejectionReason, ImportedRecord, RecordChange,
    WatchRecordChangesRequest, WatchRecordChangesResponse,
};
use carerecord_platform::db::now_micros;
use carerecord_platform::errors::Violations;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::domain::ids::{UUID_EXPECTED, parse_uuid};
use crate::domain::record::{self, actor, validate_new};
use crate::error::Error;
use crate::service::{
    PAGE_PAYLOAD_BUDGET, RecordsService, labels, period, record_message, with_payload,
};
use crate::store::{self, CreateOutcome, Filter, NewRecord, Param, Turns, Version};
use crate::tokens::QueryKey;

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Records or changes per message at most.
const PER_MESSAGE: usize = 100;
/// Rows per export query: large enough to amortise the query, small enough to bound memory.
const EXPORT_CHUNK: i64 = 500;
/// Import items per message at most (the contract's limit).
const MAX_ITEMS_PER_MESSAGE: usize = 1000;
/// Payload bytes per import transaction at most.
const IMPORT_BATCH_BYTES: usize = 16 << 20;
/// Items per import transaction: two messages' worth, as many as the store writes in one.
/// Larger transactions share a commit and a hand-over of the feed head lock (measured here,
/// 200,000 items: 1,000 a transaction 25-31k records/s, 2,000 38-43k, 4,000 43k while holding
/// the lock twice as long).
const IMPORT_WRITE_ITEMS: usize = store::MAX_CREATES_PER_WRITE;
/// Import transactions written at once: while one holds the feed head lock, the next copies its
/// request ids and waits its turn (one at a time: 22k records/s here at 1,000 items a
/// transaction; two: 25-29k; three 28-31k; at 2,000 items two and three are alike).
const WRITES_IN_FLIGHT: usize = 2;
/// Records accepted by one import from which the planner's statistics are refreshed at its end.
const ANALYZE_AFTER_IMPORTED: i64 = 10_000;
const MAX_REJECTIONS: usize = 1000;
const MAX_ACCEPTED_IDS: usize = 100_000;
/// Filtered watchers get a progress message for skipped events at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

fn channel<T: Send + 'static>() -> (mpsc::Sender<Result<T, Status>>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(2);
    (tx, Box::pin(ReceiverStream::new(rx)))
}

/// Validates a list of UUIDs (at most `max`), lower-cased and deduplicated.
fn uuid_list(
    values: &[String],
    field: &str,
    max: usize,
    violations: &mut Violations,
) -> Vec<String> {
    if values.len() > max {
        violations.add(field, format!("at most {max} ids, got {}", values.len()));
        return Vec::new();
    }
    let mut ids = Vec::with_capacity(values.len());
    for (i, raw) in values.iter().enumerate() {
        match parse_uuid(raw) {
            Some(id) => ids.push(id),
            None => violations.add(format!("{field}[{i}]"), UUID_EXPECTED),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub async fn export(
    service: &RecordsService,
    request: ExportRecordsRequest,
) -> Result<ResponseStream<ExportRecordsResponse>, Error> {
    let mut violations = Violations::new();
    let mut query = QueryKey::new("export");
    let mut filter = Filter::default();
    match &request.scope {
        None => violations.add("scope", "required: set patients or updated_between"),
        Some(Scope::Patients(list)) => {
            if list.patient_ids.is_empty() {
                violations.add("patients.patient_ids", "at least one patient id");
            }
            filter.patient_ids = uuid_list(
                &list.patient_ids,
                "patients.patient_ids",
                1000,
                &mut violations,
            );
            query.text("patients").set(&filter.patient_ids);
        }
        Some(Scope::UpdatedBetween(window)) => {
            (filter.updated_from, filter.updated_to) =
                period(Some(window), "updated_between", &mut violations);
            query
                .text("updated_between")
                .optional(filter.updated_from)
                .optional(filter.updated_to);
        }
    }
    record::check_type_filter(
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
    Error::check(violations)?;
    query
        .set(&filter.resource_types)
        .set(&filter.excluded_data_classes)
        .int(i64::from(filter.include_retracted))
        .int(i64::from(request.view));
    // Position: the snapshot and the creation sequence of the last record sent.
    let (snapshot, mut after) = if request.resume_cursor.is_empty() {
        (service.store.head().await?, 0)
    } else {
        let position = service
            .tokens
            .verify(&query, &request.resume_cursor, 2, "resume_cursor")?;
        (position[0], position[1])
    };
    filter.snapshot = snapshot;

    let (tx, stream) = channel();
    let service = service.clone();
    tokio::spawn(async move {
        let watch_cursor = service.tokens.feed_cursor(snapshot);
        let message = |records: Vec<Version>, after: i64| ExportRecordsResponse {
            records: records.into_iter().map(record_message).collect(),
            resume_cursor: service.tokens.issue(&query, &[snapshot, after]),
            watch_cursor: watch_cursor.clone(),
        };
        let mut sent_any = false;
        loop {
            let mut sql = store::select(with_payload);
            filter.push_conditions(&mut sql);
            sql.push(" AND creation_seq > ").bind(Param::Int(after));
            sql.push(" ORDER BY creation_seq LIMIT ")
                .bind(Param::Int(EXPORT_CHUNK));
            let mut rows = service.store.stream(&sql);
            let mut batch = Vec::with_capacity(PER_MESSAGE);
            let mut batch_bytes = 0;
            let mut fetched = 0;
            loop {
                let row = tokio::select! {
                    row = rows.next() => row,
                    () = service.shutdown.cancelled() => {
                        let _ = tx.send(Err(Error::Unavailable("shutting down".into()).into())).await;
                        return;
                    }
                };
                let version = match row {
                    None => break,
                    Some(Ok(version)) => version,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(Error::from(e).into())).await;
                        return;
                    }
                };
                fetched += 1;
                let size = version.fields.payload.len();
                if !batch.is_empty()
                    && (batch.len() == PER_MESSAGE || batch_bytes + size > PAGE_PAYLOAD_BUDGET)
                {
                    let last = std::mem::take(&mut batch);
                    if tx.send(Ok(message(last, after))).await.is_err() {
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
                if tx.send(Ok(message(batch, after))).await.is_err() {
                    return;
                }
                sent_any = true;
            }
            if done {
                return;
            }
        }
    });
    Ok(stream)
}

pub async fn watch(
    service: &RecordsService,
    request: WatchRecordChangesRequest,
) -> Result<ResponseStream<WatchRecordChangesResponse>, Error> {
    let mut violations = Violations::new();
    if request.start_at_head && !request.after_cursor.is_empty() {
        violations.add("after_cursor", "must be empty when start_at_head is set");
    }
    let patient_ids = uuid_list(&request.patient_ids, "patient_ids", 1000, &mut violations);
    record::check_type_filter(
        &request.resource_types,
        "resource_types",
        50,
        &mut violations,
    );
    let with_payload = with_payload(request.view, &mut violations);
    let cursor = if request.after_cursor.is_empty() {
        None
    } else {
        match service
            .tokens
            .parse_feed_cursor(&request.after_cursor, "after_cursor")
        {
            Ok(seq) => Some(seq),
            Err(Error::Invalid(v)) => {
                for (field, description) in v.iter() {
                    violations.add(field, description);
                }
                None
            }
            Err(e) => return Err(e),
        }
    };
    Error::check(violations)?;
    // Subscribe before reading the head, so no local commit after it goes unnoticed.
    let mut commits = service.store.subscribe();
    let head_at_call = service.store.head().await?;
    let mut position = match cursor {
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
    let service = service.clone();
    let resource_types = request.resource_types;
    tokio::spawn(async move {
        let config = service.config.clone();
        let mut caught_up = false;
        let mut last_sent: Option<Instant> = None;
        let mut progress_due = false;
        loop {
            let head = match service.store.head().await {
                Ok(head) => head,
                Err(e) => {
                    let _ = tx.send(Err(Error::from(e).into())).await;
                    return;
                }
            };
            let mut changes = Vec::new();
            if head > position {
                let mut sql = store::select(with_payload);
                sql.push(" WHERE seq > ")
                    .bind(Param::Int(position))
                    .push(" AND seq <= ")
                    .bind(Param::Int(head));
                if !patient_ids.is_empty() {
                    sql.push(" AND ").in_list("patient_id", &patient_ids);
                }
                if !resource_types.is_empty() {
                    sql.push(" AND ").in_list("resource_type", &resource_types);
                }
                sql.push(" ORDER BY seq LIMIT ")
                    .bind(Param::Int(PER_MESSAGE as i64));
                // Rows are read one by one so that a message stops at 100 changes or at the
                // size budget without holding more than it sends.
                let mut rows = Vec::new();
                let mut bytes = 0;
                let mut full = false;
                let mut stream = service.store.stream(&sql);
                while let Some(row) = stream.next().await {
                    let version = match row {
                        Ok(version) => version,
                        Err(e) => {
                            let _ = tx.send(Err(Error::from(e).into())).await;
                            return;
                        }
                    };
                    let size = version.fields.payload.len();
                    if !rows.is_empty() && bytes + size > PAGE_PAYLOAD_BUDGET {
                        full = true; // this row opens the next message
                        break;
                    }
                    bytes += size;
                    rows.push(version);
                    if rows.len() == PER_MESSAGE {
                        full = true;
                        break;
                    }
                }
                drop(stream);
                // A full message ends at its last change; otherwise every event up to head is accounted for.
                position = match rows.last() {
                    Some(last) if full => last.seq,
                    _ => head,
                };
                changes = rows
                    .into_iter()
                    .map(|v| change_message(&service, v))
                    .collect();
                progress_due |= changes.is_empty();
            }
            let catching_up_now = !caught_up && position >= head_at_call;
            let heartbeat_due = last_sent.is_none_or(|t| t.elapsed() >= config.watch_heartbeat);
            let progress_now =
                progress_due && last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if !changes.is_empty() || catching_up_now || heartbeat_due || progress_now {
                caught_up |= catching_up_now;
                let message = WatchRecordChangesResponse {
                    changes,
                    cursor: service.tokens.feed_cursor(position),
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
            let wait = if progress_due {
                PROGRESS_EVERY.min(config.watch_poll_interval)
            } else {
                config.watch_poll_interval
            };
            tokio::select! {
                _ = commits.changed() => {}
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => return,
                () = service.shutdown.cancelled() => {
                    let _ = tx.send(Err(Error::Unavailable("shutting down".into()).into())).await;
                    return;
                }
            }
        }
    });
    Ok(stream)
}

fn change_message(service: &RecordsService, v: Version) -> RecordChange {
    RecordChange {
        sequence: v.seq,
        cursor: service.tokens.feed_cursor(v.seq),
        change_type: v.change_type as i32,
        record_id: v.record_id.clone(),
        patient_id: v.fields.patient_id.clone(),
        version: v.version,
        change_time: Some(record::micros_timestamp(v.update_time)),
        requester: Some((&v.requester).into()),
        record: Some(record_message(v)),
    }
}

/// A batch of import items being written: their indexes and the write.
type Write = tokio::task::JoinHandle<Result<(Vec<i64>, Vec<NewRecord>, Vec<CreateOutcome>), Error>>;

/// The tally of an import stream.
#[derive(Default)]
struct Import {
    response: ImportRecordsResponse,
    return_ids: bool,
    /// Valid items waiting for the next transaction, with their index.
    pending: Vec<(i64, NewRecord)>,
    pending_bytes: usize,
    /// Batches being written, oldest first, while the next one is received and validated.
    in_flight: std::collections::VecDeque<Write>,
    /// Their commit order.
    turns: Turns,
}

impl Import {
    fn reject(
        &mut self,
        index: i64,
        request_id: &str,
        reason: ImportRejectionReason,
        message: String,
        violations: Vec<FieldViolation>,
    ) {
        self.response.rejected_count += 1;
        self.response.rejections.push(ImportRejection {
            index,
            request_id: request_id.to_owned(),
            reason: reason as i32,
            message,
            field_violations: violations,
        });
        // Keeping the lowest indexes at any time keeps the first ones overall.
        if self.response.rejections.len() >= 2 * MAX_REJECTIONS {
            self.keep_first_rejections();
        }
    }

    fn keep_first_rejections(&mut self) {
        let rejections = &mut self.response.rejections;
        rejections.sort_by_key(|r| r.index);
        rejections.truncate(MAX_REJECTIONS);
    }

    /// Waits for the oldest batch being written, if any, and counts its outcomes.
    async fn settle(&mut self) -> Result<(), Error> {
        let Some(write) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let (indexes, items, outcomes) = write
            .await
            .map_err(|e| Error::Internal(format!("import batch task: {e}")))??;
        for ((index, item), outcome) in indexes.into_iter().zip(&items).zip(outcomes) {
            let (record_id, deduplicated) = match outcome {
                CreateOutcome::Created(version) => (version.record_id, false),
                CreateOutcome::Deduplicated { record_id } => (record_id, true),
                CreateOutcome::RequestIdReused => {
                    let request_id = item.request_id.as_deref().unwrap_or_default();
                    let message =
                        format!("request_id {request_id} was already used with a different record");
                    self.reject(
                        index,
                        request_id,
                        ImportRejectionReason::RequestIdReused,
                        message,
                        Vec::new(),
                    );
                    continue;
                }
            };
            self.response.accepted_count += 1;
            self.response.deduplicated_count += i64::from(deduplicated);
            if self.return_ids {
                if self.response.accepted_records.len() < MAX_ACCEPTED_IDS {
                    self.response.accepted_records.push(ImportedRecord {
                        index,
                        record_id,
                        deduplicated,
                    });
                } else {
                    self.response.accepted_records_truncated = true;
                }
            }
        }
        Ok(())
    }

    /// Starts writing the pending items. Up to [`WRITES_IN_FLIGHT`] batches are written at once,
    /// in turns that make them commit in index order, while the stream keeps being read.
    async fn flush(&mut self, service: &RecordsService) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= WRITES_IN_FLIGHT {
            self.settle().await?;
        }
        let (indexes, items): (Vec<i64>, Vec<NewRecord>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        self.pending_bytes = 0;
        let store = service.store.clone();
        let turn = self.turns.next_turn();
        self.in_flight.push_back(tokio::spawn(async move {
            let outcomes = store.create_batch(&items, turn).await?;
            Ok((indexes, items, outcomes))
        }));
        Ok(())
    }

    /// Waits for every batch being written.
    async fn settle_all(&mut self) -> Result<(), Error> {
        while !self.in_flight.is_empty() {
            self.settle().await?;
        }
        Ok(())
    }
}

pub async fn import(
    service: &RecordsService,
    mut stream: Streaming<ImportRecordsRequest>,
) -> Result<ImportRecordsResponse, Status> {
    let Some(first) = stream.message().await? else {
        return Err(Error::invalid(
            "items",
            "the stream has no message: send at least one, with the requester",
        )
        .into());
    };
    let mut violations = Violations::new();
    let requester = actor(first.requester.as_ref(), "requester", &mut violations);
    Error::check(violations)?;
    let mut import = Import {
        return_ids: first.return_record_ids,
        ..Import::default()
    };
    let mut next_index = 0i64;
    let mut message = Some(first);
    while let Some(request) = message {
        if request.items.len() > MAX_ITEMS_PER_MESSAGE {
            return Err(Error::invalid(
                "items",
                format!(
                    "at most {MAX_ITEMS_PER_MESSAGE} items per message, got {}",
                    request.items.len()
                ),
            )
            .into());
        }
        let now = now_micros();
        for item in request.items {
            let index = next_index;
            next_index += 1;
            let mut violations = Violations::new();
            let request_id = if item.request_id.is_empty() {
                None
            } else {
                parse_uuid(&item.request_id).or_else(|| {
                    violations.add("request_id", UUID_EXPECTED);
                    None
                })
            };
            let fields = match &item.record {
                Some(record) => Some(validate_new(
                    record,
                    "record",
                    &service.config.rules,
                    now,
                    &mut violations,
                )),
                None => {
                    violations.add("record", "required");
                    None
                }
            };
            match fields {
                Some(fields) if violations.is_empty() => {
                    import.pending_bytes += fields.payload.len();
                    import.pending.push((
                        index,
                        NewRecord {
                            request_id,
                            fields,
                            requester: requester.clone(),
                        },
                    ));
                }
                _ => {
                    let field_violations: Vec<FieldViolation> = violations
                        .iter()
                        .map(|(field, description)| FieldViolation {
                            field: field.to_owned(),
                            description: description.to_owned(),
                        })
                        .collect();
                    let summary = field_violations
                        .first()
                        .map(|v| format!("invalid record: {}: {}", v.field, v.description))
                        .unwrap_or_default();
                    import.reject(
                        index,
                        &item.request_id,
                        ImportRejectionReason::InvalidRecord,
                        summary,
                        field_violations,
                    );
                }
            }
            if import.pending.len() >= IMPORT_WRITE_ITEMS
                || import.pending_bytes >= IMPORT_BATCH_BYTES
            {
                import.flush(service).await?;
            }
        }
        message = stream.message().await?;
    }
    import.flush(service).await?;
    import.settle_all().await?;
    // ANALYZE samples a bounded number of rows, so this costs about the same for any table size
    // (0.5 s at 250,000 records here); the import is committed either way.
    if import.response.accepted_count >= ANALYZE_AFTER_IMPORTED
        && let Err(e) = service.store.refresh_statistics().await
    {
        tracing::warn!(error = %e, "refreshing statistics after an import failed");
    }
    import.keep_first_rejections();
    let mut response = import.response;
    response.rejections_truncated = response.rejected_count > response.rejections.len() as i64;
    Ok(response)
}
