//! Every error the FHIR gateway answers is an OperationOutcome with the status FHIR REST expects,
//! carrying the front door's reason; and the gateway passes the caller's trace on and logs no
//! patient identifier.

use std::io::Write;
use std::sync::{Arc, Mutex};

use carerecord_contracts::consent::v1::ConsentDecision;
use carerecord_e2e::{Fhir, Overrides, Platform, fresh_nhs_number, token, uuid};
use http::{Method, StatusCode};
use prost::Message;
use serde_json::json;

use crate::fhir::{NHS_SYSTEM, clinician, create, fhir_and_patient, observation, outcome, reason};

#[tokio::test]
async fn every_error_is_an_operation_outcome_with_the_right_status() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (fhir, patient_id, nhs_number) =
            fhir_and_patient(&platform, "Gwendolen", "Fairfax").await;
        let created = create(
            &fhir,
            &observation(&patient_id, "8867-4", "vital-signs", "final", "2025-01-01"),
        )
        .await;
        let record = format!("/Observation/{}", created["id"].as_str().expect("id"));
        let search = format!("/Observation?patient={patient_id}");

        // 401: no token, a forged one; with the challenge.
        let none = fhir.anonymous().get(&search).await;
        let missing = outcome(&none, StatusCode::UNAUTHORIZED);
        assert_eq!(missing["issue"][0]["code"], "login");
        assert_eq!(reason(&missing), "TOKEN_MISSING", "{backend:?}");
        assert!(
            none.header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer"))
        );
        let forged = fhir
            .with_token("eyJhbGciOiJub25lIn0.e30.")
            .get(&search)
            .await;
        assert_eq!(
            reason(&outcome(&forged, StatusCode::UNAUTHORIZED)),
            "TOKEN_INVALID"
        );

        // 403: a scope that does not cover the type; consent refusing.
        let conditions_only = fhir.with_token(&token("R8000", "user/Condition.rs"));
        let refused = outcome(&conditions_only.get(&search).await, StatusCode::FORBIDDEN);
        assert_eq!(refused["issue"][0]["code"], "forbidden");
        assert_eq!(reason(&refused), "SCOPE_MISSING");
        let (dissenting, _) = platform.register_patient("Lady", "Bracknell").await;
        platform
            .record_directive(&dissenting, ConsentDecision::Deny, Vec::new())
            .await;
        let denied = fhir
            .get(&format!("/Observation?patient={dissenting}"))
            .await;
        assert_eq!(
            reason(&outcome(&denied, StatusCode::FORBIDDEN)),
            "CONSENT_DENIED"
        );

        // 404: an unknown route, type, id or version; the patient of a search unknown.
        for path in [
            "/Nonsense".to_owned(),
            format!("/Bundle?patient={patient_id}"),
            format!("/Observation/{}", uuid()),
            "/Observation/not-an-id".to_owned(),
            format!("{record}/_history/7"),
            format!("/Patient/{}", uuid()),
            format!("/Observation?patient={}", uuid()),
            format!(
                "/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{}",
                fresh_nhs_number()
            ),
        ] {
            outcome(&fhir.get(&path).await, StatusCode::NOT_FOUND);
        }

        // 400: parameters and headers the gateway or the front door cannot take.
        for (path, headers) in [
            (format!("{search}&_count=0"), vec![]),
            (format!("{search}&date=yesterday"), vec![]),
            (format!("{search}&_sort=code"), vec![]),
            ("/Observation?code=8867-4".to_owned(), vec![]),
            (format!("{search}&patient={patient_id}"), vec![]),
            (search.clone(), vec![("x-purpose-of-use", "treat; drop")]),
            (search.clone(), vec![("x-purpose-of-use", "ETREAT")]),
            (search.clone(), vec![("x-legal-basis", "because")]),
            (
                format!("{search}&bogus=1"),
                vec![("prefer", "handling=strict")],
            ),
            (
                format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs_number}1"),
                vec![],
            ),
            ("/Patient?family=Fairfax".to_owned(), vec![]),
        ] {
            let reply = fhir.send(Method::GET, &path, &headers, None).await;
            let refused = outcome(&reply, StatusCode::BAD_REQUEST);
            assert_eq!(refused["issue"][0]["code"], "invalid", "{path}");
        }
        // Unknown parameters are otherwise ignored, and left out of the self link.
        let lenient = fhir.get(&format!("{search}&bogus=1")).await;
        assert_eq!(lenient.status, StatusCode::OK);
        assert!(!lenient.text().contains("bogus"));

        // Writes: bodies that are not a resource of the URL's type, a resource the front door
        // refuses, a method not served, a wrong media type, a body too large.
        let huge = json!({"resourceType": "Observation", "note": [{"text": "x".repeat(5 << 20)}]});
        let over_records_limit = json!({"resourceType": "Observation", "status": "final",
                "subject": {"reference": format!("Patient/{patient_id}")},
                "note": [{"text": "x".repeat(2 << 20)}]});
        let json_body: &[(&str, &str)] = &[];
        let plain_text: &[(&str, &str)] = &[("content-type", "text/plain")];
        for (headers, body, status) in [
            (json_body, json!([1, 2]), StatusCode::BAD_REQUEST),
            (
                json_body,
                json!({"resourceType": "Condition"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                plain_text,
                json!({"resourceType": "Observation"}),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (json_body, huge, StatusCode::PAYLOAD_TOO_LARGE),
            (
                json_body,
                over_records_limit,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let refused = fhir
                .send(Method::POST, "/Observation", headers, Some(&body))
                .await;
            outcome(&refused, status);
        }
        let unprocessable = fhir
            .send(
                Method::POST,
                "/Observation",
                &[],
                Some(&json!({"resourceType": "Observation", "status": "final",
                    "subject": {"reference": format!("Patient/{patient_id}")},
                    "meta": {"security": [{"system": "https://carerecord.nhs.example/fhir/CodeSystem/data-class", "code": "Not A Class"}]}})),
            )
            .await;
        let unprocessable = outcome(&unprocessable, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reason(&unprocessable), "INVALID_REQUEST", "{backend:?}");
        let patch = fhir.send(Method::PATCH, &record, &[], None).await;
        outcome(&patch, StatusCode::METHOD_NOT_ALLOWED);
    }
}

#[tokio::test]
async fn unavailable_modules_are_503_with_retry_after() {
    // Record hosting is down: data access fails closed, and says when to retry.
    let nowhere = "http://127.0.0.1:9".to_owned();
    let platform = Platform::start(
        carerecord_platform::db::Backend::Sqlite,
        Overrides {
            records: Some(nowhere.clone()),
            ..Overrides::default()
        },
    )
    .await;
    let (fhir, patient_id, _) = fhir_and_patient(&platform, "Algernon", "Moncrieff").await;
    let reply = fhir
        .get(&format!("/Observation?patient={patient_id}"))
        .await;
    let unavailable = outcome(&reply, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable["issue"][0]["code"], "transient");
    assert_eq!(reason(&unavailable), "DEPENDENCY_UNAVAILABLE");
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );

    // Data access itself is down.
    let orphan = carerecord_e2e::Fhir::new(&platform.another_fhir(&nowhere, &[]).await)
        .with_token(&clinician());
    let reply = orphan.get(&format!("/Patient/{patient_id}")).await;
    let unavailable = outcome(&reply, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable["issue"][0]["code"], "transient");
}

/// Everything logged on this thread, as JSON lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("captured logs")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// FHIR requests naming the patient every way: by NHS number, by demographics, and by NHS number
/// in a clinical search; each with the caller's `traceparent`.
async fn requests_naming_the_patient(fhir: &Fhir, nhs_number: &str, traceparent: &str) {
    let headers = [("traceparent", traceparent)];
    for path in [
        format!("/Patient?identifier={NHS_SYSTEM}|{nhs_number}"),
        "/Patient?family=Grimsditch&given=Euphemia&birthdate=1961-04-12".to_owned(),
        format!("/Observation?patient.identifier={NHS_SYSTEM}|{nhs_number}"),
    ] {
        let reply = fhir.send(Method::GET, &path, &headers, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
}

/// The caller's `traceparent` reaches data access (its audit entry carries the trace id), and the
/// platform's logs, gateway included, carry no name or NHS number. The test runs on one thread,
/// so every service's log lines go to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn traces_pass_through_and_logs_carry_no_patient_identifier() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let platform = Platform::start(
        carerecord_platform::db::Backend::Sqlite,
        Overrides::default(),
    )
    .await;
    let (fhir, patient_id, nhs_number) =
        fhir_and_patient(&platform, "Euphemia", "Grimsditch").await;
    create(
        &fhir,
        &observation(&patient_id, "8867-4", "vital-signs", "final", "2025-02-02"),
    )
    .await;
    // Other tests' threads, which log nowhere, may register a log statement at the same moment as
    // this one and leave it disabled for everyone: once every statement on the path is
    // registered, recompute, then measure a second pass.
    requests_naming_the_patient(
        &fhir,
        &nhs_number,
        &format!("00-{}-b7ad6b7169203331-01", "1".repeat(32)),
    )
    .await;
    tracing::callsite::rebuild_interest_cache();
    logs.0.lock().expect("captured logs").clear();
    let trace_id = uuid().replace('-', "");
    requests_naming_the_patient(
        &fhir,
        &nhs_number,
        &format!("00-{trace_id}-b7ad6b7169203331-01"),
    )
    .await;

    let officer = token("R0001", "user/AuditEvent.r");
    let traced = platform
        .audit_entries(&officer)
        .await
        .iter()
        .filter_map(|e| {
            carerecord_contracts::access::v1::AuditLeaf::decode(e.leaf_data.as_slice()).ok()
        })
        .filter(|leaf| leaf.trace_id == trace_id)
        .count();
    assert_eq!(
        traced, 3,
        "each FHIR request's audit entry carries the caller's trace"
    );

    let logs = String::from_utf8_lossy(&logs.0.lock().expect("captured logs")).into_owned();
    assert!(
        logs.matches("fhir request").count() >= 3,
        "the gateway logs its requests: {logs}"
    );
    let spaced = format!(
        "{} {} {}",
        &nhs_number[..3],
        &nhs_number[3..6],
        &nhs_number[6..]
    );
    for needle in [
        "Euphemia",
        "Grimsditch",
        nhs_number.as_str(),
        spaced.as_str(),
    ] {
        assert!(
            !logs.contains(needle),
            "a log line carries patient data ({needle})"
        );
    }
}
