//! The national data opt-out, as far as the patient's directives are concerned. Its exemptions are
//! platform policies (`@kind("optout-exemption")`, see policy/default.cedar) that an ICS can change;
//! they see the request and, of the patient, only what [`PatientConsent`] says, so their verdicts are
//! evaluated once per request context for each of its three values and the per-patient step is a
//! lookup.

/// What the patient's directives yield for a cell, as far as the opt-out is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveVerdict {
    Deny,
    ExplicitPermit { study_specific: bool },
    NoObjection,
}

/// The patient's consent as the exemption rules see it (Cedar context attributes
/// `patient_explicit_consent` and `patient_study_consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientConsent {
    /// The directives deny the cell or do not speak to the purpose.
    NotGiven,
    /// The directives yield an explicit PERMIT for the cell.
    Explicit,
    /// An explicit PERMIT that also names the request's study.
    StudySpecific,
}

/// How many [`PatientConsent`] values there are: the exemption verdicts cached per cell class.
pub const PATIENT_CONSENT_COUNT: usize = 3;

impl PatientConsent {
    pub const ALL: [PatientConsent; PATIENT_CONSENT_COUNT] = [
        PatientConsent::NotGiven,
        PatientConsent::Explicit,
        PatientConsent::StudySpecific,
    ];

    pub fn of(verdict: DirectiveVerdict) -> PatientConsent {
        match verdict {
            DirectiveVerdict::Deny | DirectiveVerdict::NoObjection => PatientConsent::NotGiven,
            DirectiveVerdict::ExplicitPermit {
                study_specific: false,
            } => PatientConsent::Explicit,
            DirectiveVerdict::ExplicitPermit {
                study_specific: true,
            } => PatientConsent::StudySpecific,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// `context.patient_explicit_consent`.
    pub fn explicit(self) -> bool {
        self != PatientConsent::NotGiven
    }

    /// `context.patient_study_consent`.
    pub fn study_specific(self) -> bool {
        self == PatientConsent::StudySpecific
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_verdicts_map_to_the_attributes_exemption_rules_see() {
        let cases = [
            (DirectiveVerdict::Deny, false, false),
            (DirectiveVerdict::NoObjection, false, false),
            (
                DirectiveVerdict::ExplicitPermit {
                    study_specific: false,
                },
                true,
                false,
            ),
            (
                DirectiveVerdict::ExplicitPermit {
                    study_specific: true,
                },
                true,
                true,
            ),
        ];
        for (verdict, explicit, study) in cases {
            let consent = PatientConsent::of(verdict);
            assert_eq!(
                (consent.explicit(), consent.study_specific()),
                (explicit, study),
                "{verdict:?}"
            );
            assert_eq!(PatientConsent::ALL[consent.index()], consent);
        }
    }
}
