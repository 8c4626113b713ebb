//! Persistence of patients, versions, identifiers, blocking keys and match parameters, on
//! PostgreSQL and SQLite through sqlx's `Any` driver. All of the crate's SQL is here.
//!
//! Every write runs in one transaction that also appends the patient versions, which double as
//! the change feed. On PostgreSQL the versions table is locked in EXCLUSIVE mode just before the
//! versions are inserted, so sequence numbers are assigned in commit order (a reader following
//! the feed never sees a later sequence commit before an earlier one); SQLite has one writer.
//!
//! By aggregate: `patients` (reads, creates, updates), `identifiers` (who holds an identifier),
//! `blocking` (blocking keys and name entries, and candidates by key), `requests` (request ids
//! for idempotent retries), `merges`, `feed` (versions and the change feed), `parameters` (match
//! parameters and what estimation reads), `search` (name search); dynamic SQL is built with `carerecord_platform::sql`.

mod blocking;
pub mod feed;
mod identifiers;
pub mod merges;
mod parameters;
mod patients;
mod requests;
mod search;

use carerecord_contracts::identity::v1::{Patient, PatientConfidentiality};
use carerecord_platform::db::{Backend, Database};
use prost::Message;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::features::Features;
use crate::domain::patient;
use crate::error::Error;

/// A patient as stored: the full message (output fields set) and its comparable form.
#[derive(Debug, Clone)]
pub struct Stored {
    pub patient: Patient,
    pub features: Features,
}

impl Stored {
    pub fn is_merged(&self) -> bool {
        patient::is_merged(&self.patient)
    }
}

/// A validated patient to create.
#[derive(Debug, Clone)]
pub struct NewPatient {
    pub request_id: String,
    pub body_hash: String,
    pub patient: Patient,
}

/// The store over one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Store { db }
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        Ok(match self.db.backend {
            // Take the write lock up front: a deferred transaction that reads then writes can
            // fail to upgrade under contention.
            Backend::Sqlite => self.db.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.db.pool.begin().await?,
        })
    }

    /// A write transaction for a merge or an unmerge, which reads before it writes.
    pub async fn begin_write(&self) -> Result<Write, Error> {
        Ok(Write {
            tx: self.begin().await?,
        })
    }
}

/// An open write transaction for merges and unmerges.
pub struct Write {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Write {
    pub async fn load(&mut self, patient_id: &str) -> Result<Option<Stored>, Error> {
        load(&mut self.tx, patient_id).await
    }
}

/// A patient read on `conn` (inside a transaction).
async fn load(conn: &mut AnyConnection, patient_id: &str) -> Result<Option<Stored>, Error> {
    let row = sqlx::query("SELECT data, features FROM patients WHERE patient_id = $1")
        .bind(patient_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(decode_stored).transpose()
}

/// A `patients` row's `data` and `features`.
fn decode_stored(row: &AnyRow) -> Result<Stored, Error> {
    let data: Vec<u8> = row.try_get("data")?;
    Ok(Stored {
        patient: decode_patient(&data)?,
        features: decode_features(row)?,
    })
}

/// A stored patient message. Patients written before the confidentiality marker existed hold
/// none: they are unrestricted.
pub(crate) fn decode_patient(data: &[u8]) -> Result<Patient, Error> {
    let mut patient = Patient::decode(data)?;
    if patient.confidentiality == PatientConfidentiality::Unspecified as i32 {
        patient.confidentiality = PatientConfidentiality::Unrestricted as i32;
    }
    Ok(patient)
}

/// A row's `features`.
fn decode_features(row: &AnyRow) -> Result<Features, Error> {
    let features: Vec<u8> = row.try_get("features")?;
    Ok(Features::decode(features.as_slice())?)
}

/// A row's `patient_id` and `features`.
fn decode_id_features(row: &AnyRow) -> Result<(String, Features), Error> {
    Ok((row.try_get("patient_id")?, decode_features(row)?))
}
