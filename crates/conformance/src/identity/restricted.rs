//! SetPatientConfidentiality: the restricted marker, its history, who may set it, and merges.
//!
//! The kit acts as a privacy officer (`R0001`, the contract's default confidentiality role) and
//! expects its usual requester's role (`R8000`) not to be one.

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::{
    ListPatientVersionsRequest, Patient, PatientConfidentiality, SetPatientConfidentialityRequest,
};
use tonic::Code;

use super::support::{
    change, client, create, get, merge, merge_request, merge_state, new_patient, refusal,
    requester, unknown, update,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok, present};
use crate::refusal::{Refusal, refuse_each, refused};

const REASON: &str = "restricted at the patient's request; PDS flag R";

/// A privacy officer of the kit's organisation.
pub(crate) fn officer() -> Requester {
    Requester {
        role_code: "R0001".into(),
        display_name: "carerecord conformance kit privacy officer".into(),
        ..requester()
    }
}

pub(crate) fn set_request(
    patient: &Patient,
    level: PatientConfidentiality,
    requester: Requester,
) -> SetPatientConfidentialityRequest {
    SetPatientConfidentialityRequest {
        patient_id: patient.patient_id.clone(),
        confidentiality: level as i32,
        etag: patient.etag.clone(),
        reason: REASON.into(),
        requester: Some(requester),
    }
}

/// Sets the marker as the privacy officer, requiring success.
pub(crate) async fn set(
    ctx: &Ctx,
    patient: &Patient,
    level: PatientConfidentiality,
) -> TestResult<Patient> {
    let response = ok(
        client(ctx)
            .set_patient_confidentiality(set_request(patient, level, officer()))
            .await,
        "SetPatientConfidentiality",
    )?;
    present(response.patient, "SetPatientConfidentiality: no patient")
}

const RESTRICTED: i32 = PatientConfidentiality::Restricted as i32;
const UNRESTRICTED: i32 = PatientConfidentiality::Unrestricted as i32;

pub(super) async fn restrict(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    ensure_eq!(
        (p.confidentiality, p.confidentiality_change.clone()),
        (UNRESTRICTED, None),
        "a new patient's marker"
    );
    let restricted = set(&ctx, &p, PatientConfidentiality::Restricted).await?;
    ensure_eq!(restricted.confidentiality, RESTRICTED, "confidentiality");
    ensure_eq!(restricted.version, p.version + 1, "version");
    ensure!(restricted.etag != p.etag, "the etag changes");
    let change = present(
        restricted.confidentiality_change.clone(),
        "confidentiality_change is unset after a change",
    )?;
    ensure_eq!(change.requester, Some(officer()), "who changed it");
    ensure_eq!(change.reason, REASON, "why");
    ensure_eq!(change.change_time, restricted.update_time, "when");
    ensure_eq!(change.version, restricted.version, "the version it wrote");
    ensure_eq!(
        get(&ctx, &p.patient_id).await?,
        restricted.clone(),
        "GetPatient after the change"
    );
    let again = set(&ctx, &restricted, PatientConfidentiality::Restricted).await?;
    ensure_eq!(again, restricted, "setting the same level writes nothing");
    Ok(())
}

pub(super) async fn history(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    let restricted = set(&ctx, &p, PatientConfidentiality::Restricted).await?;
    let updated = update(
        &ctx,
        change(&p.patient_id, |c| c.gender = 3),
        &restricted.etag,
        &["gender"],
    )
    .await?;
    ensure_eq!(
        (
            updated.confidentiality,
            updated.confidentiality_change.clone()
        ),
        (RESTRICTED, restricted.confidentiality_change.clone()),
        "UpdatePatient keeps the marker and its last change"
    );
    let lifted = set(&ctx, &updated, PatientConfidentiality::Unrestricted).await?;
    ensure_eq!(lifted.confidentiality, UNRESTRICTED, "lifted");
    let versions = ok(
        client(&ctx)
            .list_patient_versions(ListPatientVersionsRequest {
                patient_id: p.patient_id.clone(),
                ..Default::default()
            })
            .await,
        "ListPatientVersions",
    )?
    .versions;
    let marker: Vec<_> = versions
        .iter()
        .filter(|v| {
            v.changed_fields
                .as_ref()
                .is_some_and(|m| m.paths.iter().any(|f| f == "confidentiality"))
        })
        .collect();
    ensure_eq!(
        marker.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![restricted.version, lifted.version],
        "the versions listing `confidentiality` as changed"
    );
    for v in &marker {
        ensure_eq!(
            (v.change_type, v.requester.clone(), v.reason.as_str()),
            (ChangeType::Updated as i32, Some(officer()), REASON),
            "version {}: change type, requester and reason",
            v.version
        );
    }
    Ok(())
}

