//! The gateway's settings, beyond the ones every service shares.

use std::path::PathBuf;
use std::time::Duration;

use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::transport::DataAccess;

/// SMART App Launch discovery: where clients get their tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smart {
    /// `CARERECORD_FHIR_SMART_ISSUER`: the authorization server's issuer URL.
    pub issuer: String,
    /// `CARERECORD_FHIR_SMART_AUTHORIZE_URL` (default `<issuer>/authorize`).
    pub authorization_endpoint: String,
    /// `CARERECORD_FHIR_SMART_TOKEN_URL` (default `<issuer>/token`).
    pub token_endpoint: String,
}

#[derive(Debug, Clone)]
pub struct FhirConfig {
    /// Data access (`CARERECORD_ACCESS_ENDPOINT`, `CARERECORD_UPSTREAM_*`); the deadline of each call
    /// is 10s unless `CARERECORD_UPSTREAM_TIMEOUT` says otherwise.
    pub access: DataAccess,
    /// `CARERECORD_FHIR_BASE_URL`: the public base URL written in links and `Location`; unset means
    /// `http://<Host header>`.
    pub base_url: Option<String>,
    /// SMART discovery; unset issuer means `/.well-known/smart-configuration` answers 404.
    pub smart: Option<Smart>,
    /// `CARERECORD_FHIR_EXPORT_DIR`: where Bulk Data output files wait for their download (default: a
    /// directory under the system's temporary directory).
    pub export_dir: PathBuf,
    /// `CARERECORD_FHIR_EXPORT_TTL`: how long a finished export's files are kept (default 1h).
    pub export_ttl: Duration,
}

impl FhirConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // Without the trailing slash: links are written as `{url}/path`.
        let url = |name: &str| -> Result<Option<String>, ConfigError> {
            Ok(env.url(name)?.map(|u| u.trim_end_matches('/').to_owned()))
        };
        let smart = match url("CARERECORD_FHIR_SMART_ISSUER")? {
            None => None,
            Some(issuer) => Some(Smart {
                authorization_endpoint: url("CARERECORD_FHIR_SMART_AUTHORIZE_URL")?
                    .unwrap_or_else(|| format!("{issuer}/authorize")),
                token_endpoint: url("CARERECORD_FHIR_SMART_TOKEN_URL")?
                    .unwrap_or_else(|| format!("{issuer}/token")),
                issuer,
            }),
        };
        Ok(FhirConfig {
            access: DataAccess::from_env(env, Duration::from_secs(10))?,
            base_url: url("CARERECORD_FHIR_BASE_URL")?,
            smart,
            export_dir: env
                .get("CARERECORD_FHIR_EXPORT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("carerecord-fhir-exports")),
            export_ttl: env.duration_or("CARERECORD_FHIR_EXPORT_TTL", Duration::from_secs(3600))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_endpoints_default_under_the_issuer() {
        let config = FhirConfig::from_env(&Env::from_pairs([(
            "CARERECORD_FHIR_SMART_ISSUER",
            "https://login.example.nhs.uk/",
        )]))
        .unwrap();
        let smart = config.smart.unwrap();
        assert_eq!(smart.token_endpoint, "https://login.example.nhs.uk/token");
        assert!(
            FhirConfig::from_env(&Env::default())
                .unwrap()
                .smart
                .is_none()
        );
        let err = FhirConfig::from_env(&Env::from_pairs([(
            "CARERECORD_FHIR_BASE_URL",
            "fhir.example",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("CARERECORD_FHIR_BASE_URL"));
    }
}
