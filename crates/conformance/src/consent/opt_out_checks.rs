//! RecordNationalDataOptOutCheck: the national service's answer for a batch of patients, newer
//! checks only, all or nothing; and a check that stops counting when it expires.

use std::time::Duration;

use carerecord_contracts::consent::v1::{
    Decision, DecisionOutcome, DecisionSource, RecordNationalDataOptOutCheckRequest,
    RecordNationalDataOptOutCheckResponse,
};
use prost_types::Timestamp;

use super::opt_out::get_opt_out;
use super::support::{ask, client, decide, platform_rule, recorder};
use crate::harness::{Ctx, Fail, TestResult, ensure, ensure_eq, fail, ok};
use crate::records::{seconds_from_now, ts_key};
use crate::refusal::{Refusal, refuse_each};

const SOURCE: &str = "carerecord conformance kit: answer file";

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// A time to the microsecond (the precision the contract's times are kept at).
fn micros(t: Timestamp) -> Timestamp {
    Timestamp {
        seconds: t.seconds,
        nanos: t.nanos / 1_000 * 1_000,
    }
}

fn micros_of(t: &Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos / 1_000)
}

fn from_micros(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

fn check_request(
    checked: &[&str],
    not_opted_out: &[&str],
    check_time: Timestamp,
) -> RecordNationalDataOptOutCheckRequest {
    RecordNationalDataOptOutCheckRequest {
        checked_patient_ids: strings(checked),
        not_opted_out_patient_ids: strings(not_opted_out),
        check_time: Some(check_time),
        source: SOURCE.into(),
        requester: Some(recorder()),
    }
}

/// Records an answer, requiring success; returns (patients_checked, patients_opted_out,
/// patients_recorded).
async fn record(
    ctx: &Ctx,
    request: RecordNationalDataOptOutCheckRequest,
) -> TestResult<(i64, i64, i64)> {
    for pid in &request.checked_patient_ids {
        ctx.created("national data opt-out", pid);
    }
    let RecordNationalDataOptOutCheckResponse {
        patients_checked,
        patients_opted_out,
        patients_recorded,
    } = ok(
        client(ctx)
            .record_national_data_opt_out_check(request)
            .await,
        "RecordNationalDataOptOutCheck",
    )?;
    Ok((patients_checked, patients_opted_out, patients_recorded))
}

/// The deployment's validity period of a check, in microseconds, read from a fresh patient's
/// check (check_expire_time minus check_time).
async fn validity(ctx: &Ctx) -> TestResult<i64> {
    let pid = ctx.new_patient();
    record(
        ctx,
        check_request(&[&pid], &[&pid], micros(seconds_from_now(-1))),
    )
    .await?;
    let o = get_opt_out(ctx, &pid).await?;
    let (Some(checked), Some(expires)) = (o.check_time, o.check_expire_time) else {
        fail!("a recorded check must have check_time and check_expire_time, got {o:?}")
    };
    let validity = micros_of(&expires) - micros_of(&checked);
    ensure!(
        validity > 0,
        "check_expire_time must be after check_time, got {o:?}"
    );
    Ok(validity)
}

/// Three fresh patients checked as [p1, p2, p3, p1], with p1 and p3 returned by the national
/// service, an hour ago: counts (3, 1, 3).
async fn answer_for_three(
    ctx: &Ctx,
) -> TestResult<([String; 3], RecordNationalDataOptOutCheckRequest)> {
    let p = [ctx.new_patient(), ctx.new_patient(), ctx.new_patient()];
    let request = check_request(
        &[&p[0], &p[1], &p[2], &p[0]],
        &[&p[0], &p[2]],
        micros(seconds_from_now(-3600)),
    );
    ensure_eq!(
        record(ctx, request.clone()).await?,
        (3, 1, 3),
        "(patients_checked, patients_opted_out, patients_recorded)"
    );
    Ok((p, request))
}

pub(super) async fn record_answer(ctx: Ctx) -> TestResult {
    let ([p1, p2, p3], request) = answer_for_three(&ctx).await?;
    let out = get_opt_out(&ctx, &p2).await?;
    ensure_eq!(
        (out.opted_out, out.version),
        (true, 1),
        "p2, not returned by the national service: (opted_out, version)"
    );
    ensure_eq!(out.check_time, request.check_time, "p2: check_time as sent");
    ensure_eq!(out.check_source, SOURCE, "p2: check_source as sent");
    ensure_eq!(out.updated_by, Some(recorder()), "p2: updated_by");
    ensure!(
        ts_key(&out.check_expire_time) > ts_key(&out.check_time),
        "p2: check_expire_time must be after check_time"
    );
    for (name, pid) in [("p1", &p1), ("p3", &p3)] {
        let out = get_opt_out(&ctx, pid).await?;
        ensure_eq!(
            (out.opted_out, out.version, out.check_time),
            (false, 1, request.check_time),
            "{name}, returned by the national service: (opted_out, version, check_time)"
        );
    }
    Ok(())
}

pub(super) async fn only_newer_answers_write(ctx: Ctx) -> TestResult {
    let ([_, p2, _], request) = answer_for_three(&ctx).await?;
    let before = get_opt_out(&ctx, &p2).await?;
    ensure_eq!(
        record(&ctx, request).await?,
        (3, 1, 0),
        "the same answer again: (patients_checked, patients_opted_out, patients_recorded)"
    );
    ensure_eq!(
        get_opt_out(&ctx, &p2).await?,
        before.clone(),
        "p2 after the same answer again"
    );
    let older = check_request(&[&p2], &[&p2], micros(seconds_from_now(-7200)));
    ensure_eq!(
        record(&ctx, older).await?.2,
        0,
        "an older answer: patients_recorded"
    );
    ensure_eq!(
        get_opt_out(&ctx, &p2).await?,
        before,
        "p2 after an older answer"
    );
    let newer_time = micros(seconds_from_now(0));
    let newer = check_request(&[&p2], &[&p2], newer_time);
    ensure_eq!(
        record(&ctx, newer).await?,
        (1, 0, 1),
        "a newer answer returning p2: (patients_checked, patients_opted_out, patients_recorded)"
    );
    let after = get_opt_out(&ctx, &p2).await?;
    ensure_eq!(
        (after.opted_out, after.version, after.check_time),
        (false, 2, Some(newer_time)),
        "p2 after the newer answer: (opted_out, version, check_time)"
    );
    Ok(())
}

pub(super) async fn record_invalid(ctx: Ctx) -> TestResult {
    let validity = validity(&ctx).await?;
    let valid = ctx.new_patient();
    let unchecked = ctx.new_patient();
    let now = micros(seconds_from_now(0));
    let base = check_request(&[&valid], &[&valid], micros(seconds_from_now(-60)));
    let with = |change: &dyn Fn(&mut RecordNationalDataOptOutCheckRequest)| {
        let mut request = base.clone();
        change(&mut request);
        request
    };
    let too_old = from_micros(micros_of(&now) - validity - 86_400_000_000);
    let field = Refusal::invalid;
    let table = vec![
        (
            "no checked patients",
            with(&|r| {
                r.checked_patient_ids.clear();
                r.not_opted_out_patient_ids.clear();
            }),
            field("checked_patient_ids"),
        ),
        (
            "10001 checked patients",
            with(&|r| r.checked_patient_ids = vec![valid.clone(); 10_001]),
            field("checked_patient_ids"),
        ),
        (
            "a checked id not a UUID",
            with(&|r| r.checked_patient_ids.push("9434765919".into())),
            field("checked_patient_ids[1]"),
        ),
        (
            "a returned id not among the checked",
            with(&|r| r.not_opted_out_patient_ids.push(unchecked.clone())),
            field("not_opted_out_patient_ids[1]"),
        ),
        (
            "a returned id not a UUID",
            with(&|r| r.not_opted_out_patient_ids = vec!["x".into()]),
            field("not_opted_out_patient_ids[0]"),
        ),
        (
            "no check_time",
            with(&|r| r.check_time = None),
            field("check_time"),
        ),
        (
            "a check_time an hour ahead",
            with(&|r| r.check_time = Some(seconds_from_now(3600))),
            field("check_time"),
        ),
        (
            "a check_time older than the validity period",
            with(&|r| r.check_time = Some(too_old)),
            field("check_time"),
        ),
        ("no source", with(&|r| r.source.clear()), field("source")),
        (
            "a source over 200 characters",
            with(&|r| r.source = "s".repeat(201)),
            field("source"),
        ),
        (
            "no requester",
            with(&|r| r.requester = None),
            Refusal::invalid_under("requester"),
        ),
    ];
    refuse_each!(client(&ctx), record_national_data_opt_out_check, table).await?;
    ensure_eq!(
        get_opt_out(&ctx, &valid).await?.version,
        0,
        "a valid patient of refused calls: version (nothing written)"
    );
    Ok(())
}

/// The (effect, reason_code) of each national data opt-out reason of a decision.
fn opt_out_reasons(decision: &Decision) -> Vec<(i32, String)> {
    decision
        .reasons
        .iter()
        .filter(|r| r.source == DecisionSource::NationalDataOptOut as i32)
        .map(|r| (r.effect, r.reason_code.clone()))
        .collect()
}

pub(super) async fn check_expires(ctx: Ctx) -> TestResult {
    let validity = validity(&ctx).await?;
    let pid = ctx.new_patient();
    // A check that has five seconds left to count.
    let checked_at = from_micros(micros_of(&micros(seconds_from_now(0))) - validity + 5_000_000);
    record(&ctx, check_request(&[&pid], &[&pid], checked_at)).await?;
    let before = decide(&ctx, ask(&pid, "HOPERAT")).await?;
    ensure!(
        opt_out_reasons(&before).is_empty(),
        "HOPERAT while the check says not opted out: no opt-out reason expected, got {:?}",
        opt_out_reasons(&before)
    );
    let o = get_opt_out(&ctx, &pid).await?;
    let Some(expires) = o.check_expire_time else {
        fail!("a recorded check must have check_expire_time, got {o:?}")
    };
    let wait = micros_of(&expires) - micros_of(&seconds_from_now(0)) + 1_000_000;
    ensure!(
        wait <= 10_000_000,
        "check_expire_time must be check_time plus the validity period: {}s away",
        wait / 1_000_000
    );
    tokio::time::sleep(Duration::from_micros(wait.max(0).unsigned_abs())).await;
    let after = decide(&ctx, ask(&pid, "HOPERAT")).await?;
    if let Some(policy) = platform_rule(&after) {
        return Err(Fail::Skipped(format!(
            "the deployment's platform rule {policy:?} decided part of this case"
        )));
    }
    ensure_eq!(
        after.outcome,
        DecisionOutcome::Deny as i32,
        "HOPERAT once the check has expired: outcome"
    );
    ensure_eq!(
        opt_out_reasons(&after),
        vec![(
            DecisionOutcome::Deny as i32,
            "opt-out-status-unknown".to_owned()
        )],
        "HOPERAT once the check has expired: the opt-out's (effect, reason_code)"
    );
    let o = get_opt_out(&ctx, &pid).await?;
    ensure!(
        ts_key(&o.check_expire_time) < ts_key(&Some(seconds_from_now(0))),
        "check_expire_time must be in the past, got {:?}",
        o.check_expire_time
    );
    Ok(())
}
