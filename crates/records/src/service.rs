//! gRPC handlers for `carerecord.records.v1.RecordHostingService`.

use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingService;
use carerecord_platform::db::Database;

/// The records API. RPCs not yet implemented answer UNIMPLEMENTED.
#[derive(Debug, Clone)]
pub struct RecordsService {
    #[allow(dead_code)] // the store takes it over as the RPCs are implemented
    database: Database,
}

impl RecordsService {
    pub fn new(database: Database) -> Self {
        RecordsService { database }
    }
}

impl RecordHostingService for RecordsService {}
