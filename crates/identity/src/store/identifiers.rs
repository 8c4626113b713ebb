//! Identifiers (NHS numbers and local identifiers): each held by one patient, found in one
//! indexed lookup.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::identity::v1::Patient;
use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::{Store, Stored, decode_stored};
use crate::domain::patient::identifier_keys;
use crate::error::{Conflict, Error};
use carerecord_platform::sql::{Value, finish, insert_rows, push_in};

/// An identifier key: (system, value).
pub(super) type Key = (String, String);

/// The holder of a key and, when the holder is merged, its survivor.
pub(super) type Holders = HashMap<Key, (String, Option<String>)>;

const INSERT: &str = "INSERT INTO identifiers (system, value, patient_id)";

impl Store {
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
}

/// Holders of any of `keys` among stored patients.
pub(super) async fn holders(conn: &mut AnyConnection, keys: &[Key]) -> Result<Holders, Error> {
    let mut out = HashMap::new();
    let values: Vec<&String> = keys
        .iter()
        .map(|(_, v)| v)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let wanted: HashSet<&Key> = keys.iter().collect();
    for chunk in values.chunks(1000) {
        let mut builder = QueryBuilder::<Any>::new(
            "SELECT system, value, patient_id FROM identifiers WHERE value",
        );
        push_in(&mut builder, chunk.iter().map(|v| (*v).clone()));
        for row in finish(&mut builder)?.fetch_all(&mut *conn).await? {
            let key: Key = (row.try_get("system")?, row.try_get("value")?);
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

/// The conflicts of `keys` with their `holders`.
pub(super) fn conflicts(keys: &[Key], holders: &Holders) -> Vec<Conflict> {
    keys.iter()
        .filter_map(|k| {
            holders.get(k).map(|(holder, merged)| Conflict {
                identifier: format!("{}|{}", k.0, k.1),
                holder: holder.clone(),
                holder_merged_into: merged.clone(),
            })
        })
        .collect()
}

/// The `identifiers` rows of a new patient.
pub(super) fn rows(patient: &Patient) -> Vec<Vec<Value>> {
    identifier_keys(patient)
        .into_iter()
        .map(|(system, value)| key_row(system, value, &patient.patient_id))
        .collect()
}

fn key_row(system: String, value: String, patient_id: &str) -> Vec<Value> {
    vec![
        Value::Text(system),
        Value::Text(value),
        Value::Text(patient_id.to_owned()),
    ]
}

pub(super) async fn insert(conn: &mut AnyConnection, rows: Vec<Vec<Value>>) -> Result<(), Error> {
    Ok(insert_rows(conn, INSERT, rows).await?)
}

/// Moves the identifiers of `old` to those of `new` (the same patient): the dropped ones are
/// released, the added ones reserved, failing with the conflicts when another patient holds one.
pub(super) async fn rereserve(
    conn: &mut AnyConnection,
    old: &Patient,
    new: &Patient,
) -> Result<(), Error> {
    let id = &new.patient_id;
    let old_keys: HashSet<Key> = identifier_keys(old).into_iter().collect();
    let new_keys: Vec<Key> = identifier_keys(new);
    let added: Vec<Key> = new_keys
        .iter()
        .filter(|k| !old_keys.contains(*k))
        .cloned()
        .collect();
    let new_set: HashSet<&Key> = new_keys.iter().collect();
    for (system, value) in old_keys.iter().filter(|k| !new_set.contains(k)) {
        sqlx::query("DELETE FROM identifiers WHERE value = $1 AND system = $2 AND patient_id = $3")
            .bind(value.clone())
            .bind(system.clone())
            .bind(id.clone())
            .execute(&mut *conn)
            .await?;
    }
    if added.is_empty() {
        return Ok(());
    }
    let held = holders(conn, &added).await?;
    if !held.is_empty() {
        return Err(Error::Conflicts(conflicts(&added, &held)));
    }
    let rows = added
        .into_iter()
        .map(|(system, value)| key_row(system, value, id))
        .collect();
    insert(conn, rows).await
}
