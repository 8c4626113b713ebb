//! What a service binary is: configuration in, a bound server out, served until shutdown.
//!
//! Each service crate implements [`Service`] on its application type; its `main.rs` is one call to
//! [`main`]. The CLI's `carerecord up` starts several services in one process the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env};
use crate::db::DbError;
use crate::server::ServeError;
use crate::telemetry::{TelemetryConfig, TelemetryError};

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
    type Config: Send + 'static;

    fn config_from_env(env: &Env) -> Result<Self::Config, ConfigError>;
    fn telemetry_config(config: &Self::Config) -> &TelemetryConfig;
    /// The service's migrations, one set per dialect. `carerecord-<service> migrate` applies them and
    /// exits, needing only `DATABASE_URL` (for an init container or a hook that runs before a new
    /// version serves).
    fn migrations() -> &'static crate::db::Migrations;
    /// Connects and migrates the database and binds the listener, so the port is known before serving.
    fn build(config: Self::Config) -> impl Future<Output = Result<Self, StartError>> + Send;
    fn local_addr(&self) -> SocketAddr;
    /// Serves until `shutdown` is cancelled, then drains.
    fn run(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), StartError>> + Send;
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
    let config = S::config_from_env(env)?;
    let telemetry = crate::telemetry::init(S::telemetry_config(&config))?;
    let result = async {
        let service = S::build(config).await?;
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
