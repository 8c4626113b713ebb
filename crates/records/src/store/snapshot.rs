//! Records as of a snapshot of the feed: the pages of ListRecords and the chunks of ExportRecords.

use carerecord_platform::db::Backend;
use carerecord_platform::sql::{fetch_all, push_in};
use sqlx::{Any, QueryBuilder};

use super::database::{Store, VersionStream};
use super::version::{AtHead, CURRENT, FEED_HEAD, Version, select, select_at_head};

/// Conditions on the state of records as of a snapshot, shared by ListRecords and ExportRecords.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub snapshot: i64,
    /// Empty: every patient.
    pub patient_ids: Vec<String>,
    pub resource_types: Vec<String>,
    pub data_classes: Vec<String>,
    pub excluded_data_classes: Vec<String>,
    pub effective_from: Option<i64>,
    pub effective_to: Option<i64>,
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
    pub include_retracted: bool,
    /// Substrings of the stored codings of `code` (any one matches): see `domain::terms`.
    pub code_needles: Vec<String>,
    /// Likewise for `category`.
    pub category_needles: Vec<String>,
    /// The payload's top-level `status`, any of these.
    pub statuses: Vec<String>,
}

impl Filter {
    /// Appends ` WHERE ...`: the version current at the snapshot, matching every filter.
    /// `at_head`: as of the feed head when the statement starts, not `snapshot`.
    fn push_conditions(&self, sql: &mut QueryBuilder<Any>, backend: Backend, at_head: bool) {
        if at_head {
            sql.push(format_args!(
                " WHERE seq <= {FEED_HEAD} AND (superseded_seq IS NULL OR superseded_seq > {FEED_HEAD})"
            ));
        } else {
            sql.push(" WHERE seq <= ")
                .push_bind(self.snapshot)
                .push(" AND (superseded_seq IS NULL OR superseded_seq > ")
                .push_bind(self.snapshot)
                .push(")");
        }
        if !self.patient_ids.is_empty() {
            sql.push(" AND patient_id");
            push_in(sql, self.patient_ids.iter().cloned());
        }
        if !self.include_retracted {
            sql.push(" AND status = ").push_bind(CURRENT);
        }
        if !self.resource_types.is_empty() {
            sql.push(" AND resource_type");
            push_in(sql, self.resource_types.iter().cloned());
        }
        let any_label = |sql: &mut QueryBuilder<Any>, labels: &[String]| {
            sql.push("(");
            for (i, label) in labels.iter().enumerate() {
                sql.push(if i == 0 {
                    "data_classes LIKE "
                } else {
                    " OR data_classes LIKE "
                })
                .push_bind(format!("%|{label}|%"));
            }
            sql.push(")");
        };
        if !self.data_classes.is_empty() {
            sql.push(" AND ");
            any_label(sql, &self.data_classes);
        }
        if !self.excluded_data_classes.is_empty() {
            sql.push(" AND NOT ");
            any_label(sql, &self.excluded_data_classes);
        }
        // A case-sensitive substring search without wildcards: the needles are taken as they are.
        let contains = match backend {
            Backend::Postgres => "strpos",
            Backend::Sqlite => "instr",
        };
        for (column, needles) in [
            ("codes", &self.code_needles),
            ("categories", &self.category_needles),
        ] {
            for (i, needle) in needles.iter().enumerate() {
                sql.push(if i == 0 { " AND (" } else { " OR " })
                    .push(contains)
                    .push("(")
                    .push(column)
                    .push(", ")
                    .push_bind(needle.clone())
                    .push(") > 0");
            }
            if !needles.is_empty() {
                sql.push(")");
            }
        }
        if !self.statuses.is_empty() {
            sql.push(" AND fhir_status");
            push_in(sql, self.statuses.iter().cloned());
        }
        for (column, op, bound) in [
            ("effective_time", " >= ", self.effective_from),
            ("effective_time", " < ", self.effective_to),
            ("update_time", " >= ", self.updated_from),
            ("update_time", " < ", self.updated_to),
        ] {
            if let Some(bound) = bound {
                sql.push(" AND ").push(column).push(op).push_bind(bound);
            }
        }
    }
}

