//! HTTP/2 between carerecord's processes: the flow-control windows servers and channels share, the
//! channel one module opens to another, and the settings of data access as the gateways call it.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::env::{ConfigError, Env};
use crate::tls::ClientTls;

/// HTTP/2 flow-control windows. The 64 KiB default lets a stream carry one window per round trip,
/// which caps a bulk import or an export at a few MB/s; the connection window bounds what all of a
/// connection's streams may have buffered at once.
pub const STREAM_WINDOW: u32 = 2 << 20;
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// A lazily connected channel to another module: `http://host:port` (h2c) or `https://…` (TLS with
/// `tls`). The first call connects, so a service starts even while its dependencies are down.
pub fn channel(
    name: &str,
    url: &str,
    tls: &ClientTls,
    connect_timeout: Duration,
) -> Result<Channel, ConfigError> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| ConfigError::invalid(name, url, e.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let host = endpoint.uri().host().unwrap_or_default().to_owned();
            endpoint = endpoint
                .tls_config(tls.tonic_config(&host))
                .map_err(|e| ConfigError::invalid(name, url, format!("TLS: {e}")))?;
        }
        Some("http") => {}
        _ => {
            return Err(ConfigError::invalid(
                name,
                url,
                "expected an http:// or https:// URL",
            ));
        }
    }
    Ok(endpoint.connect_lazy())
}

/// Data access as a gateway in front of it (the FHIR gateway, the console) calls it.
#[derive(Debug, Clone)]
pub struct DataAccess {
    /// `CARERECORD_ACCESS_ENDPOINT` (default `http://127.0.0.1:50050`).
    pub endpoint: String,
    /// `CARERECORD_UPSTREAM_*`: TLS towards an `https://` data access.
    pub tls: ClientTls,
    /// `CARERECORD_UPSTREAM_TIMEOUT`: the longest a call to data access may take.
    pub timeout: Duration,
}

impl DataAccess {
    /// The settings, with `timeout` unless `CARERECORD_UPSTREAM_TIMEOUT` says otherwise.
    pub fn from_env(env: &Env, timeout: Duration) -> Result<Self, ConfigError> {
        Ok(DataAccess {
            endpoint: env.string_or("CARERECORD_ACCESS_ENDPOINT", "http://127.0.0.1:50050"),
            tls: ClientTls::from_env(env)?,
            timeout: env.duration_or("CARERECORD_UPSTREAM_TIMEOUT", timeout)?,
        })
    }

    /// A lazily connected [`channel`] to data access.
    pub fn channel(&self) -> Result<Channel, ConfigError> {
        channel(
            "CARERECORD_ACCESS_ENDPOINT",
            &self.endpoint,
            &self.tls,
            self.timeout,
        )
    }
}
