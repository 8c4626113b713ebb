//! Consent: patients' directives, the national data opt-out, and explainable access decisions.
//!
//! Serves `carerecord.consent.v1.ConsentService`. Patient directives are data evaluated by typed code
//! ([`domain::decide`]); platform-wide rules are Cedar policies ([`policy`]) that an ICS can replace
//! without rebuilding (`CARERECORD_CONSENT_POLICY_FILE`).

pub mod domain;
mod error;
pub mod policy;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use carerecord_contracts::consent::v1::consent_service_server::ConsentServiceServer;
use carerecord_platform::app::{Service, StartError};
use carerecord_platform::config::{ConfigError, Env, ServiceConfig};
use carerecord_platform::db::{Database, Migrations};
use carerecord_platform::page_token::PageTokens;
use carerecord_platform::server::GrpcServer;
use carerecord_platform::telemetry::TelemetryConfig;
use tokio_util::sync::CancellationToken;

pub use policy::PlatformPolicies;
pub use service::ConsentDecider;

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

/// The consent service, bound and ready to serve.
pub struct Application {
    server: GrpcServer,
}

impl Service for Application {
    const NAME: &'static str = "consent";
    type Config = Config;

    fn config_from_env(env: &Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    fn telemetry_config(config: &Config) -> &TelemetryConfig {
        &config.service.telemetry
    }

    async fn build(config: Config) -> Result<Self, StartError> {
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
        let database = Database::connect(&config.service.database, &MIGRATIONS).await?;
        let limits = &config.service.server;
        let api = ConsentServiceServer::new(ConsentDecider::new(
            database,
            policies,
            config.tokens.clone(),
        ))
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
