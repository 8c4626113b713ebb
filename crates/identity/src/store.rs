//! Persistence of patients, versions, identifiers, blocking keys and match parameters, on
//! PostgreSQL and SQLite through sqlx's `Any` driver.
//!
//! Every write runs in one transaction that also appends the patient versions, which double as
//! the change feed. On PostgreSQL the versions table is locked in EXCLUSIVE mode just before the
//! versions are inserted, so sequence numbers are assigned in commit order (a reader following
//! the feed never sees a later sequence commit before an earlier one); SQLite has one writer.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::{MatchParameters, Patient, PatientState};
use carerecord_platform::db::{Backend, Database, now_micros};
use prost::Message;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::domain::features::Features;
use crate::domain::validate::NHS_NUMBER_SYSTEM;
use crate::error::{Conflict, Error};

/// A patient as stored: the full message (output fields set) and its comparable form.
#[derive(Debug, Clone)]
pub struct Stored {
    pub patient: Patient,
    pub features: Features,
}

impl Stored {
    pub fn is_merged(&self) -> bool {
        self.patient.state == PatientState::Merged as i32
    }
}

/// A validated patient to create.
#[derive(Debug, Clone)]
pub struct NewPatient {
    pub request_id: String,
    pub body_hash: String,
    pub patient: Patient,
}

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
struct NewVersion<'a> {
    patient: &'a Patient,
    change_type: ChangeType,
    changed_fields: &'a [String],
    requester: &'a Requester,
    reason: &'a str,
    related: &'a str,
    time: i64,
}

enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Blob(Vec<u8>),
}

/// The opaque etag of a patient version.
pub fn etag(patient_id: &str, version: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{patient_id}:{version}").as_bytes());
    hex::encode(&digest[..10])
}

pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Sets the output-only bookkeeping of a new version.
pub fn stamp(patient: &mut Patient, version: i64, time: i64) {
    patient.version = version;
    patient.etag = etag(&patient.patient_id, version);
    patient.update_time = Some(timestamp(time));
    if version == 1 {
        patient.create_time = Some(timestamp(time));
    }
}

/// The identifier keys a patient reserves: its NHS number and local identifiers.
pub fn identifier_keys(patient: &Patient) -> Vec<(String, String)> {
    let mut keys = Vec::with_capacity(patient.identifiers.len() + 1);
    if !patient.nhs_number.is_empty() {
        keys.push((NHS_NUMBER_SYSTEM.to_owned(), patient.nhs_number.clone()));
    }
    for id in &patient.identifiers {
        keys.push((id.system.clone(), id.value.clone()));
    }
    keys
}

const MAX_PARAMS: usize = 30_000;