pub(super) async fn refusals(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    let current = p.clone();
    let with = |f: &dyn Fn(&mut SetPatientConfidentialityRequest)| {
        let mut r = set_request(&current, PatientConfidentiality::Restricted, officer());
        f(&mut r);
        r
    };
    let missing = uuid::Uuid::new_v4().to_string();
    let stale = set_request(&p, PatientConfidentiality::Restricted, officer());
    let table: Vec<(&str, SetPatientConfidentialityRequest, Refusal)> = vec![
        (
            "a requester not in a confidentiality role",
            set_request(&p, PatientConfidentiality::Restricted, requester()),
            refusal(Code::PermissionDenied, "ROLE_NOT_PERMITTED"),
        ),
        (
            "no patient_id",
            with(&|r| r.patient_id.clear()),
            Refusal::invalid("patient_id"),
        ),
        (
            "confidentiality unspecified",
            with(&|r| r.confidentiality = 0),
            Refusal::invalid("confidentiality"),
        ),
        (
            "an unknown confidentiality",
            with(&|r| r.confidentiality = 99),
            Refusal::invalid("confidentiality"),
        ),
        (
            "no etag",
            with(&|r| r.etag.clear()),
            Refusal::invalid("etag"),
        ),
        (
            "no reason",
            with(&|r| r.reason = "  ".into()),
            Refusal::invalid("reason"),
        ),
        (
            "a reason over 1000 characters",
            with(&|r| r.reason = "x".repeat(1001)),
            Refusal::invalid("reason"),
        ),
        (
            "no requester",
            with(&|r| r.requester = None),
            Refusal::invalid("requester"),
        ),
        (
            "an unknown patient",
            with(&|r| r.patient_id = missing.clone()),
            unknown(&missing),
        ),
    ];
    refuse_each!(client(&ctx), set_patient_confidentiality, table).await?;
    ensure_eq!(
        get(&ctx, &p.patient_id).await?,
        p.clone(),
        "the patient after the refused changes"
    );
    let regendered = update(
        &ctx,
        change(&p.patient_id, |c| c.gender = 1),
        &p.etag,
        &["gender"],
    )
    .await?;
    refused(
        client(&ctx).set_patient_confidentiality(stale).await,
        &refusal(Code::Aborted, "ETAG_MISMATCH"),
        "SetPatientConfidentiality(a stale etag)",
    )?;
    let target = create(&ctx, new_patient()).await?;
    let (merged, _) = merge(&ctx, &regendered, &target).await?;
    refused(
        client(&ctx)
            .set_patient_confidentiality(set_request(
                &merged,
                PatientConfidentiality::Restricted,
                officer(),
            ))
            .await,
        &merge_state("PATIENT_MERGED", &merged.patient_id),
        "SetPatientConfidentiality(a merged patient)",
    )
    .map(|_| ())
}

pub(super) async fn merges(ctx: Ctx) -> TestResult {
    let source = create(&ctx, new_patient()).await?;
    let source = set(&ctx, &source, PatientConfidentiality::Restricted).await?;
    let target = create(&ctx, new_patient()).await?;
    refused(
        client(&ctx)
            .merge_patients(merge_request(&source, &target))
            .await,
        &Refusal::new(Code::FailedPrecondition)
            .precondition("PATIENT_RESTRICTED", Some(&target.patient_id)),
        "MergePatients(a restricted source into an unrestricted target)",
    )?;
    ensure_eq!(
        get(&ctx, &source.patient_id).await?,
        source.clone(),
        "the source after the refused merge"
    );
    let target = set(&ctx, &target, PatientConfidentiality::Restricted).await?;
    let (merged_source, merged_target) = merge(&ctx, &source, &target).await?;
    ensure_eq!(
        (merged_source.confidentiality, merged_target.confidentiality),
        (RESTRICTED, RESTRICTED),
        "both stay restricted through the merge"
    );
    Ok(())
}
