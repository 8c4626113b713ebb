//! Token keys from a JWKS URL: data access verifies tokens against the keys an identity provider
//! publishes, follows a key rotation (an unknown kid triggers a refetch), is not made to hammer the
//! provider by forged kids, and keeps its last good keys when the provider fails.

use std::time::Duration;

use carerecord_e2e::{Overrides, Platform, authed, by_nhs, read_request};
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::db::Backend;
use carerecord_platform::env::Env;
use carerecord_platform::testing::{JsonEndpoint, TestDatabase};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

const ISSUER: &str = "https://idp.e2e.test";
/// The least time between fetches the tests configure, and how long they wait to pass it.
const MIN_INTERVAL: &str = "1s";
const PAST_MIN_INTERVAL: Duration = Duration::from_millis(1100);

/// A signing key of the test identity provider.
struct IdpKey {
    kid: String,
    encoding: EncodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
}

impl IdpKey {
    fn generate(kid: &str) -> IdpKey {
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("PKCS#8");
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("JWK");
        jwk.common.key_id = Some(kid.into());
        IdpKey {
            kid: kid.into(),
            encoding,
            jwk,
        }
    }

    /// A clinician's token; `subject` makes each token distinct (none is remembered from before).
    fn token(&self, subject: &str) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": carerecord_access::config::DEFAULT_AUDIENCE,
            "iat": now, "exp": now + 600, "scope": "user/*.rs",
            "organisation_ods_code": "RR8", "role_code": "R8000", "client_id": "e2e-idp",
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

fn jwks(keys: &[&IdpKey]) -> String {
    let keys: Vec<_> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// An identity provider's JWKS endpoint on 127.0.0.1, whose answer the test changes.
struct IdentityProvider {
    endpoint: JsonEndpoint,
    url: String,
}

impl IdentityProvider {
    async fn start(body: String) -> IdentityProvider {
        let endpoint = JsonEndpoint::start(200, body).await;
        let url = endpoint.url("/.well-known/jwks.json");
        IdentityProvider { endpoint, url }
    }

    fn answer(&self, status: u16, body: String) {
        self.endpoint.answer(status, body);
    }

    fn fetches(&self) -> usize {
        self.endpoint.requests()
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("CARERECORD_JWKS_URL".into(), self.url.clone()),
            ("CARERECORD_JWT_ISSUER".into(), ISSUER.into()),
            ("CARERECORD_JWKS_MIN_INTERVAL".into(), MIN_INTERVAL.into()),
        ]
    }
}

fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        backends.push(Backend::Postgres);
    }
    backends
}

/// Reads the patient's record with `token`: Ok(number of records) or the status code.
async fn read(platform: &Platform, nhs_number: &str, token: &str) -> Result<usize, Code> {
    let request = read_request(by_nhs(nhs_number), "TREAT");
    platform
        .access_client()
        .await
        .read_patient_record(authed(request, token))
        .await
        .map(|r| r.into_inner().records.len())
        .map_err(|s| s.code())
}

#[tokio::test]
async fn tokens_verify_against_a_jwks_url_through_rotation_and_provider_failure() {
    for backend in backends() {
        let first = IdpKey::generate("key-2026-01");
        let idp = IdentityProvider::start(jwks(&[&first])).await;
        let platform = Platform::start_with(backend, Overrides::default(), &idp.settings()).await;
        assert_eq!(idp.fetches(), 1, "{backend:?}: fetched once at startup");
        let (patient_id, nhs) = platform.register_patient("Mary", "Seacole").await;
        platform.add_record(&patient_id, &[]).await;

        // A token signed by the published key reads the record.
        let remembered = first.token("before-rotation");
        assert_eq!(
            read(&platform, &nhs, &remembered).await,
            Ok(1),
            "{backend:?}"
        );

        // The provider rotates: the old key is withdrawn, a new one published.
        let second = IdpKey::generate("key-2026-02");
        idp.answer(200, jwks(&[&second]));
        tokio::time::sleep(PAST_MIN_INTERVAL).await;
        assert_eq!(
            read(&platform, &nhs, &second.token("after-rotation")).await,
            Ok(1),
            "{backend:?}: the new kid is accepted after a refetch"
        );
        assert_eq!(idp.fetches(), 2, "{backend:?}");
        // The withdrawn key no longer verifies, even for a token verified before the rotation.
        assert_eq!(
            read(&platform, &nhs, &remembered).await,
            Err(Code::Unauthenticated),
            "{backend:?}"
        );

        // Forged kids within the interval: refused, and the provider is not asked again.
        for i in 0..20 {
            let forged = IdpKey::generate(&format!("forged-{i}"));
            assert_eq!(
                read(&platform, &nhs, &forged.token("forger")).await,
                Err(Code::Unauthenticated),
                "{backend:?}"
            );
        }
        assert_eq!(
            idp.fetches(),
            2,
            "{backend:?}: forged kids are rate-limited"
        );

        // The provider fails: an unknown kid's refetch fails, and the last good keys still work.
        idp.answer(503, "unavailable".into());
        tokio::time::sleep(PAST_MIN_INTERVAL).await;
        let third = IdpKey::generate("key-2026-03");
        assert_eq!(
            read(&platform, &nhs, &third.token("during-outage")).await,
            Err(Code::Unauthenticated),
            "{backend:?}"
        );
        assert_eq!(idp.fetches(), 3, "{backend:?}: the refetch was attempted");
        assert_eq!(
            read(&platform, &nhs, &second.token("during-outage")).await,
            Ok(1),
            "{backend:?}: the last good keys are kept"
        );
    }
}

#[tokio::test]
async fn data_access_does_not_start_when_its_jwks_url_cannot_be_loaded() {
    let idp = IdentityProvider::start("{}".into()).await;
    for (status, body) in [(500, jwks(&[&IdpKey::generate("k")])), (200, "{}".into())] {
        idp.answer(status, body);
        let database = TestDatabase::sqlite();
        let mut vars = idp.settings();
        vars.extend([
            ("DATABASE_URL".to_owned(), database.url.clone()),
            (
                "CARERECORD_LISTEN_ADDR".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            ("CARERECORD_DEV_TOKENS".to_owned(), "true".to_owned()),
        ]);
        let config = carerecord_access::Config::from_env(&Env::from_pairs(vars))
            .expect("the configuration itself is valid");
        let Err(error) =
            carerecord_platform::app::start::<carerecord_access::Application>(config).await
        else {
            panic!("data access started without its keys (HTTP {status})");
        };
        let error = error.to_string();
        assert!(error.contains("CARERECORD_JWKS_URL"), "{error}");
    }
}
