//! The proven swap, part one: the independent Python implementation of the record hosting
//! contract (tests/suppliers/records_py, written from the .proto files alone) passes the whole
//! records kit. Also proves the kit's tests can fail for the right reasons against a second,
//! independently written implementation.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use carerecord_conformance::{Module, Options, run};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python server as a child process, killed on drop.
struct Supplier {
    child: Child,
    endpoint: String,
}

impl Drop for Supplier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_python_records() -> Supplier {
    let root = repo_root();
    // Creates .venv with the pinned grpcio packages unless it is already there.
    let status = Command::new(root.join("scripts/supplier-venv.sh"))
        .status()
        .expect("run scripts/supplier-venv.sh");
    assert!(status.success(), "scripts/supplier-venv.sh failed");
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/suppliers/records_py/server.py"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python records server");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the server's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the Python server: {line:?}"))
        .to_owned();
    Supplier {
        child,
        endpoint: format!("http://{addr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_records_supplier_passes_the_records_kit() {
    let supplier = start_python_records();
    let options = Options {
        test_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    let report = run(Module::Records, &supplier.endpoint, options).await;
    let out = std::env::temp_dir().join("carerecord-conformance-records-py.md");
    let _ = std::fs::write(&out, report.to_markdown());
    println!("{}", report.summary());
    println!("markdown report: {}", out.display());
    assert!(
        report.passed(),
        "the Python records supplier does not conform:\n{}",
        report.to_markdown()
    );
    assert!(
        report.results.len() >= 90,
        "the records catalogue shrank to {} tests",
        report.results.len()
    );
}
