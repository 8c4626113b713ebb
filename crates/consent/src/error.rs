//! The crate's error, mapped to gRPC statuses in one place.

use carerecord_platform::db::is_transient;
use carerecord_platform::errors::{self, Violations};
use carerecord_platform::status_policy::{MAX_MESSAGE_BYTES, MAX_VIOLATION_BYTES, bounded};
use tonic::{Code, Status};

use crate::policy::PolicyError;

pub const DIRECTIVE_RESOURCE: &str = "carerecord.consent.v1.ConsentDirective";
pub const OPT_OUT_RESOURCE: &str = "carerecord.consent.v1.NationalDataOptOut";

/// The most field violations one error lists. A request with more (a batch of bad ids, a directive
/// wrong everywhere) hears about the first ones, which say what to fix first, and how many there
/// were: an error stays small whatever the input.
pub const MAX_LISTED_VIOLATIONS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("directive {0} not found")]
    NotFound(String),
    #[error("stale etag for {resource_type} {name}")]
    StaleEtag {
        resource_type: &'static str,
        name: String,
    },
    #[error("status precondition failed for {subject}: {description}")]
    Status {
        subject: String,
        description: String,
    },
    #[error("request id {0} reused with a different request")]
    RequestIdReused(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("platform policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("a concurrent read failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl Error {
    /// The caller's etag (or expected version) is not the current one.
    pub fn stale(resource_type: &'static str, name: impl Into<String>) -> Error {
        Error::StaleEtag {
            resource_type,
            name: name.into(),
        }
    }

    /// The directive's status does not allow what was asked.
    pub fn directive_status(directive_id: impl std::fmt::Display, description: String) -> Error {
        Error::Status {
            subject: format!("directive/{directive_id}"),
            description,
        }
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Error::Invalid(violations)
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corrupt(e.to_string())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::Invalid(violations) => invalid_argument(&violations),
            Error::NotFound(id) => errors::not_found(DIRECTIVE_RESOURCE, &id),
            Error::StaleEtag {
                resource_type,
                name,
            } => errors::stale_etag(resource_type, &name),
            Error::Status {
                subject,
                description,
            } => errors::failed_precondition("STATUS", &subject, description),
            Error::RequestIdReused(request_id) => errors::with_reason(
                tonic::Code::FailedPrecondition,
                "REQUEST_ID_REUSED",
                format!("request_id {request_id} was already used with a different request"),
            ),
            Error::Database(ref e) if is_transient(e) => {
                tracing::warn!(error = %e, "database unavailable");
                errors::unavailable("the consent database")
            }
            other => errors::internal(&other),
        }
    }
}

/// INVALID_ARGUMENT listing the first violations, at most [`MAX_LISTED_VIOLATIONS`] and
/// [`MAX_VIOLATION_BYTES`] of them, and saying in its message how many there were in all.
fn invalid_argument(violations: &Violations) -> Status {
    let mut listed = Violations::new();
    let mut bytes = 0;
    for (field, description) in violations.iter().take(MAX_LISTED_VIOLATIONS) {
        bytes += field.len() + description.len() + 8;
        if !listed.is_empty() && bytes > MAX_VIOLATION_BYTES {
            break;
        }
        listed.add(field, description);
    }
    let total = violations.iter().count();
    let shown = listed.iter().count();
    let status = errors::invalid_argument(&listed);
    if shown == total {
        return status;
    }
    let (field, description) = listed.iter().next().unwrap_or(("", ""));
    let message = format!(
        "{field}: {description} (and {} more; the first {shown} are listed)",
        total - 1
    );
    Status::with_details(
        Code::InvalidArgument,
        bounded(&message, MAX_MESSAGE_BYTES),
        tonic::codegen::Bytes::copy_from_slice(status.details()),
    )
}
