//! The audit log store (both dialects): append-only leaves with their hashes, signed tree heads,
//! audit keys, and break-glass events with their reviews.
//!
//! Appends are serialised (a process-wide lock, plus a transaction-scoped advisory lock on
//! PostgreSQL for replicas) so leaf indexes are consecutive with no gaps; the primary key on
//! `idx` is the last line of defence.

use std::sync::{Arc, RwLock};

use carerecord_contracts::access::v1::{AuditLeaf, SignedTreeHead};
use carerecord_platform::db::{Backend, Database};
use prost::Message;
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use crate::domain::merkle::{self, Frontier, Hash};
use crate::error::Error;

/// A stored audit entry.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub index: i64,
    pub entry_id: String,
    pub leaf_data: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

/// A break-glass event row.
#[derive(Debug, Clone, Default)]
pub struct BreakGlassRow {
    pub event_id: String,
    pub audit_index: i64,
    pub time_micros: i64,
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
    pub client_id: String,
    pub patient_id: String,
    pub reason: String,
    pub outcome: i64,
    pub returned_count: i64,
    pub withheld_count: i64,
    pub version: i64,
    pub etag: String,
    pub review_outcome: i64,
    pub review_notes: String,
    pub reviewer_user_id: String,
    pub reviewer_organisation_ods_code: String,
    pub reviewer_role_code: String,
    pub reviewer_display_name: String,
    pub review_time_micros: i64,
    pub review_entry_id: String,
}

/// What else an append changes, atomically with it.
#[derive(Debug, Clone)]
pub enum Effect {
    None,
    /// Record a break-glass event for the entry being appended.
    BreakGlass(Box<BreakGlassRow>),
    /// Record a review on an event, if its etag is still `expected_etag`.
    Review {
        event_id: String,
        expected_etag: String,
        outcome: i64,
        notes: String,
        reviewer: carerecord_contracts::common::v1::Requester,
    },
}

/// Where an entry landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub index: i64,
    pub entry_id: String,
}

#[derive(Default)]
struct TreeCache {
    hashes: Vec<Hash>,
    frontier: Frontier,
}

/// Filters of a break-glass listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub start_micros: Option<i64>,
    pub end_micros: Option<i64>,
    /// 0 all, 1 unreviewed, 2 reviewed.
    pub review_filter: i64,
    pub patient_ids: Vec<String>,
    pub after_index: i64,
    pub limit: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    appends: mpsc::Sender<Pending>,
    cache: Arc<RwLock<TreeCache>>,
}

/// An entry waiting for the writer.
struct Pending {
    data: Vec<u8>,
    hash: Hash,
    entry_id: String,
    time_micros: i64,
    action: i64,
    patient_id: String,
    effect: Effect,
    reply: oneshot::Sender<Result<Appended, Error>>,
}

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 256;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db.backend)
            .finish_non_exhaustive()
    }
}

const ENTRY_COLUMNS: &str = "idx, entry_id, leaf_data, leaf_hash";
const EVENT_COLUMNS: &str = "event_id, audit_index, time_micros, user_id, organisation_ods_code, role_code, \
     display_name, client_id, patient_id, reason, outcome, returned_count, withheld_count, version, etag, \
     review_outcome, review_notes, reviewer_user_id, reviewer_organisation_ods_code, reviewer_role_code, \
     reviewer_display_name, review_time_micros, review_entry_id";

fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// The store, with its writer task (call within a Tokio runtime).
    pub fn new(db: Database) -> Self {
        let (appends, queue) = mpsc::channel(4 * MAX_BATCH);
        let cache = Arc::new(RwLock::new(TreeCache::default()));
        tokio::spawn(writer(db.clone(), cache.clone(), queue));
        Store { db, appends, cache }
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Checks the log can be written to (a cheap round trip), before a stream sends data.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT COUNT(*) FROM audit_keys")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(())
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
            effect,
            reply,
        };
        self.appends
            .send(pending)
            .await
            .map_err(|_| Error::AuditLogUnavailable)?;
        answer.await.map_err(|_| Error::AuditLogUnavailable)?
    }

    /// The log's current size.
    pub async fn size(&self) -> Result<i64, Error> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
                .fetch_one(&self.db.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// The stored leaf hashes of the first `size` entries (cached; appends by other replicas are
    /// loaded on demand).
    pub async fn leaf_hashes(&self, size: i64) -> Result<Vec<Hash>, Error> {
        self.load_cache(size).await?;
        let cache = self
            .cache
            .read()
            .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
        let size = usize::try_from(size).unwrap_or(0).min(cache.hashes.len());
        Ok(cache.hashes[..size].to_vec())
    }

    /// The root of the first `size` entries.
    pub async fn root(&self, size: i64) -> Result<Hash, Error> {
        self.load_cache(size).await?;
        {
            let cache = self
                .cache
                .read()
                .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
            if cache.frontier.size() == u64::try_from(size).unwrap_or(0) {
                return Ok(cache.frontier.root());
            }
        }
        Ok(merkle::root(&self.leaf_hashes(size).await?))
    }

    async fn load_cache(&self, size: i64) -> Result<(), Error> {
        let have = self
            .cache
            .read()
            .map(|c| c.hashes.len() as i64)
            .unwrap_or(0);
        if have >= size {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT idx, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(have)
        .bind(size)
        .fetch_all(&self.db.pool)
        .await?;
        let mut cache = self
            .cache
            .write()
            .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
        for row in rows {
            let idx: i64 = row.try_get(0)?;
            let hash: Vec<u8> = row.try_get(1)?;
            if idx != cache.hashes.len() as i64 {
                // Another task loaded or appended meanwhile; only extend contiguously.
                continue;
            }
            let hash: Hash = hash
                .try_into()
                .map_err(|_| Error::Internal(format!("stored leaf hash {idx} is not 32 bytes")))?;
            cache.hashes.push(hash);
            cache.frontier.push(hash);
        }
        Ok(())
    }

    /// Entries with index in [start, end), ascending.
    pub async fn entries(&self, start: i64, end: i64) -> Result<Vec<StoredEntry>, Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        )))
        .bind(start)
        .bind(end)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Disclosure-log entries (the given actions) of the given patients, newest first.
    pub async fn patient_entries(
        &self,
        patient_ids: &[String],
        actions: &[i32],
        before_index: i64,
        start_micros: Option<i64>,
        end_micros: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, Error> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE patient_id IN ({}) AND action IN ({}) \
             AND idx < $1 AND time_micros >= $2 AND time_micros < $3 ORDER BY idx DESC LIMIT $4",
            placeholders(5, patient_ids.len()),
            actions
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(before_index)
            .bind(start_micros.unwrap_or(i64::MIN))
            .bind(end_micros.unwrap_or(i64::MAX))
            .bind(limit);
        for id in patient_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    pub async fn event(&self, event_id: &str) -> Result<Option<BreakGlassRow>, Error> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM break_glass_events WHERE event_id = $1"
        )))
        .bind(event_id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<BreakGlassRow>, Error> {
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM break_glass_events WHERE audit_index > $1 AND time_micros >= $2 \
             AND time_micros < $3"
        );
        match filter.review_filter {
            1 => sql.push_str(" AND review_outcome = 0"),
            2 => sql.push_str(" AND review_outcome <> 0"),
            _ => {}
        }
        if !filter.patient_ids.is_empty() {
            sql.push_str(&format!(
                " AND patient_id IN ({})",
                placeholders(5, filter.patient_ids.len())
            ));
        }
        sql.push_str(" ORDER BY audit_index LIMIT $4");
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.after_index)
            .bind(filter.start_micros.unwrap_or(i64::MIN))
            .bind(filter.end_micros.unwrap_or(i64::MAX))
            .bind(filter.limit);
        for id in &filter.patient_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Records a head that was handed out (the first one per size is kept).
    pub async fn store_head(&self, head: &SignedTreeHead) -> Result<(), Error> {
        let ts = head
            .timestamp
            .as_ref()
            .and_then(crate::domain::micros)
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO tree_heads (tree_size, root_hash, timestamp_micros, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(head.tree_size)
        .bind(head.root_hash.clone())
        .bind(ts)
        .bind(&head.key_id)
        .bind(head.signature.clone())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Stored heads up to `max_size`: (tree_size, root_hash).
    pub async fn stored_heads(&self, max_size: i64) -> Result<Vec<(i64, Vec<u8>)>, Error> {
        let rows = sqlx::query(
            "SELECT tree_size, root_hash FROM tree_heads WHERE tree_size <= $1 ORDER BY tree_size",
        )
        .bind(max_size)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    /// Registers the current signing key (idempotent), ending any other open key.
    pub async fn register_key(
        &self,
        key_id: &str,
        public_key: &[u8; 32],
        now_micros: i64,
    ) -> Result<(), Error> {
        let mut tx = self.db.pool.begin().await?;
        let exists = sqlx::query("SELECT key_id FROM audit_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            sqlx::query(
                "UPDATE audit_keys SET valid_until_micros = $1 WHERE valid_until_micros IS NULL",
            )
            .bind(now_micros)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO audit_keys (key_id, public_key, valid_from_micros) VALUES ($1, $2, $3)")
                .bind(key_id)
                .bind(public_key.to_vec())
                .bind(now_micros)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE audit_keys SET valid_until_micros = NULL WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE audit_keys SET valid_until_micros = $1 WHERE valid_until_micros IS NULL AND key_id <> $2")
                .bind(now_micros)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// (public key, valid_from, valid_until) of a key.
    pub async fn key(&self, key_id: &str) -> Result<Option<(Vec<u8>, i64, Option<i64>)>, Error> {
        let row = sqlx::query("SELECT public_key, valid_from_micros, valid_until_micros FROM audit_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
            .map_err(|e: sqlx::Error| Error::from(e))
    }
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    row: &BreakGlassRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO break_glass_events (event_id, audit_index, time_micros, user_id, organisation_ods_code, \
         role_code, display_name, client_id, patient_id, reason, outcome, returned_count, withheld_count, \
         version, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&row.event_id)
    .bind(row.audit_index)
    .bind(row.time_micros)
    .bind(&row.user_id)
    .bind(&row.organisation_ods_code)
    .bind(&row.role_code)
    .bind(&row.display_name)
    .bind(&row.client_id)
    .bind(&row.patient_id)
    .bind(&row.reason)
    .bind(row.outcome)
    .bind(row.returned_count)
    .bind(row.withheld_count)
    .bind(row.version)
    .bind(&row.etag)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<StoredEntry, Error> {
    Ok(StoredEntry {
        index: row.try_get(0)?,
        entry_id: row.try_get(1)?,
        leaf_data: row.try_get(2)?,
        leaf_hash: row.try_get(3)?,
    })
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<BreakGlassRow, Error> {
    Ok(BreakGlassRow {
        event_id: row.try_get(0)?,
        audit_index: row.try_get(1)?,
        time_micros: row.try_get(2)?,
        user_id: row.try_get(3)?,
        organisation_ods_code: row.try_get(4)?,
        role_code: row.try_get(5)?,
        display_name: row.try_get(6)?,
        client_id: row.try_get(7)?,
        patient_id: row.try_get(8)?,
        reason: row.try_get(9)?,
        outcome: row.try_get(10)?,
        returned_count: row.try_get(11)?,
        withheld_count: row.try_get(12)?,
        version: row.try_get(13)?,
        etag: row.try_get(14)?,
        review_outcome: row.try_get(15)?,
        review_notes: row.try_get(16)?,
        reviewer_user_id: row.try_get(17)?,
        reviewer_organisation_ods_code: row.try_get(18)?,
        reviewer_role_code: row.try_get(19)?,
        reviewer_display_name: row.try_get(20)?,
        review_time_micros: row.try_get(21)?,
        review_entry_id: row.try_get(22)?,
    })
}

/// The single writer: drains queued appends into one transaction at a time.
async fn writer(db: Database, cache: Arc<RwLock<TreeCache>>, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match write_batch(&db, &batch).await {
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
            let etag = uuid::Uuid::new_v4().simple().to_string();
            let updated = sqlx::query(
                "UPDATE break_glass_events SET version = version + 1, etag = $1, review_outcome = $2, \
                 review_notes = $3, reviewer_user_id = $4, reviewer_organisation_ods_code = $5, \
                 reviewer_role_code = $6, reviewer_display_name = $7, review_time_micros = $8, \
                 review_entry_id = $9 WHERE event_id = $10 AND etag = $11",
            )
            .bind(etag)
            .bind(*outcome)
            .bind(notes)
            .bind(&reviewer.user_id)
            .bind(&reviewer.organisation_ods_code)
            .bind(&reviewer.role_code)
            .bind(&reviewer.display_name)
            .bind(pending.time_micros)
            .bind(&pending.entry_id)
            .bind(event_id)
            .bind(expected_etag)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
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
        let values: Vec<String> = (0..writing.len())
            .map(|row| {
                let base = row * 7;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4,
                    base + 5,
                    base + 6,
                    base + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_entries (idx, entry_id, leaf_data, leaf_hash, time_micros, action, patient_id) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (offset, (_, pending)) in writing.iter().enumerate() {
            insert = insert
                .bind(next + offset as i64)
                .bind(&pending.entry_id)
                .bind(pending.data.clone())
                .bind(pending.hash.to_vec())
                .bind(pending.time_micros)
                .bind(pending.action)
                .bind(&pending.patient_id);
        }
        insert.execute(&mut *tx).await?;
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
