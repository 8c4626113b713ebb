//! Patient identity: the master patient index (NHS numbers, local identifiers, demographics, matching, merges).
//!
//! Serves `carerecord.identity.v1.PatientIdentityService`. Read it top-down:
//!
//! - `main.rs` starts [`Application`] through the platform.
//! - `lib.rs` (here): configuration ([`Config`], [`Settings`]) and [`Application`], which
//!   rebuilds stale blocking keys, stores the starting match parameters and serves the API.
//! - `service/`: the gRPC handlers, one file per area (patients, search, matching, estimation,
//!   merges, feed). Each parses its request into typed values, calls the domain and the store, and
//!   returns the crate's [`Error`](error::Error), mapped to a status in `error.rs`.
//! - `convert.rs`: between the contract's messages and the domain's and store's types.
//! - `domain/`: pure logic, no I/O: validation and normalisation, the life of a patient record,
//!   search, comparators, the Fellegi-Sunter model, the scoring of a pair (its adjustments for
//!   name frequency, households, twins and marriages), estimation and the checks an estimated
//!   model must pass before it is used.
//! - `store/`: all SQL, on PostgreSQL and SQLite, by aggregate (patients, identifiers, blocking
//!   keys, request ids, merges, the change feed, match parameters, search).

mod convert;
pub mod domain;
mod error;
mod service;
mod store;

use std::net::SocketAddr;
use std::time::Duration;

use carerecord_contracts::identity::v1::patient_identity_service_server::PatientIdentityServiceServer;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::page_token::PageTokens;

pub use service::IdentityService;

/// Where the service listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50051,
));

static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("./migrations/postgres"),
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
};

/// The identity module's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CARERECORD_MATCH_THRESHOLD`: match probability at or above which a candidate is MATCH.
    pub match_threshold: f64,
    /// `CARERECORD_POSSIBLE_THRESHOLD`: match probability at or above which it is POSSIBLE.
    pub possible_threshold: f64,
    /// `CARERECORD_SEARCH_DEFAULT_RESULTS`.
    pub search_default_results: i32,
    /// `CARERECORD_SEARCH_MAX_RESULTS`.
    pub search_max_results: i32,
    /// `CARERECORD_SEARCH_MIN_SCORE`: fuzzy results scoring below are omitted.
    pub search_min_score: f64,
    /// `CARERECORD_WATCH_POLL_INTERVAL`: how often feed streams poll for writes of other replicas.
    pub watch_poll_interval: Duration,
    /// `CARERECORD_ESTIMATION_MAX_RANDOM_PAIRS`.
    pub estimation_max_random_pairs: i64,
    /// `CARERECORD_ESTIMATION_MAX_BLOCKED_PAIRS`.
    pub estimation_max_blocked_pairs: i64,
    /// `CARERECORD_MATCH_STARTING_PARAMETERS` (default true): an empty index starts with the
    /// built-in CONFIGURED parameters, so matching works before the first estimation.
    pub starting_parameters: bool,
    /// `CARERECORD_CONFIDENTIALITY_ROLES` (default `R0001`, privacy officer): the role codes whose
    /// requesters may set or lift a patient's confidentiality marker, comma separated.
    pub confidentiality_roles: Vec<String>,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let s = Settings {
            match_threshold: env.parse_or("CARERECORD_MATCH_THRESHOLD", 0.95)?,
            possible_threshold: env.parse_or("CARERECORD_POSSIBLE_THRESHOLD", 0.5)?,
            search_default_results: env.parse_or("CARERECORD_SEARCH_DEFAULT_RESULTS", 10)?,
            search_max_results: env.parse_or("CARERECORD_SEARCH_MAX_RESULTS", 50)?,
            search_min_score: env.parse_or("CARERECORD_SEARCH_MIN_SCORE", 0.8)?,
            watch_poll_interval: env
                .duration_or("CARERECORD_WATCH_POLL_INTERVAL", Duration::from_secs(1))?,
            estimation_max_random_pairs: env
                .parse_or("CARERECORD_ESTIMATION_MAX_RANDOM_PAIRS", 10_000_000)?,
            estimation_max_blocked_pairs: env
                .parse_or("CARERECORD_ESTIMATION_MAX_BLOCKED_PAIRS", 5_000_000)?,
            starting_parameters: env.bool_or("CARERECORD_MATCH_STARTING_PARAMETERS", true)?,
            confidentiality_roles: env
                .string_or("CARERECORD_CONFIDENTIALITY_ROLES", "R0001")
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
        };
        if s.confidentiality_roles.is_empty() {
            return Err(ConfigError::invalid(
                "CARERECORD_CONFIDENTIALITY_ROLES",
                "",
                "name at least one role code",
            ));
        }
        let unit = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    name,
                    &v.to_string(),
                    "must be between 0 and 1, exclusive",
                ))
            }
        };
        unit("CARERECORD_MATCH_THRESHOLD", s.match_threshold)?;
        unit("CARERECORD_POSSIBLE_THRESHOLD", s.possible_threshold)?;
        if s.possible_threshold >= s.match_threshold {
            return Err(ConfigError::invalid(
                "CARERECORD_POSSIBLE_THRESHOLD",
                &s.possible_threshold.to_string(),
                "must be below CARERECORD_MATCH_THRESHOLD",
            ));
        }
        if s.search_default_results < 1 || s.search_max_results < s.search_default_results {
            return Err(ConfigError::invalid(
                "CARERECORD_SEARCH_MAX_RESULTS",
                &s.search_max_results.to_string(),
                "must be at least CARERECORD_SEARCH_DEFAULT_RESULTS, which must be at least 1",
            ));
        }
        if s.estimation_max_random_pairs < 1 || s.estimation_max_blocked_pairs < 1 {
            return Err(ConfigError::invalid(
                "CARERECORD_ESTIMATION_MAX_BLOCKED_PAIRS",
                &s.estimation_max_blocked_pairs.to_string(),
                "estimation bounds must be at least 1",
            ));
        }
        Ok(s)
    }
}

/// The service's configuration: the shared server, database and telemetry settings, and its own.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub identity: Settings,
    pub tokens: PageTokens,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            identity: Settings::from_env(env)?,
            tokens: PageTokens::from_env(env)?,
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

/// The identity service, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "identity";
    type Config = Config;

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        let store = store::Store::new(startup.database().await?);
        let scheme = domain::features::BLOCKING_SCHEME;
        let rekeyed = store
            .rekey_if_stale(scheme)
            .await
            .map_err(|e| StartError::Other(format!("rebuilding the blocking keys: {e}")))?;
        if let Some(patients) = rekeyed {
            tracing::info!(
                patients,
                scheme,
                "rebuilt the blocking keys for this release"
            );
        }
        if config.identity.starting_parameters {
            let mut params = convert::starting_parameters(
                config.identity.match_threshold,
                config.identity.possible_threshold,
            );
            store
                .store_first_parameters(&mut params)
                .await
                .map_err(|e| {
                    StartError::Other(format!("storing the starting match parameters: {e}"))
                })?;
        }
        let service =
            IdentityService::new(store, config.identity, config.tokens, startup.background());
        let api = PatientIdentityServiceServer::new(service)
            .max_decoding_message_size(startup.max_message_bytes())
            .max_encoding_message_size(startup.max_message_bytes());
        Ok(startup.serve(api))
    }
}
