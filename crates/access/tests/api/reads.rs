//! FindPatient and ReadPatientRecord: permitted, denied, withheld, merged, failing closed.

use std::sync::atomic::Ordering;

use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::{TestDatabase, violations};
use tonic::Code;

use crate::support::*;

fn find_by_nhs_number(nhs_number: &str, purpose: &str) -> api::FindPatientRequest {
    api::FindPatientRequest {
        patient: Some(api::PatientReference {
            reference: Some(api::patient_reference::Reference::NhsNumber(
                nhs_number.into(),
            )),
        }),
        purpose_of_use: purpose.into(),
    }
}

fn disclosures_of(patient_id: &str) -> api::ListDisclosuresRequest {
    api::ListDisclosuresRequest {
        patient: patient_ref(patient_id),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_permitted_read_discloses_in_order_and_is_audited() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.add_patient("9434765919", "Smith");
        let old = app
            .fakes
            .add_record(&p, "Observation", &[], Some(1_600_000_000));
        let new = app
            .fakes
            .add_record(&p, "Condition", &[], Some(1_700_000_000));
        let none = app.fakes.add_record(&p, "Observation", &[], None);
        let other = app.fakes.add_patient("9876543210", "Jones");
        app.fakes
            .add_record(&other, "Observation", &[], Some(1_650_000_000));
        let clinician = token(&Claims::clinician("user/*.rs"));

        let mut request = authed(read(&p, "TREAT"), &clinician);
        request.metadata_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let response = app
            .client
            .read_patient_record(request)
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = response
            .records
            .iter()
            .map(|r| r.record_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [new.as_str(), old.as_str(), none.as_str()],
            "{:?}",
            db.backend
        );
        assert_eq!(response.patient_id, p);
        let disclosure = response.disclosure.unwrap();
        assert_eq!(
            (disclosure.returned_count, disclosure.withheld_count),
            (3, 0)
        );
        assert_eq!(
            response.decision.unwrap().outcome,
            api::DecisionOutcome::Permit as i32
        );
        assert!(response.next_page_token.is_empty());

        let leaf = audit_leaf(&mut app, response.audit_index).await;
        assert_eq!(leaf.entry_id, response.audit_entry_id);
        assert_eq!(leaf.action, api::AuditAction::Read as i32);
        assert_eq!(leaf.outcome, api::AuditOutcome::Disclosed as i32);
        assert_eq!(leaf.patient_id, p);
        assert_eq!(leaf.purpose_of_use, "TREAT");
        assert_eq!(leaf.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(leaf.requester.unwrap().user_id, "dr-who");
        assert_eq!(leaf.client_id, "test-client");
        assert_eq!(leaf.returned_records.len(), 3);

        // Paging: one record per page, each page its own audit entry, the token bound to the request.
        let mut request = read(&p, "TREAT");
        request.page_size = 2;
        let first = app.read(request.clone(), &clinician).await.unwrap();
        assert_eq!(first.records.len(), 2);
        assert!(!first.next_page_token.is_empty());
        request.page_token = first.next_page_token.clone();
        let second = app.read(request.clone(), &clinician).await.unwrap();
        assert_eq!(second.records.len(), 1);
        assert!(second.next_page_token.is_empty());
        assert!(second.audit_index > first.audit_index);
        request.purpose_of_use = "HOPERAT".into();
        let status = app.read(request, &clinician).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(error_info(&status).reason, "INVALID_PAGE_TOKEN");
        assert_eq!(error_info(&status).domain, "carerecord.access.v1");
    }
}

#[tokio::test]
async fn find_patient_by_nhs_number_and_demographics() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.add_patient("9434765919", "Smith");
        let clinician = token(&Claims::clinician("user/Patient.rs"));
        let by_nhs = find_by_nhs_number("943 476 5919", "TREAT");
        let found = app.find(by_nhs.clone(), &clinician).await.unwrap();
        assert_eq!(found.patient.unwrap().patient_id, p);
        let leaf = audit_leaf(&mut app, found.audit_index).await;
        assert_eq!(leaf.action, api::AuditAction::FindPatient as i32);
        assert_eq!(
            leaf.reference_kind,
            api::PatientReferenceKind::NhsNumber as i32
        );

        let demographics = api::FindPatientRequest {
            patient: Some(api::PatientReference {
                reference: Some(api::patient_reference::Reference::Demographics(
                    api::Demographics {
                        family: "smith".into(),
                        birth_date: Some(carerecord_contracts::common::v1::Date {
                            year: 1970,
                            month: 5,
                            day: 17,
                        }),
                        ..Default::default()
                    },
                )),
            }),
            purpose_of_use: "TREAT".into(),
        };
        let found = app.find(demographics.clone(), &clinician).await.unwrap();
        assert_eq!(found.patient.unwrap().patient_id, p);
        // A second Smith born the same day makes the match ambiguous.
        let twin = app.fakes.add_patient("", "Smith");
        assert_ne!(twin, p);
        let status = app.find(demographics, &clinician).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(error_info(&status).reason, "PATIENT_MATCH_AMBIGUOUS");
        let leaf = audit_leaf(&mut app, audit_index(&status)).await;
        assert_eq!(leaf.outcome, api::AuditOutcome::Failed as i32);

        // An NHS number another supplier's index holds for two patients: ambiguous, audited.
        app.fakes.add_patient("9990000026", "Twin");
        app.fakes.add_patient("9990000026", "Twin");
        let status = app
            .find(find_by_nhs_number("9990000026", "TREAT"), &clinician)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(error_info(&status).reason, "PATIENT_MATCH_AMBIGUOUS");
        let leaf = audit_leaf(&mut app, audit_index(&status)).await;
        assert_eq!(leaf.outcome, api::AuditOutcome::Failed as i32);

        // Unknown NHS number: NOT_FOUND, audited; bad check digit: INVALID_ARGUMENT, not audited.
        let unknown = find_by_nhs_number("9876543210", "TREAT");
        let status = app.find(unknown, &clinician).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(error_info(&status).reason, "PATIENT_NOT_FOUND");
        let bad = find_by_nhs_number("9434765918", "WHATEVER");
        let status = app.find(bad, &clinician).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            violations(&status),
            ["patient.nhs_number", "purpose_of_use"]
        );
        assert_eq!(error_info(&status).reason, "INVALID_REQUEST");
        assert!(!error_info(&status).metadata.contains_key("audit_index"));
    }
}

