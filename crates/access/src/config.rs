//! Data access's own settings, read from the environment.

use std::collections::HashMap;
use std::time::Duration;

use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::page_token::PageTokens;
use serde::Deserialize;

use crate::domain::auth::TokenVerifier;
use crate::domain::deid::Pseudonymiser;
use crate::domain::limits::{Limit, Limits};
use crate::domain::tree_head::TreeHeadSigner;
use crate::issuers::ISSUERS_FILE;
use crate::jwks::JwksSource;

/// A registered research or planning project.
#[derive(Debug, Clone)]
pub struct Project {
    pub project_id: String,
    pub pseudonymiser: Pseudonymiser,
    /// Purposes the project is approved for (HRESCH, HOPERAT).
    pub purposes: Vec<String>,
    /// ODS codes of organisations approved to extract; empty means any.
    pub organisations: Vec<String>,
    /// OAuth client ids approved to extract; empty means any.
    pub clients: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ProjectsFile {
    projects: Vec<ProjectEntry>,
}

#[derive(Debug, Deserialize)]
struct ProjectEntry {
    project_id: String,
    /// The 256-bit pseudonymisation key, 64 hex characters.
    key: String,
    purposes: Vec<String>,
    #[serde(default)]
    organisations: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
}

/// Parses a projects file (`CARERECORD_PROJECTS_FILE`).
pub fn parse_projects(json: &str) -> Result<HashMap<String, Project>, String> {
    let file: ProjectsFile =
        serde_json::from_str(json).map_err(|e| format!("not a projects document: {e}"))?;
    let mut projects = HashMap::new();
    for entry in file.projects {
        let key = hex::decode(entry.key.trim())
            .map_err(|_| format!("project {}: key is not hex", entry.project_id))?;
        if key.len() != 32 {
            return Err(format!(
                "project {}: key must be 256 bits (64 hex characters)",
                entry.project_id
            ));
        }
        if let Some(bad) = entry
            .purposes
            .iter()
            .find(|p| !matches!(p.as_str(), "HRESCH" | "HOPERAT"))
        {
            return Err(format!(
                "project {}: purpose {bad} is not HRESCH or HOPERAT",
                entry.project_id
            ));
        }
        let project = Project {
            project_id: entry.project_id.clone(),
            pseudonymiser: Pseudonymiser::new(&key),
            purposes: entry.purposes,
            organisations: entry.organisations,
            clients: entry.clients,
        };
        if projects.insert(entry.project_id.clone(), project).is_some() {
            return Err(format!("project {} is listed twice", entry.project_id));
        }
    }
    Ok(projects)
}

/// Data access settings.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `CARERECORD_IDENTITY_ENDPOINT`, `CARERECORD_RECORDS_ENDPOINT`, `CARERECORD_CONSENT_ENDPOINT`.
    pub identity_endpoint: String,
    pub records_endpoint: String,
    pub consent_endpoint: String,
    /// Trusted issuers: `CARERECORD_JWKS_FILE` for issuer `CARERECORD_JWT_ISSUER`, audience
    /// `CARERECORD_JWT_AUDIENCE` (carerecord's claim names); every issuer of
    /// `CARERECORD_ACCESS_ISSUERS_FILE` ([`crate::issuers`]); the development key when
    /// `CARERECORD_DEV_TOKENS=true`.
    pub tokens: TokenVerifier,
    /// JWKS URLs (`CARERECORD_JWKS_URL` for `CARERECORD_JWT_ISSUER`, and the issuers file's): keys
    /// fetched at startup and refreshed every `CARERECORD_JWKS_REFRESH` (default 10m) and on
    /// unknown kids, at most once per `CARERECORD_JWKS_MIN_INTERVAL` (default 30s); TLS roots
    /// `CARERECORD_JWKS_CA_FILE`, else the system's bundle plus `CARERECORD_UPSTREAM_CA_FILE`. See
    /// [`crate::jwks`].
    pub remote_jwks: Vec<JwksSource>,
    /// Per-client limits: the default from `CARERECORD_CLIENT_RATE_LIMIT` (calls per second, 0:
    /// none), `CARERECORD_CLIENT_RATE_BURST` (default twice the rate) and
    /// `CARERECORD_CLIENT_CONCURRENCY` (calls in flight, 0: none), changed and overridden per client
    /// by the issuers file's `limits`.
    pub limits: Limits,
    pub dev_tokens: bool,
    /// `CARERECORD_AUDIT_SIGNING_KEY_FILE` (PKCS#8 PEM Ed25519), log id `CARERECORD_AUDIT_LOG_ID`.
    pub signer: TreeHeadSigner,
    /// `CARERECORD_PROJECTS_FILE`.
    pub projects: HashMap<String, Project>,
    /// `CARERECORD_UPSTREAM_TIMEOUT`: deadline of each call to another module (default 2s).
    pub upstream_timeout: Duration,
    /// `CARERECORD_UPSTREAM_RETRIES`: retries of an idempotent call answered UNAVAILABLE (default 2).
    pub upstream_retries: u32,
    /// `CARERECORD_UPSTREAM_CA_FILE` / `_CERT_FILE` / `_KEY_FILE`: TLS for `https://` endpoints.
    pub upstream_tls: carerecord_platform::tls::ClientTls,
    /// `CARERECORD_CLINICAL_ROLES`: roles that may break glass (default R8000,R8001,R8003).
    pub clinical_roles: Vec<String>,
    /// `CARERECORD_SYSTEM_ROLE_CODE`: the role code sent to consent for system tokens without a
    /// `role_code` claim (consent requires one; default R0000).
    pub system_role_code: String,
    /// `CARERECORD_TOKEN_SECRET`: page tokens and follow cursors (which are durable: replicas and
    /// restarts must keep the same secret).
    pub page_tokens: PageTokens,
    /// `CARERECORD_PATIENT_CONTRIBUTIONS_ODS_CODE`: when set, patient-facing tokens may contribute
    /// records for their own patient, filed under this organisation (the deployment's own code for
    /// patient-entered data); unset, they may not.
    pub patient_contributions_ods_code: Option<String>,
    /// `CARERECORD_PATIENT_SERVICE_ODS_CODE`: the organisation the consent module records for a
    /// patient's own changes to their consent directives (consent records an organisation for every
    /// change; a patient acts for none): the deployment's own code (default `PATIENT`).
    pub patient_service_ods_code: String,
    /// `CARERECORD_ACCESS_RESOLUTION_CACHE`: how many patient resolutions are kept between calls,
    /// each validated by identity's change listing before use (default 20000, a few tens of MB of
    /// patients at most; 0: none kept).
    pub resolution_cache_entries: usize,
    /// `CARERECORD_ACCESS_DECISION_CACHE`: how many consent decisions are kept between calls, each
    /// validated by consent's change listing before use (default 20000; 0: none kept).
    pub decision_cache_entries: usize,
}

