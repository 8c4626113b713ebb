//! The front door's contribute path against the four real services: the social care flow, changes
//! and retractions, idempotency, and refusals that write nothing and are audited.

use carerecord_contracts::access::v1::{
    self as api, AuditAction, CreateRecordRequest, ListDisclosuresRequest,
    ListRecordVersionsRequest, PatientReference, ReadPatientRecordRequest, ReadRecordRequest,
    RecordContent, RecordStatus, RetractRecordRequest, UpdateRecordRequest,
    patient_reference::Reference,
};
use carerecord_e2e::{
    Overrides, Platform, authed, by_nhs, patient_token, read_request, token_at, uuid,
};
use carerecord_platform::testing::{error_info, violations};
use serde_json::{Value, json};
use tonic::Code;

/// A social care provider's Digital Social Care Record system.
const DSCR: &str = "8JK94";
/// The patient's GP practice.
const GP: &str = "A81001";
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

fn dscr() -> String {
    token_at(
        DSCR,
        "",
        "system/CarePlan.cu system/Encounter.cu system/Observation.cu",
        "dscr-acme",
    )
}

fn gp() -> String {
    token_at(GP, "R8000", "user/*.rs", "gp-system")
}

/// A payload naming its patient by NHS number alone, as UK Core does.
fn naming_by_nhs(resource_type: &str, nhs: &str, extra: Value) -> Vec<u8> {
    let mut resource = json!({
        "resourceType": resource_type,
        "status": "active",
        "subject": {"identifier": {"system": NHS_SYSTEM, "value": nhs}},
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        resource[key] = value;
    }
    resource.to_string().into_bytes()
}

fn content(resource_type: &str, payload: Vec<u8>) -> Option<RecordContent> {
    Some(RecordContent {
        resource_type: resource_type.into(),
        payload,
        ..RecordContent::default()
    })
}

fn create(patient: Option<PatientReference>, record: Option<RecordContent>) -> CreateRecordRequest {
    CreateRecordRequest {
        request_id: uuid(),
        patient,
        purpose_of_use: "TREAT".into(),
        content: record,
        ..CreateRecordRequest::default()
    }
}

fn read_all(nhs: &str) -> ReadPatientRecordRequest {
    ReadPatientRecordRequest {
        page_size: 1000,
        ..read_request(by_nhs(nhs), "TREAT")
    }
}

#[tokio::test]
async fn a_social_care_provider_contributes_and_the_gp_reads_it() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, nhs) = platform.register_patient("Edith", "Cavell").await;
        let mut access = platform.access_client().await;

        // A care plan whose subject is only the NHS number, with no patient named in the request.
        let plan = naming_by_nhs(
            "CarePlan",
            &nhs,
            json!({"intent": "plan", "period": {"start": "2026-11-01"}}),
        );
        let first = create(None, content("CarePlan", plan.clone()));
        let created = access
            .create_record(authed(first.clone(), &dscr()))
            .await
            .unwrap_or_else(|s| panic!("{backend:?}: {s:?}"))
            .into_inner();
        assert_eq!(created.patient_id, patient_id);
        let record = created.record.clone().expect("record");
        assert_eq!(record.version, 1);
        assert_eq!(record.source_organisation_ods_code, DSCR);
        let provenance = record.provenance.clone().expect("provenance");
        assert_eq!(provenance.source_system, "dscr-acme");
        assert_eq!(provenance.agent.expect("agent").organisation_ods_code, DSCR);
        let stored: Value = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(
            stored["subject"]["reference"],
            format!("Patient/{patient_id}")
        );
        assert_eq!(
            stored["subject"]["identifier"]["value"],
            nhs.as_str(),
            "the identifier is kept"
        );
        assert!(record.effective_time.is_some(), "taken from period.start");

        // Two visit notes, naming the patient in the request.
        for day in ["2026-11-02", "2026-11-03"] {
            let visit = json!({"resourceType": "Encounter", "status": "finished",
                "class": {"code": "HH"}, "subject": {"reference": format!("Patient/{patient_id}")},
                "period": {"start": format!("{day}T10:00:00Z")}});
            access
                .create_record(authed(
                    create(
                        by_nhs(&nhs),
                        content("Encounter", visit.to_string().into_bytes()),
                    ),
                    &dscr(),
                ))
                .await
                .unwrap_or_else(|s| panic!("{backend:?}: {s:?}"));
        }

        // A retry is the first result; the same request_id with other content is refused.
        let again = access
            .create_record(authed(first.clone(), &dscr()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.record.unwrap().record_id, record.record_id);
        let mut reused = first.clone();
        reused.content = content(
            "CarePlan",
            naming_by_nhs("CarePlan", &nhs, json!({"intent": "order"})),
        );
        let refused = access
            .create_record(authed(reused, &dscr()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(error_info(&refused).reason, "REQUEST_ID_REUSED");

        // The GP reads all three, with their provenance.
        let page = access
            .read_patient_record(authed(read_all(&nhs), &gp()))
            .await
            .unwrap()
            .into_inner();
        let mut types: Vec<&str> = page
            .records
            .iter()
            .map(|r| r.resource_type.as_str())
            .collect();
        types.sort();
        assert_eq!(types, ["CarePlan", "Encounter", "Encounter"], "{backend:?}");
        assert!(
            page.records
                .iter()
                .all(|r| r.source_organisation_ods_code == DSCR)
        );

        // The patient sees who added to their record, and who read it.
        let mine = patient_token(&patient_id, "patient/AuditEvent.r");
        let log = access
            .list_disclosures(authed(
                ListDisclosuresRequest {
                    patient: by_nhs(&nhs),
                    ..ListDisclosuresRequest::default()
                },
                &mine,
            ))
            .await
            .unwrap()
            .into_inner();
        let created_by_dscr = log
            .disclosures
            .iter()
            .filter(|d| d.action == AuditAction::CreateRecord as i32)
            .filter(|d| {
                d.requester
                    .as_ref()
                    .is_some_and(|r| r.organisation_ods_code == DSCR)
            })
            .count();
        // Three creates, the retry, and the refused reuse: each one entry.
        assert_eq!(created_by_dscr, 5, "{backend:?}");
        assert!(
            log.disclosures
                .iter()
                .any(|d| d.action == AuditAction::Read as i32)
        );
    }
}

#[tokio::test]
async fn changes_are_made_by_the_contributor_only_guarded_by_version_and_idempotent() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, nhs) = platform.register_patient("Florence", "Nightingale").await;
        let mut access = platform.access_client().await;
        let reading = |value: f64| {
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "effectiveDateTime": "2026-11-05T08:00:00Z", "valueQuantity": {"value": value}})
            .to_string()
            .into_bytes()
        };
        let created = access
            .create_record(authed(
                create(by_nhs(&nhs), content("Observation", reading(61.0))),
                &dscr(),
            ))
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap();

        let update = UpdateRecordRequest {
            request_id: uuid(),
            record_id: created.record_id.clone(),
            expected_version: 1,
            purpose_of_use: "TREAT".into(),
            content: content("Observation", reading(62.5)),
            ..UpdateRecordRequest::default()
        };
        let updated = access
            .update_record(authed(update.clone(), &dscr()))
            .await
            .unwrap_or_else(|s| panic!("{backend:?}: {s:?}"))
            .into_inner()
            .record
            .unwrap();
        assert_eq!(updated.version, 2);
        // The retry returns version 2 again and writes nothing.
        let retried = access
            .update_record(authed(update, &dscr()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried.record.unwrap().version, 2, "{backend:?}");

        // A stale version, and another organisation, are refused.
        let stale = UpdateRecordRequest {
            request_id: uuid(),
            record_id: created.record_id.clone(),
            etag: created.etag.clone(),
            purpose_of_use: "TREAT".into(),
            content: content("Observation", reading(63.0)),
            ..UpdateRecordRequest::default()
        };
        let refused = access
            .update_record(authed(stale.clone(), &dscr()))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::Aborted, "ETAG_MISMATCH")
        );
        let other_org = token_at(GP, "R8000", "user/*.cruds", "gp-system");
        let mut not_theirs = stale;
        not_theirs.etag = updated.etag.clone();
        let refused = access
            .update_record(authed(not_theirs, &other_org))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::PermissionDenied, "RECORD_NOT_OWNED")
        );

        // Retracted: gone from reads of current records, kept in its history.
        let retract = RetractRecordRequest {
            request_id: uuid(),
            record_id: created.record_id.clone(),
            etag: updated.etag.clone(),
            reason: "entered against the wrong resident".into(),
            purpose_of_use: "TREAT".into(),
            ..RetractRecordRequest::default()
        };
        let retracted = access
            .retract_record(authed(retract, &dscr()))
            .await
            .unwrap()
            .into_inner();
        let retracted = retracted.record.unwrap();
        assert_eq!(retracted.status, RecordStatus::EnteredInError as i32);
        let page = access
            .read_patient_record(authed(read_all(&nhs), &gp()))
            .await
            .unwrap()
            .into_inner();
        assert!(page.records.is_empty(), "{backend:?}");
        let read = access
            .read_record(authed(
                ReadRecordRequest {
                    record_id: created.record_id.clone(),
                    purpose_of_use: "TREAT".into(),
                    ..ReadRecordRequest::default()
                },
                &gp(),
            ))
            .await
            .unwrap()
            .into_inner();
        let latest = read.record.unwrap();
        assert_eq!(
            (latest.version, latest.status),
            (3, RecordStatus::EnteredInError as i32)
        );
        assert_eq!(
            latest.retraction_reason,
            "entered against the wrong resident"
        );
        let again = RetractRecordRequest {
            request_id: uuid(),
            record_id: created.record_id.clone(),
            expected_version: 3,
            reason: "twice".into(),
            purpose_of_use: "TREAT".into(),
            ..RetractRecordRequest::default()
        };
        let refused = access
            .retract_record(authed(again, &dscr()))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::FailedPrecondition, "RECORD_STATUS")
        );
        let history = access
            .list_record_versions(authed(
                ListRecordVersionsRequest {
                    record_id: created.record_id.clone(),
                    purpose_of_use: "TREAT".into(),
                    ..ListRecordVersionsRequest::default()
                },
                &gp(),
            ))
            .await
            .unwrap()
            .into_inner();
        let versions: Vec<i64> = history.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, [3, 2, 1], "{backend:?}");
        let agent = history.versions[0]
            .provenance
            .clone()
            .unwrap()
            .agent
            .unwrap();
        assert_eq!(agent.organisation_ods_code, DSCR);
        assert_eq!(history.patient_id, patient_id);
    }
}

