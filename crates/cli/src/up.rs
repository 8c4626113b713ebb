//! `carerecord up`: the whole platform in one process, each service on its own port, SQLite under
//! one data directory. Services still talk to each other over gRPC, exactly as when deployed apart.

use std::path::PathBuf;

use carerecord_platform::app::{Service, StartError};
use carerecord_platform::config::Env;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the services keep their SQLite databases (created if missing; reused on the next run).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The host the services listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// First of four consecutive ports: data access, identity, records, consent.
    #[arg(long, default_value_t = 50050)]
    base_port: u16,
}

pub async fn run(args: UpArgs) -> Result<(), String> {
    let config =
        carerecord_platform::telemetry::TelemetryConfig::from_env(&Env::from_process(), "up")
            .map_err(|e| e.to_string())?;
    let telemetry = carerecord_platform::telemetry::init(&config).map_err(|e| e.to_string())?;
    let data_dir = args.data_dir.display().to_string();
    let env_for = |service: &str, offset: u16| {
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.push((
            "CARERECORD_LISTEN_ADDR".into(),
            format!("{}:{}", args.host, args.base_port + offset),
        ));
        vars.push((
            "DATABASE_URL".into(),
            format!("sqlite://{data_dir}/{service}.db"),
        ));
        Env::from_pairs(vars)
    };

    let shutdown = carerecord_platform::server::shutdown_on_signal();
    let access = start::<carerecord_access::Application>(&env_for("access", 0)).await?;
    let identity = start::<carerecord_identity::Application>(&env_for("identity", 1)).await?;
    let records = start::<carerecord_records::Application>(&env_for("records", 2)).await?;
    let consent = start::<carerecord_consent::Application>(&env_for("consent", 3)).await?;

    println!("carerecord is running (data in {data_dir}/). Endpoints:");
    println!("  data access  http://{}", access.local_addr());
    println!("  identity     http://{}", identity.local_addr());
    println!("  records      http://{}", records.local_addr());
    println!("  consent      http://{}", consent.local_addr());
    println!("Try:");
    println!(
        "  carerecord health --endpoint http://{} --service carerecord.access.v1.DataAccessService",
        access.local_addr()
    );
    println!("  grpcurl -plaintext {} list", identity.local_addr());
    println!("Stop with Ctrl-C.");

    let tasks = [
        tokio::spawn(serve(access, shutdown.clone())),
        tokio::spawn(serve(identity, shutdown.clone())),
        tokio::spawn(serve(records, shutdown.clone())),
        tokio::spawn(serve(consent, shutdown.clone())),
    ];
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failures.push(e.to_string());
                // One service failing takes the others down rather than leaving a partial platform.
                shutdown.cancel();
            }
            Err(e) => failures.push(format!("service task failed: {e}")),
        }
    }
    telemetry.shutdown();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

async fn start<S: Service>(env: &Env) -> Result<S, String> {
    let config = S::config_from_env(env).map_err(|e| format!("{}: {e}", S::NAME))?;
    S::build(config)
        .await
        .map_err(|e: StartError| format!("{} failed to start: {e}", S::NAME))
}

async fn serve<S: Service>(service: S, shutdown: CancellationToken) -> Result<(), String> {
    service
        .run(shutdown)
        .await
        .map_err(|e| format!("{}: {e}", S::NAME))
}
