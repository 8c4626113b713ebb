//! A patient's consent through the front door (ListConsentDirectives, CreateConsentDirective,
//! RevokeConsentDirective, GetNationalDataOptOut), called with the kit's staff token acting at the
//! patient's request; a token without the `Consent` scopes these need makes the cases skip.

use carerecord_contracts::access::v1::{
    AuditAction, ConsentActor, ConsentDirective, ConsentDirectiveDecision, ConsentDirectiveStatus,
    ConsentProvision, CreateConsentDirectiveRequest, GetNationalDataOptOutRequest,
    ListConsentDirectivesRequest, NationalDataOptOutStatus, RevokeConsentDirectiveRequest,
};
use tonic::{Code, Status};

use super::support::{
    by_demographics, by_id, client, disclosed_entry, has_reason, invalid, refusal, register,
};
use crate::harness::{Ctx, Fail, TestResult, describe, ensure, ensure_eq, fail, ok, present};
use crate::refusal::{Refusal, refuse_each, refused};

/// A skip when the token lacks the scope `call` needs, else a failure naming the status.
fn scope_or_fail<T>(status: Status, call: &str, scope: &str) -> TestResult<T> {
    if status.code() == Code::PermissionDenied {
        has_reason(&status, "SCOPE_MISSING")?;
        return Err(Fail::Skipped(format!(
            "the token lacks {scope} (SCOPE_MISSING checked)"
        )));
    }
    fail!("{call}: expected OK, got {}", describe(&status))
}

/// Withholding `hiv` data from organisation `X1KIT`: a PERMIT directive with one provision.
fn withholding(data_class: &str) -> ConsentDirective {
    ConsentDirective {
        decision: ConsentDirectiveDecision::Permit as i32,
        provisions: vec![ConsentProvision {
            actors: vec![ConsentActor {
                organisation_ods_code: "X1KIT".into(),
                ..Default::default()
            }],
            data_classes: vec![data_class.into()],
            ..Default::default()
        }],
        date_time: Some(std::time::SystemTime::now().into()),
        ..Default::default()
    }
}

fn create(
    patient_id: &str,
    request_id: &str,
    directive: ConsentDirective,
) -> CreateConsentDirectiveRequest {
    CreateConsentDirectiveRequest {
        request_id: request_id.into(),
        patient: by_id(patient_id),
        directive: Some(directive),
    }
}

pub(super) async fn listing_and_opt_out(ctx: Ctx) -> TestResult {
    let patient = register(&ctx).await?;
    let listed = match client(&ctx)
        .list_consent_directives(ListConsentDirectivesRequest {
            patient: by_id(&patient.patient_id),
            ..Default::default()
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(st) => return scope_or_fail(st, "ListConsentDirectives", "user/Consent.r"),
    };
    ensure_eq!(listed.patient_id, patient.patient_id, "patient_id");
    ensure!(
        listed.directives.is_empty(),
        "a new patient has no directives"
    );
    disclosed_entry(
        &ctx,
        listed.audit_index,
        &listed.audit_entry_id,
        AuditAction::ListConsentDirectives,
    )
    .await?;
    let opt_out = ok(
        client(&ctx)
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient: by_id(&patient.patient_id),
            })
            .await,
        "GetNationalDataOptOut",
    )?;
    ensure_eq!(
        (opt_out.status, opt_out.check_time.is_none()),
        (NationalDataOptOutStatus::Unknown as i32, true),
        "a never-checked patient's status (UNKNOWN, no check time)"
    );
    disclosed_entry(
        &ctx,
        opt_out.audit_index,
        &opt_out.audit_entry_id,
        AuditAction::GetNationalDataOptOut,
    )
    .await?;
    let unknown = ListConsentDirectivesRequest {
        patient: by_id(&uuid::Uuid::new_v4().to_string()),
        ..Default::default()
    };
    refused(
        client(&ctx).list_consent_directives(unknown).await,
        &refusal(Code::NotFound, "PATIENT_NOT_FOUND"),
        "ListConsentDirectives(an unknown patient)",
    )
    .map(drop)
}

