//! Consent directives (create, get, list, update, revoke, versions) and the national data opt-out.

use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    GetConsentDirectiveRequest, GetNationalDataOptOutRequest, ListConsentDirectiveVersionsRequest,
    ListConsentDirectivesRequest, Provision, ProvisionActor, RevokeConsentDirectiveRequest,
    SetNationalDataOptOutRequest, UpdateConsentDirectiveRequest,
};
use prost_types::FieldMask;
use tonic::Code;

use super::{
    RESOURCE_TYPE, actor, classes, client, create, create_request, directive, period, recorder,
    strings, year,
};
use crate::harness::{
    Case, Ctx, TestResult, ensure, ensure_eq, err, fail, has_precondition, has_reason,
    has_resource, has_violation, has_violation_under, ok,
};

pub(super) fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case::new(
            "CON-DIR-001",
            "CreateConsentDirective returns version 1 with a lower-case directive_id, an etag, times, and recorded_by/updated_by from the requester",
            create_basics,
        ),
        Case::new(
            "CON-DIR-002",
            "A create retried with the same request_id and body returns the first directive; a different body -> FAILED_PRECONDITION REQUEST_ID_REUSED",
            create_idempotent,
        ),
        Case::new(
            "CON-DIR-003",
            "GetConsentDirective returns the latest or a given version; unknown id or version -> NOT_FOUND with ResourceInfo; bad id or negative version -> INVALID_ARGUMENT",
            get_versions,
        ),
        Case::new(
            "CON-DIR-004",
            "ListConsentDirectives: newest first, statuses filter, pages without gaps, empty for an unknown patient; bad token or UNSPECIFIED status -> INVALID_ARGUMENT",
            list_directives,
        ),
        Case::new(
            "CON-DIR-005",
            "UpdateConsentDirective: DRAFT -> ACTIVE writes a new version; stale etag -> ABORTED; an update changing nothing writes nothing",
            update_basics,
        ),
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
        Case::new(
            "CON-NDOO-001",
            "GetNationalDataOptOut of a patient never recorded: not opted out, version 0, empty etag, no update_time (never NOT_FOUND)",
            opt_out_default,
        ),
        Case::new(
            "CON-NDOO-002",
            "SetNationalDataOptOut writes a version per change; a write not changing opted_out writes nothing",
            opt_out_set,
        ),
        Case::new(
            "CON-NDOO-003",
            "SetNationalDataOptOut with a stale etag (any etag for a never-recorded patient) -> ABORTED; empty etag writes unconditionally",
            opt_out_etag,
        ),
        Case::new(
            "CON-NDOO-004",
            "Opt-out validation: malformed patient_id, missing requester -> INVALID_ARGUMENT",
            opt_out_invalid,
        ),
    ];
    cases.extend(validation_cases());
    cases
}

type Mutate = fn(&mut CreateConsentDirectiveRequest);

fn d(r: &mut CreateConsentDirectiveRequest) -> &mut ConsentDirective {
    r.directive.get_or_insert_with(Default::default)
}

fn p0(r: &mut CreateConsentDirectiveRequest) -> &mut Provision {
    let dir = d(r);
    if dir.provisions.is_empty() {
        dir.provisions.push(classes(&["hiv"]));
    }
    &mut dir.provisions[0]
}

