//! The PostgreSQL writer's own path for batches of plain entries: a connection of its own (a
//! pooled connection is checked with a round trip each time it goes back to the pool) and three
//! round trips per batch: the lock, one statement for every row, the commit.

use carerecord_platform::db::{Backend, Database};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, Postgres};

use super::super::{Appended, Pending};
use crate::error::Error;

/// Opens the batch's transaction and takes the lock that serialises appends across replicas.
const BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(6962)";

/// Every row of a batch in one statement, answering the batch's first index. The next index is
/// read under the lock (a statement's snapshot is taken when it starts, after the lock was
/// granted); entries take consecutive indexes in the batch's order, and the patients an entry
/// names (by its position in the batch) are recorded with its index.
const INSERT: &str = "\
WITH next AS (SELECT COALESCE(MAX(idx) + 1, 0) AS idx FROM audit_entries), \
entries AS ( \
    INSERT INTO audit_entries (idx, entry_id, leaf_data, leaf_hash, time_micros, action, patient_id) \
    SELECT next.idx + e.position - 1, e.entry_id, e.leaf_data, e.leaf_hash, e.time_micros, e.action, e.patient_id \
    FROM next, unnest($1::text[], $2::bytea[], $3::bytea[], $4::int8[], $5::int8[], $6::text[]) \
        WITH ORDINALITY AS e(entry_id, leaf_data, leaf_hash, time_micros, action, patient_id, position)), \
named AS ( \
    INSERT INTO audit_entry_patients (patient_id, idx, record_count) \
    SELECT p.patient_id, next.idx + p.entry, p.record_count \
    FROM next, unnest($7::text[], $8::int8[], $9::int8[]) AS p(patient_id, entry, record_count)) \
SELECT idx FROM next";

/// The writer's connection, taken from the native PostgreSQL pool when first needed.
pub(super) struct Writer {
    pool: PgPool,
    connection: Option<PoolConnection<Postgres>>,
}

impl Writer {
    /// The writer for `db`, if it is PostgreSQL.
    pub(super) fn new(db: &Database) -> Option<Writer> {
        let pool = db
            .postgres
            .clone()
            .filter(|_| db.backend == Backend::Postgres)?;
        Some(Writer {
            pool,
            connection: None,
        })
    }

    /// Writes a batch of entries without effects in one transaction.
    pub(super) async fn write(
        &mut self,
        batch: &[Pending],
    ) -> Result<Vec<Result<Appended, Error>>, sqlx::Error> {
        let written = self.try_write(batch).await;
        if written.is_err() {
            // Closing ends whatever the failure left open; the next batch connects afresh.
            if let Some(mut connection) = self.connection.take() {
                connection.close_on_drop();
            }
        }
        written
    }

    async fn try_write(
        &mut self,
        batch: &[Pending],
    ) -> Result<Vec<Result<Appended, Error>>, sqlx::Error> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(self.pool.acquire().await?),
        };
        let mut entry_ids = Vec::with_capacity(batch.len());
        let mut leaf_data = Vec::with_capacity(batch.len());
        let mut leaf_hashes = Vec::with_capacity(batch.len());
        let mut times = Vec::with_capacity(batch.len());
        let mut actions = Vec::with_capacity(batch.len());
        let mut patient_ids = Vec::with_capacity(batch.len());
        let (mut named, mut named_entries, mut named_counts) = (Vec::new(), Vec::new(), Vec::new());
        for (position, pending) in batch.iter().enumerate() {
            entry_ids.push(pending.entry_id.as_str());
            leaf_data.push(pending.data.as_slice());
            leaf_hashes.push(pending.hash.as_slice());
            times.push(pending.time_micros);
            actions.push(pending.action);
            patient_ids.push(pending.patient_id.as_str());
            for (patient_id, count) in &pending.patients {
                named.push(patient_id.as_str());
                named_entries.push(position as i64);
                named_counts.push(*count);
            }
        }
        sqlx::raw_sql(BEGIN).execute(&mut **connection).await?;
        let first: i64 = sqlx::query_scalar(INSERT)
            .bind(entry_ids)
            .bind(leaf_data)
            .bind(leaf_hashes)
            .bind(times)
            .bind(actions)
            .bind(patient_ids)
            .bind(named)
            .bind(named_entries)
            .bind(named_counts)
            .fetch_one(&mut **connection)
            .await?;
        sqlx::raw_sql("COMMIT").execute(&mut **connection).await?;
        Ok(batch
            .iter()
            .zip(first..)
            .map(|(pending, index)| {
                Ok(Appended {
                    index,
                    entry_id: pending.entry_id.clone(),
                })
            })
            .collect())
    }
}
