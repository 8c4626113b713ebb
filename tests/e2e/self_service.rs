//! A patient's own consent choices through the front door, on both backends: listing their
//! directives, withholding a data class from one organisation (which the next read by that
//! organisation honours), withdrawing it (idempotent by request_id), their national data opt-out
//! status; and the refusals: another patient's directives or opt-out, a scope missing, a
//! request_id reused.

use carerecord_contracts::access::v1 as api;
use carerecord_e2e::{
    Overrides, Platform, authed, by_id, patient_token, read_request, token, uuid,
};
use tonic::Code;
use tonic_types::StatusExt;

const PATIENT_SCOPES: &str = "patient/Consent.cru patient/AuditEvent.r";

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Withholding `data_class` from `organisation`: a PERMIT directive with one provision.
fn withholding(data_class: &str, organisation: &str) -> api::ConsentDirective {
    api::ConsentDirective {
        decision: api::ConsentDirectiveDecision::Permit as i32,
        date_time: Some(std::time::SystemTime::now().into()),
        provisions: vec![api::ConsentProvision {
            actors: vec![api::ConsentActor {
                organisation_ods_code: organisation.into(),
                ..Default::default()
            }],
            data_classes: vec![data_class.into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// ListConsentDirectives of the patient with `token`.
async fn list_directives(
    platform: &Platform,
    patient_id: &str,
    token: &str,
) -> Result<api::ListConsentDirectivesResponse, tonic::Status> {
    let request = api::ListConsentDirectivesRequest {
        patient: by_id(patient_id),
        ..Default::default()
    };
    let mut access = platform.access_client().await;
    let listed = access
        .list_consent_directives(authed(request, token))
        .await?;
    Ok(listed.into_inner())
}

async fn read_count(platform: &Platform, patient_id: &str, clinician: &str) -> (usize, i64) {
    let page = platform
        .access_client()
        .await
        .read_patient_record(authed(read_request(by_id(patient_id), "TREAT"), clinician))
        .await
        .expect("clinician reads")
        .into_inner();
    let withheld = page
        .disclosure
        .map(|d| d.withheld_count)
        .unwrap_or_default();
    (page.records.len(), withheld)
}

async fn opt_out(platform: &Platform, patient_id: &str, token: &str) -> i32 {
    platform
        .access_client()
        .await
        .get_national_data_opt_out(authed(
            api::GetNationalDataOptOutRequest {
                patient: by_id(patient_id),
            },
            token,
        ))
        .await
        .expect("opt-out status")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_manages_their_own_consent_directives() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, _) = platform.register_patient("Self", "Service").await;
        let (other_id, _) = platform.register_patient("Other", "Patient").await;
        platform.add_record(&patient_id, &[]).await;
        platform.add_record(&patient_id, &["mental-health"]).await;
        let clinician = token("R8000", "user/*.rs");
        assert_eq!(
            read_count(&platform, &patient_id, &clinician).await,
            (2, 0),
            "{backend:?}"
        );

        let mine = patient_token(&patient_id, PATIENT_SCOPES);
        let mut access = platform.access_client().await;
        let listed = list_directives(&platform, &patient_id, &mine)
            .await
            .expect("list");
        assert!(listed.directives.is_empty(), "{backend:?}");
        assert!(!listed.audit_entry_id.is_empty());

        // Withholding mental-health data from RR8 (the clinician's organisation).
        let request_id = uuid();
        let create = |request_id: String, directive| api::CreateConsentDirectiveRequest {
            request_id,
            patient: by_id(&patient_id),
            directive: Some(directive),
        };
        let withheld = withholding("mental-health", "RR8");
        let created = access
            .create_consent_directive(authed(create(request_id.clone(), withheld.clone()), &mine))
            .await
            .expect("create")
            .into_inner();
        let directive = created.directive.expect("directive");
        assert_eq!(directive.status, api::ConsentDirectiveStatus::Active as i32);
        assert_eq!(
            directive.grantor_role,
            api::ConsentGrantorRole::Patient as i32
        );
        assert_eq!(
            directive
                .recorded_by
                .as_ref()
                .map(|r| r.organisation_ods_code.as_str()),
            Some("PATIENT")
        );
        assert_eq!(
            read_count(&platform, &patient_id, &clinician).await,
            (1, 1),
            "{backend:?}"
        );
        // A retry gets the same directive; the same request_id for another directive is refused.
        let again = access
            .create_consent_directive(authed(create(request_id.clone(), withheld.clone()), &mine))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(
            again.directive.expect("directive").directive_id,
            directive.directive_id
        );
        let reused = access
            .create_consent_directive(authed(
                create(request_id.clone(), withholding("hiv", "RR8")),
                &mine,
            ))
            .await
            .expect_err("reused request_id");
        assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
        assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
        // An invalid directive is refused naming the field.
        let invalid = access
            .create_consent_directive(authed(create(uuid(), withholding("gossip", "RR8")), &mine))
            .await
            .expect_err("unknown data class");
        assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
        let fields: Vec<String> = invalid
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
            .unwrap_or_default();
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("directive.provisions[0].data_classes")),
            "{fields:?}"
        );

        // Another patient's directives and opt-out are refused; so is a token without the scope.
        let refused = list_directives(&platform, &other_id, &mine)
            .await
            .expect_err("another patient");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(reason(&refused), "PATIENT_CONTEXT_MISMATCH");
        let refused = access
            .create_consent_directive(authed(
                create(uuid(), withholding("hiv", "RR8")),
                &patient_token(&other_id, PATIENT_SCOPES),
            ))
            .await
            .expect_err("another patient's token");
        assert_eq!(reason(&refused), "PATIENT_CONTEXT_MISMATCH");
        let refused = access
            .get_national_data_opt_out(authed(
                api::GetNationalDataOptOutRequest {
                    patient: by_id(&patient_id),
                },
                &patient_token(&patient_id, "patient/AuditEvent.r"),
            ))
            .await
            .expect_err("no Consent scope");
        assert_eq!(reason(&refused), "SCOPE_MISSING");

        // The opt-out: unknown until checked, then as the check says.
        assert_eq!(
            opt_out(&platform, &patient_id, &mine).await,
            api::NationalDataOptOutStatus::Unknown as i32
        );
        platform
            .record_opt_out_check(std::slice::from_ref(&patient_id), &[])
            .await;
        assert_eq!(
            opt_out(&platform, &patient_id, &mine).await,
            api::NationalDataOptOutStatus::OptedOut as i32
        );

        // Withdrawing it: the clinician sees everything again; a retry answers the same.
        let listed = list_directives(&platform, &patient_id, &mine)
            .await
            .expect("list");
        assert_eq!(listed.directives.len(), 1);
        let revoke = api::RevokeConsentDirectiveRequest {
            request_id: uuid(),
            directive_id: directive.directive_id.clone(),
            etag: listed.directives[0].etag.clone(),
            reason: "I changed my mind".into(),
        };
        // A withdrawal with `token`: the directive withdrawn, or the refusal.
        let withdraw = async |request: api::RevokeConsentDirectiveRequest, token: &str| {
            let mut access = platform.access_client().await;
            let response = access
                .revoke_consent_directive(authed(request, token))
                .await?;
            Ok::<_, tonic::Status>(response.into_inner().directive.expect("directive"))
        };
        let someone_else = patient_token(&other_id, PATIENT_SCOPES);
        let refused = withdraw(revoke.clone(), &someone_else)
            .await
            .expect_err("another patient's directive");
        assert_eq!(reason(&refused), "PATIENT_CONTEXT_MISMATCH");
        let revoked = withdraw(revoke.clone(), &mine).await.expect("revoke");
        assert_eq!(revoked.status, api::ConsentDirectiveStatus::Inactive as i32);
        assert_eq!(revoked.revocation_reason, "I changed my mind");
        let retried = withdraw(revoke.clone(), &mine)
            .await
            .expect("retry of a withdrawal");
        assert_eq!(retried.version, revoked.version);
        let other_reason = api::RevokeConsentDirectiveRequest {
            reason: "Something else".into(),
            ..revoke.clone()
        };
        let reused = withdraw(other_reason, &mine)
            .await
            .expect_err("reused request_id");
        assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
        let again = api::RevokeConsentDirectiveRequest {
            request_id: uuid(),
            etag: revoked.etag.clone(),
            ..revoke
        };
        let inactive = withdraw(again, &mine).await.expect_err("already withdrawn");
        assert_eq!(inactive.code(), Code::FailedPrecondition);
        assert_eq!(reason(&inactive), "CONSENT_DIRECTIVE_STATUS");
        assert_eq!(
            read_count(&platform, &patient_id, &clinician).await,
            (2, 0),
            "{backend:?}"
        );
    }
}