/// (id, what, mutation, field, exact field or prefix)
const RULES: &[(&str, &str, Mutate, &str, bool)] = &[
    (
        "CON-VAL-001",
        "request_id missing",
        |r| r.request_id.clear(),
        "request_id",
        true,
    ),
    (
        "CON-VAL-002",
        "request_id not a UUID",
        |r| r.request_id = "x".into(),
        "request_id",
        true,
    ),
    (
        "CON-VAL-003",
        "requester missing",
        |r| r.requester = None,
        "requester",
        true,
    ),
    (
        "CON-VAL-004",
        "requester without organisation_ods_code",
        |r| {
            if let Some(q) = r.requester.as_mut() {
                q.organisation_ods_code.clear()
            }
        },
        "requester",
        false,
    ),
    (
        "CON-VAL-005",
        "directive missing",
        |r| r.directive = None,
        "directive",
        false,
    ),
    (
        "CON-VAL-006",
        "directive.patient_id not a UUID",
        |r| d(r).patient_id = "9434765919".into(),
        "directive.patient_id",
        true,
    ),
    (
        "CON-VAL-007",
        "directive.status UNSPECIFIED",
        |r| d(r).status = 0,
        "directive.status",
        true,
    ),
    (
        "CON-VAL-008",
        "directive.status INACTIVE on create",
        |r| d(r).status = ConsentDirectiveStatus::Inactive as i32,
        "directive.status",
        true,
    ),
    (
        "CON-VAL-009",
        "directive.decision UNSPECIFIED",
        |r| d(r).decision = 0,
        "directive.decision",
        true,
    ),
    (
        "CON-VAL-010",
        "an unknown purpose code (codes are case-sensitive)",
        |r| d(r).scope_purposes = strings(&["HRESCH", "treat"]),
        "directive.scope_purposes[1]",
        true,
    ),
    (
        "CON-VAL-011",
        "a duplicate purpose",
        |r| d(r).scope_purposes = strings(&["HRESCH", "HRESCH"]),
        "directive.scope_purposes",
        false,
    ),
    (
        "CON-VAL-012",
        "a period whose end is not after its start",
        |r| d(r).period = period(Some(year(2024)), Some(year(2024))),
        "directive.period",
        false,
    ),
    (
        "CON-VAL-013",
        "date_time missing",
        |r| d(r).date_time = None,
        "directive.date_time",
        true,
    ),
    (
        "CON-VAL-014",
        "date_time more than 5 minutes in the future",
        |r| d(r).date_time = Some(crate::records::seconds_from_now(3600)),
        "directive.date_time",
        true,
    ),
    (
        "CON-VAL-015",
        "a provision with no criteria",
        |r| {
            d(r).provisions = vec![Provision {
                provisions: vec![classes(&["hiv"])],
                ..Default::default()
            }]
        },
        "directive.provisions[0]",
        false,
    ),
    (
        "CON-VAL-016",
        "an unknown data class in a provision",
        |r| p0(r).data_classes = strings(&["hiv", "confidential"]),
        "directive.provisions[0].data_classes[1]",
        true,
    ),
    (
        "CON-VAL-017",
        "an unknown purpose in a nested provision",
        |r| {
            p0(r).provisions = vec![Provision {
                purposes: strings(&["RESEARCH"]),
                ..Default::default()
            }]
        },
        "directive.provisions[0].provisions[0].purposes[0]",
        true,
    ),
    (
        "CON-VAL-018",
        "an actor with no field set",
        |r| p0(r).actors = vec![actor("RXA", ""), ProvisionActor::default()],
        "directive.provisions[0].actors[1]",
        false,
    ),
    (
        "CON-VAL-019",
        "an actor role code that is not an R-code",
        |r| p0(r).actors = vec![actor("", "S8000:G8000:R8000")],
        "directive.provisions[0].actors[0]",
        false,
    ),
    (
        "CON-VAL-020",
        "an actor ODS code with a character other than letters and digits",
        |r| p0(r).actors = vec![actor("RX-A", "")],
        "directive.provisions[0].actors[0]",
        false,
    ),
    (
        "CON-VAL-021",
        "provisions nested deeper than 5",
        |r| {
            let mut p = classes(&["hiv"]);
            for _ in 0..5 {
                p = Provision {
                    provisions: vec![p],
                    ..classes(&["hiv"])
                };
            }
            d(r).provisions = vec![p];
        },
        "directive.provisions",
        false,
    ),
    (
        "CON-VAL-022",
        "more than 200 provisions in total",
        |r| d(r).provisions = (0..201).map(|_| classes(&["hiv"])).collect(),
        "directive.provisions",
        false,
    ),
    (
        "CON-VAL-023",
        "policy_basis not an absolute URI",
        |r| d(r).policy_basis = "protocol.pdf".into(),
        "directive.policy_basis",
        true,
    ),
    (
        "CON-VAL-024",
        "grantor_display over 200 characters",
        |r| d(r).grantor_display = "g".repeat(201),
        "directive.grantor_display",
        true,
    ),
    (
        "CON-VAL-025",
        "an empty study id",
        |r| p0(r).study_ids = vec![String::new()],
        "directive.provisions[0].study_ids",
        false,
    ),
    (
        "CON-VAL-026",
        "a study id over 128 characters",
        |r| p0(r).study_ids = vec!["s".repeat(129)],
        "directive.provisions[0].study_ids",
        false,
    ),
    (
        "CON-VAL-027",
        "a provision data_period whose end is not after its start",
        |r| p0(r).data_period = period(Some(year(2021)), Some(year(2020))),
        "directive.provisions[0].data_period",
        false,
    ),
];

