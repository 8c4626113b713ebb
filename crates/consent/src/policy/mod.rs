//! The platform policy set: deployment-managed Cedar policies, evaluated once per request context
//! and cell class (they do not depend on the patient), with the verdicts cached per context. The
//! national data opt-out's exemptions see one fact about the patient, whether they consented
//! explicitly (and to the study): they are evaluated for each of its three values, so that deciding
//! for a patient stays a lookup.
//!
//! `embedded` holds the rules and schema shipped with the service, `load` parses, type-checks
//! and sorts a policy set by kind, `evaluate` answers the verdicts for a request context, and
//! `error` says why a set was refused.

mod embedded;
mod error;
mod evaluate;
mod load;
#[cfg(test)]
mod tests;

pub use embedded::{DEFAULT_POLICIES, SCHEMA};
pub use error::PolicyError;
pub use evaluate::PlatformPolicies;
