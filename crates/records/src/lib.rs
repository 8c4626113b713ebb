//! Record hosting: versioned FHIR R4 records, their history, provenance and change feed.
//!
//! Serves `carerecord.records.v1.RecordHostingService`. Reading order, top down:
//!
//! - this file: the configuration ([`Config`]: the shared settings, [`RecordsConfig`] from
//!   [`config`], page token keys) and the [`Application`] the platform starts (`main.rs` only
//!   calls it), which backfills the clinical terms of older versions before serving;
//! - [`service`]: the gRPC handlers, one file per area (writes, reads, lists, import, export,
//!   watch) behind a thin trait impl; they parse requests, call the domain and the store, and
//!   map errors;
//! - [`domain`]: the pure rules (ids, payloads, record fields, resource types), no I/O;
//! - [`store`]: all SQL, both backends, one file per aggregate (versions, snapshots, the feed,
//!   creates, request ids) with PostgreSQL's and SQLite's ways of writing creates apart;
//! - beside them: [`error`] (the crate's one error, mapped to statuses in one place),
//!   [`coalesce`] (group commit of creates, coalesced reads of latest versions) and [`fanout`]
//!   (one reader of new changes per process, shared by the live watchers).

mod coalesce;
mod config;
pub mod domain;
mod error;
mod fanout;
mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use carerecord_contracts::records::v1::record_hosting_service_server::RecordHostingServiceServer;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::page_token::PageTokens;

pub use config::RecordsConfig;
pub use error::Error;
pub use service::RecordsService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50052,
));

pub static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The service's configuration: the shared settings plus record hosting's own.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub records: RecordsConfig,
    pub tokens: PageTokens,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            records: RecordsConfig::from_env(env)?,
            tokens: PageTokens::from_env(env)?,
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

/// The records service, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "records";
    type Config = Config;

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        let database = startup.database().await?;
        // Listings filter on terms, so every version has them before the API is served.
        let indexed = store::Store::new(database.clone())
            .backfill_terms()
            .await
            .map_err(|e| StartError::Other(format!("reading the terms of older versions: {e}")))?;
        if indexed > 0 {
            tracing::info!(
                versions = indexed,
                "read the clinical terms of older versions"
            );
        }
        let service = RecordsService::new(
            database,
            Arc::new(config.records),
            config.tokens,
            startup.background(),
        );
        let api = RecordHostingServiceServer::new(service)
            .max_decoding_message_size(startup.max_message_bytes())
            .max_encoding_message_size(startup.max_message_bytes());
        Ok(startup.serve(api))
    }
}
