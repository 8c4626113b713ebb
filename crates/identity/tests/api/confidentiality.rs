//! SetPatientConfidentiality: the restricted marker, who may set it, its history, and merges.

use carerecord_contracts::common::v1::{ChangeType, Requester};
use carerecord_contracts::identity::v1::*;
use tonic::Code;

use crate::helpers::*;

fn officer() -> Requester {
    Requester {
        user_id: "po-1".into(),
        organisation_ods_code: "RXX".into(),
        role_code: "R0001".into(),
        display_name: "Privacy Officer".into(),
    }
}

fn set(
    patient: &Patient,
    level: PatientConfidentiality,
    requester: Requester,
) -> SetPatientConfidentialityRequest {
    SetPatientConfidentialityRequest {
        patient_id: patient.patient_id.clone(),
        confidentiality: level as i32,
        etag: patient.etag.clone(),
        reason: "fleeing violence; PDS flag R".into(),
        requester: Some(requester),
    }
}

/// Sets the marker of `patient` (at the version read) to `level`, as `requester`.
async fn set_marker(
    c: &mut Client,
    patient: &Patient,
    level: PatientConfidentiality,
    requester: Requester,
) -> Result<tonic::Response<SetPatientConfidentialityResponse>, tonic::Status> {
    c.set_patient_confidentiality(set(patient, level, requester))
        .await
}

#[tokio::test]
async fn a_privacy_officer_restricts_and_lifts_with_history() {
    on_each_backend(async |c| {
        let p = create(c, patient("Ada", "Lovelace", (1985, 12, 10))).await;
        assert_eq!(
            p.confidentiality,
            PatientConfidentiality::Unrestricted as i32
        );
        assert_eq!(p.confidentiality_change, None);

        // A clerk may not; nothing is written.
        let status =
            refused(set_marker(c, &p, PatientConfidentiality::Restricted, requester()).await);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(metadata(&status, "required_roles"), "R0001");
        assert_eq!(get(c, &p.patient_id).await, p);

        let restricted = ok(set_marker(c, &p, PatientConfidentiality::Restricted, officer()).await)
            .patient
            .unwrap();
        assert_eq!(
            restricted.confidentiality,
            PatientConfidentiality::Restricted as i32
        );
        assert_eq!(restricted.version, 2);
        let change = restricted.confidentiality_change.clone().unwrap();
        assert_eq!(change.requester, Some(officer()));
        assert_eq!(change.reason, "fleeing violence; PDS flag R");
        assert_eq!(change.version, 2);
        assert_eq!(change.change_time, restricted.update_time);
        assert_eq!(get(c, &p.patient_id).await, restricted);

        // The same level again writes nothing; a stale etag is refused.
        let same = ok(set_marker(
            c,
            &restricted,
            PatientConfidentiality::Restricted,
            officer(),
        )
        .await);
        assert_eq!(same.patient.unwrap(), restricted);
        let status =
            refused(set_marker(c, &p, PatientConfidentiality::Unrestricted, officer()).await);
        assert_eq!(status.code(), Code::Aborted);

        // An update keeps the marker.
        let mut renamed = restricted.clone();
        renamed.names[0].given = vec!["Augusta".into()];
        let updated = ok(c
            .update_patient(update_request(
                renamed,
                &restricted.etag,
                &["names"],
                "married name",
            ))
            .await)
        .patient
        .unwrap();
        assert_eq!(
            updated.confidentiality,
            PatientConfidentiality::Restricted as i32
        );
        assert_eq!(updated.confidentiality_change, Some(change));

        let lifted =
            ok(set_marker(c, &updated, PatientConfidentiality::Unrestricted, officer()).await)
                .patient
                .unwrap();
        assert_eq!(
            lifted.confidentiality,
            PatientConfidentiality::Unrestricted as i32
        );

        // The history: who set it, when and why, and who lifted it.
        let history = versions(c, &p.patient_id).await;
        let marker: Vec<&PatientVersion> = history
            .iter()
            .filter(|v| {
                v.changed_fields
                    .as_ref()
                    .is_some_and(|m| m.paths == ["confidentiality"])
            })
            .collect();
        assert_eq!(marker.len(), 2);
        assert_eq!(marker[0].version, 2);
        assert_eq!(marker[0].change_type, ChangeType::Updated as i32);
        assert_eq!(marker[0].requester, Some(officer()));
        assert_eq!(marker[0].reason, "fleeing violence; PDS flag R");
        assert_eq!(
            marker[1].patient.as_ref().unwrap().confidentiality,
            PatientConfidentiality::Unrestricted as i32
        );
    })
    .await;
}

