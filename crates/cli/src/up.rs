//! `carerecord up`: the whole platform in one process, each service on its own port, SQLite under
//! one data directory. Services still talk to each other over gRPC, exactly as when deployed apart.
//! The FHIR gateway serves in front of data access on its own port, and a development token
//! endpoint (OAuth 2.0 client credentials, minting development tokens) stands in for an
//! authorization server, so SMART clients can discover and get tokens.

use std::path::PathBuf;

use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_platform::app::{Running, Service, ServiceConfiguration};
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
    /// The FHIR gateway's port.
    #[arg(long, default_value_t = 8080)]
    fhir_port: u16,
    /// The development token endpoint's port (SMART discovery names it).
    #[arg(long, default_value_t = 8081)]
    token_port: u16,
    /// The web console's port.
    #[arg(long, default_value_t = 8082)]
    console_port: u16,
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
    let access_url = format!("http://{}", access.1.local_addr());
    let console_access_url = access_url.clone();
    let issuer = format!("http://{}:{}", args.host, args.token_port);
    let mut fhir_env: Vec<(String, String)> = std::env::vars().collect();
    fhir_env.extend([
        (
            "CARERECORD_LISTEN_ADDR".to_owned(),
            format!("{}:{}", args.host, args.fhir_port),
        ),
        ("CARERECORD_ACCESS_ENDPOINT".to_owned(), access_url),
    ]);
    let mut fhir_env = Env::from_pairs(fhir_env);
    fhir_env.set_default("CARERECORD_FHIR_SMART_ISSUER", &issuer);
    fhir_env.set_default(
        "CARERECORD_FHIR_SMART_TOKEN_URL",
        &format!("{issuer}/token"),
    );
    fhir_env.set_default(
        "CARERECORD_FHIR_EXPORT_DIR",
        &format!("{data_dir}/fhir-exports"),
    );
    let fhir = start::<carerecord_fhir::Application>(&fhir_env).await?;
    let token_listener = tokio::net::TcpListener::bind((args.host.as_str(), args.token_port))
        .await
        .map_err(|e| {
            format!(
                "the development token endpoint on port {}: {e}",
                args.token_port
            )
        })?;

    let addrs = [
        access.1.local_addr(),
        identity.1.local_addr(),
        records.1.local_addr(),
        consent.1.local_addr(),
    ];
    let fhir_addr = format!("http://{}", fhir.1.local_addr());
    tokio::spawn(dev_tokens::serve(token_listener, shutdown.clone()));
    let mut tasks = vec![
        tokio::spawn(serve(access, shutdown.clone())),
        tokio::spawn(serve(identity, shutdown.clone())),
        tokio::spawn(serve(records, shutdown.clone())),
        tokio::spawn(serve(consent, shutdown.clone())),
        tokio::spawn(serve(fhir, shutdown.clone())),
    ];
    let [access_addr, identity_addr, records_addr, consent_addr] =
        addrs.map(|a| format!("http://{a}"));
    let demo = if args.no_demo {
        Vec::new()
    } else {
        demo_population(&args.data_dir, &identity_addr, &records_addr, &consent_addr).await
    };
    // The console, once the demo patients it offers as users are known.
    let mut console_env: Vec<(String, String)> = std::env::vars().collect();
    console_env.extend([
        (
            "CARERECORD_LISTEN_ADDR".to_owned(),
            format!("{}:{}", args.host, args.console_port),
        ),
        ("CARERECORD_ACCESS_ENDPOINT".to_owned(), console_access_url),
    ]);
    let mut console_config = carerecord_console::Config::from_env(&Env::from_pairs(console_env))
        .map_err(|e| format!("console failed to start: {e}"))?;
    console_config.console.dev_sign_in = Some(crate::console::dev_sign_in(
        crate::console::demo_users(&demo),
    ));
    let console =
        carerecord_platform::app::start::<carerecord_console::Application>(console_config)
            .await
            .map_err(|e| format!("console failed to start: {e}"))?;
    let console_addr = format!("http://{}", console.local_addr());
    tasks.push(tokio::spawn(serve(("console", console), shutdown.clone())));

    println!("carerecord is running (data in {data_dir}/). Endpoints:");
    println!("  data access  {access_addr}");
    println!("  identity     {identity_addr}");
    println!("  records      {records_addr}");
    println!("  consent      {consent_addr}");
    println!("  FHIR R4      {fhir_addr}  (tokens: {issuer}/token, development only)");
    println!(
        "  web console  {console_addr}  (open it in a browser; sign in as a demo user, development only)"
    );
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
    print_fhir_examples(&fhir_addr, &issuer, demo.first());
    if let Some(examples) = crate::flows::write(&args.data_dir, &demo) {
        crate::flows::print(&examples, &demo, &args.data_dir);
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

/// curl examples against the gateway, with a token from the development token endpoint.
fn print_fhir_examples(fhir: &str, issuer: &str, patient: Option<&DemoPatient>) {
    println!("FHIR (a development token, then the gateway):");
    println!(
        "  TOKEN=$(curl -s -d grant_type=client_credentials -d 'scope=user/*.cruds' {issuer}/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!("  curl -s {fhir}/metadata");
    println!("  curl -s {fhir}/.well-known/smart-configuration");
    if let Some(patient) = patient {
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" '{fhir}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}'",
            patient.nhs_number
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" '{fhir}/Observation?patient={}&_count=5'",
            patient.patient_id
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" '{fhir}/Patient/{}/$everything'",
            patient.patient_id
        );
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
        let patients: Vec<DemoPatient> =
            serde_json::from_slice::<Vec<(String, String, String)>>(&saved)
                .unwrap_or_default()
                .into_iter()
                .map(|(patient_id, nhs_number, name)| DemoPatient {
                    patient_id,
                    nhs_number,
                    name,
                })
                .collect();
        // An opt-out check expires: a reused demo is checked again, as a deployment would be.
        let checked = match connect("consent", consent) {
            Ok(channel) => {
                let mut client = ConsentServiceClient::new(channel);
                crate::demo::check_opt_outs(&mut client, &patients)
                    .await
                    .map_err(|s| s.message().to_owned())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            eprintln!("warning: the demo's national data opt-out check was not renewed: {e}");
        }
        return patients;
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

/// A development OAuth 2.0 token endpoint (RFC 6749 client credentials grant) for `make run`: it
/// mints development tokens, which data access accepts only with `CARERECORD_DEV_TOKENS=true`, for
/// a clinician at the CLI's default organisation. Never part of a deployment.
mod dev_tokens {
    use carerecord_access::dev_token::{DevToken, mint};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// The largest request read: a token request is a few hundred bytes.
    const MAX_REQUEST: usize = 16 << 10;
    const TTL_SECONDS: u64 = 3600;

    pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream));
                }
                Err(e) => tracing::warn!(error = %e, "development token endpoint: accept failed"),
            }
        }
    }

    async fn answer(mut stream: TcpStream) {
        let (status, body) = match read_form(&mut stream).await {
            Ok(form) => token_response(&form),
            Err(error) => (
                400,
                json!({"error": "invalid_request", "error_description": error}),
            ),
        };
        let body = body.to_string();
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }

    /// The form parameters of a `POST /token`.
    async fn read_form(stream: &mut TcpStream) -> Result<Vec<(String, String)>, String> {
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if request.len() > MAX_REQUEST {
                return Err("request too large".into());
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the request ended early".into());
            }
            request.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default();
        if !request_line.starts_with("POST /token ") {
            return Err("POST /token with a form body is the only request served".into());
        }
        let length: usize = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0);
        if length > MAX_REQUEST {
            return Err("request too large".into());
        }
        while request.len() < head_end + length {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the body ended early".into());
            }
            request.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&request[head_end..head_end + length]).into_owned();
        body.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                match (
                    carerecord_fhir::query::decode(name),
                    carerecord_fhir::query::decode(value),
                ) {
                    (Some(name), Some(value)) => Ok((name, value)),
                    _ => Err("bad form encoding".to_owned()),
                }
            })
            .collect()
    }

    fn token_response(form: &[(String, String)]) -> (u16, serde_json::Value) {
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some("client_credentials") {
            return (
                400,
                json!({"error": "unsupported_grant_type", "error_description": "only client_credentials"}),
            );
        }
        let scope = field("scope").unwrap_or("user/*.cruds");
        let client_id = field("client_id").unwrap_or("dev-smart-client");
        let minted = mint(&DevToken {
            subject: format!("dev-{client_id}"),
            organisation_ods_code: "X26".into(),
            role_code: "R8000".into(),
            display_name: "Development SMART client".into(),
            client_id: client_id.into(),
            scope: scope.into(),
            audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
            ttl_seconds: TTL_SECONDS,
            ..Default::default()
        });
        match minted {
            Ok(token) => (
                200,
                json!({"access_token": token, "token_type": "Bearer", "expires_in": TTL_SECONDS, "scope": scope}),
            ),
            Err(e) => (
                400,
                json!({"error": "server_error", "error_description": e}),
            ),
        }
    }
}
