//! Consent directives: create, idempotency, get, list and update.

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, GetConsentDirectiveRequest,
    ListConsentDirectivesRequest, Provision,
};
use tonic::Code;

use super::support::{
    classes, client, create, create_request, directive, directives_of, draft, get, list_request,
    provisions_of, recorder, set_status, strings, unknown, update, update_request,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ensure_new_id, err, every_page, ok};
use crate::refusal::{Refusal, refuse_each, refused};

pub(super) async fn create_basics(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let input = ConsentDirective {
        scope_purposes: strings(&["HRESCH"]),
        policy_basis: "https://example.org/protocols/iras-123".into(),
        policy_text: "Agreed to take part".into(),
        grantor_display: "The patient".into(),
        ..directive(
            &pid,
            ConsentDecision::Permit,
            vec![Provision {
                study_ids: strings(&["IRAS-123"]),
                ..Default::default()
            }],
        )
    };
    let created = create(&ctx, input.clone()).await?;
    ensure_new_id("directive_id", &created.directive_id)?;
    ensure_eq!(created.version, 1, "version");
    ensure!(!created.etag.is_empty(), "etag must be set");
    ensure!(created.create_time.is_some(), "create_time must be set");
    ensure_eq!(
        created.update_time,
        created.create_time,
        "update_time of version 1"
    );
    ensure_eq!(created.recorded_by, Some(recorder()), "recorded_by");
    ensure_eq!(created.updated_by, Some(recorder()), "updated_by");
    ensure_eq!(created.patient_id, pid, "patient_id");
    ensure_eq!(created.status, input.status, "status");
    ensure_eq!(created.decision, input.decision, "decision");
    ensure_eq!(
        created.scope_purposes,
        input.scope_purposes,
        "scope_purposes"
    );
    ensure_eq!(created.provisions, input.provisions, "provisions");
    ensure_eq!(created.date_time, input.date_time, "date_time");
    ensure_eq!(created.policy_basis, input.policy_basis, "policy_basis");
    ensure!(
        created.revocation_reason.is_empty() && created.revoke_time.is_none(),
        "a new directive is not revoked"
    );
    ensure_eq!(
        get(&ctx, &created.directive_id, 0).await?,
        created,
        "GetConsentDirective after create"
    );
    // A directive with no provisions is valid (a blanket decision).
    create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    Ok(())
}

pub(super) async fn create_idempotent(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let request = create_request(directive(
        &pid,
        ConsentDecision::Deny,
        vec![classes(&["hiv"])],
    ));
    let first = ok(
        client(&ctx).create_consent_directive(request.clone()).await,
        "CreateConsentDirective",
    )?
    .directive;
    let again = ok(
        client(&ctx).create_consent_directive(request.clone()).await,
        "CreateConsentDirective(retry)",
    )?
    .directive;
    if let Some(d) = &first {
        ctx.created("consent directive", &d.directive_id);
    }
    ensure_eq!(again, first, "a retry returns the directive first created");
    let mut other = request.clone();
    if let Some(dir) = other.directive.as_mut() {
        dir.decision = ConsentDecision::Permit as i32;
    }
    refused(
        client(&ctx).create_consent_directive(other).await,
        &Refusal::new(Code::FailedPrecondition).reason("REQUEST_ID_REUSED"),
        "CreateConsentDirective(same request_id, different body)",
    )?;
    ensure_eq!(
        directives_of(&ctx, &pid).await?.len(),
        1,
        "directives after a retry and a reuse"
    );
    Ok(())
}

pub(super) async fn get_versions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let draft = create(&ctx, draft(&pid)).await?;
    let active = set_status(&ctx, &draft, ConsentDirectiveStatus::Active).await?;
    ensure_eq!(
        get(&ctx, &draft.directive_id, 0).await?,
        active.clone(),
        "latest version"
    );
    ensure_eq!(
        get(&ctx, &draft.directive_id, 1).await?,
        draft.clone(),
        "version 1"
    );
    ensure_eq!(
        get(&ctx, &draft.directive_id.to_uppercase(), 2).await?,
        active,
        "version 2 by an upper-case id"
    );
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let get = |directive_id: &str, version| GetConsentDirectiveRequest {
        directive_id: directive_id.into(),
        version,
    };
    let mut table = vec![
        (
            "unknown id".to_owned(),
            get(&unknown_id, 0),
            unknown(&unknown_id),
        ),
        (
            "version 3 of 2".to_owned(),
            get(&draft.directive_id, 3),
            unknown(&draft.directive_id),
        ),
    ];
    for (id, version, field) in [
        ("", 0, "directive_id"),
        ("nope", 0, "directive_id"),
        (draft.directive_id.as_str(), -1, "version"),
    ] {
        table.push((
            format!("{id:?}, {version}"),
            get(id, version),
            Refusal::invalid(field),
        ));
    }
    refuse_each!(client(&ctx), get_consent_directive, table,).await
}