#[tokio::test]
async fn bad_requests_and_merged_patients_are_refused() {
    on_each_backend_with(
        &[("CARERECORD_CONFIDENTIALITY_ROLES", "R0001, R8008")],
        async |c| {
            let p = create(c, patient("Grace", "Hopper", (1976, 12, 9))).await;
            let status = refused(
                c.set_patient_confidentiality(SetPatientConfidentialityRequest {
                    patient_id: "nope".into(),
                    confidentiality: 0,
                    etag: String::new(),
                    reason: String::new(),
                    requester: None,
                })
                .await,
            );
            assert_eq!(status.code(), Code::InvalidArgument);
            let mut fields = violations(&status);
            fields.sort();
            assert_eq!(
                fields,
                [
                    "confidentiality",
                    "etag",
                    "patient_id",
                    "reason",
                    "requester"
                ]
            );
            let mut unknown = set(&p, PatientConfidentiality::Restricted, officer());
            unknown.confidentiality = 7;
            unknown.reason = "x".repeat(1001);
            let status = refused(c.set_patient_confidentiality(unknown).await);
            assert_eq!(violations(&status), ["confidentiality", "reason"]);

            // Both configured roles may; an unknown patient is NOT_FOUND.
            let mut manager = officer();
            manager.role_code = "R8008".into();
            let mut missing = set(&p, PatientConfidentiality::Restricted, manager.clone());
            missing.patient_id = request_id();
            let status = refused(c.set_patient_confidentiality(missing).await);
            assert_eq!(status.code(), Code::NotFound);
            let status =
                refused(set_marker(c, &p, PatientConfidentiality::Restricted, requester()).await);
            assert_eq!(metadata(&status, "required_roles"), "R0001,R8008");

            // A restricted source is not merged into an unrestricted target; restricting the target
            // first lets it, and a merged patient's marker cannot change.
            let source = ok(set_marker(c, &p, PatientConfidentiality::Restricted, manager).await)
                .patient
                .unwrap();
            let target = create(c, patient("Grace B", "Hopper", (1976, 12, 9))).await;
            let merge = |target: &Patient| MergePatientsRequest {
                request_id: request_id(),
                source_patient_id: source.patient_id.clone(),
                target_patient_id: target.patient_id.clone(),
                reason: "duplicate registration".into(),
                requester: Some(requester()),
                ..Default::default()
            };
            let status = refused(c.merge_patients(merge(&target)).await);
            assert_eq!(status.code(), Code::FailedPrecondition);
            let violation = precondition(&status);
            assert_eq!(
                (violation.r#type.as_str(), violation.subject.as_str()),
                ("PATIENT_RESTRICTED", target.patient_id.as_str())
            );
            let target =
                ok(set_marker(c, &target, PatientConfidentiality::Restricted, officer()).await)
                    .patient
                    .unwrap();
            let merged = ok(c.merge_patients(merge(&target)).await);
            let merged_source = merged.source_patient.unwrap();
            let status = refused(
                set_marker(
                    c,
                    &merged_source,
                    PatientConfidentiality::Unrestricted,
                    officer(),
                )
                .await,
            );
            assert_eq!(precondition(&status).r#type, "PATIENT_MERGED");
        },
    )
    .await;
}
