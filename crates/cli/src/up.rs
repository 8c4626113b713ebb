//! `carerecord up`: the whole platform in one process, each service on its own port, SQLite under
//! one data directory. Services still talk to each other over gRPC, exactly as when deployed apart.

use std::path::PathBuf;

use carerecord_platform::app::{Running, Service};
use carerecord_platform::env::Env;
use tokio_util::sync::CancellationToken;

use crate::connect::connect;
use crate::demo::DemoPatient;

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
    /// Do not load the synthetic demo population on first start.
    #[arg(long)]
    no_demo: bool,
}

/// Written to the data directory once the demo population is loaded, so a second run reuses it.
const DEMO_MARKER: &str = "demo-population.json";
const DEMO_PATIENTS: usize = 24;

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
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("--data-dir {data_dir}: {e}"))?;
    let projects = demo_projects_file(&args.data_dir)?;
    let mut access_env = env_for("access", 0);
    for (offset, service) in [(1, "IDENTITY"), (2, "RECORDS"), (3, "CONSENT")] {
        access_env.set_default(
            &format!("CARERECORD_{service}_ENDPOINT"),
            &format!("http://{}:{}", args.host, args.base_port + offset),
        );
    }
    // Local development only: the CLI mints tokens with the well-known development key.
    access_env.set_default("CARERECORD_DEV_TOKENS", "true");
    access_env.set_default("CARERECORD_PROJECTS_FILE", &projects.display().to_string());
    let access = start::<carerecord_access::Application>(&access_env).await?;
    let identity = start::<carerecord_identity::Application>(&env_for("identity", 1)).await?;
    let records = start::<carerecord_records::Application>(&env_for("records", 2)).await?;
    let consent = start::<carerecord_consent::Application>(&env_for("consent", 3)).await?;

    let addrs = [
        access.1.local_addr(),
        identity.1.local_addr(),
        records.1.local_addr(),
        consent.1.local_addr(),
    ];
    let tasks = [
        tokio::spawn(serve(access, shutdown.clone())),
        tokio::spawn(serve(identity, shutdown.clone())),
        tokio::spawn(serve(records, shutdown.clone())),
        tokio::spawn(serve(consent, shutdown.clone())),
    ];
    let [access_addr, identity_addr, records_addr, consent_addr] =
        addrs.map(|a| format!("http://{a}"));
    let demo = if args.no_demo {
        Vec::new()
    } else {
        demo_population(&args.data_dir, &identity_addr, &records_addr, &consent_addr).await
    };

    println!("carerecord is running (data in {data_dir}/). Endpoints:");
    println!("  data access  {access_addr}");
    println!("  identity     {identity_addr}");
    println!("  records      {records_addr}");
    println!("  consent      {consent_addr}");
    println!("Try:");
    match demo.first() {
        Some(patient) => {
            // The first demo patient has a mental-health record and withholds it: the read shows both.
            println!(
                "  carerecord read --nhs-number {} --purpose TREAT",
                patient.nhs_number
            );
            println!(
                "  carerecord disclosures --nhs-number {}",
                patient.nhs_number
            );
            let cohort: Vec<String> = demo
                .iter()
                .take(10)
                .map(|p| format!("--patient {}", p.patient_id))
                .collect();
            println!(
                "  carerecord extract --project demo-research {} --out extract.ndjson",
                cohort.join(" ")
            );
        }
        None => {
            println!("  carerecord health --endpoint {identity_addr}");
            println!("  grpcurl -plaintext {} list", addrs[1]);
            println!(
                "  carerecord patient register --family Smith --given Ada --birth-date 1970-01-01 --gender female"
            );
        }
    }
    println!("Stop with Ctrl-C.");
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

/// A research project for trying extracts locally, with a pseudonymisation key made on first start.
fn demo_projects_file(data_dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let path = data_dir.join("demo-projects.json");
    if !path.exists() {
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let projects = serde_json::json!({"projects": [{
            "project_id": "demo-research",
            "key": key,
            "purposes": ["HRESCH", "HOPERAT"],
            "organisations": [],
            "clients": []
        }]});
        std::fs::write(&path, projects.to_string())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// The demo population: loaded through the APIs on first start, read back from the marker after.
async fn demo_population(
    data_dir: &std::path::Path,
    identity: &str,
    records: &str,
    consent: &str,
) -> Vec<DemoPatient> {
    let marker = data_dir.join(DEMO_MARKER);
    if let Ok(saved) = std::fs::read(&marker) {
        return serde_json::from_slice::<Vec<(String, String, String)>>(&saved)
            .unwrap_or_default()
            .into_iter()
            .map(|(patient_id, nhs_number, name)| DemoPatient {
                patient_id,
                nhs_number,
                name,
            })
            .collect();
    }
    let channels = (
        connect("identity", identity),
        connect("records", records),
        connect("consent", consent),
    );
    let (Ok(identity), Ok(records), Ok(consent)) = channels else {
        return Vec::new();
    };
    println!(
        "loading the demo population ({DEMO_PATIENTS} patients with records, directives and opt-outs)…"
    );
    match crate::demo::load(identity, records, consent, DEMO_PATIENTS).await {
        Ok(patients) => {
            let saved: Vec<(&str, &str, &str)> = patients
                .iter()
                .map(|p| {
                    (
                        p.patient_id.as_str(),
                        p.nhs_number.as_str(),
                        p.name.as_str(),
                    )
                })
                .collect();
            if let Err(e) = std::fs::write(
                &marker,
                serde_json::to_vec_pretty(&saved).unwrap_or_default(),
            ) {
                eprintln!("warning: cannot write {}: {e}", marker.display());
            }
            patients
        }
        Err(status) => {
            eprintln!(
                "warning: the demo population was not loaded: {}",
                crate::output::describe_status(&status)
            );
            Vec::new()
        }
    }
}

async fn start<S: Service>(env: &Env) -> Result<(&'static str, Running), String> {
    match carerecord_platform::app::start_from_env::<S>(env).await {
        Ok(running) => Ok((S::NAME, running)),
        Err(e) => Err(format!("{} failed to start: {e}", S::NAME)),
    }
}

async fn serve(
    (name, running): (&'static str, Running),
    shutdown: CancellationToken,
) -> Result<(), String> {
    running
        .run(shutdown)
        .await
        .map_err(|e| format!("{name}: {e}"))
}
