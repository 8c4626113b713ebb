//! A device feed's bulk contribution through the front door: a day of continuous glucose monitor
//! readings for a cohort, in one stream, with a result per item and nothing lost or doubled.

use carerecord_contracts::access::v1::{
    ImportItem, ImportOutcome, ImportRecordsRequest, ImportRecordsResponse,
    ReadPatientRecordRequest, RecordContent,
};
use carerecord_e2e::{Overrides, Platform, authed, by_nhs, token_at, uuid};
use serde_json::json;

/// Readings a CGM takes in a day (one every five minutes).
const READINGS_PER_DAY: usize = 288;

/// How many patients the test's day covers: `CARERECORD_E2E_CGM_PATIENTS` (default 12; the issue's
/// flow is 1,000, run by the front-door bench).
fn patients() -> usize {
    std::env::var("CARERECORD_E2E_CGM_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

fn cgm() -> String {
    token_at("CGM01", "", "system/Observation.c", "cgm-platform")
}

/// Reading `n` of the day for a patient, named by NHS number in the request; its request_id is a
/// UUIDv5 of the device reading, so re-sending the day writes nothing twice.
fn reading(nhs: &str, patient_id: &str, n: usize) -> ImportItem {
    let minutes = n * 5;
    let payload = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "105272-9"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": format!("2026-11-10T{:02}:{:02}:00Z", minutes / 60, minutes % 60),
        "valueQuantity": {"value": 5.0 + (n % 7) as f64 * 0.3, "unit": "mmol/L"}});
    let key = format!("cgm-device-{nhs}-{n}");
    ImportItem {
        request_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string(),
        patient: by_nhs(nhs),
        content: Some(RecordContent {
            resource_type: "Observation".into(),
            payload: payload.to_string().into_bytes(),
            ..RecordContent::default()
        }),
    }
}

/// The day's items interleaved by time, as a feed sends them, in messages of up to 1,000.
fn day(cohort: &[(String, String)]) -> Vec<Vec<ImportItem>> {
    let mut items = Vec::new();
    for n in 0..READINGS_PER_DAY {
        for (patient_id, nhs) in cohort {
            items.push(reading(nhs, patient_id, n));
        }
    }
    items.chunks(1000).map(<[ImportItem]>::to_vec).collect()
}

async fn import(platform: &Platform, messages: Vec<Vec<ImportItem>>) -> Vec<ImportRecordsResponse> {
    let requests: Vec<ImportRecordsRequest> = messages
        .into_iter()
        .enumerate()
        .map(|(i, items)| ImportRecordsRequest {
            purpose_of_use: if i == 0 {
                "TREAT".into()
            } else {
                String::new()
            },
            items,
            ..ImportRecordsRequest::default()
        })
        .collect();
    let mut stream = platform
        .access_client()
        .await
        .import_records(authed(tokio_stream::iter(requests), &cgm()))
        .await
        .unwrap_or_else(|s| panic!("{:?}: the import did not start: {s:?}", platform.backend))
        .into_inner();
    let mut responses = Vec::new();
    while let Some(response) = stream
        .message()
        .await
        .unwrap_or_else(|s| panic!("{:?}: the import failed: {s:?}", platform.backend))
    {
        responses.push(response);
    }
    responses
}

fn outcomes(responses: &[ImportRecordsResponse], outcome: ImportOutcome) -> usize {
    responses
        .iter()
        .flat_map(|r| &r.results)
        .filter(|r| r.outcome == outcome as i32)
        .count()
}

#[tokio::test]
async fn a_day_of_cgm_readings_is_imported_once_with_a_result_per_item() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let mut cohort = Vec::new();
        for i in 0..patients() {
            cohort.push(
                platform
                    .register_patient("Glyco", &format!("Sensor{i}"))
                    .await,
            );
        }
        let mut messages = day(&cohort);
        // Three bad items in the last message, each rejected for its own reason.
        let unknown = carerecord_e2e::fresh_nhs_number();
        let last = messages.len() - 1;
        messages[last].push(reading(&unknown, &uuid(), 0));
        let mut malformed = reading(&cohort[0].1, &cohort[0].0, 0);
        malformed.request_id = "not-a-uuid".into();
        messages[last].push(malformed);
        let mut not_covered = reading(&cohort[0].1, &cohort[0].0, 1);
        not_covered.request_id = uuid();
        if let Some(content) = not_covered.content.as_mut() {
            content.resource_type = "Condition".into();
        }
        messages[last].push(not_covered);
        let total: usize = messages.iter().map(Vec::len).sum();

        let responses = import(&platform, messages.clone()).await;
        assert_eq!(
            responses.len(),
            messages.len(),
            "{backend:?}: one answer per message"
        );
        let indexes: Vec<i64> = responses
            .iter()
            .flat_map(|r| &r.results)
            .map(|r| r.index)
            .collect();
        assert_eq!(
            indexes,
            (0..total as i64).collect::<Vec<_>>(),
            "a result per item, in order"
        );
        let expected = cohort.len() * READINGS_PER_DAY;
        assert_eq!(
            outcomes(&responses, ImportOutcome::Accepted),
            expected,
            "{backend:?}"
        );
        let tail = &responses[last].results;
        let reasons: Vec<&str> = tail[tail.len() - 3..]
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            ["PATIENT_NOT_FOUND", "INVALID_REQUEST", "SCOPE_MISSING"]
        );
        assert_eq!(tail[tail.len() - 2].field_violations[0].field, "request_id");
        assert!(
            responses.iter().all(|r| !r.audit_entry_id.is_empty()),
            "each message audited"
        );

        // The feed re-sends the whole day: nothing is written twice.
        let again = import(&platform, messages).await;
        assert_eq!(
            outcomes(&again, ImportOutcome::Deduplicated),
            expected,
            "{backend:?}"
        );
        assert_eq!(outcomes(&again, ImportOutcome::Accepted), 0);

        // A clinician sees each patient's 288 readings.
        let (_, nhs) = &cohort[cohort.len() - 1];
        let clinician = token_at("A81001", "R8000", "user/Observation.rs", "gp-system");
        let mut seen = 0;
        let mut page_token = String::new();
        loop {
            let page = platform
                .access_client()
                .await
                .read_patient_record(authed(
                    ReadPatientRecordRequest {
                        patient: by_nhs(nhs),
                        purpose_of_use: "TREAT".into(),
                        page_size: 1000,
                        page_token,
                        ..ReadPatientRecordRequest::default()
                    },
                    &clinician,
                ))
                .await
                .unwrap()
                .into_inner();
            seen += page.records.len();
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(seen, READINGS_PER_DAY, "{backend:?}");
    }
}
