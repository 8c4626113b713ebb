//! Bearer token verification against the deployment's trusted issuers: each with its `iss`, the
//! audiences its tokens must name, its keys (RS256/RS384/RS512 or ES256), and how its claims name
//! the caller ([`ClaimMapping`]).
//!
//! Keys are fixed (files, the development key) or come from a [`KeySource`] whose set may change;
//! how such a source fetches its keys (a JWKS URL over HTTPS, [`crate::jwks`]) is not this
//! module's business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::claims::{ClaimMapping, ClaimNames, Claims};
use crate::error::Error;

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// The signature algorithms accepted: never `none`, never a symmetric one.
const ACCEPTED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    P256,
}

/// A trusted signing key.
#[derive(Clone)]
pub struct TrustedKey {
    kid: Option<String>,
    family: KeyFamily,
    /// The one algorithm the key is for, when its JWK or configuration says.
    declared: Option<Algorithm>,
    key: DecodingKey,
    issuer: String,
}

impl TrustedKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let family = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            _ => return false,
        };
        self.family == family
            && self.declared.is_none_or(|d| d == alg)
            && (kid.is_none() || self.kid.as_deref() == kid)
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

/// Every RSA or P-256 signing key of a JWKS document, trusted for tokens of `issuer`. Keys of other
/// types, or declaring an algorithm not accepted here (symmetric ones above all), are ignored.
pub fn keys_from_jwks(jwks_json: &str, issuer: &str) -> Result<Vec<TrustedKey>, String> {
    let set: JwkSet =
        serde_json::from_str(jwks_json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                KeyFamily::P256
            }
            _ => continue,
        };
        let declared = match (jwk.common.key_algorithm, family) {
            (None, _) => None,
            (Some(KeyAlgorithm::RS256), KeyFamily::Rsa) => Some(Algorithm::RS256),
            (Some(KeyAlgorithm::RS384), KeyFamily::Rsa) => Some(Algorithm::RS384),
            (Some(KeyAlgorithm::RS512), KeyFamily::Rsa) => Some(Algorithm::RS512),
            (Some(KeyAlgorithm::ES256), KeyFamily::P256) => Some(Algorithm::ES256),
            (Some(_), _) => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        keys.push(TrustedKey {
            kid: jwk.common.key_id.clone(),
            family,
            declared,
            key,
            issuer: issuer.to_owned(),
        });
    }
    Ok(keys)
}

/// A trusted token issuer.
#[derive(Clone)]
pub struct Issuer {
    /// The deployment's name for it (for configuration errors and logs).
    pub name: String,
    /// Its `iss`, compared exactly.
    pub issuer: String,
    /// Audiences its tokens may name (`aud`, any one of them).
    pub audiences: Vec<String>,
    pub mapping: ClaimMapping,
    /// Scopes its tokens get when they carry no SMART scopes themselves.
    pub default_scopes: String,
    keys: Vec<TrustedKey>,
    remote: Option<Arc<dyn KeySource>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("mapping", &self.mapping)
            .field("keys", &self.keys.len())
            .field("remote", &self.remote)
            .finish()
    }
}

impl Issuer {
    pub fn new(name: &str, issuer: &str, audiences: Vec<String>, mapping: ClaimMapping) -> Self {
        Issuer {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            audiences,
            mapping,
            default_scopes: String::new(),
            keys: Vec::new(),
            remote: None,
        }
    }

    /// Trusts every usable signing key of a JWKS document; how many.
    pub fn add_jwks(&mut self, jwks_json: &str) -> Result<usize, String> {
        let keys = keys_from_jwks(jwks_json, &self.issuer)?;
        let added = keys.len();
        self.keys.extend(keys);
        Ok(added)
    }

