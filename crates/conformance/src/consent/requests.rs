//! What the contract says of every request: no text holds NUL, and an error stays small whatever
//! the input.

use std::collections::HashSet;

use carerecord_contracts::consent::v1::{
    BatchDecideRequest, ConsentDecision, ConsentDirective, ConsentDirectiveStatus,
    RecordNationalDataOptOutCheckRequest, SetNationalDataOptOutRequest,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::support::{
    ask, client, create, create_request, directive, directives_of, get, opt_out_of,
    opt_out_request, reader, recorder, revoke_request, update_request,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, err, fail, has_violation};
use crate::refusal::{Refusal, refused};

/// Requires INVALID_ARGUMENT naming `field`, with a description mentioning U+0000.
fn nul_refused<T>(result: Result<T, Status>, field: &str, call: &str) -> TestResult {
    let status = refused(result, &Refusal::invalid(field), call)?;
    let description = has_violation(&status, field)?;
    ensure!(
        description.contains("U+0000"),
        "{call}: the description of `{field}` must say it holds NUL (U+0000), got {description:?}"
    );
    Ok(())
}

async fn opt_out_version(ctx: &Ctx, pid: &str) -> TestResult<i64> {
    Ok(opt_out_of(ctx, pid).await?.map_or(0, |o| o.version))
}

pub(super) async fn nul_refused_everywhere(ctx: Ctx) -> TestResult {
    let c = client(&ctx);
    let pid = ctx.new_patient();
    let mut request = create_request(directive(&pid, ConsentDecision::Deny, vec![]));
    if let Some(d) = request.directive.as_mut() {
        d.policy_text = "signed form\0scanned".into();
    }
    nul_refused(
        c.clone().create_consent_directive(request).await,
        "directive.policy_text",
        "CreateConsentDirective(NUL in policy_text)",
    )?;
    ensure!(
        directives_of(&ctx, &pid).await?.is_empty(),
        "a refused create wrote a directive"
    );

    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let revoke = revoke_request(&active.directive_id, &active.etag, "patient asked\0");
    nul_refused(
        c.clone().revoke_consent_directive(revoke).await,
        "reason",
        "RevokeConsentDirective(NUL in reason)",
    )?;
    let edit = ConsentDirective {
        directive_id: active.directive_id.clone(),
        policy_text: "edited".into(),
        ..Default::default()
    };
    nul_refused(
        c.clone()
            .update_consent_directive(update_request(edit, &active.etag, &["policy_text\0"]))
            .await,
        "update_mask.paths[0]",
        "UpdateConsentDirective(NUL in an update_mask path)",
    )?;
    let after = get(&ctx, &active.directive_id, 0).await?;
    ensure_eq!(
        (after.version, after.status),
        (1, ConsentDirectiveStatus::Active as i32),
        "the directive after refused revoke and update: (version, status)"
    );

    let mut decide = ask(&pid, "TREAT");
    decide.study_id = "IRAS\0-1".into();
    nul_refused(
        c.clone().decide(decide).await,
        "study_id",
        "Decide(NUL in study_id)",
    )?;
    nul_refused(
        c.clone()
            .batch_decide(BatchDecideRequest {
                patient_ids: vec![pid.clone(), "\0".into()],
                requester: Some(reader("A81001", "R8000")),
                purpose_of_use: "TREAT".into(),
                ..Default::default()
            })
            .await,
        "patient_ids[1]",
        "BatchDecide(NUL in a patient id)",
    )?;

    let other = ctx.new_patient();
    nul_refused(
        c.clone()
            .set_national_data_opt_out(SetNationalDataOptOutRequest {
                source: "letter\0".into(),
                ..opt_out_request(&other, true, "")
            })
            .await,
        "source",
        "SetNationalDataOptOut(NUL in source)",
    )?;
    nul_refused(
        c.clone()
            .record_national_data_opt_out_check(RecordNationalDataOptOutCheckRequest {
                checked_patient_ids: vec![other.clone()],
                not_opted_out_patient_ids: Vec::new(),
                check_time: Some(crate::records::seconds_from_now(-60)),
                source: "answer\0file".into(),
                requester: Some(recorder()),
            })
            .await,
        "source",
        "RecordNationalDataOptOutCheck(NUL in source)",
    )?;
    ensure_eq!(
        opt_out_version(&ctx, &other).await?,
        0,
        "the opt-out after refused writes: version"
    );
    Ok(())
}

/// A long identifier-like value no server would invent: random hexadecimal digits.
fn long_value(chars: usize) -> String {
    let mut value = String::with_capacity(chars + 32);
    while value.len() < chars {
        value.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    value.truncate(chars);
    value
}

pub(super) async fn errors_stay_small(ctx: Ctx) -> TestResult {
    const IDS: usize = 1_000;
    const ID_CHARS: usize = 10 * 1024;
    let ids: Vec<String> = (0..IDS).map(|_| long_value(ID_CHARS)).collect();
    let request = BatchDecideRequest {
        patient_ids: ids.clone(),
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let call = "BatchDecide(1000 malformed ids of 10 KiB)";
    let status = err(
        client(&ctx).batch_decide(request).await,
        Code::InvalidArgument,
        call,
    )?;
    let message = status.message();
    ensure!(
        message.len() <= 1024,
        "{call}: the message is {} bytes (an error stays small: at most 1 KiB expected)",
        message.len()
    );
    ensure!(
        status.details().len() <= 6 * 1024,
        "{call}: the details are {} bytes (at most 4 KiB of violations, 6 KiB in all expected)",
        status.details().len()
    );
    let Some(bad_request) = status.get_details_bad_request() else {
        fail!(
            "{call}: expected google.rpc.BadRequest, got {}",
            describe(&status)
        )
    };
    let violations = &bad_request.field_violations;
    ensure!(
        (1..=20).contains(&violations.len()),
        "{call}: at most the first 20 violations are listed, got {}",
        violations.len()
    );
    ensure_eq!(
        violations[0].field,
        "patient_ids[0]",
        "{call}: the first violation listed"
    );
    let listed: usize = violations
        .iter()
        .map(|v| v.field.len() + v.description.len())
        .sum();
    ensure!(
        listed <= 4 * 1024,
        "{call}: the violations listed hold {listed} bytes (at most 4 KiB)"
    );
    ensure!(
        ["1000", "1,000", "999"].iter().any(|n| message.contains(n)),
        "{call}: the message must say how many violations there were in all (1000), got {message:?}"
    );
    // A value may be quoted up to its first 32 characters: no other 32-character block of any
    // value (and so no 64-character run) may appear anywhere in the error.
    let told = format!("{message} {}", String::from_utf8_lossy(status.details()));
    let windows: HashSet<&str> = (0..told.len().saturating_sub(31))
        .filter_map(|i| told.get(i..i + 32))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        for block in 1..ID_CHARS / 32 {
            if windows.contains(&id[block * 32..block * 32 + 32]) {
                fail!(
                    "{call}: the error quotes patient_ids[{i}] beyond its first 32 characters (characters {} to {})",
                    block * 32,
                    block * 32 + 32
                );
            }
        }
    }
    Ok(())
}
