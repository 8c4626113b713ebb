//! gRPC statuses with `google.rpc` error details, shared by every service's error mapping.
//!
//! Each service keeps its own `thiserror` enum and maps it to a [`tonic::Status`] in one place
//! with these builders, so every client sees the same shapes: `BadRequest` field violations for
//! invalid input, `ResourceInfo` for missing or conflicting resources, `PreconditionFailure` for
//! state conflicts, and an `ErrorInfo` with an UPPER_SNAKE reason on all of them (AIP-193).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every carerecord error.
pub const DOMAIN: &str = "carerecord";

/// Collects field violations while validating a request; empty means valid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn new() -> Self {
        Violations::default()
    }

    /// Records that `field` (a snake_case path such as `patient.names[0].family`) is invalid.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Records a violation when `condition` is false.
    pub fn check(
        &mut self,
        condition: bool,
        field: impl Into<String>,
        description: impl Into<String>,
    ) {
        if !condition {
            self.add(field, description);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// `Ok(())` when nothing was recorded, else the violations, for `?` into the crate's error
    /// (every crate's error converts from [`Violations`]; a [`Status`] does too).
    pub fn into_result(self) -> Result<(), Violations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<Violations> for Status {
    fn from(violations: Violations) -> Status {
        invalid_argument(&violations)
    }
}

/// INVALID_ARGUMENT with a `BadRequest` listing each violation and an `ErrorInfo` of reason
/// `INVALID_ARGUMENT`.
pub fn invalid_argument(violations: &Violations) -> Status {
    let message = match violations.0.as_slice() {
        [] => "invalid request".to_owned(),
        [(field, description)] => format!("{field}: {description}"),
        [(field, description), rest @ ..] => {
            format!("{field}: {description} (and {} more)", rest.len())
        }
    };
    let mut details = ErrorDetails::new();
    details.set_bad_request(
        violations
            .0
            .iter()
            .map(|(f, d)| FieldViolation::new(f, d))
            .collect::<Vec<_>>(),
    );
    details.set_error_info("INVALID_ARGUMENT", DOMAIN, []);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INVALID_ARGUMENT for a single field.
pub fn invalid_field(field: &str, description: &str) -> Status {
    let mut violations = Violations::new();
    violations.add(field, description);
    invalid_argument(&violations)
}

/// NOT_FOUND naming the missing resource in a `ResourceInfo`.
pub fn not_found(resource_type: &str, resource_name: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info(
        resource_type,
        resource_name,
        "",
        format!("no {resource_type} {resource_name}"),
    );
    details.set_error_info(
        "NOT_FOUND",
        DOMAIN,
        [("resource_type".to_owned(), resource_type.to_owned())],
    );
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {resource_name} not found"),
        details,
    )
}

/// ALREADY_EXISTS naming the resource that holds the conflicting value.
pub fn already_exists(
    reason: &str,
    resource_type: &str,
    holder: &str,
    message: impl Into<String>,
) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.set_resource_info(resource_type, holder, "", message.clone());
    details.set_error_info(reason, DOMAIN, [("holder".to_owned(), holder.to_owned())]);
    Status::with_error_details(Code::AlreadyExists, message, details)
}

/// ABORTED for an optimistic-concurrency conflict: the caller's etag is not the current one.
pub fn stale_etag(resource_type: &str, resource_name: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info(
        resource_type,
        resource_name,
        "",
        "the resource changed since it was read",
    );
    details.set_error_info("ETAG_MISMATCH", DOMAIN, []);
    Status::with_error_details(
        Code::Aborted,
        format!(
            "{resource_type} {resource_name} was changed by someone else: read it again and retry with its current etag"
        ),
        details,
    )
}

/// FAILED_PRECONDITION with a `PreconditionFailure` (violation type = `reason`) and an `ErrorInfo`.
pub fn failed_precondition(reason: &str, subject: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(reason, subject, description.clone());
    details.set_error_info(reason, DOMAIN, []);
    Status::with_error_details(Code::FailedPrecondition, description, details)
}

/// A status of `code` with an `ErrorInfo` of `reason`, for cases the builders above do not cover.
pub fn with_reason(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, DOMAIN, []);
    Status::with_error_details(code, message, details)
}

/// INTERNAL without the cause: the cause is logged here and never sent to the client.
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    with_reason(
        Code::Internal,
        "INTERNAL",
        "internal error; the service has logged the cause",
    )
}

/// UNAVAILABLE, for a dependency (database, another module) that cannot be reached; retryable.
pub fn unavailable(what: &str) -> Status {
    with_reason(
        Code::Unavailable,
        "UNAVAILABLE",
        format!("{what} is unavailable; retry with backoff"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_become_bad_request_details() {
        let mut violations = Violations::new();
        violations.check(true, "ok", "never recorded");
        violations.add("patient.nhs_number", "fails the modulus-11 check");
        violations.add("patient.birth_date.month", "must be 1 to 12");
        let status = Status::from(violations.into_result().unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "patient.nhs_number: fails the modulus-11 check (and 1 more)"
        );
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("BadRequest detail");
        let fields: Vec<&str> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["patient.nhs_number", "patient.birth_date.month"]);
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
    }

    #[test]
    fn resource_statuses_name_the_resource() {
        let status = not_found("patient", "0b9d…");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status
                .get_error_details()
                .resource_info()
                .unwrap()
                .resource_name,
            "0b9d…"
        );

        let status = already_exists(
            "IDENTIFIER_IN_USE",
            "patient",
            "p-1",
            "identifier held by patient p-1",
        );
        assert_eq!(status.code(), Code::AlreadyExists);
        let details = status.get_error_details();
        assert_eq!(details.resource_info().unwrap().resource_name, "p-1");
        assert_eq!(details.error_info().unwrap().reason, "IDENTIFIER_IN_USE");

        let status = stale_etag("record", "r-1");
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "ETAG_MISMATCH"
        );

        let status = failed_precondition("PATIENT_MERGED", "patient/p-2", "p-2 is merged into p-3");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(
            details.precondition_failure().unwrap().violations[0].r#type,
            "PATIENT_MERGED"
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let cause = std::io::Error::other("connection to 10.0.0.5 refused, password=hunter2");
        let status = internal(&cause);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
        assert!(!status.message().contains("10.0.0.5"));
    }
}
