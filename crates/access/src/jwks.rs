//! Token keys fetched from an identity provider's JWKS URL (`CARERECORD_JWKS_URL`, or an issuer's
//! `jwks_url` in `CARERECORD_ACCESS_ISSUERS_FILE`).
//!
//! The key set is fetched once at startup (the service does not start without it), then again
//! every `CARERECORD_JWKS_REFRESH` and whenever a token names a `kid` the service does not know,
//! at most once per `CARERECORD_JWKS_MIN_INTERVAL` so a flood of forged kids cannot hammer the
//! provider. A failed refresh keeps the last good key set.
//!
//! The client is deliberately small: one HTTP/1.1 GET per fetch over hyper and rustls (both
//! already in the build for gRPC), no redirects, a size cap and a deadline. `https://` verifies
//! the server against `CARERECORD_JWKS_CA_FILE` if set, else the system's CA bundle plus
//! `CARERECORD_UPSTREAM_CA_FILE`; plain `http://` is accepted only for a loopback host
//! (development and tests).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use carerecord_platform::env::{ConfigError, Env};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;

use crate::domain::auth::{KeySource, TrustedKey, keys_from_jwks};

/// Largest JWKS document accepted: real ones are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Deadline of one fetch, connection and TLS handshake included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between scheduled refreshes.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10 * 60);
/// Default least time between fetches, so unknown kids trigger at most one fetch per interval.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Where the CA bundle of common Linux distributions is (Debian and distroless, RHEL, Alpine).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a JWKS could not be fetched or used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the server answered HTTP {0}")]
    Status(StatusCode),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("reading the document: {0}")]
    Body(String),
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("{0}")]
    Document(String),
    #[error("the document holds no RS256 or ES256 signing key")]
    NoKeys,
}

/// The JWKS URL settings, validated at configuration time.
#[derive(Debug, Clone)]
pub struct JwksSource {
    url: Uri,
    issuer: String,
    /// `None` for a loopback `http://` URL.
    tls: Option<Arc<ClientConfig>>,
    /// `CARERECORD_JWKS_REFRESH`.
    pub refresh: Duration,
    /// `CARERECORD_JWKS_MIN_INTERVAL`.
    pub min_interval: Duration,
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Reads every certificate of a PEM file into `roots`; the number added.
fn add_pem_roots(roots: &mut RootCertStore, path: &str) -> Result<usize, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("holds no usable CA certificate".into());
    }
    Ok(added)
}

/// The trust roots for `https://` JWKS URLs (see the module documentation).
fn trust_roots(env: &Env) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = env.get("CARERECORD_JWKS_CA_FILE") {
        add_pem_roots(&mut roots, path)
            .map_err(|e| ConfigError::invalid("CARERECORD_JWKS_CA_FILE", path, e))?;
        return Ok(roots);
    }
    let bundle = match env.get("SSL_CERT_FILE") {
        Some(path) => Some(path.to_owned()),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .find(|p| std::path::Path::new(p).is_file())
            .map(|p| (*p).to_owned()),
    };
    if let Some(path) = &bundle {
        add_pem_roots(&mut roots, path)
            .map_err(|e| ConfigError::invalid("SSL_CERT_FILE", path, e))?;
    }
    // Modules' own CA: an identity provider inside the deployment may be signed by it.
    if let Some(path) = env.get("CARERECORD_UPSTREAM_CA_FILE") {
        add_pem_roots(&mut roots, path)
            .map_err(|e| ConfigError::invalid("CARERECORD_UPSTREAM_CA_FILE", path, e))?;
    }
    if roots.is_empty() {
        return Err(ConfigError::Missing {
            name:
                "CARERECORD_JWKS_CA_FILE (no system CA bundle found to verify CARERECORD_JWKS_URL)"
                    .into(),
        });
    }
    Ok(roots)
}

