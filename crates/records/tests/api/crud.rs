//! CreateRecord, GetRecord, UpdateRecord, RetractRecord, ListRecordVersions.

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, GetRecordRequest, ListRecordVersionsRequest, Record, RecordStatus,
    RecordView, RetractRecordRequest, UpdateRecordRequest,
};
use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

#[tokio::test]
async fn create_then_get_latest_any_version_and_metadata() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let mut input = record(&patient.to_uppercase());
        input.data_classes = vec!["mental-health".into(), "hiv".into(), "mental-health".into()];
        input.effective_time = Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000,
        });
        input.authoring_organisation_ods_code = "b86001".into();
        input.payload = format!(r#"{{"resourceType":"Observation","subject":{{"reference":"{BASE_URL}/Patient/{patient}"}}}}"#).into_bytes();
        let created = create(&mut client, input.clone()).await;
        assert_eq!(created.patient_id, patient, "stored lower case");
        assert_eq!(created.version, 1);
        assert_eq!(created.status, RecordStatus::Current as i32);
        assert_eq!(created.payload, input.payload, "payload byte for byte");
        assert_eq!(
            created.content_hash,
            hex::encode(Sha256::digest(&input.payload))
        );
        assert_eq!(created.payload_size, input.payload.len() as i64);
        assert_eq!(created.data_classes, ["hiv", "mental-health"]);
        assert_eq!(created.authoring_organisation_ods_code, "B86001");
        assert_eq!(created.create_time, created.update_time);
        assert_eq!(
            created.recorded_time, created.create_time,
            "recorded_time defaults to create_time"
        );
        assert_eq!(created.effective_time, input.effective_time);
        assert!(!created.etag.is_empty());

        let record_id = created.record_id.to_uppercase();
        for (version, view) in [(0, RecordView::Unspecified), (1, RecordView::Full)] {
            assert_eq!(get(&mut client, &record_id, version, view).await, created);
        }
        let metadata = get(&mut client, &record_id, 0, RecordView::Metadata).await;
        assert!(metadata.payload.is_empty());
        assert_eq!(metadata.content_hash, created.content_hash);
        assert_eq!(metadata.payload_size, created.payload_size);
    })
    .await;
}