/// The per-client limit `CARERECORD_CLIENT_*` set for every client (none unless set).
fn default_limit(env: &Env) -> Result<Limit, ConfigError> {
    let rate: f64 = env.parse_or("CARERECORD_CLIENT_RATE_LIMIT", 0.0)?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(ConfigError::invalid(
            "CARERECORD_CLIENT_RATE_LIMIT",
            &rate.to_string(),
            "expected calls per second, 0 or more (0: no limit)",
        ));
    }
    Ok(Limit {
        rate_per_second: rate,
        burst: env.parse_or("CARERECORD_CLIENT_RATE_BURST", 0)?,
        concurrency: env.parse_or("CARERECORD_CLIENT_CONCURRENCY", 0)?,
    })
}

/// The audience tokens must name unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "carerecord-access";
/// The audit log id unless configured otherwise.
pub const DEFAULT_LOG_ID: &str = "urn:carerecord:access:audit";

impl AccessConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let audience = env.string_or("CARERECORD_JWT_AUDIENCE", DEFAULT_AUDIENCE);
        let dev_tokens = env.bool_or("CARERECORD_DEV_TOKENS", false)?;
        let mut tokens = TokenVerifier::new(&audience);
        if let Some(path) = env.get("CARERECORD_JWKS_FILE") {
            let issuer = env.require("CARERECORD_JWT_ISSUER")?;
            let json = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::invalid("CARERECORD_JWKS_FILE", path, e.to_string()))?;
            let added = tokens
                .add_jwks(&json, issuer)
                .map_err(|e| ConfigError::invalid("CARERECORD_JWKS_FILE", path, e))?;
            if added == 0 {
                return Err(ConfigError::invalid(
                    "CARERECORD_JWKS_FILE",
                    path,
                    "holds no RSA or P-256 signing key",
                ));
            }
        }
        // Fetched when the service starts (see `Application::build`), not here: this is sync.
        let mut remote_jwks: Vec<JwksSource> = JwksSource::from_env(env)?.into_iter().collect();
        let mut limits = Limits {
            default: default_limit(env)?,
            clients: HashMap::new(),
        };
        if let Some(path) = env.get(ISSUERS_FILE) {
            let loaded = crate::issuers::load(path, env)?;
            if let Some(entry) = &loaded.limits {
                limits = entry.over(limits.default);
            }
            for issuer in loaded.issuers {
                if remote_jwks.iter().any(|r| r.issuer() == issuer.issuer) {
                    return Err(ConfigError::invalid(
                        ISSUERS_FILE,
                        path,
                        format!(
                            "issuer {:?} is also CARERECORD_JWT_ISSUER: configure it in one place",
                            issuer.issuer
                        ),
                    ));
                }
                tokens
                    .add_issuer(issuer)
                    .map_err(|e| ConfigError::invalid(ISSUERS_FILE, path, e))?;
            }
            remote_jwks.extend(loaded.remote);
        }
        if dev_tokens {
            tokens
                .add_pem(
                    crate::dev_token::KEY_ID,
                    jsonwebtoken::Algorithm::ES256,
                    crate::dev_token::PUBLIC_KEY_PEM.as_bytes(),
                    crate::dev_token::ISSUER,
                )
                .map_err(|e| ConfigError::invalid("CARERECORD_DEV_TOKENS", "true", e))?;
        }
        if tokens.key_count() == 0 && remote_jwks.is_empty() {
            return Err(ConfigError::Missing {
                name: "CARERECORD_JWKS_FILE, CARERECORD_JWKS_URL or CARERECORD_ACCESS_ISSUERS_FILE (or CARERECORD_DEV_TOKENS=true for development)".into(),
            });
        }
        let log_id = env.string_or("CARERECORD_AUDIT_LOG_ID", DEFAULT_LOG_ID);
        let signer = match env.get("CARERECORD_AUDIT_SIGNING_KEY_FILE") {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid("CARERECORD_AUDIT_SIGNING_KEY_FILE", path, e.to_string())
                })?;
                TreeHeadSigner::from_pkcs8_pem(&pem, &log_id).map_err(|e| {
                    ConfigError::invalid("CARERECORD_AUDIT_SIGNING_KEY_FILE", path, e)
                })?
            }
            None if dev_tokens => TreeHeadSigner::generate(&log_id)
                .map_err(|e| ConfigError::invalid("CARERECORD_AUDIT_SIGNING_KEY_FILE", "", e))?,
            None => {
                return Err(ConfigError::Missing {
                    name: "CARERECORD_AUDIT_SIGNING_KEY_FILE".into(),
                });
            }
        };
        let projects = match env.get("CARERECORD_PROJECTS_FILE") {
            Some(path) => {
                let json = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid("CARERECORD_PROJECTS_FILE", path, e.to_string())
                })?;
                parse_projects(&json)
                    .map_err(|e| ConfigError::invalid("CARERECORD_PROJECTS_FILE", path, e))?
            }
            None => HashMap::new(),
        };
        let clinical_roles: Vec<String> = env
            .string_or("CARERECORD_CLINICAL_ROLES", "R8000,R8001,R8003")
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        Ok(AccessConfig {
            identity_endpoint: env
                .string_or("CARERECORD_IDENTITY_ENDPOINT", "http://127.0.0.1:50051"),
            records_endpoint: env
                .string_or("CARERECORD_RECORDS_ENDPOINT", "http://127.0.0.1:50052"),
            consent_endpoint: env
                .string_or("CARERECORD_CONSENT_ENDPOINT", "http://127.0.0.1:50053"),
            tokens,
            remote_jwks,
            limits,
            dev_tokens,
            signer,
            projects,
            upstream_timeout: env
                .duration_or("CARERECORD_UPSTREAM_TIMEOUT", Duration::from_secs(2))?,
            upstream_retries: env.parse_or("CARERECORD_UPSTREAM_RETRIES", 2)?,
            upstream_tls: carerecord_platform::tls::ClientTls::from_env(env)?,
            clinical_roles,
            system_role_code: env.string_or("CARERECORD_SYSTEM_ROLE_CODE", "R0000"),
            page_tokens: PageTokens::from_env(env)?,
            resolution_cache_entries: env.parse_or("CARERECORD_ACCESS_RESOLUTION_CACHE", 20_000)?,
            decision_cache_entries: env.parse_or("CARERECORD_ACCESS_DECISION_CACHE", 20_000)?,
            patient_service_ods_code: ods_code_or(
                env,
                "CARERECORD_PATIENT_SERVICE_ODS_CODE",
                "PATIENT",
            )?,
            patient_contributions_ods_code: match env
                .get("CARERECORD_PATIENT_CONTRIBUTIONS_ODS_CODE")
            {
                None => None,
                Some(code)
                    if (3..=10).contains(&code.len())
                        && code.bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    Some(code.to_ascii_uppercase())
                }
                Some(code) => {
                    return Err(ConfigError::invalid(
                        "CARERECORD_PATIENT_CONTRIBUTIONS_ODS_CODE",
                        code,
                        "expected an ODS code: 3 to 10 letters and digits",
                    ));
                }
            },
        })
    }
}