#[tokio::test]
async fn a_denied_read_discloses_nothing_and_is_audited_as_refused() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.patient_with_an_observation();
        app.fakes.world.lock().unwrap().dissent.insert(p.clone());
        let clinician = token(&Claims::clinician("user/*.rs"));
        let status = app.refused_read(&p, "TREAT", &clinician).await;
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = error_info(&status);
        assert_eq!(info.reason, "CONSENT_DENIED");
        assert_eq!(info.metadata["decision_outcome"], "DENY");
        assert_eq!(info.metadata["reason_codes"], "patient-dissent");
        let leaf = audit_leaf(&mut app, audit_index(&status)).await;
        assert_eq!(leaf.entry_id, info.metadata["audit_entry_id"]);
        assert_eq!(leaf.outcome, api::AuditOutcome::Refused as i32);
        assert_eq!(leaf.status_code, Code::PermissionDenied as i32);
        assert_eq!(leaf.error_reason, "CONSENT_DENIED");
        assert!(leaf.returned_records.is_empty());
        assert_eq!(
            leaf.decision.unwrap().outcome,
            api::DecisionOutcome::Deny as i32
        );
    }
}

#[tokio::test]
async fn withheld_data_classes_are_counted_not_revealed() {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app(&db.url).await;
        let p = app.fakes.patient_with_an_observation();
        app.fakes
            .add_record(&p, "Condition", &["mental-health"], Some(1_600_000_001));
        app.fakes.add_record(
            &p,
            "Condition",
            &["hiv", "mental-health"],
            Some(1_600_000_002),
        );
        app.fakes
            .add_record(&p, "Observation", &["sexual-health"], Some(1_600_000_003));
        app.fakes
            .world
            .lock()
            .unwrap()
            .withhold
            .insert(p.clone(), vec!["mental-health".into()]);
        let clinician = token(&Claims::clinician("user/*.rs"));
        let mut client = app.client.clone();
        let response = client
            .read_patient_record(authed(read(&p, "TREAT"), &clinician))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.records.len(), 2);
        assert!(
            response
                .records
                .iter()
                .all(|r| !r.data_classes.contains(&"mental-health".to_owned()))
        );
        let disclosure = response.disclosure.unwrap();
        assert_eq!(
            (disclosure.returned_count, disclosure.withheld_count),
            (2, 2)
        );
        assert_eq!(
            disclosure.withheld_by_rule,
            [api::WithheldCount {
                reason_code: "patient-dissent".into(),
                count: 2
            }]
        );
        let decision = response.decision.unwrap();
        assert_eq!(decision.outcome, api::DecisionOutcome::PermitPartial as i32);
        assert!(decision.obligations.contains(&"PERSISTLABEL".to_owned()));
    }
}

