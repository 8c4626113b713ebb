//! The trusted issuers file (`CARERECORD_ACCESS_ISSUERS_FILE`, JSON): every identity provider data
//! access accepts tokens from, each with its keys (a JWKS file, a JWKS URL, or both), the audiences
//! its tokens must name, how its claims name the caller, and the scopes its tokens get when they
//! carry none.
//!
//! ```json
//! {"issuers": [
//!   {"name": "cis2", "issuer": "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/oidc",
//!    "audience": "123456789012.apps.national", "jwks_url": "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/oidc/connect/jwk_uri",
//!    "claims": "cis2", "scopes": "user/*.rs"},
//!   {"name": "nhs-login", "issuer": "https://auth.login.nhs.uk", "audience": "carerecord-patient-app",
//!    "jwks_url": "https://auth.login.nhs.uk/.well-known/jwks.json", "claims": "nhs_login",
//!    "scopes": "patient/*.rs patient/AuditEvent.r patient/Consent.cru"},
//!   {"name": "systems", "issuer": "https://auth.ics.example", "audience": ["carerecord-access"],
//!    "jwks_file": "systems-jwks.json", "claims": {"organisation": "ods_code"}}
//! ]}
//! ```
//!
//! `claims` is `carerecord` (the default: the contract's claim names), `cis2`, `nhs_login`, or an
//! object renaming carerecord's claims (`user_id`, `organisation`, `role`, `name`, `client_id`,
//! `scope`, `patient`). A relative `jwks_file` is read from the issuers file's directory.
//!
//! The same file may set per-client limits (see [`crate::domain::limits`]): `"limits":
//! {"default": {"rate_per_second": 50, "burst": 100, "concurrency": 16}, "clients": {"bulk-loader":
//! {"rate_per_second": 500}}}`, the default over `CARERECORD_CLIENT_*`, each client's over the
//! default, naming only what they change. Every mistake stops the service at start, naming the
//! entry.

use std::collections::HashMap;
use std::path::Path;

use carerecord_platform::env::{ConfigError, Env};
use serde::Deserialize;

use crate::domain::auth::Issuer;
use crate::domain::claims::{ClaimMapping, ClaimNames};
use crate::domain::limits::{Limit, LimitOverride, Limits};
use crate::jwks::JwksSource;

/// The setting naming the file.
pub const ISSUERS_FILE: &str = "CARERECORD_ACCESS_ISSUERS_FILE";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuersFile {
    #[serde(default)]
    issuers: Vec<IssuerEntry>,
    #[serde(default)]
    limits: Option<LimitsEntry>,
}

/// Per-client limits: the deployment's default (over `CARERECORD_CLIENT_*`) and overrides by
/// client id, each naming only what it changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    #[serde(default)]
    pub default: LimitOverride,
    #[serde(default)]
    pub clients: HashMap<String, LimitOverride>,
}

