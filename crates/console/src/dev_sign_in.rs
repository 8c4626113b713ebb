//! DEVELOPMENT sign-in: a stand-in authorization server on the console's own origin, so `carerecord
//! up` offers the demo's users (a privacy officer, a clinician, patients) with development tokens,
//! through exactly the flow a deployment's issuer runs: the authorization code grant with PKCE
//! (RFC 6749 §4.1, RFC 7636 with S256). Instead of asking for a password, the authorization page
//! lists the users; the token endpoint checks the code verifier and answers with a token minted by
//! the function the starter gave (data access accepts such tokens only with
//! `CARERECORD_DEV_TOKENS=true`). Never configured from the environment: only `carerecord up` and
//! tests set it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const AUTHORIZE_PATH: &str = "/dev-sign-in/authorize";
pub const TOKEN_PATH: &str = "/dev-sign-in/token";
/// The client id the console uses with the development sign-in.
pub const CLIENT_ID: &str = "carerecord-console";
/// The only path the browser may be sent back to.
pub const REDIRECT_PATH: &str = "/signed-in";
/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(120);

/// A user offered on the development sign-in page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevUser {
    /// What the page shows, e.g. `Priya Shah, privacy officer at RR8`.
    pub label: String,
    /// `sub`.
    pub subject: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
    /// Space-separated SMART scopes.
    pub scope: String,
    /// For a patient, the patient_id the token acts for.
    pub patient: String,
}

/// Mints the access token for a user (the starter's development key).
pub type Mint = Arc<dyn Fn(&DevUser) -> Result<String, String> + Send + Sync>;

/// The development sign-in: its users, how tokens are minted, and how long they last.
#[derive(Clone)]
pub struct DevSignIn {
    pub users: Vec<DevUser>,
    pub mint: Mint,
    /// The tokens' lifetime, as told to the browser (`expires_in`); the minter sets `exp`.
    pub token_lifetime: Duration,
}

impl std::fmt::Debug for DevSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSignIn")
            .field("users", &self.users)
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

/// An authorization code waiting for its exchange.
struct Pending {
    user: usize,
    challenge: String,
    redirect_uri: String,
    issued: Instant,
}

#[derive(Clone)]
struct Issuer {
    sign_in: DevSignIn,
    codes: Arc<Mutex<HashMap<String, Pending>>>,
}

/// The authorization request's parameters (RFC 6749 §4.1.1, RFC 7636 §4.3), and the user chosen.
#[derive(Debug, Deserialize)]
struct Authorize {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    user: Option<usize>,
}

/// The token request (RFC 6749 §4.1.3, RFC 7636 §4.5).
#[derive(Debug, Deserialize)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    code_verifier: String,
}

/// The routes of the development sign-in, to merge into the console's router.
pub fn router(sign_in: DevSignIn) -> axum::Router {
    let issuer = Issuer {
        sign_in,
        codes: Arc::new(Mutex::new(HashMap::new())),
    };
    axum::Router::new()
        .route(AUTHORIZE_PATH, get(authorize_page).post(authorize))
        .route(TOKEN_PATH, axum::routing::post(token))
        .with_state(issuer)
}

/// The S256 code challenge of a verifier: BASE64URL(SHA-256(verifier)), no padding.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Why an authorization request is refused, or `None`. The redirect must come back to this
/// console's own `/signed-in` (the `Host` the browser used), so codes go nowhere else.
fn check_authorize(a: &Authorize, host: &str) -> Option<&'static str> {
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if a.response_type != "code" {
        return Some("response_type must be code");
    }
    if a.client_id != CLIENT_ID {
        return Some("unknown client_id");
    }
    if a.code_challenge_method != "S256" {
        return Some("code_challenge_method must be S256");
    }
    if a.code_challenge.len() != 43 || !is_b64url(&a.code_challenge) {
        return Some("code_challenge must be a base64url SHA-256 (43 characters)");
    }
    if a.state.is_empty() || a.state.len() > 512 {
        return Some("state is required");
    }
    let expected = [
        format!("http://{host}{REDIRECT_PATH}"),
        format!("https://{host}{REDIRECT_PATH}"),
    ];
    if !expected.contains(&a.redirect_uri) {
        return Some("redirect_uri must be this console's /signed-in");
    }
    None
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn refused(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(page(
            "Sign-in request refused",
            &format!("<h1>Sign-in request refused</h1><p>{}</p>", escape(why)),
        )),
    )
        .into_response()
}

fn page(title: &str, main: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Care record console</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><header class="nhsuk-header" role="banner"><div class="nhsuk-header__container nhsuk-width-container"><div class="nhsuk-header__service"><span class="nhsuk-header__service-name">Care record console</span></div></div></header>
<div class="nhsuk-width-container"><main class="nhsuk-main-wrapper" id="maincontent">{main}</main></div></body></html>"#
    )
}

