//! The handlers, one module per kind of interaction, and what they share: the caller's token
//! passed through, the purpose of use, and links under the public base URL.

pub mod bulk;
pub mod clinical;
pub mod patients;
mod search;
pub mod write;

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::json;

use crate::Gateway;
use crate::error::{Error, fhir_json};

/// The request header naming the legal basis relied on (lower-kebab, e.g. `section-251-support`),
/// which FHIR REST has no place for either. Unset: not stated.
pub const LEGAL_BASIS_HEADER: &str = "x-legal-basis";

/// The request header naming the purpose of use (an HL7 ActReason code, e.g. `TREAT`), which FHIR
/// REST has no place for. Unset: `PATRQT` for a patient-facing token (only `patient/` scopes),
/// `TREAT` otherwise.
pub const PURPOSE_HEADER: &str = "x-purpose-of-use";

impl Gateway {
    /// A data access request carrying the caller's `Authorization`, the caller's trace context
    /// and the per-call deadline.
    pub(crate) fn call<T>(&self, headers: &HeaderMap, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.config.access.timeout);
        // The caller's `traceparent` goes on as sent; where this process traces, the client's
        // interceptor replaces it with this request's own span, a child in the same trace.
        for name in ["authorization", "traceparent", "tracestate"] {
            if let Some(value) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                request.metadata_mut().insert(name, value);
            }
        }
        request
    }

    /// The public base URL links are written under.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.config.base_url {
            return base.clone();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    pub(crate) fn access(&self) -> crate::AccessClient {
        self.access.clone()
    }
}

/// The purpose of use for this request (see [`PURPOSE_HEADER`]).
pub(crate) fn purpose(headers: &HeaderMap) -> Result<String, Error> {
    if let Some(value) = headers.get(PURPOSE_HEADER) {
        let value = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| {
                Error::invalid(
                    "X-Purpose-Of-Use must be an HL7 ActReason code such as TREAT",
                    "X-Purpose-Of-Use",
                )
            })?;
        return Ok(value.to_owned());
    }
    Ok(if patient_facing(headers) {
        "PATRQT"
    } else {
        "TREAT"
    }
    .to_owned())
}

/// The id of a resource named in the URL: carerecord's ids are UUIDs, so anything else names
/// nothing here (404, as for an id that does not exist).
pub(crate) fn resource_id(resource_type: &str, id: &str) -> Result<String, Error> {
    carerecord_platform::request::Id::parse(id)
        .map(carerecord_platform::request::Id::into_string)
        .ok_or_else(|| Error::NotFound(format!("no {resource_type} with that id")))
}

/// The legal basis for this request (see [`LEGAL_BASIS_HEADER`]), as the contract's enum value.
pub(crate) fn legal_basis(headers: &HeaderMap) -> Result<i32, Error> {
    use carerecord_contracts::access::v1::LegalBasis;
    let Some(value) = headers.get(LEGAL_BASIS_HEADER) else {
        return Ok(LegalBasis::Unspecified as i32);
    };
    let basis = match value.to_str().unwrap_or("") {
        "direct-care" => LegalBasis::DirectCare,
        "explicit-consent" => LegalBasis::ExplicitConsent,
        "vital-interests" => LegalBasis::VitalInterests,
        "subject-access" => LegalBasis::SubjectAccess,
        "section-251-support" => LegalBasis::Section251Support,
        "legal-obligation" => LegalBasis::LegalObligation,
        _ => {
            return Err(Error::invalid(
                "X-Legal-Basis is one of direct-care, explicit-consent, vital-interests, subject-access, section-251-support, legal-obligation",
                "X-Legal-Basis",
            ));
        }
    };
    Ok(basis as i32)
}

/// Whether the bearer token's scopes are all `patient/` scopes. The token is only looked at here,
/// never trusted: data access verifies it.
fn patient_facing(headers: &HeaderMap) -> bool {
    let scopes = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| token.split('.').nth(1))
        .and_then(|claims| URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok())
        .and_then(|claims| serde_json::from_slice::<serde_json::Value>(&claims).ok())
        .and_then(|claims| claims.get("scope")?.as_str().map(str::to_owned));
    scopes.is_some_and(|s| {
        let mut scopes = s.split_whitespace().peekable();
        scopes.peek().is_some() && scopes.all(|scope| scope.starts_with("patient/"))
    })
}

/// `GET /metadata`.
pub async fn capabilities(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let base = gateway.base_url(&headers);
    fhir_json(
        StatusCode::OK,
        &crate::capability::capability_statement(&base, gateway.config.smart.as_ref()),
    )
}

/// `GET /.well-known/smart-configuration`: SMART App Launch discovery.
pub async fn smart_configuration(State(gateway): State<Gateway>) -> Result<Response, Error> {
    let smart = gateway.config.smart.as_ref().ok_or_else(|| {
        Error::NotSupported(
            "SMART discovery is not configured (CARERECORD_FHIR_SMART_ISSUER)".into(),
        )
    })?;
    let body = json!({
        "issuer": smart.issuer,
        "authorization_endpoint": smart.authorization_endpoint,
        "token_endpoint": smart.token_endpoint,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": [
            "patient/*.rs", "patient/*.c", "user/*.cruds", "system/*.rs", "system/*.c",
            "user/AuditEvent.r", "openid", "fhirUser", "launch/patient",
        ],
        "response_types_supported": ["code"],
        "capabilities": [
            "launch-standalone", "client-public", "client-confidential-asymmetric",
            "context-standalone-patient", "permission-patient", "permission-user", "permission-v2",
        ],
    });
    let mut response =
        axum::response::IntoResponse::into_response((StatusCode::OK, body.to_string()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Anything the route table does not serve.
pub async fn not_supported(uri: Uri) -> Error {
    Error::NotSupported(format!(
        "{} is not served here; GET /metadata lists what is",
        carerecord_platform::status_policy::bounded(uri.path(), 128)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(claims: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn purpose_comes_from_the_header_or_the_kind_of_token() {
        assert_eq!(purpose(&HeaderMap::new()).unwrap(), "TREAT");
        assert_eq!(
            purpose(&with_token(
                r#"{"scope":"patient/*.rs patient/Observation.c"}"#
            ))
            .unwrap(),
            "PATRQT"
        );
        assert_eq!(
            purpose(&with_token(r#"{"scope":"patient/*.rs user/*.rs"}"#)).unwrap(),
            "TREAT"
        );
        let mut headers = HeaderMap::new();
        headers.insert(PURPOSE_HEADER, "HRESCH".parse().unwrap());
        assert_eq!(purpose(&headers).unwrap(), "HRESCH");
        headers.insert(PURPOSE_HEADER, "treat; drop".parse().unwrap());
        assert!(purpose(&headers).is_err());
    }

    #[test]
    fn the_legal_basis_is_named_in_kebab_case() {
        use carerecord_contracts::access::v1::LegalBasis;
        let mut headers = HeaderMap::new();
        assert_eq!(
            legal_basis(&headers).unwrap(),
            LegalBasis::Unspecified as i32
        );
        headers.insert(LEGAL_BASIS_HEADER, "section-251-support".parse().unwrap());
        assert_eq!(
            legal_basis(&headers).unwrap(),
            LegalBasis::Section251Support as i32
        );
        headers.insert(LEGAL_BASIS_HEADER, "SECTION_251".parse().unwrap());
        assert!(legal_basis(&headers).is_err());
    }
}
