//! Runs the kit from the command line until `carerecord conformance` wires it in:
//!
//! ```sh
//! cargo run -p carerecord-conformance --example run -- records http://127.0.0.1:50052 \
//!     [--token T] [--unscoped-token T] [--only REC-LIST] [--report out.md|out.xml]
//!     [--identity-endpoint URL] [--records-endpoint URL] [--consent-endpoint URL]
//!     [--project ID] [--ca-cert ca.pem]
//! ```
//!
//! Prints the summary and every failure; exits 1 unless the implementation conforms.

use std::process::ExitCode;

use carerecord_conformance::{Module, Options, Outcome, run};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(module), Some(endpoint)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: run <identity|records|consent|access> <endpoint> [--token T] [--unscoped-token T] [--only PREFIX]... [--report FILE.md|FILE.xml]"
        );
        return ExitCode::from(2);
    };
    let module: Module = match module.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut options = Options::default();
    let mut report_path = None;
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--token", Some(v)) => options.token = Some(v),
            ("--unscoped-token", Some(v)) => options.unscoped_token = Some(v),
            ("--only", Some(v)) => options.only.push(v),
            ("--identity-endpoint", Some(v)) => options.identity_endpoint = Some(v),
            ("--records-endpoint", Some(v)) => options.records_endpoint = Some(v),
            ("--consent-endpoint", Some(v)) => options.consent_endpoint = Some(v),
            ("--project", Some(v)) => options.project_id = Some(v),
            ("--ca-cert", Some(v)) => match std::fs::read(&v) {
                Ok(pem) => options.ca_certificate_pem = Some(pem),
                Err(e) => {
                    eprintln!("cannot read {v}: {e}");
                    return ExitCode::from(2);
                }
            },
            ("--report", Some(v)) => report_path = Some(v),
            (other, _) => {
                eprintln!("unknown or incomplete option {other}");
                return ExitCode::from(2);
            }
        }
    }
    let report = run(module, &endpoint, options).await;
    for r in &report.results {
        if let Outcome::Failed(m) = &r.outcome {
            println!("FAIL {} {}\n     {m}", r.id, r.title);
        }
    }
    for r in &report.results {
        if let Outcome::Skipped(m) = &r.outcome {
            println!("skip {} {m}", r.id);
        }
    }
    println!("{}", report.summary());
    if let Some(path) = report_path {
        let text = if path.ends_with(".xml") {
            report.to_junit_xml()
        } else {
            report.to_markdown()
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
