//! Create, batch create, get, update, versions and resolve, with their bad inputs.

use carerecord_contracts::common::v1::{ChangeType, Date, Identifier};
use carerecord_contracts::identity::v1::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

#[tokio::test]
async fn create_is_validated_normalised_idempotent_and_unique() {
    on_each_backend(async |c| {
        let mut p = with_mrn(patient("Zoë", "O'Brien", (1980, 3, 7)), " 12345 ");
        p.nhs_number = "943-476-5919".into();
        let request = CreatePatientRequest {
            request_id: request_id().to_uppercase(),
            patient: Some(p.clone()),
            requester: Some(requester()),
        };
        let created = ok(c.create_patient(request.clone()).await).patient.unwrap();
        assert_eq!(created.nhs_number, "9434765919");
        assert_eq!(created.identifiers[0].value, "12345");
        assert_eq!(created.addresses[0].postal_code, "LS1 4AP");
        assert_eq!(created.version, 1);
        assert_eq!(created.state, PatientState::Active as i32);
        assert!(!created.etag.is_empty());
        assert_eq!(created.create_time, created.update_time);
        assert!(uuid::Uuid::parse_str(&created.patient_id).is_ok());

        // A retry returns the first result and writes nothing.
        let again = ok(c.create_patient(request.clone()).await).patient.unwrap();
        assert_eq!(again, created);
        // The same request id with another body is refused.
        let mut other = request.clone();
        other.patient.as_mut().unwrap().names[0].family = "Other".into();
        let status = refused(c.create_patient(other).await);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status), "REQUEST_ID_REUSED");
        assert_eq!(metadata(&status, "patient_id"), created.patient_id);

        // Identifier and NHS number held by another patient: ALREADY_EXISTS naming the holder.
        let mut dup = with_mrn(patient("Ann", "Other", (1990, 1, 1)), "12345");
        dup.nhs_number = "9434765919".into();
        let status = refused(
            c.create_patient(CreatePatientRequest {
                request_id: request_id(),
                patient: Some(dup),
                requester: Some(requester()),
            })
            .await,
        );
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        let holders: Vec<String> = status
            .get_error_details_vec()
            .into_iter()
            .filter_map(|d| match d {
                tonic_types::ErrorDetail::ResourceInfo(r) => Some(r.resource_name),
                _ => None,
            })
            .collect();
        assert_eq!(
            holders,
            [created.patient_id.clone(), created.patient_id.clone()]
        );

        // Nothing was written by the failures: still one version.
        let versions = versions(c, &created.patient_id).await;
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].change_type, ChangeType::Created as i32);
        assert_eq!(versions[0].requester.as_ref().unwrap().user_id, "clerk-1");
    })
    .await;
}

#[tokio::test]
async fn bad_creates_name_every_field() {
    on_each_backend(async |c| {
        let mut p = patient(" . ", " - ", (2023, 2, 29));
        p.nhs_number = "9434765918".into();
        p.identifiers.push(Identifier {
            system: "mrn".into(),
            value: " ".into(),
        });
        p.identifiers.push(Identifier {
            system: NHS.into(),
            value: "9434765919".into(),
        });
        p.deceased_date = Some(Date {
            year: 9999,
            month: 12,
            day: 31,
        });
        let status = refused(
            c.create_patient(CreatePatientRequest {
                request_id: "not-a-uuid".into(),
                patient: Some(p),
                requester: None,
            })
            .await,
        );
        assert_eq!(
            violations(&status),
            [
                "requester",
                "request_id",
                "patient.nhs_number",
                "patient.identifiers[0].system",
                "patient.identifiers[0].value",
                "patient.identifiers[1].system",
                "patient.names",
                "patient.birth_date.day",
                "patient.deceased_date",
            ]
        );
        // Future birth date, oversized lists and strings, requester without user id.
        let mut p = patient("A", "B", (3000, 1, 1));
        p.names[0].family = "x".repeat(300);
        p.identifiers = (0..51)
            .map(|i| Identifier {
                system: MRN.into(),
                value: i.to_string(),
            })
            .collect();
        let status = refused(
            c.create_patient(CreatePatientRequest {
                request_id: request_id(),
                patient: Some(p),
                requester: Some(Default::default()),
            })
            .await,
        );
        assert_eq!(
            violations(&status),
            [
                "requester.user_id",
                "patient.identifiers",
                "patient.names[0].family",
                "patient.birth_date"
            ]
        );
        // Nothing was created.
        let status = refused(c.resolve_identifier(resolve_request(MRN, "0")).await);
        assert_eq!(status.code(), Code::NotFound);
    })
    .await;
}

