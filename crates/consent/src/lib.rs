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
//!   request context, opt-out); each refuses NUL in any text field first, parses its request,
//!   calls the domain and the store, and returns the crate's `Error`, mapped to a status in one
//!   place (`error.rs`, which also keeps every error small);
//! - [`domain`]: pure code, no I/O: the code lists, validation and the rule for text, a
//!   directive's lifecycle, the decision (`domain/decide/`: context, compiled directives,
//!   evaluation, result, explanations) and the national data opt-out as a dated check (valid for
//!   `CARERECORD_CONSENT_OPT_OUT_VALIDITY`; a patient without a valid check is withheld from what
//!   the opt-out covers) with its exemptions;
//! - [`policy`]: the Cedar platform rules: embedded defaults, loading and checking, evaluation;
//! - `store/`: all SQL, for PostgreSQL and SQLite, by aggregate (directives, opt-outs and batches
//!   of checks, the reads decisions make) with the cache of compiled directive rules.

pub mod domain;
mod error;
pub mod policy;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use carerecord_contracts::consent::v1::consent_service_server::ConsentServiceServer;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::page_token::PageTokens;

pub use domain::optout::CheckValidity;
pub use policy::PlatformPolicies;
pub use service::ConsentService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50053,
));

/// The variable naming a Cedar policy file that replaces the embedded platform rules.
pub const POLICY_FILE_VAR: &str = "CARERECORD_CONSENT_POLICY_FILE";

/// The variable setting how long a national data opt-out check stays valid, e.g. `30d` or `720h`.
pub const OPT_OUT_VALIDITY_VAR: &str = "CARERECORD_CONSENT_OPT_OUT_VALIDITY";

static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The service's configuration: the shared settings, page tokens, the platform policy file and how
/// long an opt-out check stays valid.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub tokens: PageTokens,
    /// `CARERECORD_CONSENT_POLICY_FILE`: Cedar platform rules; unset = the embedded defaults.
    pub policy_file: Option<PathBuf>,
    /// `CARERECORD_CONSENT_OPT_OUT_VALIDITY`: after this a patient's national data opt-out check no
    /// longer counts and the status is unknown (research and planning then exclude the patient).
    /// Unset = [`CheckValidity::DEFAULT`].
    pub opt_out_validity: CheckValidity,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            tokens: PageTokens::from_env(env)?,
            policy_file: env.get(POLICY_FILE_VAR).map(PathBuf::from),
            opt_out_validity: match env.get(OPT_OUT_VALIDITY_VAR) {
                None => CheckValidity::DEFAULT,
                Some(raw) => CheckValidity::parse(raw)
                    .map_err(|reason| ConfigError::invalid(OPT_OUT_VALIDITY_VAR, raw, reason))?,
            },
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

impl Config {
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
                "the platform policies have no @kind(\"optout-exemption\") rule: the national data opt-out withholds every purpose from an opted-out patient, individual care included"
            );
        }
        tracing::info!(opt_out_validity = %config.opt_out_validity, "national data opt-out checks expire");
        let service = ConsentService::new(startup.database().await?, policies, config.tokens)
            .with_opt_out_validity(config.opt_out_validity);
        let api = ConsentServiceServer::new(service)
            .max_decoding_message_size(startup.max_message_bytes())
            .max_encoding_message_size(startup.max_message_bytes());
        Ok(startup.serve(api))
    }
}