fn validation_cases() -> Vec<Case> {
    RULES
        .iter()
        .map(|&(id, what, mutate, field, exact)| {
            Case::new(
                id,
                format!("CreateConsentDirective refuses {what}: INVALID_ARGUMENT naming `{field}`"),
                move |ctx| async move {
                    let pid = ctx.new_patient();
                    let mut request = create_request(directive(
                        &pid,
                        ConsentDecision::Deny,
                        vec![classes(&["hiv"])],
                    ));
                    mutate(&mut request);
                    let status = err(
                        client(&ctx).create_consent_directive(request).await,
                        Code::InvalidArgument,
                        &format!("CreateConsentDirective({what})"),
                    )?;
                    if exact {
                        has_violation(&status, field).map(|_| ())
                    } else {
                        has_violation_under(&status, field)
                    }?;
                    let listed = ok(
                        client(&ctx)
                            .list_consent_directives(ListConsentDirectivesRequest {
                                patient_id: pid,
                                ..Default::default()
                            })
                            .await,
                        "ListConsentDirectives",
                    )?;
                    ensure!(
                        listed.directives.is_empty(),
                        "a refused create wrote a directive"
                    );
                    Ok(())
                },
            )
        })
        .collect()
}

async fn get(ctx: &Ctx, id: &str, version: i64) -> TestResult<ConsentDirective> {
    let r = ok(
        client(ctx)
            .get_consent_directive(GetConsentDirectiveRequest {
                directive_id: id.into(),
                version,
            })
            .await,
        "GetConsentDirective",
    )?;
    r.directive
        .ok_or_else(|| crate::harness::Fail::Failed("GetConsentDirective: no directive".into()))
}

fn update_request(
    dir: ConsentDirective,
    etag: &str,
    paths: &[&str],
) -> UpdateConsentDirectiveRequest {
    UpdateConsentDirectiveRequest {
        directive: Some(dir),
        update_mask: Some(FieldMask {
            paths: strings(paths),
        }),
        etag: etag.into(),
        requester: Some(recorder()),
    }
}

async fn update(
    ctx: &Ctx,
    dir: ConsentDirective,
    etag: &str,
    paths: &[&str],
) -> TestResult<ConsentDirective> {
    let r = ok(
        client(ctx)
            .update_consent_directive(update_request(dir, etag, paths))
            .await,
        "UpdateConsentDirective",
    )?;
    r.directive
        .ok_or_else(|| crate::harness::Fail::Failed("UpdateConsentDirective: no directive".into()))
}

fn with_status(dir: &ConsentDirective, status: ConsentDirectiveStatus) -> ConsentDirective {
    ConsentDirective {
        status: status as i32,
        ..dir.clone()
    }
}

async fn create_basics(ctx: Ctx) -> TestResult {
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
    ensure!(
        uuid::Uuid::parse_str(&created.directive_id).is_ok()
            && created.directive_id == created.directive_id.to_lowercase()
            && created.directive_id.len() == 36,
        "directive_id must be a lower-case UUID, got {:?}",
        created.directive_id
    );
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

async fn create_idempotent(ctx: Ctx) -> TestResult {
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
    let status = err(
        client(&ctx).create_consent_directive(other).await,
        Code::FailedPrecondition,
        "CreateConsentDirective(same request_id, different body)",
    )?;
    has_reason(&status, "REQUEST_ID_REUSED")?;
    let listed = ok(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: pid,
                ..Default::default()
            })
            .await,
        "ListConsentDirectives",
    )?;
    ensure_eq!(
        listed.directives.len(),
        1,
        "directives after a retry and a reuse"
    );
    Ok(())
}

