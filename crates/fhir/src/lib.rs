//! The FHIR R4 REST gateway: FHIR JSON over HTTP in front of data access.
//!
//! It calls only the data access gRPC contract (`carerecord.access.v1`), so it works unchanged in
//! front of another supplier's data access, and everything it serves is authenticated,
//! consent-decided and audited there: the gateway passes the caller's bearer token through and holds
//! no data (Bulk Data output files wait on disk for their download, then are deleted).
//!
//! Reading order: [`table`] (the one table of what is served; the router and the
//! CapabilityStatement ([`capability`]) are both made from it) → [`handlers`] (one module per kind of interaction) → [`resource`] (FHIR
//! resources and Bundles from data access's messages), [`query`] (search parameters) and
//! [`error`] (OperationOutcome for every error).

pub mod capability;
pub mod config;
pub mod error;
mod handlers;
pub mod query;
pub mod resource;
mod router;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::telemetry::PropagateTrace;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

pub use config::FhirConfig;

/// Where the gateway listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));

/// The largest message accepted from data access (a page of records is kept under 4 MiB, but a
/// single record may be larger).
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub fhir: FhirConfig,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            fhir: FhirConfig::from_env(env)?,
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

pub type AccessClient = DataAccessServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// What every handler shares: the data access client, the settings and the export jobs.
#[derive(Clone)]
pub struct Gateway {
    access: AccessClient,
    config: Arc<FhirConfig>,
    exports: handlers::bulk::Jobs,
}

/// The gateway, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "fhir";
    type Config = Config;

    fn migrations() -> &'static Migrations {
        &Migrations::NONE
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        let fhir = config.fhir;
        let channel = fhir.access.channel()?;
        let access = DataAccessServiceClient::with_interceptor(channel, PropagateTrace)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let exports = handlers::bulk::Jobs::start(&fhir, startup.background())
            .map_err(|e| StartError::Other(format!("CARERECORD_FHIR_EXPORT_DIR: {e}")))?;
        let gateway = Gateway {
            access,
            config: Arc::new(fhir),
            exports,
        };
        Ok(startup.serve_http(router::router(gateway)))
    }
}
