//! The change feed: its head, the sequences writes take from it, and the changes after a cursor.

use carerecord_platform::sql::push_in;
use sqlx::Any;
use tokio::sync::watch;

use super::database::{Store, VersionStream};
use super::version::{Version, select};

/// Reserves `$1` sequences and takes the head lock until the transaction ends; returns the last.
pub(super) const TAKE_SEQUENCES: &str =
    "UPDATE feed_head SET seq = seq + $1 WHERE id = 1 RETURNING seq";

/// Runs [`TAKE_SEQUENCES`] for `n` sequences.
pub(super) async fn take_sequences(
    tx: &mut sqlx::Transaction<'_, Any>,
    n: usize,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(TAKE_SEQUENCES)
        .bind(n as i64)
        .fetch_one(&mut **tx)
        .await
}

/// Which changes a watcher wants; an empty list filters nothing.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// Sorted, for [`FeedFilter::matches`].
    pub patient_ids: Vec<String>,
    pub resource_types: Vec<String>,
}

impl FeedFilter {
    /// Whether the filter wants the change that wrote `version`, as the SQL of
    /// [`Store::changes`] decides.
    pub fn matches(&self, version: &Version) -> bool {
        let fields = &version.fields;
        (self.patient_ids.is_empty() || self.patient_ids.binary_search(&fields.patient_id).is_ok())
            && (self.resource_types.is_empty()
                || self.resource_types.contains(&fields.resource_type))
    }
}

impl Store {
    /// Notified with the newest sequence each time this process commits a write.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Wakes watchers after a commit that took sequences up to `seq`.
    pub(super) fn committed(&self, seq: i64) {
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// The sequence of the last committed write (0 for an empty store).
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT seq FROM feed_head WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
    }

    /// The changes after sequence `after` up to `head` that `filter` wants, in sequence order,
    /// at most `limit`, read as they are consumed.
    pub fn changes<'a>(
        &'a self,
        filter: &FeedFilter,
        after: i64,
        head: i64,
        limit: i64,
        with_payload: bool,
    ) -> VersionStream<'a> {
        let mut sql = select(with_payload);
        sql.push(" WHERE seq > ")
            .push_bind(after)
            .push(" AND seq <= ")
            .push_bind(head);
        if !filter.patient_ids.is_empty() {
            sql.push(" AND patient_id");
            push_in(&mut sql, filter.patient_ids.iter().cloned());
        }
        if !filter.resource_types.is_empty() {
            sql.push(" AND resource_type");
            push_in(&mut sql, filter.resource_types.iter().cloned());
        }
        sql.push(" ORDER BY seq LIMIT ").push_bind(limit);
        self.stream_versions(sql)
    }
}
