//! The national data opt-out: each patient's current status with its latest check, every change,
//! and batches of the national service's answers.

use carerecord_contracts::common::v1::Requester;
use carerecord_platform::sql::{Value, finish, insert_rows};
use prost::Message;
use sqlx::{Any, QueryBuilder, Row};

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
    /// When the status was last checked (microseconds; 0 for never).
    pub check_time: i64,
    pub check_source: String,
}

/// A batch of the national service's answers, one check for every patient in it.
#[derive(Debug)]
pub struct CheckBatch<'a> {
    /// Each patient once, with whether the answer says they have opted out.
    pub patients: &'a [(String, bool)],
    pub check_time: i64,
    pub source: &'a str,
    pub update_time: i64,
    pub updated_by: &'a Requester,
    /// A fresh etag for the patient at the same index.
    pub etags: &'a [String],
}

/// Values per row of an upsert of the batch: its eight columns, every one bound.
const RECORD_WIDTH: usize = 8;

impl Store {
    pub async fn opt_out(&self, patient_id: &str) -> Result<Option<OptOutRecord>, Error> {
        let row = sqlx::query(
            "SELECT opted_out, version, etag, update_time, updated_by, check_time, check_source \
             FROM national_data_opt_outs WHERE patient_id = $1",
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
            check_time: row.try_get(5)?,
            check_source: row.try_get(6)?,
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
        // Both statements bind the record's fields in the same order, patient_id last.
        let statement = if expected_version == 0 {
            "INSERT INTO national_data_opt_outs \
             (opted_out, version, etag, update_time, updated_by, check_time, check_source, \
             patient_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (patient_id) DO NOTHING"
        } else {
            "UPDATE national_data_opt_outs SET opted_out = $1, version = $2, etag = $3, \
             update_time = $4, updated_by = $5, check_time = $6, check_source = $7 \
             WHERE patient_id = $8 AND version = $9"
        };
        let mut query = sqlx::query(statement)
            .bind(i64::from(record.opted_out))
            .bind(record.version)
            .bind(&record.etag)
            .bind(record.update_time)
            .bind(updated_by.clone())
            .bind(record.check_time)
            .bind(&record.check_source)
            .bind(&record.patient_id);
        if expected_version != 0 {
            query = query.bind(expected_version);
        }
        let written = query.execute(&mut *tx).await?.rows_affected();
        if written == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let version_row = vec![
            Value::Text(record.patient_id.clone()),
            Value::Int(record.version),
            Value::Int(i64::from(record.opted_out)),
            Value::Int(record.update_time),
            Value::Blob(updated_by),
            Value::Int(record.check_time),
            Value::Text(record.check_source.clone()),
        ];
        insert_rows(&mut tx, VERSIONS_HEAD, vec![version_row]).await?;
        self.note_changes(&mut tx, [record.patient_id.clone()], record.update_time)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a batch of checks in one transaction: each patient whose recorded check is older
    /// than the batch's (or who has none) gets a new version; the others are left as they are.
    /// Returns how many patients were written.
    pub async fn record_checks(&self, batch: &CheckBatch<'_>) -> Result<usize, Error> {
        let updated_by = batch.updated_by.encode_to_vec();
        let per_statement = carerecord_platform::sql::MAX_BINDS / RECORD_WIDTH;
        let mut tx = self.db.pool.begin().await?;
        let mut versions = Vec::new();
        // The patients written, for the decision change log.
        let mut changed = Vec::new();
        for (patients, etags) in batch
            .patients
            .chunks(per_statement)
            .zip(batch.etags.chunks(per_statement))
        {
            let mut upsert = QueryBuilder::<Any>::new(
                "INSERT INTO national_data_opt_outs \
                 (patient_id, opted_out, version, etag, update_time, updated_by, check_time, \
                 check_source) ",
            );
            upsert.push_values(
                patients.iter().zip(etags),
                |mut row, ((patient_id, opted_out), etag)| {
                    row.push_bind(patient_id.clone())
                        .push_bind(i64::from(*opted_out))
                        .push_bind(1_i64)
                        .push_bind(etag.clone())
                        .push_bind(batch.update_time)
                        .push_bind(updated_by.clone())
                        .push_bind(batch.check_time)
                        .push_bind(batch.source.to_owned());
                },
            );
            // A patient keeps a check at least as recent as this one: recording the same answer
            // twice changes nothing, and an older answer never replaces a newer one.
            upsert.push(
                " ON CONFLICT (patient_id) DO UPDATE SET opted_out = excluded.opted_out, \
                 version = national_data_opt_outs.version + 1, etag = excluded.etag, \
                 update_time = excluded.update_time, updated_by = excluded.updated_by, \
                 check_time = excluded.check_time, check_source = excluded.check_source \
                 WHERE national_data_opt_outs.check_time < excluded.check_time \
                 RETURNING patient_id, version, opted_out",
            );
            for row in finish(&mut upsert)?.fetch_all(&mut *tx).await? {
                let patient_id: String = row.try_get(0)?;
                changed.push(patient_id.clone());
                versions.push(vec![
                    Value::Text(patient_id),
                    Value::Int(row.try_get(1)?),
                    Value::Int(row.try_get(2)?),
                    Value::Int(batch.update_time),
                    Value::Blob(updated_by.clone()),
                    Value::Int(batch.check_time),
                    Value::Text(batch.source.to_owned()),
                ]);
            }
        }
        let written = versions.len();
        insert_rows(&mut tx, VERSIONS_HEAD, versions).await?;
        self.note_changes(&mut tx, changed, batch.update_time)
            .await?;
        tx.commit().await?;
        Ok(written)
    }
}

/// Every change of a patient's record, as a version.
const VERSIONS_HEAD: &str = "INSERT INTO national_data_opt_out_versions \
     (patient_id, version, opted_out, update_time, updated_by, check_time, check_source)";
