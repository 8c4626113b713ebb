//! The crate's one error type and its mapping to gRPC statuses.

use carerecord_platform::errors::{self, Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ResourceInfo.resource_type` of every record error.
pub const RECORD: &str = "carerecord.records.v1.Record";

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("no record {0}")]
    NotFound(String),
    #[error("stale etag for record {0}")]
    EtagMismatch(String),
    #[error("record {0} is retracted")]
    Retracted(String),
    #[error("request id {0} was used with a different record")]
    RequestIdReused(String),
    #[error("cursor {cursor} is ahead of the feed head {head}")]
    CursorAhead { cursor: i64, head: i64 },
    /// The client's request stream failed; its status is passed back as it is.
    #[error("request stream: {0}")]
    Stream(Status),
    /// The database cannot be reached or dropped the connection: the client may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &str, description: impl Into<String>) -> Error {
        let mut violations = Violations::new();
        violations.add(field, description);
        Error::Invalid(violations)
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Error {
        Error::Invalid(violations)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        if carerecord_platform::db::is_transient(&e) {
            Error::Unavailable(e.to_string())
        } else {
            Error::Internal(e.to_string())
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Invalid(violations) => errors::invalid_argument(&violations),
            Error::NotFound(id) => errors::not_found(RECORD, &id),
            Error::EtagMismatch(id) => errors::stale_etag(RECORD, &id),
            Error::Retracted(id) => errors::failed_precondition(
                "RECORD_STATUS",
                &id,
                format!("record {id} is entered in error; retracted records cannot be changed"),
            ),
            Error::RequestIdReused(request_id) => {
                let message = format!(
                    "request_id {request_id} was already used with a different record; use a new request_id for a new record"
                );
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    "REQUEST_ID_REUSED",
                    errors::DOMAIN,
                    [("request_id".to_owned(), request_id)],
                );
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::CursorAhead { cursor, head } => errors::failed_precondition(
                "CURSOR_AHEAD_OF_FEED",
                "after_cursor",
                format!(
                    "the cursor is at sequence {cursor}, beyond the newest event {head}: resynchronise, for example with ExportRecords"
                ),
            ),
            Error::Stream(status) => status,
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                errors::unavailable("the records database")
            }
            Error::Internal(cause) => errors::internal(&Error::Internal(cause)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_contract_details() {
        let status = Status::from(Error::NotFound("r1".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status
                .get_error_details()
                .resource_info()
                .unwrap()
                .resource_type,
            RECORD
        );
        let status = Status::from(Error::Retracted("r1".into()));
        let details = status.get_error_details();
        let violation = &details.precondition_failure().unwrap().violations[0];
        assert_eq!(
            (violation.r#type.as_str(), violation.subject.as_str()),
            ("RECORD_STATUS", "r1")
        );
        let status = Status::from(Error::RequestIdReused("q1".into()));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "REQUEST_ID_REUSED"
        );
        let status = Status::from(Error::from(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        let status = Status::from(Error::from(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("row"));
    }
}
