//! The console's routes, in-process: the page, files, sign-in settings, security headers, the
//! development sign-in's authorization code flow with PKCE, and gRPC-Web passed on.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::dev_sign_in::{DevSignIn, DevUser, s256};

const HOST: &str = "console.test:8082";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn console(dev: bool) -> axum::Router {
    let mut config = ConsoleConfig::from_env(&Env::default()).expect("config");
    if dev {
        config.dev_sign_in = Some(DevSignIn {
            users: vec![DevUser {
                label: "Pat <Officer>".into(),
                subject: "po-1".into(),
                scope: "user/AuditEvent.ru".into(),
                ..Default::default()
            }],
            mint: std::sync::Arc::new(|u: &DevUser| Ok(format!("token-for-{}", u.subject))),
            token_lifetime: std::time::Duration::from_secs(3600),
        });
    }
    // Nothing listens on port 1: calls passed on fail UNAVAILABLE.
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    router(&config, proxy::Forward::new(channel))
}

async fn send(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request")
}

fn form(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

#[tokio::test]
async fn every_route_of_the_application_answers_its_page_with_security_headers() {
    let router = console(false);
    for path in ["/", "/review", "/patients/abc/record-access"] {
        let (status, headers, body) = send(&router, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("<!DOCTYPE html>"), "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    }
    let (status, headers, _) = send(&router, get("/assets/app.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let (status, _, _) = send(&router, get("/assets/missing.js")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = send(&router, get("/config.json")).await;
    assert_eq!(body, r#"{"signIn":null}"#);
}

#[tokio::test]
async fn development_sign_in_runs_the_code_flow_with_pkce() {
    let router = console(true);
    let (_, _, config) = send(&router, get("/config.json")).await;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["signIn"]["authorizationUrl"],
        "/dev-sign-in/authorize"
    );
    assert_eq!(config["signIn"]["development"], true);

    let challenge = s256(VERIFIER);
    let redirect = format!("http://{HOST}/signed-in");
    let params = format!(
        "response_type=code&client_id=carerecord-console&redirect_uri={}&state=st%20ate&code_challenge={challenge}&code_challenge_method=S256",
        redirect.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, _, page) = send(&router, get(&format!("/dev-sign-in/authorize?{params}"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Sign in as Pat &lt;Officer&gt;"), "{page}");
    // Another redirect target is refused.
    let elsewhere = params.replace("console.test", "evil.test");
    let (status, _, _) = send(&router, get(&format!("/dev-sign-in/authorize?{elsewhere}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, headers, _) = send(
        &router,
        form("/dev-sign-in/authorize", &format!("{params}&user=0")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{redirect}?code=")),
        "{location}"
    );
    assert!(location.ends_with("&state=st%20ate"), "{location}");
    let code = location
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();

    let exchange = |verifier: &str, code: &str| {
        form(
            "/dev-sign-in/token",
            &format!(
                "grant_type=authorization_code&client_id=carerecord-console&code={code}&code_verifier={verifier}&redirect_uri={}",
                redirect.replace(':', "%3A").replace('/', "%2F")
            ),
        )
    };
    // The wrong verifier spends the code.
    let (status, _, body) = send(&router, exchange(&"x".repeat(43), &code)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_grant"), "{body}");
    let (status, _, _) = send(&router, exchange(VERIFIER, &code)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A fresh code with the right verifier gets the token.
    let (_, headers, _) = send(
        &router,
        form("/dev-sign-in/authorize", &format!("{params}&user=0")),
    )
    .await;
    let location = headers[header::LOCATION].to_str().unwrap();
    let code = location
        .split("code=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .unwrap();
    let (status, _, body) = send(&router, exchange(VERIFIER, code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["access_token"], "token-for-po-1");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
}

#[tokio::test]
async fn grpc_web_calls_are_passed_on_and_fail_unavailable_when_access_is_down() {
    let router = console(false);
    let request = Request::post("/carerecord.access.v1.DataAccessService/GetSignedTreeHead")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("authorization", "Bearer t")
        // An empty message: flag 0, length 0.
        .body(Body::from(vec![0u8, 0, 0, 0, 0]))
        .expect("request");
    let (status, headers, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);
    let grpc_status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| body.contains("grpc-status:14").then(|| "14".to_owned()));
    assert_eq!(grpc_status.as_deref(), Some("14"), "{headers:?} {body:?}");
    // A plain GET of an RPC path is not gRPC-Web.
    let (status, _, _) = send(
        &router,
        get("/carerecord.access.v1.DataAccessService/GetSignedTreeHead"),
    )
    .await;
    assert_ne!(status, StatusCode::OK);
}

#[test]
fn origins_of_token_urls() {
    assert_eq!(
        origin_of("https://login.example:8443/oauth/token"),
        "https://login.example:8443"
    );
    assert_eq!(origin_of("/dev-sign-in/token"), "");
}