#[tokio::test]
async fn batch_create_commits_good_items_and_reports_bad_ones() {
    on_each_backend(async |c| {
        let held = create(c, with_mrn(patient("Held", "Holder", (1970, 1, 1)), "H1")).await;
        let item = |p: Patient| CreatePatientRequest {
            request_id: request_id(),
            patient: Some(p),
            requester: None,
        };
        let good = item(with_mrn(patient("Good", "One", (1980, 1, 1)), "G1"));
        let mut other_requester = item(patient("Bad", "Requester", (1980, 1, 1)));
        other_requester.requester = Some(carerecord_contracts::common::v1::Requester {
            user_id: "someone-else".into(),
            ..Default::default()
        });
        let request = BatchCreatePatientsRequest {
            requests: vec![
                good.clone(),
                item(patient("", "", (1980, 1, 1))),
                item(with_mrn(patient("Conflict", "Stored", (1980, 1, 1)), "H1")),
                item(with_mrn(patient("Conflict", "Earlier", (1980, 1, 1)), "G1")),
                other_requester,
                item(patient("Good", "Two", (1981, 1, 1))),
            ],
            requester: Some(requester()),
        };
        let response = ok(c.batch_create_patients(request.clone()).await);
        assert_eq!((response.succeeded_count, response.failed_count), (2, 4));
        let outcome = |i: usize| response.results[i].outcome.clone().unwrap();
        let first = match outcome(0) {
            batch_create_patients_result::Outcome::Patient(p) => p,
            other => panic!("{other:?}"),
        };
        let error = |i: usize| match outcome(i) {
            batch_create_patients_result::Outcome::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(error(1).code, Code::InvalidArgument as i32);
        assert_eq!(error(1).field_violations[0].field, "patient.names");
        assert_eq!(error(2).code, Code::AlreadyExists as i32);
        assert_eq!(error(2).conflicting_patient_ids, [held.patient_id.as_str()]);
        assert_eq!(
            error(3).conflicting_patient_ids,
            [first.patient_id.as_str()]
        );
        assert_eq!(error(4).field_violations[0].field, "requester");
        assert!(matches!(
            outcome(5),
            batch_create_patients_result::Outcome::Patient(_)
        ));
        for (i, r) in response.results.iter().enumerate() {
            assert_eq!(r.position, i as i32);
        }

        // The whole batch retried: successes replay, nothing is created twice.
        let retry = ok(c.batch_create_patients(request.clone()).await);
        assert_eq!(retry.succeeded_count, 2);
        match retry.results[0].outcome.clone().unwrap() {
            batch_create_patients_result::Outcome::Patient(p) => assert_eq!(p, first),
            other => panic!("{other:?}"),
        }

        // Whole-call errors.
        let status = refused(
            c.batch_create_patients(BatchCreatePatientsRequest {
                requests: vec![],
                requester: None,
            })
            .await,
        );
        assert_eq!(violations(&status), ["requests", "requester"]);
        let status = refused(
            c.batch_create_patients(BatchCreatePatientsRequest {
                requests: vec![good.clone(), good],
                requester: Some(requester()),
            })
            .await,
        );
        assert_eq!(violations(&status), ["requests[1].request_id"]);
        let many = (0..1001)
            .map(|_| item(patient("A", "B", (1980, 1, 1))))
            .collect();
        let status = refused(
            c.batch_create_patients(BatchCreatePatientsRequest {
                requests: many,
                requester: Some(requester()),
            })
            .await,
        );
        assert_eq!(violations(&status), ["requests"]);
    })
    .await;
}

#[tokio::test]
async fn get_update_versions_and_resolve() {
    on_each_backend(async |c| {
        let created = create(c, with_mrn(patient("Jo", "Smith", (1980, 3, 7)), "M1")).await;
        let id = created.patient_id.clone();
        let got = get(c, &id.to_uppercase()).await;
        assert_eq!(got, created);

        // Bad ids.
        let status = refused(
            c.get_patient(GetPatientRequest {
                patient_id: "nope".into(),
            })
            .await,
        );
        assert_eq!(violations(&status), ["patient_id"]);
        let missing = uuid::Uuid::new_v4().to_string();
        let status = refused(
            c.get_patient(GetPatientRequest {
                patient_id: missing.clone(),
            })
            .await,
        );
        assert_eq!(status.code(), Code::NotFound);
        let info = resource_info(&status);
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            ("carerecord.identity.v1.Patient", missing.as_str())
        );

        // Update names and add an NHS number.
        let mut change = created.clone();
        change.names[0].family = "Jones".into();
        change.nhs_number = "9434765919".into();
        let update = |p: Patient, etag: &str, paths: &[&str]| {
            update_request(p, etag, paths, "patient reported change of name")
        };
        let v2 = ok(c
            .update_patient(update(
                change.clone(),
                &created.etag,
                &["names", "nhs_number"],
            ))
            .await)
        .patient
        .unwrap();
        assert_eq!(v2.version, 2);
        assert_ne!(v2.etag, created.etag);
        assert_eq!(v2.names[0].family, "Jones");
        // A no-op update writes nothing.
        let same = ok(c
            .update_patient(update(v2.clone(), &v2.etag, &["names"]))
            .await)
        .patient
        .unwrap();
        assert_eq!(same, v2);
        // Stale etag.
        let status = refused(
            c.update_patient(update(change.clone(), &created.etag, &["names"]))
                .await,
        );
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(reason(&status), "ETAG_MISMATCH");
        assert_eq!(metadata(&status, "current_version"), "2");
        // Bad masks and values.
        let mut bad = v2.clone();
        bad.birth_date = Some(Date {
            year: 1980,
            month: 13,
            day: 1,
        });
        let status = refused(
            c.update_patient(update(
                bad.clone(),
                &v2.etag,
                &["birth_date", "version", "names.family"],
            ))
            .await,
        );
        assert_eq!(
            violations(&status),
            ["update_mask.paths[1]", "update_mask.paths[2]"]
        );
        let status = refused(
            c.update_patient(update(bad, &v2.etag, &["birth_date"]))
                .await,
        );
        assert_eq!(violations(&status), ["patient.birth_date.month"]);
        let status = refused(
            c.update_patient(UpdatePatientRequest {
                patient: Some(v2.clone()),
                ..Default::default()
            })
            .await,
        );
        assert_eq!(violations(&status), ["etag", "update_mask", "requester"]);
        // Clearing the names (a required field) is refused.
        let status = refused(
            c.update_patient(update(
                Patient {
                    patient_id: id.clone(),
                    ..Default::default()
                },
                &v2.etag,
                &["names"],
            ))
            .await,
        );
        assert_eq!(violations(&status), ["patient.names"]);

        // An identifier held by another patient.
        let other = create(c, with_mrn(patient("Al", "Other", (1950, 1, 1)), "M2")).await;
        let mut steal = v2.clone();
        steal.identifiers = vec![Identifier {
            system: MRN.into(),
            value: "M2".into(),
        }];
        let status = refused(
            c.update_patient(update(steal, &v2.etag, &["identifiers"]))
                .await,
        );
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(resource_info(&status).resource_name, other.patient_id);

        // Versions: ascending, with what changed and why, paged with tokens bound to the patient.
        let list =
            |patient_id: &str, page_size: i32, page_token: &str| ListPatientVersionsRequest {
                patient_id: patient_id.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            };
        let page = ok(c.list_patient_versions(list(&id, 1, "")).await);
        assert_eq!(page.versions[0].version, 1);
        assert!(!page.next_page_token.is_empty());
        let page2 = ok(c
            .list_patient_versions(list(&id, 1, &page.next_page_token))
            .await);
        let v = &page2.versions[0];
        assert_eq!(v.version, 2);
        assert_eq!(v.change_type, ChangeType::Updated as i32);
        assert_eq!(
            v.changed_fields.as_ref().unwrap().paths,
            ["nhs_number", "names"]
        );
        assert_eq!(v.reason, "patient reported change of name");
        assert_eq!(v.patient.as_ref().unwrap(), &v2);
        assert!(page2.next_page_token.is_empty());
        let status = refused(
            c.list_patient_versions(list(&other.patient_id, 1, &page.next_page_token))
                .await,
        );
        assert_eq!(violations(&status), ["page_token"]);
        let status = refused(c.list_patient_versions(list(&id, -1, "")).await);
        assert_eq!(violations(&status), ["page_size"]);

        // Resolve: NHS numbers with separators, local identifiers trimmed, bad inputs.
        let resolve = resolve_request;
        let r = ok(c.resolve_identifier(resolve(NHS, "943 476 5919")).await);
        assert_eq!(r.patient_id, id);
        assert!(!r.followed_merge);
        let r = ok(c.resolve_identifier(resolve(MRN, " M1 ")).await);
        assert_eq!(r.patient.unwrap().version, 2);
        let status = refused(c.resolve_identifier(resolve(MRN, "m1")).await);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(resource_info(&status).resource_name, format!("{MRN}|m1"));
        let status = refused(c.resolve_identifier(resolve(NHS, "9434765918")).await);
        assert_eq!(violations(&status), ["identifier.value"]);
        let status = refused(c.resolve_identifier(resolve("", "")).await);
        assert_eq!(
            violations(&status),
            ["identifier.system", "identifier.value"]
        );
    })
    .await;
}
