//! The national data opt-out: get and set by hand, record the national service's answers, and
//! the fail-closed status of patients without a valid check.

use carerecord_contracts::consent::v1::*;
use tonic::Code;

use crate::helpers::*;

fn set(patient_id: &str, opted_out: bool, etag: &str) -> SetNationalDataOptOutRequest {
    SetNationalDataOptOutRequest {
        patient_id: patient_id.into(),
        opted_out,
        etag: etag.into(),
        requester: Some(requester()),
        source: String::new(),
    }
}

#[tokio::test]
async fn opt_out_is_versioned_and_compare_and_set() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let never = get_opt_out(c, &patient).await.unwrap();
        assert_eq!(
            never,
            NationalDataOptOut {
                patient_id: patient.clone(),
                ..Default::default()
            }
        );

        // Opting back in when never opted out writes nothing.
        let unchanged = set_opt_out(c, set(&patient, false, "")).await.unwrap();
        assert_eq!(unchanged.version, 0);
        let err = set_opt_out(c, set(&patient, true, "some-etag"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Aborted,
            "any etag is stale for a never-recorded patient"
        );

        let out = set_opt_out(c, set(&patient, true, "")).await.unwrap();
        assert!(out.opted_out);
        assert_eq!(out.version, 1);
        assert_eq!(out.updated_by, Some(requester()));
        assert!(out.update_time.is_some() && !out.etag.is_empty());
        // A manual record is the patient's latest check.
        assert_eq!(out.check_time, out.update_time);
        assert_eq!(out.check_source, "manual");
        assert!(out.check_expire_time.is_some());

        let retry = set_opt_out(c, set(&patient, true, "")).await.unwrap();
        assert_eq!(retry, out, "a blind retry is harmless");
        let err = set_opt_out(c, set(&patient, false, "stale"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        let back = set_opt_out(c, set(&patient, false, &out.etag))
            .await
            .unwrap();
        assert!(!back.opted_out);
        assert_eq!(back.version, 2);
        let read = get_opt_out(c, &patient.to_uppercase()).await.unwrap();
        assert_eq!(read, back);

        let err = set_opt_out(
            c,
            SetNationalDataOptOutRequest {
                patient_id: "p1".into(),
                opted_out: true,
                etag: String::new(),
                requester: None,
                source: "x".repeat(201),
            },
        )
        .await
        .unwrap_err();
        assert_invalid(&err, &["patient_id", "requester", "source"]);
        let err = get_opt_out(c, "").await.unwrap_err();
        assert_invalid(&err, &["patient_id"]);
    })
    .await;
}

/// A check answer from `days_ago` days ago.
fn answered(
    mut answer: RecordNationalDataOptOutCheckRequest,
    days_ago: i64,
) -> RecordNationalDataOptOutCheckRequest {
    let then =
        std::time::SystemTime::now() - std::time::Duration::from_secs(days_ago as u64 * 86_400);
    answer.check_time = Some(then.into());
    answer
}

async fn record(
    c: &mut Client,
    answer: RecordNationalDataOptOutCheckRequest,
) -> Result<RecordNationalDataOptOutCheckResponse, tonic::Status> {
    Ok(c.record_national_data_opt_out_check(answer)
        .await?
        .into_inner())
}

/// (source, effect, reason_code) of a decision's first reason.
fn first_reason(d: &Decision) -> (DecisionSource, DecisionOutcome, String) {
    let r = &d.reasons[0];
    (r.source(), r.effect(), r.reason_code.clone())
}

const DAY_SECONDS: i64 = 86_400;

#[tokio::test]
async fn research_and_planning_wait_for_a_valid_check_and_care_does_not() {
    for db in carerecord_platform::testing::TestDatabase::each_backend().await {
        let mut month = spawn_app(&db.url).await;
        let mut ten_days =
            spawn_app_with(&db.url, &[("CARERECORD_CONSENT_OPT_OUT_VALIDITY", "10d")]).await;
        let c = &mut month.client;
        let patient = new_id();
        let planning = decide_request(&patient, requester(), "HOPERAT");

        // Never checked: excluded, for a reason of its own; individual care is not affected.
        let never = decide(c, planning.clone()).await;
        assert_eq!(
            first_reason(&never),
            (
                DecisionSource::NationalDataOptOut,
                DecisionOutcome::Deny,
                "opt-out-status-unknown".to_owned()
            )
        );
        assert!(never.reasons[0].explanation.contains("never been checked"));
        let care = decide(c, decide_request(&patient, requester(), "TREAT")).await;
        assert_eq!(care.outcome(), DecisionOutcome::Permit);
        assert!(
            care.reasons
                .iter()
                .all(|r| r.source() != DecisionSource::NationalDataOptOut)
        );

        // Checked 20 days ago and not opted out: valid for a month, expired after ten days.
        let recorded = record(c, answered(check_answer(&[&patient], &[]), 20))
            .await
            .unwrap();
        assert_eq!(recorded.patients_recorded, 1);
        let within = decide(c, planning.clone()).await;
        assert_eq!(within.outcome(), DecisionOutcome::Permit);
        assert!(
            within
                .reasons
                .iter()
                .all(|r| r.source() != DecisionSource::NationalDataOptOut)
        );
        let expired = decide(&mut ten_days.client, planning.clone()).await;
        assert_eq!(first_reason(&expired).2, "opt-out-status-unknown");
        assert!(expired.reasons[0].explanation.contains("older than"));

        // The record shows when it was checked, from where, and until when it counts.
        let status = get_opt_out(c, &patient).await.unwrap();
        let checked_at = status.check_time.expect("check_time").seconds;
        assert_eq!(status.check_source, "NDOP answer test-0001");
        assert!(!status.opted_out);
        let expires = |s: &NationalDataOptOut| s.check_expire_time.expect("expiry").seconds;
        assert_eq!(expires(&status), checked_at + 30 * DAY_SECONDS);
        let short = get_opt_out(&mut ten_days.client, &patient).await.unwrap();
        assert_eq!(expires(&short), checked_at + 10 * DAY_SECONDS);

        // A valid check that says opted out: the opt-out's own reason.
        let out = new_id();
        record(c, check_answer(&[&out], &[&out])).await.unwrap();
        let denied = decide(c, decide_request(&out, requester(), "HOPERAT")).await;
        assert_eq!(
            first_reason(&denied),
            (
                DecisionSource::NationalDataOptOut,
                DecisionOutcome::Deny,
                "national-data-opt-out".to_owned()
            )
        );
    }
}

