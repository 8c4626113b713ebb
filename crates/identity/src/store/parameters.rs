//! Match parameters (numbered versions, one current), and what estimation reads.

use carerecord_contracts::identity::v1::MatchParameters;
use carerecord_platform::db::now_micros;
use prost::Message;
use sqlx::Row;

use super::{Store, decode_id_features};
use crate::domain::features::Features;
use crate::error::Error;

impl Store {
    /// A version of the parameters, or the current one.
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

    /// Every active patient's id and features, for estimation.
    pub async fn active_features(&self) -> Result<Vec<(String, Features)>, Error> {
        let rows = sqlx::query(
            "SELECT patient_id, features FROM patients WHERE state = 1 ORDER BY patient_id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_id_features).collect()
    }
}
