//! Human-readable explanations of decision reasons (for audit readers; never parsed).

use super::compiled::{CompiledDirective, describe_provision};
use super::context::{Context, PlatformVerdicts};
use super::decision::{Reason, Source};
use crate::domain::codes::{LegalBasis, Purpose};
use crate::domain::optout::OptOutStatus;

/// The contract's limit on an explanation's length, in characters.
pub const MAX_EXPLANATION_CHARS: usize = 500;

fn effect(permit: bool) -> &'static str {
    if permit { "permits" } else { "denies" }
}

pub(super) fn explain(
    reason: &Reason,
    ctx: &Context,
    platform: &PlatformVerdicts,
    directives: &[&CompiledDirective],
    opt_out: OptOutStatus,
) -> String {
    let text = match reason.source {
        Source::PlatformPolicy => {
            let description = platform
                .classes
                .iter()
                .flat_map(|c| {
                    c.forbid
                        .iter()
                        .chain(&c.overrides)
                        .chain(c.default.iter().flat_map(|(_, rules)| rules))
                })
                .find(|r| *r.policy_id == *reason.policy_id)
                .and_then(|r| r.description.clone());
            match description {
                Some(d) => format!(
                    "Platform rule {} {}: {d}",
                    reason.policy_id,
                    effect(reason.permit)
                ),
                None => format!(
                    "Platform rule {} {}",
                    reason.policy_id,
                    effect(reason.permit)
                ),
            }
        }
        Source::NationalDataOptOut if reason.permit => {
            let description = platform
                .classes
                .iter()
                .flat_map(|c| c.exemptions.iter().flatten())
                .find(|r| *r.policy_id == *reason.policy_id)
                .and_then(|r| r.description.clone());
            match description {
                Some(d) => format!(
                    "The patient has opted out of data sharing, but exemption {} sets the opt-out aside: {d}",
                    reason.policy_id
                ),
                None => format!(
                    "The patient has opted out of data sharing, but exemption {} sets the opt-out aside",
                    reason.policy_id
                ),
            }
        }
        Source::NationalDataOptOut => format!(
            "The patient has registered a national data opt-out, which withholds data used for {} beyond their own care{}",
            ctx.purpose.code(),
            if ctx.legal_basis == LegalBasis::ExplicitConsent {
                "; no active directive records the explicit consent relied on"
            } else {
                ""
            }
        ),
        Source::OptOutStatusUnknown => format!(
            "The patient's national data opt-out status is not known ({}), so their data is not used for {} beyond their own care until a check says they have not opted out",
            if opt_out == OptOutStatus::CheckExpired {
                "the latest check is older than this deployment accepts"
            } else {
                "they have never been checked"
            },
            ctx.purpose.code()
        ),
        Source::PatientDirective => {
            let what = directives
                .iter()
                .find(|d| d.directive_id == reason.directive_id)
                .map_or_else(String::new, |d| {
                    describe_provision(d, &reason.provision_path)
                });
            let path = reason.path_string();
            if path.is_empty() {
                format!(
                    "Patient directive (version {}) {} by its {what}",
                    reason.directive_version,
                    effect(reason.permit)
                )
            } else {
                format!(
                    "Patient directive (version {}) {} by {what} (provision {path})",
                    reason.directive_version,
                    effect(reason.permit)
                )
            }
        }
        Source::Default if reason.permit && ctx.purpose == Purpose::Patrqt => {
            "No patient directive or platform rule decided; the patient's right of access to their own record (UK GDPR Art. 15) permits".to_owned()
        }
        Source::Default if reason.permit => format!(
            "No patient directive or platform rule decided; implied consent for individual care ({}) permits",
            ctx.purpose.code()
        ),
        Source::Default => format!(
            "No patient directive or platform rule decided; purpose {} is denied by default",
            ctx.purpose.code()
        ),
    };
    if text.chars().count() > MAX_EXPLANATION_CHARS {
        let mut cut: String = text.chars().take(MAX_EXPLANATION_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}