    /// Trusts one PEM public key (SPKI) signing with `algorithm`.
    pub fn add_pem(&mut self, kid: &str, algorithm: Algorithm, pem: &[u8]) -> Result<(), String> {
        let (key, family) = match algorithm {
            Algorithm::ES256 => (DecodingKey::from_ec_pem(pem), KeyFamily::P256),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                (DecodingKey::from_rsa_pem(pem), KeyFamily::Rsa)
            }
            other => return Err(format!("{other:?} is not accepted")),
        };
        self.keys.push(TrustedKey {
            kid: Some(kid.to_owned()),
            family,
            declared: Some(algorithm),
            key: key.map_err(|e| e.to_string())?,
            issuer: self.issuer.clone(),
        });
        Ok(())
    }

    /// Also trusts the keys of `source`, as they are whenever a token is checked.
    pub fn set_source(&mut self, source: Arc<dyn KeySource>) {
        self.remote = Some(source);
    }

    /// Whether any key is trusted now or will be fetched.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || self.remote.is_some()
    }

    /// The caller a token of this issuer names (signature, audience, issuer and times checked),
    /// with the token's `exp`.
    fn verify(&self, token: &str, header: &jsonwebtoken::Header) -> Result<(Caller, u64), Error> {
        let remote_keys = self.remote.as_ref().map(|r| r.keys());
        let candidates = self
            .keys
            .iter()
            .chain(remote_keys.iter().flat_map(|keys| keys.iter()))
            .filter(|k| k.issuer == self.issuer && k.accepts(header.alg, header.kid.as_deref()));
        let mut last_error =
            Error::TokenInvalid("no trusted key for the token's kid and algorithm".into());
        for candidate in candidates {
            let mut validation = Validation::new(header.alg);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_audience(&self.audiences);
            validation.set_issuer(&[&self.issuer]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
                    let caller = self.mapping.caller(&data.claims, &self.default_scopes)?;
                    return Ok((caller, exp));
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

/// A token's `iss`, read before anything is verified (to choose the issuer whose keys verify it).
fn unverified_issuer(token: &str) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let invalid = |what: &str| Error::TokenInvalid(what.to_owned());
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid("the payload is not base64url"))?;
    let iss: Iss =
        serde_json::from_slice(&bytes).map_err(|_| invalid("the payload is not a JSON object"))?;
    iss.iss.ok_or_else(|| invalid("no iss claim"))
}

/// Verifies bearer tokens against the deployment's trusted issuers.
///
/// Verified tokens are remembered (by their SHA-256) until they expire: clients send the same
/// token on every call, and a signature check costs far more than the rest of a request's own
/// work. A remembered token is still refused once expired.
#[derive(Clone)]
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    /// The audience of issuers added by [`TokenVerifier::add_jwks`] and the like.
    audience: String,
    verified: Arc<Mutex<Remembered>>,
}

/// Verified tokens by SHA-256: the caller, the token's `exp`, and the key sources' generation it
/// was verified under (a token verified under an older set is checked again).
type Remembered = HashMap<[u8; 32], (Caller, u64, u64)>;

