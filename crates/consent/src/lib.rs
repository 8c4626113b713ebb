//! Consent: patients' directives, the national data opt-out, and explainable access decisions.
//!
//! Serves `carerecord.consent.v1.ConsentService`. Patient directives are data evaluated by typed code
//! ([`domain::decide`]); platform-wide rules are Cedar policies ([`policy`]) that an ICS can replace
//! without rebuilding (`CARERECORD_CONSENT_POLICY_FILE`).
//!
//! Read it top-down:
//! - this file: the configuration and the [`Application`] the platform starts (`main.rs` only
//!   calls it);
//! - `service/`: the gRPC handlers, one file per area (directives, listing, decisions and their
//!   request context, opt-out); each parses its request, calls the domain and the store, and
//!   returns the crate's `Error`, mapped to a status in one place (`error.rs`);
//! - [`domain`]: pure code, no I/O: the code lists, validation, a directive's lifecycle, the
//!   decision (`domain/decide/`: context, compiled directives, evaluation, result, explanations)
//!   and the opt-out's exemptions;
//! - [`policy`]: the Cedar platform rules: embedded defaults, loading and checking, evaluation;
//! - `store/`: all SQL, for PostgreSQL and SQLite, by aggregate (directives, opt-outs, the reads
//!   decisions make) with the cache of compiled directive rules.

pub mod domain;
mod error;
pub mod policy;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use carerecord_contracts::consent::v1::consent_service_server::ConsentServiceServer;
use carerecord_platform::app::{Running, Service, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::page_token::PageTokens;

pub use policy::PlatformPolicies;
pub use service::ConsentService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50053,
));

/// The variable naming a Cedar policy file that replaces the embedded platform rules.
pub const POLICY_FILE_VAR: &str = "CARERECORD_CONSENT_POLICY_FILE";

static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The service's configuration: the shared settings, page tokens and the platform policy file.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub tokens: PageTokens,
    /// `CARERECORD_CONSENT_POLICY_FILE`: Cedar platform rules; unset = the embedded defaults.
    pub policy_file: Option<PathBuf>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            tokens: PageTokens::from_env(env)?,
            policy_file: env.get(POLICY_FILE_VAR).map(PathBuf::from),
        })
    }

    /// Loads the platform policies this configuration names, with an error naming the file.
    pub fn load_policies(&self) -> Result<PlatformPolicies, StartError> {
        match &self.policy_file {
            None => PlatformPolicies::embedded()
                .map_err(|e| StartError::Other(format!("embedded consent policies: {e}"))),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Other(format!(
                        "{POLICY_FILE_VAR}={}: cannot read: {e}",
                        path.display()
                    ))
                })?;
                PlatformPolicies::load(&text).map_err(|e| {
                    StartError::Other(format!("{POLICY_FILE_VAR}={}: {e}", path.display()))
                })
            }
        }
    }
}

/// The consent service, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "consent";
    type Config = Config;

    fn config_from_env(env: &Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    fn shared_config(config: &Config) -> &ServiceConfig {
        &config.service
    }

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        // Policies first: a bad policy file must stop the service before it touches the database.
        let policies = Arc::new(config.load_policies()?);
        let exemptions = policies.exemption_ids();
        tracing::info!(
            policy_set_version = policies.version(),
            opt_out_exemptions = ?exemptions,
            "platform policies loaded"
        );
        if exemptions.is_empty() {
            tracing::warn!(
                "the platform policies have no @kind(\"optout-exemption\") rule: the national data opt-out withholds every purpose, individual care included"
            );
        }
        let service = ConsentService::new(startup.database().await?, policies, config.tokens);
        let api = ConsentServiceServer::new(service)
            .max_decoding_message_size(startup.max_message_bytes())
            .max_encoding_message_size(startup.max_message_bytes());
        Ok(startup.serve(api))
    }
}