#[tokio::test]
async fn refused_contributions_write_nothing_and_are_audited() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_a, nhs_a) = platform.register_patient("Mary", "Seacole").await;
        let (patient_b, nhs_b) = platform.register_patient("Mary", "Somerville").await;
        let mut access = platform.access_client().await;
        let plan_for_b = naming_by_nhs("CarePlan", &nhs_b, json!({"intent": "plan"}));

        // The payload names B while the request names A.
        let refused = access
            .create_record(authed(
                create(by_nhs(&nhs_a), content("CarePlan", plan_for_b.clone())),
                &dscr(),
            ))
            .await
            .unwrap_err();
        assert_eq!(violations(&refused), ["content.payload"], "{backend:?}");
        assert!(
            error_info(&refused).metadata.contains_key("audit_entry_id"),
            "audited"
        );

        // Scopes cover the resource type, or nothing is written.
        let observations_only = token_at(DSCR, "", "system/Observation.c", "dscr-acme");
        let refused = access
            .create_record(authed(
                create(None, content("CarePlan", plan_for_b.clone())),
                &observations_only,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::PermissionDenied, "SCOPE_MISSING")
        );
        assert!(error_info(&refused).metadata.contains_key("audit_entry_id"));

        // Oversized payloads, demographic references and reads-only tokens.
        let huge = naming_by_nhs(
            "CarePlan",
            &nhs_a,
            json!({"description": "x".repeat(2 << 20)}),
        );
        let refused = access
            .create_record(authed(create(None, content("CarePlan", huge)), &dscr()))
            .await
            .unwrap_err();
        assert_eq!(violations(&refused), ["content.payload"], "{backend:?}");
        let demographics = Some(PatientReference {
            reference: Some(Reference::Demographics(api::Demographics {
                family: "Seacole".into(),
                ..api::Demographics::default()
            })),
        });
        let refused = access
            .create_record(authed(
                create(demographics, content("CarePlan", plan_for_b.clone())),
                &dscr(),
            ))
            .await
            .unwrap_err();
        assert_eq!(violations(&refused), ["patient.demographics"]);

        // A patient-facing app may not contribute unless the deployment allows it.
        let app = patient_token(&patient_a, "patient/Observation.c");
        let mut own = create(
            by_nhs(&nhs_a),
            content(
                "Observation",
                naming_by_nhs("Observation", &nhs_a, json!({"code": {"text": "BP"}})),
            ),
        );
        own.purpose_of_use = "PATRQT".into();
        let refused = access.create_record(authed(own, &app)).await.unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::PermissionDenied, "PATIENT_CONTRIBUTIONS_DISABLED")
        );

        for nhs in [&nhs_a, &nhs_b] {
            let page = access
                .read_patient_record(authed(read_all(nhs), &gp()))
                .await
                .unwrap()
                .into_inner();
            assert!(page.records.is_empty(), "{backend:?}: nothing was written");
        }
        let _ = patient_b;
    }
}

#[tokio::test]
async fn a_patient_app_contributes_only_for_its_own_patient_where_allowed() {
    let extra = [(
        "CARERECORD_PATIENT_CONTRIBUTIONS_ODS_CODE".to_owned(),
        "PATENT".to_owned(),
    )];
    for platform in Platform::each_backend_with(Overrides::default(), &extra).await {
        let (patient_a, _) = platform.register_patient("Alice", "Ball").await;
        let (_, nhs_b) = platform.register_patient("Bella", "Ball").await;
        let app = patient_token(&patient_a, "patient/Observation.c");
        let mut theirs = create(
            by_nhs(&nhs_b),
            content(
                "Observation",
                naming_by_nhs("Observation", &nhs_b, json!({"code": {"text": "BP"}})),
            ),
        );
        theirs.purpose_of_use = "PATRQT".into();
        let refused = platform
            .access_client()
            .await
            .create_record(authed(theirs, &app))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::PermissionDenied, "PATIENT_CONTEXT_MISMATCH"),
            "{:?}",
            platform.backend
        );
    }
}
