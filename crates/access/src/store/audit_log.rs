//! Reading the log: entries, leaf hashes (cached) and roots; and the tree heads handed out.

use carerecord_contracts::access::v1::SignedTreeHead;
use carerecord_platform::sql::{finish, push_in};
use sqlx::{Any, QueryBuilder, Row};

use super::{Store, StoredEntry};
use crate::domain::merkle::{self, Hash};
use crate::error::Error;

/// The columns `entry_from_row` reads, as a literal for `concat!`.
macro_rules! select_entries {
    () => {
        "SELECT idx, entry_id, leaf_data, leaf_hash FROM audit_entries"
    };
}

impl Store {
    /// The log's current size.
    pub async fn size(&self) -> Result<i64, Error> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
                .fetch_one(&self.db.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// The stored leaf hashes of the first `size` entries (cached; appends by other replicas are
    /// loaded on demand).
    pub async fn leaf_hashes(&self, size: i64) -> Result<Vec<Hash>, Error> {
        self.load_cache(size).await?;
        let cache = self
            .cache
            .read()
            .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
        let size = usize::try_from(size).unwrap_or(0).min(cache.hashes.len());
        Ok(cache.hashes[..size].to_vec())
    }

    /// The root of the first `size` entries.
    pub async fn root(&self, size: i64) -> Result<Hash, Error> {
        self.load_cache(size).await?;
        {
            let cache = self
                .cache
                .read()
                .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
            if cache.frontier.size() == u64::try_from(size).unwrap_or(0) {
                return Ok(cache.frontier.root());
            }
        }
        Ok(merkle::root(&self.leaf_hashes(size).await?))
    }

    async fn load_cache(&self, size: i64) -> Result<(), Error> {
        let have = self
            .cache
            .read()
            .map(|c| c.hashes.len() as i64)
            .unwrap_or(0);
        if have >= size {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT idx, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(have)
        .bind(size)
        .fetch_all(&self.db.pool)
        .await?;
        let mut cache = self
            .cache
            .write()
            .map_err(|_| Error::Internal("tree cache poisoned".into()))?;
        for row in rows {
            let idx: i64 = row.try_get(0)?;
            let hash: Vec<u8> = row.try_get(1)?;
            if idx != cache.hashes.len() as i64 {
                // Another task loaded or appended meanwhile; only extend contiguously.
                continue;
            }
            let hash: Hash = hash
                .try_into()
                .map_err(|_| Error::Internal(format!("stored leaf hash {idx} is not 32 bytes")))?;
            cache.hashes.push(hash);
            cache.frontier.push(hash);
        }
        Ok(())
    }

    /// Entries with index in [start, end), ascending.
    pub async fn entries(&self, start: i64, end: i64) -> Result<Vec<StoredEntry>, Error> {
        let rows = sqlx::query(concat!(
            select_entries!(),
            " WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        ))
        .bind(start)
        .bind(end)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Disclosure-log entries (the given actions) of the given patients, newest first: entries
    /// about one of them, and entries naming them among several patients.
    pub async fn patient_entries(
        &self,
        patient_ids: &[String],
        actions: &[i32],
        before_index: i64,
        start_micros: Option<i64>,
        end_micros: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, Error> {
        let mut sql = QueryBuilder::<Any>::new(select_entries!());
        sql.push(" WHERE (patient_id");
        push_in(&mut sql, patient_ids.iter().cloned());
        sql.push(" OR idx IN (SELECT idx FROM audit_entry_patients WHERE patient_id");
        push_in(&mut sql, patient_ids.iter().cloned());
        sql.push(")) AND action");
        push_in(&mut sql, actions.iter().map(|a| i64::from(*a)));
        sql.push(" AND idx < ")
            .push_bind(before_index)
            .push(" AND time_micros >= ")
            .push_bind(start_micros.unwrap_or(i64::MIN))
            .push(" AND time_micros < ")
            .push_bind(end_micros.unwrap_or(i64::MAX))
            .push(" ORDER BY idx DESC LIMIT ")
            .push_bind(limit);
        let rows = finish(&mut sql)?.fetch_all(&self.db.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Records a head that was handed out (the first one per size is kept).
    pub async fn store_head(&self, head: &SignedTreeHead) -> Result<(), Error> {
        let ts = head
            .timestamp
            .as_ref()
            .and_then(crate::domain::micros)
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO tree_heads (tree_size, root_hash, timestamp_micros, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(head.tree_size)
        .bind(head.root_hash.clone())
        .bind(ts)
        .bind(&head.key_id)
        .bind(head.signature.clone())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Stored heads up to `max_size`: (tree_size, root_hash).
    pub async fn stored_heads(&self, max_size: i64) -> Result<Vec<(i64, Vec<u8>)>, Error> {
        let rows = sqlx::query(
            "SELECT tree_size, root_hash FROM tree_heads WHERE tree_size <= $1 ORDER BY tree_size",
        )
        .bind(max_size)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<StoredEntry, Error> {
    Ok(StoredEntry {
        index: row.try_get(0)?,
        entry_id: row.try_get(1)?,
        leaf_data: row.try_get(2)?,
        leaf_hash: row.try_get(3)?,
    })
}
