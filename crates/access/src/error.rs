//! The crate's one error type and its mapping to gRPC statuses with google.rpc details.
//!
//! The access contract fixes its own ErrorInfo domain (`carerecord.access.v1`) and reasons
//! (`INVALID_REQUEST`, `PATIENT_NOT_FOUND`, ...), so statuses are built here rather than with the
//! platform's generic builders; the shapes (BadRequest, ResourceInfo, PreconditionFailure,
//! RetryInfo) are the same.

use std::collections::HashMap;
use std::time::Duration;

use carerecord_platform::errors::Violations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of every error of this service.
pub const DOMAIN: &str = "carerecord.access.v1";

/// How long clients are told to wait before retrying an UNAVAILABLE call.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Which module data access depends on for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Identity,
    Consent,
    Records,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Identity => "identity",
            Dependency::Consent => "consent",
            Dependency::Records => "records",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error(
        "the page token is invalid, or was issued for other request fields or another requester"
    )]
    InvalidPageToken,
    #[error("no bearer token in the authorization metadata")]
    TokenMissing,
    #[error("the bearer token is invalid: {0}")]
    TokenInvalid(String),
    #[error("the bearer token has expired")]
    TokenExpired,
    /// The token's `iss` is not one of the deployment's trusted issuers.
    #[error("the bearer token's issuer is not trusted by this deployment")]
    TokenIssuerUnknown(String),
    /// A CIS2 token without a usable selected role: why.
    #[error("{0}")]
    RoleNotSelected(String),
    /// An NHS login token below the proofing level that may act for a patient.
    #[error(
        "NHS login identity proofing level {level:?} may not act for a patient: {required} (fully verified) is required"
    )]
    IdentityProofingInsufficient {
        level: String,
        required: &'static str,
    },
    /// An NHS login token whose NHS number names no single patient: `cause` says why.
    #[error("the token's NHS number names no single registered patient ({cause})")]
    PatientContextUnresolved { cause: &'static str },
    /// The client's call rate or concurrent calls exceed its limit.
    #[error("too many calls from this client ({limit} limit): retry after {retry_after:?}")]
    RateLimited {
        limit: &'static str,
        retry_after: Duration,
    },
    #[error("the token does not grant scope {required_scope}")]
    ScopeMissing { required_scope: String },
    #[error("the requester's role may not do this; permitted roles: {required_roles}")]
    RoleNotPermitted { required_roles: String },
    #[error("the token acts for another patient")]
    PatientContextMismatch,
    #[error("consent refused the disclosure")]
    ConsentDenied {
        reason_codes: Vec<String>,
        reason_texts: Vec<String>,
    },
    #[error("the project is not approved for this {0}")]
    ProjectNotPermitted(&'static str),
    #[error("a privacy officer may not review their own break-glass access")]
    SelfReview,
    #[error("patient not found")]
    PatientNotFound { name: String },
    #[error("project {0} not found")]
    ProjectNotFound(String),
    #[error("break-glass event {0} not found")]
    BreakGlassEventNotFound(String),
    #[error("audit public key {0} not found")]
    KeyNotFound(String),
    #[error(
        "the patient reference matches more than one patient confidently enough; refine it or use an identifier"
    )]
    PatientMatchAmbiguous,
    #[error("the etag is not current: re-read and retry")]
    EtagMismatch,
    #[error("record {0} not found")]
    RecordNotFound(String),
    #[error("consent directive {0} not found")]
    DirectiveNotFound(String),
    #[error("consent directive {0} is not active: only an active directive can be withdrawn")]
    DirectiveNotActive(String),
    #[error("only the organisation that contributed the record may change it")]
    RecordNotOwned,
    #[error("record {0} is retracted (entered in error) and cannot be changed")]
    RecordRetracted(String),
    #[error("this deployment does not accept contributions from patient-facing tokens")]
    PatientContributionsDisabled,
    #[error(
        "the token names no organisation (organisation_ods_code): staff and systems act for one"
    )]
    OrganisationMissing,
    #[error(
        "request_id was already used with different content; use a new request_id for a new request"
    )]
    RequestIdReused,
    #[error(
        "the cursor is beyond the newest change (record hosting may have been restored): start again without it"
    )]
    CursorAheadOfFeed,
    #[error("tree size {requested} is beyond the log's current size {current}")]
    TreeSizeOutOfRange { requested: i64, current: i64 },
    #[error("the {} module is unavailable", .0.as_str())]
    DependencyUnavailable(Dependency),
    #[error("the audit log is unavailable")]
    AuditLogUnavailable,
    #[error("the call was cancelled")]
    Cancelled,
    #[error("the call's deadline passed")]
    DeadlineExceeded,
    #[error("internal error: {0}")]
    Internal(String),
    /// `error`, raised after the call was audited: the status names the audit entry.
    #[error("{error}")]
    Audited {
        error: Box<Error>,
        entry_id: String,
        index: i64,
    },
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Error::Invalid(violations)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Error::AuditLogUnavailable
    }
}

