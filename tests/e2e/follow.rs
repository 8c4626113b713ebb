//! Following patients' records through the front door: a falls-detection service raises a fall, the
//! care team is told within a second, a patient who withholds that data class from the team is
//! not, a withdrawn consent stops the next notification, and cursors survive reconnects and a
//! restart of data access.

use std::time::{Duration, Instant};

use carerecord_contracts::access::v1::data_access_service_client::DataAccessServiceClient;
use carerecord_contracts::access::v1::{
    CreateRecordRequest, FollowRecordChangesRequest, FollowRecordChangesResponse,
    ReadRecordRequest, RecordContent, patient_reference::Reference,
};
use carerecord_contracts::consent::v1::{ConsentDecision, Provision, ProvisionActor};
use carerecord_e2e::{Overrides, Platform, authed, by_nhs, token_at, uuid};
use carerecord_platform::testing::error_info;
use serde_json::json;
use tonic::{Code, Streaming};

const CARE_TEAM: &str = "A81001";

fn care_team() -> String {
    token_at(CARE_TEAM, "R8000", "user/*.rs", "care-team-app")
}

fn falls_service() -> String {
    token_at("FALL1", "", "system/Flag.c", "falls-detect")
}

fn follow(nhs: &[&str], after_cursor: &str) -> FollowRecordChangesRequest {
    FollowRecordChangesRequest {
        patients: nhs
            .iter()
            .map(|n| by_nhs(n).expect("a reference"))
            .collect(),
        purpose_of_use: "TREAT".into(),
        after_cursor: after_cursor.into(),
        start_at_head: after_cursor.is_empty(),
        ..FollowRecordChangesRequest::default()
    }
}

/// A fall, labelled safeguarding (a fall at home may need a safeguarding response).
async fn raise_fall(platform: &Platform, nhs: &str) -> String {
    let flag = json!({"resourceType": "Flag", "status": "active",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "217082002", "display": "Accidental fall"}]},
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}},
        "period": {"start": "2026-11-12T03:10:00Z"}});
    let request = CreateRecordRequest {
        request_id: uuid(),
        purpose_of_use: "TREAT".into(),
        content: Some(RecordContent {
            resource_type: "Flag".into(),
            payload: flag.to_string().into_bytes(),
            data_classes: vec!["safeguarding".into()],
            ..RecordContent::default()
        }),
        ..CreateRecordRequest::default()
    };
    platform
        .access_client()
        .await
        .create_record(authed(request, &falls_service()))
        .await
        .unwrap_or_else(|s| panic!("raise a fall: {s:?}"))
        .into_inner()
        .record
        .unwrap()
        .record_id
}

/// Messages until one carries notifications (or `wait` passes): the notified record ids and the
/// last cursor.
async fn next_notified(
    stream: &mut Streaming<FollowRecordChangesResponse>,
    wait: Duration,
) -> (Vec<String>, String) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut cursor = String::new();
    loop {
        let message = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return (Vec::new(), cursor),
            Ok(message) => message
                .expect("the stream stays healthy")
                .expect("the stream stays open"),
        };
        cursor = message.cursor.clone();
        if !message.notifications.is_empty() {
            assert!(
                !message.audit_entry_id.is_empty(),
                "every delivery is audited"
            );
            return (
                message
                    .notifications
                    .into_iter()
                    .map(|n| n.record_id)
                    .collect(),
                cursor,
            );
        }
    }
}

/// FollowRecordChanges as the care team.
async fn as_care_team(
    access: &mut DataAccessServiceClient<tonic::transport::Channel>,
    request: FollowRecordChangesRequest,
) -> Result<Streaming<FollowRecordChangesResponse>, tonic::Status> {
    let stream = access
        .follow_record_changes(authed(request, &care_team()))
        .await?;
    Ok(stream.into_inner())
}

async fn open(
    access: &mut DataAccessServiceClient<tonic::transport::Channel>,
    request: FollowRecordChangesRequest,
) -> Streaming<FollowRecordChangesResponse> {
    let mut stream = as_care_team(access, request)
        .await
        .unwrap_or_else(|s| panic!("follow: {s:?}"));
    // The first message marks the stream caught up; changes after it are live.
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.caught_up || first.notifications.is_empty());
    stream
}

