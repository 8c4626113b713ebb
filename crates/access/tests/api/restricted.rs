//! Restricted patients: summaries say so, postcode searches do not find them, and every find or
//! read of their record goes to the privacy officer's review queue.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::identity::v1 as identity;
use carerecord_platform::testing::TestDatabase;
use tonic::Code;

use crate::support::*;

fn restrict(app: &TestApp, patient_id: &str) {
    let mut world = app.fakes.world.lock().unwrap();
    let patient = world.patients.get_mut(patient_id).unwrap();
    patient.confidentiality = identity::PatientConfidentiality::Restricted as i32;
    patient.addresses = vec![common::Address {
        lines: vec!["1 Safe House Lane".into()],
        postal_code: "LS1 4AP".into(),
        ..Default::default()
    }];
}

fn by_demographics(postcode: &str) -> Option<api::PatientReference> {
    Some(api::PatientReference {
        reference: Some(api::patient_reference::Reference::Demographics(
            api::Demographics {
                given: "Alex".into(),
                family: "Hidden".into(),
                birth_date: Some(common::Date {
                    year: 1970,
                    month: 5,
                    day: 17,
                }),
                postal_code: postcode.into(),
                ..Default::default()
            },
        )),
    })
}

fn find(patient: Option<api::PatientReference>) -> api::FindPatientRequest {
    api::FindPatientRequest {
        patient,
        purpose_of_use: "TREAT".into(),
    }
}

async fn events(app: &TestApp, kind: api::ReviewEventKind) -> Vec<api::BreakGlassEvent> {
    let officer = token(&Claims::privacy_officer());
    let mut client = app.client.clone();
    let request = api::ListBreakGlassEventsRequest {
        kind: kind as i32,
        ..Default::default()
    };
    client
        .list_break_glass_events(authed(request, &officer))
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test]
async fn restricted_patients_are_hidden_from_postcode_searches_and_every_read_is_reviewed() {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app(&db.url).await;
        let hidden = app.fakes.add_patient("9434765919", "Hidden");
        app.fakes
            .add_record(&hidden, "Observation", &[], Some(1_600_000_000));
        restrict(&app, &hidden);
        let open = app.fakes.add_patient("9990000018", "Open");
        let clinician = token(&Claims::clinician("user/*.rs"));

        // A demographic search naming a postcode does not find them, as if they were not registered.
        let status = app
            .find(find(by_demographics("LS1 4AP")), &clinician)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(error_info(&status).reason, "PATIENT_NOT_FOUND");
        // Without a postcode, or by NHS number, they are found, marked restricted, with no address.
        let found = app
            .find(find(by_demographics("")), &clinician)
            .await
            .unwrap();
        assert_eq!(
            (found.patient.unwrap().patient_id.as_str(), found.restricted),
            (hidden.as_str(), true)
        );
        let by_nhs = api::PatientReference {
            reference: Some(api::patient_reference::Reference::NhsNumber(
                "9434765919".into(),
            )),
        };
        app.find(find(Some(by_nhs)), &clinician).await.unwrap();
        let disclosed = app.read(read(&hidden, "TREAT"), &clinician).await.unwrap();
        assert_eq!(disclosed.records.len(), 1);
        // An unrestricted patient's find is not reviewed.
        let found = app
            .find(find(patient_ref(&open)), &clinician)
            .await
            .unwrap();
        assert!(!found.restricted);

        // The review queue: the postcode search that matched them, both finds and the read.
        let flagged = events(&app, api::ReviewEventKind::RestrictedPatient).await;
        let actions: Vec<i32> = flagged.iter().map(|e| e.action).collect();
        let find_action = api::AuditAction::FindPatient as i32;
        assert_eq!(
            actions,
            [
                find_action,
                find_action,
                find_action,
                api::AuditAction::Read as i32
            ]
        );
        assert!(flagged.iter().all(|e| e.patient_id == hidden
            && e.restricted_patient
            && e.reason.is_empty()
            && e.kind == api::ReviewEventKind::RestrictedPatient as i32
            && e.requester.as_ref().unwrap().user_id == "dr-who"));
        assert_eq!(flagged[0].outcome, api::AuditOutcome::Failed as i32);
        assert_eq!(flagged[3].event_id, disclosed.audit_entry_id);
        assert_eq!(flagged[3].returned_count, 1);
        assert!(
            events(&app, api::ReviewEventKind::BreakGlass)
                .await
                .is_empty()
        );

        // Reviewed like a break-glass event.
        let officer = token(&Claims::privacy_officer());
        let reviewed = app
            .review(
                api::ReviewBreakGlassEventRequest {
                    event_id: flagged[3].event_id.clone(),
                    etag: flagged[3].etag.clone(),
                    outcome: api::BreakGlassReviewOutcome::Appropriate as i32,
                    notes: String::new(),
                },
                &officer,
            )
            .await
            .unwrap()
            .event
            .unwrap();
        assert!(reviewed.reviewed);
        assert_eq!(
            reviewed.kind,
            api::ReviewEventKind::RestrictedPatient as i32
        );

        // Breaking glass on them is one event, of kind BREAK_GLASS, marked restricted.
        let glass = app
            .break_glass_read(
                api::BreakGlassReadPatientRecordRequest {
                    patient: patient_ref(&hidden),
                    reason: "Unconscious in ED, need medication history".into(),
                    ..Default::default()
                },
                &clinician,
            )
            .await
            .unwrap();
        let broken = events(&app, api::ReviewEventKind::BreakGlass).await;
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].event_id, glass.audit_entry_id);
        assert!(broken[0].restricted_patient);
        assert_eq!(
            events(&app, api::ReviewEventKind::Unspecified).await.len(),
            5
        );

        // The patient reading their own record is not flagged.
        let mut own = Claims::clinician("patient/*.rs");
        own.sub = "nhs-login-1".into();
        own.org = String::new();
        own.role = String::new();
        own.patient = hidden.clone();
        app.read(read(&hidden, "PATRQT"), &token(&own))
            .await
            .unwrap();
        assert_eq!(
            events(&app, api::ReviewEventKind::Unspecified).await.len(),
            5
        );

        // An unknown kind is invalid.
        let status = app
            .break_glass_events(
                api::ListBreakGlassEventsRequest {
                    kind: 9,
                    ..Default::default()
                },
                &officer,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
