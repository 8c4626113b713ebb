//! Where the services are and who the operator is.

use std::time::Duration;

use carerecord_contracts::common::v1::Requester;
use carerecord_platform::env::Env;
use carerecord_platform::tls::ClientTls;
use carerecord_platform::transport::channel;
use tonic::transport::Channel;

/// The endpoints of the four services; defaults match `carerecord up`.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoints {
    /// Data access (the integrator's front door).
    #[arg(
        long,
        global = true,
        env = "CARERECORD_ACCESS_ENDPOINT",
        default_value = "http://127.0.0.1:50050"
    )]
    pub access: String,
    /// Patient identity.
    #[arg(
        long,
        global = true,
        env = "CARERECORD_IDENTITY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub identity: String,
    /// Record hosting.
    #[arg(
        long,
        global = true,
        env = "CARERECORD_RECORDS_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    pub records: String,
    /// Consent.
    #[arg(
        long,
        global = true,
        env = "CARERECORD_CONSENT_ENDPOINT",
        default_value = "http://127.0.0.1:50053"
    )]
    pub consent: String,
}

/// A lazily connected channel; TLS settings come from `CARERECORD_UPSTREAM_*` for `https://` URLs.
pub fn connect(flag: &str, url: &str) -> Result<Channel, String> {
    let tls = ClientTls::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
    channel(flag, url, &tls, Duration::from_secs(5)).map_err(|e| format!("--{flag}: {e}"))
}

/// Who the operator is when calling a module directly (recorded in the module's history).
#[derive(Debug, Clone, clap::Args)]
pub struct Operator {
    /// Your user id, recorded as the author of changes.
    #[arg(
        long = "as-user",
        global = true,
        env = "CARERECORD_USER",
        default_value = "cli-operator"
    )]
    pub user: String,
    /// The ODS code of the organisation you act for.
    #[arg(
        long = "as-org",
        global = true,
        env = "CARERECORD_ORG",
        default_value = "X26"
    )]
    pub organisation: String,
    /// Your NHS national RBAC role code.
    #[arg(
        long = "as-role",
        global = true,
        env = "CARERECORD_ROLE",
        default_value = "R8000"
    )]
    pub role: String,
}

impl Operator {
    pub fn requester(&self) -> Requester {
        Requester {
            user_id: self.user.clone(),
            organisation_ods_code: self.organisation.clone(),
            role_code: self.role.clone(),
            display_name: String::new(),
        }
    }
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
