//! The store of one records database: its connections, and the feed head this process committed.

use std::pin::Pin;

use carerecord_platform::db::{Backend, Database};
use carerecord_platform::sql::{DecodeRow, fetch_all, finish};
use sqlx::{Any, QueryBuilder};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};

use super::version::Version;

/// Versions read one by one as they are consumed.
pub type VersionStream<'a> = Pin<Box<dyn Stream<Item = Result<Version, sqlx::Error>> + Send + 'a>>;

/// The store of one records database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) db: Database,
    /// The newest sequence this process committed: wakes change feed watchers at once.
    pub(super) head: watch::Sender<i64>,
}

impl Store {
    pub fn new(db: Database) -> Store {
        Store {
            db,
            head: watch::Sender::new(0),
        }
    }

    /// Refreshes PostgreSQL's statistics of the records table after a bulk import, rather than
    /// waiting minutes for autovacuum: with stale statistics the planner sorts the whole table for
    /// each export chunk instead of walking the creation index. Only the columns that queries
    /// filter or sort on are sampled. SQLite plans these queries from the indexes alone.
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

    /// Runs a SELECT of version rows started with [`super::version::select`].
    pub(super) async fn fetch_versions(
        &self,
        mut sql: QueryBuilder<Any>,
    ) -> Result<Vec<Version>, sqlx::Error> {
        fetch_all(&self.db, &mut sql).await
    }

    /// Streams the rows of a SELECT started with [`super::version::select`].
    pub(super) fn stream_versions(&self, mut sql: QueryBuilder<Any>) -> VersionStream<'_> {
        match finish(&mut sql) {
            Ok(query) => Box::pin(
                query
                    .fetch(&self.db.pool)
                    .map(|row| row.and_then(|row| Version::decode_row(&row))),
            ),
            Err(e) => Box::pin(tokio_stream::once(Err(e))),
        }
    }
}