#[tokio::test]
async fn concurrent_gets_each_receive_their_own_record() {
    // Concurrent reads of latest versions are looked up together: each call must still get its
    // own record, in its own view, or NOT_FOUND for an unknown id, whatever it is read with.
    on_each_backend(async |mut client| {
        let mut records = Vec::new();
        for _ in 0..20 {
            let mut r = record(&new_id());
            r.author = new_id();
            records.push(create(&mut client, r).await);
        }
        let change = Record {
            author: "updated".into(),
            ..records[0].clone()
        };
        records[0] = update(
            &mut client,
            update_request(change, &records[0].etag, &["author"]),
        )
        .await;
        let unknown = new_id();
        let calls = (0..200).map(|i| {
            let mut client = client.clone();
            let wanted = (i % 7 != 3).then(|| records[i % records.len()].clone());
            let view = if i % 2 == 0 {
                RecordView::Full
            } else {
                RecordView::Metadata
            };
            let record_id = wanted
                .as_ref()
                .map_or(unknown.clone(), |r| r.record_id.clone());
            async move {
                let got = client.get_record(get_request(&record_id, 0, view)).await;
                match wanted {
                    None => assert_eq!(got.unwrap_err().code(), Code::NotFound),
                    Some(mut expected) => {
                        if view == RecordView::Metadata {
                            expected.payload.clear();
                        }
                        assert_eq!(got.unwrap().into_inner().record.unwrap(), expected);
                    }
                }
            }
        });
        let calls: Vec<_> = calls.map(tokio::spawn).collect();
        for call in calls {
            call.await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn create_is_idempotent_by_request_id() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let request = create_request(record(&patient));
        let first = create_with(&mut client, request.clone()).await;
        let retry = create_with(&mut client, request.clone()).await;
        assert_eq!(retry, first);

        // After an update, a retry still returns version 1 as first created.
        update(&mut client, update_request(first.clone(), &first.etag, &[])).await;
        let retry = create_with(&mut client, request.clone()).await;
        assert_eq!(retry, first);

        // The same request id with a different record.
        let mut different = request.clone();
        different.record.as_mut().unwrap().author = "someone else".into();
        let status = client.create_record(different).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status), "REQUEST_ID_REUSED");

        // Concurrent retries of one request create one record.
        let concurrent = create_request(record(&patient));
        let calls = (0..8).map(|_| {
            let mut client = client.clone();
            let request = concurrent.clone();
            tokio::spawn(async move { create_with(&mut client, request).await.record_id })
        });
        let mut ids = Vec::new();
        for call in calls {
            ids.push(call.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(list_all(&mut client, &patient).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn create_refuses_bad_input_precisely_and_writes_nothing() {
    on_each_backend_with(
        &[("CARERECORD_RECORDS_MAX_PAYLOAD_BYTES", "64KiB")],
        async |mut client| {
            let patient = new_id();
            let other = new_id();
            let with = |change: &dyn Fn(&mut Record)| {
                let mut r = record(&patient);
                change(&mut r);
                create_request(r)
            };
            let cases: Vec<(CreateRecordRequest, Vec<&str>, &str)> = vec![
                (
                    with(&|r| r.payload = b"{not json".to_vec()),
                    vec!["record.payload"],
                    "not valid JSON",
                ),
                (
                    with(&|r| r.payload = b"[]".to_vec()),
                    vec!["record.payload"],
                    "must be an object",
                ),
                (
                    with(&|r| r.resource_type = "Condition".into()),
                    vec!["record.payload"],
                    "/resourceType",
                ),
                (
                    with(&|r| r.payload = observation(&other)),
                    vec!["record.payload"],
                    "/subject/reference: expected Patient/",
                ),
                (
                    with(&|r| r.payload = vec![b' '; 70_000]),
                    vec!["record.payload"],
                    "the payload is 70000 bytes, over the limit of 65536 bytes",
                ),
                (
                    with(&|r| r.resource_type = "Patient".into()),
                    vec!["record.resource_type"],
                    "cannot be records",
                ),
                (
                    with(&|r| r.resource_type = "observation".into()),
                    vec!["record.resource_type"],
                    "not a FHIR R4 resource type",
                ),
                (
                    with(&|r| r.content_type = "application/json".into()),
                    vec!["record.content_type"],
                    "only application/fhir+json",
                ),
                (
                    with(&|r| r.data_classes = vec!["hiv".into(), "cardiology".into()]),
                    vec!["record.data_classes[1]"],
                    "unknown data class",
                ),
                (
                    with(&|r| r.patient_id = "not-a-uuid".into()),
                    vec!["record.patient_id"],
                    "UUID",
                ),
                (
                    with(&|r| r.patient_id = "00000000-0000-0000-0000-000000000000".into()),
                    vec!["record.patient_id"],
                    "nil",
                ),
                (
                    with(&|r| r.source_system = String::new()),
                    vec!["record.source_system"],
                    "required",
                ),
                (
                    with(&|r| r.authoring_organisation_ods_code = "R-8".into()),
                    vec!["record.authoring_organisation_ods_code"],
                    "ODS",
                ),
                (
                    with(&|r| {
                        r.recorded_time = Some(Timestamp {
                            seconds: 4_000_000_000,
                            nanos: 0,
                        })
                    }),
                    vec!["record.recorded_time"],
                    "5 minutes",
                ),
            ];
            for (request, fields, description) in cases {
                let status = client.create_record(request).await.unwrap_err();
                assert_invalid(&status, &fields);
                assert!(
                    first_description(&status).contains(description),
                    "{description}: {status:?}"
                );
            }
            let request = |change: &dyn Fn(&mut CreateRecordRequest)| {
                let mut request = create_request(record(&patient));
                change(&mut request);
                request
            };
            let cases: [(CreateRecordRequest, &[&str]); 3] = [
                (
                    request(&|r| {
                        r.request_id = String::new();
                        r.requester = None;
                    }),
                    &["request_id", "requester"],
                ),
                (
                    request(&|r| {
                        r.request_id = "123".into();
                        r.requester.as_mut().unwrap().user_id = String::new();
                    }),
                    &["request_id", "requester.user_id"],
                ),
                (request(&|r| r.record = None), &["record"]),
            ];
            for (request, fields) in cases {
                assert_invalid(&client.create_record(request).await.unwrap_err(), fields);
            }

            assert!(
                list_all(&mut client, &patient).await.is_empty(),
                "nothing written"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn get_refuses_bad_ids_and_unknown_records() {
    on_each_backend(async |mut client| {
        let created = create(&mut client, record(&new_id())).await;
        let invalid: [(GetRecordRequest, &[&str]); 2] = [
            (
                GetRecordRequest {
                    record_id: "nope".into(),
                    version: -1,
                    view: 0,
                },
                &["record_id", "version"],
            ),
            (
                GetRecordRequest {
                    record_id: String::new(),
                    version: 0,
                    view: 9,
                },
                &["record_id", "view"],
            ),
        ];
        for (request, fields) in invalid {
            assert_invalid(&client.get_record(request).await.unwrap_err(), fields);
        }
        let unknown = new_id();
        let status = client
            .get_record(get_request(&unknown, 0, RecordView::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let info = resource_info(&status);
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            ("carerecord.records.v1.Record", unknown.as_str())
        );
        let status = client
            .get_record(get_request(&created.record_id, 2, RecordView::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    })
    .await;
}

#[tokio::test]
async fn update_writes_versions_guarded_by_etag() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let v1 = create(&mut client, record(&patient)).await;

        // A masked update replaces only the author and keeps everything else.
        let mut change = v1.clone();
        change.author = "https://fhir.nhs.uk/Id/sds-user-id|123456789012".into();
        change.payload = b"ignored: not in the mask".to_vec();
        change.patient_id = String::new();
        let v2 = update(&mut client, update_request(change, &v1.etag, &["author"])).await;
        assert_eq!(v2.version, 2);
        assert_ne!(v2.etag, v1.etag);
        assert_eq!(v2.author, "https://fhir.nhs.uk/Id/sds-user-id|123456789012");
        assert_eq!(v2.payload, v1.payload);
        assert_eq!(v2.create_time, v1.create_time);
        assert_eq!(v2.recorded_time, v1.recorded_time);

        // A full replacement with a new payload.
        let mut change = v2.clone();
        change.payload = format!(r#"{{"resourceType":"Observation","status":"amended","subject":{{"reference":"urn:uuid:{patient}"}}}}"#).into_bytes();
        change.data_classes = vec!["safeguarding".into()];
        let v3 = update(
            &mut client,
            update_request(change.clone(), &v2.etag, &["*"]),
        )
        .await;
        assert_eq!(v3.version, 3);
        assert_eq!(v3.payload, change.payload);
        assert_eq!(v3.data_classes, ["safeguarding"]);

        // Stale etag: ABORTED, nothing written.
        let status = client
            .update_record(update_request(v3.clone(), &v2.etag, &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(reason(&status), "ETAG_MISMATCH");

        // Bad requests: the fields at fault, and how the first violation's description begins.
        let with = |change: &dyn Fn(&mut Record), etag: &str, paths: &[&str]| {
            let mut bad = v3.clone();
            change(&mut bad);
            update_request(bad, etag, paths)
        };
        let invalid: [(UpdateRecordRequest, &[&str], &str); 6] = [
            (
                with(&|r| r.patient_id = new_id(), &v3.etag, &[]),
                &["record.patient_id"],
                "",
            ),
            (
                with(
                    &|r| r.resource_type = "Condition".into(),
                    &v3.etag,
                    &["author"],
                ),
                &["record.resource_type"],
                "",
            ),
            (
                with(
                    &|r| r.payload = observation(&new_id()),
                    &v3.etag,
                    &["payload"],
                ),
                &["record.payload"],
                "/subject/reference",
            ),
            (
                with(&|_| {}, &v3.etag, &["patient_id"]),
                &["update_mask"],
                "",
            ),
            (
                with(&|r| r.source_system = String::new(), "", &[]),
                &["etag", "record.source_system"],
                "",
            ),
            (
                UpdateRecordRequest {
                    record: None,
                    etag: v3.etag.clone(),
                    update_mask: None,
                    requester: None,
                },
                &["record"],
                "",
            ),
        ];
        for (request, fields, description) in invalid {
            let status = client.update_record(request).await.unwrap_err();
            assert_invalid(&status, fields);
            assert!(first_description(&status).starts_with(description));
        }
        let mut unknown = v3.clone();
        unknown.record_id = new_id();
        assert_eq!(
            client
                .update_record(update_request(unknown, &v3.etag, &[]))
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );

        let latest = get(&mut client, &v1.record_id, 0, RecordView::Unspecified).await;
        assert_eq!(latest, v3, "refused updates wrote nothing");
    })
    .await;
}

#[tokio::test]
async fn concurrent_updates_with_one_etag_let_exactly_one_win() {
    on_each_backend(async |mut client| {
        let v1 = create(&mut client, record(&new_id())).await;
        let calls = (0..6).map(|i| {
            let mut client = client.clone();
            let mut change = v1.clone();
            change.author = format!("author {i}");
            let request = update_request(change, &v1.etag, &[]);
            tokio::spawn(async move { client.update_record(request).await })
        });
        let mut won = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => won += 1,
                Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
            }
        }
        assert_eq!(won, 1);
    })
    .await;
}

#[tokio::test]
async fn retract_keeps_every_version_readable_and_blocks_changes() {
    on_each_backend(async |mut client| {
        let v1 = create(&mut client, record(&new_id())).await;
        let invalid: [(RetractRecordRequest, &[&str]); 3] = [
            (retract_request(&v1.record_id, &v1.etag, "  "), &["reason"]),
            (
                retract_request(&v1.record_id, &v1.etag, &"x".repeat(1025)),
                &["reason"],
            ),
            (
                RetractRecordRequest {
                    record_id: "x".into(),
                    etag: String::new(),
                    reason: String::new(),
                    requester: None,
                },
                &["record_id", "etag", "reason", "requester"],
            ),
        ];
        for (request, fields) in invalid {
            assert_invalid(&client.retract_record(request).await.unwrap_err(), fields);
        }
        assert_eq!(
            client
                .retract_record(retract_request(&v1.record_id, "v9-9", "wrong patient"))
                .await
                .unwrap_err()
                .code(),
            Code::Aborted
        );

        let v2 = retract(
            &mut client,
            retract_request(&v1.record_id, &v1.etag, "entered against the wrong patient"),
        )
        .await;
        assert_eq!(v2.version, 2);
        assert_eq!(v2.status, RecordStatus::EnteredInError as i32);
        assert_eq!(v2.retraction_reason, "entered against the wrong patient");
        assert_eq!(v2.payload, v1.payload);

        let status = client
            .retract_record(retract_request(&v1.record_id, &v2.etag, "again"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let violation = &details.precondition_failure().unwrap().violations[0];
        assert_eq!(
            (violation.r#type.as_str(), violation.subject.as_str()),
            ("RECORD_STATUS", v1.record_id.as_str())
        );
        let status = client
            .update_record(update_request(v2.clone(), &v2.etag, &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);

        for (version, expected) in [(1, &v1), (0, &v2)] {
            let read = get(&mut client, &v1.record_id, version, RecordView::Unspecified).await;
            assert_eq!(&read, expected);
        }
    })
    .await;
}

#[tokio::test]
async fn versions_are_listed_newest_first_in_pages() {
    on_each_backend(async |mut client| {
        let mut latest = create(&mut client, record(&new_id())).await;
        let record_id = latest.record_id.clone();
        for i in 0..3 {
            let mut change = latest.clone();
            change.author = format!("author {i}");
            let mut request = update_request(change, &latest.etag, &[]);
            request.requester.as_mut().unwrap().user_id = format!("user {i}");
            latest = update(&mut client, request).await;
        }
        latest = retract(
            &mut client,
            retract_request(&record_id, &latest.etag, "dup"),
        )
        .await;

        let page = |page_token: String| ListRecordVersionsRequest {
            record_id: record_id.clone(),
            page_size: 2,
            page_token,
            view: RecordView::Metadata as i32,
        };
        let mut pages = Vec::new();
        let mut page_token = String::new();
        for _ in 0..3 {
            let listed = client
                .list_record_versions(page(page_token))
                .await
                .unwrap()
                .into_inner();
            page_token = listed.next_page_token.clone();
            pages.push(listed);
        }
        // A version written after the first page is not listed by this listing.
        let first_token = pages[0].next_page_token.clone();
        assert!(!first_token.is_empty());
        assert!(pages[2].next_page_token.is_empty());
        let versions: Vec<_> = pages.iter().flat_map(|p| &p.versions).collect();
        let numbers: Vec<i64> = versions
            .iter()
            .map(|v| v.record.as_ref().unwrap().version)
            .collect();
        assert_eq!(numbers, [5, 4, 3, 2, 1]);
        let types: Vec<i32> = versions.iter().map(|v| v.change_type).collect();
        let (c, u, r) = (
            ChangeType::Created as i32,
            ChangeType::Updated as i32,
            ChangeType::Retracted as i32,
        );
        assert_eq!(types, [r, u, u, u, c]);
        assert_eq!(versions[1].requester.as_ref().unwrap().user_id, "user 2");
        assert!(
            versions
                .iter()
                .all(|v| v.record.as_ref().unwrap().payload.is_empty())
        );
        assert_eq!(versions[0].record.as_ref().unwrap().etag, latest.etag);

        // A token is bound to its record and cannot be edited.
        let other = create(&mut client, record(&new_id())).await;
        let mut moved = page(first_token.clone());
        moved.record_id = other.record_id.clone();
        let mut tampered = first_token.clone();
        tampered.replace_range(
            tampered.len() - 2..,
            if tampered.ends_with("AA") { "AB" } else { "AA" },
        );
        for request in [moved, page(tampered)] {
            assert_invalid(
                &client.list_record_versions(request).await.unwrap_err(),
                &["page_token"],
            );
        }
        let unknown = ListRecordVersionsRequest {
            record_id: new_id(),
            ..Default::default()
        };
        assert_eq!(
            client
                .list_record_versions(unknown)
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
    })
    .await;
}