pub(super) async fn create_and_revoke(ctx: Ctx) -> TestResult {
    let patient = register(&ctx).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let directive = withholding("hiv");
    let created = match client(&ctx)
        .create_consent_directive(create(&patient.patient_id, &request_id, directive.clone()))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(st) => return scope_or_fail(st, "CreateConsentDirective", "user/Consent.c"),
    };
    let made = present(
        created.directive.clone(),
        "CreateConsentDirective: no directive",
    )?;
    ensure_eq!(
        (made.status, made.patient_id.as_str(), made.version),
        (
            ConsentDirectiveStatus::Active as i32,
            patient.patient_id.as_str(),
            1
        ),
        "the created directive's status, patient and version"
    );
    let leaf = disclosed_entry(
        &ctx,
        created.audit_index,
        &created.audit_entry_id,
        AuditAction::CreateConsentDirective,
    )
    .await?;
    ensure_eq!(leaf.request_id, request_id, "the entry's request_id");
    let again = ok(
        client(&ctx)
            .create_consent_directive(create(&patient.patient_id, &request_id, directive))
            .await,
        "CreateConsentDirective(a retry)",
    )?;
    ensure_eq!(
        again.directive.map(|d| d.directive_id),
        Some(made.directive_id.clone()),
        "a retry's directive"
    );
    let reused = create(&patient.patient_id, &request_id, withholding("genomic"));
    refused(
        client(&ctx).create_consent_directive(reused).await,
        &refusal(Code::FailedPrecondition, "REQUEST_ID_REUSED"),
        "CreateConsentDirective(the request_id with another directive)",
    )?;
    let listed = ok(
        client(&ctx)
            .list_consent_directives(ListConsentDirectivesRequest {
                patient: by_id(&patient.patient_id),
                ..Default::default()
            })
            .await,
        "ListConsentDirectives",
    )?;
    ensure_eq!(
        listed
            .directives
            .iter()
            .map(|d| d.directive_id.as_str())
            .collect::<Vec<_>>(),
        vec![made.directive_id.as_str()],
        "the listing"
    );

    let revoke = RevokeConsentDirectiveRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        directive_id: made.directive_id.clone(),
        etag: made.etag.clone(),
        reason: "The patient changed their mind".into(),
    };
    let stale = RevokeConsentDirectiveRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        etag: "stale".into(),
        ..revoke.clone()
    };
    refused(
        client(&ctx).revoke_consent_directive(stale).await,
        &refusal(Code::Aborted, "ETAG_MISMATCH"),
        "RevokeConsentDirective(a stale etag)",
    )?;
    let revoked = match client(&ctx).revoke_consent_directive(revoke.clone()).await {
        Ok(r) => r.into_inner(),
        Err(st) => return scope_or_fail(st, "RevokeConsentDirective", "user/Consent.u"),
    };
    let withdrawn = present(revoked.directive, "RevokeConsentDirective: no directive")?;
    ensure_eq!(
        (withdrawn.status, withdrawn.revocation_reason.as_str()),
        (
            ConsentDirectiveStatus::Inactive as i32,
            "The patient changed their mind"
        ),
        "the withdrawn directive"
    );
    disclosed_entry(
        &ctx,
        revoked.audit_index,
        &revoked.audit_entry_id,
        AuditAction::RevokeConsentDirective,
    )
    .await?;
    let retried = ok(
        client(&ctx).revoke_consent_directive(revoke.clone()).await,
        "RevokeConsentDirective(a retry)",
    )?;
    ensure_eq!(
        retried.directive.map(|d| d.version),
        Some(withdrawn.version),
        "a retry's directive version"
    );
    let table = vec![
        (
            "an inactive directive",
            RevokeConsentDirectiveRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                etag: withdrawn.etag.clone(),
                ..revoke
            },
            refusal(Code::FailedPrecondition, "CONSENT_DIRECTIVE_STATUS"),
        ),
        (
            "an unknown directive",
            RevokeConsentDirectiveRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                directive_id: uuid::Uuid::new_v4().to_string(),
                etag: "e".into(),
                reason: "r".into(),
            },
            refusal(Code::NotFound, "CONSENT_DIRECTIVE_NOT_FOUND"),
        ),
    ];
    refuse_each!(client(&ctx), revoke_consent_directive, table).await
}

pub(super) async fn validation(ctx: Ctx) -> TestResult {
    let patient = register(&ctx).await?;
    let id = patient.patient_id.as_str();
    let fresh = || uuid::Uuid::new_v4().to_string();
    let table: Vec<(&str, CreateConsentDirectiveRequest, Refusal)> = vec![
        (
            "a request_id that is not a UUID",
            create(id, "retry-1", withholding("hiv")),
            invalid("request_id"),
        ),
        (
            "a patient named by demographics",
            CreateConsentDirectiveRequest {
                patient: by_demographics(),
                ..create(id, &fresh(), withholding("hiv"))
            },
            invalid("patient.demographics"),
        ),
        (
            "no directive",
            CreateConsentDirectiveRequest {
                directive: None,
                ..create(id, &fresh(), withholding("hiv"))
            },
            invalid("directive"),
        ),
        (
            "no date_time",
            create(
                id,
                &fresh(),
                ConsentDirective {
                    date_time: None,
                    ..withholding("hiv")
                },
            ),
            invalid("directive.date_time"),
        ),
    ];
    refuse_each!(client(&ctx), create_consent_directive, table).await?;
    let revoke = RevokeConsentDirectiveRequest {
        request_id: fresh(),
        directive_id: fresh(),
        etag: "e".into(),
        reason: "r".into(),
    };
    let table: Vec<(&str, RevokeConsentDirectiveRequest, Refusal)> = vec![
        (
            "no reason",
            RevokeConsentDirectiveRequest {
                reason: " ".into(),
                ..revoke.clone()
            },
            invalid("reason"),
        ),
        (
            "no etag",
            RevokeConsentDirectiveRequest {
                etag: String::new(),
                ..revoke.clone()
            },
            invalid("etag"),
        ),
        (
            "a directive_id that is not a UUID",
            RevokeConsentDirectiveRequest {
                directive_id: "d-1".into(),
                ..revoke
            },
            invalid("directive_id"),
        ),
    ];
    refuse_each!(client(&ctx), revoke_consent_directive, table).await
}
