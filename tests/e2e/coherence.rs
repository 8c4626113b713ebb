//! Data access keeps patient resolutions between calls; none may outlive an identity write
//! acknowledged before a read arrived. An NHS number moves between two patients while readers
//! read by it: every read must name a holder the number had between the last move acknowledged
//! when the read was sent and the last acknowledged when its answer came.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::identity::v1::{GetPatientRequest, Patient, UpdatePatientRequest};
use carerecord_e2e::{Overrides, Platform, authed, by_nhs, fresh_nhs_number, read_request, token};
use tonic::Code;

/// How many times the number moves, and how many readers read by it meanwhile.
const MOVES: usize = 12;
const READERS: usize = 8;

fn clerk() -> Requester {
    Requester {
        user_id: "e2e-registration-clerk".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: String::new(),
    }
}

async fn patient(platform: &Platform, patient_id: &str) -> Patient {
    let request = GetPatientRequest {
        patient_id: patient_id.to_owned(),
    };
    let response = platform.identity_client().await.get_patient(request).await;
    response
        .expect("the patient")
        .into_inner()
        .patient
        .expect("a patient")
}

/// Gives `patient` the NHS number `number`; returns the patient as identity now holds them.
async fn renumber(platform: &Platform, patient: Patient, number: &str) -> Patient {
    let etag = patient.etag.clone();
    let request = UpdatePatientRequest {
        patient: Some(Patient {
            nhs_number: number.to_owned(),
            ..patient
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["nhs_number".into()],
        }),
        etag,
        requester: Some(clerk()),
        reason: "NHS number corrected".into(),
    };
    platform
        .identity_client()
        .await
        .update_patient(request)
        .await
        .unwrap_or_else(|s| panic!("{:?}: renumbering failed: {s:?}", platform.backend))
        .into_inner()
        .patient
        .expect("the updated patient")
}

#[tokio::test]
async fn a_read_by_nhs_number_never_resolves_from_before_an_acknowledged_renumbering() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let platform = Arc::new(platform);
        let (first_id, number) = platform.register_patient("Ada", "Renumbered").await;
        let (second_id, _) = platform.register_patient("Grace", "Renumbered").await;
        let mut first = patient(&platform, &first_id).await;
        let mut second = patient(&platform, &second_id).await;
        // holders[step]: who holds `number` once `step` writes are acknowledged (None: nobody).
        let holders = Arc::new(Mutex::new(vec![Some(first_id.clone())]));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clinician = token("R8000", "user/*.rs");
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (platform, holders, done, number, clinician) = (
                    platform.clone(),
                    holders.clone(),
                    done.clone(),
                    number.clone(),
                    clinician.clone(),
                );
                tokio::spawn(async move {
                    let mut client = platform.access_client().await;
                    let mut reads = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        let acknowledged = holders.lock().unwrap().len() - 1;
                        let request = read_request(by_nhs(&number), "TREAT");
                        let named = match client
                            .read_patient_record(authed(request, &clinician))
                            .await
                        {
                            Ok(response) => Some(response.into_inner().patient_id),
                            Err(s) if s.code() == Code::NotFound => None,
                            Err(s) => panic!("{:?}: read failed: {s:?}", platform.backend),
                        };
                        let by_answer = holders.lock().unwrap().len() - 1;
                        reads.push((acknowledged, by_answer, named));
                    }
                    reads
                })
            })
            .collect();
        let mut spare = fresh_nhs_number();
        for _ in 0..MOVES {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // The holder gives the number up for a free one, then the other patient takes it.
            first = renumber(&platform, first, &spare).await;
            holders.lock().unwrap().push(None);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let freed = second.nhs_number.clone();
            second = renumber(&platform, second, &number).await;
            holders
                .lock()
                .unwrap()
                .push(Some(second.patient_id.clone()));
            spare = freed;
            std::mem::swap(&mut first, &mut second);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let holders = holders.lock().unwrap().clone();
        let mut checked = 0;
        for reader in readers {
            for (acknowledged, by_answer, named) in reader.await.expect("reader") {
                let window = &holders[acknowledged..=by_answer];
                assert!(
                    window.contains(&named),
                    "{:?}: a read sent after {acknowledged} acknowledged moves (answered after \
                     {by_answer}) named {named:?}, but meanwhile the number was held by {window:?}",
                    platform.backend,
                );
                checked += 1;
            }
        }
        assert!(
            checked > MOVES * 2,
            "{:?}: only {checked} reads",
            platform.backend
        );
    }
}
