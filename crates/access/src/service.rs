//! gRPC handlers for `carerecord.access.v1.DataAccessService`.

use carerecord_contracts::access::v1::data_access_service_server::DataAccessService;
use carerecord_platform::db::Database;

/// The access API. RPCs not yet implemented answer UNIMPLEMENTED.
#[derive(Debug, Clone)]
pub struct AccessService {
    #[allow(dead_code)] // the store takes it over as the RPCs are implemented
    database: Database,
}

impl AccessService {
    pub fn new(database: Database) -> Self {
        AccessService { database }
    }
}

impl DataAccessService for AccessService {}