/// Most tokens remembered; the memory is cleared when full.
const MAX_REMEMBERED: usize = 10_000;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuers", &self.issuers)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting nothing yet; `audience` is that of issuers added by key.
    pub fn new(audience: &str) -> Self {
        TokenVerifier {
            issuers: Vec::new(),
            audience: audience.to_owned(),
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Trusts `issuer`; an issuer with the same `iss` already trusted is an error.
    pub fn add_issuer(&mut self, issuer: Issuer) -> Result<(), String> {
        if let Some(other) = self.issuers.iter().find(|i| i.issuer == issuer.issuer) {
            return Err(format!(
                "issuer {:?} ({}) is already configured as {}",
                issuer.issuer, issuer.name, other.name
            ));
        }
        self.issuers.push(issuer);
        Ok(())
    }

    /// The trusted issuer with `iss` `issuer`, created with carerecord's claim names and the
    /// verifier's audience if there is none yet.
    fn issuer_mut(&mut self, issuer: &str) -> &mut Issuer {
        let index = match self.issuers.iter().position(|i| i.issuer == issuer) {
            Some(index) => index,
            None => {
                self.issuers.push(Issuer::new(
                    issuer,
                    issuer,
                    vec![self.audience.clone()],
                    ClaimMapping::Names(ClaimNames::default()),
                ));
                self.issuers.len() - 1
            }
        };
        &mut self.issuers[index]
    }

    /// Trusts every usable signing key of a JWKS document for tokens of `issuer`.
    pub fn add_jwks(&mut self, jwks_json: &str, issuer: &str) -> Result<usize, String> {
        self.issuer_mut(issuer).add_jwks(jwks_json)
    }

    /// Also trusts the keys of `source` for tokens of `issuer`.
    pub fn add_source(&mut self, issuer: &str, source: Arc<dyn KeySource>) {
        self.issuer_mut(issuer).set_source(source);
    }

    /// Trusts one PEM public key (SPKI) for tokens of `issuer` signed with `algorithm`.
    pub fn add_pem(
        &mut self,
        kid: &str,
        algorithm: Algorithm,
        pem: &[u8],
        issuer: &str,
    ) -> Result<(), String> {
        self.issuer_mut(issuer).add_pem(kid, algorithm, pem)
    }

    /// The number of fixed keys trusted, over every issuer.
    pub fn key_count(&self) -> usize {
        self.issuers.iter().map(|i| i.keys.len()).sum()
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Changes whenever any issuer's key source changes (each generation only grows).
    fn generation(&self) -> u64 {
        self.issuers
            .iter()
            .filter_map(|i| i.remote.as_ref())
            .map(|r| r.generation())
            .fold(0, u64::wrapping_add)
    }

    /// The caller a bearer token names, or UNAUTHENTICATED (PERMISSION_DENIED when the issuer's
    /// mapping finds no role a CIS2 user selected).
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
        if !ACCEPTED.contains(&header.alg) {
            return Err(Error::TokenInvalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let iss = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(Error::TokenIssuerUnknown(iss))?;
        if let (Some(remote), Some(kid)) = (&issuer.remote, header.kid.as_deref()) {
            let known = issuer.keys.iter().any(|k| k.kid() == Some(kid))
                || remote.keys().iter().any(|k| k.kid() == Some(kid));
            if !known {
                // Perhaps the provider rotated its keys since the last fetch.
                remote.refresh_for_unknown_kid(kid).await;
            }
        }
        let generation = self.generation();
        let (caller, exp) = issuer.verify(token, &header)?;
        if let Ok(mut memory) = self.verified.lock() {
            if memory.len() >= MAX_REMEMBERED {
                memory.clear();
            }
            memory.insert(digest, (caller.clone(), exp, generation));
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            nhs_login: None,
            slot: Default::default(),
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

    #[test]
    fn the_issuer_is_read_before_verification() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://idp"}"#)
        );
        assert_eq!(unverified_issuer(&token).unwrap(), "https://idp");
        for bad in [
            "abc",
            "a.!!.c",
            &format!("a.{}.c", b64("[1]")),
            &format!("a.{}.c", b64("{}")),
        ] {
            assert!(matches!(
                unverified_issuer(bad),
                Err(Error::TokenInvalid(_))
            ));
        }
    }

    #[test]
    fn jwks_keys_keep_their_declared_algorithm() {
        let rsa = r#"{"kty":"RSA","kid":"r","alg":"RS512","n":"wSLtT8Pg4HXZFUmP8piFy8QjWeRaHiM24CwBw_Sc3-vZAV44YSHhw0hyO1U5zSTg8PYjpIDAWhELvpUwkw0aPb3z00g50kVAd96b8AtsF3G0ARcyQPtDU47hPL_N_uo9-zNYKRV2kD167VnL-JSRDnI312p6kWQemGgdBL7LzxIDsMNoFa19Q9BNzK1fUxwGXcJRenVOZSpPZu7_Jenr60m_fg3MHDVj7wKY1KVcd6HyWODzIY6W5TM21QDB0FQ9TEFtd4_gfBTOQCmYDqO0acsEoUeWRT-0JWiQ56bute0XzGnabSrgwSfD5e4CSednG6QF_JDPaPR91UM-YvxBYQ","e":"AQAB"}"#;
        let hmac = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        let keys = keys_from_jwks(&format!(r#"{{"keys":[{rsa},{hmac}]}}"#), "iss").unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].accepts(Algorithm::RS512, Some("r")));
        assert!(!keys[0].accepts(Algorithm::RS256, Some("r")));
        assert!(!keys[0].accepts(Algorithm::RS512, Some("other")));
        assert!(!keys[0].accepts(Algorithm::ES256, None));
    }
}
