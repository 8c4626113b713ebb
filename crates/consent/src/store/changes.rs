//! The decision change log: which patients' decisions may have changed, in commit order.

use carerecord_platform::db::Backend;
use carerecord_platform::sql::{Value, insert_rows};
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::error::Error;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionChange {
    pub seq: i64,
    pub patient_id: String,
}

impl Store {
    /// Notes inside the caller's write transaction, as its last statement before commit, that the
    /// decisions of `patients` may have changed. On PostgreSQL the log is locked until the commit,
    /// so sequence order is commit order (SQLite has one writer).
    pub(super) async fn note_changes(
        &self,
        conn: &mut AnyConnection,
        patients: impl IntoIterator<Item = String>,
        time: i64,
    ) -> Result<(), Error> {
        let rows: Vec<Vec<Value>> = patients
            .into_iter()
            .map(|patient_id| vec![Value::Text(patient_id), Value::Int(time)])
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        if self.db.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE consent_changes IN EXCLUSIVE MODE")
                .execute(&mut *conn)
                .await?;
        }
        insert_rows(
            conn,
            "INSERT INTO consent_changes (patient_id, change_time)",
            rows,
        )
        .await?;
        Ok(())
    }

    /// The sequence of the last change committed (0 before the first).
    pub async fn changes_head(&self) -> Result<i64, Error> {
        let head: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM consent_changes")
                .fetch_one(&self.db.pool)
                .await?;
        Ok(head)
    }

    /// Changes after `after_seq`, in sequence order, at most `limit`.
    pub async fn changes_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<DecisionChange>, Error> {
        let rows = sqlx::query(
            "SELECT seq, patient_id FROM consent_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DecisionChange {
                    seq: row.try_get(0)?,
                    patient_id: row.try_get(1)?,
                })
            })
            .collect()
    }
}
