//! Storage of directives, their versions, create request ids and opt-outs, on PostgreSQL or SQLite.

use std::collections::HashMap;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::{ConsentDirective, ConsentDirectiveStatus};
use carerecord_platform::db::{Backend, Database};
use prost::Message;
use sqlx::{AssertSqlSafe, Row};

use std::sync::{Arc, Mutex};

use crate::domain::decide::{CompiledDirective, CompiledRules};
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

/// What a create with a request id did.
#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The request id was used before with the same request: the directive it created.
    Replayed(String),
    /// The request id was used before with a different request.
    Reused,
}

/// What decisions need of one patient.
#[derive(Debug, Default)]
pub struct PatientState {
    pub directives: Vec<CompiledDirective>,
    pub opted_out: bool,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
    /// Compiled rules by their stored bytes. Content-addressed, so never stale; bounded by clearing.
    rules: Arc<Mutex<HashMap<Vec<u8>, Arc<CompiledRules>>>>,
}

/// Distinct compiled rules kept before the cache is emptied.
const RULES_CACHE_CAPACITY: usize = 100_000;

/// Compiles rules, or reuses the compilation of identical bytes.
fn compiled(
    cache: &mut HashMap<Vec<u8>, Arc<CompiledRules>>,
    bytes: Vec<u8>,
) -> Result<Arc<CompiledRules>, Error> {
    if let Some(rules) = cache.get(&bytes) {
        return Ok(rules.clone());
    }
    let rules = Arc::new(CompiledRules::compile(&ConsentDirective::decode(
        bytes.as_slice(),
    )?));
    if cache.len() >= RULES_CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(bytes, rules.clone());
    Ok(rules)
}

/// The fields decisions read, as a small message of their own.
pub fn rules_of(directive: &ConsentDirective) -> ConsentDirective {
    ConsentDirective {
        decision: directive.decision,
        scope_purposes: directive.scope_purposes.clone(),
        period: directive.period,
        provisions: directive.provisions.clone(),
        ..Default::default()
    }
}

fn micros_of(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map_or(0, |t| {
        t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1000)
    })
}