#[tokio::test]
async fn a_merged_patient_id_resolves_to_the_survivor_with_both_records() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let survivor = app.fakes.add_patient("9434765919", "Smith");
        let duplicate = app.fakes.add_patient("", "Smith");
        let a = app
            .fakes
            .add_record(&survivor, "Observation", &[], Some(1_600_000_000));
        let b = app
            .fakes
            .add_record(&duplicate, "Observation", &[], Some(1_600_000_100));
        app.fakes.merge(&duplicate, &survivor);
        let clinician = token(&Claims::clinician("user/Observation.rs"));
        let mut request = read(&duplicate, "TREAT");
        request.resource_types = vec!["Observation".into()];
        let first = app.read(request.clone(), &clinician).await.unwrap();
        assert_eq!(first.patient_id, survivor);
        assert_eq!(first.resolved_from_merged_patient_id, duplicate);
        let mut ids: Vec<String> = first.records.iter().map(|r| r.record_id.clone()).collect();
        let mut token = first.next_page_token.clone();
        while !token.is_empty() {
            request.page_token = token;
            let page = app.read(request.clone(), &clinician).await.unwrap();
            ids.extend(page.records.iter().map(|r| r.record_id.clone()));
            token = page.next_page_token;
        }
        ids.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(ids, expected);
        let leaf = audit_leaf(&mut app, first.audit_index).await;
        assert_eq!(leaf.patient_id, survivor);
        assert_eq!(leaf.resolved_from_merged_patient_id, duplicate);
    }
}

