//! Request ids: what a create or a merge recorded, so that a retry replays its first result and a
//! reused id with another body is refused.

use std::collections::HashMap;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::Write;
use crate::error::Error;
use carerecord_platform::sql::{Value, finish, push_in};

/// What the first request with an id wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub body_hash: String,
    pub patient_id: String,
    pub version: i64,
    /// The second patient a merge wrote, or empty.
    pub related_id: String,
    pub related_version: i64,
}

pub(super) const INSERT: &str = "INSERT INTO request_ids (request_id, body_hash, patient_id, version, related_id, related_version, create_time)";

/// A `request_ids` row, for [`INSERT`].
pub(super) fn row(request_id: &str, request: RecordedRequest, time: i64) -> Vec<Value> {
    vec![
        Value::Text(request_id.to_owned()),
        Value::Text(request.body_hash),
        Value::Text(request.patient_id),
        Value::Int(request.version),
        Value::Text(request.related_id),
        Value::Int(request.related_version),
        Value::Int(time),
    ]
}

/// The (body hash, patient id) recorded for each of `request_ids` that was seen before.
pub(super) async fn recorded(
    conn: &mut AnyConnection,
    request_ids: &[&str],
) -> Result<HashMap<String, (String, String)>, Error> {
    let mut seen = HashMap::new();
    for chunk in request_ids.chunks(1000) {
        let mut builder = QueryBuilder::<Any>::new(
            "SELECT request_id, body_hash, patient_id FROM request_ids WHERE request_id",
        );
        push_in(&mut builder, chunk.iter().map(|id| (*id).to_owned()));
        for row in finish(&mut builder)?.fetch_all(&mut *conn).await? {
            seen.insert(
                row.try_get("request_id")?,
                (row.try_get("body_hash")?, row.try_get("patient_id")?),
            );
        }
    }
    Ok(seen)
}

impl Write {
    /// What the request `request_id` recorded, if it was seen before.
    pub async fn request(&mut self, request_id: &str) -> Result<Option<RecordedRequest>, Error> {
        let row = sqlx::query(
            "SELECT body_hash, patient_id, version, related_id, related_version FROM request_ids WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| {
            Ok(RecordedRequest {
                body_hash: r.try_get("body_hash")?,
                patient_id: r.try_get("patient_id")?,
                version: r.try_get("version")?,
                related_id: r.try_get("related_id")?,
                related_version: r.try_get("related_version")?,
            })
        })
        .transpose()
    }
}
