//! What a decision knows besides the patient: the request context, and the platform rules' verdicts
//! for it (evaluated once per context, because they do not depend on the patient).

use std::sync::Arc;

use crate::domain::codes::{CLASS_COUNT, Class, DataClass, LegalBasis, Purpose};
use crate::domain::optout::PATIENT_CONSENT_COUNT;
use crate::domain::time::Instant;

/// The request context of a decision: everything but the patient.
#[derive(Debug, Clone)]
pub struct Context {
    pub time: Instant,
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    /// The requester is the patient themselves (purpose PATRQT, no organisation or role).
    pub requester_is_patient: bool,
    pub purpose: Purpose,
    /// The data classes in scope, ascending and without duplicates (all seven when the request named none).
    pub classes: Vec<DataClass>,
    pub legal_basis: LegalBasis,
    pub study_id: Option<String>,
    pub break_glass: bool,
}

impl Context {
    /// The cell classes: the data classes in scope, then general data.
    pub(super) fn cell_classes(&self) -> impl Iterator<Item = Class> + '_ {
        self.classes
            .iter()
            .map(|c| Class::Labelled(*c))
            .chain(std::iter::once(Class::General))
    }
}

#[cfg(test)]
impl Context {
    /// A request by user u1 of `organisation` in `role`, for `purpose` at `time`, about every data
    /// class, under no legal basis: what the unit tests vary from.
    pub(crate) fn for_test(
        time: Instant,
        organisation: &str,
        role: &str,
        purpose: Purpose,
    ) -> Self {
        Context {
            time,
            user_id: "u1".into(),
            organisation_ods_code: organisation.into(),
            role_code: role.into(),
            requester_is_patient: false,
            purpose,
            classes: DataClass::ALL.to_vec(),
            legal_basis: LegalBasis::Unspecified,
            study_id: None,
            break_glass: false,
        }
    }
}

/// A platform rule that matched, with the obligations it attaches to the permits it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub policy_id: Arc<str>,
    pub pseudonymise: bool,
    pub flag_for_review: bool,
    pub description: Option<Arc<str>>,
}

/// The platform rules' verdicts for one cell class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassVerdicts {
    /// FORBID rules that matched.
    pub forbid: Vec<RuleMatch>,
    /// OVERRIDE rules that matched.
    pub overrides: Vec<RuleMatch>,
    /// DEFAULT rules that decided, deny winning: (permit?, the deciding rules); `None` when none matched.
    pub default: Option<(bool, Vec<RuleMatch>)>,
    /// By [`PatientConsent::index`](crate::domain::optout::PatientConsent::index): the OPTOUT-EXEMPTION rule that sets an opted-out patient's opt-out
    /// aside (the first matching in policy-file order); `None` when the opt-out applies.
    pub exemptions: [Option<RuleMatch>; PATIENT_CONSENT_COUNT],
}

/// The platform rules' verdicts for every cell class of one request context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformVerdicts {
    pub classes: [ClassVerdicts; CLASS_COUNT],
}
