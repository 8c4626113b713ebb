//! Writes through the FHIR gateway: create with `Location`, `ETag` and `Last-Modified`, update
//! guarded by `If-Match`, delete as retraction, a subject named by NHS number alone, idempotent
//! retries by `X-Request-Id`, and `Prefer: return=...`.

use carerecord_e2e::{Overrides, Platform, token_at, uuid};
use http::{Method, StatusCode};
use serde_json::json;

use crate::fhir::{
    NHS_SYSTEM, clinician, create, fhir_and_patient, observation, outcome, reason, search_all,
};

#[tokio::test]
async fn create_update_with_if_match_and_delete_as_retraction() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (fhir, patient_id, _) = fhir_and_patient(&platform, "Wilhelmina", "Thorne").await;
        let resource = observation(&patient_id, "8867-4", "vital-signs", "final", "2025-07-01");

        let created = fhir
            .send(Method::POST, "/Observation", &[], Some(&resource))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let body = created.json();
        let id = body["id"].as_str().expect("an id").to_owned();
        assert_eq!(
            created.header("location"),
            Some(format!("{}/Observation/{id}/_history/1", fhir.base).as_str()),
            "{backend:?}"
        );
        assert_eq!(created.header("etag"), Some("W/\"1\""));
        assert!(created.header("last-modified").is_some());
        assert_eq!(body["meta"]["versionId"], "1");
        assert_eq!(body["status"], "final");
        // Provenance comes from the token: the client that wrote it.
        assert_eq!(body["meta"]["source"], "e2e");

        // Update: If-Match is required, must be current, and the body's id must be the URL's.
        let mut amended = body.clone();
        amended["status"] = json!("amended");
        let path = format!("/Observation/{id}");
        let missing = fhir.send(Method::PUT, &path, &[], Some(&amended)).await;
        outcome(&missing, StatusCode::PRECONDITION_REQUIRED);
        let updated = fhir.put_if_match(&path, 1, &amended).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
        assert_eq!(updated.header("etag"), Some("W/\"2\""));
        assert_eq!(updated.json()["status"], "amended");
        let stale = fhir.put_if_match(&path, 1, &amended).await;
        let refused = outcome(&stale, StatusCode::PRECONDITION_FAILED);
        assert_eq!(reason(&refused), "ETAG_MISMATCH");
        let mut other_id = amended.clone();
        other_id["id"] = json!(uuid());
        outcome(
            &fhir.put_if_match(&path, 2, &other_id).await,
            StatusCode::BAD_REQUEST,
        );

        // A read with the current version in If-None-Match is 304.
        let unchanged = fhir
            .send(Method::GET, &path, &[("if-none-match", "W/\"2\"")], None)
            .await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
        assert_eq!(unchanged.header("etag"), Some("W/\"2\""));

        // Delete with a stale If-Match is refused; with the current one it retracts.
        outcome(
            &fhir
                .send(Method::DELETE, &path, &[("if-match", "W/\"1\"")], None)
                .await,
            StatusCode::PRECONDITION_FAILED,
        );
        let deleted = fhir
            .send(Method::DELETE, &path, &[("if-match", "W/\"2\"")], None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
        assert_eq!(deleted.header("etag"), Some("W/\"3\""));
        let gone = outcome(&fhir.get(&path).await, StatusCode::GONE);
        assert_eq!(gone["issue"][0]["code"], "deleted");
        // Its history stays, newest first, with the deletion.
        let history = fhir.get(&format!("{path}/_history")).await.json();
        let methods: Vec<&str> = history["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["request"]["method"].as_str().expect("a method"))
            .collect();
        assert_eq!(methods, ["DELETE", "PUT", "POST"], "{backend:?}");
        let first = fhir.get(&format!("{path}/_history/1")).await;
        assert_eq!(first.status, StatusCode::OK);
        // Nor is it found by search, nor can it be changed.
        let (found, _) = search_all(&fhir, &format!("/Observation?patient={patient_id}")).await;
        assert!(found.is_empty(), "{backend:?}: {found:?}");
        let conflict = fhir.put_if_match(&path, 3, &amended).await;
        outcome(&conflict, StatusCode::CONFLICT);

        // Without If-Match, DELETE retracts the latest version.
        let second = create(&fhir, &resource).await;
        let second_path = format!("/Observation/{}", second["id"].as_str().expect("id"));
        let deleted = fhir.send(Method::DELETE, &second_path, &[], None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
        outcome(&fhir.get(&second_path).await, StatusCode::GONE);
    }
}

#[tokio::test]
async fn a_subject_named_by_nhs_number_alone_is_resolved_and_filed() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, nhs_number) = platform.register_patient("Peregrine", "Oakes").await;
        // A domiciliary care provider's system, which knows the NHS number only.
        let dscr = platform.fhir().with_token(&token_at(
            "8JK94",
            "",
            "system/CarePlan.cu system/CarePlan.r",
            "dscr-acme",
        ));
        let plan = json!({
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "title": "Morning visits",
            "subject": {"identifier": {"system": NHS_SYSTEM, "value": nhs_number}},
            "period": {"start": "2025-09-01"},
        });
        let created = create(&dscr, &plan).await;
        assert_eq!(
            created["subject"]["reference"],
            format!("Patient/{patient_id}"),
            "{backend:?}: the reference is added"
        );
        assert_eq!(
            created["subject"]["identifier"]["value"],
            nhs_number.as_str()
        );
        assert_eq!(created["title"], "Morning visits");

        let gp = platform.fhir().with_token(&clinician());
        let (plans, _) = search_all(
            &gp,
            &format!("/CarePlan?patient.identifier={NHS_SYSTEM}|{nhs_number}"),
        )
        .await;
        assert_eq!(plans.len(), 1, "{backend:?}");
        assert_eq!(plans[0]["id"], created["id"]);
        assert_eq!(plans[0]["meta"]["source"], "dscr-acme");

        // Another organisation may not change it (only its contributor may).
        let mut changed = created.clone();
        changed["title"] = json!("Evening visits");
        let refused = gp
            .put_if_match(
                &format!("/CarePlan/{}", created["id"].as_str().expect("id")),
                1,
                &changed,
            )
            .await;
        let refused = outcome(&refused, StatusCode::FORBIDDEN);
        assert_eq!(reason(&refused), "RECORD_NOT_OWNED");
    }
}

