//! Storage of record versions and request ids, on PostgreSQL or SQLite through sqlx `Any`.
//!
//! One table, `record_versions`, is the history, the change feed and the current state (see the
//! migration). Every write transaction first increments `feed_head`, whose row lock serialises
//! writers until commit, so change sequences are assigned in commit order on both backends and a
//! reader that sees sequence n has every committed sequence below n visible too.

use std::collections::HashMap;

use carerecord_platform::db::{Backend, Database, now_micros};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Any, Arguments, AssertSqlSafe, Row};
use tokio::sync::{oneshot, watch};

use crate::domain::record::{Actor, RecordFields};
use copy::{Columns, CopyRows};

mod copy;

/// `record_versions` columns as read back, with the payload or an empty blob in its place.
macro_rules! version_columns {
    ($payload:literal) => {
        concat!(
            "record_id, version, seq, creation_seq, change_type, patient_id, resource_type, status, ",
            "retraction_reason, content_type, ",
            $payload,
            " AS payload, content_hash, payload_size, data_classes, authoring_org, author, source_system, ",
            "effective_time, recorded_time, create_time, update_time, requester_user_id, requester_org, ",
            "requester_role, requester_display"
        )
    };
}
const FULL_COLUMNS: &str = version_columns!("payload");
const METADATA_COLUMNS: &str = version_columns!("substr(payload, 1, 0)");
const INSERT_COLUMNS: &str = "record_id, version, seq, creation_seq, change_type, patient_id, resource_type, status, \
     retraction_reason, content_type, payload, content_hash, payload_size, data_classes, authoring_org, author, \
     source_system, effective_time, recorded_time, create_time, update_time, requester_user_id, requester_org, \
     requester_role, requester_display";
const INSERT_WIDTH: usize = 25;
/// Creates written by one transaction at most: an import's transaction (on SQLite, its request
/// ids are looked up with one parameter each, under SQLite's 32766).
pub const MAX_CREATES_PER_WRITE: usize = 2000;
/// Rows per multi-row INSERT: 25 parameters a row stays well under SQLite's 32766 and
/// PostgreSQL's 65535 bind parameters.
const ROWS_PER_INSERT: usize = 500;
/// PostgreSQL batches of at least this many creates are written with COPY. COPY costs four more
/// round trips (about 0.25 ms here) and saves about 12 us of server time per row against
/// the one-statement INSERT, so it pays from a few dozen rows: imports, not single creates.
const COPY_FROM_ROWS: usize = 100;

/// `change_type` values, as in `carerecord.common.v1.ChangeType`.
pub const CREATED: i64 = 1;
pub const UPDATED: i64 = 2;
pub const RETRACTED: i64 = 3;
/// `status` values, as in `carerecord.records.v1.RecordStatus`.
pub const CURRENT: i64 = 1;
pub const ENTERED_IN_ERROR: i64 = 2;

/// One stored version of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub record_id: String,
    pub version: i64,
    pub seq: i64,
    pub creation_seq: i64,
    pub change_type: i64,
    pub status: i64,
    pub retraction_reason: String,
    /// Empty when read in the metadata view; `payload_size` and `fields.content_hash` stay set.
    pub fields: RecordFields,
    pub payload_size: i64,
    pub recorded_time: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub requester: Actor,
}

impl Version {
    pub fn etag(&self) -> String {
        format!("v{}-{}", self.version, self.seq)
    }

