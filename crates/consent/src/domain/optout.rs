//! The national data opt-out's exemptions, as a table: the opt-out applies to a cell unless one of
//! these rows does. They are statutory, so they are data in the code rather than deployment policy
//! (platform OVERRIDE rules cannot set the opt-out aside).

use super::codes::{LegalBasis, Purpose};
use super::decide::Context;

/// What the patient's directives yield for a cell, as far as the opt-out is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveVerdict {
    Deny,
    ExplicitPermit { study_specific: bool },
    NoObjection,
}

/// The test of one exemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// The request's purpose of use is one of these.
    PurposeIn(&'static [Purpose]),
    /// The request's legal basis is one of these.
    LegalBasisIn(&'static [LegalBasis]),
    /// Legal basis EXPLICIT_CONSENT backed by an explicit PERMIT of the patient's directives, which for
    /// research (HRESCH) must name the study.
    ExplicitConsent,
}

/// One exemption from the national data opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exemption {
    pub id: &'static str,
    pub description: &'static str,
    pub test: Test,
}

/// Every exemption, in the order they are tried (the first that holds is reported).
pub const EXEMPTIONS: &[Exemption] = &[
    Exemption {
        id: "individual-care",
        description: "the patient's own care (TREAT, ETREAT) or a request made at the patient's own request (PATRQT)",
        test: Test::PurposeIn(&[Purpose::Treat, Purpose::Etreat, Purpose::Patrqt]),
    },
    Exemption {
        id: "legal-obligation",
        description: "a legal requirement, court order or overriding public interest asserted by the requester",
        test: Test::LegalBasisIn(&[
            LegalBasis::LegalRequirement,
            LegalBasis::CourtOrder,
            LegalBasis::OverridingPublicInterest,
        ]),
    },
    Exemption {
        id: "public-health",
        description: "communicable disease or another risk to public health (legal basis PUBLIC_HEALTH)",
        test: Test::LegalBasisIn(&[LegalBasis::PublicHealth]),
    },
    Exemption {
        id: "explicit-consent",
        description: "the patient's explicit consent recorded in an active directive (naming the study, for research)",
        test: Test::ExplicitConsent,
    },
];

impl Test {
    fn holds(self, ctx: &Context, verdict: DirectiveVerdict) -> bool {
        match self {
            Test::PurposeIn(purposes) => purposes.contains(&ctx.purpose),
            Test::LegalBasisIn(bases) => bases.contains(&ctx.legal_basis),
            Test::ExplicitConsent => {
                ctx.legal_basis == LegalBasis::ExplicitConsent
                    && match verdict {
                        DirectiveVerdict::ExplicitPermit { study_specific } => {
                            study_specific || ctx.purpose != Purpose::Hresch
                        }
                        DirectiveVerdict::Deny | DirectiveVerdict::NoObjection => false,
                    }
            }
        }
    }
}

/// The exemption that sets an opted-out patient's opt-out aside for this cell, if any.
pub fn exemption(ctx: &Context, verdict: DirectiveVerdict) -> Option<&'static Exemption> {
    EXEMPTIONS.iter().find(|e| e.test.holds(ctx, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(purpose: Purpose, legal_basis: LegalBasis) -> Context {
        Context {
            time: 0,
            user_id: "u".into(),
            organisation_ods_code: "RXA".into(),
            role_code: "R8000".into(),
            purpose,
            classes: Vec::new(),
            legal_basis,
            study_id: Some("IRAS-1".into()),
            break_glass: false,
        }
    }

    fn id(ctx: &Context, verdict: DirectiveVerdict) -> Option<&'static str> {
        exemption(ctx, verdict).map(|e| e.id)
    }

    #[test]
    fn individual_care_is_exempt() {
        for p in [Purpose::Treat, Purpose::Etreat, Purpose::Patrqt] {
            assert_eq!(
                id(&ctx(p, LegalBasis::Unspecified), DirectiveVerdict::Deny),
                Some("individual-care")
            );
        }
        for p in [
            Purpose::Hresch,
            Purpose::Hoperat,
            Purpose::Hpaymt,
            Purpose::Hmarkt,
            Purpose::Pubhlth,
        ] {
            assert_eq!(
                id(
                    &ctx(p, LegalBasis::Unspecified),
                    DirectiveVerdict::NoObjection
                ),
                None,
                "{p:?}"
            );
        }
    }

    #[test]
    fn legal_bases_are_exempt() {
        for b in [
            LegalBasis::LegalRequirement,
            LegalBasis::CourtOrder,
            LegalBasis::OverridingPublicInterest,
        ] {
            assert_eq!(
                id(&ctx(Purpose::Hoperat, b), DirectiveVerdict::NoObjection),
                Some("legal-obligation")
            );
        }
        assert_eq!(
            id(
                &ctx(Purpose::Pubhlth, LegalBasis::PublicHealth),
                DirectiveVerdict::NoObjection
            ),
            Some("public-health")
        );
        assert_eq!(
            id(
                &ctx(Purpose::Pubhlth, LegalBasis::Unspecified),
                DirectiveVerdict::NoObjection
            ),
            None
        );
    }

    #[test]
    fn explicit_consent_needs_an_explicit_and_for_research_study_specific_permit() {
        let research = ctx(Purpose::Hresch, LegalBasis::ExplicitConsent);
        let specific = DirectiveVerdict::ExplicitPermit {
            study_specific: true,
        };
        let general = DirectiveVerdict::ExplicitPermit {
            study_specific: false,
        };
        assert_eq!(id(&research, specific), Some("explicit-consent"));
        assert_eq!(id(&research, general), None);
        assert_eq!(id(&research, DirectiveVerdict::NoObjection), None);
        assert_eq!(id(&research, DirectiveVerdict::Deny), None);
        assert_eq!(
            id(&ctx(Purpose::Hoperat, LegalBasis::ExplicitConsent), general),
            Some("explicit-consent")
        );
        // An explicit permit without the EXPLICIT_CONSENT basis grants nothing.
        assert_eq!(
            id(&ctx(Purpose::Hresch, LegalBasis::Unspecified), specific),
            None
        );
    }
}