#[tokio::test]
async fn the_care_team_is_told_of_a_fall_unless_the_patient_withholds_it() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (shared, nhs_shared) = platform.register_patient("Ivy", "Falls").await;
        let (withholding, nhs_private) = platform.register_patient("Iris", "Falls").await;
        // A directive withholding the patient's safeguarding data from the care team (a provision
        // is an exception to the base PERMIT).
        let withhold_safeguarding = async |patient: &str| {
            let from_care_team = Provision {
                actors: vec![ProvisionActor {
                    organisation_ods_code: CARE_TEAM.into(),
                    ..ProvisionActor::default()
                }],
                data_classes: vec!["safeguarding".into()],
                ..Provision::default()
            };
            let provisions = vec![from_care_team];
            platform
                .record_directive(patient, ConsentDecision::Permit, provisions)
                .await;
        };
        withhold_safeguarding(&withholding).await;

        let mut access = platform.access_client().await;
        let mut stream = open(&mut access, follow(&[&nhs_shared, &nhs_private], "")).await;
        let started = Instant::now();
        let fall = raise_fall(&platform, &nhs_shared).await;
        let (notified, cursor) = next_notified(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(notified, std::slice::from_ref(&fall), "{backend:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{backend:?}: told within a second, took {:?}",
            started.elapsed()
        );

        // The notification names the record; its content is read through the read path.
        let read = access
            .read_record(authed(
                ReadRecordRequest {
                    record_id: fall.clone(),
                    purpose_of_use: "TREAT".into(),
                    ..ReadRecordRequest::default()
                },
                &care_team(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.record.unwrap().resource_type, "Flag");

        // The withholding patient's fall is never delivered.
        raise_fall(&platform, &nhs_private).await;
        let (notified, _) = next_notified(&mut stream, Duration::from_millis(1500)).await;
        assert!(notified.is_empty(), "{backend:?}: {notified:?}");

        // Reconnecting with the cursor misses nothing, on this data access or another one.
        drop(stream);
        let second_fall = raise_fall(&platform, &nhs_shared).await;
        let both = follow(&[&nhs_shared, &nhs_private], &cursor);
        let mut resumed = as_care_team(&mut access, both).await.unwrap();
        let (notified, _) = next_notified(&mut resumed, Duration::from_secs(5)).await;
        assert_eq!(notified, std::slice::from_ref(&second_fall), "{backend:?}");
        let restarted = platform.another_access().await;
        let mut elsewhere = DataAccessServiceClient::new(Platform::channel(&restarted).await);
        let both = follow(&[&nhs_shared, &nhs_private], &cursor);
        let mut replayed = as_care_team(&mut elsewhere, both).await.unwrap();
        let (notified, _) = next_notified(&mut replayed, Duration::from_secs(5)).await;
        assert_eq!(
            notified,
            [second_fall],
            "{backend:?}: the cursor outlives the instance"
        );

        // A withdrawn consent takes effect on the next change, on the open stream.
        withhold_safeguarding(&shared).await;
        raise_fall(&platform, &nhs_shared).await;
        let (notified, _) = next_notified(&mut resumed, Duration::from_millis(1500)).await;
        assert!(
            notified.is_empty(),
            "{backend:?}: consent withdrawn, nothing delivered"
        );
    }
}

#[tokio::test]
async fn a_tampered_cursor_or_a_demographic_reference_is_refused() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (_, nhs) = platform.register_patient("Tamsin", "Cursor").await;
        let mut access = platform.access_client().await;
        let mut stream = open(&mut access, follow(&[&nhs], "")).await;
        raise_fall(&platform, &nhs).await;
        let (_, cursor) = next_notified(&mut stream, Duration::from_secs(5)).await;
        let mut tampered = cursor.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = follow(&[&nhs], &String::from_utf8(tampered).unwrap());
        let refused = as_care_team(&mut access, tampered).await.unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::InvalidArgument, "INVALID_PAGE_TOKEN")
        );
        let mut by_demographics = follow(&[&nhs], "");
        by_demographics.patients[0].reference = Some(Reference::Demographics(Default::default()));
        let refused = as_care_team(&mut access, by_demographics)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
}
