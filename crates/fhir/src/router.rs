//! The axum router: one route per row of the table, and what every response goes through: an
//! access log line (route template and status, never the query string, which may hold an NHS
//! number) and an OperationOutcome for any error axum itself answers (a body too large, a method a
//! path does not serve).

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use http::{StatusCode, header};

use crate::Gateway;
use crate::error::{Error, FHIR_MEDIA_TYPE};
use crate::handlers;
use crate::table::{Action, ROUTES, Target};

/// The largest request body accepted: above any payload limit record hosting may be configured
/// with, so that limit (and its reason) is what a client meets first.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The router for `state`, one axum route per row of [`ROUTES`].
pub fn router(state: Gateway) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        let handler = match r.action {
            Action::Capabilities => on(r.method, handlers::capabilities),
            Action::SmartConfiguration => on(r.method, handlers::smart_configuration),
            Action::SearchType if r.target == Target::Patient => {
                on(r.method, handlers::patients::search)
            }
            Action::Read if r.target == Target::Patient => on(r.method, handlers::patients::read),
            Action::Everything => on(r.method, handlers::patients::everything),
            Action::SearchType => on(r.method, handlers::clinical::search),
            Action::Read => on(r.method, handlers::clinical::read),
            Action::Vread => on(r.method, handlers::clinical::vread),
            Action::HistoryInstance => on(r.method, handlers::clinical::history),
            Action::Create => on(r.method, handlers::write::create),
            Action::Update => on(r.method, handlers::write::update),
            Action::Delete => on(r.method, handlers::write::delete),
            Action::GroupExport => on(r.method, handlers::bulk::kick_off),
            Action::ExportStatus => on(r.method, handlers::bulk::status),
            Action::ExportCancel => on(r.method, handlers::bulk::cancel),
            Action::ExportFile => on(r.method, handlers::bulk::file),
        };
        router = router.route(r.path, handler);
    }
    router
        .fallback(handlers::not_supported)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(every_response))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn method_not_allowed(method: http::Method) -> Error {
    Error::Invalid {
        message: format!("{method} is not served on this path; GET /metadata lists what is"),
        expression: None,
        status: StatusCode::METHOD_NOT_ALLOWED,
    }
}

/// Logs each request by its route template, and turns an error axum answered itself (plain text)
/// into an OperationOutcome with the same status.
async fn every_response(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(none)", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    let status = response.status();
    tracing::info!(
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = status.as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "fhir request"
    );
    let is_fhir = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with(FHIR_MEDIA_TYPE));
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than this gateway accepts ({MAX_BODY_BYTES} bytes)")
        }
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned(),
    };
    let headers = response.headers().clone();
    let mut converted = Error::Invalid {
        message,
        expression: None,
        status,
    }
    .into_response();
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(value) = headers.get(&name) {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted
}
