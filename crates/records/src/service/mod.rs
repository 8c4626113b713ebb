//! gRPC handlers of `carerecord.records.v1.RecordHostingService`: each parses its request into
//! typed values, calls the domain and the store, and maps errors to [`crate::Error`].
//!
//! - [`state`]: the [`RecordsService`] every handler runs on; [`api`]: the tonic trait, thin.
//! - [`write`]: CreateRecord, UpdateRecord, RetractRecord; [`read`]: GetRecord,
//!   ListRecordVersions; [`list`]: ListRecords; [`import`]: ImportRecords; [`export`]:
//!   ExportRecords; [`watch`]: WatchRecordChanges.
//! - Shared by them: [`request`] (fields every area parses), [`paging`] (page tokens and the
//!   response budget), [`cursor`] (change feed cursors), [`messages`] (stored versions as
//!   messages), [`stream`] (server streams).

mod api;
mod cursor;
mod export;
mod import;
mod list;
mod messages;
mod paging;
mod read;
mod request;
mod state;
mod stream;
mod watch;
mod write;

pub use state::RecordsService;
