//! The gateway's one error type, and how every error becomes an OperationOutcome with the HTTP
//! status FHIR REST expects.
//!
//! Errors from data access keep its reason: the `ErrorInfo` reason is the OperationOutcome issue's
//! `details.coding` (system [`REASON_SYSTEM`]), its field violations become one issue each with the
//! field as `expression`, and its RetryInfo becomes `Retry-After`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

/// The code system of carerecord's error reasons in OperationOutcome details.
pub const REASON_SYSTEM: &str = "https://carerecord.nhs.example/fhir/CodeSystem/error-reason";

/// FHIR's media type for JSON.
pub const FHIR_MEDIA_TYPE: &str = "application/fhir+json";
/// The `Content-Type` of every FHIR JSON response.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not one the gateway understands (a bad parameter, body or header).
    #[error("{message}")]
    Invalid {
        message: String,
        /// Where the problem is, as a FHIRPath or parameter name.
        expression: Option<String>,
        status: StatusCode,
    },
    /// No such resource type, route or interaction here.
    #[error("{0}")]
    NotSupported(String),
    /// No such resource (of the type the URL names).
    #[error("{0}")]
    NotFound(String),
    /// Data access answered with an error.
    #[error("data access: {}", .0.message())]
    Upstream(tonic::Status),
}

impl Error {
    pub fn invalid(message: impl Into<String>, expression: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
            expression: Some(expression.into()),
            status: StatusCode::BAD_REQUEST,
        }
    }

    pub fn unprocessable(message: impl Into<String>, expression: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
            expression: Some(expression.into()),
            status: StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn precondition(message: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
            expression: None,
            status: StatusCode::PRECONDITION_FAILED,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::Upstream(status)
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    pub reason: Option<String>,
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: "error",
            code,
            diagnostics: diagnostics.into(),
            reason: None,
            expression: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(reason) = &self.reason {
            issue["details"] = json!({"coding": [{"system": REASON_SYSTEM, "code": reason}]});
        }
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// An OperationOutcome resource holding `issues`.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// The HTTP status, issues and `Retry-After` seconds of a data access error.
pub fn from_status(status: &tonic::Status) -> (StatusCode, Vec<Issue>, Option<u64>) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|i| i.reason.clone());
    let retry_after = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .map(|d| d.as_secs().max(1));
    // Violations of the content of a write are the resource's own: FHIR's 422, not a bad request.
    let about_content = details.bad_request().is_some_and(|bad| {
        !bad.field_violations.is_empty()
            && bad
                .field_violations
                .iter()
                .all(|v| v.field.starts_with("content."))
    });
    let (http, code) = match (status.code(), reason.as_deref()) {
        (Code::InvalidArgument, _) if about_content => {
            (StatusCode::UNPROCESSABLE_ENTITY, "processing")
        }
        (Code::InvalidArgument, _) => (StatusCode::BAD_REQUEST, "invalid"),
        (Code::Unauthenticated, _) => (StatusCode::UNAUTHORIZED, "login"),
        (Code::PermissionDenied, _) => (StatusCode::FORBIDDEN, "forbidden"),
        (Code::NotFound, _) => (StatusCode::NOT_FOUND, "not-found"),
        (Code::Aborted, Some("ETAG_MISMATCH")) => (StatusCode::PRECONDITION_FAILED, "conflict"),
        (Code::Aborted | Code::AlreadyExists, _) => (StatusCode::CONFLICT, "conflict"),
        (Code::FailedPrecondition, Some("PATIENT_MATCH_AMBIGUOUS")) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "multiple-matches")
        }
        (Code::FailedPrecondition, _) => (StatusCode::CONFLICT, "business-rule"),
        (Code::OutOfRange, _) => (StatusCode::BAD_REQUEST, "invalid"),
        (Code::ResourceExhausted, Some("MESSAGE_TOO_LARGE")) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too-long")
        }
        (Code::ResourceExhausted, _) => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
        (Code::Unavailable, _) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
        (Code::DeadlineExceeded, _) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        (Code::Cancelled, _) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
        (Code::Unimplemented, _) => (StatusCode::NOT_IMPLEMENTED, "not-supported"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
    };
    let mut issues = Vec::new();
    if let Some(bad) = details.bad_request() {
        for violation in &bad.field_violations {
            issues.push(Issue {
                severity: "error",
                code,
                diagnostics: format!("{}: {}", violation.field, violation.description),
                reason: reason.clone(),
                expression: (!violation.field.is_empty()).then(|| violation.field.clone()),
            });
        }
    }
    if issues.is_empty() {
        let mut issue = Issue::error(code, status.message());
        issue.reason = reason;
        issues.push(issue);
    }
    (http, issues, retry_after)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, issues, retry_after) = match &self {
            Error::Invalid {
                message,
                expression,
                status,
            } => {
                let code = match *status {
                    StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => "conflict",
                    StatusCode::UNPROCESSABLE_ENTITY => "processing",
                    StatusCode::PRECONDITION_REQUIRED => "required",
                    StatusCode::PAYLOAD_TOO_LARGE => "too-long",
                    StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        "not-supported"
                    }
                    StatusCode::NOT_FOUND => "not-found",
                    s if s.is_server_error() => "exception",
                    _ => "invalid",
                };
                let mut issue = Issue::error(code, message.clone());
                issue.expression = expression.clone();
                (*status, vec![issue], None)
            }
            Error::NotSupported(message) => (
                StatusCode::NOT_FOUND,
                vec![Issue::error("not-supported", message.clone())],
                None,
            ),
            Error::NotFound(message) => (
                StatusCode::NOT_FOUND,
                vec![Issue::error("not-found", message.clone())],
                None,
            ),
            Error::Upstream(status) => from_status(status),
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut response = fhir_json(status, &operation_outcome(&issues));
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"carerecord\""),
            );
        }
        response
    }
}

