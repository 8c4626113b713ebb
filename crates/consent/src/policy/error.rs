//! Why a policy set was refused, or failed to evaluate.

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("does not parse: {0}")]
    Parse(String),
    #[error("templates are not supported (policy {0})")]
    Template(String),
    #[error("a policy has no @id annotation (source policy {0})")]
    MissingId(String),
    #[error("@id {0:?} is used by more than one policy")]
    DuplicateId(String),
    #[error("policy {id}: {reason}")]
    Convention { id: String, reason: String },
    #[error("does not type-check against the policy schema: {0}")]
    Validation(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("evaluating {0}")]
    Evaluation(String),
}

/// An error's message with its causes, on one line.
pub(super) fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
