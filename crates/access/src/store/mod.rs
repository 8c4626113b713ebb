//! The audit log store (both dialects): append-only leaves with their hashes, signed tree heads,
//! audit keys, and break-glass events with their reviews. All of the service's SQL is here.
//!
//! - `append.rs`: the single writer that appends entries (with their effects) in batches.
//! - `audit_log.rs`: reading entries and leaf hashes; the tree heads handed out.
//! - `break_glass.rs`: break-glass events and their reviews.
//! - `keys.rs`: the audit signing keys.
//! - `contributions.rs`: updates and retractions by request_id (idempotency).
//!
//! Appends are serialised (a process-wide lock, plus a transaction-scoped advisory lock on
//! PostgreSQL for replicas) so leaf indexes are consecutive with no gaps; the primary key on
//! `idx` is the last line of defence.

mod append;
mod audit_log;
mod break_glass;
mod contributions;
mod keys;

use std::sync::{Arc, RwLock};

use carerecord_platform::db::{Backend, Database};
use tokio::sync::{mpsc, oneshot};

use crate::domain::merkle::{Frontier, Hash};
use crate::error::Error;

pub use contributions::Contribution;

/// A stored audit entry.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub index: i64,
    pub entry_id: String,
    pub leaf_data: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

/// A row of the review queue: a break-glass event, or an access to a restricted patient's record.
#[derive(Debug, Clone, Default)]
pub struct BreakGlassRow {
    pub event_id: String,
    pub audit_index: i64,
    pub time_micros: i64,
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
    pub client_id: String,
    pub patient_id: String,
    pub reason: String,
    pub outcome: i64,
    pub returned_count: i64,
    pub withheld_count: i64,
    pub version: i64,
    pub etag: String,
    pub review_outcome: i64,
    pub review_notes: String,
    pub reviewer_user_id: String,
    pub reviewer_organisation_ods_code: String,
    pub reviewer_role_code: String,
    pub reviewer_display_name: String,
    pub review_time_micros: i64,
    pub review_entry_id: String,
    /// Why the event needs review (ReviewEventKind: 1 break glass, 2 restricted patient).
    pub kind: i64,
    /// The call's audit action.
    pub action: i64,
    /// Whether the patient was restricted at the time of the call (0 or 1).
    pub restricted_patient: i64,
}

/// What else an append changes, atomically with it.
#[derive(Debug, Clone)]
pub enum Effect {
    None,
    /// Record a break-glass event for the entry being appended.
    BreakGlass(Box<BreakGlassRow>),
    /// Record a review on an event, if its etag is still `expected_etag`.
    Review {
        event_id: String,
        expected_etag: String,
        outcome: i64,
        notes: String,
        reviewer: carerecord_contracts::common::v1::Requester,
    },
}

/// Where an entry landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub index: i64,
    pub entry_id: String,
}

#[derive(Default)]
struct TreeCache {
    hashes: Vec<Hash>,
    frontier: Frontier,
}

/// Filters of a break-glass listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub start_micros: Option<i64>,
    pub end_micros: Option<i64>,
    /// 0 all, 1 unreviewed, 2 reviewed.
    pub review_filter: i64,
    pub patient_ids: Vec<String>,
    /// 0 every kind, else only events of this ReviewEventKind.
    pub kind: i64,
    pub after_index: i64,
    pub limit: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    appends: mpsc::Sender<Pending>,
    cache: Arc<RwLock<TreeCache>>,
}

/// An entry waiting for the writer.
struct Pending {
    data: Vec<u8>,
    hash: Hash,
    entry_id: String,
    time_micros: i64,
    action: i64,
    patient_id: String,
    /// The patients an entry concerning several names, with their record counts.
    patients: Vec<(String, i64)>,
    effect: Effect,
    reply: oneshot::Sender<Result<Appended, Error>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Checks the log can be written to (a cheap round trip), before a stream sends data.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT COUNT(*) FROM audit_keys")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(())
    }
}