async fn insert_many(
    conn: &mut AnyConnection,
    head: &str,
    width: usize,
    rows: Vec<Vec<Arg>>,
) -> Result<(), sqlx::Error> {
    let per_chunk = (MAX_PARAMS / width).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = String::with_capacity(head.len() + chunk.len() * width * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for j in 0..width {
                if j > 0 {
                    sql.push(',');
                }
                n += 1;
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            for arg in row {
                query = match arg {
                    Arg::Text(s) => query.bind(s),
                    Arg::OptText(s) => query.bind(s),
                    Arg::Int(i) => query.bind(i),
                    Arg::Blob(b) => query.bind(b),
                };
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `$first, $first+1, ...` for an IN list of `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_stored(row: &AnyRow) -> Result<Stored, Error> {
    let data: Vec<u8> = row.try_get("data")?;
    let features: Vec<u8> = row.try_get("features")?;
    Ok(Stored {
        patient: Patient::decode(data.as_slice())?,
        features: Features::decode(features.as_slice())?,
    })
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

    async fn append_versions(
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
                    Arg::Text(v.patient.patient_id.clone()),
                    Arg::Int(v.patient.version),
                    Arg::Int(v.change_type as i64),
                    Arg::Blob(v.patient.encode_to_vec()),
                    Arg::Text(v.changed_fields.join(",")),
                    Arg::Blob(v.requester.encode_to_vec()),
                    Arg::Text(v.reason.to_owned()),
                    Arg::Text(v.related.to_owned()),
                    Arg::Int(v.time),
                ]
            })
            .collect();
        insert_many(
            conn,
            "INSERT INTO patient_versions (patient_id, version, change_type, data, changed_fields, requester, reason, related_patient_id, change_time)",
            9,
            rows,
        )
        .await?;
        Ok(())
    }

    // ----- reads -----

    pub async fn get(&self, patient_id: &str) -> Result<Option<Stored>, Error> {
        let row = sqlx::query("SELECT data, features FROM patients WHERE patient_id = $1")
            .bind(patient_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(decode_stored).transpose()
    }

    async fn get_in(conn: &mut AnyConnection, patient_id: &str) -> Result<Option<Stored>, Error> {
        let row = sqlx::query("SELECT data, features FROM patients WHERE patient_id = $1")
            .bind(patient_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(decode_stored).transpose()
    }

    /// Patients by id (any order; missing ids are skipped).
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Stored>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT data, features FROM patients WHERE patient_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.clone());
            }
            for row in query.fetch_all(&self.db.pool).await? {
                out.push(decode_stored(&row)?);
            }
        }
        Ok(out)
    }

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
                Ok(Some(Patient::decode(data.as_slice())?))
            }
            None => Ok(None),
        }
    }

    fn version_row(row: &AnyRow) -> Result<VersionRow, Error> {
        let data: Vec<u8> = row.try_get("data")?;
        let requester: Vec<u8> = row.try_get("requester")?;
        let changed: String = row.try_get("changed_fields")?;
        let change_type: i32 = row.try_get::<i64, _>("change_type")? as i32;
        Ok(VersionRow {
            seq: row.try_get("seq")?,
            patient: Patient::decode(data.as_slice())?,
            change_type: ChangeType::try_from(change_type)
                .map_err(|_| Error::Corrupt(format!("change type {change_type}")))?,
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
        rows.iter().map(Self::version_row).collect()
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
        rows.iter().map(Self::version_row).collect()
    }

    /// The holder of an identifier (one indexed lookup), with its stored state.
    pub async fn holder(&self, system: &str, value: &str) -> Result<Option<Stored>, Error> {
        let row = sqlx::query(
            "SELECT p.data, p.features FROM identifiers i JOIN patients p ON p.patient_id = i.patient_id \
             WHERE i.value = $1 AND i.system = $2",
        )
        .bind(value)
        .bind(system)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(decode_stored).transpose()
    }

    /// Holders of any of `keys` among stored patients: key -> (holder, merged into).
    async fn holders(
        conn: &mut AnyConnection,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), (String, Option<String>)>, Error> {
        let mut out = HashMap::new();
        let values: Vec<&String> = keys
            .iter()
            .map(|(_, v)| v)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let wanted: HashSet<&(String, String)> = keys.iter().collect();
        for chunk in values.chunks(1000) {
            let sql = format!(
                "SELECT system, value, patient_id FROM identifiers WHERE value IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for v in chunk {
                query = query.bind((*v).clone());
            }
            for row in query.fetch_all(&mut *conn).await? {
                let key: (String, String) = (row.try_get("system")?, row.try_get("value")?);
                if wanted.contains(&key) {
                    out.insert(key, (row.try_get::<String, _>("patient_id")?, None));
                }
            }
        }
        // Conflicts are rare: name the survivor of a merged holder with one lookup each.
        for (holder, merged_into) in out.values_mut() {
            let row = sqlx::query("SELECT merged_into FROM patients WHERE patient_id = $1")
                .bind(holder.clone())
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                *merged_into = row.try_get("merged_into")?;
            }
        }
        Ok(out)
    }

    // ----- creates -----

    /// Creates patients, each as if alone (see BatchCreatePatients), committing the good ones in
    /// one transaction; on a race with a concurrent writer it falls back to one at a time.
    pub async fn create(
        &self,
        items: Vec<Result<NewPatient, Error>>,
        requester: &Requester,
    ) -> Result<Vec<Result<Patient, Error>>, Error> {
        for attempt in 0.. {
            match self.try_create(&items, requester).await {
                Err(e) if e.is_unique_violation() && attempt < 3 => {
                    if items.len() > 1 {
                        let mut out = Vec::with_capacity(items.len());
                        for item in items {
                            let one = Box::pin(self.create(vec![item], requester)).await?;
                            out.extend(one);
                        }
                        return Ok(out);
                    }
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    async fn try_create(
        &self,
        items: &[Result<NewPatient, Error>],
        requester: &Requester,
    ) -> Result<Vec<Result<Patient, Error>>, Error> {
        let mut results: Vec<Option<Result<Patient, Error>>> = items
            .iter()
            .map(|i| match i {
                Ok(_) => None,
                Err(e) => Some(Err(clone_error(e))),
            })
            .collect();
        let mut conn = self.db.pool.acquire().await?;

        // 1. Replays and reused request ids.
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|i| i.as_ref().ok().map(|n| n.request_id.as_str()))
            .collect();
        let mut seen: HashMap<String, (String, String)> = HashMap::new();
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT request_id, body_hash, patient_id FROM request_ids WHERE request_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind((*id).to_owned());
            }
            for row in query.fetch_all(&mut *conn).await? {
                seen.insert(
                    row.try_get("request_id")?,
                    (row.try_get("body_hash")?, row.try_get("patient_id")?),
                );
            }
        }
        for (i, item) in items.iter().enumerate() {
            if let Ok(item) = item
                && let Some((hash, patient_id)) = seen.get(&item.request_id)
            {
                results[i] = Some(if *hash == item.body_hash {
                    match self.version(patient_id, 1).await? {
                        Some(p) => Ok(p),
                        None => Err(Error::Corrupt(format!("no version 1 of {patient_id}"))),
                    }
                } else {
                    Err(Error::RequestIdReused {
                        patient_id: patient_id.clone(),
                    })
                });
            }
        }

        // 2. Identifiers held by stored patients, then by earlier items of the batch.
        let keys: Vec<(String, String)> = items
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .filter_map(|(i, _)| i.as_ref().ok())
            .flat_map(|n| identifier_keys(&n.patient))
            .collect();
        let stored = Self::holders(&mut conn, &keys).await?;
        let mut in_batch: HashMap<(String, String), String> = HashMap::new();
        let mut accepted: Vec<(usize, Patient)> = Vec::new();
        let now = now_micros();
        for (i, item) in items.iter().enumerate() {
            let (Ok(item), None) = (item, &results[i]) else {
                continue;
            };
            let keys = identifier_keys(&item.patient);
            let mut conflicts: Vec<Conflict> = keys
                .iter()
                .filter_map(|k| {
                    stored.get(k).map(|(holder, merged)| Conflict {
                        identifier: format!("{}|{}", k.0, k.1),
                        holder: holder.clone(),
                        holder_merged_into: merged.clone(),
                    })
                })
                .collect();
            if conflicts.is_empty() {
                conflicts = keys
                    .iter()
                    .filter_map(|k| {
                        in_batch.get(k).map(|holder| Conflict {
                            identifier: format!("{}|{}", k.0, k.1),
                            holder: holder.clone(),
                            holder_merged_into: None,
                        })
                    })
                    .collect();
            }
            if !conflicts.is_empty() {
                results[i] = Some(Err(Error::Conflicts(conflicts)));
                continue;
            }
            let mut patient = item.patient.clone();
            patient.patient_id = uuid::Uuid::now_v7().to_string();
            patient.state = PatientState::Active as i32;
            patient.merged_into_patient_id.clear();
            patient.merged_from_patient_ids.clear();
            stamp(&mut patient, 1, now);
            for k in keys {
                in_batch.insert(k, patient.patient_id.clone());
            }
            accepted.push((i, patient));
        }
        drop(conn);

        // 3. One transaction for every accepted item.
        if !accepted.is_empty() {
            let mut tx = self.begin().await?;
            let mut patients = Vec::with_capacity(accepted.len());
            let mut identifiers = Vec::new();
            let mut requests = Vec::with_capacity(accepted.len());
            let mut keys = Vec::new();
            let mut names = Vec::new();
            for (i, patient) in &accepted {
                let Ok(item) = &items[*i] else { continue };
                let features = Features::of(patient);
                let id = &patient.patient_id;
                patients.push(vec![
                    Arg::Text(id.clone()),
                    Arg::Int(1),
                    Arg::Int(PatientState::Active as i64),
                    Arg::OptText(None),
                    Arg::Blob(patient.encode_to_vec()),
                    Arg::Blob(features.encode_to_vec()),
                    Arg::Int(now),
                    Arg::Int(now),
                ]);
                for (system, value) in identifier_keys(patient) {
                    identifiers.push(vec![
                        Arg::Text(system),
                        Arg::Text(value),
                        Arg::Text(id.clone()),
                    ]);
                }
                requests.push(vec![
                    Arg::Text(item.request_id.clone()),
                    Arg::Text(item.body_hash.clone()),
                    Arg::Text(id.clone()),
                    Arg::Int(1),
                    Arg::Text(String::new()),
                    Arg::Int(0),
                    Arg::Int(now),
                ]);
                keys.extend(key_rows(id, &features));
                names.extend(name_rows(id, &features));
            }
            insert_many(&mut tx, "INSERT INTO patients (patient_id, version, state, merged_into, data, features, create_time, update_time)", 8, patients).await?;
            insert_many(
                &mut tx,
                "INSERT INTO identifiers (system, value, patient_id)",
                3,
                identifiers,
            )
            .await?;
            insert_many(&mut tx, "INSERT INTO request_ids (request_id, body_hash, patient_id, version, related_id, related_version, create_time)", 7, requests).await?;
            insert_many(
                &mut tx,
                "INSERT INTO blocking_keys (key, patient_id)",
                2,
                keys,
            )
            .await?;
            insert_many(
                &mut tx,
                "INSERT INTO patient_names (patient_id, family, given, family_code, birth_date)",
                5,
                names,
            )
            .await?;
            let versions = accepted
                .iter()
                .map(|(_, p)| NewVersion {
                    patient: p,
                    change_type: ChangeType::Created,
                    changed_fields: &[],
                    requester,
                    reason: "",
                    related: "",
                    time: now,
                })
                .collect();
            self.append_versions(&mut tx, versions).await?;
            tx.commit().await?;
        }
        for (i, patient) in accepted {
            results[i] = Some(Ok(patient));
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Corrupt("item without a result".into()))))
            .collect())
    }

    // ----- updates, merges, unmerges -----

    /// Writes `new` (already validated, with its new version stamped) over `old`, keeping
    /// identifiers, blocking keys and names in step. Fails with ETAG_MISMATCH if `old` is no
    /// longer current, and with ALREADY_EXISTS if a new identifier is held by another patient.
    pub async fn update(
        &self,
        old: &Stored,
        new: &Patient,
        changed_fields: &[String],
        requester: &Requester,
        reason: &str,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let features = Features::of(new);
        self.rewrite(&mut tx, old, new, &features).await?;
        let time = new.update_time.as_ref().map_or_else(now_micros, |t| {
            t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
        });
        self.append_versions(
            &mut tx,
            vec![NewVersion {
                patient: new,
                change_type: ChangeType::Updated,
                changed_fields,
                requester,
                reason,
                related: "",
                time,
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the stored row of `old` by `new` if `old` is still current.
    async fn rewrite(
        &self,
        conn: &mut AnyConnection,
        old: &Stored,
        new: &Patient,
        features: &Features,
    ) -> Result<(), Error> {
        let id = &new.patient_id;
        let merged_into =
            (!new.merged_into_patient_id.is_empty()).then(|| new.merged_into_patient_id.clone());
        let time = now_micros();
        let done = sqlx::query(
            "UPDATE patients SET version = $1, state = $2, merged_into = $3, data = $4, features = $5, update_time = $6 \
             WHERE patient_id = $7 AND version = $8",
        )
        .bind(new.version)
        .bind(i64::from(new.state))
        .bind(merged_into)
        .bind(new.encode_to_vec())
        .bind(features.encode_to_vec())
        .bind(time)
        .bind(id.clone())
        .bind(old.patient.version)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            let current = Self::get_in(conn, id).await?;
            return Err(Error::EtagMismatch {
                patient_id: id.clone(),
                current_version: current.map_or(0, |c| c.patient.version),
            });
        }
        // Identifiers.
        let old_keys: HashSet<(String, String)> =
            identifier_keys(&old.patient).into_iter().collect();
        let new_keys: Vec<(String, String)> = identifier_keys(new);
        let added: Vec<(String, String)> = new_keys
            .iter()
            .filter(|k| !old_keys.contains(*k))
            .cloned()
            .collect();
        let new_set: HashSet<&(String, String)> = new_keys.iter().collect();
        for (system, value) in old_keys.iter().filter(|k| !new_set.contains(k)) {
            sqlx::query(
                "DELETE FROM identifiers WHERE value = $1 AND system = $2 AND patient_id = $3",
            )
            .bind(value.clone())
            .bind(system.clone())
            .bind(id.clone())
            .execute(&mut *conn)
            .await?;
        }
        if !added.is_empty() {
            let held = Self::holders(conn, &added).await?;
            if !held.is_empty() {
                let conflicts = added
                    .iter()
                    .filter_map(|k| {
                        held.get(k).map(|(holder, merged)| Conflict {
                            identifier: format!("{}|{}", k.0, k.1),
                            holder: holder.clone(),
                            holder_merged_into: merged.clone(),
                        })
                    })
                    .collect();
                return Err(Error::Conflicts(conflicts));
            }
            let rows = added
                .into_iter()
                .map(|(s, v)| vec![Arg::Text(s), Arg::Text(v), Arg::Text(id.clone())])
                .collect();
            insert_many(
                conn,
                "INSERT INTO identifiers (system, value, patient_id)",
                3,
                rows,
            )
            .await?;
        }
        // Blocking keys and names.
        if *features != old.features {
            let old_blocking: HashSet<String> = old.features.blocking_keys().into_iter().collect();
            let new_blocking: Vec<String> = features.blocking_keys();
            let new_set: HashSet<&String> = new_blocking.iter().collect();
            for key in old_blocking.iter().filter(|k| !new_set.contains(k)) {
                sqlx::query("DELETE FROM blocking_keys WHERE key = $1 AND patient_id = $2")
                    .bind(key.clone())
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
            }
            let rows = new_blocking
                .into_iter()
                .filter(|k| !old_blocking.contains(k))
                .map(|k| vec![Arg::Text(k), Arg::Text(id.clone())])
                .collect();
            insert_many(conn, "INSERT INTO blocking_keys (key, patient_id)", 2, rows).await?;
            sqlx::query("DELETE FROM patient_names WHERE patient_id = $1")
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            insert_many(
                conn,
                "INSERT INTO patient_names (patient_id, family, given, family_code, birth_date)",
                5,
                name_rows(id, features),
            )
            .await?;
        }
        Ok(())
    }

    /// Loads patients inside a write transaction.
    pub async fn begin_write(&self) -> Result<Write, Error> {
        Ok(Write {
            tx: self.begin().await?,
        })
    }

    /// Looks up a request id: (body hash, patient id, version, related id, related version).
    pub async fn request(
        &self,
        conn: &mut AnyConnection,
        request_id: &str,
    ) -> Result<Option<(String, String, i64, String, i64)>, Error> {
        let row = sqlx::query(
            "SELECT body_hash, patient_id, version, related_id, related_version FROM request_ids WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(r) => Ok(Some((
                r.try_get("body_hash")?,
                r.try_get("patient_id")?,
                r.try_get("version")?,
                r.try_get("related_id")?,
                r.try_get("related_version")?,
            ))),
            None => Ok(None),
        }
    }

    /// Writes a merge or an unmerge: the two patients' new rows and their two versions, first
    /// `first` then `second`, and optionally the request id.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_pair(
        &self,
        mut write: Write,
        change_type: ChangeType,
        (old_first, first): (&Stored, &Patient),
        (old_second, second): (&Stored, &Patient),
        requester: &Requester,
        reason: &str,
        request: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        let conn: &mut AnyConnection = &mut write.tx;
        // Merges and unmerges change no demographics: features stay as they were.
        self.rewrite(conn, old_first, first, &old_first.features)
            .await?;
        self.rewrite(conn, old_second, second, &old_second.features)
            .await?;
        let now = now_micros();
        if let Some((request_id, hash)) = request {
            insert_many(
                conn,
                "INSERT INTO request_ids (request_id, body_hash, patient_id, version, related_id, related_version, create_time)",
                7,
                vec![vec![
                    Arg::Text(request_id.to_owned()),
                    Arg::Text(hash.to_owned()),
                    Arg::Text(first.patient_id.clone()),
                    Arg::Int(first.version),
                    Arg::Text(second.patient_id.clone()),
                    Arg::Int(second.version),
                    Arg::Int(now),
                ]],
            )
            .await?;
        }
        let fields_first = changed_fields(&old_first.patient, first);
        let fields_second = changed_fields(&old_second.patient, second);
        self.append_versions(
            conn,
            vec![
                NewVersion {
                    patient: first,
                    change_type,
                    changed_fields: &fields_first,
                    requester,
                    reason,
                    related: &second.patient_id,
                    time: now,
                },
                NewVersion {
                    patient: second,
                    change_type,
                    changed_fields: &fields_second,
                    requester,
                    reason,
                    related: &first.patient_id,
                    time: now,
                },
            ],
        )
        .await?;
        write.tx.commit().await?;
        Ok(())
    }

    // ----- search and matching -----

    /// Patient ids of patients (active or merged) with a name entry satisfying the SQL `condition` over
    /// `patient_names n` (placeholders from $1, bound from `args`).
    pub async fn name_search(
        &self,
        condition: &str,
        args: Vec<SearchArg>,
        limit: i64,
    ) -> Result<Vec<String>, Error> {
        // Merged patients are filtered out by the caller, from their stored state.
        let sql = format!(
            "SELECT DISTINCT n.patient_id FROM patient_names n WHERE {condition} ORDER BY n.patient_id LIMIT {limit}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                SearchArg::Text(s) => query.bind(s),
                SearchArg::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("patient_id").map_err(Error::from))
            .collect()
    }

    /// Active patients sharing at least one blocking key: their ids and features only (the
    /// full data of the few returned candidates is read afterwards).
    pub async fn candidates(&self, keys: &[String]) -> Result<Vec<(String, Features)>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Two index lookups rather than one join: the plan cannot degrade to a scan of
        // patients when statistics lag behind a bulk load.
        let sql = format!(
            "SELECT DISTINCT patient_id FROM blocking_keys WHERE key IN ({})",
            placeholders(1, keys.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for k in keys {
            query = query.bind(k.clone());
        }
        let ids: Vec<String> = query
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| r.try_get("patient_id"))
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(512) {
            // Padded to a power of two (repeating the last id) so that a few prepared statements
            // serve every candidate count instead of one per count evicting each other.
            let padded = chunk.len().next_power_of_two();
            let sql = format!(
                "SELECT patient_id, features FROM patients WHERE state = 1 AND patient_id IN ({})",
                placeholders(1, padded)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk.iter().chain(std::iter::repeat_n(
                &chunk[chunk.len() - 1],
                padded - chunk.len(),
            )) {
                query = query.bind(id.clone());
            }
            rows.extend(query.fetch_all(&self.db.pool).await?);
        }
        rows.iter()
            .map(|r| {
                let f: Vec<u8> = r.try_get("features")?;
                Ok((r.try_get("patient_id")?, Features::decode(f.as_slice())?))
            })
            .collect()
    }

    /// Rebuilds every patient's blocking keys from its stored features when they were written by
    /// another scheme than `scheme` (a release that changed [`Features::blocking_keys`]); returns
    /// how many patients were re-keyed, or None when the keys were current. One transaction: a
    /// replica starting meanwhile waits for it, then finds the keys current.
    pub async fn rekey_if_stale(&self, scheme: i64) -> Result<Option<u64>, Error> {
        let mut tx = self.begin().await?;
        // Takes the row's lock before reading it, on both backends.
        sqlx::query("UPDATE blocking_scheme SET version = version WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let stored: i64 = sqlx::query_scalar("SELECT version FROM blocking_scheme WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        if stored == scheme {
            tx.commit().await?;
            return Ok(None);
        }
        sqlx::query("DELETE FROM blocking_keys")
            .execute(&mut *tx)
            .await?;
        let (mut after, mut count) = (String::new(), 0u64);
        loop {
            let rows = sqlx::query(
                "SELECT patient_id, features FROM patients WHERE patient_id > $1 \
                 ORDER BY patient_id LIMIT 1000",
            )
            .bind(after.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            let mut keys = Vec::new();
            for row in &rows {
                let id: String = row.try_get("patient_id")?;
                let features: Vec<u8> = row.try_get("features")?;
                keys.extend(key_rows(&id, &Features::decode(features.as_slice())?));
                after = id;
            }
            count += rows.len() as u64;
            insert_many(
                &mut tx,
                "INSERT INTO blocking_keys (key, patient_id)",
                2,
                keys,
            )
            .await?;
        }
        sqlx::query("UPDATE blocking_scheme SET version = $1 WHERE id = 1")
            .bind(scheme)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(count))
    }

    /// Every active patient's id and features, for estimation.
    pub async fn active_features(&self) -> Result<Vec<(String, Features)>, Error> {
        let rows = sqlx::query(
            "SELECT patient_id, features FROM patients WHERE state = 1 ORDER BY patient_id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let f: Vec<u8> = r.try_get("features")?;
                Ok((r.try_get("patient_id")?, Features::decode(f.as_slice())?))
            })
            .collect()
    }

    // ----- match parameters -----

    pub async fn parameters(&self, version: Option<i64>) -> Result<Option<MatchParameters>, Error> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT data, is_current FROM match_parameters WHERE version = $1")
                    .bind(v)
                    .fetch_optional(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT data, is_current FROM match_parameters WHERE is_current = 1")
                    .fetch_optional(&self.db.pool)
                    .await?
            }
        };
        match row {
            Some(r) => {
                let data: Vec<u8> = r.try_get("data")?;
                let current: i64 = r.try_get("is_current")?;
                let mut p = MatchParameters::decode(data.as_slice())?;
                p.current = current == 1;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// Stores `params` as version 1, current, unless some version exists already (several
    /// replicas may start at once: the first wins, the others change nothing).
    pub async fn store_first_parameters(&self, params: &mut MatchParameters) -> Result<(), Error> {
        params.parameters_version = 1;
        params.current = true;
        sqlx::query(
            "INSERT INTO match_parameters (version, is_current, data, create_time) \
             SELECT 1, 1, $1, $2 WHERE NOT EXISTS (SELECT 1 FROM match_parameters) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(params.encode_to_vec())
        .bind(now_micros())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Stores a new parameters version (numbered here), making it current if asked.
    pub async fn store_parameters(
        &self,
        params: &mut MatchParameters,
        make_current: bool,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM match_parameters")
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = row.try_get("v")?;
        params.parameters_version = version + 1;
        params.current = make_current;
        if make_current {
            sqlx::query("UPDATE match_parameters SET is_current = 0 WHERE is_current = 1")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO match_parameters (version, is_current, data, create_time) VALUES ($1, $2, $3, $4)")
            .bind(params.parameters_version)
            .bind(i64::from(make_current))
            .bind(params.encode_to_vec())
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// An open write transaction for merges and unmerges.
pub struct Write {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Write {
    pub async fn load(&mut self, patient_id: &str) -> Result<Option<Stored>, Error> {
        Store::get_in(&mut self.tx, patient_id).await
    }
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A bind value of a search condition.
pub enum SearchArg {
    Text(String),
    Int(i64),
}

/// The `blocking_keys` rows of a patient.
fn key_rows(id: &str, features: &Features) -> Vec<Vec<Arg>> {
    features
        .blocking_keys()
        .into_iter()
        .map(|key| vec![Arg::Text(key), Arg::Text(id.to_owned())])
        .collect()
}

fn name_rows(id: &str, features: &Features) -> Vec<Vec<Arg>> {
    features
        .names
        .iter()
        .map(|n| {
            vec![
                Arg::Text(id.to_owned()),
                Arg::Text(n.family.clone()),
                Arg::Text(n.given.clone()),
                Arg::Text(n.family_code.clone()),
                Arg::Int(i64::from(features.birth_date)),
            ]
        })
        .collect()
}

/// The top-level fields that differ between two versions (bookkeeping fields excluded).
pub fn changed_fields(old: &Patient, new: &Patient) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_owned());
        }
    };
    check("nhs_number", old.nhs_number != new.nhs_number);
    check("identifiers", old.identifiers != new.identifiers);
    check("names", old.names != new.names);
    check("birth_date", old.birth_date != new.birth_date);
    check("gender", old.gender != new.gender);
    check("addresses", old.addresses != new.addresses);
    check("telecoms", old.telecoms != new.telecoms);
    check("deceased_date", old.deceased_date != new.deceased_date);
    check("state", old.state != new.state);
    check(
        "merged_into_patient_id",
        old.merged_into_patient_id != new.merged_into_patient_id,
    );
    check(
        "merged_from_patient_ids",
        old.merged_from_patient_ids != new.merged_from_patient_ids,
    );
    out
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Invalid(v) => Error::Invalid(v.clone()),
        Error::Conflicts(c) => Error::Conflicts(c.clone()),
        Error::RequestIdReused { patient_id } => Error::RequestIdReused {
            patient_id: patient_id.clone(),
        },
        other => Error::Corrupt(other.to_string()),
    }
}
