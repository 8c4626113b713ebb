//! PostgreSQL's way of writing creates: one statement for a small batch, COPY for a large one.

use std::collections::HashMap;

use carerecord_platform::db::now_micros;
use sqlx::postgres::PgPool;

use super::copy::{CopyRows, copy_in};
use super::database::Store;
use super::feed::TAKE_SEQUENCES;
use super::plan::{CreateOutcome, NewRecord, Plan, request_ids_of};
use super::request_ids;
use super::turns::Turn;
use super::version::{INSERT_WIDTH, insert_columns, put_version};

/// Batches of at least this many creates are written with COPY. COPY costs a few more round trips
/// and saves server time on every row against the one-statement INSERT, so it pays for imports,
/// not for single creates.
const COPY_FROM_ROWS: usize = 100;

impl Store {
    /// One statement that takes the head lock, reserves the sequences and inserts every row,
    /// committed on its own (or, for large batches, COPY). Request ids are almost always new, so
    /// the first attempt assumes they are: one used before makes the write fail on the unique key,
    /// writing nothing, and the batch is planned again from a lookup of its ids (a lookup on every
    /// batch would cost a round trip and an index probe per id). The lookup runs before the lock,
    /// so an id committed meanwhile by another writer fails the write again, and the batch is
    /// planned anew.
    pub(super) async fn create_postgres(
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
                request_ids::known(&self.db.pool, self.db.backend, request_ids_of(items)).await?
            };
            let mut plan = Plan::new(items, &known, now_micros());
            if plan.versions.is_empty() {
                turn.wait().await;
                return Ok(plan.outcomes());
            }
            let written = match &self.db.postgres {
                Some(pg) if plan.versions.len() >= COPY_FROM_ROWS => {
                    copy_from_head(pg, &mut plan, turn).await
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

    /// The one statement of a batch. The rows travel as one JSON parameter, so the statement text
    /// is the same for every batch size: prepared once per connection, with two parameters instead
    /// of thousands (planning thousands of parameters costs more than the insert). `json`, not
    /// `jsonb`: the rows are read once, so building jsonb's binary form is wasted.
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
            codes: &'a str,
            categories: &'a str,
            fhir_status: &'a str,
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
                    codes: &f.terms.codes,
                    categories: &f.terms.categories,
                    fhir_status: &f.terms.status,
                }
            })
            .collect();
        let rows = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let last: i64 = sqlx::query_scalar(
            "WITH input AS (SELECT * FROM json_to_recordset(CAST($2 AS json)) AS x(record_id text, \"offset\" bigint, \
             patient_id text, resource_type text, payload text, content_hash text, data_classes text, authoring_org text, \
             author text, source_system text, effective_time bigint, recorded_time bigint, create_time bigint, \
             requester_user_id text, requester_org text, requester_role text, requester_display text, request_id text, \
             fingerprint text, codes text, categories text, fhir_status text)), \
             head AS (UPDATE feed_head SET seq = seq + $1 WHERE id = 1 RETURNING seq), \
             v AS (INSERT INTO record_versions (record_id, version, seq, creation_seq, change_type, patient_id, \
             resource_type, status, retraction_reason, content_type, payload, content_hash, payload_size, data_classes, \
             authoring_org, author, source_system, effective_time, recorded_time, create_time, update_time, \
             requester_user_id, requester_org, requester_role, requester_display, codes, categories, fhir_status) \
             SELECT record_id, 1, h.seq - \"offset\", h.seq - \"offset\", 1, patient_id, resource_type, 1, '', \
             'application/fhir+json', decode(payload, 'hex'), content_hash, length(payload) / 2, data_classes, \
             authoring_org, author, source_system, effective_time, recorded_time, create_time, create_time, \
             requester_user_id, requester_org, requester_role, requester_display, codes, categories, fhir_status \
             FROM input, head h), \
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
}

/// A large batch, with COPY in one transaction: the request ids first, so that an id committed
/// meanwhile by another writer fails the batch before the head lock is taken, then the head lock
/// and the versions. The transaction begins in `turn`, once the batch before holds the head lock
/// and so has copied its own request ids: it never waits for this one's.
async fn copy_from_head(
    pg: &PgPool,
    plan: &mut Plan<'_>,
    turn: &mut Turn,
) -> Result<i64, sqlx::Error> {
    let n = plan.versions.len();
    turn.wait().await;
    let mut tx = pg.begin().await?;
    if !plan.new_ids.is_empty() {
        request_ids::copy(&mut tx, &plan.new_ids).await?;
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
    copy_in(
        &mut tx,
        concat!(
            "COPY record_versions (",
            insert_columns!(),
            ") FROM STDIN (FORMAT binary)"
        ),
        rows,
    )
    .await?;
    tx.commit().await?;
    Ok(last)
}
