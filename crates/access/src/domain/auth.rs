//! Bearer tokens: verification (RS256/ES256 against a JWKS, issuer, audience, expiry, not-before)
//! and SMART App Launch v2 scopes.
//!
//! Keys are fixed (files, the development key) or come from a [`KeySource`] whose set may change;
//! how such a source fetches its keys (the JWKS URL over HTTPS, [`crate::jwks`]) is not this
//! module's business.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// A SMART scope context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    User,
    System,
    Patient,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::User => "user",
            Context::System => "system",
            Context::Patient => "patient",
        }
    }
}

/// One granted scope: context, resource type (`*` for any) and permission letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    pub resource_type: String,
    pub permissions: HashSet<char>,
}

impl Scope {
    /// Parses `user/Observation.rs`, `system/*.read` and the like; `None` for anything else
    /// (non-SMART scopes such as `openid` are simply not resource scopes).
    pub fn parse(raw: &str) -> Option<Scope> {
        let (context, rest) = raw.split_once('/')?;
        let context = match context {
            "user" => Context::User,
            "system" => Context::System,
            "patient" => Context::Patient,
            _ => return None,
        };
        // SMART v2 allows a `?query` suffix narrowing the scope; such scopes are not honoured here.
        if rest.contains('?') {
            return None;
        }
        let (resource_type, permissions) = rest.split_once('.')?;
        if resource_type.is_empty() {
            return None;
        }
        let permissions: HashSet<char> = match permissions {
            "read" => "rs".chars().collect(),
            "write" => "cud".chars().collect(),
            "*" => "cruds".chars().collect(),
            letters if !letters.is_empty() && letters.chars().all(|c| "cruds".contains(c)) => {
                letters.chars().collect()
            }
            _ => return None,
        };
        Some(Scope {
            context,
            resource_type: resource_type.to_owned(),
            permissions,
        })
    }

    pub fn covers(&self, context: Context, resource_type: &str, permission: char) -> bool {
        self.context == context
            && (self.resource_type == "*" || self.resource_type == resource_type)
            && self.permissions.contains(&permission)
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
    pub client_id: String,
    /// The `patient` claim: the patient a patient-facing token acts for.
    pub patient: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn requester(&self) -> carerecord_contracts::common::v1::Requester {
        carerecord_contracts::common::v1::Requester {
            user_id: self.user_id.clone(),
            organisation_ods_code: self.organisation_ods_code.clone(),
            role_code: self.role_code.clone(),
            display_name: self.display_name.clone(),
        }
    }

    pub fn has(&self, context: Context, resource_type: &str, permission: char) -> bool {
        self.scopes
            .iter()
            .any(|s| s.covers(context, resource_type, permission))
    }

    /// Ok when one of `contexts` grants `permission` on `resource_type`; else SCOPE_MISSING naming
    /// the first context's scope.
    pub fn require(
        &self,
        contexts: &[Context],
        resource_type: &str,
        permission: char,
    ) -> Result<Context, Error> {
        contexts
            .iter()
            .copied()
            .find(|c| self.has(*c, resource_type, permission))
            .ok_or_else(|| Error::ScopeMissing {
                required_scope: format!(
                    "{}/{resource_type}.{permission}",
                    contexts.first().map_or("user", |c| c.as_str())
                ),
            })
    }

    /// Whether any of `contexts` grants `permission` on every resource type (`*`).
    pub fn covers_all_types(&self, contexts: &[Context], permission: char) -> bool {
        self.scopes.iter().any(|s| {
            contexts.contains(&s.context)
                && s.resource_type == "*"
                && s.permissions.contains(&permission)
        })
    }

    /// The specific resource types `contexts` grant `permission` on (excluding `*`), sorted.
    pub fn covered_types(&self, contexts: &[Context], permission: char) -> Vec<String> {
        let mut types: Vec<String> = self
            .scopes
            .iter()
            .filter(|s| {
                contexts.contains(&s.context)
                    && s.resource_type != "*"
                    && s.permissions.contains(&permission)
            })
            .map(|s| s.resource_type.clone())
            .collect();
        types.sort();
        types.dedup();
        types
    }

    /// The context a token's scopes are in, by preference user > system > patient.
    pub fn has_context(&self, context: Context) -> bool {
        self.scopes.iter().any(|s| s.context == context)
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    organisation_ods_code: String,
    #[serde(default)]
    role_code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    patient: String,
}

/// A trusted signing key.
#[derive(Clone)]
pub struct TrustedKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    issuer: String,
}

impl TrustedKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// Keys that may change while the service runs (a provider rotates them). Verification reads the
/// current set; when a token names a `kid` no key has, the source may look again before the token
/// is refused.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The current keys.
    fn keys(&self) -> Arc<Vec<TrustedKey>>;