pub(super) async fn list_directives(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let mut made = Vec::new();
    for i in 0..4 {
        let status = if i % 2 == 0 {
            ConsentDirectiveStatus::Active
        } else {
            ConsentDirectiveStatus::Draft
        };
        made.push(
            create(
                &ctx,
                ConsentDirective {
                    status: status as i32,
                    ..directive(&pid, ConsentDecision::Deny, vec![classes(&["hiv"])])
                },
            )
            .await?,
        );
    }
    let key = |d: &ConsentDirective| {
        (
            std::cmp::Reverse(crate::records::ts_key(&d.create_time)),
            d.directive_id.clone(),
        )
    };
    let mut expected = made.clone();
    expected.sort_by_key(key);
    let expected_ids: Vec<String> = expected.iter().map(|d| d.directive_id.clone()).collect();
    // Page by page with page_size 1.
    let (got, first_token) = every_page!(
        client(&ctx),
        list_consent_directives,
        "ListConsentDirectives(page_size 1)",
        directives,
        10,
        ListConsentDirectivesRequest {
            page_size: 1,
            ..list_request(&pid)
        },
    )?;
    let got: Vec<String> = got.into_iter().map(|d| d.directive_id).collect();
    ensure_eq!(
        got,
        expected_ids,
        "directives, newest first, over every page"
    );
    let drafts = ok(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                statuses: vec![ConsentDirectiveStatus::Draft as i32],
                ..list_request(&pid)
            })
            .await,
        "ListConsentDirectives(DRAFT)",
    )?;
    let draft_ids: Vec<String> = expected
        .iter()
        .filter(|d| d.status == ConsentDirectiveStatus::Draft as i32)
        .map(|d| d.directive_id.clone())
        .collect();
    ensure_eq!(
        drafts
            .directives
            .iter()
            .map(|d| d.directive_id.clone())
            .collect::<Vec<_>>(),
        draft_ids,
        "DRAFT directives"
    );
    let none = ok(
        client(&ctx)
            .list_consent_directives(list_request(&uuid::Uuid::new_v4().to_string()))
            .await,
        "ListConsentDirectives(unknown patient)",
    )?;
    ensure!(
        none.directives.is_empty(),
        "an unknown patient has no directives"
    );
    let table = vec![
        // The token is bound to patient_id and statuses.
        (
            "token of another patient",
            ListConsentDirectivesRequest {
                page_token: first_token.clone(),
                ..list_request(&ctx.new_patient())
            },
            Refusal::invalid("page_token"),
        ),
        (
            "token with other statuses",
            ListConsentDirectivesRequest {
                statuses: vec![ConsentDirectiveStatus::Active as i32],
                page_token: first_token,
                ..list_request(&pid)
            },
            Refusal::invalid("page_token"),
        ),
        (
            "statuses [UNSPECIFIED]",
            ListConsentDirectivesRequest {
                statuses: vec![0],
                ..list_request(&pid)
            },
            Refusal::invalid_under("statuses"),
        ),
        (
            "bad patient_id",
            list_request("bad"),
            Refusal::invalid("patient_id"),
        ),
        (
            "bad page_size",
            ListConsentDirectivesRequest {
                page_size: -1,
                ..list_request(&pid)
            },
            Refusal::invalid("page_size"),
        ),
        (
            "forged token",
            ListConsentDirectivesRequest {
                page_token: crate::records::FORGED_TOKEN.into(),
                ..list_request(&pid)
            },
            Refusal::invalid("page_token"),
        ),
    ];
    refuse_each!(client(&ctx), list_consent_directives, table).await
}

pub(super) async fn update_basics(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let draft = create(&ctx, draft(&pid)).await?;
    let active = update(
        &ctx,
        ConsentDirective {
            directive_id: draft.directive_id.clone(),
            status: ConsentDirectiveStatus::Active as i32,
            ..Default::default()
        },
        &draft.etag,
        &["status"],
    )
    .await?;
    ensure_eq!(active.version, 2, "version after DRAFT -> ACTIVE");
    ensure!(active.etag != draft.etag, "the etag changes on every write");
    ensure_eq!(
        active.status,
        ConsentDirectiveStatus::Active as i32,
        "status"
    );
    ensure_eq!(active.create_time, draft.create_time, "create_time");
    ensure_eq!(active.recorded_by, draft.recorded_by, "recorded_by");
    // Edit an ACTIVE directive's provisions.
    let edited = update(
        &ctx,
        provisions_of(&draft.directive_id, &["genomic"]),
        &active.etag,
        &["provisions"],
    )
    .await?;
    ensure_eq!(edited.version, 3, "version after an edit");
    ensure_eq!(edited.provisions, vec![classes(&["genomic"])], "provisions");
    ensure_eq!(
        edited.decision,
        draft.decision,
        "decision (not in the mask)"
    );
    // Stale etag.
    err(
        client(&ctx)
            .update_consent_directive(update_request(
                provisions_of(&draft.directive_id, &["hiv"]),
                &active.etag,
                &["provisions"],
            ))
            .await,
        Code::Aborted,
        "UpdateConsentDirective(stale etag)",
    )?;
    // No-op: masked fields equal to the stored values.
    let same = update(
        &ctx,
        ConsentDirective {
            status: ConsentDirectiveStatus::Active as i32,
            ..provisions_of(&draft.directive_id, &["genomic"])
        },
        &edited.etag,
        &["provisions", "status"],
    )
    .await?;
    ensure_eq!(
        same,
        edited,
        "an update changing nothing returns the directive unchanged"
    );
    ensure_eq!(
        get(&ctx, &draft.directive_id, 0).await?.version,
        3,
        "version after a no-op update"
    );
    Ok(())
}

pub(super) async fn policy_basis_accepted(ctx: Ctx) -> TestResult {
    for basis in [
        "urn:oid:2.16.840.1.113883.2.1",
        "https://example.org/protocols/iras-123?version=2#consent",
        "HTTPS://Example.org/p",
        "URN:iras-project:123456",
    ] {
        let pid = ctx.new_patient();
        let created = create(
            &ctx,
            ConsentDirective {
                policy_basis: basis.into(),
                ..directive(&pid, ConsentDecision::Deny, vec![])
            },
        )
        .await?;
        ensure_eq!(created.policy_basis, basis, "policy_basis stored as given");
    }
    Ok(())
}
