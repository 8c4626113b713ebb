//! The settings every service shares: its gRPC server, database and telemetry.
//!
//! Every variable a service reads is listed in the README's configuration table.

use std::net::SocketAddr;
use std::time::Duration;

use crate::env::{ConfigError, Env};

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
}