    /// Changes whenever the key set does, so tokens verified under an older set are checked again
    /// (a key the provider withdrew must stop working).
    fn generation(&self) -> u64;

    /// A token names `kid`, which no current key has: refresh if the source's own limits allow.
    fn refresh_for_unknown_kid<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, ()>;
}

/// Every RS256 or ES256 signing key of a JWKS document, trusted for tokens of `issuer`. Keys of
/// other types or algorithms (symmetric ones above all) are ignored.
pub fn keys_from_jwks(jwks_json: &str, issuer: &str) -> Result<Vec<TrustedKey>, String> {
    let set: JwkSet =
        serde_json::from_str(jwks_json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        use jsonwebtoken::jwk::AlgorithmParameters;
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Some(declared) = jwk.common.key_algorithm {
            let matches = matches!(
                (declared, algorithm),
                (jsonwebtoken::jwk::KeyAlgorithm::RS256, Algorithm::RS256)
                    | (jsonwebtoken::jwk::KeyAlgorithm::ES256, Algorithm::ES256)
            );
            if !matches {
                continue;
            }
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        keys.push(TrustedKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
            issuer: issuer.to_owned(),
        });
    }
    Ok(keys)
}

/// Verifies bearer tokens against the deployment's trusted keys.
///
/// Verified tokens are remembered (by their SHA-256) until they expire: clients send the same
/// token on every call, and a signature check costs far more than the rest of a request's own
/// work. A remembered token is still refused once expired.
///
/// Keys come from files (fixed) and from a [`KeySource`] (refreshed). A token whose `kid` no key
/// has asks the source to look again before it is refused.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<TrustedKey>,
    remote: Option<Arc<dyn KeySource>>,
    audience: String,
    verified: Arc<Mutex<Remembered>>,
}

/// Verified tokens by SHA-256: the caller, the token's `exp`, and the key source's generation
/// it was verified under (a token verified under an older set is checked again).
type Remembered = HashMap<[u8; 32], (Caller, u64, u64)>;

