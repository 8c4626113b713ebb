//! The synthetic demo population `carerecord up` loads on first start: patients with records, a few
//! consent directives, and a national data opt-out check of everyone (as if the population's NHS
//! numbers had just been sent to the national service: every fifth patient has opted out), so
//! research and planning extracts of the demo have checked patients to work on. Everything goes
//! through the public gRPC APIs, exactly as an integrator's system would write it. All people here
//! are invented; NHS numbers are drawn from the 999 range, which the NHS reserves for testing.

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, Date, HumanName, NameUse, Requester,
};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    Provision, RecordNationalDataOptOutCheckRequest,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{CreatePatientRequest, Patient};
use carerecord_contracts::records::v1::record_hosting_service_client::RecordHostingServiceClient;
use carerecord_contracts::records::v1::{CreateRecordRequest, Record};
use serde_json::json;
use tonic::transport::Channel;

use crate::record::{FHIR_JSON, SOURCE_SYSTEM, effective_time_of};

/// A demo patient as loaded, for the examples `carerecord up` prints.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub patient_id: String,
    pub nhs_number: String,
    pub name: String,
}

const GIVEN: [&str; 12] = [
    "Amelia", "Oliver", "Isla", "George", "Ava", "Harry", "Mia", "Noah", "Freya", "Arthur",
    "Priya", "Mohammed",
];
const FAMILY: [&str; 12] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Patel", "Khan", "Evans", "Thomas",
    "Roberts", "Walker",
];
const POSTCODES: [&str; 6] = [
    "LS1 4AP", "LS6 2QB", "BD1 1HY", "HX1 2LP", "WF1 3JS", "HG1 5LA",
];
/// The demo trust and GP practice, as authoring organisations.
const ORGANISATIONS: [&str; 2] = ["RR8", "B86001"];

/// The request id of the demo's write `what`: the same on every run, so loading again writes
/// nothing twice.
fn request_id(what: &str) -> String {
    let name = format!("carerecord-demo-{what}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// The `index`-th valid NHS number in the 999 test range.
pub fn demo_nhs_number(index: u32) -> String {
    let mut serial = index;
    loop {
        let digits = format!("999{serial:06}");
        if let Some(check) = carerecord_platform::nhs_number::check_digit(digits.as_bytes()) {
            return format!("{digits}{check}");
        }
        // Numbers whose check digit would be 10 do not exist; take the next serial.
        serial += 100_000;
    }
}

fn requester() -> Requester {
    Requester {
        user_id: "demo-loader".into(),
        organisation_ods_code: ORGANISATIONS[0].into(),
        role_code: "R8000".into(),
        display_name: "carerecord demo loader".into(),
    }
}

fn observation(
    patient_id: &str,
    code: (&str, &str),
    value: f64,
    unit: &str,
    when: &str,
) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code.0, "display": code.1}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

fn condition(patient_id: &str, snomed: (&str, &str), onset: &str) -> serde_json::Value {
    json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed.0, "display": snomed.1}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "onsetDateTime": onset
    })
}

/// The records of demo patient `i`: vital signs for everyone, a diagnosis for some, and a
/// mental-health diagnosis (a sensitive data class) for every third patient.
fn records_for(i: usize, patient_id: &str) -> Vec<(serde_json::Value, Vec<String>)> {
    let day = 1 + (i % 27);
    let mut records = vec![
        (
            observation(
                patient_id,
                ("8867-4", "Heart rate"),
                60.0 + (i % 30) as f64,
                "/min",
                &format!("2026-10-{day:02}T09:00:00Z"),
            ),
            vec![],
        ),
        (
            observation(
                patient_id,
                ("2339-0", "Glucose [Mass/volume] in Blood"),
                4.5 + (i % 7) as f64 * 0.6,
                "mmol/L",
                &format!("2026-10-{day:02}T09:05:00Z"),
            ),
            vec![],
        ),
        (
            observation(
                patient_id,
                ("4548-4", "Hemoglobin A1c"),
                38.0 + (i % 20) as f64,
                "mmol/mol",
                &format!("2026-09-{day:02}T10:00:00Z"),
            ),
            vec![],
        ),
    ];
    if i.is_multiple_of(2) {
        records.push((
            condition(
                patient_id,
                ("44054006", "Type 2 diabetes mellitus"),
                "2019-05-14",
            ),
            vec![],
        ));
    }
    if i.is_multiple_of(3) {
        records.push((
            condition(
                patient_id,
                ("35489007", "Depressive disorder"),
                "2024-02-02",
            ),
            vec!["mental-health".to_owned()],
        ));
    }
    records
}

