//! Updates and retractions by request_id: what makes them idempotent.

use sqlx::Row;

use super::Store;
use crate::error::Error;

/// A change recorded under a request_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub fingerprint: Vec<u8>,
    pub record_id: String,
    /// The version the change was based on.
    pub base_version: i64,
    /// The version the change wrote; 0 while it was in flight.
    pub version: i64,
}

impl Store {
    /// The change made under `request_id`, if any.
    pub async fn contribution(&self, request_id: &str) -> Result<Option<Contribution>, Error> {
        let row = sqlx::query(
            "SELECT fingerprint, record_id, base_version, version FROM contributions WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|row| {
            Ok(Contribution {
                fingerprint: row.try_get(0)?,
                record_id: row.try_get(1)?,
                base_version: row.try_get(2)?,
                version: row.try_get(3)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Records that a change under `request_id` is about to be written on top of `base_version`.
    /// Another call that took the same request_id first wins: this one gets REQUEST_ID_REUSED if
    /// its content differs, or proceeds (the etag then lets only one write through).
    pub async fn begin_contribution(
        &self,
        request_id: &str,
        fingerprint: &[u8],
        record_id: &str,
        base_version: i64,
    ) -> Result<(), Error> {
        let inserted = sqlx::query(
            "INSERT INTO contributions (request_id, fingerprint, record_id, base_version, version, created_micros) \
             VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(fingerprint.to_vec())
        .bind(record_id)
        .bind(base_version)
        .bind(carerecord_platform::db::now_micros())
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if inserted == 0
            && self
                .contribution(request_id)
                .await?
                .is_some_and(|c| c.fingerprint != fingerprint)
        {
            return Err(Error::RequestIdReused);
        }
        Ok(())
    }

    /// Records the version a change under `request_id` wrote.
    pub async fn complete_contribution(&self, request_id: &str, version: i64) -> Result<(), Error> {
        sqlx::query("UPDATE contributions SET version = $1 WHERE request_id = $2")
            .bind(version)
            .bind(request_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }
}
