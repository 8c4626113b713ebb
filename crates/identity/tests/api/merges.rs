//! Merges, unmerges and the change feed.

use std::time::Duration;

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::testing::TestDatabase;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

fn merge(source: &Patient, target: &Patient) -> MergePatientsRequest {
    MergePatientsRequest {
        request_id: request_id(),
        source_patient_id: source.patient_id.clone(),
        target_patient_id: target.patient_id.clone(),
        reason: "duplicate registration at ED, confirmed by PDS trace".into(),
        requester: Some(requester()),
        source_etag: source.etag.clone(),
        target_etag: target.etag.clone(),
    }
}

#[tokio::test]
async fn merge_then_unmerge_restores_both_exactly() {
    on_each_backend(async |c| {
        let mut dup = with_mrn(patient("Jo", "Smith", (1980, 3, 7)), "D1");
        dup.nhs_number = "9434765919".into();
        let dup = create(c, dup).await;
        let survivor = create(c, with_mrn(patient("Joanne", "Smith", (1980, 3, 7)), "S1")).await;

        let request = merge(&dup, &survivor);
        let merged = ok(c.merge_patients(request.clone()).await);
        let source = merged.source_patient.unwrap();
        let target = merged.target_patient.unwrap();
        assert_eq!(source.state, PatientState::Merged as i32);
        assert_eq!(source.merged_into_patient_id, survivor.patient_id);
        assert_eq!(source.version, 2);
        assert_eq!(target.merged_from_patient_ids, [dup.patient_id.as_str()]);
        assert_eq!(target.names, survivor.names);
        // A retry replays the first result.
        let replay = ok(c.merge_patients(request.clone()).await);
        assert_eq!(replay.source_patient.unwrap(), source);
        let mut reused = request.clone();
        reused.reason = "another reason".into();
        let status = refused(c.merge_patients(reused).await);
        assert_eq!(reason(&status), "REQUEST_ID_REUSED");

        // The duplicate's identifiers resolve to the survivor; reads show the merge.
        let r = ok(c
            .resolve_identifier(resolve_request(
                "https://fhir.nhs.uk/Id/nhs-number",
                "9434765919",
            ))
            .await);
        assert_eq!(r.patient_id, survivor.patient_id);
        assert!(r.followed_merge);
        assert_eq!(r.merged_patient_ids, [dup.patient_id.as_str()]);
        let got = get(c, &dup.patient_id).await;
        assert_eq!(got, source);
        // The merged duplicate keeps reserving its identifiers.
        let status = refused(
            c.create_patient(CreatePatientRequest {
                request_id: request_id(),
                patient: Some(with_mrn(patient("X", "Y", (1990, 1, 1)), "D1")),
                requester: Some(requester()),
            })
            .await,
        );
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(
            resource_info(&status)
                .description
                .contains(&survivor.patient_id)
        );
        // Merged patients are frozen.
        let status = refused(
            c.update_patient(update_request(source.clone(), &source.etag, &["names"], ""))
                .await,
        );
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(precondition(&status).r#type, "PATIENT_MERGED");

        // Merge errors: into itself, into a merged patient, missing patients, stale etags.
        let status = refused(c.merge_patients(merge(&survivor, &survivor)).await);
        assert_eq!(violations(&status), ["target_patient_id"]);
        let third = create(c, patient("Third", "Person", (1960, 1, 1))).await;
        let mut into_merged = merge(&third, &source);
        into_merged.target_etag.clear();
        let status = refused(c.merge_patients(into_merged).await);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(precondition(&status).subject, dup.patient_id);
        let ghost = Patient {
            patient_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        let status = refused(c.merge_patients(merge(&ghost, &ghost.clone())).await);
        assert_eq!(violations(&status), ["target_patient_id"]);
        let ghost2 = Patient {
            patient_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        let status = refused(c.merge_patients(merge(&ghost, &ghost2)).await);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status
                .get_error_details_vec()
                .iter()
                .filter(|d| matches!(d, tonic_types::ErrorDetail::ResourceInfo(_)))
                .count(),
            2
        );
        let mut stale = merge(&third, &target);
        stale.target_etag = survivor.etag.clone();
        let status = refused(c.merge_patients(stale).await);
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(metadata(&status, "patient_id"), survivor.patient_id);
        let status = refused(c.merge_patients(MergePatientsRequest::default()).await);
        assert_eq!(
            violations(&status),
            [
                "request_id",
                "source_patient_id",
                "target_patient_id",
                "reason",
                "requester"
            ]
        );

        // The survivor changes after the merge; the unmerge keeps that change.
        let mut changed = target.clone();
        changed.gender = carerecord_contracts::common::v1::AdministrativeGender::Other as i32;
        let target_v3 = ok(c
            .update_patient(update_request(changed, &target.etag, &["gender"], ""))
            .await)
        .patient
        .unwrap();

        let unmerge = |p: &Patient, etag: &str| UnmergePatientRequest {
            patient_id: p.patient_id.clone(),
            reason: "not the same person after all".into(),
            requester: Some(requester()),
            etag: etag.to_owned(),
        };
        let status = refused(c.unmerge_patient(unmerge(&source, &dup.etag)).await);
        assert_eq!(status.code(), Code::Aborted);
        let status = refused(c.unmerge_patient(unmerge(&survivor, &target_v3.etag)).await);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(precondition(&status).r#type, "PATIENT_NOT_MERGED");
        let status = refused(c.unmerge_patient(UnmergePatientRequest::default()).await);
        assert_eq!(
            violations(&status),
            ["patient_id", "etag", "reason", "requester"]
        );

        let restored = ok(c.unmerge_patient(unmerge(&source, &source.etag)).await);
        let back = restored.patient.unwrap();
        let former = restored.former_target_patient.unwrap();
        assert_eq!(back.state, PatientState::Active as i32);
        assert_eq!(back.version, 3);
        // Exactly as before the merge, apart from bookkeeping.
        let strip = |p: &Patient| Patient {
            version: 0,
            etag: String::new(),
            update_time: None,
            ..p.clone()
        };
        assert_eq!(strip(&back), strip(&dup));
        assert!(former.merged_from_patient_ids.is_empty());
        assert_eq!(former.gender, target_v3.gender);
        assert_eq!(
            strip(&former),
            Patient {
                gender: target_v3.gender,
                ..strip(&survivor)
            }
        );
        let r = ok(c.resolve_identifier(resolve_request(MRN, "D1")).await);
        assert_eq!(r.patient_id, dup.patient_id);
        assert!(!r.followed_merge);

        // History: who and why on both sides.
        let versions = versions(c, &dup.patient_id).await;
        let kinds: Vec<i32> = versions.iter().map(|v| v.change_type).collect();
        assert_eq!(
            kinds,
            [
                ChangeType::Created as i32,
                ChangeType::Merged as i32,
                ChangeType::Unmerged as i32
            ]
        );
        assert_eq!(versions[1].related_patient_id, survivor.patient_id);
        assert_eq!(
            versions[1].reason,
            "duplicate registration at ED, confirmed by PDS trace"
        );
        assert_eq!(
            versions[1].changed_fields.as_ref().unwrap().paths,
            ["state", "merged_into_patient_id"]
        );
        assert_eq!(versions[2].reason, "not the same person after all");
    })
    .await;
}

#[tokio::test]
async fn merge_chains_resolve_to_the_last_survivor() {
    on_each_backend(async |c| {
        let a = create(c, with_mrn(patient("A", "Chain", (1980, 1, 1)), "A")).await;
        let b = create(c, with_mrn(patient("B", "Chain", (1980, 1, 1)), "B")).await;
        let d = create(c, with_mrn(patient("D", "Chain", (1980, 1, 1)), "D")).await;
        let m = ok(c.merge_patients(merge(&a, &b)).await);
        c.merge_patients(merge(&m.target_patient.unwrap(), &d))
            .await
            .unwrap();
        let r = ok(c.resolve_identifier(resolve_request(MRN, "A")).await);
        assert_eq!(r.patient_id, d.patient_id);
        assert_eq!(
            r.merged_patient_ids,
            [a.patient_id.clone(), b.patient_id.clone()]
        );
    })
    .await;
}

async fn next_event(
    stream: &mut tonic::Streaming<WatchPatientChangesResponse>,
) -> WatchPatientChangesResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("event")
}

#[tokio::test]
async fn change_feed_replays_follows_and_survives_a_restart() {
    for db in TestDatabase::each_backend().await {
        // A long poll interval: live delivery must come from the in-process notification.
        let app = spawn_app_with(&db.url, &[("CARERECORD_WATCH_POLL_INTERVAL", "60s")]).await;
        let mut c = app.client.clone();
        let a = create(&mut c, patient("Feed", "One", (1980, 1, 1))).await;
        let mut stream = ok(c
            .watch_patient_changes(WatchPatientChangesRequest::default())
            .await);
        let first = next_event(&mut stream).await;
        assert_eq!(first.change_type, ChangeType::Created as i32);
        assert_eq!(first.patient_id, a.patient_id);
        assert_eq!(first.version, 1);
        assert_eq!(first.patient.as_ref().unwrap(), &a);
        // Live: a merge emits the source's event, then the target's.
        let b = create(&mut c, patient("Feed", "Two", (1980, 1, 1))).await;
        let created = next_event(&mut stream).await;
        assert_eq!(created.patient_id, b.patient_id);
        assert!(created.sequence > first.sequence);
        c.merge_patients(merge(&a, &b)).await.unwrap();
        let m1 = next_event(&mut stream).await;
        let m2 = next_event(&mut stream).await;
        assert_eq!(
            (
                m1.change_type,
                m1.patient_id.as_str(),
                m1.related_patient_id.as_str()
            ),
            (
                ChangeType::Merged as i32,
                a.patient_id.as_str(),
                b.patient_id.as_str()
            )
        );
        assert_eq!(
            (m2.patient_id.as_str(), m2.related_patient_id.as_str()),
            (b.patient_id.as_str(), a.patient_id.as_str())
        );
        let cursor = created.cursor.clone();

        // Shutdown ends open streams with UNAVAILABLE.
        app.stop().await;
        let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream ends");
        match end {
            Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
            None => {}
            Some(Ok(e)) => panic!("unexpected event {e:?}"),
        }

        // A new application on the same database resumes from the cursor.
        let app = spawn_app(&db.url).await;
        let mut c = app.client.clone();
        let mut stream = ok(c
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: cursor,
            })
            .await);
        let resumed = next_event(&mut stream).await;
        assert_eq!(resumed.sequence, m1.sequence);
        assert_eq!(next_event(&mut stream).await.sequence, m2.sequence);
        let status = refused(
            c.watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: "forged".into(),
            })
            .await,
        );
        assert_eq!(violations(&status), ["after_cursor"]);
        app.stop().await;
    }
}
