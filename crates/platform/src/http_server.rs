//! Plain HTTP serving for services that speak REST rather than gRPC (the FHIR gateway): the same
//! listener, timeouts, trace context and graceful shutdown as [`crate::server::GrpcServer`].
//!
//! TLS is not served here: an HTTP service sits behind the deployment's ingress, which terminates
//! TLS (a configured `CARERECORD_TLS_*` certificate is refused at start rather than ignored).

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::server::{GrpcServer, ServeError};

/// A bound HTTP server, not yet serving.
pub struct HttpServer {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl HttpServer {
    /// Plain HTTP on the listener a [`GrpcServer`] bound (with its settings).
    pub fn from_bound(server: GrpcServer) -> Self {
        let (config, listener, local_addr) = server.into_listener();
        HttpServer {
            config,
            listener,
            local_addr,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `router` until `shutdown` is cancelled, then lets in-flight requests finish for up to
    /// the configured grace period. Every request runs in a span that continues the caller's W3C
    /// trace, and is cut off after the configured request timeout.
    pub async fn serve(
        self,
        router: Router,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let HttpServer {
            config,
            listener,
            local_addr,
        } = self;
        if config.tls.is_some() {
            return Err(ServeError::Unsupported(
                "CARERECORD_TLS_CERT_FILE is set, but HTTP services do not serve TLS: terminate TLS at the ingress".into(),
            ));
        }
        let timeout = config.request_timeout;
        let router = router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let span = request_span(&request);
                async move {
                    match tokio::time::timeout(timeout, next.run(request)).await {
                        Ok(response) => response,
                        Err(_) => http::Response::builder()
                            .status(http::StatusCode::GATEWAY_TIMEOUT)
                            .body(axum::body::Body::from("request timed out"))
                            .unwrap_or_default(),
                    }
                }
                .instrument(span)
            },
        ));
        tracing::info!(addr = %local_addr, "serving HTTP");
        let stop = CancellationToken::new();
        // Without TCP_NODELAY, small responses wait on delayed ACKs (Nagle).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let server =
            axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        let server = std::future::IntoFuture::into_future(server);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => return result.map_err(ServeError::Io),
            () = shutdown.cancelled() => {}
        }
        tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight requests");
        stop.cancel();
        match tokio::time::timeout(config.shutdown_grace, server).await {
            Ok(result) => result.map_err(ServeError::Io)?,
            Err(_) => tracing::warn!("drain grace period ran out; closing remaining requests"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The server span of one HTTP request: method and route template, never the query string (it
/// may hold an NHS number), a child of the caller's trace when it sent a `traceparent`.
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "http.server",
        otel.kind = "server",
        http.request.method = %request.method(),
        otel.name = %request.method(),
    );
    let _ = span.set_parent(crate::telemetry::extract_context(request.headers()));
    span
}
