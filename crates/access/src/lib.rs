//! Data access: the integrator's front door (authentication, consent-enforced reads, audit, extracts).
//!
//! Serves `carerecord.access.v1.DataAccessService`: authenticates bearer tokens, resolves patients
//! through identity, asks consent for a decision, reads record hosting, withholds what the decision
//! does not permit, and appends every attempt to a tamper-evident (RFC 6962) audit log.
//!
//! # Layout, top down
//!
//! - `main.rs` starts [`Application`] (this file: configuration and wiring).
//! - [`config`]: data access's own settings ([`config::AccessConfig`]), beyond the shared ones.
//! - `service/`: the gRPC handlers, one file per area; the tonic trait implementation only
//!   dispatches to methods returning `Result<_, Error>`.
//! - [`domain`]: pure logic, no I/O: token verification and SMART scopes ([`domain::auth`]),
//!   consent decisions, de-identification, small-number suppression, the Merkle tree, signed tree
//!   heads, and verification of a whole log ([`domain::audit_verify`]).
//! - [`store`]: all SQL, both dialects: the audit log, tree heads, audit keys, break-glass events.
//! - [`upstream`]: clients of identity, consent and record hosting; `cache`: their answers kept
//!   between calls and validated by one listing of changes per batch of calls; [`jwks`]: the token keys of a
//!   JWKS URL, fetched over HTTPS (a [`domain::auth::KeySource`]); [`issuers`]: the trusted
//!   issuers file.
//! - [`error`]: the crate's one error type, mapped to gRPC statuses in one place.
//!
//! For the CLI: [`dev_token::mint`] mints development tokens (accepted only with
//! `CARERECORD_DEV_TOKENS=true`), and [`domain::audit_verify::verify_entries`] verifies a whole log
//! offline.

mod cache;
pub mod config;
pub mod dev_token;
pub mod domain;
pub mod error;
pub mod issuers;
pub mod jwks;
mod service;
pub mod store;
pub mod upstream;

/// The former path of [`domain::audit_verify`], kept for callers that verify logs offline.
pub use domain::audit_verify as audit;

use std::net::SocketAddr;

use carerecord_contracts::access::v1::data_access_service_server::DataAccessServiceServer;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};

pub use service::AccessService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50050,
));

/// The audit store's migrations, per dialect.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The service's configuration: the shared server, database and telemetry settings, and data
/// access's own (see [`config::AccessConfig`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub access: config::AccessConfig,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            access: config::AccessConfig::from_env(env)?,
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

/// The access service, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "access";
    type Config = Config;

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        let mut config = config;
        // The service does not start without the keys of its JWKS URLs.
        for source in config.access.remote_jwks.clone() {
            let remote = jwks::RemoteJwks::start(source.clone()).await.map_err(|e| {
                ConfigError::invalid(
                    "CARERECORD_JWKS_URL",
                    &source.url(),
                    format!("cannot load the key set of issuer {}: {e}", source.issuer()),
                )
            })?;
            config
                .access
                .tokens
                .add_source(source.issuer(), remote.clone());
            tokio::spawn(remote.refresh_periodically(startup.background()));
        }
        let access = &config.access;
        let upstream = upstream::Upstream::new(
            &access.identity_endpoint,
            &access.consent_endpoint,
            &access.records_endpoint,
            &access.upstream_tls,
            access.upstream_timeout,
            access.upstream_retries,
        )
        .map_err(StartError::Other)?;
        let store = store::Store::new(startup.database().await?);
        store
            .register_key(
                access.signer.key_id(),
                &access.signer.public_key(),
                carerecord_platform::db::now_micros(),
            )
            .await
            .map_err(|e| {
                StartError::Other(format!("cannot register the audit signing key: {e}"))
            })?;
        if access.dev_tokens {
            tracing::warn!(
                "development tokens are accepted (CARERECORD_DEV_TOKENS=true): never in production"
            );
        }
        let api = DataAccessServiceServer::new(AccessService::new(store, upstream, config.access))
            .max_decoding_message_size(startup.max_message_bytes())
            .max_encoding_message_size(startup.max_message_bytes());
        Ok(startup.serve(api))
    }
}