impl JwksSource {
    /// The `CARERECORD_JWKS_URL` settings, or `None` when it is not set.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        const NAME: &str = "CARERECORD_JWKS_URL";
        let Some(raw) = env.get(NAME) else {
            return Ok(None);
        };
        let issuer = env.require("CARERECORD_JWT_ISSUER")?.to_owned();
        Self::for_url(NAME, raw, &issuer, env).map(Some)
    }

    /// The key set at `raw` of tokens of `issuer`; `setting` is what errors name. TLS roots and
    /// refresh intervals are the deployment's (`CARERECORD_JWKS_CA_FILE`, `_REFRESH`,
    /// `_MIN_INTERVAL`).
    pub fn for_url(setting: &str, raw: &str, issuer: &str, env: &Env) -> Result<Self, ConfigError> {
        let issuer = issuer.to_owned();
        let url: Uri = raw
            .parse()
            .map_err(|e| ConfigError::invalid(setting, raw, format!("not a URL: {e}")))?;
        let Some(authority) = url.authority() else {
            return Err(ConfigError::invalid(
                setting,
                raw,
                "expected an absolute URL",
            ));
        };
        if authority.as_str().contains('@') {
            return Err(ConfigError::invalid(
                setting,
                raw,
                "credentials in the URL are not supported",
            ));
        }
        let tls = match url.scheme_str() {
            Some("https") => {
                let roots = trust_roots(env)?;
                let mut config = ClientConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::invalid(setting, raw, format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(Arc::new(config))
            }
            Some("http") if is_loopback(authority.host()) => None,
            Some("http") => {
                return Err(ConfigError::invalid(
                    setting,
                    raw,
                    "plain http:// is accepted only for a loopback host (development); use https://",
                ));
            }
            _ => {
                return Err(ConfigError::invalid(
                    setting,
                    raw,
                    "expected an https:// URL",
                ));
            }
        };
        let refresh = env.duration_or("CARERECORD_JWKS_REFRESH", DEFAULT_REFRESH)?;
        if refresh.is_zero() {
            return Err(ConfigError::invalid(
                "CARERECORD_JWKS_REFRESH",
                env.get("CARERECORD_JWKS_REFRESH").unwrap_or_default(),
                "must be more than zero",
            ));
        }
        Ok(JwksSource {
            url,
            issuer,
            tls,
            refresh,
            min_interval: env.duration_or("CARERECORD_JWKS_MIN_INTERVAL", DEFAULT_MIN_INTERVAL)?,
        })
    }

    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// The `iss` of the tokens its keys verify.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// GETs the document, within [`FETCH_TIMEOUT`].
    async fn fetch(&self) -> Result<Bytes, JwksError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_unbounded())
            .await
            .map_err(|_| JwksError::Timeout)?
    }

    async fn fetch_unbounded(&self) -> Result<Bytes, JwksError> {
        let host = self.url.host().unwrap_or_default();
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self
            .url
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(JwksError::Connect)?;
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(bare_host.to_owned()).map_err(|e| {
                    JwksError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?;
                let stream = TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(JwksError::Tls)?;
                self.get(TokioIo::new(stream)).await
            }
            None => self.get(TokioIo::new(tcp)).await,
        }
    }

    /// One GET on a fresh connection; redirects are not followed (they would be a non-200).
    async fn get<I>(&self, io: I) -> Result<Bytes, JwksError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        let path = self.url.path_and_query().map_or("/", |p| p.as_str());
        let authority = self.url.authority().map_or("", |a| a.as_str());
        let request = Request::get(path)
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, "carerecord-access")
            .body(Empty::<Bytes>::new())
            .map_err(|e| JwksError::Document(format!("cannot build the request: {e}")))?;
        // The exchange owns the sender, so the connection winds down once the body is read.
        let exchange = async move {
            let response = sender.send_request(request).await?;
            if response.status() != StatusCode::OK {
                return Err(JwksError::Status(response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        JwksError::TooLarge
                    } else {
                        JwksError::Body(e.to_string())
                    }
                })?;
            Ok(body.to_bytes())
        };
        // A connection error also fails the exchange, which is what is reported.
        let (result, _connection) = tokio::join!(exchange, connection);
        result
    }

    /// Fetches and parses the key set: its keys and the document's digest.
    async fn load(&self) -> Result<KeySet, JwksError> {
        let body = self.fetch().await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| JwksError::Document("the document is not UTF-8".into()))?;
        let keys = keys_from_jwks(text, &self.issuer).map_err(JwksError::Document)?;
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(KeySet {
            digest: Sha256::digest(&body).into(),
            keys: Arc::new(keys),
        })
    }
}

