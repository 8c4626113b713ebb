//! Directives: the latest version of each, every version, and create request ids.

use carerecord_contracts::consent::v1::{ConsentDirective, ConsentDirectiveStatus};
use carerecord_platform::sql::{finish, push_in};
use prost::Message;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::{Store, decode, micros_of};
use crate::error::Error;

/// What a create with a request id did.
#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The request id was used before with the same request: the directive it created.
    Replayed(String),
    /// The request id was used before with a different request.
    Reused,
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

impl Store {
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
        insert_version(&mut tx, directive, body).await?;
        let time = micros_of(directive.create_time.as_ref());
        self.note_changes(&mut tx, [directive.patient_id.clone()], time)
            .await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    /// The latest version of a directive.
    pub async fn get(&self, directive_id: &str) -> Result<Option<ConsentDirective>, Error> {
        self.directive(
            sqlx::query("SELECT body FROM consent_directives WHERE directive_id = $1")
                .bind(directive_id),
        )
        .await
    }

    /// One stored version of a directive.
    pub async fn get_version(
        &self,
        directive_id: &str,
        version: i64,
    ) -> Result<Option<ConsentDirective>, Error> {
        self.directive(
            sqlx::query(
                "SELECT body FROM consent_directive_versions \
                 WHERE directive_id = $1 AND version = $2",
            )
            .bind(directive_id)
            .bind(version),
        )
        .await
    }

    /// A page of a patient's directives, newest first, after the position `(create_time, directive_id)`.
    pub async fn list(
        &self,
        patient_id: &str,
        statuses: &[ConsentDirectiveStatus],
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<ConsentDirective>, Error> {
        let (after_time, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let mut query =
            QueryBuilder::<Any>::new("SELECT body FROM consent_directives WHERE patient_id = ");
        query.push_bind(patient_id.to_owned());
        if !statuses.is_empty() {
            query.push(" AND status");
            push_in(&mut query, statuses.iter().map(|s| i64::from(*s as i32)));
        }
        query
            .push(" AND (create_time < ")
            .push_bind(after_time)
            .push(" OR (create_time = ")
            .push_bind(after_time)
            .push(" AND directive_id > ")
            .push_bind(after_id)
            .push(")) ORDER BY create_time DESC, directive_id ASC LIMIT ")
            .push_bind(limit);
        self.directives(finish(&mut query)?).await
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
        insert_version(&mut tx, directive, body).await?;
        let time = micros_of(directive.update_time.as_ref());
        self.note_changes(&mut tx, [directive.patient_id.clone()], time)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A page of a directive's versions, newest first, below `before` (exclusive).
    pub async fn versions(
        &self,
        directive_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ConsentDirective>, Error> {
        self.directives(
            sqlx::query(
                "SELECT body FROM consent_directive_versions \
                 WHERE directive_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
            )
            .bind(directive_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit),
        )
        .await
    }

    /// The directive in the `body` of the one row `query` selects, if any.
    async fn directive(&self, query: BodyQuery<'_>) -> Result<Option<ConsentDirective>, Error> {
        let row = query.fetch_optional(&self.db.pool).await?;
        row.map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .transpose()
    }

    /// The directives in the `body` of the rows `query` selects.
    async fn directives(&self, query: BodyQuery<'_>) -> Result<Vec<ConsentDirective>, Error> {
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter()
            .map(|r| decode(&r.try_get::<Vec<u8>, _>(0)?))
            .collect()
    }
}

/// A query selecting stored directives' `body`.
type BodyQuery<'q> = Query<'q, Any, AnyArguments>;

/// Records `directive` (already encoded as `body`) as one of its versions.
async fn insert_version(
    tx: &mut AnyConnection,
    directive: &ConsentDirective,
    body: Vec<u8>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO consent_directive_versions (directive_id, version, body) VALUES ($1, $2, $3)",
    )
    .bind(&directive.directive_id)
    .bind(directive.version)
    .bind(body)
    .execute(tx)
    .await?;
    Ok(())
}

/// Where a page of [`Store::list`] that ends with `last` resumes.
pub fn position_after(last: &ConsentDirective) -> (i64, &str) {
    (
        micros_of(last.create_time.as_ref()),
        last.directive_id.as_str(),
    )
}
