//! The national data opt-out: each patient's current status, and every change.

use carerecord_contracts::common::v1::Requester;
use prost::Message;
use sqlx::Row;

use super::Store;
use crate::error::Error;

/// The current opt-out record of a patient.
#[derive(Debug, Clone, PartialEq)]
pub struct OptOutRecord {
    pub patient_id: String,
    pub opted_out: bool,
    pub version: i64,
    pub etag: String,
    pub update_time: i64,
    pub updated_by: Requester,
}

impl Store {
    pub async fn opt_out(&self, patient_id: &str) -> Result<Option<OptOutRecord>, Error> {
        let row = sqlx::query(
            "SELECT opted_out, version, etag, update_time, updated_by FROM national_data_opt_outs \
             WHERE patient_id = $1",
        )
        .bind(patient_id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(OptOutRecord {
            patient_id: patient_id.to_owned(),
            opted_out: row.try_get::<i64, _>(0)? != 0,
            version: row.try_get(1)?,
            etag: row.try_get(2)?,
            update_time: row.try_get(3)?,
            updated_by: Requester::decode(row.try_get::<Vec<u8>, _>(4)?.as_slice())?,
        }))
    }

    /// Writes an opt-out record if the stored version is still `expected_version` (0: none stored).
    pub async fn write_opt_out(
        &self,
        record: &OptOutRecord,
        expected_version: i64,
    ) -> Result<bool, Error> {
        let updated_by = record.updated_by.encode_to_vec();
        let mut tx = self.db.pool.begin().await?;
        let written = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO national_data_opt_outs \
                 (patient_id, opted_out, version, etag, update_time, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (patient_id) DO NOTHING",
            )
            .bind(&record.patient_id)
            .bind(i64::from(record.opted_out))
            .bind(record.version)
            .bind(&record.etag)
            .bind(record.update_time)
            .bind(updated_by.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query(
                "UPDATE national_data_opt_outs SET opted_out = $1, version = $2, etag = $3, \
                 update_time = $4, updated_by = $5 WHERE patient_id = $6 AND version = $7",
            )
            .bind(i64::from(record.opted_out))
            .bind(record.version)
            .bind(&record.etag)
            .bind(record.update_time)
            .bind(updated_by.clone())
            .bind(&record.patient_id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if written == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO national_data_opt_out_versions \
             (patient_id, version, opted_out, update_time, updated_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.patient_id)
        .bind(record.version)
        .bind(i64::from(record.opted_out))
        .bind(record.update_time)
        .bind(updated_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
