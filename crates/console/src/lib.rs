//! The web console for privacy officers and patients (`carerecord-console`).
//!
//! It serves a single-page application built once from `web/` (TypeScript in the NHS.UK design
//! system; see `scripts/console-build.sh`) and embedded in the binary, so nothing of Node runs here.
//! The page calls data access from the browser with gRPC-Web on this same origin: [`proxy`] passes
//! each call through to data access, which authenticates, authorises and audits it as it does any
//! integrator's. The console holds no data and no tokens: the browser signs in with the
//! deployment's OpenID Connect issuer (authorization code with PKCE, [`config::Oidc`]) or, under
//! `carerecord up`, with the [`dev_sign_in`] stand-in.
//!
//! Routes: `/assets/*` (the bundle), `/config.json` (how to sign in), `/healthz`,
//! `/carerecord.access.v1.DataAccessService/*` (gRPC-Web), `/dev-sign-in/*` (development only), and
//! every other GET answers the application's page, which routes in the browser.

pub mod assets;
pub mod config;
pub mod dev_sign_in;
pub mod proxy;

use std::net::SocketAddr;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carerecord_platform::app::{Running, Service, ServiceConfiguration, StartError, Startup};
use carerecord_platform::config::ServiceConfig;
use carerecord_platform::db::Migrations;
use carerecord_platform::env::{ConfigError, Env};

pub use config::ConsoleConfig;

/// Where the console listens unless `CARERECORD_LISTEN_ADDR` says otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8082,
));

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub console: ConsoleConfig,
}

impl ServiceConfiguration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(env, Application::NAME, DEFAULT_ADDR)?,
            console: ConsoleConfig::from_env(env)?,
        })
    }

    fn shared(&self) -> &ServiceConfig {
        &self.service
    }
}

/// The console, as the platform starts it.
pub struct Application;

impl Service for Application {
    const NAME: &'static str = "console";
    type Config = Config;

    fn migrations() -> &'static Migrations {
        &Migrations::NONE
    }

    async fn build(config: Config, startup: Startup) -> Result<Running, StartError> {
        let console = config.console;
        if console.sign_in().is_none() {
            return Err(ConfigError::Missing {
                name: "CARERECORD_CONSOLE_OIDC_AUTHORIZATION_URL (with _TOKEN_URL and _CLIENT_ID): how people sign in".into(),
            }
            .into());
        }
        let channel = console.access.channel()?;
        Ok(startup.serve_http(router(&console, proxy::Forward::new(channel))))
    }
}

/// Security headers of every page and file: nothing framed, scripts and styles only from here,
/// calls only to here and the issuer's token endpoint, fonts from the NHS's font host.
fn content_security_policy(console: &ConsoleConfig) -> String {
    let token_origin = console
        .sign_in()
        .map(|s| origin_of(&s.token_url))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self' https://assets.nhs.uk; connect-src 'self' {token_origin}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    .replace("  ", " ")
}

/// `scheme://host[:port]` of an absolute URL; empty for a path on this origin.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        None => String::new(),
    }
}

fn with_headers(mut response: Response, csp: &HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The console's routes, passing data access calls to `forward`.
pub fn router(console: &ConsoleConfig, forward: proxy::Forward) -> axum::Router {
    let csp = HeaderValue::from_str(&content_security_policy(console))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let sign_in = console.sign_in().map(|s| {
        serde_json::json!({
            "authorizationUrl": s.authorization_url,
            "tokenUrl": s.token_url,
            "clientId": s.client_id,
            "scope": s.scope,
            "development": console.dev_sign_in.is_some(),
        })
    });
    let config_json = serde_json::json!({ "signIn": sign_in }).to_string();
    let grpc_web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), forward);
    let mut router = axum::Router::new()
        .route_service(&format!("{}{{*method}}", proxy::SERVICE_PATH), grpc_web)
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/config.json",
            get(move || {
                let body = config_json.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        body,
                    )
                }
            }),
        )
        .route(
            "/assets/{file}",
            get(|uri: axum::http::Uri| async move {
                match assets::find(uri.path()) {
                    Some(asset) => (
                        [
                            (header::CONTENT_TYPE, asset.content_type),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        asset.bytes,
                    )
                        .into_response(),
                    None => (StatusCode::NOT_FOUND, "not found").into_response(),
                }
            }),
        )
        .fallback(get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                assets::INDEX,
            )
        }));
    if let Some(dev) = &console.dev_sign_in {
        router = router.merge(dev_sign_in::router(dev.clone()));
    }
    router.layer(axum::middleware::map_response(move |response: Response| {
        let csp = csp.clone();
        async move { with_headers(response, &csp) }
    }))
}

#[cfg(test)]
mod tests;