impl Error {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut violations = Violations::new();
        violations.add(field, description);
        Error::Invalid(violations)
    }

    /// This error, answered once the call's audit entry `entry_id` was appended at `index`.
    pub fn audited(self, entry_id: &str, index: i64) -> Self {
        Error::Audited {
            error: Box::new(self.unaudited()),
            entry_id: entry_id.to_owned(),
            index,
        }
    }

    /// The error itself, whether or not it was audited.
    fn unaudited(self) -> Self {
        match self {
            Error::Audited { error, .. } => *error,
            other => other,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::Audited { error, .. } => error.code(),
            Error::Invalid(_) | Error::InvalidPageToken => Code::InvalidArgument,
            Error::TokenMissing
            | Error::TokenInvalid(_)
            | Error::TokenExpired
            | Error::TokenIssuerUnknown(_) => Code::Unauthenticated,
            Error::RoleNotSelected(_)
            | Error::IdentityProofingInsufficient { .. }
            | Error::PatientContextUnresolved { .. } => Code::PermissionDenied,
            Error::RateLimited { .. } => Code::ResourceExhausted,
            Error::ScopeMissing { .. }
            | Error::RoleNotPermitted { .. }
            | Error::PatientContextMismatch
            | Error::ConsentDenied { .. }
            | Error::ProjectNotPermitted(_)
            | Error::SelfReview
            | Error::RecordNotOwned
            | Error::PatientContributionsDisabled
            | Error::OrganisationMissing => Code::PermissionDenied,
            Error::PatientNotFound { .. }
            | Error::ProjectNotFound(_)
            | Error::BreakGlassEventNotFound(_)
            | Error::KeyNotFound(_)
            | Error::RecordNotFound(_)
            | Error::DirectiveNotFound(_) => Code::NotFound,
            Error::PatientMatchAmbiguous
            | Error::RecordRetracted(_)
            | Error::RequestIdReused
            | Error::DirectiveNotActive(_)
            | Error::CursorAheadOfFeed => Code::FailedPrecondition,
            Error::EtagMismatch => Code::Aborted,
            Error::TreeSizeOutOfRange { .. } => Code::OutOfRange,
            Error::DependencyUnavailable(_) | Error::AuditLogUnavailable => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            Error::DeadlineExceeded => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// The ErrorInfo reason, as recorded in audit entries.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Audited { error, .. } => error.reason(),
            Error::Invalid(_) => "INVALID_REQUEST",
            Error::InvalidPageToken => "INVALID_PAGE_TOKEN",
            Error::TokenMissing => "TOKEN_MISSING",
            Error::TokenInvalid(_) => "TOKEN_INVALID",
            Error::TokenExpired => "TOKEN_EXPIRED",
            Error::TokenIssuerUnknown(_) => "TOKEN_ISSUER_UNKNOWN",
            Error::RoleNotSelected(_) => "ROLE_NOT_SELECTED",
            Error::IdentityProofingInsufficient { .. } => "IDENTITY_PROOFING_INSUFFICIENT",
            Error::PatientContextUnresolved { .. } => "PATIENT_CONTEXT_UNRESOLVED",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::ScopeMissing { .. } => "SCOPE_MISSING",
            Error::RoleNotPermitted { .. } => "ROLE_NOT_PERMITTED",
            Error::PatientContextMismatch => "PATIENT_CONTEXT_MISMATCH",
            Error::ConsentDenied { .. } => "CONSENT_DENIED",
            Error::ProjectNotPermitted(_) => "PROJECT_NOT_PERMITTED",
            Error::SelfReview => "SELF_REVIEW",
            Error::PatientNotFound { .. } => "PATIENT_NOT_FOUND",
            Error::ProjectNotFound(_) => "PROJECT_NOT_FOUND",
            Error::BreakGlassEventNotFound(_) => "BREAK_GLASS_EVENT_NOT_FOUND",
            Error::KeyNotFound(_) => "KEY_NOT_FOUND",
            Error::PatientMatchAmbiguous => "PATIENT_MATCH_AMBIGUOUS",
            Error::EtagMismatch => "ETAG_MISMATCH",
            Error::RecordNotFound(_) => "RECORD_NOT_FOUND",
            Error::DirectiveNotFound(_) => "CONSENT_DIRECTIVE_NOT_FOUND",
            Error::DirectiveNotActive(_) => "CONSENT_DIRECTIVE_STATUS",
            Error::RecordNotOwned => "RECORD_NOT_OWNED",
            Error::RecordRetracted(_) => "RECORD_STATUS",
            Error::PatientContributionsDisabled => "PATIENT_CONTRIBUTIONS_DISABLED",
            Error::OrganisationMissing => "ORGANISATION_MISSING",
            Error::RequestIdReused => "REQUEST_ID_REUSED",
            Error::CursorAheadOfFeed => "CURSOR_AHEAD_OF_FEED",
            Error::TreeSizeOutOfRange { .. } => "TREE_SIZE_OUT_OF_RANGE",
            Error::DependencyUnavailable(_) => "DEPENDENCY_UNAVAILABLE",
            Error::AuditLogUnavailable => "AUDIT_LOG_UNAVAILABLE",
            Error::Cancelled => "CANCELLED",
            Error::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The resource a NOT_FOUND error names: its type, its name, and what is missing.
    fn missing_resource(&self) -> Option<(&'static str, &str, &'static str)> {
        let (kind, name, description) = match self {
            Error::PatientNotFound { name } => ("Patient", name, "no such current patient"),
            Error::ProjectNotFound(name) => ("Project", name, "no such registered project"),
            Error::BreakGlassEventNotFound(name) => {
                ("BreakGlassEvent", name, "no such break-glass event")
            }
            Error::KeyNotFound(name) => ("AuditPublicKey", name, "no such audit key"),
            Error::RecordNotFound(name) => ("Record", name, "no such record"),
            Error::DirectiveNotFound(name) => {
                ("ConsentDirective", name, "no such consent directive")
            }
            _ => return None,
        };
        Some((kind, name.as_str(), description))
    }

    /// The precondition a FAILED_PRECONDITION error names: its type, its subject, and how it
    /// failed.
    fn failed_precondition(&self) -> Option<(&'static str, &str, String)> {
        Some(match self {
            Error::DirectiveNotActive(name) => (
                "CONSENT_DIRECTIVE_STATUS",
                name.as_str(),
                "the directive is not active".to_owned(),
            ),
            Error::RecordRetracted(name) => (
                "RECORD_STATUS",
                name.as_str(),
                "the record is entered in error".to_owned(),
            ),
            Error::CursorAheadOfFeed => ("CURSOR_AHEAD_OF_FEED", "after_cursor", self.to_string()),
            Error::PatientMatchAmbiguous => ("AMBIGUOUS_MATCH", "patient", self.to_string()),
            _ => return None,
        })
    }

    /// The status for this error; `audit` names the audit entry written for the call, if any.
    fn to_status(&self, audit: Option<(&str, i64)>) -> Status {
        let mut metadata: HashMap<String, String> = HashMap::new();
        if let Some((entry_id, index)) = audit {
            metadata.insert("audit_entry_id".into(), entry_id.to_owned());
            metadata.insert("audit_index".into(), index.to_string());
        }
        let mut details = ErrorDetails::new();
        if let Some((kind, name, description)) = self.missing_resource() {
            details.set_resource_info(kind, name, "", description);
        }
        if let Some((kind, subject, description)) = self.failed_precondition() {
            details.add_precondition_failure_violation(kind, subject, description);
        }
        let message = match self {
            Error::Invalid(violations) => {
                details.set_bad_request(
                    violations
                        .iter()
                        .map(|(f, d)| FieldViolation::new(f, d))
                        .collect::<Vec<_>>(),
                );
                let all: Vec<String> = violations
                    .iter()
                    .map(|(f, d)| format!("{f}: {d}"))
                    .collect();
                all.join("; ")
            }
            Error::ScopeMissing { required_scope } => {
                metadata.insert("required_scope".into(), required_scope.clone());
                self.to_string()
            }
            Error::RoleNotPermitted { required_roles } => {
                metadata.insert("required_roles".into(), required_roles.clone());
                self.to_string()
            }
            Error::ConsentDenied {
                reason_codes,
                reason_texts,
            } => {
                metadata.insert("decision_outcome".into(), "DENY".into());
                metadata.insert("reason_codes".into(), reason_codes.join(","));
                details.set_localized_message("en-GB", reason_texts.join("; "));
                self.to_string()
            }
            Error::DependencyUnavailable(dependency) => {
                metadata.insert("dependency".into(), dependency.as_str().into());
                details.set_retry_info(Some(RETRY_DELAY));
                self.to_string()
            }
            Error::AuditLogUnavailable => {
                details.set_retry_info(Some(RETRY_DELAY));
                format!("{self}; nothing was disclosed")
            }
            Error::TokenInvalid(_) => "the bearer token is invalid".to_owned(),
            Error::TokenIssuerUnknown(issuer) => {
                let shown: String = issuer.chars().take(200).collect();
                metadata.insert("issuer".into(), shown);
                self.to_string()
            }
            Error::IdentityProofingInsufficient { level, required } => {
                let shown: String = level.chars().take(20).collect();
                metadata.insert("identity_proofing_level".into(), shown);
                metadata.insert("required_level".into(), (*required).into());
                self.to_string()
            }
            Error::PatientContextUnresolved { cause } => {
                metadata.insert("cause".into(), (*cause).into());
                self.to_string()
            }
            Error::RateLimited { limit, retry_after } => {
                metadata.insert("limit".into(), (*limit).into());
                details.set_retry_info(Some(*retry_after));
                self.to_string()
            }
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "internal error; the service has logged the cause".to_owned()
            }
            other => other.to_string(),
        };
        details.set_error_info(self.reason(), DOMAIN, metadata);
        Status::with_error_details(self.code(), message, details)
    }
}

/// The one mapping from this crate's errors to gRPC statuses.
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Audited {
                error,
                entry_id,
                index,
            } => error.to_status(Some((&entry_id, index))),
            other => other.to_status(None),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
