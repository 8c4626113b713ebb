//! The crate's one error type, and its mapping to gRPC statuses (in one place).

use carerecord_contracts::common::v1::FieldViolation as ProtoViolation;
use carerecord_contracts::identity::v1::BatchItemError;
use carerecord_platform::db;
use carerecord_platform::errors::{self, Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of this module's errors, as the contract names it.
pub const DOMAIN: &str = "carerecord.identity.v1";
pub const PATIENT: &str = "carerecord.identity.v1.Patient";
pub const IDENTIFIER: &str = "carerecord.common.v1.Identifier";
pub const MATCH_PARAMETERS: &str = "carerecord.identity.v1.MatchParameters";

/// An identifier or NHS number already held by another patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `<system>|<value>` of the identifier.
    pub identifier: String,
    pub holder: String,
    /// The holder's survivor when the holder is merged.
    pub holder_merged_into: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    #[error("patients not found: {0:?}")]
    PatientsNotFound(Vec<String>),
    #[error("identifiers already held by other patients")]
    Conflicts(Vec<Conflict>),
    #[error("request_id already used with a different request")]
    RequestIdReused { patient_id: String },
    #[error("etag mismatch on {patient_id}")]
    EtagMismatch {
        patient_id: String,
        current_version: i64,
    },
    /// (patient_id, survivor) of each merged patient.
    #[error("patients are merged")]
    PatientMerged(Vec<(String, String)>),
    #[error("patient {0} is not merged")]
    PatientNotMerged(String),
    /// The requester's role may not change a confidentiality marker; the roles that may.
    #[error("the requester's role may not change a confidentiality marker")]
    RoleNotPermitted { required_roles: String },
    /// A restricted source cannot be merged into this unrestricted target.
    #[error("patient {0} is not restricted")]
    PatientRestricted(String),
    #[error("no match parameters")]
    ParametersMissing,
    #[error("an estimation is already running")]
    EstimationInProgress,
    #[error("insufficient data: {0}")]
    InsufficientData(String),
    /// The database cannot be reached or is busy: the client may retry.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("stored data cannot be decoded: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if db::is_transient(&e) {
            Error::Unavailable(e)
        } else {
            Error::Database(e)
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

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.add(field, description);
        Error::Invalid(v)
    }

    pub fn patient_not_found(id: &str) -> Self {
        Error::NotFound {
            resource_type: PATIENT,
            name: id.to_owned(),
        }
    }

    /// Whether a database error is a uniqueness violation (a concurrent writer won a race).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    /// Whether this error fails a whole BatchCreatePatients call rather than one of its items.
    pub fn fails_the_batch(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Database(_) | Error::Corrupt(_)
        )
    }

    /// The per-item form of this error, for BatchCreatePatients.
    pub fn to_batch_item(&self) -> BatchItemError {
        let status = Status::from(self.clone_shallow());
        let mut item = BatchItemError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            ..BatchItemError::default()
        };
        match self {
            Error::Invalid(v) => {
                item.field_violations = v
                    .iter()
                    .map(|(f, d)| ProtoViolation {
                        field: f.to_owned(),
                        description: d.to_owned(),
                    })
                    .collect();
            }
            Error::Conflicts(c) => {
                item.conflicting_patient_ids = c.iter().map(|c| c.holder.clone()).collect();
            }
            Error::RequestIdReused { .. } => item.reason = "REQUEST_ID_REUSED".into(),
            _ => {}
        }
        item
    }

    /// A copy of an item's error. Errors that carry a sqlx error cannot be cloned; an item's error
    /// never does, and a status does not need it.
    pub fn clone_shallow(&self) -> Error {
        match self {
            Error::Invalid(v) => Error::Invalid(v.clone()),
            Error::Conflicts(c) => Error::Conflicts(c.clone()),
            Error::RequestIdReused { patient_id } => Error::RequestIdReused {
                patient_id: patient_id.clone(),
            },
            Error::NotFound {
                resource_type,
                name,
            } => Error::NotFound {
                resource_type,
                name: name.clone(),
            },
            other => Error::Corrupt(other.to_string()),
        }
    }
}

fn error_info(reason: &str, metadata: Vec<(&str, String)>) -> ErrorDetail {
    ErrorDetail::from(tonic_types::ErrorInfo::new(
        reason,
        DOMAIN,
        metadata
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<std::collections::HashMap<_, _>>(),
    ))
}

