//! What a decision says: the outcome, the obligations, and the reasons.

use crate::domain::codes::DataClass;
use crate::domain::time::Period;

/// Where a reason comes from; the declaration order is the order reasons are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    PlatformPolicy,
    /// The patient has opted out (a valid check says so).
    NationalDataOptOut,
    /// The patient's opt-out status is unknown (never checked, or the check expired): the contract's
    /// NATIONAL_DATA_OPT_OUT source with reason code `opt-out-status-unknown`.
    OptOutStatusUnknown,
    PatientDirective,
    Default,
}

impl Source {
    /// The contract's reason_code of a reason from this source.
    pub fn reason_code(self) -> &'static str {
        match self {
            Source::NationalDataOptOut => "national-data-opt-out",
            Source::OptOutStatusUnknown => "opt-out-status-unknown",
            Source::PlatformPolicy | Source::PatientDirective | Source::Default => "",
        }
    }
}

/// One rule that decided at least one cell. Field order is the listing order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reason {
    pub source: Source,
    pub directive_id: String,
    pub provision_path: Vec<u32>,
    pub policy_id: String,
    pub permit: bool,
    pub directive_version: i64,
    pub explanation: String,
}

impl Reason {
    pub fn path_string(&self) -> String {
        let parts: Vec<String> = self.provision_path.iter().map(u32::to_string).collect();
        parts.join(".")
    }
}

/// Something the caller must do, in the contract's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    Withhold {
        classes: Vec<DataClass>,
        general: bool,
        data_period: Period,
    },
    Pseudonymise,
    FlagForReview,
}

/// A decision for one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub permit: bool,
    pub obligations: Vec<Obligation>,
    pub reasons: Vec<Reason>,
}
