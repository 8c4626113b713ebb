//! gRPC serving shared by every service: health, reflection, timeouts, size limits, tracing and
//! graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server failed: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// A bound gRPC server, not yet serving: add services, then [`GrpcServer::serve`].
pub struct GrpcServer {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: RoutesBuilder,
    served: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    health: HealthReporter,
    // A plaintext listener serving only health, for probes that cannot speak TLS (Kubernetes' gRPC probes).
    health_only: Option<(TcpListener, RoutesBuilder)>,
    metrics: crate::metrics::RedMetricsLayer,
}

impl GrpcServer {
    /// Binds the listener now, so the real port (for `:0`) is known before serving.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServeError> {
        let addr = config.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        let health_only = match config.health_listen_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?;
                let mut health_routes = RoutesBuilder::default();
                health_routes.add_service(health_service.clone());
                Some((listener, health_routes))
            }
            None => None,
        };
        routes.add_service(health_service);
        Ok(GrpcServer {
            config: config.clone(),
            listener,
            local_addr,
            routes,
            served: Vec::new(),
            descriptor_sets: vec![tonic_health::pb::FILE_DESCRIPTOR_SET],
            health,
            health_only,
            metrics: crate::metrics::RedMetricsLayer::new(&opentelemetry::global::meter(
                "carerecord",
            )),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds an API service; health reports it SERVING once [`GrpcServer::serve`] starts.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.served.push(S::NAME);
        self
    }

    /// The settings and listener, for serving something other than gRPC on them (plain HTTP).
    pub(crate) fn into_listener(self) -> (ServerConfig, TcpListener, SocketAddr) {
        (self.config, self.listener, self.local_addr)
    }

    /// Records RED metrics with `meter` instead of the global meter provider's.
    pub fn with_meter(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.metrics = crate::metrics::RedMetricsLayer::new(meter);
        self
    }

    /// Registers an encoded `FileDescriptorSet` for server reflection.
    pub fn with_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Serves until `shutdown` is cancelled, then reports NOT_SERVING, stops accepting, and lets
    /// in-flight calls finish for up to the configured grace period.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let GrpcServer {
            config,
            listener,
            local_addr,
            mut routes,
            served,
            descriptor_sets,
            health,
            health_only,
            metrics,
        } = self;

        let mut reflection_v1 = tonic_reflection::server::Builder::configure();
        let mut reflection_v1alpha = tonic_reflection::server::Builder::configure();
        for set in &descriptor_sets {
            reflection_v1 = reflection_v1.register_encoded_file_descriptor_set(set);
            reflection_v1alpha = reflection_v1alpha.register_encoded_file_descriptor_set(set);
        }
        routes.add_service(reflection_v1.build_v1()?);
        // Older grpcurl and Postman releases only speak v1alpha.
        routes.add_service(reflection_v1alpha.build_v1alpha()?);

        for name in &served {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }

        let stop_accepting = CancellationToken::new();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(tls.tonic_config())?;
            tracing::info!(mutual = tls.requires_client_certificates(), "serving TLS");
        }
        let server = builder
            .timeout(config.request_timeout)
            .initial_stream_window_size(crate::transport::STREAM_WINDOW)
            .initial_connection_window_size(crate::transport::CONNECTION_WINDOW)
            .trace_fn(crate::telemetry::server_span)
            .layer(metrics)
            .layer(crate::status_policy::StatusPolicyLayer)
            .add_routes(routes.routes())
            // Without TCP_NODELAY, small responses wait ~40 ms on delayed ACKs (Nagle).
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop_accepting.clone().cancelled_owned(),
            );
        tracing::info!(addr = %local_addr, services = ?served, "serving");
        if let Some((listener, health_routes)) = health_only {
            let addr = listener.local_addr().ok();
            let stop = stop_accepting.clone();
            tracing::info!(addr = ?addr, "serving plaintext health for probes");
            tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .add_routes(health_routes.routes())
                    .serve_with_incoming_shutdown(
                        TcpListenerStream::new(listener),
                        stop.cancelled_owned(),
                    )
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "health listener failed");
                }
            });
        }
        tokio::pin!(server);

        tokio::select! {
            result = &mut server => return Ok(result?),
            () = shutdown.cancelled() => {}
        }
        tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight calls");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &served {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        stop_accepting.cancel();
        match tokio::time::timeout(config.shutdown_grace, server).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!("drain grace period ran out; closing remaining calls"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