/// Loads `count` demo patients through the APIs; returns them for the examples.
pub async fn load(
    identity: Channel,
    records: Channel,
    consent: Channel,
    count: usize,
) -> Result<Vec<DemoPatient>, tonic::Status> {
    let mut identity = PatientIdentityServiceClient::new(identity);
    let mut hosting = RecordHostingServiceClient::new(records);
    let mut consent = ConsentServiceClient::new(consent);
    let mut loaded = Vec::with_capacity(count);
    for i in 0..count {
        let given = GIVEN[i % GIVEN.len()];
        let family = FAMILY[(i * 7 + i / GIVEN.len()) % FAMILY.len()];
        let nhs_number = demo_nhs_number(i as u32 + 1);
        let patient = Patient {
            nhs_number: nhs_number.clone(),
            names: vec![HumanName {
                r#use: NameUse::Official as i32,
                given: vec![given.into()],
                family: family.into(),
                ..Default::default()
            }],
            birth_date: Some(Date {
                year: 1940 + (i as i32 * 3) % 75,
                month: 1 + (i as i32 % 12),
                day: 1 + (i as i32 * 5) % 28,
            }),
            gender: if i.is_multiple_of(2) {
                AdministrativeGender::Female
            } else {
                AdministrativeGender::Male
            } as i32,
            addresses: vec![Address {
                lines: vec![format!("{} Park Road", 1 + i * 3)],
                city: "Leeds".into(),
                postal_code: POSTCODES[i % POSTCODES.len()].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = CreatePatientRequest {
            request_id: request_id(&format!("patient-{i}")),
            patient: Some(patient),
            requester: Some(requester()),
        };
        let patient = identity
            .create_patient(request)
            .await?
            .into_inner()
            .patient
            .unwrap_or_default();
        for (n, (payload, data_classes)) in
            records_for(i, &patient.patient_id).into_iter().enumerate()
        {
            let record = Record {
                patient_id: patient.patient_id.clone(),
                resource_type: payload["resourceType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                content_type: FHIR_JSON.into(),
                effective_time: effective_time_of(&payload),
                payload: payload.to_string().into_bytes(),
                data_classes,
                authoring_organisation_ods_code: ORGANISATIONS[n % ORGANISATIONS.len()].into(),
                source_system: SOURCE_SYSTEM.into(),
                ..Default::default()
            };
            hosting
                .create_record(CreateRecordRequest {
                    request_id: request_id(&format!("record-{i}-{n}")),
                    record: Some(record),
                    requester: Some(requester()),
                })
                .await?;
        }
        // Every fourth patient withholds mental-health data.
        if i.is_multiple_of(4) {
            let directive = ConsentDirective {
                patient_id: patient.patient_id.clone(),
                status: ConsentDirectiveStatus::Active as i32,
                decision: ConsentDecision::Permit as i32,
                provisions: vec![Provision {
                    data_classes: vec!["mental-health".into()],
                    ..Default::default()
                }],
                date_time: Some(std::time::SystemTime::now().into()),
                ..Default::default()
            };
            consent
                .create_consent_directive(CreateConsentDirectiveRequest {
                    request_id: request_id(&format!("directive-{i}")),
                    directive: Some(directive),
                    requester: Some(requester()),
                })
                .await?;
        }
        loaded.push(DemoPatient {
            patient_id: patient.patient_id,
            nhs_number,
            name: format!("{given} {family}"),
        });
    }
    check_opt_outs(&mut consent, &loaded).await?;
    Ok(loaded)
}

/// Whether the demo patient at `index` has opted out: every fifth.
fn demo_opted_out(index: usize) -> bool {
    index % 5 == 4
}

/// Records a national data opt-out check of the demo population made now, as the national service
/// would answer it (every fifth patient has opted out). A check stays valid for a limited time
/// (`CARERECORD_CONSENT_OPT_OUT_VALIDITY`), so a reused demo must be checked again to keep its
/// research and planning extracts working; checking again is harmless.
pub async fn check_opt_outs(
    consent: &mut ConsentServiceClient<Channel>,
    patients: &[DemoPatient],
) -> Result<(), tonic::Status> {
    let checked: Vec<String> = patients.iter().map(|p| p.patient_id.clone()).collect();
    let not_opted_out = patients
        .iter()
        .enumerate()
        .filter(|(i, _)| !demo_opted_out(*i))
        .map(|(_, p)| p.patient_id.clone())
        .collect();
    consent
        .record_national_data_opt_out_check(RecordNationalDataOptOutCheckRequest {
            checked_patient_ids: checked,
            not_opted_out_patient_ids: not_opted_out,
            check_time: Some(std::time::SystemTime::now().into()),
            source: "carerecord demo: synthetic national data opt-out check".into(),
            requester: Some(requester()),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_nhs_numbers_pass_modulus_11() {
        for i in 1..200 {
            let number = demo_nhs_number(i);
            assert_eq!(number.len(), 10);
            assert!(number.starts_with("999"));
            // The platform's validator checks the modulus-11 check digit.
            let valid = carerecord_platform::nhs_number::normalise(&number);
            assert!(valid.is_ok_and(|n| n == number), "{number}");
        }
    }

    #[test]
    fn every_fifth_patient_has_opted_out() {
        let opted_out: Vec<usize> = (0..12).filter(|i| demo_opted_out(*i)).collect();
        assert_eq!(opted_out, [4, 9]);
    }

    #[test]
    fn every_third_patient_has_mental_health_data() {
        let records = records_for(3, "p");
        assert!(
            records
                .iter()
                .any(|(_, classes)| classes.contains(&"mental-health".to_owned()))
        );
        assert!(
            records_for(1, "p")
                .iter()
                .all(|(_, classes)| classes.is_empty())
        );
    }
}
