//! What the identity tests share: the client, invented patients and NHS numbers, and the
//! calls that set up a test (each must succeed).

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, ContactPoint, ContactPointSystem, Date, HumanName, Identifier,
    NameUse, Requester,
};
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_contracts::identity::v1::{
    CreatePatientRequest, GetPatientRequest, MergePatientsRequest, Patient,
    ResolveIdentifierRequest, ResolveIdentifierResponse, UpdatePatientRequest,
};
use prost_types::FieldMask;
use rand_free::Rng;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Auth, Ctx, TestResult, fail, has_reason_in, ok, present};
use crate::refusal::Refusal;

pub(crate) type Client = PatientIdentityServiceClient<InterceptedService<Channel, Auth>>;

pub(crate) const RESOURCE_TYPE: &str = "carerecord.identity.v1.Patient";
pub(crate) const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub(crate) const LOCAL_SYSTEM: &str = "https://fhir.conformance.carerecord.invalid/Id/mrn";
/// The ErrorInfo domain the contract's conventions give every identity error.
pub(crate) const DOMAIN: &str = "carerecord.identity.v1";

pub(crate) fn client(ctx: &Ctx) -> Client {
    PatientIdentityServiceClient::with_interceptor(ctx.channel.clone(), ctx.auth.clone())
        .max_decoding_message_size(16 << 20)
}

/// Requires ErrorInfo with domain `carerecord.identity.v1` and `reason`.
pub(crate) fn has_reason(
    status: &tonic::Status,
    reason: &str,
) -> TestResult<tonic_types::ErrorInfo> {
    has_reason_in(status, DOMAIN, reason)
}

/// A refusal with `code` and ErrorInfo `reason` of the identity domain.
pub(crate) fn refusal(code: Code, reason: &str) -> Refusal {
    Refusal::new(code).reason_in(DOMAIN, reason)
}

/// NOT_FOUND with ResourceInfo naming the patient.
pub(crate) fn unknown(patient_id: &str) -> Refusal {
    Refusal::not_found(RESOURCE_TYPE, patient_id)
}

/// ALREADY_EXISTS with ResourceInfo naming the patient holding the identifier.
pub(crate) fn held_by(holder: &Patient) -> Refusal {
    Refusal::new(Code::AlreadyExists).resource(RESOURCE_TYPE, &holder.patient_id)
}

/// FAILED_PRECONDITION PATIENT_MERGED (or PATIENT_NOT_MERGED) on the patient.
pub(crate) fn merge_state(kind: &str, patient_id: &str) -> Refusal {
    Refusal::new(Code::FailedPrecondition).precondition(kind, Some(patient_id))
}

pub(crate) fn requester() -> Requester {
    Requester {
        user_id: "conformance-kit".into(),
        organisation_ods_code: "X26".into(),
        role_code: "R8000".into(),
        display_name: "carerecord conformance kit".into(),
    }
}

/// Random numbers from UUIDs, so the kit needs no RNG crate.
mod rand_free {
    pub struct Rng;
    impl Rng {
        pub fn below(n: u64) -> u64 {
            let v = uuid::Uuid::new_v4().as_u128();
            (v % u128::from(n)) as u64
        }
    }
}