/// A status whose only detail is an `ErrorInfo` with `reason` and `metadata`.
fn with_info(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: Vec<(&str, String)>,
) -> Status {
    Status::with_error_details_vec(code, message, vec![error_info(reason, metadata)])
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::Invalid(violations) => errors::invalid_argument(&violations),
            Error::NotFound {
                resource_type,
                name,
            } => errors::not_found(resource_type, &name),
            Error::PatientsNotFound(ids) => {
                let mut details: Vec<ErrorDetail> = ids
                    .iter()
                    .map(|id| {
                        tonic_types::ResourceInfo::new(PATIENT, id, "", format!("no patient {id}"))
                            .into()
                    })
                    .collect();
                details.push(error_info("NOT_FOUND", vec![]));
                Status::with_error_details_vec(
                    Code::NotFound,
                    format!("patients not found: {}", ids.join(", ")),
                    details,
                )
            }
            Error::Conflicts(conflicts) => {
                let mut details: Vec<ErrorDetail> = conflicts
                    .iter()
                    .map(|c| {
                        let description = match &c.holder_merged_into {
                            Some(s) => format!(
                                "identifier {} is held by patient {} (merged into {s})",
                                c.identifier, c.holder
                            ),
                            None => format!(
                                "identifier {} is held by patient {}",
                                c.identifier, c.holder
                            ),
                        };
                        tonic_types::ResourceInfo::new(PATIENT, &c.holder, "", description).into()
                    })
                    .collect();
                let holders: Vec<&str> = conflicts.iter().map(|c| c.holder.as_str()).collect();
                details.push(error_info(
                    "IDENTIFIER_IN_USE",
                    vec![("holder", holders.join(","))],
                ));
                let message = match conflicts.as_slice() {
                    [one] => format!(
                        "identifier {} is already held by patient {}",
                        one.identifier, one.holder
                    ),
                    _ => format!(
                        "{} identifiers are already held by other patients ({})",
                        conflicts.len(),
                        holders.join(", ")
                    ),
                };
                Status::with_error_details_vec(Code::AlreadyExists, message, details)
            }
            Error::RequestIdReused { patient_id } => with_info(
                Code::FailedPrecondition,
                format!(
                    "request_id was already used with a different request (first result: patient {patient_id})"
                ),
                "REQUEST_ID_REUSED",
                vec![("patient_id", patient_id)],
            ),
            Error::EtagMismatch {
                patient_id,
                current_version,
            } => Status::with_error_details_vec(
                Code::Aborted,
                format!(
                    "patient {patient_id} changed since it was read (now version {current_version}): read it again and retry with its current etag"
                ),
                vec![
                    tonic_types::ResourceInfo::new(PATIENT, &patient_id, "", "stale etag").into(),
                    error_info(
                        "ETAG_MISMATCH",
                        vec![
                            ("patient_id", patient_id.clone()),
                            ("current_version", current_version.to_string()),
                        ],
                    ),
                ],
            ),
            Error::PatientMerged(merged) => {
                let mut details = ErrorDetails::new();
                for (id, survivor) in &merged {
                    details.add_precondition_failure_violation(
                        "PATIENT_MERGED",
                        id,
                        format!("patient {id} is merged into {survivor}"),
                    );
                }
                details.set_error_info("PATIENT_MERGED", DOMAIN, []);
                let message = merged
                    .iter()
                    .map(|(id, s)| format!("patient {id} is merged into {s}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::RoleNotPermitted { required_roles } => with_info(
                Code::PermissionDenied,
                format!(
                    "only a requester in one of these roles may change a patient's confidentiality marker: {required_roles}"
                ),
                "ROLE_NOT_PERMITTED",
                vec![("required_roles", required_roles)],
            ),
            Error::PatientRestricted(target) => errors::failed_precondition(
                "PATIENT_RESTRICTED",
                &target,
                format!(
                    "the source is restricted and target {target} is not: restrict the target first (SetPatientConfidentiality), then merge"
                ),
            ),
            Error::PatientNotMerged(id) => errors::failed_precondition(
                "PATIENT_NOT_MERGED",
                &id,
                format!("patient {id} is not merged"),
            ),
            Error::ParametersMissing => with_info(
                Code::FailedPrecondition,
                "no match parameters exist yet: run EstimateMatchParameters first",
                "MATCH_PARAMETERS_MISSING",
                vec![],
            ),
            Error::EstimationInProgress => with_info(
                Code::Aborted,
                "another estimation is running; retry later",
                "ESTIMATION_IN_PROGRESS",
                vec![],
            ),
            Error::InsufficientData(description) => {
                errors::failed_precondition("INSUFFICIENT_DATA", "patients", description)
            }
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                errors::unavailable("the database")
            }
            Error::Database(e) => errors::internal(&e),
            e @ Error::Corrupt(_) => errors::internal(&e),
        }
    }
}
