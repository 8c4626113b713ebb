//! Record hosting: versioned FHIR R4 records, their history, provenance and change feed.
//!
//! Serves `carerecord.records.v1.RecordHostingService`.

mod service;

use std::net::SocketAddr;

use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingServiceServer;
use carerecord_platform::app::{Service, StartError};
use carerecord_platform::config::{ConfigError, Env, ServiceConfig};
use carerecord_platform::db::{Database, Migrations};
use carerecord_platform::server::GrpcServer;
use carerecord_platform::telemetry::TelemetryConfig;
use tokio_util::sync::CancellationToken;

pub use service::RecordsService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50052,
));

static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The service's configuration: the shared server, database and telemetry settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
        })
    }
}

/// The records service, bound and ready to serve.
pub struct Application {
    server: GrpcServer,
}

impl Service for Application {
    const NAME: &'static str = "records";
    type Config = Config;

    fn config_from_env(env: &Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    fn telemetry_config(config: &Config) -> &TelemetryConfig {
        &config.service.telemetry
    }

    async fn build(config: Config) -> Result<Self, StartError> {
        let database = Database::connect(&config.service.database, &MIGRATIONS).await?;
        let limits = &config.service.server;
        let api = RecordHostingServiceServer::new(RecordsService::new(database))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
        let server = GrpcServer::bind(&config.service.server)
            .await?
            .with_descriptor_set(carerecord_contracts::FILE_DESCRIPTOR_SET)
            .add_service(api);
        Ok(Application { server })
    }

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> Result<(), StartError> {
        Ok(self.server.serve(shutdown).await?)
    }
}