    fn from_row(row: &AnyRow) -> Result<Version, sqlx::Error> {
        let recorded_time: i64 = row.try_get("recorded_time")?;
        Ok(Version {
            record_id: row.try_get("record_id")?,
            version: row.try_get("version")?,
            seq: row.try_get("seq")?,
            creation_seq: row.try_get("creation_seq")?,
            change_type: row.try_get("change_type")?,
            status: row.try_get("status")?,
            retraction_reason: row.try_get("retraction_reason")?,
            fields: RecordFields {
                patient_id: row.try_get("patient_id")?,
                resource_type: row.try_get("resource_type")?,
                payload: row.try_get("payload")?,
                content_hash: row.try_get("content_hash")?,
                data_classes: row.try_get("data_classes")?,
                authoring_org: row.try_get("authoring_org")?,
                author: row.try_get("author")?,
                source_system: row.try_get("source_system")?,
                effective_time: row.try_get("effective_time")?,
                recorded_time: Some(recorded_time),
            },
            payload_size: row.try_get("payload_size")?,
            recorded_time,
            create_time: row.try_get("create_time")?,
            update_time: row.try_get("update_time")?,
            requester: Actor {
                user_id: row.try_get("requester_user_id")?,
                organisation_ods_code: row.try_get("requester_org")?,
                role_code: row.try_get("requester_role")?,
                display_name: row.try_get("requester_display")?,
            },
        })
    }
}

/// A record to create, validated.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub request_id: Option<String>,
    pub fields: RecordFields,
    pub requester: Actor,
}

/// What became of one create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Written as version 1.
    Created(Box<Version>),
    /// The request id was used before with the same record, which this is: nothing written.
    Deduplicated { record_id: String },
    /// The request id was used before with a different record: nothing written.
    RequestIdReused,
}