#[tokio::test]
async fn retries_by_request_id_write_once_and_prefer_shapes_the_answer() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (fhir, patient_id, _) = fhir_and_patient(&platform, "Araminta", "Holloway").await;
        let resource = observation(&patient_id, "8867-4", "vital-signs", "final", "2025-08-08");
        let request_id = uuid();
        let headers = [("x-request-id", request_id.as_str())];
        let first = fhir
            .send(Method::POST, "/Observation", &headers, Some(&resource))
            .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
        let again = fhir
            .send(Method::POST, "/Observation", &headers, Some(&resource))
            .await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.text());
        assert_eq!(again.json()["id"], first.json()["id"], "{backend:?}");
        let (found, _) = search_all(&fhir, &format!("/Observation?patient={patient_id}")).await;
        assert_eq!(found.len(), 1, "{backend:?}: written once");
        let mut different = resource.clone();
        different["status"] = json!("preliminary");
        let reused = fhir
            .send(Method::POST, "/Observation", &headers, Some(&different))
            .await;
        let reused = outcome(&reused, StatusCode::CONFLICT);
        assert_eq!(reason(&reused), "REQUEST_ID_REUSED");

        let minimal = fhir
            .send(
                Method::POST,
                "/Observation",
                &[("prefer", "return=minimal")],
                Some(&resource),
            )
            .await;
        assert_eq!(minimal.status, StatusCode::CREATED);
        assert!(minimal.body.is_empty());
        assert!(minimal.header("location").is_some());
        assert_eq!(minimal.header("etag"), Some("W/\"1\""));
        let outcome_only = fhir
            .send(
                Method::POST,
                "/Observation",
                &[("prefer", "return=OperationOutcome")],
                Some(&resource),
            )
            .await;
        assert_eq!(outcome_only.status, StatusCode::CREATED);
        assert_eq!(outcome_only.json()["resourceType"], "OperationOutcome");
        assert_eq!(outcome_only.json()["issue"][0]["severity"], "information");
    }
}
