//! SQLite's way of writing creates: one writer at a time, so the statements of a transaction are
//! in-process calls and the request ids are looked up under the head lock.

use carerecord_platform::db::now_micros;

use super::database::Store;
use super::feed::take_sequences;
use super::plan::{CreateOutcome, NewRecord, Plan, request_ids_of};
use super::request_ids;
use super::turns::Turn;
use super::version::Version;
use super::versions::insert_versions;

/// Rows per multi-row INSERT: 28 parameters a row stays well under SQLite's limit of bind
/// parameters.
const ROWS_PER_INSERT: usize = 500;

impl Store {
    pub(super) async fn create_sqlite(
        &self,
        items: &[NewRecord],
        turn: &mut Turn,
    ) -> Result<Vec<CreateOutcome>, sqlx::Error> {
        turn.wait().await;
        let mut tx = self.db.pool.begin().await?;
        // Taking the head lock first makes the request id lookup race-free.
        let last = take_sequences(&mut tx, items.len()).await?;
        turn.locked();
        let known = request_ids::known(&mut *tx, self.db.backend, request_ids_of(items)).await?;
        let mut plan = Plan::new(items, &known, now_micros());
        plan.number_from(last - items.len() as i64 + 1);
        let refs: Vec<&Version> = plan.versions.iter().collect();
        for chunk in refs.chunks(ROWS_PER_INSERT) {
            insert_versions(&mut tx, chunk).await?;
        }
        for chunk in plan.new_ids.chunks(ROWS_PER_INSERT) {
            request_ids::insert(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        self.committed(last);
        Ok(plan.outcomes())
    }
}
