//! TLS for serving and for calls between modules (rustls via tonic).
//!
//! Serving: `CARERECORD_TLS_CERT_FILE` + `CARERECORD_TLS_KEY_FILE` turn TLS on;
//! `CARERECORD_TLS_CLIENT_CA_FILE` additionally requires every client to present a certificate
//! signed by that CA (mutual TLS between modules).
//!
//! Calling another module: `CARERECORD_UPSTREAM_CA_FILE` is the CA that signs the other modules'
//! server certificates; `CARERECORD_UPSTREAM_CERT_FILE` + `CARERECORD_UPSTREAM_KEY_FILE` are the
//! client certificate presented to them. An `https://` endpoint uses TLS, `http://` plain h2c.

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::env::{ConfigError, Env};

fn read_pem(env: &Env, name: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = env.get(name) else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(name, path, format!("cannot read: {e}")))?;
    if !pem.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(ConfigError::invalid(name, path, "not a PEM file"));
    }
    Ok(Some(pem))
}

/// Both or neither of a certificate and its key.
fn read_pair(env: &Env, cert: &str, key: &str) -> Result<Option<Identity>, ConfigError> {
    match (read_pem(env, cert)?, read_pem(env, key)?) {
        (Some(cert), Some(key)) => Ok(Some(Identity::from_pem(cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing {
            name: format!("{key} (required with {cert})"),
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            name: format!("{cert} (required with {key})"),
        }),
    }
}

/// How the server presents itself and which clients it accepts.
#[derive(Debug, Clone)]
pub struct ServerTls {
    identity: Identity,
    client_ca: Option<Certificate>,
}

impl ServerTls {
    pub fn new(
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
        client_ca_pem: Option<&[u8]>,
    ) -> Self {
        ServerTls {
            identity: Identity::from_pem(cert_pem, key_pem),
            client_ca: client_ca_pem.map(Certificate::from_pem),
        }
    }

    /// TLS settings from the environment; `None` serves plaintext h2c.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let identity = read_pair(env, "CARERECORD_TLS_CERT_FILE", "CARERECORD_TLS_KEY_FILE")?;
        let client_ca = read_pem(env, "CARERECORD_TLS_CLIENT_CA_FILE")?;
        match identity {
            Some(identity) => Ok(Some(ServerTls { identity, client_ca: client_ca.map(Certificate::from_pem) })),
            None if client_ca.is_some() => Err(ConfigError::Missing {
                name: "CARERECORD_TLS_CERT_FILE (CARERECORD_TLS_CLIENT_CA_FILE needs the server to use TLS)".into(),
            }),
            None => Ok(None),
        }
    }

    pub fn requires_client_certificates(&self) -> bool {
        self.client_ca.is_some()
    }

    pub(crate) fn tonic_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(self.identity.clone());
        match &self.client_ca {
            Some(ca) => config
                .client_ca_root(ca.clone())
                .client_auth_optional(false),
            None => config,
        }
    }
}

/// How this module connects to the others.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
}

impl ClientTls {
    pub fn new(ca_pem: Option<&[u8]>, identity_pem: Option<(&[u8], &[u8])>) -> Self {
        ClientTls {
            ca: ca_pem.map(Certificate::from_pem),
            identity: identity_pem.map(|(c, k)| Identity::from_pem(c, k)),
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(ClientTls {
            ca: read_pem(env, "CARERECORD_UPSTREAM_CA_FILE")?.map(Certificate::from_pem),
            identity: read_pair(
                env,
                "CARERECORD_UPSTREAM_CERT_FILE",
                "CARERECORD_UPSTREAM_KEY_FILE",
            )?,
        })
    }

    pub(crate) fn tonic_config(&self, domain: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().domain_name(domain);
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(ca.clone());
        }
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        config
    }
}
