//! Configuration from environment variables.
//!
//! Every variable a service reads is listed in the README's configuration table. Values are read
//! through an [`Env`] so tests can supply them without touching the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used. The message names the variable and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: String },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A source of configuration variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// A fixed set of variables, for tests and embedding.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets `name` unless it already has a value (for embedding: defaults under the caller's settings).
    pub fn set_default(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.vars.insert(name.to_owned(), value.to_owned());
        }
    }

    /// The value of `name`, treating an empty or blank value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// Parses `name` with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| ConfigError::invalid(name, raw, e.to_string())),
        }
    }

    /// A duration such as `250ms`, `30s`, `5m` or `1h`; a bare number is seconds.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => {
                parse_duration(raw).map_err(|reason| ConfigError::invalid(name, raw, reason))
            }
        }
    }

    /// A byte size such as `4194304`, `512KiB`, `4MiB` or `1GiB`.
    pub fn bytes_or(&self, name: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse_bytes(raw).map_err(|reason| ConfigError::invalid(name, raw, reason)),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::invalid(name, raw, "expected true or false")),
            },
        }
    }
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| "expected a whole number followed by ms, s, m or h".to_owned())?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(amount),
        "" | "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        "h" => Duration::from_secs(amount.saturating_mul(3600)),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    Ok(duration)
}

pub fn parse_bytes(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount: usize = digits
        .parse()
        .map_err(|_| "expected a whole number optionally followed by KiB, MiB or GiB".to_owned())?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    amount
        .checked_mul(factor)
        .ok_or_else(|| "too large".to_owned())
}

/// Settings every service's gRPC server shares.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `CARERECORD_LISTEN_ADDR`: where to listen; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// `CARERECORD_REQUEST_TIMEOUT`: the longest a unary call may run before DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// `CARERECORD_MAX_MESSAGE_BYTES`: the largest request or response message accepted.
    pub max_message_bytes: usize,
    /// `CARERECORD_SHUTDOWN_GRACE`: how long in-flight calls may drain after a shutdown signal.
    pub shutdown_grace: Duration,
    /// `CARERECORD_HEALTH_LISTEN_ADDR`: an extra plaintext listener serving only grpc.health.v1, for
    /// probes that cannot speak TLS.
    pub health_listen_addr: Option<SocketAddr>,
    /// `CARERECORD_TLS_*`: serve TLS (and require client certificates) when set.
    pub tls: Option<crate::tls::ServerTls>,
}

impl ServerConfig {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

    /// Reads the server settings; `default_addr` is the service's conventional local address.
    pub fn from_env(env: &Env, default_addr: SocketAddr) -> Result<Self, ConfigError> {
        Ok(ServerConfig {
            listen_addr: env.parse_or("CARERECORD_LISTEN_ADDR", default_addr)?,
            request_timeout: env
                .duration_or("CARERECORD_REQUEST_TIMEOUT", Self::DEFAULT_REQUEST_TIMEOUT)?,
            max_message_bytes: env.bytes_or(
                "CARERECORD_MAX_MESSAGE_BYTES",
                Self::DEFAULT_MAX_MESSAGE_BYTES,
            )?,
            shutdown_grace: env
                .duration_or("CARERECORD_SHUTDOWN_GRACE", Self::DEFAULT_SHUTDOWN_GRACE)?,
            health_listen_addr: match env.get("CARERECORD_HEALTH_LISTEN_ADDR") {
                None => None,
                Some(raw) => Some(raw.parse().map_err(|e: std::net::AddrParseError| {
                    ConfigError::invalid("CARERECORD_HEALTH_LISTEN_ADDR", raw, e.to_string())
                })?),
            },
            tls: crate::tls::ServerTls::from_env(env)?,
        })
    }
}

/// Everything the platform needs to start a service: server, database and telemetry settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub server: ServerConfig,
    pub database: crate::db::DatabaseConfig,
    pub telemetry: crate::telemetry::TelemetryConfig,
}

impl ServiceConfig {
    /// Reads the shared settings of `service` (e.g. `identity`), whose SQLite default is
    /// `sqlite://data/<service>.db`.
    pub fn from_env(
        env: &Env,
        service: &str,
        default_addr: SocketAddr,
    ) -> Result<Self, ConfigError> {
        Ok(ServiceConfig {
            server: ServerConfig::from_env(env, default_addr)?,
            database: crate::db::DatabaseConfig::from_env(env, service)?,
            telemetry: crate::telemetry::TelemetryConfig::from_env(env, service)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:50051".parse().unwrap()
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let env = Env::from_pairs([("CARERECORD_REQUEST_TIMEOUT", "  ")]);
        let config = ServerConfig::from_env(&env, addr()).unwrap();
        assert_eq!(config.listen_addr, addr());
        assert_eq!(
            config.request_timeout,
            ServerConfig::DEFAULT_REQUEST_TIMEOUT
        );
        assert_eq!(
            config.max_message_bytes,
            ServerConfig::DEFAULT_MAX_MESSAGE_BYTES
        );
    }

    #[test]
    fn values_are_parsed_with_units() {
        let env = Env::from_pairs([
            ("CARERECORD_LISTEN_ADDR", "0.0.0.0:7000"),
            ("CARERECORD_REQUEST_TIMEOUT", "250ms"),
            ("CARERECORD_MAX_MESSAGE_BYTES", "4MiB"),
            ("CARERECORD_SHUTDOWN_GRACE", "2m"),
        ]);
        let config = ServerConfig::from_env(&env, addr()).unwrap();
        assert_eq!(config.listen_addr, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert_eq!(config.max_message_bytes, 4 << 20);
        assert_eq!(config.shutdown_grace, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        let env = Env::from_pairs([("CARERECORD_LISTEN_ADDR", "localhost")]);
        let err = ServerConfig::from_env(&env, addr()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("CARERECORD_LISTEN_ADDR=\"localhost\" is invalid"),
            "{message}"
        );

        let env = Env::from_pairs([("CARERECORD_REQUEST_TIMEOUT", "5 fortnights")]);
        let err = ServerConfig::from_env(&env, addr()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { ref name, .. } if name == "CARERECORD_REQUEST_TIMEOUT"),
            "{err}"
        );

        let env = Env::from_pairs([("CARERECORD_MAX_MESSAGE_BYTES", "99999999999999999999GiB")]);
        assert!(ServerConfig::from_env(&env, addr()).is_err());
    }

    #[test]
    fn parsers_reject_garbage() {
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-3s").is_err());
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 * 1024);
        assert!(parse_bytes("12 parsecs").is_err());
        let env = Env::from_pairs([("FLAG", "maybe")]);
        assert!(env.bool_or("FLAG", false).is_err());
        assert_eq!(
            env.require("ABSENT").unwrap_err(),
            ConfigError::Missing {
                name: "ABSENT".into()
            }
        );
    }
}