/// A query parameter of dynamically built SQL.
#[derive(Debug, Clone)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// SQL built piece by piece, with numbered placeholders for its parameters.
#[derive(Debug, Default)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            params: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `param`.
    pub fn bind(&mut self, param: Param) -> &mut Self {
        self.params.push(param);
        self.text.push('$');
        self.text.push_str(&self.params.len().to_string());
        self
    }

    /// Appends `column IN ($a, $b, ...)` over `values` (at least one).
    pub fn in_list(&mut self, column: &str, values: &[String]) -> &mut Self {
        self.push(column).push(" IN (");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(Param::Text(value.clone()));
        }
        self.push(")")
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.as_str()));
        for param in &self.params {
            query = match param {
                Param::Int(v) => query.bind(*v),
                Param::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

/// The store of one records database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
    /// The newest sequence this process committed: wakes change feed watchers at once.
    head: watch::Sender<i64>,
}

impl Store {
    pub fn new(db: Database) -> Store {
        Store {
            db,
            head: watch::Sender::new(0),
        }
    }

    /// Notified with the newest sequence each time this process commits a write.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    fn committed(&self, seq: i64) {
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// Refreshes PostgreSQL's statistics of the records table after a bulk import, rather than
    /// waiting minutes for autovacuum: with stale statistics the planner sorts the whole table for
    /// each export chunk instead of walking the creation index (measured: 14,700 against 147,000
    /// records/s). Only the columns that queries filter or sort on are sampled (0.4 -> 0.2 s at
    /// 300,000 records). SQLite plans these queries from the indexes alone.
    pub async fn refresh_statistics(&self) -> Result<(), sqlx::Error> {
        if self.db.backend == Backend::Postgres {
            sqlx::raw_sql(
                "ANALYZE record_versions (seq, superseded_seq, creation_seq, patient_id, resource_type, \
                 status, data_classes, effective_time, update_time), request_ids (request_id)",
            )
                .execute(&self.db.pool)
                .await?;
        }
        Ok(())
    }

    /// The sequence of the last committed write (0 for an empty store).
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT seq FROM feed_head WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
    }

    /// The latest version of a record, or the given one.
    pub async fn get(
        &self,
        record_id: &str,
        version: Option<i64>,
        with_payload: bool,
    ) -> Result<Option<Version>, sqlx::Error> {
        let mut sql = select(with_payload);
        sql.push(" WHERE record_id = ")
            .bind(Param::Text(record_id.to_owned()));
        match version {
            Some(v) => sql.push(" AND version = ").bind(Param::Int(v)),
            None => sql.push(" AND superseded_seq IS NULL"),
        };
        Ok(self.fetch(&sql).await?.pop())
    }

    /// The latest versions of the records `ids` (distinct) that exist, with their payloads.
    pub async fn latest_many(&self, ids: &[String]) -> Result<Vec<Version>, sqlx::Error> {
        let mut sql = select(true);
        sql.push(" WHERE superseded_seq IS NULL AND ")
            .in_list("record_id", ids);
        self.fetch(&sql).await
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
        sql.push(" WHERE record_id = ")
            .bind(Param::Text(record_id.to_owned()));
        sql.push(" AND version <= ").bind(Param::Int(max_version));
        sql.push(" ORDER BY version DESC LIMIT ")
            .bind(Param::Int(limit));
        self.fetch(&sql).await
    }

    /// Runs a SELECT of version rows built with [`select`].
    pub async fn fetch(&self, sql: &Sql) -> Result<Vec<Version>, sqlx::Error> {
        let rows = sql.query().fetch_all(&self.db.pool).await?;
        rows.iter().map(Version::from_row).collect()
    }

    /// Streams the rows of a SELECT built with [`select`], reading them as they are consumed.
    pub fn stream<'a>(
        &'a self,
        sql: &'a Sql,
    ) -> impl tokio_stream::Stream<Item = Result<Version, sqlx::Error>> + Send + 'a {
        use tokio_stream::StreamExt;
        sql.query()
            .fetch(&self.db.pool)
            .map(|row| row.and_then(|row| Version::from_row(&row)))
    }

    /// Creates records, in order: creation sequences increase with position. Request ids are
    /// checked against earlier creates and against earlier items of the batch. Each chunk of
    /// [`MAX_CREATES_PER_WRITE`] items is written atomically, in its `turn`.
    pub async fn create_batch(
        &self,
        items: &[NewRecord],
        mut turn: Turn,
    ) -> Result<Vec<CreateOutcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(items.len());
        let chunks = items.chunks(MAX_CREATES_PER_WRITE);
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            // The first chunk waits for the batch before; only the last lets the next one in.
            let mut chunk_turn = if i + 1 == count {
                std::mem::take(&mut turn)
            } else {
                Turn {
                    after: turn.after.take(),
                    locked: None,
                }
            };
            let written = match self.db.backend {
                Backend::Postgres => self.create_postgres(chunk, &mut chunk_turn).await?,
                Backend::Sqlite => self.create_sqlite(chunk, &mut chunk_turn).await?,
            };
            outcomes.extend(written);
        }
        Ok(outcomes)
    }

    /// PostgreSQL: one statement that takes the head lock, reserves the sequences and inserts
    /// every row, committed on its own (or, for large batches, COPY). Request ids are almost
    /// always new, so the first attempt assumes they are: one used before makes the write fail
    /// on the unique key, writing nothing, and the batch is planned again from a lookup of its
    /// ids (the lookup of 1,000 ids took 5 ms of a 25 ms import batch here; CreateRecord went
    /// from 1.0 to 1.4 of the bare insert). The lookup runs before the lock, so an id committed
    /// meanwhile by another writer fails the write again, and the batch is planned anew.
    async fn create_postgres(
        &self,
        items: &[NewRecord],
        turn: &mut Turn,
    ) -> Result<Vec<CreateOutcome>, sqlx::Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let known = if attempts == 1 {
                HashMap::new()
            } else {
                known_request_ids(&self.db.pool, self.db.backend, items).await?
            };
            let mut plan = Plan::new(items, &known, now_micros());
            if plan.versions.is_empty() {
                turn.wait().await;
                return Ok(plan.outcomes());
            }
            let written = match &self.db.postgres {
                Some(pg) if plan.versions.len() >= COPY_FROM_ROWS => {
                    self.copy_from_head(pg, &mut plan, turn).await
                }
                _ => {
                    turn.wait().await;
                    let last = self.insert_from_head(&mut plan).await;
                    if last.is_ok() {
                        turn.locked();
                    }
                    last
                }
            };
            match written {
                Ok(last) => {
                    self.committed(last);
                    return Ok(plan.outcomes());
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 4 => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The one statement of a PostgreSQL batch. The rows travel as one JSON parameter, so the
    /// statement text is the same for every batch size: prepared once per connection, with two
    /// parameters instead of thousands (planning thousands of parameters costs more than the insert).
    /// `json`, not `jsonb`: the rows are read once, so building jsonb's binary form is wasted
    /// (store write 47 -> 44 us per record here).
    async fn insert_from_head(&self, plan: &mut Plan<'_>) -> Result<i64, sqlx::Error> {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            record_id: &'a str,
            offset: i64,
            patient_id: &'a str,
            resource_type: &'a str,
            payload: String,
            content_hash: &'a str,
            data_classes: &'a str,
            authoring_org: &'a str,
            author: &'a str,
            source_system: &'a str,
            effective_time: Option<i64>,
            recorded_time: i64,
            create_time: i64,
            requester_user_id: &'a str,
            requester_org: &'a str,
            requester_role: &'a str,
            requester_display: &'a str,
            request_id: Option<&'a str>,
            fingerprint: Option<String>,
        }
        let n = plan.versions.len();
        let request_ids: HashMap<&str, (&str, &[u8])> = plan
            .new_ids
            .iter()
            .map(|(request_id, fingerprint, record_id)| {
                (record_id.as_str(), (*request_id, fingerprint.as_slice()))
            })
            .collect();
        let rows: Vec<Row> = plan
            .versions
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let f = &v.fields;
                let request = request_ids.get(v.record_id.as_str());
                Row {
                    record_id: &v.record_id,
                    offset: (n - 1 - j) as i64,
                    patient_id: &f.patient_id,
                    resource_type: &f.resource_type,
                    payload: hex::encode(&f.payload),
                    content_hash: &f.content_hash,
                    data_classes: &f.data_classes,
                    authoring_org: &f.authoring_org,
                    author: &f.author,
                    source_system: &f.source_system,
                    effective_time: f.effective_time,
                    recorded_time: v.recorded_time,
                    create_time: v.create_time,
                    requester_user_id: &v.requester.user_id,
                    requester_org: &v.requester.organisation_ods_code,
                    requester_role: &v.requester.role_code,
                    requester_display: &v.requester.display_name,
                    request_id: request.map(|r| r.0),
                    fingerprint: request.map(|r| hex::encode(r.1)),
                }
            })
            .collect();
        let rows = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let last: i64 = sqlx::query_scalar(
            "WITH input AS (SELECT * FROM json_to_recordset(CAST($2 AS json)) AS x(record_id text, \"offset\" bigint, \
             patient_id text, resource_type text, payload text, content_hash text, data_classes text, authoring_org text, \
             author text, source_system text, effective_time bigint, recorded_time bigint, create_time bigint, \
             requester_user_id text, requester_org text, requester_role text, requester_display text, request_id text, \
             fingerprint text)), \
             head AS (UPDATE feed_head SET seq = seq + $1 WHERE id = 1 RETURNING seq), \
             v AS (INSERT INTO record_versions (record_id, version, seq, creation_seq, change_type, patient_id, \
             resource_type, status, retraction_reason, content_type, payload, content_hash, payload_size, data_classes, \
             authoring_org, author, source_system, effective_time, recorded_time, create_time, update_time, \
             requester_user_id, requester_org, requester_role, requester_display) \
             SELECT record_id, 1, h.seq - \"offset\", h.seq - \"offset\", 1, patient_id, resource_type, 1, '', \
             'application/fhir+json', decode(payload, 'hex'), content_hash, length(payload) / 2, data_classes, \
             authoring_org, author, source_system, effective_time, recorded_time, create_time, create_time, \
             requester_user_id, requester_org, requester_role, requester_display FROM input, head h), \
             r AS (INSERT INTO request_ids (request_id, fingerprint, record_id) \
             SELECT request_id, decode(fingerprint, 'hex'), record_id FROM input WHERE request_id IS NOT NULL) \
             SELECT seq FROM head",
        )
        .bind(n as i64)
        .bind(rows)
        .fetch_one(&self.db.pool)
        .await?;
        plan.number_from(last - n as i64 + 1);
        Ok(last)
    }

    /// A large PostgreSQL batch, with COPY in one transaction: the request ids first, so that an id
    /// committed meanwhile by another writer fails the batch before the head lock is taken, then
    /// the head lock and the versions. The transaction begins in `turn`, once the batch before
    /// holds the head lock and so has copied its own request ids: it never waits for this one's.
    async fn copy_from_head(
        &self,
        pg: &PgPool,
        plan: &mut Plan<'_>,
        turn: &mut Turn,
    ) -> Result<i64, sqlx::Error> {
        let n = plan.versions.len();
        turn.wait().await;
        let mut tx = pg.begin().await?;
        if !plan.new_ids.is_empty() {
            let mut rows = CopyRows::new(3, plan.new_ids.len() * 120);
            for (request_id, fingerprint, record_id) in &plan.new_ids {
                rows.row()
                    .text(request_id)
                    .bytes(fingerprint)
                    .text(record_id);
            }
            copy_in(
                &mut tx,
                "COPY request_ids (request_id, fingerprint, record_id) FROM STDIN (FORMAT binary)",
                rows,
            )
            .await?;
        }
        let last: i64 = sqlx::query_scalar(TAKE_SEQUENCES)
            .bind(n as i64)
            .fetch_one(&mut *tx)
            .await?;
        turn.locked();
        plan.number_from(last - n as i64 + 1);
        let bytes: usize = plan
            .versions
            .iter()
            .map(|v| v.fields.payload.len() + 400)
            .sum();
        let mut rows = CopyRows::new(INSERT_WIDTH as i16, bytes);
        for version in &plan.versions {
            put_version(rows.row(), version);
        }
        let statement =
            format!("COPY record_versions ({INSERT_COLUMNS}) FROM STDIN (FORMAT binary)");
        copy_in(&mut tx, &statement, rows).await?;
        tx.commit().await?;
        Ok(last)
    }

    /// SQLite: one writer at a time; the statements of a transaction are in-process calls.
    async fn create_sqlite(
        &self,
        items: &[NewRecord],
        turn: &mut Turn,
    ) -> Result<Vec<CreateOutcome>, sqlx::Error> {
        turn.wait().await;
        let mut tx = self.db.pool.begin().await?;
        // Taking the head lock first makes the request id lookup race-free.
        let last = take_sequences(&mut tx, items.len()).await?;
        turn.locked();
        let known = known_request_ids(&mut *tx, self.db.backend, items).await?;
        let mut plan = Plan::new(items, &known, now_micros());
        plan.number_from(last - items.len() as i64 + 1);
        let refs: Vec<&Version> = plan.versions.iter().collect();
        for chunk in refs.chunks(ROWS_PER_INSERT) {
            insert_versions(&mut tx, chunk).await?;
        }
        for chunk in plan.new_ids.chunks(ROWS_PER_INSERT) {
            let mut text = String::from(
                "INSERT INTO request_ids (request_id, fingerprint, record_id) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = 3 * i + 1;
                text.push_str(&format!(
                    "{}(${p}, ${}, ${})",
                    if i == 0 { "" } else { ", " },
                    p + 1,
                    p + 2
                ));
            }
            let mut query = sqlx::query(AssertSqlSafe(text.as_str()));
            for (request_id, fingerprint, record_id) in chunk {
                query = query
                    .bind(*request_id)
                    .bind(fingerprint.as_slice())
                    .bind(record_id.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.committed(last);
        Ok(plan.outcomes())
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

/// Conditions on the state of records as of a snapshot, shared by ListRecords and ExportRecords.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub snapshot: i64,
    /// Empty: every patient.
    pub patient_ids: Vec<String>,
    pub resource_types: Vec<String>,
    pub data_classes: Vec<String>,
    pub excluded_data_classes: Vec<String>,
    pub effective_from: Option<i64>,
    pub effective_to: Option<i64>,
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
    pub include_retracted: bool,
}

impl Filter {
    /// Appends ` WHERE ...`: the version current at the snapshot, matching every filter.
    pub fn push_conditions(&self, sql: &mut Sql) {
        sql.push(" WHERE seq <= ")
            .bind(Param::Int(self.snapshot))
            .push(" AND (superseded_seq IS NULL OR superseded_seq > ")
            .bind(Param::Int(self.snapshot))
            .push(")");
        if !self.patient_ids.is_empty() {
            sql.push(" AND ").in_list("patient_id", &self.patient_ids);
        }
        if !self.include_retracted {
            sql.push(" AND status = ").bind(Param::Int(CURRENT));
        }
        if !self.resource_types.is_empty() {
            sql.push(" AND ")
                .in_list("resource_type", &self.resource_types);
        }
        let any_label = |sql: &mut Sql, labels: &[String]| {
            sql.push("(");
            for (i, label) in labels.iter().enumerate() {
                sql.push(if i == 0 {
                    "data_classes LIKE "
                } else {
                    " OR data_classes LIKE "
                })
                .bind(Param::Text(format!("%|{label}|%")));
            }
            sql.push(")");
        };
        if !self.data_classes.is_empty() {
            sql.push(" AND ");
            any_label(sql, &self.data_classes);
        }
        if !self.excluded_data_classes.is_empty() {
            sql.push(" AND NOT ");
            any_label(sql, &self.excluded_data_classes);
        }
        for (column, op, bound) in [
            ("effective_time", " >= ", self.effective_from),
            ("effective_time", " < ", self.effective_to),
            ("update_time", " >= ", self.updated_from),
            ("update_time", " < ", self.updated_to),
        ] {
            if let Some(bound) = bound {
                sql.push(" AND ")
                    .push(column)
                    .push(op)
                    .bind(Param::Int(bound));
            }
        }
    }
}

/// `SELECT <columns> FROM record_versions`, to be completed with conditions.
pub fn select(with_payload: bool) -> Sql {
    Sql::new(&format!(
        "SELECT {} FROM record_versions",
        if with_payload {
            FULL_COLUMNS
        } else {
            METADATA_COLUMNS
        }
    ))
}

/// Reserves `$1` sequences and takes the head lock until the transaction ends; returns the last.
const TAKE_SEQUENCES: &str = "UPDATE feed_head SET seq = seq + $1 WHERE id = 1 RETURNING seq";

/// Runs [`TAKE_SEQUENCES`] for `n` sequences.
async fn take_sequences(tx: &mut sqlx::Transaction<'_, Any>, n: usize) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(TAKE_SEQUENCES)
        .bind(n as i64)
        .fetch_one(&mut **tx)
        .await
}

/// The place of a batch in a sequence of batches that must commit in order (an import's). A batch
/// takes the feed head lock only once the batch before has taken it, and says when it has; until
/// then it may look up its request ids, so that one batch is prepared while the one before is
/// written. A batch that ends, or fails, lets the next one in. The default turn stands alone.
#[derive(Debug, Default)]
pub struct Turn {
    after: Option<oneshot::Receiver<()>>,
    locked: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// Waits for the batch before to hold the head lock (or to have ended).
    async fn wait(&mut self) {
        if let Some(after) = self.after.take() {
            let _ = after.await; // an error: the batch before ended or failed
        }
    }

    /// Lets the next batch take the lock after this one.
    fn locked(&mut self) {
        if let Some(locked) = self.locked.take() {
            let _ = locked.send(());
        }
    }
}

/// Hands out the turns of one sequence of batches, in commit order.
#[derive(Debug, Default)]
pub struct Turns {
    last: Option<oneshot::Receiver<()>>,
}

impl Turns {
    pub fn next_turn(&mut self) -> Turn {
        let (locked, after_this) = oneshot::channel();
        Turn {
            after: self.last.replace(after_this),
            locked: Some(locked),
        }
    }
}

/// What a batch of creates will write, before sequences are assigned.
struct Plan<'a> {
    /// Per item: the index of its new version, or its outcome without a write.
    slots: Vec<Result<usize, CreateOutcome>>,
    versions: Vec<Version>,
    /// Request ids first used by this batch: id, fingerprint, record id.
    new_ids: Vec<(&'a str, Vec<u8>, String)>,
}

impl<'a> Plan<'a> {
    fn new(
        items: &'a [NewRecord],
        known: &HashMap<String, (Vec<u8>, String)>,
        now: i64,
    ) -> Plan<'a> {
        let mut plan = Plan {
            slots: Vec::with_capacity(items.len()),
            versions: Vec::new(),
            new_ids: Vec::new(),
        };
        let mut fresh: HashMap<&str, usize> = HashMap::new(); // request id -> index in new_ids
        for item in items {
            let fingerprint = item.request_id.as_ref().map(|_| item.fields.fingerprint());
            if let (Some(request_id), Some(fingerprint)) = (&item.request_id, &fingerprint) {
                let earlier = known
                    .get(request_id.as_str())
                    .map(|(f, id)| (f, id))
                    .or_else(|| {
                        fresh
                            .get(request_id.as_str())
                            .map(|&i| (&plan.new_ids[i].1, &plan.new_ids[i].2))
                    });
                if let Some((earlier_fingerprint, record_id)) = earlier {
                    let outcome = if earlier_fingerprint == fingerprint {
                        CreateOutcome::Deduplicated {
                            record_id: record_id.clone(),
                        }
                    } else {
                        CreateOutcome::RequestIdReused
                    };
                    plan.slots.push(Err(outcome));
                    continue;
                }
            }
            let version = Version {
                record_id: crate::domain::ids::new_record_id(),
                version: 1,
                seq: 0,
                creation_seq: 0,
                change_type: CREATED,
                status: CURRENT,
                retraction_reason: String::new(),
                payload_size: item.fields.payload.len() as i64,
                recorded_time: item.fields.recorded_time.unwrap_or(now),
                create_time: now,
                update_time: now,
                fields: item.fields.clone(),
                requester: item.requester.clone(),
            };
            if let (Some(request_id), Some(fingerprint)) = (&item.request_id, fingerprint) {
                fresh.insert(request_id, plan.new_ids.len());
                plan.new_ids
                    .push((request_id, fingerprint, version.record_id.clone()));
            }
            plan.slots.push(Ok(plan.versions.len()));
            plan.versions.push(version);
        }
        plan
    }

    /// Gives the new versions their sequences, consecutive from `first`, once they are reserved.
    fn number_from(&mut self, first: i64) {
        for (j, version) in self.versions.iter_mut().enumerate() {
            version.seq = first + j as i64;
            version.creation_seq = version.seq;
        }
    }

    fn outcomes(self) -> Vec<CreateOutcome> {
        let mut versions: Vec<Option<Version>> = self.versions.into_iter().map(Some).collect();
        self.slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => CreateOutcome::Created(Box::new(
                    versions[i].take().expect("each new version is taken once"),
                )),
                Err(outcome) => outcome,
            })
            .collect()
    }
}