/// The order of a ListRecords listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    /// Oldest first.
    Creation,
    /// Newest effective time first, records without one last; the newest created first among equals.
    EffectiveTimeDescending,
}

/// The last record of a page, after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub effective_time: Option<i64>,
    pub creation_seq: i64,
}

impl From<&Version> for Listed {
    fn from(v: &Version) -> Listed {
        Listed {
            effective_time: v.fields.effective_time,
            creation_seq: v.creation_seq,
        }
    }
}

impl Store {
    /// Up to `limit` records matching `filter` as of its snapshot, in `order`, after `after`.
    pub async fn list(
        &self,
        filter: &Filter,
        order: ListOrder,
        after: Option<Listed>,
        limit: i64,
        with_payload: bool,
    ) -> Result<Vec<Version>, sqlx::Error> {
        let mut sql = select(with_payload);
        filter.push_conditions(&mut sql, self.db.backend, false);
        push_order(&mut sql, order, after, limit);
        self.fetch_versions(sql).await
    }

    /// The first page of a listing as of the feed head now: the head and up to `limit` records
    /// matching `filter` (its snapshot unused) in `order`. One statement reads both, so the page is
    /// exactly the head's; only an empty page costs a second, for the head alone.
    pub async fn list_first(
        &self,
        filter: &Filter,
        order: ListOrder,
        limit: i64,
        with_payload: bool,
    ) -> Result<(i64, Vec<Version>), sqlx::Error> {
        let mut sql = select_at_head(with_payload);
        filter.push_conditions(&mut sql, self.db.backend, true);
        push_order(&mut sql, order, None, limit);
        let rows: Vec<AtHead> = fetch_all(&self.db, &mut sql).await?;
        let snapshot = match rows.first() {
            Some(row) => row.snapshot,
            None => self.head().await?,
        };
        Ok((snapshot, rows.into_iter().map(|row| row.version).collect()))
    }

    /// Up to `limit` records matching `filter` created after sequence `after`, in creation order,
    /// read as they are consumed.
    pub fn export_chunk<'a>(
        &'a self,
        filter: &Filter,
        after: i64,
        limit: i64,
        with_payload: bool,
    ) -> VersionStream<'a> {
        let mut sql = select(with_payload);
        filter.push_conditions(&mut sql, self.db.backend, false);
        sql.push(" AND creation_seq > ").push_bind(after);
        sql.push(" ORDER BY creation_seq LIMIT ").push_bind(limit);
        self.stream_versions(sql)
    }
}

/// Appends a listing's position (after `after`), order and limit.
fn push_order(sql: &mut QueryBuilder<Any>, order: ListOrder, after: Option<Listed>, limit: i64) {
    match order {
        ListOrder::EffectiveTimeDescending => {
            match after {
                Some(Listed {
                    effective_time: Some(time),
                    creation_seq,
                }) => {
                    sql.push(" AND ((effective_time IS NOT NULL AND (effective_time < ")
                        .push_bind(time)
                        .push(" OR (effective_time = ")
                        .push_bind(time)
                        .push(" AND creation_seq < ")
                        .push_bind(creation_seq)
                        .push("))) OR effective_time IS NULL)");
                }
                Some(Listed {
                    effective_time: None,
                    creation_seq,
                }) => {
                    sql.push(" AND effective_time IS NULL AND creation_seq < ")
                        .push_bind(creation_seq);
                }
                None => {}
            }
            sql.push(" ORDER BY (CASE WHEN effective_time IS NULL THEN 1 ELSE 0 END), effective_time DESC, creation_seq DESC");
        }
        ListOrder::Creation => {
            sql.push(" AND creation_seq > ")
                .push_bind(after.map_or(0, |last| last.creation_seq))
                .push(" ORDER BY creation_seq");
        }
    }
    sql.push(" LIMIT ").push_bind(limit);
}
