//! Storage of record versions and request ids, on PostgreSQL or SQLite through sqlx `Any`. All
//! of the crate's SQL is here.
//!
//! One table, `record_versions`, is the history, the change feed and the current state (see the
//! migration). Every write transaction first increments `feed_head`, whose row lock serialises
//! writers until commit, so change sequences are assigned in commit order on both backends and a
//! reader that sees sequence n has every committed sequence below n visible too.
//!
//! - [`database`]: the [`Store`] handle. Dynamic SQL is built with `QueryBuilder` and run with
//!   `carerecord_platform::sql`.
//! - [`version`]: a row of `record_versions`; [`versions`]: reads by record, updates, retractions.
//! - [`snapshot`]: records as of a snapshot (ListRecords pages, ExportRecords chunks).
//! - [`feed`]: the feed head, sequences, and the changes WatchRecordChanges reads.
//! - [`creates`]: batches of creates, planned by [`plan`] and ordered by [`turns`], written by
//!   [`postgres`] (one statement, or binary COPY rows from [`copy`]) or [`sqlite`].
//! - [`request_ids`]: what each request id was first used with.
//! - [`backfill`]: the clinical terms of versions written before terms were stored, at start-up.

mod backfill;
mod copy;
mod creates;
mod database;
mod feed;
mod plan;
mod postgres;
mod request_ids;
mod snapshot;
mod sqlite;
mod turns;
mod version;
mod versions;

pub use creates::MAX_CREATES_PER_WRITE;
pub use database::Store;
pub use feed::FeedFilter;
pub use plan::{CreateOutcome, NewRecord};
pub use snapshot::{Filter, ListOrder, Listed};
pub use turns::{Turn, Turns};
pub use version::{CREATED, CURRENT, ENTERED_IN_ERROR, RETRACTED, UPDATED, Version};