async fn get_versions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let draft = create(
        &ctx,
        ConsentDirective {
            status: ConsentDirectiveStatus::Draft as i32,
            ..directive(&pid, ConsentDecision::Deny, vec![])
        },
    )
    .await?;
    let active = update(
        &ctx,
        with_status(&draft, ConsentDirectiveStatus::Active),
        &draft.etag,
        &["status"],
    )
    .await?;
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
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .get_consent_directive(GetConsentDirectiveRequest {
                directive_id: unknown.clone(),
                version: 0,
            })
            .await,
        Code::NotFound,
        "GetConsentDirective(unknown id)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    let status = err(
        client(&ctx)
            .get_consent_directive(GetConsentDirectiveRequest {
                directive_id: draft.directive_id.clone(),
                version: 3,
            })
            .await,
        Code::NotFound,
        "GetConsentDirective(version 3 of 2)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &draft.directive_id)?;
    for (id, version, field) in [
        ("", 0, "directive_id"),
        ("nope", 0, "directive_id"),
        (draft.directive_id.as_str(), -1, "version"),
    ] {
        let status = err(
            client(&ctx)
                .get_consent_directive(GetConsentDirectiveRequest {
                    directive_id: id.into(),
                    version,
                })
                .await,
            Code::InvalidArgument,
            &format!("GetConsentDirective({id:?}, {version})"),
        )?;
        has_violation(&status, field)?;
    }
    Ok(())
}

