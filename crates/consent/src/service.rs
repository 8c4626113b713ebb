//! gRPC handlers for `carerecord.consent.v1.ConsentService`.

use carerecord_contracts::consent::v1::consent_service_server::ConsentService;
use carerecord_platform::db::Database;

/// The consent API. RPCs not yet implemented answer UNIMPLEMENTED.
#[derive(Debug, Clone)]
pub struct ConsentDecider {
    #[allow(dead_code)] // the store takes it over as the RPCs are implemented
    database: Database,
}

impl ConsentDecider {
    pub fn new(database: Database) -> Self {
        ConsentDecider { database }
    }
}

impl ConsentService for ConsentDecider {}
