//! ImportRecords: a client stream of items, validated one by one and written in transactions
//! that commit in item order, while the next ones are received.

use std::collections::VecDeque;

use carerecord_contracts::common::v1::FieldViolation;
use carerecord_contracts::records::v1::{
    ImportItem, ImportRecordsRequest, ImportRecordsResponse, ImportRejection,
    ImportRejectionReason, ImportedRecord,
};
use carerecord_platform::db::now_micros;
use carerecord_platform::errors::Violations;
use tokio::task::JoinHandle;
use tonic::Streaming;

use super::state::RecordsService;
use crate::domain::record::{Actor, RecordRules, actor, validate_new};
use crate::error::Error;
use crate::store::{CreateOutcome, MAX_CREATES_PER_WRITE, NewRecord, Turns};

/// Import items per message at most (the contract's limit).
const MAX_ITEMS_PER_MESSAGE: usize = 1000;
/// Payload bytes per import transaction at most.
const IMPORT_BATCH_BYTES: usize = 16 << 20;
/// Items per import transaction: two messages' worth, as many as the store writes in one. Larger
/// transactions share a commit and a hand-over of the feed head lock, but hold the lock longer.
const IMPORT_WRITE_ITEMS: usize = MAX_CREATES_PER_WRITE;
/// Import transactions written at once: while one holds the feed head lock, the next copies its
/// request ids and waits its turn.
const WRITES_IN_FLIGHT: usize = 2;
/// Records accepted by one import from which the planner's statistics are refreshed at its end.
const ANALYZE_AFTER_IMPORTED: i64 = 10_000;
const MAX_REJECTIONS: usize = 1000;
const MAX_ACCEPTED_IDS: usize = 100_000;

impl RecordsService {
    pub(super) async fn import(
        &self,
        mut stream: Streaming<ImportRecordsRequest>,
    ) -> Result<ImportRecordsResponse, Error> {
        let Some(first) = stream.message().await.map_err(Error::Stream)? else {
            return Err(Error::invalid(
                "items",
                "the stream has no message: send at least one, with the requester",
            ));
        };
        let mut violations = Violations::new();
        let requester = actor(first.requester.as_ref(), "requester", &mut violations);
        violations.into_result()?;
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
                ));
            }
            let now = now_micros();
            for item in request.items {
                let index = next_index;
                next_index += 1;
                match new_record(&item, &requester, &self.config.rules, now) {
                    Ok(record) => {
                        import.pending_bytes += record.fields.payload.len();
                        import.pending.push((index, record));
                    }
                    Err(violations) => import.reject_invalid(index, &item.request_id, &violations),
                }
                if import.pending.len() >= IMPORT_WRITE_ITEMS
                    || import.pending_bytes >= IMPORT_BATCH_BYTES
                {
                    import.flush(self).await?;
                }
            }
            message = stream.message().await.map_err(Error::Stream)?;
        }
        import.flush(self).await?;
        import.settle_all().await?;
        // ANALYZE samples a bounded number of rows, so this costs about the same for any table
        // size; the import is committed either way.
        if import.response.accepted_count >= ANALYZE_AFTER_IMPORTED
            && let Err(e) = self.store.refresh_statistics().await
        {
            tracing::warn!(error = %e, "refreshing statistics after an import failed");
        }
        import.keep_first_rejections();
        let mut response = import.response;
        response.rejections_truncated = response.rejected_count > response.rejections.len() as i64;
        Ok(response)
    }
}

/// The record an import item asks for, or why it is refused.
fn new_record(
    item: &ImportItem,
    requester: &Actor,
    rules: &RecordRules,
    now: i64,
) -> Result<NewRecord, Violations> {
    let mut violations = Violations::new();
    let request_id = violations
        .optional_id("request_id", &item.request_id)
        .map(String::from);
    let Some(record) = &item.record else {
        violations.add("record", "required");
        return Err(violations);
    };
    let fields = validate_new(record, "record", rules, now, &mut violations);
    violations.into_result()?;
    Ok(NewRecord {
        request_id,
        fields,
        requester: requester.clone(),
    })
}

/// A batch of import items being written: their indexes and the write.
type Write = JoinHandle<Result<(Vec<i64>, Vec<NewRecord>, Vec<CreateOutcome>), Error>>;

/// The tally of an import stream.
#[derive(Default)]
struct Import {
    response: ImportRecordsResponse,
    return_ids: bool,
    /// Valid items waiting for the next transaction, with their index.
    pending: Vec<(i64, NewRecord)>,
    pending_bytes: usize,
    /// Batches being written, oldest first, while the next one is received and validated.
    in_flight: VecDeque<Write>,
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

    /// Rejects an item that is not a valid record, summarised by its first violation.
    fn reject_invalid(&mut self, index: i64, request_id: &str, violations: &Violations) {
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
        self.reject(
            index,
            request_id,
            ImportRejectionReason::InvalidRecord,
            summary,
            field_violations,
        );
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