/// The modulus-11 check digit of nine digits, or None when it would be 10 (invalid).
pub(crate) fn check_digit(nine: &[u8]) -> Option<u8> {
    let sum: u32 = nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

/// A fresh valid NHS number in the 999 test range.
pub(crate) fn nhs_number() -> String {
    loop {
        let mut digits = vec![9, 9, 9];
        for _ in 0..6 {
            digits.push(Rng::below(10) as u8);
        }
        if let Some(c) = check_digit(&digits) {
            digits.push(c);
            return digits.iter().map(|d| char::from(b'0' + d)).collect();
        }
    }
}

/// A ten-digit number in the 999 range whose check digit is wrong.
pub(crate) fn bad_check_digit() -> String {
    let good = nhs_number();
    let last = good.as_bytes()[9] - b'0';
    format!("{}{}", &good[..9], (last + 1) % 10)
}

/// An invented family name: letters only, unique per call.
pub(crate) fn family_name() -> String {
    let letters: String = (0..10)
        .map(|_| char::from(b'a' + Rng::below(26) as u8))
        .collect();
    format!("Kit{letters}")
}

pub(crate) fn local_id() -> Identifier {
    Identifier {
        system: LOCAL_SYSTEM.into(),
        value: format!("MRN-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A complete, valid patient with fresh identifiers.
pub(crate) fn new_patient() -> Patient {
    Patient {
        nhs_number: nhs_number(),
        identifiers: vec![local_id()],
        names: vec![HumanName {
            r#use: NameUse::Official as i32,
            given: vec!["Alexandra".into()],
            family: family_name(),
            ..Default::default()
        }],
        birth_date: Some(Date {
            year: 1984,
            month: 3,
            day: 17,
        }),
        gender: AdministrativeGender::Female as i32,
        addresses: vec![Address {
            lines: vec!["1 Conformance Street".into()],
            city: "Leeds".into(),
            postal_code: "LS1 4AP".into(),
            ..Default::default()
        }],
        telecoms: vec![ContactPoint {
            system: ContactPointSystem::Phone as i32,
            value: "0113 496 0000".into(),
            r#use: "home".into(),
        }],
        ..Default::default()
    }
}

pub(crate) fn create_request(patient: Patient) -> CreatePatientRequest {
    CreatePatientRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        patient: Some(patient),
        requester: Some(requester()),
    }
}

pub(crate) async fn create(ctx: &Ctx, patient: Patient) -> TestResult<Patient> {
    let response = ok(
        client(ctx).create_patient(create_request(patient)).await,
        "CreatePatient",
    )?;
    let p = present(
        response.patient,
        "CreatePatient: the response has no patient",
    )?;
    ctx.created("patient", &p.patient_id);
    Ok(p)
}

pub(crate) async fn get(ctx: &Ctx, id: &str) -> TestResult<Patient> {
    let request = GetPatientRequest {
        patient_id: id.into(),
    };
    let response = ok(client(ctx).get_patient(request).await, "GetPatient")?;
    present(response.patient, "GetPatient: no patient")
}

pub(crate) fn update_request(patient: Patient, etag: &str, paths: &[&str]) -> UpdatePatientRequest {
    UpdatePatientRequest {
        patient: Some(patient),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        etag: etag.into(),
        requester: Some(requester()),
        reason: "conformance kit".into(),
    }
}

/// A change of `patient_id` holding only what `change` sets on a default patient.
pub(crate) fn change(patient_id: &str, change: impl FnOnce(&mut Patient)) -> Patient {
    let mut patient = Patient {
        patient_id: patient_id.to_owned(),
        ..Default::default()
    };
    change(&mut patient);
    patient
}

pub(crate) async fn update(
    ctx: &Ctx,
    patient: Patient,
    etag: &str,
    paths: &[&str],
) -> TestResult<Patient> {
    let response = ok(
        client(ctx)
            .update_patient(update_request(patient, etag, paths))
            .await,
        "UpdatePatient",
    )?;
    present(response.patient, "UpdatePatient: no patient")
}

/// Sets a patient's gender (1 male, 3 other; new patients are female), requiring success.
pub(crate) async fn regender(ctx: &Ctx, current: &Patient, gender: i32) -> TestResult<Patient> {
    let patient = change(&current.patient_id, |p| p.gender = gender);
    update(ctx, patient, &current.etag, &["gender"]).await
}

pub(crate) fn resolve_request(system: &str, value: &str) -> ResolveIdentifierRequest {
    ResolveIdentifierRequest {
        identifier: Some(Identifier {
            system: system.into(),
            value: value.into(),
        }),
    }
}

pub(crate) async fn resolve(
    ctx: &Ctx,
    system: &str,
    value: &str,
) -> TestResult<ResolveIdentifierResponse> {
    ok(
        client(ctx)
            .resolve_identifier(resolve_request(system, value))
            .await,
        "ResolveIdentifier",
    )
}

/// Requires that no patient holds the NHS number: a refused request wrote nothing.
pub(crate) async fn ensure_unheld(ctx: &Ctx, nhs: &str, what: &str) -> TestResult {
    let r = client(ctx)
        .resolve_identifier(resolve_request(NHS_SYSTEM, nhs))
        .await;
    crate::harness::ensure!(r.err().map(|s| s.code()) == Some(Code::NotFound), "{what}");
    Ok(())
}

/// An NHS number written with spaces, as people write it.
pub(crate) fn spaced(nhs: &str) -> String {
    format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..])
}

pub(crate) fn merge_request(source: &Patient, target: &Patient) -> MergePatientsRequest {
    MergePatientsRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        source_patient_id: source.patient_id.clone(),
        target_patient_id: target.patient_id.clone(),
        reason: "duplicate registration, confirmed by the conformance kit".into(),
        requester: Some(requester()),
        source_etag: source.etag.clone(),
        target_etag: target.etag.clone(),
    }
}

/// Merges `source` into `target`, requiring success; returns both as written.
pub(crate) async fn merge(
    ctx: &Ctx,
    source: &Patient,
    target: &Patient,
) -> TestResult<(Patient, Patient)> {
    let r = ok(
        client(ctx)
            .merge_patients(merge_request(source, target))
            .await,
        "MergePatients",
    )?;
    match (r.source_patient, r.target_patient) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => fail!("MergePatients: the response lacks a patient"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_follow_modulus_11() {
        // 943 476 5919 is the NHS's published example of a valid number.
        assert_eq!(check_digit(&[9, 4, 3, 4, 7, 6, 5, 9, 1]), Some(9));
        for _ in 0..50 {
            let n = nhs_number();
            assert!(n.starts_with("999") && n.len() == 10);
            let d: Vec<u8> = n.bytes().map(|b| b - b'0').collect();
            assert_eq!(check_digit(&d[..9]), Some(d[9]));
            let bad = bad_check_digit();
            let d: Vec<u8> = bad.bytes().map(|b| b - b'0').collect();
            assert_ne!(check_digit(&d[..9]), Some(d[9]));
        }
    }
}
