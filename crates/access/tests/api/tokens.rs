//! Authentication and scopes: missing, expired, forged and unscoped tokens; development tokens.

use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::TestDatabase;
use jsonwebtoken::Algorithm;
use tonic::{Code, Request};

use crate::support::*;

fn read(patient_id: &str, types: &[&str]) -> api::ReadPatientRecordRequest {
    api::ReadPatientRecordRequest {
        patient: patient_ref(patient_id),
        purpose_of_use: "TREAT".into(),
        resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn missing_expired_forged_and_unscoped_tokens_are_refused() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let p = app.fakes.patient_with_an_observation();

        let status = app
            .client
            .read_patient_record(Request::new(read(&p, &[])))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(error_info(&status).reason, "TOKEN_MISSING");

        let mut expired = Claims::clinician("user/*.rs");
        expired.exp_offset = -3600;
        let status = app.read(read(&p, &[]), &token(&expired)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(error_info(&status).reason, "TOKEN_EXPIRED");

        // Within the 60 s of allowed clock skew, a just-expired token still passes.
        let mut skewed = Claims::clinician("user/*.rs");
        skewed.exp_offset = -30;
        app.read(read(&p, &[]), &token(&skewed)).await.unwrap();

        // Signed with a key the deployment does not trust, under a trusted kid.
        let forged = token_signed(
            &Claims::clinician("user/*.rs"),
            "forged_ec.pem",
            "test-ec",
            Algorithm::ES256,
        );
        let status = app.read(read(&p, &[]), &forged).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(error_info(&status).reason, "TOKEN_INVALID");

        // The issuer's EC key is trusted too.
        let ec = token_signed(
            &Claims::clinician("user/*.rs"),
            "issuer_ec.pem",
            "test-ec",
            Algorithm::ES256,
        );
        app.read(read(&p, &[]), &ec).await.unwrap();

        // Garbage and a tampered payload.
        let status = app.read(read(&p, &[]), "not.a.jwt").await.unwrap_err();
        assert_eq!(error_info(&status).reason, "TOKEN_INVALID");
        let good = token(&Claims::clinician("user/Observation.rs"));
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = token(&Claims::clinician("user/*.rs"))
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        let status = app.read(read(&p, &[]), &parts.join(".")).await.unwrap_err();
        assert_eq!(error_info(&status).reason, "TOKEN_INVALID");

        // Valid, but not for Conditions: PERMISSION_DENIED naming a scope that would do, audited.
        let observations_only = token(&Claims::clinician("user/Observation.rs"));
        let status = app
            .read(read(&p, &["Condition"]), &observations_only)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = error_info(&status);
        assert_eq!(info.reason, "SCOPE_MISSING");
        assert_eq!(info.metadata["required_scope"], "user/Condition.r");
        let leaf = audit_leaf(&mut app, audit_index(&status)).await;
        assert_eq!(leaf.outcome, api::AuditOutcome::Refused as i32);
        // With no types asked for, the token's own types are read.
        let response = app.read(read(&p, &[]), &observations_only).await.unwrap();
        assert_eq!(response.records.len(), 1);
        // A token with no resource scopes at all.
        let none = token(&Claims::clinician("openid profile"));
        let status = app.read(read(&p, &[]), &none).await.unwrap_err();
        assert_eq!(error_info(&status).reason, "SCOPE_MISSING");

        // Development tokens are accepted because this deployment enables them.
        let dev = carerecord_access::dev_token::mint(&carerecord_access::dev_token::DevToken {
            subject: "dev-user".into(),
            organisation_ods_code: "RR8".into(),
            role_code: "R8000".into(),
            scope: "user/*.rs".into(),
            audience: AUDIENCE.into(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .unwrap();
        app.read(read(&p, &[]), &dev).await.unwrap();
    }
}