async fn list_directives(ctx: Ctx) -> TestResult {
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
    let mut got = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(
            client(&ctx)
                .list_consent_directives(ListConsentDirectivesRequest {
                    patient_id: pid.clone(),
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await,
            "ListConsentDirectives(page_size 1)",
        )?;
        ensure!(
            page.directives.len() <= 1,
            "a page of size 1 held {}",
            page.directives.len()
        );
        got.extend(page.directives.into_iter().map(|d| d.directive_id));
        if page.next_page_token.is_empty() {
            break;
        }
        ensure!(got.len() <= 10, "pagination does not end");
        token = page.next_page_token;
        if got.len() == 1 {
            // The token is bound to patient_id and statuses.
            let other = ctx.new_patient();
            let status = err(
                client(&ctx)
                    .list_consent_directives(ListConsentDirectivesRequest {
                        patient_id: other,
                        page_token: token.clone(),
                        ..Default::default()
                    })
                    .await,
                Code::InvalidArgument,
                "ListConsentDirectives(token of another patient)",
            )?;
            has_violation(&status, "page_token")?;
            let status = err(
                client(&ctx)
                    .list_consent_directives(ListConsentDirectivesRequest {
                        patient_id: pid.clone(),
                        statuses: vec![ConsentDirectiveStatus::Active as i32],
                        page_token: token.clone(),
                        ..Default::default()
                    })
                    .await,
                Code::InvalidArgument,
                "ListConsentDirectives(token with other statuses)",
            )?;
            has_violation(&status, "page_token")?;
        }
    }
    ensure_eq!(
        got,
        expected_ids,
        "directives, newest first, over every page"
    );
    let drafts = ok(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: pid.clone(),
                statuses: vec![ConsentDirectiveStatus::Draft as i32],
                ..Default::default()
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
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await,
        "ListConsentDirectives(unknown patient)",
    )?;
    ensure!(
        none.directives.is_empty(),
        "an unknown patient has no directives"
    );
    let status = err(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: pid.clone(),
                statuses: vec![0],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "ListConsentDirectives(statuses [UNSPECIFIED])",
    )?;
    has_violation_under(&status, "statuses")?;
    for (p, size, field) in [("bad", 0, "patient_id"), (pid.as_str(), -1, "page_size")] {
        let status = err(
            client(&ctx)
                .list_consent_directives(ListConsentDirectivesRequest {
                    patient_id: p.into(),
                    page_size: size,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &format!("ListConsentDirectives(bad {field})"),
        )?;
        has_violation(&status, field)?;
    }
    let status = err(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: pid,
                page_token: crate::records::FORGED_TOKEN.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "ListConsentDirectives(forged token)",
    )?;
    has_violation(&status, "page_token")?;
    Ok(())
}

async fn update_basics(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let draft = create(
        &ctx,
        ConsentDirective {
            status: ConsentDirectiveStatus::Draft as i32,
            ..directive(&pid, ConsentDecision::Deny, vec![])
        },
    )
    .await?;
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
        ConsentDirective {
            directive_id: draft.directive_id.clone(),
            provisions: vec![classes(&["genomic"])],
            ..Default::default()
        },
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
                ConsentDirective {
                    directive_id: draft.directive_id.clone(),
                    provisions: vec![classes(&["hiv"])],
                    ..Default::default()
                },
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
            directive_id: draft.directive_id.clone(),
            provisions: vec![classes(&["genomic"])],
            status: ConsentDirectiveStatus::Active as i32,
            ..Default::default()
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

async fn update_transitions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let status = err(
        client(&ctx)
            .update_consent_directive(update_request(
                with_status(&active, ConsentDirectiveStatus::Inactive),
                &active.etag,
                &["status"],
            ))
            .await,
        Code::InvalidArgument,
        "UpdateConsentDirective(ACTIVE -> INACTIVE)",
    )?;
    has_violation_under(&status, "directive.status")?;
    let status = err(
        client(&ctx)
            .update_consent_directive(update_request(
                with_status(&active, ConsentDirectiveStatus::Unspecified),
                &active.etag,
                &["status"],
            ))
            .await,
        Code::InvalidArgument,
        "UpdateConsentDirective(status UNSPECIFIED)",
    )?;
    has_violation_under(&status, "directive.status")?;
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
    let status = err(
        client(&ctx)
            .update_consent_directive(update_request(
                with_status(&eie, ConsentDirectiveStatus::Active),
                &eie.etag,
                &["status"],
            ))
            .await,
        Code::FailedPrecondition,
        "UpdateConsentDirective(ENTERED_IN_ERROR -> ACTIVE)",
    )?;
    has_precondition(&status, "STATUS", None)?;
    let status = err(
        client(&ctx)
            .update_consent_directive(update_request(
                ConsentDirective {
                    directive_id: eie.directive_id.clone(),
                    provisions: vec![classes(&["hiv"])],
                    ..Default::default()
                },
                &eie.etag,
                &["provisions"],
            ))
            .await,
        Code::FailedPrecondition,
        "UpdateConsentDirective(edit an ENTERED_IN_ERROR directive)",
    )?;
    has_precondition(&status, "STATUS", None)?;
    Ok(())
}

async fn update_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    for paths in [
        &[][..],
        &["patient_id"][..],
        &["version"][..],
        &["etag"][..],
        &["recorded_by"][..],
        &["no_such_field"][..],
        &["provisions.0"][..],
    ] {
        let status = err(
            client(&ctx)
                .update_consent_directive(update_request(active.clone(), &active.etag, paths))
                .await,
            Code::InvalidArgument,
            &format!("UpdateConsentDirective(update_mask {paths:?})"),
        )?;
        has_violation_under(&status, "update_mask")?;
    }
    let mut no_mask = update_request(active.clone(), &active.etag, &[]);
    no_mask.update_mask = None;
    let status = err(
        client(&ctx).update_consent_directive(no_mask).await,
        Code::InvalidArgument,
        "UpdateConsentDirective(no update_mask)",
    )?;
    has_violation(&status, "update_mask")?;
    let mut no_etag = update_request(active.clone(), "", &["decision"]);
    no_etag.etag.clear();
    let status = err(
        client(&ctx).update_consent_directive(no_etag).await,
        Code::InvalidArgument,
        "UpdateConsentDirective(no etag)",
    )?;
    has_violation(&status, "etag")?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .update_consent_directive(update_request(
                ConsentDirective {
                    directive_id: unknown.clone(),
                    decision: ConsentDecision::Permit as i32,
                    ..Default::default()
                },
                "etag",
                &["decision"],
            ))
            .await,
        Code::NotFound,
        "UpdateConsentDirective(unknown directive)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    ensure_eq!(
        get(&ctx, &active.directive_id, 0).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

async fn revoke(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let active = create(&ctx, directive(&pid, ConsentDecision::Deny, vec![])).await?;
    let req = |etag: &str, reason: &str| RevokeConsentDirectiveRequest {
        directive_id: active.directive_id.clone(),
        etag: etag.into(),
        reason: reason.into(),
        requester: Some(recorder()),
    };
    for (r, field) in [
        (req(&active.etag, ""), "reason"),
        (req(&active.etag, &"r".repeat(1001)), "reason"),
        (req("", "why"), "etag"),
        (
            RevokeConsentDirectiveRequest {
                requester: None,
                ..req(&active.etag, "why")
            },
            "requester",
        ),
    ] {
        let status = err(
            client(&ctx).revoke_consent_directive(r).await,
            Code::InvalidArgument,
            &format!("RevokeConsentDirective(bad {field})"),
        )?;
        has_violation_under(&status, field)?;
    }
    err(
        client(&ctx)
            .revoke_consent_directive(req("stale-etag", "why"))
            .await,
        Code::Aborted,
        "RevokeConsentDirective(stale etag)",
    )?;
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
    let status = err(
        client(&ctx)
            .revoke_consent_directive(RevokeConsentDirectiveRequest {
                etag: revoked.etag.clone(),
                ..req("", "again")
            })
            .await,
        Code::FailedPrecondition,
        "RevokeConsentDirective(already INACTIVE)",
    )?;
    has_precondition(&status, "STATUS", None)?;
    let draft = create(
        &ctx,
        ConsentDirective {
            status: ConsentDirectiveStatus::Draft as i32,
            ..directive(&pid, ConsentDecision::Deny, vec![])
        },
    )
    .await?;
    let status = err(
        client(&ctx)
            .revoke_consent_directive(RevokeConsentDirectiveRequest {
                directive_id: draft.directive_id.clone(),
                etag: draft.etag.clone(),
                reason: "why".into(),
                requester: Some(recorder()),
            })
            .await,
        Code::FailedPrecondition,
        "RevokeConsentDirective(a DRAFT)",
    )?;
    has_precondition(&status, "STATUS", None)?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .revoke_consent_directive(RevokeConsentDirectiveRequest {
                directive_id: unknown.clone(),
                etag: "e".into(),
                reason: "why".into(),
                requester: Some(recorder()),
            })
            .await,
        Code::NotFound,
        "RevokeConsentDirective(unknown directive)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)
}

async fn versions(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = create(
        &ctx,
        ConsentDirective {
            status: ConsentDirectiveStatus::Draft as i32,
            ..directive(&pid, ConsentDecision::Deny, vec![])
        },
    )
    .await?;
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
    let status = err(
        client(&ctx)
            .list_consent_directive_versions(ListConsentDirectiveVersionsRequest {
                directive_id: other.directive_id.clone(),
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await,
        Code::InvalidArgument,
        "ListConsentDirectiveVersions(token of another directive)",
    )?;
    has_violation(&status, "page_token")?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .list_consent_directive_versions(ListConsentDirectiveVersionsRequest {
                directive_id: unknown.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "ListConsentDirectiveVersions(unknown)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)
}

async fn get_opt_out(
    ctx: &Ctx,
    pid: &str,
) -> TestResult<carerecord_contracts::consent::v1::NationalDataOptOut> {
    let r = ok(
        client(ctx)
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: pid.into(),
            })
            .await,
        "GetNationalDataOptOut",
    )?;
    r.national_data_opt_out.ok_or_else(|| {
        crate::harness::Fail::Failed("GetNationalDataOptOut: no national_data_opt_out".into())
    })
}

pub(super) async fn set_opt_out(
    ctx: &Ctx,
    pid: &str,
    opted_out: bool,
    etag: &str,
) -> TestResult<carerecord_contracts::consent::v1::NationalDataOptOut> {
    let r = ok(
        client(ctx)
            .set_national_data_opt_out(SetNationalDataOptOutRequest {
                patient_id: pid.into(),
                opted_out,
                etag: etag.into(),
                requester: Some(recorder()),
            })
            .await,
        "SetNationalDataOptOut",
    )?;
    ctx.created("national data opt-out", pid);
    r.national_data_opt_out.ok_or_else(|| {
        crate::harness::Fail::Failed("SetNationalDataOptOut: no national_data_opt_out".into())
    })
}

async fn opt_out_default(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let o = get_opt_out(&ctx, &pid).await?;
    ensure!(!o.opted_out, "a never-recorded patient is not opted out");
    ensure_eq!(o.version, 0, "version");
    ensure!(o.etag.is_empty(), "etag must be empty");
    ensure!(o.update_time.is_none(), "update_time must be unset");
    Ok(())
}

async fn opt_out_set(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = set_opt_out(&ctx, &pid, true, "").await?;
    ensure!(v1.opted_out, "opted_out after opting out");
    ensure_eq!(v1.version, 1, "version of the first write");
    ensure!(
        !v1.etag.is_empty() && v1.update_time.is_some(),
        "etag and update_time are set"
    );
    ensure_eq!(v1.updated_by, Some(recorder()), "updated_by");
    let same = set_opt_out(&ctx, &pid, true, "").await?;
    ensure_eq!(
        same,
        v1.clone(),
        "a write not changing opted_out writes nothing"
    );
    let v2 = set_opt_out(&ctx, &pid, false, &v1.etag).await?;
    ensure!(!v2.opted_out, "opted back in");
    ensure_eq!(v2.version, 2, "version");
    ensure!(v2.etag != v1.etag, "the etag changes");
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?,
        v2,
        "GetNationalDataOptOut after the writes"
    );
    Ok(())
}

async fn opt_out_etag(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let req = |etag: &str| SetNationalDataOptOutRequest {
        patient_id: pid.clone(),
        opted_out: true,
        etag: etag.into(),
        requester: Some(recorder()),
    };
    err(
        client(&ctx).set_national_data_opt_out(req("any")).await,
        Code::Aborted,
        "SetNationalDataOptOut(an etag for a never-recorded patient)",
    )?;
    let v1 = set_opt_out(&ctx, &pid, true, "").await?;
    let v2 = set_opt_out(&ctx, &pid, false, &v1.etag).await?;
    let mut stale = req(&v1.etag);
    stale.opted_out = true;
    err(
        client(&ctx).set_national_data_opt_out(stale).await,
        Code::Aborted,
        "SetNationalDataOptOut(stale etag)",
    )?;
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?,
        v2.clone(),
        "the status after a refused write"
    );
    let v3 = set_opt_out(&ctx, &pid, true, "").await?;
    ensure_eq!(v3.version, 3, "an unconditional write");
    Ok(())
}

async fn opt_out_invalid(ctx: Ctx) -> TestResult {
    let status = err(
        client(&ctx)
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: "x".into(),
            })
            .await,
        Code::InvalidArgument,
        "GetNationalDataOptOut(bad id)",
    )?;
    has_violation(&status, "patient_id")?;
    let status = err(
        client(&ctx)
            .set_national_data_opt_out(SetNationalDataOptOutRequest {
                patient_id: "x".into(),
                opted_out: true,
                etag: String::new(),
                requester: Some(recorder()),
            })
            .await,
        Code::InvalidArgument,
        "SetNationalDataOptOut(bad id)",
    )?;
    has_violation(&status, "patient_id")?;
    let pid = ctx.new_patient();
    let status = err(
        client(&ctx)
            .set_national_data_opt_out(SetNationalDataOptOutRequest {
                patient_id: pid.clone(),
                opted_out: true,
                etag: String::new(),
                requester: None,
            })
            .await,
        Code::InvalidArgument,
        "SetNationalDataOptOut(no requester)",
    )?;
    has_violation_under(&status, "requester")?;
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?.version,
        0,
        "nothing written by a refused write"
    );
    Ok(())
}
