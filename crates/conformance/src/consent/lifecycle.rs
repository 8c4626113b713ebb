//! Consent directive lifecycle: status transitions, update validation, revocation and versions.

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, ListConsentDirectiveVersionsRequest,
    RevokeConsentDirectiveRequest,
};
use tonic::Code;

use super::support::{
    client, create, directive, draft, get, provisions_of, revoke_request, set_status, unknown,
    update, update_request, with_status,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, every_page, fail, ok};
use crate::refusal::{Refusal, masks_refused, refuse_each};

/// FAILED_PRECONDITION, PreconditionFailure STATUS.
fn status_precondition() -> Refusal {
    Refusal::new(Code::FailedPrecondition).precondition("STATUS", None)
}

pub(super) async fn update_transitions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let to = |from: &ConsentDirective, status| {
        update_request(with_status(from, status), &from.etag, &["status"])
    };
    let table = vec![
        (
            "ACTIVE -> INACTIVE".to_owned(),
            to(&active, ConsentDirectiveStatus::Inactive),
            Refusal::invalid_under("directive.status"),
        ),
        (
            "status UNSPECIFIED".to_owned(),
            to(&active, ConsentDirectiveStatus::Unspecified),
            Refusal::invalid_under("directive.status"),
        ),
    ];
    refuse_each!(client(&ctx), update_consent_directive, table).await?;
    let eie = set_status(&ctx, &active, ConsentDirectiveStatus::EnteredInError).await?;
    ensure_eq!(
        eie.status,
        ConsentDirectiveStatus::EnteredInError as i32,
        "status after ACTIVE -> ENTERED_IN_ERROR"
    );
    let edit = provisions_of(&eie.directive_id, &["hiv"]);
    let table = vec![
        (
            "ENTERED_IN_ERROR -> ACTIVE".to_owned(),
            to(&eie, ConsentDirectiveStatus::Active),
            status_precondition(),
        ),
        (
            "edit an ENTERED_IN_ERROR directive".to_owned(),
            update_request(edit, &eie.etag, &["provisions"]),
            status_precondition(),
        ),
    ];
    refuse_each!(client(&ctx), update_consent_directive, table).await
}

pub(super) async fn update_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let masks: &[&[&str]] = &[
        &[],
        &["patient_id"],
        &["version"],
        &["etag"],
        &["recorded_by"],
        &["no_such_field"],
        &["provisions.0"],
    ];
    let mut table = masks_refused(
        masks,
        |paths| update_request(active.clone(), &active.etag, paths),
        || Refusal::invalid_under("update_mask"),
    );
    let mut no_mask = update_request(active.clone(), &active.etag, &[]);
    no_mask.update_mask = None;
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let nobody = ConsentDirective {
        directive_id: unknown_id.clone(),
        decision: ConsentDecision::Permit as i32,
        ..Default::default()
    };
    table.extend([
        (
            "no update_mask".to_owned(),
            no_mask,
            Refusal::invalid("update_mask"),
        ),
        (
            "no etag".to_owned(),
            update_request(active.clone(), "", &["decision"]),
            Refusal::invalid("etag"),
        ),
        (
            "unknown directive".to_owned(),
            update_request(nobody, "etag", &["decision"]),
            unknown(&unknown_id),
        ),
    ]);
    refuse_each!(client(&ctx), update_consent_directive, table).await?;
    ensure_eq!(
        get(&ctx, &active.directive_id, 0).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

pub(super) async fn revoke(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let req = |etag: &str, reason: &str| revoke_request(&active.directive_id, etag, reason);
    let table = vec![
        (
            "bad reason",
            req(&active.etag, ""),
            Refusal::invalid_under("reason"),
        ),
        (
            "bad reason",
            req(&active.etag, &"r".repeat(1001)),
            Refusal::invalid_under("reason"),
        ),
        ("bad etag", req("", "why"), Refusal::invalid_under("etag")),
        (
            "bad requester",
            RevokeConsentDirectiveRequest {
                requester: None,
                ..req(&active.etag, "why")
            },
            Refusal::invalid_under("requester"),
        ),
        (
            "stale etag",
            req("stale-etag", "why"),
            Refusal::new(Code::Aborted),
        ),
    ];
    refuse_each!(client(&ctx), revoke_consent_directive, table).await?;
    let revoked = ok(
        client(&ctx)
            .revoke_consent_directive(req(&active.etag, "Patient withdrew consent by phone"))
            .await,
        "RevokeConsentDirective",
    )?
    .directive;
    let Some(revoked) = revoked else {
        fail!("RevokeConsentDirective: no directive")
    };
    ensure_eq!(
        revoked.status,
        ConsentDirectiveStatus::Inactive as i32,
        "status"
    );
    ensure_eq!(
        revoked.revocation_reason,
        "Patient withdrew consent by phone",
        "revocation_reason"
    );
    ensure!(revoked.revoke_time.is_some(), "revoke_time must be set");
    ensure_eq!(revoked.version, 2, "version");
    let draft = create(&ctx, draft(&pid)).await?;
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let table = vec![
        (
            "already INACTIVE",
            req(&revoked.etag, "again"),
            status_precondition(),
        ),
        (
            "a DRAFT",
            revoke_request(&draft.directive_id, &draft.etag, "why"),
            status_precondition(),
        ),
        (
            "unknown directive",
            revoke_request(&unknown_id, "e", "why"),
            unknown(&unknown_id),
        ),
    ];
    refuse_each!(client(&ctx), revoke_consent_directive, table).await
}

pub(super) async fn versions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, draft(&pid)).await?;
    let v2 = set_status(&ctx, &v1, ConsentDirectiveStatus::Active).await?;
    let v3 = update(
        &ctx,
        provisions_of(&v1.directive_id, &["hiv"]),
        &v2.etag,
        &["provisions"],
    )
    .await?;
    let expected = vec![v3, v2, v1.clone()];
    let (got, _) = every_page!(
        client(&ctx),
        list_consent_directive_versions,
        "ListConsentDirectiveVersions",
        versions,
        10,
        ListConsentDirectiveVersionsRequest {
            directive_id: v1.directive_id.clone(),
            page_size: 2,
            page_token: String::new()
        },
    )?;
    ensure_eq!(got, expected, "versions, newest first, complete snapshots");
    let other = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let first = ok(
        client(&ctx)
            .list_consent_directive_versions(ListConsentDirectiveVersionsRequest {
                directive_id: v1.directive_id.clone(),
                page_size: 1,
                page_token: String::new(),
            })
            .await,
        "ListConsentDirectiveVersions(page_size 1)",
    )?;
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let table = vec![
        (
            "token of another directive",
            ListConsentDirectiveVersionsRequest {
                directive_id: other.directive_id.clone(),
                page_size: 1,
                page_token: first.next_page_token,
            },
            Refusal::invalid("page_token"),
        ),
        (
            "unknown",
            ListConsentDirectiveVersionsRequest {
                directive_id: unknown_id.clone(),
                ..Default::default()
            },
            unknown(&unknown_id),
        ),
    ];
    refuse_each!(client(&ctx), list_consent_directive_versions, table).await
}
