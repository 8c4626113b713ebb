//! Record.modified_by: who wrote each version, on every read and in every view.

use std::time::Duration;

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{
    ExportRecordsRequest, ImportRecordsRequest, ListRecordVersionsRequest, ListRecordsRequest,
    Record, RecordView, WatchRecordChangesRequest,
};

use crate::helpers::*;

fn person(user_id: &str) -> Requester {
    Requester {
        user_id: user_id.into(),
        organisation_ods_code: "B86001".into(),
        role_code: "R8000".into(),
        display_name: format!("{user_id} display"),
    }
}

fn writer(record: &Record) -> &str {
    &record
        .modified_by
        .as_ref()
        .expect("modified_by set")
        .user_id
}

#[tokio::test]
async fn every_read_names_who_wrote_the_version_in_every_view() {
    on_each_backend(async |mut client| {
        let patient = new_id();
        let mut request = create_request(record(&patient));
        request.requester = Some(person("creator"));
        let created = create_with(&mut client, request).await;
        assert_eq!(created.modified_by, Some(person("creator")));
        let mut request = update_request(created.clone(), &created.etag, &["author"]);
        request.requester = Some(person("updater"));
        let updated = update(&mut client, request).await;
        assert_eq!(writer(&updated), "updater");
        let mut request = retract_request(&created.record_id, &updated.etag, "wrong patient");
        request.requester = Some(person("retractor"));
        let retracted = retract(&mut client, request).await;
        assert_eq!(retracted.modified_by, Some(person("retractor")));

        let mut imported = import(
            &mut client,
            vec![ImportRecordsRequest {
                items: vec![item(record(&patient), &new_id())],
                requester: Some(person("feed")),
                return_record_ids: true,
            }],
        )
        .await;
        let imported_id = imported.accepted_records.remove(0).record_id;

        for view in [RecordView::Full, RecordView::Metadata] {
            let id = &created.record_id;
            for (version, expected) in [(1, "creator"), (2, "updater"), (0, "retractor")] {
                let read = get(&mut client, id, version, view).await;
                assert_eq!(writer(&read), expected, "version {version} in {view:?}");
            }
            assert_eq!(
                writer(&get(&mut client, &imported_id, 0, view).await),
                "feed"
            );

            let versions = client
                .list_record_versions(ListRecordVersionsRequest {
                    record_id: id.clone(),
                    view: view as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .versions;
            let writers: Vec<&str> = versions
                .iter()
                .map(|v| writer(v.record.as_ref().unwrap()))
                .collect();
            assert_eq!(writers, ["retractor", "updater", "creator"]);
            for v in &versions {
                assert_eq!(v.record.as_ref().unwrap().modified_by, v.requester);
            }

            let listed = list_page(
                &mut client,
                ListRecordsRequest {
                    patient_id: patient.clone(),
                    include_retracted: true,
                    view: view as i32,
                    ..Default::default()
                },
            )
            .await
            .records;
            let writers: Vec<&str> = listed.iter().map(writer).collect();
            assert_eq!(writers, ["retractor", "feed"]);

            let export = ExportRecordsRequest {
                scope: Some(Scope::UpdatedBetween(Period::default())),
                include_retracted: true,
                view: view as i32,
                ..Default::default()
            };
            let exported = export_all(&mut client, export).await;
            let writers: Vec<&str> = exported
                .iter()
                .flat_map(|m| &m.records)
                .map(writer)
                .collect();
            assert_eq!(writers, ["retractor", "feed"]);

            let mut watch = open_watch(
                &mut client,
                WatchRecordChangesRequest {
                    patient_ids: vec![patient.clone()],
                    view: view as i32,
                    ..Default::default()
                },
            )
            .await;
            let mut changes = Vec::new();
            while changes.len() < 4 {
                let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
                    .await
                    .expect("a watch message within 10 s")
                    .unwrap()
                    .expect("stream open");
                changes.extend(message.changes);
            }
            let writers: Vec<&str> = changes
                .iter()
                .map(|c| writer(c.record.as_ref().unwrap()))
                .collect();
            assert_eq!(writers, ["creator", "updater", "retractor", "feed"]);
            for change in &changes {
                assert_eq!(
                    change.record.as_ref().unwrap().modified_by,
                    change.requester
                );
            }
        }
    })
    .await;
}
