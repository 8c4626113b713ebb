//! A restricted patient across the real services, on both backends: a privacy officer marks them
//! restricted in identity (the change in its history), a postcode search through the front door
//! no longer finds them while other lookups do (summaries saying restricted), and every find and
//! read of their record waits in the privacy officer's review queue, where it is reviewed.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::common::v1::{Address, Requester};
use carerecord_contracts::identity::v1 as identity;
use carerecord_e2e::{Overrides, Platform, authed, by_id, new_patient, read_request, token, uuid};
use tonic::Code;

fn officer() -> Requester {
    Requester {
        user_id: "e2e-privacy-officer".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R0001".into(),
        display_name: "Privacy Officer".into(),
    }
}

/// The patient's demographics as a find gives them, with `postcode` (none when empty).
fn demographics(patient: &identity::Patient, postcode: &str) -> Option<api::PatientReference> {
    Some(api::PatientReference {
        reference: Some(Reference::Demographics(api::Demographics {
            given: patient.names[0].given[0].clone(),
            family: patient.names[0].family.clone(),
            birth_date: patient.birth_date,
            gender: patient.gender,
            postal_code: postcode.into(),
        })),
    })
}

fn find(patient: Option<api::PatientReference>) -> api::FindPatientRequest {
    api::FindPatientRequest {
        patient,
        purpose_of_use: "TREAT".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_patient_is_hidden_from_postcode_searches_and_every_access_is_reviewed() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let family = format!("Restricted{}", &uuid()[..8]);
        let mut ids = platform.identity_client().await;
        let patient = identity::Patient {
            addresses: vec![Address {
                lines: vec!["4 Refuge Road".into()],
                city: "Leeds".into(),
                postal_code: "LS6 2AB".into(),
                ..Default::default()
            }],
            ..new_patient("Rowan", &family)
        };
        let patient = platform.register(patient, officer()).await;
        let id = patient.patient_id.clone();
        platform.add_record(&id, &[]).await;
        let clinician = token("R8000", "user/*.rs");
        let mut access = platform.access_client().await;

        // Before the restriction, the postcode search finds them.
        let found = access
            .find_patient(authed(find(demographics(&patient, "LS6 2AB")), &clinician))
            .await
            .expect("found by postcode before the restriction")
            .into_inner();
        assert_eq!(found.patient.unwrap().patient_id, id, "{backend:?}");

        // A clerk may not restrict; the privacy officer does, with a reason kept in history.
        let set = |etag: &str, requester: Requester| identity::SetPatientConfidentialityRequest {
            patient_id: id.clone(),
            confidentiality: identity::PatientConfidentiality::Restricted as i32,
            etag: etag.to_owned(),
            reason: "fleeing violence; PDS flag R".into(),
            requester: Some(requester),
        };
        let clerk = Requester {
            role_code: "R8008".into(),
            ..officer()
        };
        let status = ids
            .set_patient_confidentiality(set(&patient.etag, clerk))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        ids.set_patient_confidentiality(set(&patient.etag, officer()))
            .await
            .expect("restrict");
        let history = ids
            .list_patient_versions(identity::ListPatientVersionsRequest {
                patient_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .versions;
        let last = history.last().unwrap();
        assert_eq!(last.requester, Some(officer()));
        assert_eq!(last.reason, "fleeing violence; PDS flag R");

        // Through the front door: the postcode search no longer finds them; other lookups do.
        let status = access
            .find_patient(authed(find(demographics(&patient, "LS6 2AB")), &clinician))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{backend:?}");
        let by_name = access
            .find_patient(authed(find(demographics(&patient, "")), &clinician))
            .await
            .expect("found without a postcode")
            .into_inner();
        assert!(by_name.restricted && by_name.patient.unwrap().patient_id == id);
        let read = access
            .read_patient_record(authed(read_request(by_id(&id), "TREAT"), &clinician))
            .await
            .expect("read")
            .into_inner();
        assert_eq!(read.records.len(), 1);

        // The review queue holds the refused postcode search, the find and the read.
        let po = token("R0001", "user/AuditEvent.ru");
        let events = access
            .list_break_glass_events(authed(
                api::ListBreakGlassEventsRequest {
                    patient_id: id.clone(),
                    kind: api::ReviewEventKind::RestrictedPatient as i32,
                    ..Default::default()
                },
                &po,
            ))
            .await
            .expect("review queue")
            .into_inner()
            .events;
        let calls: Vec<(i32, i32)> = events.iter().map(|e| (e.action, e.outcome)).collect();
        let find_action = api::AuditAction::FindPatient as i32;
        assert_eq!(
            calls,
            [
                (find_action, api::AuditOutcome::Failed as i32),
                (find_action, api::AuditOutcome::Disclosed as i32),
                (
                    api::AuditAction::Read as i32,
                    api::AuditOutcome::Disclosed as i32
                ),
            ],
            "{backend:?}"
        );
        assert_eq!(events[2].event_id, read.audit_entry_id);
        let reviewed = access
            .review_break_glass_event(authed(
                api::ReviewBreakGlassEventRequest {
                    event_id: events[0].event_id.clone(),
                    etag: events[0].etag.clone(),
                    outcome: api::BreakGlassReviewOutcome::FollowUpRequired as i32,
                    notes: "postcode search for a restricted patient: ask the clinician why".into(),
                },
                &po,
            ))
            .await
            .expect("review")
            .into_inner()
            .event
            .unwrap();
        assert!(reviewed.reviewed && reviewed.restricted_patient);
    }
}