#[derive(Clone)]
struct KeySet {
    digest: [u8; 32],
    keys: Arc<Vec<TrustedKey>>,
}

/// The current keys of a JWKS URL, refreshed in the background and on unknown kids.
pub struct RemoteJwks {
    source: JwksSource,
    current: RwLock<KeySet>,
    /// Bumped whenever the key set changes, so tokens verified under an older set are checked
    /// again (a key the provider withdrew must stop working).
    generation: std::sync::atomic::AtomicU64,
    /// Held for the duration of a fetch (one at a time); the time the last one started.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.source.url)
            .field("keys", &self.keys().len())
            .finish()
    }
}

impl RemoteJwks {
    /// Fetches the key set for the first time: an error here should stop the service starting.
    pub async fn start(source: JwksSource) -> Result<Arc<Self>, JwksError> {
        if source.tls.is_none() {
            tracing::warn!(url = %source.url, "JWKS fetched over plain HTTP from a loopback address: development only");
        }
        let started = Instant::now();
        let set = source.load().await?;
        tracing::info!(url = %source.url, keys = set.keys.len(), "JWKS loaded");
        Ok(Arc::new(RemoteJwks {
            source,
            current: RwLock::new(set),
            generation: std::sync::atomic::AtomicU64::new(0),
            last_fetch: tokio::sync::Mutex::new(started),
        }))
    }

    fn knows(&self, kid: &str) -> bool {
        self.keys().iter().any(|k| k.kid() == Some(kid))
    }

    /// Fetches now; on success installs the new set (true when it changed). The caller holds
    /// `last_fetch`.
    async fn fetch_and_install(&self, last_fetch: &mut Instant) -> Result<bool, JwksError> {
        *last_fetch = Instant::now();
        let set = self.source.load().await?;
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.digest == set.digest {
            return Ok(false);
        }
        let count = set.keys.len();
        *current = set;
        drop(current);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tracing::info!(url = %self.source.url, keys = count, "JWKS changed");
        Ok(true)
    }

    /// Refreshes now, whatever the interval; a failure keeps the last good set.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let mut last_fetch = self.last_fetch.lock().await;
        self.fetch_and_install(&mut last_fetch).await
    }

    /// A token names `kid`, which no current key has: refetch, unless a fetch started less than
    /// the minimum interval ago (the provider is not asked more often than that, however many
    /// unknown kids arrive). Concurrent callers wait for the one fetch.
    async fn refetch_for_unknown_kid(&self, kid: &str) {
        let mut last_fetch = self.last_fetch.lock().await;
        if self.knows(kid) || last_fetch.elapsed() < self.source.min_interval {
            return;
        }
        if let Err(e) = self.fetch_and_install(&mut last_fetch).await {
            tracing::warn!(url = %self.source.url, error = %e, "JWKS refresh for an unknown kid failed; keeping the last good keys");
        }
    }

    /// Refreshes every `CARERECORD_JWKS_REFRESH` until `shutdown`.
    pub async fn refresh_periodically(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.source.refresh) => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(url = %self.source.url, error = %e, "JWKS refresh failed; keeping the last good keys");
            }
        }
    }
}

impl KeySource for RemoteJwks {
    fn keys(&self) -> Arc<Vec<TrustedKey>> {
        match self.current.read() {
            Ok(set) => set.keys.clone(),
            // A panic while holding the lock cannot leave a half-written set: assignment is whole.
            Err(poisoned) => poisoned.into_inner().keys.clone(),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn refresh_for_unknown_kid<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.refetch_for_unknown_kid(kid))
    }
}

#[cfg(test)]
mod tests;
