//! Data access keeps patient resolutions and consent decisions between calls; none may outlive an
//! identity or consent write acknowledged before a read arrived. While readers read, an NHS
//! number moves between two patients, or a patient's dissent is recorded and revoked: every read
//! must see a state the record had between the last write acknowledged when the read was sent
//! and the last acknowledged when its answer came.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    RevokeConsentDirectiveRequest,
};
use carerecord_contracts::identity::v1::{GetPatientRequest, Patient, UpdatePatientRequest};
use carerecord_e2e::{
    Overrides, Platform, authed, by_id, by_nhs, fresh_nhs_number, read_request, token, uuid,
};
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

/// Records the patient's dissent (a DENY directive); returns the directive as consent keeps it.
async fn dissent(platform: &Platform, patient_id: &str) -> ConsentDirective {
    let directive = ConsentDirective {
        patient_id: patient_id.into(),
        status: ConsentDirectiveStatus::Active as i32,
        decision: ConsentDecision::Deny as i32,
        date_time: Some(std::time::SystemTime::now().into()),
        ..Default::default()
    };
    let request = CreateConsentDirectiveRequest {
        request_id: uuid(),
        directive: Some(directive),
        requester: Some(clerk()),
    };
    let response = platform
        .consent_client()
        .await
        .create_consent_directive(request)
        .await;
    response
        .unwrap_or_else(|s| panic!("{:?}: recording dissent failed: {s:?}", platform.backend))
        .into_inner()
        .directive
        .expect("the directive")
}

async fn revoke(platform: &Platform, directive: ConsentDirective) {
    let request = RevokeConsentDirectiveRequest {
        directive_id: directive.directive_id,
        etag: directive.etag,
        reason: "dissent withdrawn".into(),
        requester: Some(clerk()),
    };
    let response = platform
        .consent_client()
        .await
        .revoke_consent_directive(request)
        .await;
    if let Err(s) = response {
        panic!("{:?}: revoking failed: {s:?}", platform.backend);
    }
}

#[tokio::test]
async fn a_read_is_never_decided_from_before_an_acknowledged_consent_write() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let platform = Arc::new(platform);
        let (patient_id, _) = platform.register_patient("Ada", "Dissenting").await;
        // permitted[step]: whether reads are permitted once `step` writes are acknowledged.
        let permitted = Arc::new(Mutex::new(vec![true]));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clinician = token("R8000", "user/*.rs");
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (platform, permitted, done, patient_id, clinician) = (
                    platform.clone(),
                    permitted.clone(),
                    done.clone(),
                    patient_id.clone(),
                    clinician.clone(),
                );
                tokio::spawn(async move {
                    let mut client = platform.access_client().await;
                    let mut reads = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        let acknowledged = permitted.lock().unwrap().len() - 1;
                        let request = read_request(by_id(&patient_id), "TREAT");
                        let outcome = match client
                            .read_patient_record(authed(request, &clinician))
                            .await
                        {
                            Ok(_) => true,
                            Err(s) if s.code() == Code::PermissionDenied => false,
                            Err(s) => panic!("{:?}: read failed: {s:?}", platform.backend),
                        };
                        let by_answer = permitted.lock().unwrap().len() - 1;
                        reads.push((acknowledged, by_answer, outcome));
                    }
                    reads
                })
            })
            .collect();
        for _ in 0..MOVES {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let directive = dissent(&platform, &patient_id).await;
            permitted.lock().unwrap().push(false);
            tokio::time::sleep(Duration::from_millis(20)).await;
            revoke(&platform, directive).await;
            permitted.lock().unwrap().push(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let permitted = permitted.lock().unwrap().clone();
        let mut checked = 0;
        for reader in readers {
            for (acknowledged, by_answer, outcome) in reader.await.expect("reader") {
                let window = &permitted[acknowledged..=by_answer];
                assert!(
                    window.contains(&outcome),
                    "{:?}: a read sent after {acknowledged} acknowledged consent writes (answered \
                     after {by_answer}) was {}, but meanwhile reads were to be {window:?}",
                    platform.backend,
                    if outcome { "permitted" } else { "denied" },
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
