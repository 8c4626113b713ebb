//! Authentication: missing, malformed, altered and unsigned tokens, and missing scopes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Code;

use super::support::{Client, by_id, find, has_reason, refusal, unscoped, with_auth, with_header};
use crate::harness::{Auth, Ctx, Fail, TestResult, ensure};
use crate::refusal::refused;

/// Looks up an unknown patient with `client`, requiring `code` with ErrorInfo `reason`; returns
/// the ErrorInfo metadata.
async fn refused_lookup(
    mut client: Client,
    code: Code,
    reason: &str,
    call: &str,
) -> TestResult<std::collections::HashMap<String, String>> {
    let unknown = uuid::Uuid::new_v4().to_string();
    let result = client.find_patient(find(by_id(&unknown), "TREAT")).await;
    let status = refused(result, &refusal(code, reason), call)?;
    has_reason(&status, reason)
}

pub(super) async fn auth_missing(ctx: Ctx) -> TestResult {
    let c = with_auth(&ctx, Auth(None));
    refused_lookup(
        c,
        Code::Unauthenticated,
        "TOKEN_MISSING",
        "FindPatient(no token)",
    )
    .await?;
    Ok(())
}

pub(super) async fn auth_malformed(ctx: Ctx) -> TestResult {
    let c = with_header(&ctx, "Bearer not-a-jwt")?;
    let call = "FindPatient(malformed token)";
    refused_lookup(c, Code::Unauthenticated, "TOKEN_INVALID", call).await?;
    Ok(())
}

fn token_parts(ctx: &Ctx) -> TestResult<(String, String, String)> {
    let token = ctx.options.token.clone().unwrap_or_default();
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [h, p, s] => Ok(((*h).to_owned(), (*p).to_owned(), (*s).to_owned())),
        _ => Err(Fail::Skipped(
            "the given token is not a compact JWS (three parts)".into(),
        )),
    }
}

pub(super) async fn auth_tampered(ctx: Ctx) -> TestResult {
    let (h, p, s) = token_parts(&ctx)?;
    let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap_or_default();
    if let Some(b) = sig.first_mut() {
        *b ^= 0x01;
    }
    let forged = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let c = with_header(&ctx, &format!("Bearer {forged}"))?;
    let call = "FindPatient(altered signature)";
    refused_lookup(c, Code::Unauthenticated, "TOKEN_INVALID", call).await?;
    Ok(())
}

pub(super) async fn auth_alg_none(ctx: Ctx) -> TestResult {
    let (_, p, _) = token_parts(&ctx)?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let c = with_header(&ctx, &format!("Bearer {header}.{p}."))?;
    refused_lookup(
        c,
        Code::Unauthenticated,
        "TOKEN_INVALID",
        "FindPatient(alg none)",
    )
    .await?;
    Ok(())
}

pub(super) async fn auth_scope_missing(ctx: Ctx) -> TestResult {
    let c = unscoped(&ctx)?;
    let call = "FindPatient(token without Patient.r)";
    let metadata = refused_lookup(c, Code::PermissionDenied, "SCOPE_MISSING", call).await?;
    ensure!(
        metadata
            .get("required_scope")
            .is_some_and(|s| !s.is_empty()),
        "ErrorInfo metadata required_scope must name a scope, got {metadata:?}"
    );
    Ok(())
}
