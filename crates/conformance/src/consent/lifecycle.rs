//! Consent directive lifecycle: status transitions, update validation, revocation and versions.

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, ListConsentDirectiveVersionsRequest,
    RevokeConsentDirectiveRequest, UpdateConsentDirectiveRequest,
};
use tonic::Code;

use super::{
    classes, client, create, directive, draft, get, recorder, unknown, update, update_request,
    with_status,
};
use crate::harness::{Case, Ctx, Refusal, TestResult, ensure, ensure_eq, fail, ok, refuse_all};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "CON-DIR-006",
            "UpdateConsentDirective refuses ACTIVE -> INACTIVE (INVALID_ARGUMENT), edits of ENTERED_IN_ERROR and transitions out of it (FAILED_PRECONDITION STATUS)",
            update_transitions,
        ),
        Case::new(
            "CON-DIR-007",
            "UpdateConsentDirective update_mask missing, unknown, immutable or output-only -> INVALID_ARGUMENT `update_mask`; unknown directive -> NOT_FOUND",
            update_invalid,
        ),
        Case::new(
            "CON-DIR-008",
            "RevokeConsentDirective: ACTIVE -> INACTIVE with reason and revoke_time; not ACTIVE -> FAILED_PRECONDITION STATUS; stale etag -> ABORTED; bad reason -> INVALID_ARGUMENT",
            revoke,
        ),
        Case::new(
            "CON-DIR-009",
            "ListConsentDirectiveVersions lists complete snapshots newest first, in pages; unknown directive -> NOT_FOUND; token of another directive -> INVALID_ARGUMENT",
            versions,
        ),
    ]
}

/// Sends UpdateConsentDirective requests, each of which must be refused as its row says.
async fn updates_refused(
    ctx: &Ctx,
    table: Vec<(String, UpdateConsentDirectiveRequest, Refusal)>,
) -> TestResult {
    refuse_all(
        &client(ctx),
        "UpdateConsentDirective",
        |mut c, r| async move { c.update_consent_directive(r).await },
        table,
    )
    .await
}

/// FAILED_PRECONDITION, PreconditionFailure STATUS.
fn status_precondition() -> Refusal {
    Refusal::new(Code::FailedPrecondition).precondition("STATUS", None)
}

async fn update_transitions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let to = |from: &ConsentDirective, status| {
        update_request(with_status(from, status), &from.etag, &["status"])
    };
    updates_refused(
        &ctx,
        vec![
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
        ],
    )
    .await?;
    let eie = update(
        &ctx,
        with_status(&active, ConsentDirectiveStatus::EnteredInError),
        &active.etag,
        &["status"],
    )
    .await?;
    ensure_eq!(
        eie.status,
        ConsentDirectiveStatus::EnteredInError as i32,
        "status after ACTIVE -> ENTERED_IN_ERROR"
    );
    let edit = ConsentDirective {
        directive_id: eie.directive_id.clone(),
        provisions: vec![classes(&["hiv"])],
        ..Default::default()
    };
    updates_refused(
        &ctx,
        vec![
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
        ],
    )
    .await
}

async fn update_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let mut table: Vec<_> = [
        &[][..],
        &["patient_id"][..],
        &["version"][..],
        &["etag"][..],
        &["recorded_by"][..],
        &["no_such_field"][..],
        &["provisions.0"][..],
    ]
    .into_iter()
    .map(|paths| {
        (
            format!("update_mask {paths:?}"),
            update_request(active.clone(), &active.etag, paths),
            Refusal::invalid_under("update_mask"),
        )
    })
    .collect();
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
    updates_refused(&ctx, table).await?;
    ensure_eq!(
        get(&ctx, &active.directive_id, 0).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

/// Sends RevokeConsentDirective requests, each of which must be refused as its row says.
async fn revokes_refused(
    ctx: &Ctx,
    table: Vec<(&str, RevokeConsentDirectiveRequest, Refusal)>,
) -> TestResult {
    refuse_all(
        &client(ctx),
        "RevokeConsentDirective",
        |mut c, r| async move { c.revoke_consent_directive(r).await },
        table,
    )
    .await
}

fn revoke_request(directive_id: &str, etag: &str, reason: &str) -> RevokeConsentDirectiveRequest {
    RevokeConsentDirectiveRequest {
        directive_id: directive_id.into(),
        etag: etag.into(),
        reason: reason.into(),
        requester: Some(recorder()),
    }
}

async fn revoke(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let req = |etag: &str, reason: &str| revoke_request(&active.directive_id, etag, reason);
    revokes_refused(
        &ctx,
        vec![
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
        ],
    )
    .await?;
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
    revokes_refused(
        &ctx,
        vec![
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
        ],
    )
    .await
}

async fn versions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(&ctx, draft(&pid)).await?;
    let v2 = update(
        &ctx,
        with_status(&v1, ConsentDirectiveStatus::Active),
        &v1.etag,
        &["status"],
    )
    .await?;
    let v3 = update(
        &ctx,
        ConsentDirective {
            directive_id: v1.directive_id.clone(),
            provisions: vec![classes(&["hiv"])],
            ..Default::default()
        },
        &v2.etag,
        &["provisions"],
    )
    .await?;
    let expected = vec![v3, v2, v1.clone()];
    let mut got = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(
            client(&ctx)
                .list_consent_directive_versions(ListConsentDirectiveVersionsRequest {
                    directive_id: v1.directive_id.clone(),
                    page_size: 2,
                    page_token: token.clone(),
                })
                .await,
            "ListConsentDirectiveVersions",
        )?;
        got.extend(page.versions);
        if page.next_page_token.is_empty() {
            break;
        }
        ensure!(got.len() <= 10, "pagination does not end");
        token = page.next_page_token;
    }
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
    refuse_all(
        &client(&ctx),
        "ListConsentDirectiveVersions",
        |mut c, r| async move { c.list_consent_directive_versions(r).await },
        vec![
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
        ],
    )
    .await
}
