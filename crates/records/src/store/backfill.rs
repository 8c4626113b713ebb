//! The start-up backfill of the clinical terms of versions written before terms were stored: SQL
//! cannot read them from JSON on both backends, so the service reads each such payload once.

use carerecord_platform::sql::finish;
use sqlx::{Any, QueryBuilder, Row};
use tokio_stream::StreamExt;

use super::database::Store;
use crate::domain::payload;

/// Versions per backfill transaction at most.
const BATCH_ROWS: i64 = 500;
/// Payload bytes read per backfill transaction at most (one version more if it alone is larger).
const BATCH_BYTES: usize = 16 << 20;

impl Store {
    /// Gives every version written before the terms migration its terms, in batches in sequence
    /// order, each committed with its progress, so an interrupted backfill resumes where it
    /// stopped; once done it costs one query. Returns how many versions it indexed.
    pub async fn backfill_terms(&self) -> Result<u64, sqlx::Error> {
        let progress = sqlx::query("SELECT done_seq, target_seq FROM terms_backfill WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await?;
        let (mut done, target): (i64, i64) = (
            progress.try_get("done_seq")?,
            progress.try_get("target_seq")?,
        );
        let mut indexed = 0;
        while done < target {
            let mut rows = sqlx::query(
                "SELECT seq, payload FROM record_versions WHERE seq > $1 AND seq <= $2 \
                 AND codes IS NULL ORDER BY seq LIMIT $3",
            )
            .bind(done)
            .bind(target)
            .bind(BATCH_ROWS)
            .fetch(&self.db.pool);
            let mut batch = Vec::new();
            let mut bytes = 0;
            while bytes < BATCH_BYTES
                && let Some(row) = rows.next().await.transpose()?
            {
                let seq: i64 = row.try_get("seq")?;
                let payload: Vec<u8> = row.try_get("payload")?;
                bytes += payload.len();
                batch.push((seq, payload::index(&payload)));
            }
            drop(rows);
            let next_done = match batch.last() {
                Some((seq, _)) if batch.len() as i64 == BATCH_ROWS || bytes >= BATCH_BYTES => *seq,
                _ => target,
            };
            let mut tx = self.db.pool.begin().await?;
            if !batch.is_empty() {
                let mut sql: QueryBuilder<Any> = QueryBuilder::new(
                    "UPDATE record_versions SET codes = x.column2, categories = x.column3, fhir_status = x.column4 FROM (",
                );
                sql.push_values(&batch, |mut row, (seq, terms)| {
                    row.push_bind(*seq)
                        .push_bind(terms.codes.clone())
                        .push_bind(terms.categories.clone())
                        .push_bind(terms.status.clone());
                });
                sql.push(") AS x WHERE record_versions.seq = x.column1");
                finish(&mut sql)?.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE terms_backfill SET done_seq = $1 WHERE id = 1")
                .bind(next_done)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            indexed += batch.len() as u64;
            done = next_done;
        }
        Ok(indexed)
    }
}
