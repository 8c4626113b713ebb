//! `carerecord`: run the platform on a laptop and talk to its services.

mod access;
mod conformance;
mod connect;
mod consent;
mod console;
mod demo;
mod flows;
mod front_door;
mod output;
mod patient;
mod record;
mod up;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "carerecord",
    version,
    about = "Run and call the carerecord care-record platform"
)]
struct Cli {
    /// Print results as JSON (canonical protobuf JSON) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    endpoints: connect::Endpoints,
    #[command(flatten)]
    operator: connect::Operator,
    /// Bearer token for data access; without one, a development token is minted for --as-user.
    #[arg(long, global = true, env = "CARERECORD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start all four services on this machine (SQLite under --data-dir) until Ctrl-C.
    Up(up::UpArgs),
    /// Register, resolve, search, match and merge patients (identity).
    #[command(subcommand)]
    Patient(patient::PatientCommand),
    /// Add, read, list, import and export records (record hosting).
    #[command(subcommand)]
    Record(record::RecordCommand),
    /// Directives, the national data opt-out and decisions (consent).
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Through data access: read a record, break glass, disclosures, extracts.
    #[command(flatten)]
    Access(access::AccessCommand),
    /// Through data access: submit, amend, retract and import records, and follow patients.
    #[command(flatten)]
    FrontDoor(front_door::FrontDoorCommand),
    /// Verify the audit log offline.
    #[command(subcommand)]
    Audit(access::AuditCommand),
    /// Development tokens.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Certify an implementation of a module's contract (black-box gRPC tests, markdown or JUnit report).
    Conformance(conformance::ConformanceArgs),
    /// Check that a service answers grpc.health.v1 SERVING.
    Health {
        /// The service's gRPC endpoint; defaults to data access (--access).
        #[arg(long)]
        endpoint: Option<String>,
        /// A fully qualified service name; empty checks the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = output::Output { json: cli.json };
    let (endpoints, operator, token) = (cli.endpoints, cli.operator, cli.token);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Patient(command) => patient::run(command, &endpoints, &operator, out).await,
            Command::Record(command) => record::run(command, &endpoints, &operator, out).await,
            Command::Consent(command) => consent::run(command, &endpoints, &operator, out).await,
            Command::Conformance(args) => conformance::run(args).await,
            Command::Access(command) => {
                access::run(command, token, &endpoints, &operator, out).await
            }
            Command::FrontDoor(command) => {
                front_door::run(command, token, &endpoints, &operator, out).await
            }
            Command::Audit(command) => access::audit(command, token, &endpoints, &operator).await,
            Command::Token(command) => access::token(command, &operator),
            Command::Up(args) => up::run(args).await,
            Command::Health { endpoint, service } => {
                health(endpoint.as_deref().unwrap_or(&endpoints.access), &service).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn health(endpoint: &str, service: &str) -> Result<(), String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| format!("--endpoint {endpoint:?} is not a valid URL: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| {
            format!(
                "health check failed: {}: {}",
                status.code(),
                status.message()
            )
        })?;
    let status =
        ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
    let label = if service.is_empty() {
        endpoint
    } else {
        service
    };
    println!("{label}: {}", status.as_str_name());
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!("{label} is not serving"))
    }
}
