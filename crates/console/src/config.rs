//! The console's settings, beyond the ones every service shares.

use std::time::Duration;

use carerecord_platform::env::{ConfigError, Env};
use carerecord_platform::transport::DataAccess;

/// Sign-in with OpenID Connect: the authorization code flow with PKCE (RFC 7636, S256), run by the
/// browser as a public client. The access token it gets is what data access verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oidc {
    /// `CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL`: the issuer's authorization endpoint.
    pub authorization_url: String,
    /// `CARERECORD_CONSOLE_OIDC_TOKEN_URL`: the issuer's token endpoint (it must allow the console's
    /// origin by CORS, as issuers do for browser clients).
    pub token_url: String,
    /// `CARERECORD_CONSOLE_OIDC_CLIENT_ID`: the console's client id at the issuer.
    pub client_id: String,
    /// `CARERECORD_CONSOLE_OIDC_SCOPE`: scopes asked for (default `openid`); the issuer decides the
    /// SMART scopes each user's access token carries.
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Data access (`CARERECORD_ACCESS_ENDPOINT`, `CARERECORD_UPSTREAM_*`); a call may take up to
    /// 30s unless `CARERECORD_UPSTREAM_TIMEOUT` says otherwise.
    pub access: DataAccess,
    /// Sign-in for a deployment; `None` without `CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL`.
    pub oidc: Option<Oidc>,
    /// Development sign-in (`carerecord up` and tests only): never read from the environment.
    pub dev_sign_in: Option<crate::dev_sign_in::DevSignIn>,
}

impl ConsoleConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = |name: &str| -> Result<Option<String>, ConfigError> {
            Ok(env.url(name)?.map(str::to_owned))
        };
        let oidc = match url("CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL")? {
            None => None,
            Some(authorization_url) => Some(Oidc {
                authorization_url,
                token_url: url("CARERECORD_CONSOLE_OIDC_TOKEN_URL")?.ok_or_else(|| {
                    ConfigError::Missing {
                        name: "CARERECORD_CONSOLE_OIDC_TOKEN_URL".into(),
                    }
                })?,
                client_id: env.require("CARERECORD_CONSOLE_OIDC_CLIENT_ID")?.to_owned(),
                scope: env.string_or("CARERECORD_CONSOLE_OIDC_SCOPE", "openid"),
            }),
        };
        Ok(ConsoleConfig {
            access: DataAccess::from_env(env, Duration::from_secs(30))?,
            oidc,
            dev_sign_in: None,
        })
    }

    /// What the browser is told about signing in (`/config.json`).
    pub fn sign_in(&self) -> Option<Oidc> {
        match (&self.dev_sign_in, &self.oidc) {
            (Some(_), _) => Some(Oidc {
                authorization_url: crate::dev_sign_in::AUTHORIZE_PATH.into(),
                token_url: crate::dev_sign_in::TOKEN_PATH.into(),
                client_id: crate::dev_sign_in::CLIENT_ID.into(),
                scope: "openid".into(),
            }),
            (None, oidc) => oidc.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_needs_its_token_url_and_client() {
        let none = ConsoleConfig::from_env(&Env::default()).unwrap();
        assert!(none.oidc.is_none() && none.sign_in().is_none());
        let partial = Env::from_pairs([(
            "CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL",
            "https://login.example/authorize",
        )]);
        assert!(ConsoleConfig::from_env(&partial).is_err());
        let full = Env::from_pairs([
            (
                "CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL",
                "https://login.example/authorize",
            ),
            (
                "CARERECORD_CONSOLE_OIDC_TOKEN_URL",
                "https://login.example/token",
            ),
            ("CARERECORD_CONSOLE_OIDC_CLIENT_ID", "console"),
        ]);
        let oidc = ConsoleConfig::from_env(&full).unwrap().sign_in().unwrap();
        assert_eq!(oidc.client_id, "console");
        assert_eq!(oidc.scope, "openid");
        let bad = Env::from_pairs([("CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL", "javascript:x")]);
        assert!(ConsoleConfig::from_env(&bad).is_err());
    }
}
