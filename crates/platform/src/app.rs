//! What a service binary is: configuration in, a bound server out, served until shutdown.
//!
//! Each service crate implements [`Service`] on its application type; its `main.rs` is one call to
//! [`main`]. The CLI's `carerecord up` starts several services in one process the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::db::{Database, DbError, Migrations};
use crate::env::{ConfigError, Env};
use crate::server::{GrpcServer, ServeError};
use crate::telemetry::TelemetryError;

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Serve(#[from] ServeError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    #[error("{0}")]
    Other(String),
}

/// A carerecord service: built from its configuration, then served until shutdown.
pub trait Service: Sized + Send + 'static {
    /// The short name: `identity`, `records`, `consent` or `access`.
    const NAME: &'static str;
    type Config: ServiceConfiguration;

    /// The service's migrations, one set per dialect. `carerecord-<service> migrate` applies them and
    /// exits, needing only `DATABASE_URL` (for an init container or a hook that runs before a new
    /// version serves).
    fn migrations() -> &'static Migrations;
    /// Builds the API on `startup` (whose listener is already bound) and hands it to
    /// [`Startup::serve`].
    fn build(
        config: Self::Config,
        startup: Startup,
    ) -> impl Future<Output = Result<Running, StartError>> + Send;
}

/// A service's configuration: read from the environment, holding the settings every service
/// shares.
pub trait ServiceConfiguration: Send + Sized + 'static {
    fn from_env(env: &Env) -> Result<Self, ConfigError>;
    /// The server, database and telemetry settings.
    fn shared(&self) -> &ServiceConfig;
}

/// What a service builds itself with: its bound listener, its database, and a token that ends its
/// long-lived streams and background tasks when shutdown begins.
pub struct Startup {
    shared: ServiceConfig,
    migrations: &'static Migrations,
    server: GrpcServer,
    background: CancellationToken,
}

impl Startup {
    /// Connects the database and applies the migrations; a service calls it once, when whatever
    /// must be checked before touching the database has been.
    pub async fn database(&self) -> Result<Database, StartError> {
        Ok(Database::connect(&self.shared.database, self.migrations).await?)
    }

    /// The largest message the API may decode or encode (`CARERECORD_MAX_MESSAGE_BYTES`).
    pub fn max_message_bytes(&self) -> usize {
        self.shared.server.max_message_bytes
    }

    /// Cancelled as soon as shutdown begins: streams that never end on their own (change feeds,
    /// exports) and background tasks stop on it, so in-flight calls can drain.
    pub fn background(&self) -> CancellationToken {
        self.background.clone()
    }

    /// Serves `api` (with the contracts' descriptors for reflection) once [`Running::run`] is called.
    pub fn serve<S>(self, api: S) -> Running
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Running {
            server: Server::Grpc(
                self.server
                    .with_descriptor_set(carerecord_contracts::FILE_DESCRIPTOR_SET)
                    .add_service(api),
            ),
            background: self.background.drop_guard(),
        }
    }

    /// Serves `router` as plain HTTP (a REST service such as the FHIR gateway) once
    /// [`Running::run`] is called.
    pub fn serve_http(self, router: axum::Router) -> Running {
        Running {
            server: Server::Http(
                crate::http_server::HttpServer::from_bound(self.server),
                router,
            ),
            background: self.background.drop_guard(),
        }
    }
}

enum Server {
    Grpc(GrpcServer),
    Http(crate::http_server::HttpServer, axum::Router),
}

/// A built service, bound to its port, ready to serve.
pub struct Running {
    server: Server,
    // Ends the service's streams and background tasks when shutdown begins, or when this is dropped
    // without serving.
    background: tokio_util::sync::DropGuard,
}

impl Running {
    /// The address actually bound (the real port when configured with `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.server {
            Server::Grpc(server) => server.local_addr(),
            Server::Http(server, _) => server.local_addr(),
        }
    }

    /// Serves until `shutdown` is cancelled, then ends the streams and drains in-flight calls.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let background = self.background.disarm();
        let stop_background = background.clone();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = trigger.cancelled() => stop_background.cancel(),
                () = stop_background.cancelled() => {}
            }
        });
        let result = match self.server {
            Server::Grpc(server) => server.serve(shutdown).await,
            Server::Http(server, router) => server.serve(router, shutdown).await,
        };
        background.cancel();
        Ok(result?)
    }
}

/// Binds `S`'s listener and builds it from `config`: what `main`, `carerecord up` and the tests
/// all start a service with.
pub async fn start<S: Service>(config: S::Config) -> Result<Running, StartError> {
    let shared = config.shared().clone();
    let server = GrpcServer::bind(&shared.server).await?;
    let startup = Startup {
        shared,
        migrations: S::migrations(),
        server,
        background: CancellationToken::new(),
    };
    S::build(config, startup).await
}

/// [`start`] with the configuration read from `env`.
pub async fn start_from_env<S: Service>(env: &Env) -> Result<Running, StartError> {
    start::<S>(S::Config::from_env(env)?).await
}

/// What the binary was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Migrate,
}

fn mode(args: &[String]) -> Result<Mode, String> {
    match args {
        [] => Ok(Mode::Serve),
        [arg] if arg == "serve" => Ok(Mode::Serve),
        [arg] if arg == "migrate" => Ok(Mode::Migrate),
        _ => Err(format!("unexpected arguments {args:?}")),
    }
}

/// The whole of a service binary's `main`: configuration, telemetry, then either serve until SIGTERM
/// or Ctrl-C (no argument, or `serve`), or run the migrations and exit (`migrate`).
pub fn main<S: Service>() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match mode(&args) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!(
                "carerecord-{}: {e}\nusage: carerecord-{} [serve|migrate]  (configuration comes from the environment; see the README)",
                S::NAME,
                S::NAME
            );
            return ExitCode::from(2);
        }
    };
    let env = Env::from_process();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!(
                "carerecord-{}: cannot start the async runtime: {e}",
                S::NAME
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match mode {
        Mode::Serve => runtime.block_on(serve::<S>(&env)),
        Mode::Migrate => runtime.block_on(migrate::<S>(&env)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Telemetry may not be up (configuration errors come first), so say it on stderr too.
            tracing::error!(service = S::NAME, error = %e, "service failed");
            eprintln!("carerecord-{}: {e}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

async fn serve<S: Service>(env: &Env) -> Result<(), StartError> {
    let config = S::Config::from_env(env)?;
    let telemetry = crate::telemetry::init(&config.shared().telemetry)?;
    let result = async {
        let service = start::<S>(config).await?;
        tracing::info!(service = S::NAME, addr = %service.local_addr(), "started");
        service.run(crate::server::shutdown_on_signal()).await
    }
    .await;
    telemetry.shutdown();
    result
}

/// Applies the migrations with nothing but the database and log settings.
async fn migrate<S: Service>(env: &Env) -> Result<(), StartError> {
    let database = crate::db::DatabaseConfig::from_env(env, S::NAME)?;
    let telemetry =
        crate::telemetry::init(&crate::telemetry::TelemetryConfig::from_env(env, S::NAME)?)?;
    let result = crate::db::Database::connect(&database, S::migrations())
        .await
        .map(drop);
    if result.is_ok() {
        tracing::info!(service = S::NAME, "migrations applied");
    }
    telemetry.shutdown();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_choose_the_mode() {
        assert_eq!(mode(&[]), Ok(Mode::Serve));
        assert_eq!(mode(&["serve".into()]), Ok(Mode::Serve));
        assert_eq!(mode(&["migrate".into()]), Ok(Mode::Migrate));
        assert!(mode(&["--port".into(), "80".into()]).is_err());
    }
}
