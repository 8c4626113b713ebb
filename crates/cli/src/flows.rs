//! The front door's three flows (contribute, import, follow) as `carerecord up` shows them: example
//! files for the demo's patients, written under the data directory, and the commands that use them.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::demo::DemoPatient;

const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// The example files, written once (a second run keeps any the user edited).
pub struct FlowExamples {
    pub observation: PathBuf,
    pub amended: PathBuf,
    pub readings: PathBuf,
}

/// Writes the example files for `patients` under `data_dir/examples`; `None` if there are no
/// patients or the files cannot be written (the platform runs without them).
pub fn write(data_dir: &Path, patients: &[DemoPatient]) -> Option<FlowExamples> {
    let first = patients.first()?;
    let dir = data_dir.join("examples");
    let examples = FlowExamples {
        observation: dir.join("observation.json"),
        amended: dir.join("observation-amended.json"),
        readings: dir.join("readings.ndjson"),
    };
    let readings: Vec<String> = patients
        .iter()
        .take(3)
        .enumerate()
        .flat_map(|(i, patient)| {
            (0..2).map(move |day| {
                heart_rate(
                    patient,
                    64 + i as u32 * 5 + day,
                    &format!("2026-03-0{}", day + 1),
                )
                .to_string()
            })
        })
        .collect();
    let files = [
        (&examples.observation, weight(first, 72.4).to_string()),
        (&examples.amended, weight(first, 74.2).to_string()),
        (&examples.readings, readings.join("\n") + "\n"),
    ];
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("warning: cannot create {}: {e}", dir.display());
        return None;
    }
    for (path, content) in files {
        if path.exists() {
            continue;
        }
        if let Err(e) = std::fs::write(path, content) {
            eprintln!("warning: cannot write {}: {e}", path.display());
            return None;
        }
    }
    Some(examples)
}

/// Prints the three flows against the example files.
pub fn print(examples: &FlowExamples, patients: &[DemoPatient], data_dir: &Path) {
    let Some(first) = patients.first() else {
        return;
    };
    let followed: Vec<String> = patients
        .iter()
        .take(3)
        .map(|p| format!("--nhs-number {}", p.nhs_number))
        .collect();
    println!("Front door, both ways (contribute, import, follow):");
    println!(
        "  carerecord follow {} --cursor-file {} &",
        followed.join(" "),
        data_dir.join("follow.cursor").display()
    );
    println!(
        "  carerecord submit --file {}        # {}'s weight, subject by NHS number",
        examples.observation.display(),
        first.name
    );
    println!(
        "  carerecord amend --record-id <id> --version 1 --file {}",
        examples.amended.display()
    );
    println!("  carerecord retract --record-id <id> --version 2 --reason \"entered in error\"");
    println!(
        "  carerecord import --file {}        # one result per line; re-sending writes nothing twice",
        examples.readings.display()
    );
}

fn subject(patient: &DemoPatient) -> serde_json::Value {
    json!({ "identifier": { "system": NHS_NUMBER_SYSTEM, "value": patient.nhs_number } })
}

fn weight(patient: &DemoPatient, kilograms: f64) -> serde_json::Value {
    let kg = json!({ "value": kilograms, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg" });
    vital_sign(
        patient,
        ("27113001", "Body weight"),
        "2026-03-02T09:30:00Z",
        kg,
    )
}

fn heart_rate(patient: &DemoPatient, beats: u32, date: &str) -> serde_json::Value {
    let per_minute = json!({ "value": beats, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" });
    vital_sign(
        patient,
        ("364075005", "Heart rate"),
        &format!("{date}T07:00:00Z"),
        per_minute,
    )
}

/// A final vital-signs Observation of the patient: a SNOMED CT (code, display), when, and the
/// quantity measured.
fn vital_sign(
    patient: &DemoPatient,
    (code, display): (&str, &str),
    effective: &str,
    quantity: serde_json::Value,
) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }] }],
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": code, "display": display }] },
        "subject": subject(patient),
        "effectiveDateTime": effective,
        "valueQuantity": quantity
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_name_their_patients_by_nhs_number_and_are_kept_once_written() {
        let dir = std::env::temp_dir().join(format!("carerecord-flows-{}", std::process::id()));
        let patients = vec![
            DemoPatient {
                patient_id: "p1".into(),
                nhs_number: "9434765919".into(),
                name: "Ada Example".into(),
            },
            DemoPatient {
                patient_id: "p2".into(),
                nhs_number: "9434765870".into(),
                name: "Bo Example".into(),
            },
        ];
        let examples = write(&dir, &patients).expect("written");
        let observation: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&examples.observation).unwrap()).unwrap();
        assert_eq!(observation["subject"]["identifier"]["value"], "9434765919");
        let lines = std::fs::read_to_string(&examples.readings).unwrap();
        let values: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values.len(), 4, "two readings for each of two patients");
        assert_eq!(values[3]["subject"]["identifier"]["value"], "9434765870");

        std::fs::write(&examples.observation, "edited").unwrap();
        write(&dir, &patients).expect("written again");
        assert_eq!(
            std::fs::read_to_string(&examples.observation).unwrap(),
            "edited"
        );
        assert!(write(&dir, &[]).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