#[tokio::test]
async fn a_check_answer_is_recorded_whole_with_its_time_and_source() {
    on_each_backend(async |c: &mut Client| {
        let [a, b, d] = [new_id(), new_id(), new_id()];
        // b's NHS number did not come back: b has opted out. Duplicates count once.
        let mut answer = answered(check_answer(&[&a, &b, &d], &[&b]), 2);
        answer.checked_patient_ids.push(a.to_uppercase());
        let first = record(c, answer.clone()).await.unwrap();
        assert_eq!(
            (
                first.patients_checked,
                first.patients_opted_out,
                first.patients_recorded
            ),
            (3, 1, 3)
        );
        let b_status = get_opt_out(c, &b).await.unwrap();
        assert!(b_status.opted_out);
        assert_eq!(b_status.version, 1);
        assert_eq!(b_status.updated_by, Some(requester()));
        assert_eq!(
            b_status.check_time,
            answer.check_time.map(|t| prost_types::Timestamp {
                nanos: t.nanos / 1000 * 1000,
                ..t
            })
        );

        // The same answer again, or an older one, changes nothing.
        let again = record(c, answer.clone()).await.unwrap();
        assert_eq!(again.patients_recorded, 0);
        let older = record(c, answered(check_answer(&[&b], &[]), 5))
            .await
            .unwrap();
        assert_eq!(older.patients_recorded, 0);
        assert_eq!(get_opt_out(c, &b).await.unwrap(), b_status);

        // A newer answer: b has opted back in.
        let newer = record(c, check_answer(&[&a, &b], &[])).await.unwrap();
        assert_eq!(newer.patients_recorded, 2);
        let b_now = get_opt_out(c, &b).await.unwrap();
        assert!(!b_now.opted_out);
        assert_eq!(b_now.version, 2);
        assert_ne!(b_now.etag, b_status.etag);

        // A manual record is a check of its own, with the source given or `manual`.
        let manual = set_opt_out(c, set(&b, true, "")).await.unwrap();
        assert_eq!(manual.check_source, "manual");
        assert_eq!(manual.check_time, manual.update_time);
        let with_source = SetNationalDataOptOutRequest {
            source: "patient letter 2026-11-03".into(),
            ..set(&b, false, "")
        };
        let manual = set_opt_out(c, with_source).await.unwrap();
        assert_eq!(manual.check_source, "patient letter 2026-11-03");

        // Refused whole: nothing of a bad answer is written.
        let e = new_id();
        let bad = RecordNationalDataOptOutCheckRequest {
            checked_patient_ids: vec![e.clone(), "nope".into()],
            not_opted_out_patient_ids: vec![e.clone(), new_id()],
            check_time: None,
            source: " ".into(),
            requester: None,
        };
        let err = record(c, bad).await.unwrap_err();
        assert_invalid(
            &err,
            &[
                "checked_patient_ids[1]",
                "not_opted_out_patient_ids[1]",
                "check_time",
                "source",
                "requester",
            ],
        );
        assert_eq!(get_opt_out(c, &e).await.unwrap().version, 0);
        let one = || check_answer(&[&e], &[]);
        let too_old = answered(one(), 31);
        let future = RecordNationalDataOptOutCheckRequest {
            check_time: Some(
                (std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).into(),
            ),
            ..one()
        };
        let empty = RecordNationalDataOptOutCheckRequest {
            checked_patient_ids: vec![],
            not_opted_out_patient_ids: vec![],
            ..one()
        };
        let too_many = RecordNationalDataOptOutCheckRequest {
            checked_patient_ids: vec![e.clone(); 10_001],
            ..one()
        };
        for (request, field) in [
            (too_old, "check_time"),
            (future, "check_time"),
            (empty, "checked_patient_ids"),
            (too_many, "checked_patient_ids"),
        ] {
            assert_invalid(&record(c, request).await.unwrap_err(), &[field]);
        }
        assert_eq!(get_opt_out(c, &e).await.unwrap().version, 0);
    })
    .await;
}
