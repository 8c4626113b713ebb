//! Request ids of creates and import items (AIP-155): what each was first used with.

use std::collections::HashMap;

use carerecord_platform::db::Backend;
use carerecord_platform::sql::{Value, finish, insert_rows, push_in};
use sqlx::postgres::PgConnection;
use sqlx::{Any, QueryBuilder, Row};

use super::copy::{Columns, CopyRows, copy_in};

/// A request id first used by a batch: id, fingerprint, record id.
pub(super) type NewRequestId<'a> = (&'a str, Vec<u8>, String);

/// The fingerprint and record id of request ids used before, by request id.
pub(super) type KnownRequestIds = HashMap<String, (Vec<u8>, String)>;

/// The fingerprint and record of each of `ids` used before.
pub(super) async fn known<'e, E>(
    executor: E,
    backend: Backend,
    ids: Vec<String>,
) -> Result<KnownRequestIds, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let mut known = KnownRequestIds::new();
    if ids.is_empty() {
        return Ok(known);
    }
    // One chunk: batches hold at most MAX_CREATES_PER_WRITE items. On PostgreSQL the ids travel
    // as one JSON array, so the statement is prepared once whatever the batch size.
    let mut sql =
        QueryBuilder::new("SELECT request_id, fingerprint, record_id FROM request_ids WHERE ");
    match backend {
        Backend::Postgres => {
            let array =
                serde_json::to_string(&ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sql.push("request_id IN (SELECT jsonb_array_elements_text(CAST(")
                .push_bind(array)
                .push(" AS jsonb)))");
        }
        Backend::Sqlite => {
            sql.push("request_id");
            push_in(&mut sql, ids);
        }
    }
    // Planned at each use, never from a cached generic plan: one made while request_ids was small
    // is a hash join over a sequential scan, and was kept while an import grew the table.
    for row in finish(&mut sql)?
        .persistent(false)
        .fetch_all(executor)
        .await?
    {
        known.insert(
            row.try_get("request_id")?,
            (row.try_get("fingerprint")?, row.try_get("record_id")?),
        );
    }
    Ok(known)
}

/// Inserts request ids with one multi-row INSERT.
pub(super) async fn insert(
    tx: &mut sqlx::Transaction<'_, Any>,
    new_ids: &[NewRequestId<'_>],
) -> Result<(), sqlx::Error> {
    let rows = new_ids
        .iter()
        .map(|(request_id, fingerprint, record_id)| {
            vec![
                Value::Text((*request_id).to_owned()),
                Value::Blob(fingerprint.clone()),
                Value::Text(record_id.clone()),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO request_ids (request_id, fingerprint, record_id)",
        rows,
    )
    .await
}

/// PostgreSQL: writes request ids with COPY.
pub(super) async fn copy(
    conn: &mut PgConnection,
    new_ids: &[NewRequestId<'_>],
) -> Result<(), sqlx::Error> {
    let mut rows = CopyRows::new(3, new_ids.len() * 120);
    for (request_id, fingerprint, record_id) in new_ids {
        rows.row()
            .text(request_id)
            .bytes(fingerprint)
            .text(record_id);
    }
    copy_in(
        conn,
        "COPY request_ids (request_id, fingerprint, record_id) FROM STDIN (FORMAT binary)",
        rows,
    )
    .await?;
    Ok(())
}
