//! What a consent decision means for one disclosure: refuse, or which records to withhold and
//! under which rule category; and, for break glass, which refusals the emergency overrides.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::records::v1 as records;

/// One WITHHOLD_DATA_CLASSES obligation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withhold {
    pub classes: Vec<String>,
    pub include_general: bool,
    pub start_micros: Option<i64>,
    pub end_micros: Option<i64>,
}

impl Withhold {
    fn matches(&self, classes: &[String], effective_micros: Option<i64>) -> bool {
        let class_match = if classes.is_empty() {
            self.include_general
        } else {
            classes.iter().any(|c| self.classes.contains(c))
        };
        let time_match = match effective_micros {
            None => true,
            Some(t) => {
                self.start_micros.is_none_or(|s| s <= t) && self.end_micros.is_none_or(|e| t < e)
            }
        };
        class_match && time_match
    }
}

/// A consent decision, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Nothing may be disclosed.
    pub denied: bool,
    pub withholds: Vec<Withhold>,
    /// The rule category withheld records are counted under.
    pub withheld_reason: String,
    /// The decision's reasons, as the access contract shows them.
    pub reasons: Vec<api::DecisionReason>,
    /// Break glass changed what is disclosed.
    pub overridden: bool,
    /// The decision requires pseudonymisation of the whole disclosure.
    pub pseudonymise: bool,
}

impl Policy {
    pub fn withholds(&self, classes: &[String], effective_micros: Option<i64>) -> bool {
        self.denied
            || self
                .withholds
                .iter()
                .any(|w| w.matches(classes, effective_micros))
    }

    /// Whether the policy withholds `record`, by its data classes and effective time.
    pub fn withholds_record(&self, record: &records::Record) -> bool {
        let effective = record.effective_time.as_ref().and_then(super::micros);
        self.withholds(&record.data_classes, effective)
    }

    pub fn reason_codes(&self) -> Vec<String> {
        self.reasons.iter().map(|r| r.code.clone()).collect()
    }

    pub fn reason_texts(&self) -> Vec<String> {
        self.reasons.iter().map(|r| r.text.clone()).collect()
    }
}

fn source(reason: &consent::DecisionReason) -> consent::DecisionSource {
    consent::DecisionSource::try_from(reason.source).unwrap_or(consent::DecisionSource::Unspecified)
}

fn is_deny(reason: &consent::DecisionReason) -> bool {
    reason.effect == consent::DecisionOutcome::Deny as i32
}

/// The lower-kebab rule category of a consent reason (never naming data).
pub fn reason_code(reason: &consent::DecisionReason) -> &'static str {
    use consent::DecisionSource as S;
    if reason.reason_code == "opt-out-status-unknown" {
        return "opt-out-status-unknown";
    }
    match (source(reason), is_deny(reason)) {
        (S::PlatformPolicy, true) => "platform-policy",
        (S::PlatformPolicy, false) => "platform-policy-permit",
        (S::NationalDataOptOut, true) => "national-data-opt-out",
        (S::NationalDataOptOut, false) => "national-data-opt-out-exemption",
        (S::PatientDirective, true) => "patient-dissent",
        (S::PatientDirective, false) => "patient-consent",
        (S::Default, true) => "purpose-not-permitted",
        (S::Default, false) => "implied-consent-direct-care",
        (S::Unspecified, _) => "unspecified-rule",
    }
}

fn reason_text(reason: &consent::DecisionReason) -> String {
    if !reason.explanation.trim().is_empty() {
        return reason.explanation.clone();
    }
    match reason_code(reason) {
        "platform-policy" => "A platform policy does not permit this disclosure",
        "platform-policy-permit" => "A platform policy permits this disclosure",
        "national-data-opt-out" => {
            "The patient has opted out of the use of their data for this purpose"
        }
        "opt-out-status-unknown" => {
            "The patient's national data opt-out status has not been checked recently enough, so for this purpose they are treated as opted out"
        }
        "national-data-opt-out-exemption" => {
            "The national data opt-out does not apply on the stated legal basis"
        }
        "patient-dissent" => "The patient has not consented to this disclosure",
        "patient-consent" => "The patient has consented to this disclosure",
        "purpose-not-permitted" => "Without the patient's consent this purpose is not permitted",
        "implied-consent-direct-care" => "Implied consent for the patient's direct care",
        _ => "Consent rule",
    }
    .to_owned()
}

/// Whether the patient's own directives refuse the requester: the one part of a decision that
/// governs a contribution (platform rules and the national data opt-out are about who may read,
/// not whether a care team may record what it did).
pub fn patient_dissents(decision: &consent::Decision) -> bool {
    decision.outcome == consent::DecisionOutcome::Deny as i32
        && decision
            .reasons
            .iter()
            .any(|r| is_deny(r) && source(r) == consent::DecisionSource::PatientDirective)
}

