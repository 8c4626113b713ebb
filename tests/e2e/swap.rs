//! The proven swap: data access reads a patient's record from an independent Python implementation
//! of the record hosting contract (tests/suppliers/records_py), with our identity and consent.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use carerecord_conformance::{Module, Options, run};
use carerecord_e2e::{Overrides, Platform, authed, by_nhs, read_request, token};

struct PythonRecords(Child);

impl Drop for PythonRecords {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_python_records() -> (PythonRecords, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = Command::new(root.join("scripts/supplier-venv.sh"))
        .status()
        .expect("run scripts/supplier-venv.sh");
    assert!(venv.success(), "scripts/supplier-venv.sh failed");
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/suppliers/records_py/server.py"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python records server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (PythonRecords(child), format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_access_reads_a_record_hosted_by_another_suppliers_implementation() {
    let (_server, endpoint) = start_python_records();
    let conformance = run(
        Module::Records,
        &endpoint,
        Options {
            only: vec!["REC-CREATE".into()],
            ..Options::default()
        },
    )
    .await;
    assert!(conformance.passed(), "{}", conformance.to_markdown());

    for platform in Platform::each_backend(Overrides {
        records: Some(endpoint.clone()),
        ..Default::default()
    })
    .await
    {
        let (patient_id, nhs_number) = platform.register_patient("Katherine", "Johnson").await;
        let record_id = platform.add_record(&patient_id, &[]).await;
        let request = read_request(by_nhs(&nhs_number), "TREAT");
        let response = platform
            .access_client()
            .await
            .read_patient_record(authed(request, &token("R8000", "user/*.rs")))
            .await
            .unwrap_or_else(|s| {
                panic!(
                    "{:?}: read through the Python records failed: {s:?}",
                    platform.backend
                )
            })
            .into_inner();
        let returned: Vec<&str> = response
            .records
            .iter()
            .map(|r| r.record_id.as_str())
            .collect();
        assert_eq!(returned, [record_id.as_str()]);
    }
}
