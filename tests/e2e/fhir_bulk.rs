//! FHIR Bulk Data export through the gateway, driven to completion as a Bulk Data client would:
//! kick-off (202 and `Content-Location`), polling with `Retry-After`, the manifest, the NDJSON
//! files, and cancellation; served from the front door's pseudonymised extract, so the national
//! data opt-out applies and nothing identifies a patient.

use std::time::{Duration, Instant};

use carerecord_e2e::{Fhir, KICK_OFF, Overrides, PROJECT, Platform, Reply, token, token_at};
use http::{Method, StatusCode};
use serde_json::Value;

use crate::fhir::{outcome, reason};

/// Polls `status_url` until the export is done (or fails the test after `limit`); returns the
/// manifest and how many polls were answered 202.
pub async fn wait_for(fhir: &Fhir, status_url: &str, limit: Duration) -> (Value, usize) {
    let started = Instant::now();
    let mut polls = 0;
    loop {
        let reply = fhir.get(status_url).await;
        match reply.status {
            StatusCode::ACCEPTED => {
                polls += 1;
                let wait: u64 = reply
                    .header("retry-after")
                    .and_then(|s| s.parse().ok())
                    .expect("202 says when to come back");
                assert!(started.elapsed() < limit, "the export took too long");
                // Sooner than asked: the test's exports are small.
                tokio::time::sleep(Duration::from_millis(50.min(wait * 1000))).await;
            }
            StatusCode::OK => return (reply.json(), polls),
            _ => panic!("export failed: {} {}", reply.status, reply.text()),
        }
    }
}

/// One NDJSON file's resources.
pub fn ndjson(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/fhir+ndjson")
    );
    reply
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON resource"))
        .collect()
}

#[tokio::test]
async fn a_bulk_export_runs_to_completion_and_honours_the_opt_out() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let mut may = Vec::new();
        for i in 0..3 {
            let (id, _) = platform
                .register_patient(&format!("Bulk{i}"), "Cohort")
                .await;
            platform.add_record(&id, &[]).await;
            platform.add_record(&id, &[]).await;
            may.push(id);
        }
        let (opted_out, opted_out_nhs) = platform.register_patient("Opted", "Out").await;
        platform.add_record(&opted_out, &[]).await;
        let mut checked = may.clone();
        checked.push(opted_out.clone());
        platform.record_opt_out_check(&checked, &may).await;

        let researcher = platform.fhir().with_token(&token("R8000", "system/*.rs"));
        let status_url = researcher.export_observations().await;
        assert!(status_url.starts_with(&researcher.base), "{status_url}");

        // Only the client that started it may see it.
        let stranger =
            platform
                .fhir()
                .with_token(&token_at("X99", "R8000", "system/*.rs", "another-client"));
        outcome(&stranger.get(&status_url).await, StatusCode::NOT_FOUND);
        outcome(
            &researcher.anonymous().get(&status_url).await,
            StatusCode::UNAUTHORIZED,
        );

        let (manifest, _) = wait_for(&researcher, &status_url, Duration::from_secs(60)).await;
        assert_eq!(manifest["requiresAccessToken"], true);
        assert!(manifest["transactionTime"].is_string());
        assert!(
            manifest["request"]
                .as_str()
                .is_some_and(|r| r.ends_with("$export?_type=Observation")),
            "{manifest}"
        );
        let output = manifest["output"].as_array().expect("output");
        assert_eq!(output.len(), 1, "{backend:?}: {manifest}");
        assert_eq!(output[0]["type"], "Observation");
        assert_eq!(
            output[0]["count"], 6,
            "{backend:?}: the opted-out patient is left out"
        );
        let url = output[0]["url"].as_str().expect("a file url");
        outcome(&stranger.get(url).await, StatusCode::NOT_FOUND);
        let file = researcher.get(url).await;
        assert!(
            !file.text().contains(&opted_out_nhs) && !file.text().contains("Cohort"),
            "nothing identifies a patient"
        );
        let resources = ndjson(&file);
        assert_eq!(resources.len(), 6);
        let mut pseudonyms = std::collections::BTreeSet::new();
        for resource in &resources {
            assert_eq!(resource["resourceType"], "Observation");
            let subject = resource["subject"]["reference"]
                .as_str()
                .expect("a subject");
            let pseudonym = subject
                .strip_prefix("Patient/")
                .expect("Patient/<pseudonym>");
            assert_eq!(pseudonym.len(), 64, "{subject}");
            assert!(!may.iter().any(|id| subject.contains(id.as_str())));
            pseudonyms.insert(pseudonym.to_owned());
        }
        assert_eq!(
            pseudonyms.len(),
            3,
            "{backend:?}: one pseudonym per patient"
        );

        // Cancelling removes the job and its files.
        let cancelled = researcher
            .send(Method::DELETE, &status_url, &[], None)
            .await;
        assert_eq!(
            cancelled.status,
            StatusCode::ACCEPTED,
            "{}",
            cancelled.text()
        );
        outcome(&researcher.get(&status_url).await, StatusCode::NOT_FOUND);
        outcome(&researcher.get(url).await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bulk_kick_off_refusals_are_operation_outcomes() {
    let platform = Platform::start(
        carerecord_platform::db::Backend::Sqlite,
        Overrides::default(),
    )
    .await;
    let researcher = platform.fhir().with_token(&token("R8000", "system/*.rs"));
    let export = format!("/Group/{PROJECT}/$export");
    // Bulk Data is asynchronous only.
    outcome(
        &researcher
            .send(Method::GET, &export, &KICK_OFF[1..], None)
            .await,
        StatusCode::BAD_REQUEST,
    );
    for query in [
        "_outputFormat=application/xml",
        "_type=Bundle",
        "_since=2025-01-01T00:00:00Z",
    ] {
        let reply = researcher
            .send(Method::GET, &format!("{export}?{query}"), &KICK_OFF, None)
            .await;
        outcome(&reply, StatusCode::BAD_REQUEST);
    }
    let unknown = researcher
        .send(
            Method::GET,
            "/Group/no-such-project/$export",
            &KICK_OFF,
            None,
        )
        .await;
    let unknown = outcome(&unknown, StatusCode::NOT_FOUND);
    assert_eq!(reason(&unknown), "PROJECT_NOT_FOUND");
    let treat = researcher
        .send(
            Method::GET,
            &export,
            &[("prefer", "respond-async"), ("x-purpose-of-use", "TREAT")],
            None,
        )
        .await;
    outcome(&treat, StatusCode::BAD_REQUEST);
    outcome(
        &researcher
            .anonymous()
            .send(Method::GET, &export, &KICK_OFF, None)
            .await,
        StatusCode::UNAUTHORIZED,
    );
    outcome(
        &researcher
            .get("/$export-status/0123456789abcdef0123456789abcdef")
            .await,
        StatusCode::NOT_FOUND,
    );
}
