//! Appending to the log: one writer task commits queued entries in batches (group commit), so
//! the serialised section costs one commit per batch rather than per call.
//!
//! On PostgreSQL, batches of plain entries (the calls' own, with no break-glass event or review
//! to record) go through `postgres.rs`: the writer's own connection, three round trips per batch.
//! Every other batch, and every batch on SQLite, is written here through the shared pool.

mod postgres;

use std::sync::{Arc, RwLock};

use carerecord_contracts::access::v1::AuditLeaf;
use carerecord_platform::db::{Backend, Database};
use carerecord_platform::sql::{Value, insert_rows};
use prost::Message;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::break_glass::{insert_event, record_review};
use super::{Appended, Effect, Pending, Store, TreeCache};
use crate::domain::merkle;
use crate::error::Error;

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 256;

impl Store {
    /// The store, with its writer task (call within a Tokio runtime).
    pub fn new(db: Database) -> Self {
        let (appends, queue) = mpsc::channel(4 * MAX_BATCH);
        let cache = Arc::new(RwLock::new(TreeCache::default()));
        tokio::spawn(writer(db.clone(), cache.clone(), queue));
        Store { db, appends, cache }
    }

    /// Appends one entry (and its effect) durably; returns its index.
    ///
    /// Appends are group-committed: concurrent calls share one transaction, so the serialised
    /// section costs one commit per batch rather than per call.
    pub async fn append(&self, leaf: &AuditLeaf, effect: Effect) -> Result<Appended, Error> {
        let data = leaf.encode_to_vec();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            hash: merkle::leaf_hash(&data),
            data,
            entry_id: leaf.entry_id.clone(),
            time_micros: leaf
                .time
                .as_ref()
                .and_then(crate::domain::micros)
                .unwrap_or_default(),
            action: i64::from(leaf.action),
            patient_id: leaf.patient_id.clone(),
            patients: leaf
                .patients
                .iter()
                .map(|p| (p.patient_id.clone(), p.record_count))
                .collect(),
            effect,
            reply,
        };
        async {
            self.appends
                .send(pending)
                .await
                .map_err(|_| Error::AuditLogUnavailable)?;
            answer.await.map_err(|_| Error::AuditLogUnavailable)?
        }
        .instrument(tracing::info_span!("audit.append"))
        .await
    }
}

/// The single writer: drains queued appends into one transaction at a time.
async fn writer(db: Database, cache: Arc<RwLock<TreeCache>>, mut queue: mpsc::Receiver<Pending>) {
    let mut own = postgres::Writer::new(&db);
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let plain = batch.iter().all(|p| matches!(p.effect, Effect::None));
        let span = tracing::info_span!("audit.write_batch", entries = batch.len());
        let written = match own.as_mut() {
            Some(own) if plain => own.write(&batch).instrument(span).await,
            _ => write_batch(&db, &batch).instrument(span).await,
        };
        match written {
            Ok(results) => {
                if let Ok(mut cache) = cache.write() {
                    for (pending, result) in batch.iter().zip(&results) {
                        if let Ok(appended) = result
                            && cache.hashes.len() as i64 == appended.index
                        {
                            cache.hashes.push(pending.hash);
                            cache.frontier.push(pending.hash);
                        }
                    }
                }
                for (pending, result) in batch.into_iter().zip(results) {
                    let _ = pending.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = batch.len(), "audit append failed");
                for pending in batch {
                    let _ = pending.reply.send(Err(Error::AuditLogUnavailable));
                }
            }
        }
    }
}

/// Writes a batch in one transaction; an entry whose review lost an etag race is skipped (its
/// caller gets ETAG_MISMATCH) without disturbing the others or the index sequence.
async fn write_batch(
    db: &Database,
    batch: &[Pending],
) -> Result<Vec<Result<Appended, Error>>, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        // Serialises appends across replicas for the rest of this transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(6962)")
            .execute(&mut *tx)
            .await?;
    }
    let mut next: i64 = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    // Reviews first: one that lost an etag race gets no entry and no index.
    let mut results: Vec<Option<Result<Appended, Error>>> = Vec::with_capacity(batch.len());
    for pending in batch {
        if let Effect::Review {
            event_id,
            expected_etag,
            outcome,
            notes,
            reviewer,
        } = &pending.effect
        {
            let updated = record_review(
                &mut tx,
                event_id,
                expected_etag,
                *outcome,
                notes,
                reviewer,
                pending,
            )
            .await?;
            if !updated {
                results.push(Some(Err(Error::EtagMismatch)));
                continue;
            }
        }
        results.push(None);
    }
    // Then every entry of the batch in one multi-row insert.
    let writing: Vec<(usize, &Pending)> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| results[*i].is_none())
        .collect();
    if !writing.is_empty() {
        let entries = writing
            .iter()
            .enumerate()
            .map(|(offset, (_, pending))| {
                vec![
                    Value::Int(next + offset as i64),
                    Value::Text(pending.entry_id.clone()),
                    Value::Blob(pending.data.clone()),
                    Value::Blob(pending.hash.to_vec()),
                    Value::Int(pending.time_micros),
                    Value::Int(pending.action),
                    Value::Text(pending.patient_id.clone()),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO audit_entries (idx, entry_id, leaf_data, leaf_hash, time_micros, action, patient_id)",
            entries,
        )
        .await?;
        let named: Vec<(i64, &(String, i64))> = writing
            .iter()
            .enumerate()
            .flat_map(|(offset, (_, p))| p.patients.iter().map(move |n| (next + offset as i64, n)))
            .collect();
        let rows = named
            .into_iter()
            .map(|(idx, (patient_id, count))| {
                vec![
                    Value::Text(patient_id.clone()),
                    Value::Int(idx),
                    Value::Int(*count),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO audit_entry_patients (patient_id, idx, record_count)",
            rows,
        )
        .await?;
    }
    for (i, pending) in writing {
        if let Effect::BreakGlass(row) = &pending.effect {
            let mut row = (**row).clone();
            row.audit_index = next;
            insert_event(&mut tx, &row).await?;
        }
        results[i] = Some(Ok(Appended {
            index: next,
            entry_id: pending.entry_id.clone(),
        }));
        next += 1;
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(Error::AuditLogUnavailable)))
        .collect())
}