/// Interprets a decision; `break_glass` overrides the refusals a patient's own wishes cause
/// (directives, opt-out) but never a platform rule.
///
/// Withhold obligations do not say which rule produced them, so break glass overrides them only
/// when every refusing rule is overridable, and withheld records are counted under the first
/// refusing rule in the decision's order.
pub fn interpret(decision: &consent::Decision, break_glass: bool) -> Policy {
    let reasons: Vec<api::DecisionReason> = decision
        .reasons
        .iter()
        .map(|r| api::DecisionReason {
            code: reason_code(r).to_owned(),
            text: reason_text(r),
        })
        .collect();
    let first_deny = decision.reasons.iter().find(|r| is_deny(r));
    let withheld_reason = first_deny
        .map_or("consent-obligation", reason_code)
        .to_owned();
    let mut withholds = Vec::new();
    let mut pseudonymise = false;
    let mut unknown = false;
    for obligation in &decision.obligations {
        match consent::ObligationType::try_from(obligation.r#type) {
            Ok(consent::ObligationType::WithholdDataClasses) => {
                let period = obligation.data_period.as_ref();
                withholds.push(Withhold {
                    classes: obligation.data_classes.clone(),
                    include_general: obligation.include_general_data,
                    start_micros: period
                        .and_then(|p| p.start.as_ref())
                        .and_then(super::micros),
                    end_micros: period.and_then(|p| p.end.as_ref()).and_then(super::micros),
                });
            }
            Ok(consent::ObligationType::Pseudonymise) => pseudonymise = true,
            Ok(consent::ObligationType::FlagForReview) => {}
            _ => unknown = true,
        }
    }
    let outcome_deny = decision.outcome != consent::DecisionOutcome::Permit as i32;
    // A decision carrying an obligation this service does not understand is a refusal.
    let mut denied = outcome_deny || unknown;
    let mut overridden = false;
    if break_glass && !unknown && (denied || !withholds.is_empty()) {
        let overridable = decision.reasons.iter().filter(|r| is_deny(r)).all(|r| {
            matches!(
                source(r),
                consent::DecisionSource::PatientDirective
                    | consent::DecisionSource::NationalDataOptOut
            )
        });
        if overridable && first_deny.is_some() {
            denied = false;
            withholds.clear();
            overridden = true;
        }
    }
    Policy {
        denied,
        withholds,
        withheld_reason,
        reasons,
        overridden,
        pseudonymise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consent::{DecisionOutcome as O, DecisionSource as S, ObligationType as T};

    fn reason(source: S, effect: O) -> consent::DecisionReason {
        consent::DecisionReason {
            source: source as i32,
            effect: effect as i32,
            ..Default::default()
        }
    }

    fn withhold(classes: &[&str], general: bool) -> consent::Obligation {
        consent::Obligation {
            r#type: T::WithholdDataClasses as i32,
            data_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            include_general_data: general,
            data_period: None,
        }
    }

    #[test]
    fn withholding_follows_the_obligations() {
        let decision = consent::Decision {
            outcome: O::Permit as i32,
            obligations: vec![withhold(&["mental-health"], false)],
            reasons: vec![
                reason(S::PatientDirective, O::Deny),
                reason(S::Default, O::Permit),
            ],
            ..Default::default()
        };
        let policy = interpret(&decision, false);
        assert!(!policy.denied);
        assert!(policy.withholds(&["mental-health".into()], None));
        assert!(policy.withholds(&["hiv".into(), "mental-health".into()], Some(5)));
        assert!(!policy.withholds(&["hiv".into()], None));
        assert!(!policy.withholds(&[], None));
        assert_eq!(policy.withheld_reason, "patient-dissent");
        assert_eq!(
            policy.reason_codes(),
            ["patient-dissent", "implied-consent-direct-care"]
        );

        // Break glass overrides the patient's dissent.
        let policy = interpret(&decision, true);
        assert!(policy.overridden);
        assert!(!policy.withholds(&["mental-health".into()], None));
    }

    #[test]
    fn platform_rules_and_unknown_obligations_are_not_overridden() {
        let decision = consent::Decision {
            outcome: O::Deny as i32,
            reasons: vec![
                reason(S::PlatformPolicy, O::Deny),
                reason(S::PatientDirective, O::Deny),
            ],
            ..Default::default()
        };
        assert!(interpret(&decision, true).denied);
        let unknown = consent::Decision {
            outcome: O::Permit as i32,
            obligations: vec![consent::Obligation {
                r#type: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(interpret(&unknown, false).denied);
        assert!(interpret(&unknown, true).denied);
        let dissent = consent::Decision {
            outcome: O::Deny as i32,
            reasons: vec![reason(S::PatientDirective, O::Deny)],
            ..Default::default()
        };
        let policy = interpret(&dissent, true);
        assert!(!policy.denied && policy.overridden);
        assert!(interpret(&dissent, false).denied);
    }

    #[test]
    fn withhold_periods_bound_by_effective_time() {
        let mut obligation = withhold(&[], true);
        obligation.data_period = Some(carerecord_contracts::common::v1::Period {
            start: Some(prost_types::Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            end: Some(prost_types::Timestamp {
                seconds: 200,
                nanos: 0,
            }),
        });
        let decision = consent::Decision {
            outcome: O::Permit as i32,
            obligations: vec![obligation],
            ..Default::default()
        };
        let policy = interpret(&decision, false);
        assert!(policy.withholds(&[], Some(150_000_000)));
        assert!(!policy.withholds(&[], Some(200_000_000)));
        assert!(
            policy.withholds(&[], None),
            "records without an effective time are always withheld"
        );
        assert!(!policy.withholds(&["hiv".into()], Some(150_000_000)));
    }
}
