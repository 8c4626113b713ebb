//! End-to-end tests of the whole platform: the four real services, in-process, on real listeners,
//! on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

mod audit;
mod coherence;
mod conformance;
mod console;
mod contributions;
mod defects;
mod extracts;
mod fhir;
mod fhir_bulk;
mod fhir_errors;
mod fhir_peers;
mod fhir_writes;
mod follow;
mod imports;
mod jwks;
mod observability;
mod reads;
mod replicas;
mod restart;
mod restricted;
mod self_service;
mod swap;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository's root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program` with `args` and `vars` from the repository's root; fails the test with its
/// output when it fails or takes longer than `limit`. Returns what it wrote to standard output.
async fn run(program: &Path, args: &[&str], vars: &[(&str, String)], limit: Duration) -> String {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(repo_root())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    let shown = program.display();
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} {args:?} took over {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
