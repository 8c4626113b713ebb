//! ListRecords: filters, snapshot pagination, page tokens.

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::records::v1::{ListRecordsRequest, Record, RecordOrder};
use prost_types::Timestamp;

use crate::helpers::*;

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.record_id.clone()).collect()
}

async fn list(client: &mut Client, request: ListRecordsRequest) -> Vec<Record> {
    list_page(client, request).await.records
}

#[tokio::test]
async fn filters_combine_with_and_and_match_any_value() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let make = |resource_type: &str, classes: &[&str], effective: Option<i64>| {
            let mut r = record(&patient);
            r.resource_type = resource_type.into();
            r.payload = format!(r#"{{"resourceType":"{resource_type}","subject":{{"reference":"Patient/{patient}"}}}}"#).into_bytes();
            r.data_classes = classes.iter().map(|c| (*c).to_owned()).collect();
            r.effective_time = effective.and_then(at);
            r
        };
        let obs = create(&mut client, make("Observation", &[], Some(1000))).await;
        let mental = create(
            &mut client,
            make("Condition", &["mental-health"], Some(2000)),
        )
        .await;
        let hiv = create(
            &mut client,
            make("Observation", &["hiv", "sexual-health"], Some(3000)),
        )
        .await;
        let undated = create(&mut client, make("CarePlan", &[], None)).await;
        let retracted = create(&mut client, make("Observation", &[], Some(4000))).await;
        retract(
            &mut client,
            retract_request(&retracted.record_id, &retracted.etag, "error"),
        )
        .await;
        create(&mut client, record(&new_id())).await; // another patient's

        let base = || ListRecordsRequest {
            patient_id: patient.clone(),
            ..Default::default()
        };
        let with = |change: &dyn Fn(&mut ListRecordsRequest)| {
            let mut request = base();
            change(&mut request);
            request
        };
        let mut all = base();
        all.include_retracted = true;
        assert_eq!(list(&mut client, all).await.len(), 5);
        let cases: Vec<(ListRecordsRequest, Vec<&Record>)> = vec![
            (base(), vec![&obs, &mental, &hiv, &undated]),
            (
                with(&|r| r.resource_types = vec!["Condition".into(), "CarePlan".into()]),
                vec![&mental, &undated],
            ),
            (
                with(&|r| r.data_classes = vec!["sexual-health".into(), "mental-health".into()]),
                vec![&mental, &hiv],
            ),
            (
                with(&|r| r.excluded_data_classes = vec!["hiv".into()]),
                vec![&obs, &mental, &undated],
            ),
            (
                with(&|r| {
                    r.effective_time = Some(Period {
                        start: at(2000),
                        end: at(3000),
                    })
                }),
                vec![&mental],
            ),
            (
                with(&|r| {
                    r.effective_time = Some(Period {
                        start: at(1500),
                        end: None,
                    })
                }),
                vec![&mental, &hiv],
            ),
            (
                with(&|r| r.updated_since = hiv.update_time),
                vec![&hiv, &undated],
            ),
            (
                ListRecordsRequest {
                    patient_id: new_id(),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (request, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|r| r.record_id.clone()).collect();
            assert_eq!(ids(&list(&mut client, request).await), expected);
        }
        let mut newest_first = base();
        newest_first.order = RecordOrder::EffectiveTimeDescending as i32;
        newest_first.page_size = 1;
        let mut seen = Vec::new();
        loop {
            let page = list_page(&mut client, newest_first.clone()).await;
            seen.extend(page.records);
            if page.next_page_token.is_empty() {
                break;
            }
            newest_first.page_token = page.next_page_token;
        }
        assert_eq!(
            ids(&seen),
            ids(&[hiv, mental, obs, undated]),
            "effective time descending, undated last"
        );
    })
    .await;
}

#[tokio::test]
async fn pages_hold_a_snapshot_while_records_are_added() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let mut before = Vec::new();
        for _ in 0..7 {
            before.push(create(&mut client, record(&patient)).await);
        }
        let mut request = ListRecordsRequest {
            patient_id: patient.clone(),
            page_size: 3,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut cursors = Vec::new();
        let mut pages = 0;
        loop {
            let page = list_page(&mut client, request.clone()).await;
            pages += 1;
            seen.extend(page.records);
            cursors.push(page.watch_cursor);
            // Writes between pages: a new record each time, and once a retraction of a record
            // not yet listed, which the snapshot still shows as current.
            create(&mut client, record(&patient)).await;
            if pages == 1 {
                let last = &before[6];
                retract(
                    &mut client,
                    retract_request(&last.record_id, &last.etag, "error"),
                )
                .await;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(
            ids(&seen),
            ids(&before),
            "each record of the snapshot exactly once, none added later"
        );
        assert!(
            cursors.windows(2).all(|w| w[0] == w[1]),
            "one watch cursor per listing"
        );
        assert!(
            seen.iter().all(|r| r.version == 1),
            "records as of the snapshot"
        );
        assert_eq!(list_all(&mut client, &patient).await.len(), 10);
    })
    .await;
}

#[tokio::test]
async fn page_tokens_cannot_be_forged_or_moved_to_another_query() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        for _ in 0..3 {
            create(&mut client, record(&patient)).await;
        }
        let request = ListRecordsRequest {
            patient_id: patient.clone(),
            page_size: 1,
            ..Default::default()
        };
        let token = list_page(&mut client, request.clone())
            .await
            .next_page_token;
        assert!(!token.is_empty());

        let mut other_filter = request.clone();
        other_filter.resource_types = vec!["Observation".into()];
        let mut other_patient = request.clone();
        other_patient.patient_id = new_id();
        let moved = [other_filter, other_patient].map(|mut moved| {
            moved.page_token = token.clone();
            moved
        });
        let forged = [
            format!("{token}A"),
            "garbage!".to_owned(),
            token[..token.len() - 1].to_owned(),
        ]
        .map(|forged| ListRecordsRequest {
            page_token: forged,
            ..request.clone()
        });
        for refused in moved.into_iter().chain(forged) {
            assert_invalid(
                &client.list_records(refused).await.unwrap_err(),
                &["page_token"],
            );
        }
        // page_size and view are not bound.
        let mut resized = request.clone();
        resized.page_token = token;
        resized.page_size = 100;
        resized.view = 2;
        assert_eq!(list(&mut client, resized).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn list_refuses_bad_filters() {
    on_each_backend(async |mut client| {
        let status = client
            .list_records(ListRecordsRequest {
                patient_id: "p".into(),
                resource_types: vec!["Observation".into(), "observation".into()],
                data_classes: vec!["cardiology".into()],
                excluded_data_classes: vec!["hiv".into(), "x".into()],
                effective_time: Some(Period {
                    start: at(10),
                    end: at(10),
                }),
                page_size: -1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(
            &status,
            &[
                "patient_id",
                "resource_types[1]",
                "data_classes[0]",
                "excluded_data_classes[1]",
                "effective_time",
                "page_size",
            ],
        );
        let status = client
            .list_records(ListRecordsRequest {
                patient_id: new_id(),
                resource_types: vec!["Observation".into(); 51],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&status, &["resource_types"]);
    })
    .await;
}
