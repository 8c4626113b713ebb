//! Break glass: overriding dissent for clinical roles, events, review by privacy officers.

use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::TestDatabase;
use tonic::Code;

use crate::support::*;

fn break_glass(patient_id: &str, reason: &str) -> api::BreakGlassReadPatientRecordRequest {
    api::BreakGlassReadPatientRecordRequest {
        patient: patient_ref(patient_id),
        reason: reason.into(),
        legal_basis: api::LegalBasis::VitalInterests as i32,
        ..Default::default()
    }
}

const REASON: &str = "Unconscious in ED, need medication history";

#[tokio::test]
async fn break_glass_overrides_dissent_and_is_reviewed() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.add_patient("9434765919", "Smith");
        app.fakes
            .add_record(&p, "MedicationStatement", &[], Some(1_600_000_000));
        app.fakes.world.lock().unwrap().dissent.insert(p.clone());
        let clinician = token(&Claims::clinician("user/*.rs"));

        let response = app
            .break_glass_read(break_glass(&p, REASON), &clinician)
            .await
            .unwrap();
        assert_eq!(response.records.len(), 1);
        assert_eq!(
            response.decision.unwrap().outcome,
            api::DecisionOutcome::PermitBreakGlass as i32
        );
        let leaf = audit_leaf(&mut app, response.audit_index).await;
        assert_eq!(leaf.action, api::AuditAction::BreakGlassRead as i32);
        assert_eq!(leaf.purpose_of_use, "ETREAT");
        assert_eq!(leaf.break_glass_reason, REASON);

        // A reason too short is invalid (and not audited); a non-clinical role is refused (and audited).
        let status = app
            .break_glass_read(break_glass(&p, "  urgent  "), &clinician)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let mut receptionist = Claims::clinician("user/*.rs");
        receptionist.sub = "reception-1".into();
        receptionist.role = "R8008".into();
        let status = app
            .break_glass_read(break_glass(&p, REASON), &token(&receptionist))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = error_info(&status);
        assert_eq!(info.reason, "ROLE_NOT_PERMITTED");
        assert_eq!(info.metadata["required_roles"], "R8000,R8001,R8003");

        // The privacy officer sees both attempts, oldest first.
        let officer = token(&Claims::privacy_officer());
        let list_events = |request: api::ListBreakGlassEventsRequest, token: &str| {
            let request = authed(request, token);
            let mut client = app.client.clone();
            async move { client.list_break_glass_events(request).await }
        };
        let events = list_events(Default::default(), &officer)
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_id, response.audit_entry_id);
        assert_eq!(events[0].outcome, api::AuditOutcome::Disclosed as i32);
        assert_eq!(events[0].returned_count, 1);
        assert_eq!(events[0].reason, REASON);
        assert!(!events[0].reviewed);
        assert_eq!(events[1].outcome, api::AuditOutcome::Refused as i32);
        assert_eq!(events[1].requester.as_ref().unwrap().user_id, "reception-1");

        // Clinicians cannot list events.
        let status = list_events(Default::default(), &clinician)
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "ROLE_NOT_PERMITTED");

        // Review: notes required for INAPPROPRIATE; stale etag aborted; self-review refused.
        let review = |etag: &str, outcome: api::BreakGlassReviewOutcome, token: &str| {
            let request = authed(
                api::ReviewBreakGlassEventRequest {
                    event_id: events[0].event_id.clone(),
                    etag: etag.into(),
                    outcome: outcome as i32,
                    notes: String::new(),
                },
                token,
            );
            let mut client = app.client.clone();
            async move { client.review_break_glass_event(request).await }
        };
        use api::BreakGlassReviewOutcome::{Appropriate, Inappropriate};
        let status = review(&events[0].etag, Inappropriate, &officer)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let reviewed = review(&events[0].etag, Appropriate, &officer)
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
        assert!(reviewed.reviewed);
        assert_eq!(reviewed.version, 2);
        assert_ne!(reviewed.etag, events[0].etag);
        let review_entry = reviewed.review.as_ref().unwrap().audit_entry_id.clone();
        assert!(!review_entry.is_empty());
        let status = review(&events[0].etag, Appropriate, &officer)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(error_info(&status).reason, "ETAG_MISMATCH");

        let self_reviewer = token(&Claims {
            sub: "dr-who".into(),
            ..Claims::privacy_officer()
        });
        let status = review(&reviewed.etag, Appropriate, &self_reviewer)
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "SELF_REVIEW");

        // The privacy officer's listing by review state, of every patient or of one.
        let by_review = async |patient_id: &str, filter: api::BreakGlassReviewFilter| {
            let request = api::ListBreakGlassEventsRequest {
                patient_id: patient_id.into(),
                review_filter: filter as i32,
                ..Default::default()
            };
            let listed = list_events(request, &officer).await.unwrap();
            listed.into_inner().events
        };
        let unreviewed = by_review("", api::BreakGlassReviewFilter::Unreviewed).await;
        assert_eq!(unreviewed.len(), 1);
        assert_eq!(
            unreviewed[0].requester.as_ref().unwrap().user_id,
            "reception-1"
        );
        let for_patient = by_review(&p, api::BreakGlassReviewFilter::Reviewed).await;
        assert_eq!(for_patient.len(), 1);
        assert_eq!(
            for_patient[0]
                .review
                .as_ref()
                .unwrap()
                .reviewer
                .as_ref()
                .unwrap()
                .user_id,
            "po-1"
        );
    }
}
