//! `carerecord conformance`: certify an implementation of a module's contract, ours or a supplier's.

use std::path::PathBuf;

use carerecord_conformance::{Module, Options, Outcome, run as run_kit};

#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// The contract to test: identity, records, consent or access.
    #[arg(long)]
    module: Module,
    /// The implementation's gRPC endpoint.
    #[arg(long)]
    endpoint: String,
    /// Bearer token for every call (access needs one covering every read, e.g. `user/*.rs`).
    #[arg(long, env = "CARERECORD_TOKEN")]
    token: Option<String>,
    /// Access: a valid token without record-read scopes, for the PERMISSION_DENIED tests.
    #[arg(long)]
    unscoped_token: Option<String>,
    /// Access: a token of a role that may list and verify the audit log (privacy officer, R0001).
    #[arg(long)]
    auditor_token: Option<String>,
    /// Access: a token of one organisation with `c` and `u` on Observation and no `c` on
    /// Condition (e.g. `system/Observation.cu`), for the contribution and import tests.
    #[arg(long)]
    contributor_token: Option<String>,
    /// Access: a token of another organisation with `u` on Observation, for the RECORD_NOT_OWNED test.
    #[arg(long)]
    other_org_token: Option<String>,
    /// Access: the deployment's identity endpoint, where the kit registers its test patient.
    #[arg(long)]
    identity_endpoint: Option<String>,
    /// Access: the deployment's record hosting endpoint.
    #[arg(long)]
    records_endpoint: Option<String>,
    /// Access: the deployment's consent endpoint.
    #[arg(long)]
    consent_endpoint: Option<String>,
    /// Access: a project approved for research extracts.
    #[arg(long)]
    project: Option<String>,
    /// PEM CA certificate to trust for https:// endpoints.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Run only tests whose id starts with this prefix (repeat).
    #[arg(long)]
    only: Vec<String>,
    /// Write a report: `*.xml` as JUnit for CI, anything else as markdown for people.
    #[arg(long)]
    report: Option<PathBuf>,
}

pub async fn run(args: ConformanceArgs) -> Result<(), String> {
    let ca_certificate_pem = match &args.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?)
        }
        None => None,
    };
    let options = Options {
        token: args.token,
        unscoped_token: args.unscoped_token,
        auditor_token: args.auditor_token,
        contributor_token: args.contributor_token,
        other_org_token: args.other_org_token,
        identity_endpoint: args.identity_endpoint,
        records_endpoint: args.records_endpoint,
        consent_endpoint: args.consent_endpoint,
        project_id: args.project,
        ca_certificate_pem,
        only: args.only,
        ..Options::default()
    };
    let report = run_kit(args.module, &args.endpoint, options).await;
    for result in &report.results {
        match &result.outcome {
            Outcome::Failed(message) => {
                println!("FAIL {} {}\n     {message}", result.id, result.title)
            }
            Outcome::Skipped(message) => println!("skip {} {message}", result.id),
            _ => {}
        }
    }
    println!("{}", report.summary());
    if let Some(path) = &args.report {
        let is_junit = path.extension().is_some_and(|e| e == "xml");
        let text = if is_junit {
            report.to_junit_xml()
        } else {
            report.to_markdown()
        };
        std::fs::write(path, text).map_err(|e| format!("--report {}: {e}", path.display()))?;
    }
    if report.passed() {
        Ok(())
    } else {
        Err("the implementation does not conform".into())
    }
}
