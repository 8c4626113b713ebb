//! Identity providers from the issuers file: NHS CIS2 staff tokens and NHS login patient tokens
//! (each from its own local JWKS server, shaped as the provider issues them), client credentials
//! from a JWKS file, next to the single issuer configured by environment as before.

use carerecord_platform::testing::TestDatabase;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::support::*;

const CIS2: &str = "https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/oidc";
const CIS2_CLIENT: &str = "999999999999.apps.national";
const NHS_LOGIN: &str = "https://auth.sandpit.signin.nhs.uk";
const NHS_LOGIN_CLIENT: &str = "carerecord-patient-app";
const SYSTEMS: &str = "https://auth.ics.example";

/// The test issuer's RSA public key as a JWK, under another kid and algorithm.
fn rsa_jwk(kid: &str, alg: &str) -> Value {
    let set: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{KEYS_DIR}/jwks.json")).unwrap())
            .unwrap();
    let mut key = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    key["kid"] = kid.into();
    key["alg"] = alg.into();
    key
}

/// Serves `body` as the answer to every HTTP request on a loopback port: a provider's JWKS URL.
async fn jwks_server(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A CIS2 ID token of a clinician who selected their R8000 role at RR8 (and holds another).
fn cis2_claims() -> Value {
    json!({
        "iss": CIS2, "aud": CIS2_CLIENT, "azp": CIS2_CLIENT, "sub": "910000000001",
        "uid": "910000000001", "name": "Dr Ada Clinician", "given_name": "Ada", "family_name": "Clinician",
        "iat": now(), "auth_time": now(), "exp": now() + 300, "acr": "AAL3_ANY", "amr": ["SCAL"],
        "id_assurance_level": "3", "authentication_assurance_level": "3",
        "selected_roleid": "555254240100",
        "nhsid_nrbac_roles": [
            {"person_orgid": "555254239107", "person_roleid": "555254239108", "org_code": "X26",
             "role_name": "\"Admin & Clerical\":\"Admin & Clerical\":\"Receptionist Access Role\"",
             "role_code": "S8001:G8005:R8008"},
            {"person_orgid": "555254239107", "person_roleid": "555254240100", "org_code": "RR8",
             "role_name": "\"Clinical\":\"Clinical Provision\":\"Clinical Practitioner Access Role\"",
             "role_code": "S8000:G8000:R8000", "activity_codes": ["B0264", "B0360"]}
        ]
    })
}

/// An NHS login ID token of a fully verified (P9) person with `nhs_number`.
fn nhs_login_claims(nhs_number: &str, level: &str) -> Value {
    json!({
        "iss": NHS_LOGIN, "aud": NHS_LOGIN_CLIENT, "sub": "49f470a1-cc52-49b7-beba-0f9cec937c46",
        "iat": now(), "auth_time": now(), "exp": now() + 300, "jti": uuid(),
        "vot": "P9.Cp.Cd", "vtm": "https://auth.sandpit.signin.nhs.uk/trustmark/auth.sandpit.signin.nhs.uk",
        "identity_proofing_level": level, "nhs_number": nhs_number,
        "given_name": "Mona", "family_name": "Millar", "birthdate": "1968-02-12",
    })
}

fn cis2_token(claims: &Value) -> String {
    sign(claims, Algorithm::RS256, "cis2-key", "issuer_rsa.pem")
}

fn nhs_login_token(claims: &Value) -> String {
    sign(claims, Algorithm::RS512, "nhs-login-key", "issuer_rsa.pem")
}

/// Data access trusting CIS2 and NHS login (by JWKS URL) and a systems issuer (by JWKS file), as
/// well as the test issuer configured by environment.
async fn spawn(db_url: &str) -> (TestApp, tempfile::TempDir) {
    let cis2_jwks = jwks_server(json!({"keys": [rsa_jwk("cis2-key", "RS256")]}).to_string()).await;
    let login_jwks =
        jwks_server(json!({"keys": [rsa_jwk("nhs-login-key", "RS512")]}).to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{KEYS_DIR}/jwks.json"),
        dir.path().join("systems.json"),
    )
    .unwrap();
    let issuers = json!({"issuers": [
        {"name": "cis2", "issuer": CIS2, "audience": CIS2_CLIENT, "jwks_url": cis2_jwks,
         "claims": "cis2", "scopes": "user/*.rs patient/*.rs"},
        {"name": "nhs-login", "issuer": NHS_LOGIN, "audience": NHS_LOGIN_CLIENT, "jwks_url": login_jwks,
         "claims": "nhs_login", "scopes": "patient/*.rs patient/AuditEvent.r user/*.rs"},
        {"name": "systems", "issuer": SYSTEMS, "audience": "carerecord-access",
         "jwks_file": "systems.json", "claims": {"organisation": "ods_code"}}
    ]});
    let path = dir.path().join("issuers.json");
    std::fs::write(&path, issuers.to_string()).unwrap();
    let app = spawn_app_with(
        db_url,
        &[("CARERECORD_ACCESS_ISSUERS_FILE", path.display().to_string())],
    )
    .await;
    (app, dir)
}

/// The error of a read refused before it was audited: its reason.
fn unaudited_reason(status: &tonic::Status, code: Code) -> String {
    assert_eq!(status.code(), code, "{status:?}");
    let info = error_info(status);
    assert!(
        !info.metadata.contains_key("audit_entry_id"),
        "refused before anything was audited: {info:?}"
    );
    info.reason
}

#[tokio::test]
async fn cis2_nhs_login_and_client_credentials_tokens_name_their_callers() {
    for db in TestDatabase::each_backend().await {
        let (mut app, _dir) = spawn(&db.url).await;
        let p = app.fakes.patient_with_an_observation();
        let other = app.fakes.add_patient("9990000018", "Jones");

        // CIS2: the selected role at its organisation; the configured user/ scopes only.
        let staff = cis2_token(&cis2_claims());
        let page = app.read(read(&p, "TREAT"), &staff).await.unwrap();
        assert_eq!(page.records.len(), 1);
        let leaf = audit_leaf(&mut app, page.audit_index).await;
        let requester = leaf.requester.unwrap();
        assert_eq!(
            (
                requester.user_id.as_str(),
                requester.role_code.as_str(),
                requester.organisation_ods_code.as_str(),
                requester.display_name.as_str(),
                leaf.client_id.as_str()
            ),
            (
                "910000000001",
                "R8000",
                "RR8",
                "Dr Ada Clinician",
                CIS2_CLIENT
            )
        );

        // NHS login at P9: the patient its NHS number names, with patient/ scopes only.
        let patient = nhs_login_token(&nhs_login_claims("943 476 5919", "P9"));
        let own = app.read(read(&p, "PATRQT"), &patient).await.unwrap();
        assert_eq!(own.records.len(), 1);
        let leaf = audit_leaf(&mut app, own.audit_index).await;
        assert_eq!(leaf.client_id, "");
        assert_eq!(leaf.requester.unwrap().display_name, "Mona Millar");
        let status = app.refused_read(&other, "PATRQT", &patient).await;
        assert_eq!(error_info(&status).reason, "PATIENT_CONTEXT_MISMATCH");
        let status = app.refused_read(&p, "TREAT", &patient).await;
        assert_eq!(status.code(), Code::InvalidArgument);

        // Client credentials from the JWKS file, with a renamed organisation claim.
        let system = sign(
            &json!({"iss": SYSTEMS, "aud": "carerecord-access", "sub": "gp-system-1",
                    "client_id": "gp-system-1", "ods_code": "A81001", "scope": "system/*.rs",
                    "iat": now(), "exp": now() + 300}),
            Algorithm::ES256,
            "test-ec",
            "issuer_ec.pem",
        );
        let page = app.read(read(&p, "TREAT"), &system).await.unwrap();
        let leaf = audit_leaf(&mut app, page.audit_index).await;
        assert_eq!(leaf.requester.unwrap().organisation_ods_code, "A81001");

        // The issuer configured by environment still works.
        app.read(read(&p, "TREAT"), &token(&Claims::clinician("user/*.rs")))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn tokens_that_name_no_caller_are_refused_before_anything_is_looked_up() {
    for db in TestDatabase::each_backend().await {
        let (app, _dir) = spawn(&db.url).await;
        let p = app.fakes.patient_with_an_observation();
        // Two patients registered under one NHS number (another supplier's index might).
        app.fakes.add_patient("9990000026", "Twin");
        app.fakes.add_patient("9990000026", "Twin");

        // An issuer the deployment does not trust, though signed with a trusted key.
        let mut untrusted = cis2_claims();
        untrusted["iss"] = "https://am.example/not-trusted".into();
        let status = app.refused_read(&p, "TREAT", &cis2_token(&untrusted)).await;
        assert_eq!(
            unaudited_reason(&status, Code::Unauthenticated),
            "TOKEN_ISSUER_UNKNOWN"
        );
        assert_eq!(
            error_info(&status).metadata["issuer"],
            "https://am.example/not-trusted"
        );
        // A CIS2 token for NHS login's audience; CIS2 without a selected role, or selecting one
        // it does not hold.
        let mut for_nhs_login = cis2_claims();
        for_nhs_login["aud"] = NHS_LOGIN_CLIENT.into();
        let mut unselected = cis2_claims();
        unselected
            .as_object_mut()
            .unwrap()
            .remove("selected_roleid");
        let mut foreign = cis2_claims();
        foreign["selected_roleid"] = "123".into();
        for (claims, code, reason) in [
            (for_nhs_login, Code::Unauthenticated, "TOKEN_INVALID"),
            (unselected, Code::PermissionDenied, "ROLE_NOT_SELECTED"),
            (foreign, Code::PermissionDenied, "ROLE_NOT_SELECTED"),
        ] {
            let status = app.refused_read(&p, "TREAT", &cis2_token(&claims)).await;
            assert_eq!(unaudited_reason(&status, code), reason, "{claims}");
        }

        // The registered patient's NHS login token at an identity proofing level.
        let login = |level: &str| nhs_login_token(&nhs_login_claims("9434765919", level));
        // NHS login below P9.
        let status = app.refused_read(&p, "PATRQT", &login("P5")).await;
        assert_eq!(
            unaudited_reason(&status, Code::PermissionDenied),
            "IDENTITY_PROOFING_INSUFFICIENT"
        );
        let info = error_info(&status);
        assert_eq!(
            (
                info.metadata["identity_proofing_level"].as_str(),
                info.metadata["required_level"].as_str()
            ),
            ("P5", "P9")
        );
        // NHS numbers naming no patient, two, or none at all.
        for (nhs_number, cause) in [
            ("9990000034", "not_registered"),
            ("9990000026", "ambiguous"),
            ("", "nhs_number_missing"),
            ("12345", "nhs_number_invalid"),
        ] {
            let token = nhs_login_token(&nhs_login_claims(nhs_number, "P9"));
            let status = app.refused_read(&p, "PATRQT", &token).await;
            assert_eq!(
                unaudited_reason(&status, Code::PermissionDenied),
                "PATIENT_CONTEXT_UNRESOLVED",
                "{nhs_number}"
            );
            assert_eq!(error_info(&status).metadata["cause"], cause);
        }
        // With identity down, an NHS login token cannot be placed: UNAVAILABLE, retryable.
        app.fakes
            .identity_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let status = app.refused_read(&p, "PATRQT", &login("P9")).await;
        assert_eq!(
            unaudited_reason(&status, Code::Unavailable),
            "DEPENDENCY_UNAVAILABLE"
        );
    }
}