/// Most tokens remembered; the memory is cleared when full.
const MAX_REMEMBERED: usize = 10_000;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("remote", &self.remote)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(audience: &str) -> Self {
        TokenVerifier {
            keys: Vec::new(),
            remote: None,
            audience: audience.to_owned(),
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Trusts every RS256 or ES256 signing key of a JWKS document for tokens of `issuer`.
    pub fn add_jwks(&mut self, jwks_json: &str, issuer: &str) -> Result<usize, String> {
        let keys = keys_from_jwks(jwks_json, issuer)?;
        let added = keys.len();
        self.keys.extend(keys);
        Ok(added)
    }

    /// Also trusts the keys of `source`, as they are whenever a token is checked.
    pub fn add_source(&mut self, source: Arc<dyn KeySource>) {
        self.remote = Some(source);
    }

    /// Trusts one PEM public key (SPKI) for tokens of `issuer` signed with `algorithm`.
    pub fn add_pem(
        &mut self,
        kid: &str,
        algorithm: Algorithm,
        pem: &[u8],
        issuer: &str,
    ) -> Result<(), String> {
        let key = match algorithm {
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            other => return Err(format!("{other:?} is not accepted")),
        }
        .map_err(|e| e.to_string())?;
        self.keys.push(TrustedKey {
            kid: Some(kid.to_owned()),
            algorithm,
            key,
            issuer: issuer.to_owned(),
        });
        Ok(())
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn generation(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.generation())
    }

    /// The caller a bearer token names, or UNAUTHENTICATED.
    pub async fn verify(&self, token: &str) -> Result<Caller, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        let generation = self.generation();
        if let Some((caller, exp, _)) = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned())
            .filter(|(_, _, g)| *g == generation)
        {
            if now > exp.saturating_add(LEEWAY_SECONDS) {
                return Err(Error::TokenExpired);
            }
            return Ok(caller);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Error::TokenInvalid(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Error::TokenInvalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        if let (Some(remote), Some(kid)) = (&self.remote, header.kid.as_deref()) {
            let known = self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
                || remote.keys().iter().any(|k| k.kid.as_deref() == Some(kid));
            if !known {
                // Perhaps the provider rotated its keys since the last fetch.
                remote.refresh_for_unknown_kid(kid).await;
            }
        }
        let generation = self.generation();
        let (caller, exp) = self.verify_signature(token, &header)?;
        if let Ok(mut memory) = self.verified.lock() {
            if memory.len() >= MAX_REMEMBERED {
                memory.clear();
            }
            memory.insert(digest, (caller.clone(), exp, generation));
        }
        Ok(caller)
    }

    fn verify_signature(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<(Caller, u64), Error> {
        let remote_keys = self.remote.as_ref().map(|r| r.keys());
        let candidates = self
            .keys
            .iter()
            .chain(remote_keys.iter().flat_map(|keys| keys.iter()))
            .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut last_error =
            Error::TokenInvalid("no trusted key for the token's kid and algorithm".into());
        for candidate in candidates {
            let mut validation = Validation::new(candidate.algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_audience(&[&self.audience]);
            validation.set_issuer(&[&candidate.issuer]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    return caller_from(data.claims).map(|c| (c, exp));
                }
                Err(e) => {
                    last_error = match e.kind() {
                        ErrorKind::ExpiredSignature => Error::TokenExpired,
                        _ => Error::TokenInvalid(e.to_string()),
                    };
                    // An expired token with a good signature is expired whatever other keys say.
                    if matches!(last_error, Error::TokenExpired) {
                        return Err(last_error);
                    }
                }
            }
        }
        Err(last_error)
    }
}

fn caller_from(claims: Claims) -> Result<Caller, Error> {
    if claims.sub.trim().is_empty() {
        return Err(Error::TokenInvalid("empty sub".into()));
    }
    let scopes = claims
        .scope
        .split_whitespace()
        .filter_map(Scope::parse)
        .collect();
    Ok(Caller {
        user_id: claims.sub,
        organisation_ods_code: claims.organisation_ods_code,
        role_code: claims.role_code,
        display_name: claims.name,
        client_id: claims.client_id,
        patient: claims.patient.to_ascii_lowercase(),
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_v1_and_v2_forms() {
        let s = Scope::parse("user/Observation.rs").unwrap();
        assert!(s.covers(Context::User, "Observation", 'r'));
        assert!(!s.covers(Context::User, "Condition", 'r'));
        assert!(!s.covers(Context::System, "Observation", 'r'));
        assert!(!s.covers(Context::User, "Observation", 'u'));
        let s = Scope::parse("system/*.read").unwrap();
        assert!(s.covers(Context::System, "Condition", 'r'));
        assert!(!s.covers(Context::System, "Condition", 'u'));
        assert!(
            Scope::parse("user/*.write")
                .unwrap()
                .covers(Context::User, "AuditEvent", 'u')
        );
        assert!(
            Scope::parse("patient/*.*")
                .unwrap()
                .covers(Context::Patient, "X", 's')
        );
        for bad in [
            "openid",
            "user/Observation",
            "user/.rs",
            "group/*.rs",
            "user/*.rx",
            "user/*.",
            "user/Observation.rs?code=x",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn remembered_tokens_still_expire() {
        let verifier = TokenVerifier::new("aud");
        let caller = Caller {
            user_id: "u".into(),
            organisation_ods_code: String::new(),
            role_code: String::new(),
            display_name: String::new(),
            client_id: String::new(),
            patient: String::new(),
            scopes: Vec::new(),
        };
        let now = jsonwebtoken::get_current_timestamp();
        let remember = |token: &str, exp: u64| {
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            verifier
                .verified
                .lock()
                .unwrap()
                .insert(digest, (caller.clone(), exp, 0));
        };
        remember("fresh", now + 100);
        remember("stale", now - LEEWAY_SECONDS - 1);
        assert_eq!(verifier.verify("fresh").await.unwrap().user_id, "u");
        assert!(matches!(
            verifier.verify("stale").await,
            Err(Error::TokenExpired)
        ));
        // Never verified, and no trusted keys: invalid.
        assert!(matches!(
            verifier.verify("a.b.c").await,
            Err(Error::TokenInvalid(_))
        ));
    }
}
