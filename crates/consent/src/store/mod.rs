//! Storage on PostgreSQL or SQLite; the only place with SQL.
//!
//! `directives` holds directives, their versions and create request ids, `opt_outs` the national
//! data opt-out, `decisions` what Decide and BatchDecide read of a patient, `rules_cache` the
//! compiled rules those reads share, and `changes` the log of patients whose decisions every write
//! may have changed.

pub mod changes;
pub mod decisions;
pub mod directives;
pub mod opt_outs;
mod rules_cache;

use carerecord_contracts::consent::v1::ConsentDirective;
use carerecord_platform::db::Database;
use prost::Message;

use crate::error::Error;
use rules_cache::RulesCache;

#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
    rules: RulesCache,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Store {
            db,
            rules: RulesCache::default(),
        }
    }
}

/// Microseconds since the Unix epoch, as timestamps are stored; 0 for none.
fn micros_of(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map_or(0, |t| {
        t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1000)
    })
}

fn decode(bytes: &[u8]) -> Result<ConsentDirective, Error> {
    Ok(ConsentDirective::decode(bytes)?)
}
