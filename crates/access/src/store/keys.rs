//! The audit signing keys: each tree head names the key that signed it.

use sqlx::Row;

use super::Store;
use crate::error::Error;

impl Store {
    /// Registers the current signing key (idempotent), ending any other open key.
    pub async fn register_key(
        &self,
        key_id: &str,
        public_key: &[u8; 32],
        now_micros: i64,
    ) -> Result<(), Error> {
        let mut tx = self.db.pool.begin().await?;
        let exists = sqlx::query("SELECT key_id FROM audit_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            sqlx::query(
                "UPDATE audit_keys SET valid_until_micros = $1 WHERE valid_until_micros IS NULL",
            )
            .bind(now_micros)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO audit_keys (key_id, public_key, valid_from_micros) VALUES ($1, $2, $3)")
                .bind(key_id)
                .bind(public_key.to_vec())
                .bind(now_micros)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE audit_keys SET valid_until_micros = NULL WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE audit_keys SET valid_until_micros = $1 WHERE valid_until_micros IS NULL AND key_id <> $2")
                .bind(now_micros)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// (public key, valid_from, valid_until) of a key.
    pub async fn key(&self, key_id: &str) -> Result<Option<(Vec<u8>, i64, Option<i64>)>, Error> {
        let row = sqlx::query("SELECT public_key, valid_from_micros, valid_until_micros FROM audit_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
            .map_err(|e: sqlx::Error| Error::from(e))
    }
}
