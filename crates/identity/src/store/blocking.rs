//! What is derived from a patient's features and kept beside it: blocking keys (which candidates
//! matching compares) and name entries (which search reads).

use std::collections::HashSet;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::{Store, decode_features, decode_id_features};
use crate::domain::features::Features;
use crate::error::Error;
use carerecord_platform::sql::{Value, finish, insert_rows, push_in};

const INSERT_KEYS: &str = "INSERT INTO blocking_keys (key, patient_id)";
const INSERT_NAMES: &str =
    "INSERT INTO patient_names (patient_id, family, given, family_code, birth_date)";

/// The `blocking_keys` rows of a patient.
fn key_rows(id: &str, keys: impl IntoIterator<Item = String>) -> Vec<Vec<Value>> {
    keys.into_iter()
        .map(|key| vec![Value::Text(key), Value::Text(id.to_owned())])
        .collect()
}

/// The `patient_names` rows of a patient.
fn name_rows(id: &str, features: &Features) -> Vec<Vec<Value>> {
    features
        .names
        .iter()
        .map(|n| {
            vec![
                Value::Text(id.to_owned()),
                Value::Text(n.family.clone()),
                Value::Text(n.given.clone()),
                Value::Text(n.family_code.clone()),
                Value::Int(i64::from(features.complete_birth_date())),
            ]
        })
        .collect()
}

/// The derived rows of new patients, to insert together.
#[derive(Default)]
pub(super) struct Derived {
    keys: Vec<Vec<Value>>,
    names: Vec<Vec<Value>>,
}

impl Derived {
    pub fn add(&mut self, id: &str, features: &Features) {
        self.keys.extend(key_rows(id, features.blocking_keys()));
        self.names.extend(name_rows(id, features));
    }

    pub async fn insert(self, conn: &mut AnyConnection) -> Result<(), Error> {
        insert_rows(conn, INSERT_KEYS, self.keys).await?;
        insert_rows(conn, INSERT_NAMES, self.names).await?;
        Ok(())
    }
}

/// Replaces the derived rows of patient `id` after its features changed from `old` to `new`.
pub(super) async fn rederive(
    conn: &mut AnyConnection,
    id: &str,
    old: &Features,
    new: &Features,
) -> Result<(), Error> {
    if new == old {
        return Ok(());
    }
    let old_keys: HashSet<String> = old.blocking_keys().into_iter().collect();
    let new_keys: Vec<String> = new.blocking_keys();
    let new_set: HashSet<&String> = new_keys.iter().collect();
    for key in old_keys.iter().filter(|k| !new_set.contains(k)) {
        sqlx::query("DELETE FROM blocking_keys WHERE key = $1 AND patient_id = $2")
            .bind(key.clone())
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    let added = new_keys.into_iter().filter(|k| !old_keys.contains(k));
    insert_rows(conn, INSERT_KEYS, key_rows(id, added)).await?;
    sqlx::query("DELETE FROM patient_names WHERE patient_id = $1")
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    insert_rows(conn, INSERT_NAMES, name_rows(id, new)).await?;
    Ok(())
}

impl Store {
    /// Active patients sharing at least one blocking key: their ids and features only (the
    /// full data of the few returned candidates is read afterwards).
    pub async fn candidates(&self, keys: &[String]) -> Result<Vec<(String, Features)>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Two index lookups rather than one join: the plan cannot degrade to a scan of
        // patients when statistics lag behind a bulk load.
        let mut builder =
            QueryBuilder::<Any>::new("SELECT DISTINCT patient_id FROM blocking_keys WHERE key");
        push_in(&mut builder, keys.iter().cloned());
        let ids: Vec<String> = finish(&mut builder)?
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
            let mut builder = QueryBuilder::<Any>::new(
                "SELECT patient_id, features FROM patients WHERE state = 1 AND patient_id",
            );
            push_in(
                &mut builder,
                chunk
                    .iter()
                    .chain(std::iter::repeat_n(
                        &chunk[chunk.len() - 1],
                        padded - chunk.len(),
                    ))
                    .cloned(),
            );
            rows.extend(finish(&mut builder)?.fetch_all(&self.db.pool).await?);
        }
        rows.iter().map(decode_id_features).collect()
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
                keys.extend(key_rows(&id, decode_features(row)?.blocking_keys()));
                after = id;
            }
            count += rows.len() as u64;
            insert_rows(&mut tx, INSERT_KEYS, keys).await?;
        }
        sqlx::query("UPDATE blocking_scheme SET version = $1 WHERE id = 1")
            .bind(scheme)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(count))
    }
}
