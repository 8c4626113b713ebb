use carerecord_contracts::access::v1::{
    BreakGlassReadPatientRecordRequest, ListBreakGlassEventsRequest, ReadPatientRecordRequest,
};
use carerecord_contracts::consent::v1::{ConsentDecision, Provision};
use carerecord_e2e::{Overrides, Platform, authed, by_nhs, read_request, token};
use tonic::Code;

fn read(nhs_number: &str) -> ReadPatientRecordRequest {
    ReadPatientRecordRequest {
        page_size: 100,
        ..read_request(by_nhs(nhs_number), "TREAT")
    }
}

/// Reads the patient's record by NHS number with `token`, requiring the read refused with `code`.
async fn read_refused(platform: &Platform, nhs_number: &str, token: &str, code: Code) {
    let refused = platform
        .access_client()
        .await
        .read_patient_record(authed(read(nhs_number), token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), code, "{:?}: {refused:?}", platform.backend);
}

#[tokio::test]
async fn a_permitted_read_returns_the_record_and_withholds_what_the_patient_withholds() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (patient_id, nhs) = platform.register_patient("Ada", "Lovelace").await;
        let observation = platform.add_record(&patient_id, &[]).await;
        platform.add_record(&patient_id, &["mental-health"]).await;
        // Share everything except mental-health data.
        let withhold = Provision {
            data_classes: vec!["mental-health".into()],
            ..Default::default()
        };
        platform
            .record_directive(&patient_id, ConsentDecision::Permit, vec![withhold])
            .await;

        let clinician = token("R8000", "user/*.rs");
        let response = platform
            .access_client()
            .await
            .read_patient_record(authed(read(&nhs), &clinician))
            .await;
        let response = response
            .unwrap_or_else(|s| panic!("{:?}: read failed: {s:?}", platform.backend))
            .into_inner();
        assert_eq!(response.patient_id, patient_id);
        let returned: Vec<&str> = response
            .records
            .iter()
            .map(|r| r.record_id.as_str())
            .collect();
        assert_eq!(returned, [observation.as_str()], "{:?}", platform.backend);
        let summary = response.disclosure.expect("disclosure summary");
        assert_eq!(
            (summary.returned_count, summary.withheld_count),
            (1, 1),
            "{:?}",
            platform.backend
        );
        assert!(!response.audit_entry_id.is_empty());
    }
}

#[tokio::test]
async fn dissent_refuses_a_read_and_break_glass_overrides_it_for_review() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (patient_id, nhs) = platform.register_patient("Grace", "Hopper").await;
        platform.add_record(&patient_id, &[]).await;
        platform
            .record_directive(&patient_id, ConsentDecision::Deny, vec![])
            .await;
        let clinician = token("R8000", "user/*.rs");
        read_refused(&platform, &nhs, &clinician, Code::PermissionDenied).await;
        let mut access = platform.access_client().await;

        let emergency = BreakGlassReadPatientRecordRequest {
            patient: by_nhs(&nhs),
            reason: "unconscious in ED, anticoagulant status needed".into(),
            page_size: 100,
            ..Default::default()
        };
        let response = access
            .break_glass_read_patient_record(authed(emergency, &clinician))
            .await;
        let response = response
            .unwrap_or_else(|s| panic!("{:?}: break-glass failed: {s:?}", platform.backend))
            .into_inner();
        assert_eq!(response.records.len(), 1);

        let officer = token("R0001", "user/*.rs");
        let events = access
            .list_break_glass_events(authed(
                ListBreakGlassEventsRequest {
                    patient_id: patient_id.clone(),
                    page_size: 10,
                    ..Default::default()
                },
                &officer,
            ))
            .await
            .expect("privacy officer lists break-glass events")
            .into_inner()
            .events;
        assert_eq!(events.len(), 1, "{:?}", platform.backend);
        assert_eq!(events[0].patient_id, patient_id);

        let not_officer = access
            .list_break_glass_events(authed(
                ListBreakGlassEventsRequest {
                    page_size: 10,
                    ..Default::default()
                },
                &clinician,
            ))
            .await
            .unwrap_err();
        assert_eq!(not_officer.code(), Code::PermissionDenied);
    }
}

#[tokio::test]
async fn forged_and_unscoped_tokens_are_refused() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (_, nhs) = platform.register_patient("Alan", "Turing").await;
        let mut access = platform.access_client().await;

        let missing = access.read_patient_record(read(&nhs)).await.unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);

        let valid = token("R8000", "user/*.rs");
        let (head, signature) = valid.rsplit_once('.').expect("a JWT");
        let forged = format!("{head}.{}", signature.chars().rev().collect::<String>());
        read_refused(&platform, &nhs, &forged, Code::Unauthenticated).await;

        // Allowed to create encounters, not to read anything.
        let unscoped = token("R8000", "user/Encounter.c");
        read_refused(&platform, &nhs, &unscoped, Code::PermissionDenied).await;
    }
}

#[tokio::test]
async fn with_consent_down_nothing_is_disclosed_and_the_attempt_is_audited() {
    // A port with nothing listening: consent is unreachable.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for platform in Platform::each_backend(Overrides {
        consent: Some(dead.clone()),
        ..Default::default()
    })
    .await
    {
        let (patient_id, nhs) = platform.register_patient("Mary", "Seacole").await;
        platform.add_record(&patient_id, &[]).await;
        let clinician = token("R8000", "user/*.rs");
        read_refused(&platform, &nhs, &clinician, Code::Unavailable).await;

        let officer = token("R0001", "user/*.rs");
        let entries = platform.audit_entries(&officer).await;
        let leaf = entries
            .last()
            .and_then(|e| e.leaf.clone())
            .expect("the refused attempt is in the audit log");
        assert_eq!(leaf.patient_id, patient_id);
        assert!(
            leaf.returned_records.is_empty() && leaf.returned_count == 0,
            "nothing disclosed"
        );
    }
}
