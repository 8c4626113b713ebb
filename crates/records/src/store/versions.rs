//! Reads of versions by record, and the writes of updates and retractions.

use carerecord_platform::db::now_micros;
use carerecord_platform::sql::{finish, push_in};
use sqlx::query_builder::Separated;
use sqlx::{Any, QueryBuilder};

use super::copy::Columns;
use super::database::Store;
use super::feed::take_sequences;
use super::version::{Version, insert_columns, put_version, select, select_with_terms};

impl Store {
    /// The latest version of a record, or the given one.
    pub async fn get(
        &self,
        record_id: &str,
        version: Option<i64>,
        with_payload: bool,
    ) -> Result<Option<Version>, sqlx::Error> {
        let mut sql = select(with_payload);
        sql.push(" WHERE record_id = ").push_bind(record_id);
        match version {
            Some(v) => sql.push(" AND version = ").push_bind(v),
            None => sql.push(" AND superseded_seq IS NULL"),
        };
        Ok(self.fetch_versions(sql).await?.pop())
    }

    /// The latest version of a record with its clinical terms, for a write that follows it.
    pub async fn latest_for_write(&self, record_id: &str) -> Result<Option<Version>, sqlx::Error> {
        let mut sql = select_with_terms();
        sql.push(" WHERE record_id = ")
            .push_bind(record_id)
            .push(" AND superseded_seq IS NULL");
        Ok(self.fetch_versions(sql).await?.pop())
    }

    /// The latest versions of the records `ids` (distinct) that exist, with their payloads.
    pub async fn latest_many(&self, ids: &[String]) -> Result<Vec<Version>, sqlx::Error> {
        let mut sql = select(true);
        sql.push(" WHERE superseded_seq IS NULL AND record_id");
        push_in(&mut sql, ids.iter().cloned());
        self.fetch_versions(sql).await
    }

    /// Versions of a record from `max_version` down, newest first.
    pub async fn versions(
        &self,
        record_id: &str,
        max_version: i64,
        limit: i64,
        with_payload: bool,
    ) -> Result<Vec<Version>, sqlx::Error> {
        let mut sql = select(with_payload);
        sql.push(" WHERE record_id = ").push_bind(record_id);
        sql.push(" AND version <= ").push_bind(max_version);
        sql.push(" ORDER BY version DESC LIMIT ").push_bind(limit);
        self.fetch_versions(sql).await
    }

    /// Writes the next version of a record whose latest version is `expected_version`. Returns
    /// None, writing nothing, when another write got there first.
    pub async fn append_version(
        &self,
        expected_version: i64,
        mut next: Version,
    ) -> Result<Option<Version>, sqlx::Error> {
        let mut tx = self.db.pool.begin().await?;
        let seq = take_sequences(&mut tx, 1).await?;
        let latest: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM record_versions WHERE record_id = $1 AND superseded_seq IS NULL",
        )
        .bind(next.record_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if latest != Some(expected_version) {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE record_versions SET superseded_seq = $1 WHERE record_id = $2 AND version = $3",
        )
        .bind(seq)
        .bind(next.record_id.as_str())
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        next.version = expected_version + 1;
        next.seq = seq;
        next.update_time = now_micros();
        next.payload_size = next.fields.payload.len() as i64;
        insert_versions(&mut tx, &[&next]).await?;
        tx.commit().await?;
        self.committed(seq);
        Ok(Some(next))
    }
}

/// Inserts `versions` with one multi-row INSERT.
pub(super) async fn insert_versions(
    tx: &mut sqlx::Transaction<'_, Any>,
    versions: &[&Version],
) -> Result<(), sqlx::Error> {
    let mut sql = QueryBuilder::new(concat!(
        "INSERT INTO record_versions (",
        insert_columns!(),
        ") "
    ));
    sql.push_values(versions, |mut row, version| put_version(&mut row, version));
    finish(&mut sql)?.execute(&mut **tx).await?;
    Ok(())
}

impl Columns for Separated<'_, Any, &'static str> {
    fn text(&mut self, value: &str) -> &mut Self {
        self.push_bind(value)
    }
    fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.push_bind(value)
    }
    fn int(&mut self, value: i64) -> &mut Self {
        self.push_bind(value)
    }
    fn optional_int(&mut self, value: Option<i64>) -> &mut Self {
        self.push_bind(value)
    }
}