/// A FHIR JSON response.
pub fn fhir_json(status: StatusCode, body: &Value) -> Response {
    fhir_json_text(status, body.to_string().into_bytes())
}

/// A FHIR JSON response of JSON text already written.
pub fn fhir_json_text(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn status(code: Code, reason: &str) -> tonic::Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, "carerecord.access.v1", []);
        tonic::Status::with_error_details(code, "message", details)
    }

    #[test]
    fn statuses_map_to_http_and_issue_codes() {
        for (code, reason, http, issue) in [
            (Code::InvalidArgument, "INVALID_REQUEST", 400, "invalid"),
            (Code::Unauthenticated, "TOKEN_EXPIRED", 401, "login"),
            (Code::PermissionDenied, "CONSENT_DENIED", 403, "forbidden"),
            (Code::NotFound, "PATIENT_NOT_FOUND", 404, "not-found"),
            (Code::Aborted, "ETAG_MISMATCH", 412, "conflict"),
            (
                Code::FailedPrecondition,
                "REQUEST_ID_REUSED",
                409,
                "business-rule",
            ),
            (
                Code::FailedPrecondition,
                "PATIENT_MATCH_AMBIGUOUS",
                422,
                "multiple-matches",
            ),
            (Code::ResourceExhausted, "RATE_LIMITED", 429, "throttled"),
            (
                Code::ResourceExhausted,
                "MESSAGE_TOO_LARGE",
                413,
                "too-long",
            ),
            (
                Code::Unavailable,
                "DEPENDENCY_UNAVAILABLE",
                503,
                "transient",
            ),
            (Code::Internal, "INTERNAL", 500, "exception"),
        ] {
            let (got, issues, _) = from_status(&status(code, reason));
            assert_eq!(got.as_u16(), http, "{code:?}");
            assert_eq!(issues[0].code, issue, "{code:?}");
            assert_eq!(issues[0].reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn field_violations_become_issues_with_expressions() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("content.payload", "not JSON");
        details.add_bad_request_violation("patient.nhs_number", "fails the modulus-11 check");
        details.set_error_info("INVALID_REQUEST", "carerecord.access.v1", []);
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad", details);
        let (http, issues, _) = from_status(&status);
        assert_eq!(http, StatusCode::BAD_REQUEST);
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[1].expression.as_deref(), Some("patient.nhs_number"));
        let outcome = operation_outcome(&issues);
        assert_eq!(
            outcome["issue"][0]["details"]["coding"][0]["code"],
            "INVALID_REQUEST"
        );
    }

    #[test]
    fn a_refused_resource_is_unprocessable() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("content.payload", "subject names another patient");
        details.set_error_info("INVALID_REQUEST", "carerecord.access.v1", []);
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad", details);
        let (http, issues, _) = from_status(&status);
        assert_eq!(http, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(issues[0].expression.as_deref(), Some("content.payload"));
    }

    #[test]
    fn retry_info_becomes_retry_after() {
        let mut details = ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(3)));
        details.set_error_info("RATE_LIMITED", "carerecord.access.v1", []);
        let status =
            tonic::Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        let response = Error::Upstream(status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
