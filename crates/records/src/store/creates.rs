//! Creates in batches: each chunk planned against the request ids used before, then written the
//! way of its backend ([`super::postgres`], [`super::sqlite`]).

use carerecord_platform::db::Backend;

use super::database::Store;
use super::plan::{CreateOutcome, NewRecord};
use super::turns::Turn;

/// Creates written by one transaction at most: an import's transaction (on SQLite, its request
/// ids are looked up with one parameter each, under SQLite's limit of bind parameters).
pub const MAX_CREATES_PER_WRITE: usize = 2000;

impl Store {
    /// Creates records, in order: creation sequences increase with position. Request ids are
    /// checked against earlier creates and against earlier items of the batch. Each chunk of
    /// [`MAX_CREATES_PER_WRITE`] items is written atomically, in its `turn`.
    pub async fn create_batch(
        &self,
        items: &[NewRecord],
        mut turn: Turn,
    ) -> Result<Vec<CreateOutcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(items.len());
        let chunks = items.chunks(MAX_CREATES_PER_WRITE);
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            // The first chunk waits for the batch before; only the last lets the next one in.
            let mut chunk_turn = if i + 1 == count {
                std::mem::take(&mut turn)
            } else {
                turn.part()
            };
            let written = match self.db.backend {
                Backend::Postgres => self.create_postgres(chunk, &mut chunk_turn).await?,
                Backend::Sqlite => self.create_sqlite(chunk, &mut chunk_turn).await?,
            };
            outcomes.extend(written);
        }
        Ok(outcomes)
    }
}