async fn authorize_page(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    Query(a): Query<Authorize>,
) -> Response {
    if let Some(why) = check_authorize(&a, &host(&headers)) {
        return refused(why);
    }
    let mut users = String::new();
    for (i, user) in issuer.sign_in.users.iter().enumerate() {
        let hidden: String = [
            ("response_type", &a.response_type),
            ("client_id", &a.client_id),
            ("redirect_uri", &a.redirect_uri),
            ("state", &a.state),
            ("code_challenge", &a.code_challenge),
            ("code_challenge_method", &a.code_challenge_method),
        ]
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            )
        })
        .collect();
        users.push_str(&format!(
            r#"<li><form method="post" action="{AUTHORIZE_PATH}">{hidden}<input type="hidden" name="user" value="{i}"><button class="nhsuk-button nhsuk-button--secondary" type="submit">Sign in as {}</button></form></li>"#,
            escape(&user.label)
        ));
    }
    Html(page(
        "Choose a development user",
        &format!(
            r#"<h1>Choose a development user</h1>
<div class="nhsuk-warning-callout"><h2 class="nhsuk-warning-callout__label">Development only</h2><p>These users' tokens are signed with carerecord's public development key. A deployment signs in with its OpenID Connect issuer instead.</p></div>
<ul class="nhsuk-list">{users}</ul>"#
        ),
    ))
    .into_response()
}

async fn authorize(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    Form(a): Form<Authorize>,
) -> Response {
    if let Some(why) = check_authorize(&a, &host(&headers)) {
        return refused(why);
    }
    let Some(user) = a.user.filter(|u| *u < issuer.sign_in.users.len()) else {
        return refused("choose one of the users");
    };
    let code = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut codes = issuer.codes.lock().unwrap_or_else(|e| e.into_inner());
    codes.retain(|_, p| p.issued.elapsed() < CODE_LIFETIME);
    codes.insert(
        code.clone(),
        Pending {
            user,
            challenge: a.code_challenge.clone(),
            redirect_uri: a.redirect_uri.clone(),
            issued: Instant::now(),
        },
    );
    let state: String = a
        .state
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Redirect::to(&format!("{}?code={code}&state={state}", a.redirect_uri)).into_response()
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

async fn token(State(issuer): State<Issuer>, Form(t): Form<TokenRequest>) -> Response {
    if t.grant_type != "authorization_code" {
        return token_error(
            "unsupported_grant_type",
            "only authorization_code is supported",
        );
    }
    if t.client_id != CLIENT_ID {
        return token_error("invalid_client", "unknown client_id");
    }
    // A code is used once, whatever the outcome.
    let pending = issuer
        .codes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&t.code);
    let Some(pending) = pending.filter(|p| p.issued.elapsed() < CODE_LIFETIME) else {
        return token_error("invalid_grant", "the code is unknown, used or expired");
    };
    if pending.redirect_uri != t.redirect_uri {
        return token_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        );
    }
    if t.code_verifier.len() < 43
        || t.code_verifier.len() > 128
        || s256(&t.code_verifier) != pending.challenge
    {
        return token_error(
            "invalid_grant",
            "the code verifier does not match the challenge",
        );
    }
    let user = &issuer.sign_in.users[pending.user];
    match (issuer.sign_in.mint)(user) {
        Ok(access_token) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "application/json"),
            ],
            serde_json::json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": issuer.sign_in.token_lifetime.as_secs(),
                "scope": user.scope,
            })
            .to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a development token");
            token_error("server_error", "cannot mint a token")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(challenge: &str, redirect: &str) -> Authorize {
        Authorize {
            response_type: "code".into(),
            client_id: CLIENT_ID.into(),
            redirect_uri: redirect.into(),
            state: "s1".into(),
            code_challenge: challenge.into(),
            code_challenge_method: "S256".into(),
            user: Some(0),
        }
    }

    #[test]
    fn s256_is_rfc_7636s() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorization_requests_are_checked() {
        let challenge = s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let ok = request(&challenge, "http://127.0.0.1:8082/signed-in");
        assert_eq!(check_authorize(&ok, "127.0.0.1:8082"), None);
        let elsewhere = request(&challenge, "https://evil.example/signed-in");
        assert!(check_authorize(&elsewhere, "127.0.0.1:8082").is_some());
        let plain = Authorize {
            code_challenge_method: "plain".into(),
            ..request(&challenge, "http://127.0.0.1:8082/signed-in")
        };
        assert!(check_authorize(&plain, "127.0.0.1:8082").is_some());
        let short = request("abc", "http://127.0.0.1:8082/signed-in");
        assert!(check_authorize(&short, "127.0.0.1:8082").is_some());
        let token = Authorize {
            response_type: "token".into(),
            ..request(&challenge, "http://127.0.0.1:8082/signed-in")
        };
        assert!(check_authorize(&token, "127.0.0.1:8082").is_some());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
