//! What every handler runs on: the store, the coalesced writer and reader, the settings.

use std::sync::Arc;

use carerecord_platform::db::Database;
use carerecord_platform::page_token::PageTokens;
use tokio_util::sync::CancellationToken;

use crate::coalesce::{CreateWriter, LatestReader, create_writer, latest_reader};
use crate::config::RecordsConfig;
use crate::fanout::FeedHub;
use crate::store::Store;

/// The records API.
#[derive(Debug, Clone)]
pub struct RecordsService {
    pub(super) store: Store,
    /// Group commit of CreateRecord calls.
    pub(super) writer: CreateWriter,
    /// Coalesced reads of latest versions, for GetRecord.
    pub(super) reader: LatestReader,
    /// The one reader of new changes that live watchers share.
    pub(super) hub: FeedHub,
    pub(super) config: Arc<RecordsConfig>,
    pub(super) tokens: PageTokens,
    /// Cancelled at shutdown: ends open streams.
    pub(super) shutdown: CancellationToken,
}

impl RecordsService {
    /// Must be called within a tokio runtime: it starts the create writer, the record reader and
    /// the shared change feed reader.
    pub fn new(
        database: Database,
        config: Arc<RecordsConfig>,
        tokens: PageTokens,
        shutdown: CancellationToken,
    ) -> Self {
        let store = Store::new(database);
        RecordsService {
            writer: create_writer(store.clone()),
            reader: latest_reader(store.clone()),
            hub: FeedHub::start(store.clone(), config.watch_poll_interval, shutdown.clone()),
            store,
            config,
            tokens,
            shutdown,
        }
    }
}
