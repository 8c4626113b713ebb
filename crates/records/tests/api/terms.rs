//! ListRecords filters on the payload's clinical terms (codes, categories, statuses) and
//! updated_before, as of the listing's snapshot, and the backfill of older versions' terms.

use carerecord_contracts::records::v1::{ListRecordsRequest, Record};
use carerecord_platform::db::{Database, DatabaseConfig};
use carerecord_platform::testing::TestDatabase;
use carerecord_records::MIGRATIONS;
use prost_types::Timestamp;

use crate::helpers::*;

const LOINC: &str = "http://loinc.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// An Observation with these codings of `code` and `category`, and this status.
fn observation_of(patient: &str, codes: &[(&str, &str)], categories: &str, status: &str) -> Record {
    let codings: Vec<String> = codes
        .iter()
        .map(|(system, code)| match system {
            &"" => format!(r#"{{"code":"{code}"}}"#),
            system => format!(r#"{{"system":"{system}","code":"{code}"}}"#),
        })
        .collect();
    let mut r = record(patient);
    r.payload = format!(
        r#"{{"resourceType":"Observation","status":"{status}","category":{categories},"code":{{"coding":[{}]}},"subject":{{"reference":"Patient/{patient}"}}}}"#,
        codings.join(",")
    )
    .into_bytes();
    r
}

fn category(code: &str) -> String {
    format!(r#"[{{"coding":[{{"system":"{CATEGORY}","code":"{code}"}}]}}]"#)
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// The record ids listed for `patient` with `change` applied, every page.
async fn listed(
    client: &mut Client,
    patient: &str,
    change: impl Fn(&mut ListRecordsRequest),
) -> Vec<String> {
    let mut request = ListRecordsRequest {
        patient_id: patient.to_owned(),
        page_size: 1,
        ..Default::default()
    };
    change(&mut request);
    let mut ids = Vec::new();
    loop {
        let page = list_page(client, request.clone()).await;
        ids.extend(page.records.into_iter().map(|r| r.record_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn codes_categories_and_statuses_filter_the_listing() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let heart = create(
            &mut client,
            observation_of(
                &patient,
                &[(LOINC, "8867-4"), ("", "hr")],
                &category("vital-signs"),
                "final",
            ),
        )
        .await;
        let glucose = create(
            &mut client,
            observation_of(
                &patient,
                &[(LOINC, "2339-0")],
                &category("laboratory"),
                "preliminary",
            ),
        )
        .await;
        // Imported the same way as created: the COPY path on PostgreSQL for large batches.
        let observation = observation_of(
            &patient,
            &[("http://snomed.info/sct", "8867-4")],
            r#"{"coding":[{"code":"survey"}]}"#,
            "final",
        );
        let message = import_message(vec![item(observation, &new_id())]);
        let mut imported = import(&mut client, vec![message]).await;
        let snomed = imported.accepted_records.remove(0).record_id;
        create(
            &mut client,
            observation_of(&new_id(), &[(LOINC, "8867-4")], "[]", "final"),
        )
        .await;

        let (h, g, s) = (&heart.record_id, &glucose.record_id, &snomed);
        for (codes, categories, statuses, expected) in [
            (vec![], vec![], vec![], vec![h, g, s]),
            (vec!["http://loinc.org|8867-4"], vec![], vec![], vec![h]),
            (vec!["8867-4"], vec![], vec![], vec![h, s]),
            (vec!["|hr"], vec![], vec![], vec![h]),
            (vec!["http://loinc.org|"], vec![], vec![], vec![h, g]),
            (
                vec!["2339-0", "http://snomed.info/sct|8867-4"],
                vec![],
                vec![],
                vec![g, s],
            ),
            (vec!["8867"], vec![], vec![], vec![]),
            (vec![], vec!["vital-signs"], vec![], vec![h]),
            (
                vec![],
                vec![&format!("{CATEGORY}|laboratory") as &str],
                vec![],
                vec![g],
            ),
            (vec![], vec!["|survey"], vec![], vec![s]),
            (vec![], vec![], vec!["final"], vec![h, s]),
            (vec![], vec![], vec!["preliminary", "amended"], vec![g]),
            (vec![], vec![], vec!["Final"], vec![]),
            (
                vec!["8867-4"],
                vec!["vital-signs", "survey"],
                vec!["final"],
                vec![h, s],
            ),
            (vec!["8867-4"], vec!["laboratory"], vec![], vec![]),
        ] {
            let ids = listed(&mut client, &patient, |r| {
                r.codes = strings(&codes);
                r.categories = strings(&categories);
                r.statuses = strings(&statuses);
            })
            .await;
            let expected: Vec<String> = expected.into_iter().cloned().collect();
            assert_eq!(
                ids, expected,
                "codes {codes:?} categories {categories:?} statuses {statuses:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_bulk_import_stores_the_terms_of_every_item() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        // Enough items for PostgreSQL to write them with COPY.
        let items = (0..150)
            .map(|i| {
                let status = if i % 3 == 0 { "final" } else { "registered" };
                let code = i.to_string();
                item(
                    observation_of(&patient, &[(LOINC, &code)], &category("laboratory"), status),
                    &new_id(),
                )
            })
            .collect();
        let response = import(&mut client, vec![import_message(items)]).await;
        assert_eq!(response.accepted_count, 150);
        let page = list_page(
            &mut client,
            ListRecordsRequest {
                patient_id: patient.clone(),
                statuses: strings(&["final"]),
                categories: strings(&[&format!("{CATEGORY}|laboratory") as &str]),
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.records.len(), 50);
        let coded = listed(&mut client, &patient, |r| {
            r.codes = strings(&["http://loinc.org|149", "7"])
        })
        .await;
        let expected: Vec<String> = [7, 149]
            .iter()
            .map(|&i| response.accepted_records[i].record_id.clone())
            .collect();
        assert_eq!(coded, expected);
    })
    .await;
}

#[tokio::test]
async fn payload_filters_see_each_record_as_of_the_snapshot() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let first = create(
            &mut client,
            observation_of(&patient, &[(LOINC, "1")], "[]", "preliminary"),
        )
        .await;
        let second = create(
            &mut client,
            observation_of(&patient, &[(LOINC, "1")], "[]", "preliminary"),
        )
        .await;
        let request = ListRecordsRequest {
            patient_id: patient.clone(),
            statuses: strings(&["preliminary"]),
            codes: strings(&["1"]),
            page_size: 1,
            ..Default::default()
        };
        let page = list_page(&mut client, request.clone()).await;
        assert_eq!(page.records[0].record_id, first.record_id);
        // After the snapshot: the second record stops matching, a third starts to.
        let mut change = observation_of(&patient, &[(LOINC, "1")], "[]", "final");
        change.record_id = second.record_id.clone();
        let amended = update(
            &mut client,
            update_request(change, &second.etag, &["payload"]),
        )
        .await;
        create(
            &mut client,
            observation_of(&patient, &[(LOINC, "1")], "[]", "preliminary"),
        )
        .await;
        let next = list_page(
            &mut client,
            ListRecordsRequest {
                page_token: page.next_page_token.clone(),
                ..request.clone()
            },
        )
        .await;
        assert_eq!(
            next.records[0].record_id, second.record_id,
            "as of the snapshot"
        );
        assert_eq!(next.records[0].version, 1);
        assert!(next.next_page_token.is_empty());
        // A fresh listing sees the update; a retraction keeps the terms of the version it retracts.
        let now = listed(&mut client, &patient, |r| r.statuses = strings(&["final"])).await;
        assert_eq!(now, std::slice::from_ref(&second.record_id));
        retract(
            &mut client,
            retract_request(&second.record_id, &amended.etag, "wrong"),
        )
        .await;
        let retracted = listed(&mut client, &patient, |r| {
            r.statuses = strings(&["final"]);
            r.include_retracted = true;
        })
        .await;
        assert_eq!(retracted, std::slice::from_ref(&second.record_id));
        // An update of metadata only keeps the payload's terms.
        let mut change = first.clone();
        change.author = "someone else".into();
        update(
            &mut client,
            update_request(change, &first.etag, &["author"]),
        )
        .await;
        let kept = listed(&mut client, &patient, |r| {
            r.codes = strings(&["http://loinc.org|1"])
        })
        .await;
        assert_eq!(kept.first(), Some(&first.record_id));
        // The token is bound to the new filters.
        let mut moved = request.clone();
        moved.page_token = page.next_page_token.clone();
        moved.statuses = strings(&["final"]);
        assert_invalid(
            &client.list_records(moved).await.unwrap_err(),
            &["page_token"],
        );
    })
    .await;
}

#[tokio::test]
async fn updated_before_bounds_the_update_time() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let early = create(&mut client, record(&patient)).await;
        let late = create(&mut client, record(&patient)).await;
        let boundary = late.update_time;
        let before = listed(&mut client, &patient, |r| r.updated_before = boundary).await;
        assert_eq!(before, std::slice::from_ref(&early.record_id));
        let window = listed(&mut client, &patient, |r| {
            r.updated_since = boundary;
            r.updated_before = Some(Timestamp {
                seconds: boundary.as_ref().unwrap().seconds + 60,
                nanos: 0,
            });
        })
        .await;
        assert_eq!(window, std::slice::from_ref(&late.record_id));
    })
    .await;
}

#[tokio::test]
async fn payload_filters_refuse_bad_values_by_field() {
    on_each_backend(async |mut client| {
        let request = |change: &dyn Fn(&mut ListRecordsRequest)| {
            let mut r = ListRecordsRequest {
                patient_id: new_id(),
                ..Default::default()
            };
            change(&mut r);
            r
        };
        let long = "x".repeat(513);
        let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
        for (bad, fields) in [
            (
                request(&|r| r.codes = strings(&["ok", "", "|", "a\tb"])),
                &["codes[1]", "codes[2]", "codes[3]"][..],
            ),
            (request(&|r| r.codes = vec!["a".into(); 51]), &["codes"]),
            (
                request(&|r| r.categories = strings(&["ok", &long])),
                &["categories[1]"],
            ),
            (
                request(&|r| r.categories = vec!["a".into(); 51]),
                &["categories"],
            ),
            (
                request(&|r| r.statuses = strings(&["final", "\n"])),
                &["statuses[1]"],
            ),
            (
                request(&|r| r.statuses = vec!["final".into(); 21]),
                &["statuses"],
            ),
            (
                request(&|r| {
                    r.updated_since = at(100);
                    r.updated_before = at(100);
                }),
                &["updated_before"],
            ),
            (
                request(&|r| {
                    r.updated_before = Some(Timestamp {
                        seconds: 0,
                        nanos: -1,
                    })
                }),
                &["updated_before"],
            ),
        ] {
            assert_invalid(&client.list_records(bad).await.unwrap_err(), fields);
        }
        // At the limits: accepted.
        let fine = request(&|r| {
            r.codes = vec!["a".into(); 50];
            r.categories = vec!["x".repeat(512)];
            r.statuses = vec!["final".into(); 20];
        });
        client.list_records(fine).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn versions_written_before_terms_were_stored_get_them_at_start_up() {
    for db in TestDatabase::each_backend().await {
        let app = spawn_app(&db).await;
        let mut client = app.client.clone();
        let patient = new_id();
        let mut written = Vec::new();
        for i in 0..7 {
            let status = if i % 2 == 0 { "final" } else { "amended" };
            let r = create(
                &mut client,
                observation_of(
                    &patient,
                    &[(LOINC, &i.to_string())],
                    &category("vital-signs"),
                    status,
                ),
            )
            .await;
            written.push(r.record_id);
        }
        app.stop().await;
        // As a database migrated from the release before terms: no terms, all to backfill.
        let database = Database::connect(&DatabaseConfig::new(&db.url).unwrap(), &MIGRATIONS)
            .await
            .unwrap();
        for sql in [
            "UPDATE record_versions SET codes = NULL, categories = NULL, fhir_status = NULL",
            "UPDATE terms_backfill SET done_seq = 0, target_seq = (SELECT seq FROM feed_head WHERE id = 1)",
        ] {
            sqlx::query(sql).execute(&database.pool).await.unwrap();
        }
        database.pool.close().await;

        let app = spawn_app(&db).await;
        let mut client = app.client.clone();
        let finals = listed(&mut client, &patient, |r| {
            r.statuses = strings(&["final"]);
            r.categories = strings(&["vital-signs"]);
        })
        .await;
        let expected: Vec<String> = written.iter().step_by(2).cloned().collect();
        assert_eq!(finals, expected);
        let three = listed(&mut client, &patient, |r| {
            r.codes = strings(&["http://loinc.org|3"])
        })
        .await;
        assert_eq!(three, [written[3].clone()]);
        app.stop().await;
    }
}
