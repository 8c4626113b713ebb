//! DEVELOPMENT tokens, minted by `carerecord` (the CLI) from a development key that is public:
//! it is in this source file. The service accepts them only when `CARERECORD_DEV_TOKENS=true`,
//! which must never be set in a real deployment (the Helm chart defaults it to false).

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// The `iss` of development tokens.
pub const ISSUER: &str = "urn:carerecord:dev";
/// The `kid` of the development key.
pub const KEY_ID: &str = "carerecord-dev";

/// The development ES256 private key (PKCS#8). Public knowledge: anyone can mint with it.
const PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg63+9dzg1P7NN3q0P
4vRs8SYnYfwoUmUvKRj4aRoCh02hRANCAARUfuKmOpGOwHnKi5y43T+P5Im/W9H2
5+9rqVB6kJNORznK+4xm2HYh6dHC5tRVy0zTrqGyBwLHeOJJAE8020sO
-----END PRIVATE KEY-----
";

/// The development public key (SPKI), trusted when development tokens are enabled.
pub const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVH7ipjqRjsB5youcuN0/j+SJv1vR
9ufva6lQepCTTkc5yvuMZth2IenRwubUVctM066hsgcCx3jiSQBPNNtLDg==
-----END PUBLIC KEY-----
";

/// What a development token says about its bearer.
#[derive(Debug, Clone, Default)]
pub struct DevToken {
    /// `sub`: the user id (or a system client's id).
    pub subject: String,
    pub organisation_ods_code: String,
    /// NHS RBAC role code, e.g. `R8000`; empty for a system token.
    pub role_code: String,
    pub display_name: String,
    pub client_id: String,
    /// Space-separated SMART scopes, e.g. `user/*.rs`.
    pub scope: String,
    /// For a patient-facing token, the patient_id it acts for.
    pub patient: String,
    /// `aud`: the data access deployment's configured audience.
    pub audience: String,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
}

/// Mints a development token.
pub fn mint(token: &DevToken) -> Result<String, String> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "iss": ISSUER,
        "sub": token.subject,
        "aud": token.audience,
        "iat": now,
        "nbf": now,
        "exp": now + token.ttl_seconds.max(1),
        "scope": token.scope,
        "client_id": token.client_id,
    });
    let object = claims.as_object_mut().expect("a JSON object");
    for (name, value) in [
        ("organisation_ods_code", &token.organisation_ods_code),
        ("role_code", &token.role_code),
        ("name", &token.display_name),
        ("patient", &token.patient),
    ] {
        if !value.is_empty() {
            object.insert(name.into(), serde_json::Value::String(value.clone()));
        }
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KEY_ID.to_owned());
    let key = EncodingKey::from_ec_pem(PRIVATE_KEY_PEM.as_bytes()).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::TokenVerifier;

    fn verifier() -> TokenVerifier {
        let mut v = TokenVerifier::new("carerecord-access");
        v.add_pem(KEY_ID, Algorithm::ES256, PUBLIC_KEY_PEM.as_bytes(), ISSUER)
            .unwrap();
        v
    }

    #[tokio::test]
    async fn minted_tokens_verify_only_where_the_dev_key_is_trusted() {
        let token = mint(&DevToken {
            subject: "u-1".into(),
            organisation_ods_code: "RR8".into(),
            role_code: "R8000".into(),
            scope: "user/*.rs openid".into(),
            client_id: "cli".into(),
            audience: "carerecord-access".into(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .unwrap();
        let caller = verifier().verify(&token).await.unwrap();
        assert_eq!(caller.user_id, "u-1");
        assert_eq!(caller.role_code, "R8000");
        assert_eq!(caller.scopes.len(), 1);
        assert!(
            TokenVerifier::new("carerecord-access")
                .verify(&token)
                .await
                .is_err()
        );
        let mut other_audience = TokenVerifier::new("elsewhere");
        other_audience
            .add_pem(KEY_ID, Algorithm::ES256, PUBLIC_KEY_PEM.as_bytes(), ISSUER)
            .unwrap();
        assert!(other_audience.verify(&token).await.is_err());
    }
}