/// The fingerprint and record of each request id of `items` used before.
async fn known_request_ids<'e, E>(
    executor: E,
    backend: Backend,
    items: &[NewRecord],
) -> Result<HashMap<String, (Vec<u8>, String)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let ids: Vec<String> = items.iter().filter_map(|i| i.request_id.clone()).collect();
    let mut known = HashMap::new();
    if ids.is_empty() {
        return Ok(known);
    }
    // One chunk: batches hold at most MAX_CREATES_PER_WRITE items. On PostgreSQL the ids travel
    // as one JSON array, so the statement is prepared once whatever the batch size.
    let mut sql = Sql::new("SELECT request_id, fingerprint, record_id FROM request_ids WHERE ");
    match backend {
        Backend::Postgres => {
            let array =
                serde_json::to_string(&ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sql.push("request_id IN (SELECT jsonb_array_elements_text(CAST(")
                .bind(Param::Text(array))
                .push(" AS jsonb)))");
        }
        Backend::Sqlite => {
            sql.in_list("request_id", &ids);
        }
    }
    // Planned at each use, never from a cached generic plan: one made while request_ids was small
    // is a hash join over a sequential scan, and was kept while an import grew the table (25 ms a
    // batch at 250,000 ids, against 1 ms for index probes).
    for row in sql.query().persistent(false).fetch_all(executor).await? {
        known.insert(
            row.try_get("request_id")?,
            (row.try_get("fingerprint")?, row.try_get("record_id")?),
        );
    }
    Ok(known)
}