impl Store {
    pub fn new(db: Database) -> Self {
        Store {
            db,
            rules: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Creates a directive (version 1) unless `request_id` was seen before.
    pub async fn create(
        &self,
        request_id: &str,
        body_hash: &str,
        directive: &ConsentDirective,
    ) -> Result<CreateOutcome, Error> {
        let mut tx = self.db.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO consent_create_requests (request_id, body_hash, directive_id, create_time) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(body_hash)
        .bind(&directive.directive_id)
        .bind(micros_of(directive.create_time.as_ref()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let row = sqlx::query(
                "SELECT body_hash, directive_id FROM consent_create_requests WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_one(&self.db.pool)
            .await?;
            let hash: String = row.try_get(0)?;
            return Ok(if hash == body_hash {
                CreateOutcome::Replayed(row.try_get(1)?)
            } else {
                CreateOutcome::Reused
            });
        }
        let body = directive.encode_to_vec();
        sqlx::query(
            "INSERT INTO consent_directives \
             (directive_id, patient_id, status, version, etag, create_time, update_time, body, rules) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&directive.directive_id)
        .bind(&directive.patient_id)
        .bind(i64::from(directive.status))
        .bind(directive.version)
        .bind(&directive.etag)
        .bind(micros_of(directive.create_time.as_ref()))
        .bind(micros_of(directive.update_time.as_ref()))
        .bind(body.clone())
        .bind(rules_of(directive).encode_to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO consent_directive_versions (directive_id, version, body) VALUES ($1, $2, $3)",
        )
        .bind(&directive.directive_id)
        .bind(directive.version)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    /// The latest version of a directive.
    pub async fn get(&self, directive_id: &str) -> Result<Option<ConsentDirective>, Error> {
        let row = sqlx::query("SELECT body FROM consent_directives WHERE directive_id = $1")
            .bind(directive_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .transpose()
    }

    /// One stored version of a directive.
    pub async fn get_version(
        &self,
        directive_id: &str,
        version: i64,
    ) -> Result<Option<ConsentDirective>, Error> {
        let row = sqlx::query(
            "SELECT body FROM consent_directive_versions WHERE directive_id = $1 AND version = $2",
        )
        .bind(directive_id)
        .bind(version)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .transpose()
    }

    /// A page of a patient's directives, newest first, after the position `(create_time, directive_id)`.
    pub async fn list(
        &self,
        patient_id: &str,
        statuses: &[ConsentDirectiveStatus],
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<ConsentDirective>, Error> {
        // The status list holds only validated enum numbers, so it is safe to inline.
        let status_filter = if statuses.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = statuses.iter().map(|s| (*s as i32).to_string()).collect();
            format!(" AND status IN ({})", list.join(", "))
        };
        let (after_time, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT body FROM consent_directives WHERE patient_id = $1{status_filter} \
             AND (create_time < $2 OR (create_time = $2 AND directive_id > $3)) \
             ORDER BY create_time DESC, directive_id ASC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(patient_id)
            .bind(after_time)
            .bind(after_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .collect()
    }

    /// Writes a new version if the stored version is still `expected_version`; false when it is not.
    pub async fn write_version(
        &self,
        directive: &ConsentDirective,
        expected_version: i64,
    ) -> Result<bool, Error> {
        let body = directive.encode_to_vec();
        let mut tx = self.db.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE consent_directives SET status = $1, version = $2, etag = $3, update_time = $4, \
             body = $5, rules = $6 WHERE directive_id = $7 AND version = $8",
        )
        .bind(i64::from(directive.status))
        .bind(directive.version)
        .bind(&directive.etag)
        .bind(micros_of(directive.update_time.as_ref()))
        .bind(body.clone())
        .bind(rules_of(directive).encode_to_vec())
        .bind(&directive.directive_id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO consent_directive_versions (directive_id, version, body) VALUES ($1, $2, $3)",
        )
        .bind(&directive.directive_id)
        .bind(directive.version)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A page of a directive's versions, newest first, below `before` (exclusive).
    pub async fn versions(
        &self,
        directive_id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ConsentDirective>, Error> {
        let rows = sqlx::query(
            "SELECT body FROM consent_directive_versions WHERE directive_id = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3",
        )
        .bind(directive_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .collect()
    }

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

    /// The ACTIVE directives and opt-out status of one patient, in one statement (one snapshot).
    pub async fn patient_state(&self, patient_id: &str) -> Result<PatientState, Error> {
        let rows = sqlx::query(
            "SELECT directive_id, version, rules FROM consent_directives \
             WHERE patient_id = $1 AND status = 2 \
             UNION ALL \
             SELECT '', 0, NULL FROM national_data_opt_outs WHERE patient_id = $1 AND opted_out = 1",
        )
        .bind(patient_id)
        .fetch_all(&self.db.pool)
        .await?;
        let mut state = PatientState::default();
        let mut cache = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let directive_id: String = row.try_get(0)?;
            if directive_id.is_empty() {
                state.opted_out = true;
                continue;
            }
            let rules = compiled(&mut cache, row.try_get(2)?)?;
            state
                .directives
                .push(CompiledDirective::new(directive_id, row.try_get(1)?, rules));
        }
        drop(cache);
        sort_directives(&mut state.directives);
        Ok(state)
    }

    /// The states of several patients in one statement. BatchDecide reads its patients in chunks,
    /// concurrently: each patient's state comes from one statement that started after the call did,
    /// so every write acknowledged before the call is seen (the contract asks no snapshot across
    /// patients).
    pub async fn patient_states(
        &self,
        patient_ids: &[String],
    ) -> Result<HashMap<String, PatientState>, Error> {
        // The ids are validated UUIDs; they travel as one parameter, split by the database.
        let (ids, sql) = match self.db.backend {
            Backend::Postgres => (
                patient_ids.join(","),
                "SELECT patient_id, directive_id, version, rules FROM consent_directives \
                 WHERE status = 2 AND patient_id = ANY(string_to_array($1, ',')) \
                 UNION ALL \
                 SELECT patient_id, '', 0, NULL FROM national_data_opt_outs \
                 WHERE opted_out = 1 AND patient_id = ANY(string_to_array($1, ','))",
            ),
            Backend::Sqlite => (
                format!("[\"{}\"]", patient_ids.join("\",\"")),
                "SELECT patient_id, directive_id, version, rules FROM consent_directives \
                 WHERE status = 2 AND patient_id IN (SELECT value FROM json_each($1)) \
                 UNION ALL \
                 SELECT patient_id, '', 0, NULL FROM national_data_opt_outs \
                 WHERE opted_out = 1 AND patient_id IN (SELECT value FROM json_each($1))",
            ),
        };
        let rows = sqlx::query(sql).bind(ids).fetch_all(&self.db.pool).await?;
        let mut states: HashMap<String, PatientState> = HashMap::new();
        let mut cache = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let patient_id: String = row.try_get(0)?;
            let state = states.entry(patient_id).or_default();
            let directive_id: String = row.try_get(1)?;
            if directive_id.is_empty() {
                state.opted_out = true;
            } else {
                let version: i64 = row.try_get(2)?;
                let rules = compiled(&mut cache, row.try_get(3)?)?;
                state
                    .directives
                    .push(CompiledDirective::new(directive_id, version, rules));
            }
        }
        drop(cache);
        for state in states.values_mut() {
            sort_directives(&mut state.directives);
        }
        Ok(states)
    }
}

/// Directive order does not change outcomes, but a fixed order keeps explanations deterministic.
fn sort_directives(directives: &mut [CompiledDirective]) {
    directives.sort_by(|a, b| a.directive_id.cmp(&b.directive_id));
}

fn decode(bytes: &[u8]) -> Result<ConsentDirective, Error> {
    Ok(ConsentDirective::decode(bytes)?)
}