#[tokio::test]
async fn patient_facing_tokens_read_only_their_own_record() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let me = app.fakes.add_patient("9434765919", "Smith");
        let someone = app.fakes.add_patient("9876543210", "Jones");
        app.fakes
            .add_record(&me, "Observation", &[], Some(1_600_000_000));
        let patient_token = token(&Claims {
            sub: "nhs-login-1".into(),
            org: String::new(),
            role: String::new(),
            scope: "patient/*.rs patient/AuditEvent.r".into(),
            patient: me.clone(),
            exp_offset: 300,
        });
        let status = app.refused_read(&me, "TREAT", &patient_token).await;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "patient-facing tokens must use PATRQT"
        );
        let mine = app.read(read(&me, "PATRQT"), &patient_token).await.unwrap();
        assert_eq!(mine.records.len(), 1);
        let status = app.refused_read(&someone, "PATRQT", &patient_token).await;
        assert_eq!(error_info(&status).reason, "PATIENT_CONTEXT_MISMATCH");

        // The patient's disclosure log shows the clinician's read and their own.
        let clinician = token(&Claims::clinician("user/*.rs"));
        app.read(read(&me, "TREAT"), &clinician).await.unwrap();
        let log = app
            .disclosures(disclosures_of(&me), &patient_token)
            .await
            .unwrap();
        let users: Vec<String> = log
            .disclosures
            .iter()
            .map(|d| d.requester.clone().unwrap().user_id)
            .collect();
        assert_eq!(users, ["dr-who", "nhs-login-1"], "newest first");
        assert!(log.disclosures[0].audit_index > log.disclosures[1].audit_index);
        let leaf = audit_leaf(&mut app, log.audit_index).await;
        assert_eq!(leaf.action, api::AuditAction::ListDisclosures as i32);
        assert_eq!(leaf.purpose_of_use, "PATRQT");
        let status = app
            .disclosures(disclosures_of(&someone), &patient_token)
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "PATIENT_CONTEXT_MISMATCH");
    }
}

#[tokio::test]
async fn a_client_that_stops_waiting_is_audited_as_failed() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.patient_with_an_observation();
        app.fakes.consent_delay_ms.store(400, Ordering::SeqCst);
        let clinician = token(&Claims::clinician("user/*.rs"));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut impatient = api::data_access_service_client::DataAccessServiceClient::new(channel);
        let mut request = authed(read(&p, "TREAT"), &clinician);
        request.set_timeout(std::time::Duration::from_millis(100));
        let status = impatient.read_patient_record(request).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        // The call runs on, finds its client gone, and is audited as failed with nothing returned.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        app.fakes.consent_delay_ms.store(0, Ordering::SeqCst);
        let leaf = audit_leaf(&mut app, 0).await;
        assert_eq!(leaf.action, api::AuditAction::Read as i32);
        assert_eq!(leaf.outcome, api::AuditOutcome::Failed as i32);
        assert_eq!(leaf.error_reason, "DEADLINE_EXCEEDED");
        assert!(leaf.returned_records.is_empty());
    }
}

#[tokio::test]
async fn a_module_down_fails_closed_and_the_attempt_is_audited() {
    // (module, its switch, Decide calls made: consent is retried on UNAVAILABLE (1 + 2 retries)
    // then given up; without a resolved patient there is no decision at all)
    type Switch = fn(&Fakes) -> &std::sync::atomic::AtomicBool;
    let cases: [(&str, Switch, usize); 2] = [
        ("consent", |f| &f.consent_down, 3),
        ("identity", |f| &f.identity_down, 0),
    ];
    for db in TestDatabase::each_backend().await {
        for (module, switch, decide_calls) in cases {
            let mut app = spawn_app(&db.url).await;
            let p = app.fakes.patient_with_an_observation();
            switch(&app.fakes).store(true, Ordering::SeqCst);
            let clinician = token(&Claims::clinician("user/*.rs"));
            let status = app.refused_read(&p, "TREAT", &clinician).await;
            assert_eq!(status.code(), Code::Unavailable, "{module}");
            let info = error_info(&status);
            assert_eq!(info.reason, "DEPENDENCY_UNAVAILABLE");
            assert_eq!(info.metadata["dependency"], module);
            use tonic_types::StatusExt;
            assert!(status.get_error_details().retry_info().is_some());
            assert_eq!(
                app.fakes.decide_calls.load(Ordering::SeqCst),
                decide_calls,
                "{module}"
            );
            let index = audit_index(&status);
            switch(&app.fakes).store(false, Ordering::SeqCst);
            let leaf = audit_leaf(&mut app, index).await;
            assert_eq!(leaf.outcome, api::AuditOutcome::Failed as i32);
            assert_eq!(leaf.error_reason, "DEPENDENCY_UNAVAILABLE");
            assert!(leaf.returned_records.is_empty());
        }
    }
}
