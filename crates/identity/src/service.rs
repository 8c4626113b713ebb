//! gRPC handlers for `carerecord.identity.v1.PatientIdentityService`.

use carerecord_contracts::identity::v1::patient_identity_service_server::PatientIdentityService;
use carerecord_platform::db::Database;

/// The identity API. RPCs not yet implemented answer UNIMPLEMENTED.
#[derive(Debug, Clone)]
pub struct IdentityService {
    #[allow(dead_code)] // the store takes it over as the RPCs are implemented
    database: Database,
}

impl IdentityService {
    pub fn new(database: Database) -> Self {
        IdentityService { database }
    }
}

impl PatientIdentityService for IdentityService {}
