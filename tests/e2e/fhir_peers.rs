//! The FHIR gateway against FHIR clients nobody on this project wrote, on both backends:
//! fhirpy (search with paging, read, create, update with etags) with every response, and every
//! resource of a Bulk Data export, parsed by fhir.resources' R4 models, and fhir-kit-client (capability statement, SMART discovery, search,
//! history, `$everything`, a Bulk Data export to completion). The scripts are in
//! `tests/fhir_peers/`; `scripts/fhir-peers-install.sh` installs the clients from their pins, and
//! the test fails (never skips) when it cannot.

use std::path::Path;
use std::time::Duration;

use carerecord_e2e::{Overrides, PROJECT, Platform, token};
use http::StatusCode;
use serde_json::json;

use crate::fhir::{clinician, create, observation};
use crate::{repo_root, run};

/// Two minutes for each peer's script.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_fhir_clients_work_with_the_gateway() {
    let root = repo_root();
    run(&root.join("scripts/fhir-peers-install.sh"), &[], &[], LIMIT).await;
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let clinician = clinician();
        let research = token("R8000", "system/*.rs");
        let fhir = platform.fhir().with_token(&clinician);

        // fhirpy's patient starts with no records; the script writes five and deletes one, then
        // exports. Their national data opt-out status is known (not opted out), so the export
        // holds their records.
        let (fhirpy_patient, fhirpy_nhs) = platform.register_patient("Python", "Peer").await;
        platform.record_not_opted_out(&fhirpy_patient).await;
        let output = run(
            &root.join(".venv/fhir-peers/bin/python"),
            &["tests/fhir_peers/fhirpy_peer.py"],
            &[
                ("FHIR_BASE", platform.fhir.clone()),
                ("FHIR_TOKEN", clinician.clone()),
                ("PATIENT_ID", fhirpy_patient.clone()),
                ("NHS_NUMBER", fhirpy_nhs),
                ("RESEARCH_TOKEN", research.clone()),
                ("PROJECT", PROJECT.to_owned()),
            ],
            LIMIT,
        )
        .await;
        println!("{backend:?}: {output}");

        // fhir-kit-client's patient has five Observations, one of them updated.
        let (kit_patient, _) = platform.register_patient("Node", "Peer").await;
        let mut ids = Vec::new();
        for day in 1..=5 {
            let made = create(
                &fhir,
                &observation(
                    &kit_patient,
                    "8867-4",
                    "vital-signs",
                    "final",
                    &format!("2025-04-0{day}"),
                ),
            )
            .await;
            ids.push(made);
        }
        let mut amended = ids[2].clone();
        amended["status"] = json!("amended");
        let updated = fhir
            .put_if_match(
                &format!("/Observation/{}", amended["id"].as_str().expect("id")),
                1,
                &amended,
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
        // The export holds fhirpy's four current Observations and these five.
        platform.record_not_opted_out(&kit_patient).await;
        let output = run(
            Path::new("node"),
            &["tests/fhir_peers/fhir_kit_peer.mjs"],
            &[
                ("FHIR_BASE", platform.fhir.clone()),
                ("FHIR_TOKEN", clinician.clone()),
                ("RESEARCH_TOKEN", research),
                ("PATIENT_ID", kit_patient),
                ("PROJECT", PROJECT.to_owned()),
                ("OBSERVATIONS", "5".to_owned()),
                ("EXPORT_COUNT", "9".to_owned()),
            ],
            LIMIT,
        )
        .await;
        println!("{backend:?}: {output}");
    }
}
