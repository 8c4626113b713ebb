//! FindPatient: unknown patients, validation, and the summary of a registered one.

use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{Demographics, FindPatientRequest, PatientReference};
use carerecord_contracts::common::v1::{Date, Identifier};
use tonic::Code;

use super::support::{
    DOMAIN, audited, by_id, client, ensure_audit_named, find, has_reason, refusal, refused_audited,
    seed,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, err, fail, ok};
use crate::refusal::{Refusal, refuse_each};

pub(super) async fn find_unknown_id(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    refused_audited(
        client(&ctx).find_patient(find(by_id(&id), "TREAT")).await,
        &refusal(Code::NotFound, "PATIENT_NOT_FOUND").resource("Patient", &id),
        "FindPatient(unknown patient_id)",
    )
    .map(drop)
}

pub(super) async fn find_unknown_nhs(ctx: Ctx) -> TestResult {
    let nhs = crate::identity::nhs_number();
    let reference = Some(PatientReference {
        reference: Some(Reference::NhsNumber(nhs.clone())),
    });
    let status = err(
        client(&ctx).find_patient(find(reference, "TREAT")).await,
        Code::NotFound,
        "FindPatient(unknown NHS number)",
    )?;
    let metadata = has_reason(&status, "PATIENT_NOT_FOUND")?;
    ensure!(
        tonic_types::StatusExt::get_details_resource_info(&status)
            .is_some_and(|r| r.resource_type == "Patient"),
        "expected ResourceInfo(Patient), got {}",
        describe(&status)
    );
    audited(&metadata).map(|_| ())
}

pub(super) async fn find_invalid(ctx: Ctx) -> TestResult {
    let reference = |r: Reference| Some(PatientReference { reference: Some(r) });
    let invalid = |field: &str| {
        Refusal::new(Code::InvalidArgument)
            .reason_in(DOMAIN, "INVALID_REQUEST")
            .field(field)
    };
    let somebody = || by_id(&uuid::Uuid::new_v4().to_string());
    let no_family = Demographics {
        given: "Alex".into(),
        birth_date: Some(Date {
            year: 1984,
            month: 3,
            day: 17,
        }),
        ..Default::default()
    };
    let no_system = Identifier {
        system: String::new(),
        value: "X1".into(),
    };
    let table: Vec<(&str, FindPatientRequest, Refusal)> = vec![
        ("no reference", find(None, "TREAT"), invalid("patient")),
        (
            "an empty reference",
            find(Some(PatientReference { reference: None }), "TREAT"),
            invalid("patient"),
        ),
        (
            "a malformed patient_id",
            find(reference(Reference::PatientId("12345".into())), "TREAT"),
            invalid("patient.patient_id"),
        ),
        (
            "an NHS number failing its check digit",
            find(
                reference(Reference::NhsNumber(crate::identity::bad_check_digit())),
                "TREAT",
            ),
            invalid("patient.nhs_number"),
        ),
        (
            "an identifier without system",
            find(reference(Reference::Identifier(no_system)), "TREAT"),
            invalid("patient.identifier.system"),
        ),
        (
            "demographics without family",
            find(reference(Reference::Demographics(no_family)), "TREAT"),
            invalid("patient.demographics.family"),
        ),
        (
            "no purpose",
            find(somebody(), ""),
            invalid("purpose_of_use"),
        ),
        (
            "a lower-case purpose",
            find(somebody(), "treat"),
            invalid("purpose_of_use"),
        ),
    ];
    refuse_each!(client(&ctx), find_patient, table).await
}

pub(super) async fn find_seeded(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let p = &s.patient;
    let nhs = format!(
        "{} {} {}",
        &p.nhs_number[..3],
        &p.nhs_number[3..6],
        &p.nhs_number[6..]
    );
    let refs = [
        ("patient_id", by_id(&p.patient_id.to_uppercase())),
        (
            "NHS number",
            Some(PatientReference {
                reference: Some(Reference::NhsNumber(nhs)),
            }),
        ),
        (
            "identifier",
            Some(PatientReference {
                reference: Some(Reference::Identifier(p.identifiers[0].clone())),
            }),
        ),
    ];
    for (what, r) in refs {
        let found = ok(
            client(&ctx).find_patient(find(r, "TREAT")).await,
            &format!("FindPatient(by {what})"),
        )?;
        let Some(summary) = found.patient else {
            fail!("FindPatient(by {what}): no patient")
        };
        ensure_eq!(
            summary.patient_id,
            p.patient_id,
            "patient_id found by {what}"
        );
        ensure_eq!(summary.nhs_number, p.nhs_number, "nhs_number");
        ensure_eq!(summary.birth_date, p.birth_date, "birth_date");
        ensure_eq!(summary.gender, p.gender, "gender");
        ensure!(
            summary.names.iter().any(|n| n.family == p.names[0].family),
            "the summary carries the patient's names"
        );
        ensure!(
            found.resolved_from_merged_patient_id.is_empty(),
            "no merge was followed"
        );
        let call = format!("FindPatient(by {what})");
        ensure_audit_named(&call, &found.audit_entry_id, found.audit_index)?;
    }
    Ok(())
}
