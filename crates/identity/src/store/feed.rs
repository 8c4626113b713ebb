//! Patient versions: every write appends them, and in sequence order they are the change feed.

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::Patient;
use carerecord_platform::db::Backend;
use prost::Message;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::error::Error;
use carerecord_platform::sql::{Value, insert_rows};

/// One stored version (and change-feed event).
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub seq: i64,
    pub patient: Patient,
    pub change_type: ChangeType,
    pub changed_fields: Vec<String>,
    pub requester: Requester,
    pub reason: String,
    pub related_patient_id: String,
    pub change_time: i64,
}

/// A version to append.
pub(super) struct NewVersion<'a> {
    pub patient: &'a Patient,
    pub change_type: ChangeType,
    pub changed_fields: &'a [String],
    pub requester: &'a Requester,
    pub reason: &'a str,
    pub related: &'a str,
    pub time: i64,
}

impl Store {
    /// Appends `versions` inside the caller's write transaction.
    pub(super) async fn append_versions(
        &self,
        conn: &mut AnyConnection,
        versions: Vec<NewVersion<'_>>,
    ) -> Result<(), Error> {
        if self.db.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE patient_versions IN EXCLUSIVE MODE")
                .execute(&mut *conn)
                .await?;
        }
        let rows = versions
            .into_iter()
            .map(|v| {
                vec![
                    Value::Text(v.patient.patient_id.clone()),
                    Value::Int(v.patient.version),
                    Value::Int(v.change_type as i64),
                    Value::Blob(v.patient.encode_to_vec()),
                    Value::Text(v.changed_fields.join(",")),
                    Value::Blob(v.requester.encode_to_vec()),
                    Value::Text(v.reason.to_owned()),
                    Value::Text(v.related.to_owned()),
                    Value::Int(v.time),
                ]
            })
            .collect();
        insert_rows(
            conn,
            "INSERT INTO patient_versions (patient_id, version, change_type, data, changed_fields, requester, reason, related_patient_id, change_time)",
            rows,
        )
        .await?;
        Ok(())
    }

    /// One version of a patient.
    pub async fn version(&self, patient_id: &str, version: i64) -> Result<Option<Patient>, Error> {
        let row =
            sqlx::query("SELECT data FROM patient_versions WHERE patient_id = $1 AND version = $2")
                .bind(patient_id)
                .bind(version)
                .fetch_optional(&self.db.pool)
                .await?;
        match row {
            Some(row) => {
                let data: Vec<u8> = row.try_get("data")?;
                Ok(Some(super::decode_patient(&data)?))
            }
            None => Ok(None),
        }
    }

    /// Versions of a patient after `after_version`, ascending, at most `limit`.
    pub async fn versions(
        &self,
        patient_id: &str,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<VersionRow>, Error> {
        let rows = sqlx::query(
            "SELECT seq, data, requester, changed_fields, CAST(change_type AS BIGINT) AS change_type, reason, related_patient_id, change_time \
             FROM patient_versions WHERE patient_id = $1 AND version > $2 ORDER BY version LIMIT $3",
        )
        .bind(patient_id)
        .bind(after_version)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    /// Feed events after `after_seq`, in sequence order, at most `limit`.
    pub async fn feed(&self, after_seq: i64, limit: i64) -> Result<Vec<VersionRow>, Error> {
        let rows = sqlx::query(
            "SELECT seq, data, requester, changed_fields, CAST(change_type AS BIGINT) AS change_type, reason, related_patient_id, change_time \
             FROM patient_versions WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }
}

/// What a change listing needs of one version: who it touched.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub seq: i64,
    pub patient: Patient,
    pub change_type: ChangeType,
    pub related_patient_id: String,
}

impl Store {
    /// The sequence of the last version committed (0 before the first): where a listing that
    /// starts now begins.
    pub async fn feed_head(&self) -> Result<i64, Error> {
        let head: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM patient_versions",
        )
        .fetch_one(&self.db.pool)
        .await?;
        Ok(head)
    }

    /// Changes after `after_seq`, in sequence order, at most `limit`, without the requester and
    /// changed fields a listing does not carry.
    pub async fn feed_changes(&self, after_seq: i64, limit: i64) -> Result<Vec<ChangeRow>, Error> {
        let rows = sqlx::query(
            "SELECT seq, data, CAST(change_type AS BIGINT) AS change_type, related_patient_id \
             FROM patient_versions WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let data: Vec<u8> = row.try_get("data")?;
                Ok(ChangeRow {
                    seq: row.try_get("seq")?,
                    patient: super::decode_patient(&data)?,
                    change_type: change_type(row)?,
                    related_patient_id: row.try_get("related_patient_id")?,
                })
            })
            .collect()
    }
}

fn change_type(row: &AnyRow) -> Result<ChangeType, Error> {
    let change_type: i32 = row.try_get::<i64, _>("change_type")? as i32;
    ChangeType::try_from(change_type)
        .map_err(|_| Error::Corrupt(format!("change type {change_type}")))
}

fn version_row(row: &AnyRow) -> Result<VersionRow, Error> {
    let data: Vec<u8> = row.try_get("data")?;
    let requester: Vec<u8> = row.try_get("requester")?;
    let changed: String = row.try_get("changed_fields")?;
    Ok(VersionRow {
        seq: row.try_get("seq")?,
        patient: super::decode_patient(&data)?,
        change_type: change_type(row)?,
        changed_fields: changed
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        requester: Requester::decode(requester.as_slice())?,
        reason: row.try_get("reason")?,
        related_patient_id: row.try_get("related_patient_id")?,
        change_time: row.try_get("change_time")?,
    })
}