impl LimitsEntry {
    /// The limits with `base` (the environment's default) under this entry.
    pub fn over(&self, base: Limit) -> Limits {
        let default = self.default.over(base);
        Limits {
            default,
            clients: self
                .clients
                .iter()
                .map(|(id, o)| (id.clone(), o.over(default)))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClaimsEntry {
    Builtin(String),
    Names(ClaimNames),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerEntry {
    name: String,
    issuer: String,
    audience: OneOrMany,
    #[serde(default)]
    jwks_file: Option<String>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    claims: Option<ClaimsEntry>,
    #[serde(default)]
    scopes: String,
}

/// The issuers of the file: keys from files already added; JWKS URLs to fetch at start.
#[derive(Debug)]
pub struct Loaded {
    pub issuers: Vec<Issuer>,
    pub remote: Vec<JwksSource>,
    pub limits: Option<LimitsEntry>,
}

/// Reads and checks the issuers file at `path`.
pub fn load(path: &str, env: &Env) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(ISSUERS_FILE, path, e.to_string()))?;
    let base = Path::new(path).parent().unwrap_or(Path::new("."));
    parse(&text, base, env).map_err(|e| ConfigError::invalid(ISSUERS_FILE, path, e))
}

fn mapping(entry: Option<ClaimsEntry>) -> Result<ClaimMapping, String> {
    Ok(match entry {
        None => ClaimMapping::Names(ClaimNames::default()),
        Some(ClaimsEntry::Builtin(name)) => match name.as_str() {
            "carerecord" => ClaimMapping::Names(ClaimNames::default()),
            "cis2" => ClaimMapping::Cis2,
            "nhs_login" => ClaimMapping::NhsLogin,
            other => {
                return Err(format!(
                    "claims {other:?} is not carerecord, cis2, nhs_login or an object of claim names"
                ));
            }
        },
        Some(ClaimsEntry::Names(names)) => {
            let all = [
                &names.user_id,
                &names.organisation,
                &names.role,
                &names.name,
                &names.client_id,
                &names.scope,
                &names.patient,
            ];
            if all.iter().any(|n| n.trim().is_empty()) {
                return Err("claims: a claim name is empty".into());
            }
            ClaimMapping::Names(names)
        }
    })
}

/// The issuers of a file's text; relative JWKS files are read under `base`.
pub fn parse(text: &str, base: &Path, env: &Env) -> Result<Loaded, String> {
    let file: IssuersFile =
        serde_json::from_str(text).map_err(|e| format!("not an issuers document: {e}"))?;
    if let Some(limits) = &file.limits {
        let named = std::iter::once(("default".to_owned(), &limits.default)).chain(
            limits
                .clients
                .iter()
                .map(|(id, o)| (format!("clients.{id}"), o)),
        );
        for (at, limit) in named {
            if let Some(problem) = limit.problem() {
                return Err(format!("limits.{at}: {problem}"));
            }
        }
    }
    let mut loaded = Loaded {
        issuers: Vec::new(),
        remote: Vec::new(),
        limits: file.limits,
    };
    for (i, entry) in file.issuers.into_iter().enumerate() {
        let at = format!("issuers[{i}] ({})", entry.name);
        let fail = |what: String| format!("{at}: {what}");
        if entry.name.trim().is_empty() {
            return Err(format!("issuers[{i}]: name is empty"));
        }
        if loaded.issuers.iter().any(|o| o.name == entry.name) {
            return Err(fail("the name is used twice".into()));
        }
        if entry.issuer.trim().is_empty() {
            return Err(fail("issuer is empty".into()));
        }
        if loaded.issuers.iter().any(|o| o.issuer == entry.issuer) {
            return Err(fail(format!("issuer {:?} is listed twice", entry.issuer)));
        }
        let audiences = match entry.audience {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        };
        if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(fail("audience is empty".into()));
        }
        let mapping = mapping(entry.claims).map_err(fail)?;
        let mut issuer = Issuer::new(&entry.name, &entry.issuer, audiences, mapping);
        issuer.default_scopes = entry.scopes;
        if entry.jwks_file.is_none() && entry.jwks_url.is_none() {
            return Err(fail("give jwks_file, jwks_url or both".into()));
        }
        if let Some(file) = &entry.jwks_file {
            let path = base.join(file);
            let json = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("jwks_file {}: {e}", path.display())))?;
            let added = issuer
                .add_jwks(&json)
                .map_err(|e| fail(format!("jwks_file {}: {e}", path.display())))?;
            if added == 0 {
                return Err(fail(format!(
                    "jwks_file {} holds no RSA or P-256 signing key",
                    path.display()
                )));
            }
        }
        if let Some(url) = &entry.jwks_url {
            let setting = format!("{ISSUERS_FILE} {at} jwks_url");
            let source = JwksSource::for_url(&setting, url, &entry.issuer, env)
                .map_err(|e| fail(e.to_string()))?;
            loaded.remote.push(source);
        }
        loaded.issuers.push(issuer);
    }
    if loaded.issuers.is_empty() && loaded.limits.is_none() {
        return Err("lists no issuer and no limits".into());
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let jwks = r#"{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"prG3PGD2tbgYF9HeYxCYxCiMTib-W7MtETkAhABRI8I","y":"igIsl-finPA5xPym0MgcYfJ9p5LJYOo_xJN4e6wzsME"}]}"#;
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        dir
    }

    fn parse_in(dir: &Path, text: &str) -> Result<Loaded, String> {
        parse(text, dir, &Env::default())
    }

    #[test]
    fn issuers_are_read_with_their_mappings() {
        let dir = jwks_dir();
        let loaded = parse_in(
            dir.path(),
            r#"{"issuers": [
                {"name": "cis2", "issuer": "https://cis2", "audience": "app", "jwks_file": "jwks.json", "claims": "cis2", "scopes": "user/*.rs"},
                {"name": "login", "issuer": "https://login", "audience": ["a", "b"], "jwks_url": "http://127.0.0.1:9/jwks", "claims": "nhs_login"},
                {"name": "ics", "issuer": "https://ics", "audience": "carerecord-access", "jwks_file": "jwks.json", "claims": {"organisation": "ods"}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(loaded.issuers.len(), 3);
        assert_eq!(loaded.issuers[0].mapping, ClaimMapping::Cis2);
        assert_eq!(loaded.issuers[0].default_scopes, "user/*.rs");
        assert_eq!(loaded.issuers[1].audiences, ["a", "b"]);
        assert_eq!(loaded.remote.len(), 1);
        assert_eq!(loaded.remote[0].issuer(), "https://login");
        let ClaimMapping::Names(names) = &loaded.issuers[2].mapping else {
            panic!("a renaming")
        };
        assert_eq!(
            (names.organisation.as_str(), names.role.as_str()),
            ("ods", "role_code")
        );
    }

    #[test]
    fn mistakes_name_the_entry() {
        let dir = jwks_dir();
        let entry = |extra: &str| {
            format!(
                r#"{{"issuers": [{{"name": "x", "issuer": "https://x", "audience": "a", "jwks_file": "jwks.json"{extra}}}]}}"#
            )
        };
        let cases = [
            (entry(r#", "claims": "saml""#), "claims \"saml\""),
            (entry(r#", "claims": {"role": ""}"#), "claim name is empty"),
            (entry(r#", "colour": "blue""#), "unknown field"),
            (
                r#"{"issuers": [{"name": "x", "issuer": "https://x", "audience": []}]}"#.into(),
                "issuers[0] (x): audience is empty",
            ),
            (
                r#"{"issuers": [{"name": "x", "issuer": "https://x", "audience": "a"}]}"#.into(),
                "give jwks_file, jwks_url or both",
            ),
            (
                r#"{"issuers": [{"name": "x", "issuer": "https://x", "audience": "a", "jwks_file": "none.json"}]}"#.into(),
                "none.json",
            ),
            (
                r#"{"issuers": [{"name": "x", "issuer": "https://x", "audience": "a", "jwks_url": "http://idp.example/jwks"}]}"#.into(),
                "loopback",
            ),
            (r#"{"issuers": []}"#.into(), "lists no issuer"),
            (
                r#"{"limits": {"clients": {"x": {"rate_per_second": -2}}}}"#.into(),
                "limits.clients.x: rate_per_second",
            ),
            (
                r#"{"limits": {"default": {"rate": 2}}}"#.into(),
                "unknown field",
            ),
            (r#""issuers""#.into(), "not an issuers document"),
        ];
        for (text, expected) in cases {
            let err = parse_in(dir.path(), &text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let twice = r#"{"issuers": [
            {"name": "x", "issuer": "https://x", "audience": "a", "jwks_file": "jwks.json"},
            {"name": "y", "issuer": "https://x", "audience": "a", "jwks_file": "jwks.json"}]}"#;
        assert!(
            parse_in(dir.path(), twice)
                .unwrap_err()
                .contains("issuers[1] (y)")
        );
    }

    #[test]
    fn limits_override_the_default_and_each_other() {
        let loaded = parse_in(
            Path::new("."),
            r#"{"limits": {"default": {"concurrency": 16},
                           "clients": {"bulk": {"rate_per_second": 500, "burst": 1000}}}}"#,
        )
        .unwrap();
        let env = Limit {
            rate_per_second: 50.0,
            burst: 0,
            concurrency: 64,
        };
        let limits = loaded.limits.unwrap().over(env);
        assert_eq!(
            limits.default,
            Limit {
                rate_per_second: 50.0,
                burst: 0,
                concurrency: 16
            }
        );
        assert_eq!(
            limits.of("bulk"),
            Limit {
                rate_per_second: 500.0,
                burst: 1000,
                concurrency: 16
            }
        );
    }
}