/// Sends `rows` with a `COPY … FROM STDIN (FORMAT binary)` statement.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: CopyRows,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await
}

/// Puts the columns of one version in INSERT_COLUMNS order, as bind parameters or a COPY row.
fn put_version<C: Columns>(columns: &mut C, v: &Version) {
    let (f, r) = (&v.fields, &v.requester);
    columns
        .text(&v.record_id)
        .int(v.version)
        .int(v.seq)
        .int(v.creation_seq)
        .int(v.change_type)
        .text(&f.patient_id)
        .text(&f.resource_type)
        .int(v.status)
        .text(&v.retraction_reason)
        .text(crate::domain::record::FHIR_JSON)
        .bytes(&f.payload)
        .text(&f.content_hash)
        .int(v.payload_size)
        .text(&f.data_classes)
        .text(&f.authoring_org)
        .text(&f.author)
        .text(&f.source_system)
        .optional_int(f.effective_time)
        .int(v.recorded_time)
        .int(v.create_time)
        .int(v.update_time)
        .text(&r.user_id)
        .text(&r.organisation_ods_code)
        .text(&r.role_code)
        .text(&r.display_name);
}

/// Bind parameters of an `Any` query, keeping the first encoding error.
#[derive(Default)]
struct BindArgs {
    args: AnyArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl BindArgs {
    fn add<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
    {
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
        self
    }

    fn into_result(self) -> Result<AnyArguments, sqlx::error::BoxDynError> {
        self.error.map_or(Ok(self.args), Err)
    }
}

impl Columns for BindArgs {
    fn text(&mut self, value: &str) -> &mut Self {
        self.add(value)
    }
    fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.add(value)
    }
    fn int(&mut self, value: i64) -> &mut Self {
        self.add(value)
    }
    fn optional_int(&mut self, value: Option<i64>) -> &mut Self {
        self.add(value)
    }
}

async fn insert_versions(
    tx: &mut sqlx::Transaction<'_, Any>,
    versions: &[&Version],
) -> Result<(), sqlx::Error> {
    let mut text = format!("INSERT INTO record_versions ({INSERT_COLUMNS}) VALUES ");
    for i in 0..versions.len() {
        text.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..INSERT_WIDTH {
            if c > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(i * INSERT_WIDTH + c + 1).to_string());
        }
        text.push(')');
    }
    let mut args = BindArgs::default();
    for v in versions {
        put_version(&mut args, v);
    }
    let args = args.into_result().map_err(sqlx::Error::Encode)?;
    sqlx::query_with(AssertSqlSafe(text.as_str()), args)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