/// The ODS code in `name` (3 to 10 letters and digits, upper-cased), or `default`.
fn ods_code_or(env: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
    let code = env.string_or(name, default);
    if (3..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err(ConfigError::invalid(
            name,
            &code,
            "expected an ODS code: 3 to 10 letters and digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_validated() {
        let key = "00".repeat(32);
        let ok = format!(
            r#"{{"projects":[{{"project_id":"p1","key":"{key}","purposes":["HRESCH"]}}]}}"#
        );
        let projects = parse_projects(&ok).unwrap();
        assert_eq!(projects["p1"].purposes, ["HRESCH"]);
        let short = r#"{"projects":[{"project_id":"p1","key":"00ff","purposes":["HRESCH"]}]}"#;
        assert!(parse_projects(short).unwrap_err().contains("256 bits"));
        let bad_purpose =
            format!(r#"{{"projects":[{{"project_id":"p1","key":"{key}","purposes":["TREAT"]}}]}}"#);
        assert!(parse_projects(&bad_purpose).is_err());
    }

    #[test]
    fn a_deployment_without_trusted_keys_does_not_start() {
        let err = AccessConfig::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains("CARERECORD_JWKS_FILE"), "{err}");
        let dev =
            AccessConfig::from_env(&Env::from_pairs([("CARERECORD_DEV_TOKENS", "true")])).unwrap();
        assert!(dev.dev_tokens);
        let err =
            AccessConfig::from_env(&Env::from_pairs([("CARERECORD_JWKS_FILE", "/nonexistent")]))
                .unwrap_err();
        assert!(err.to_string().contains("CARERECORD_JWT_ISSUER"), "{err}");
    }
}
