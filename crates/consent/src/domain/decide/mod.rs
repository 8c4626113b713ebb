//! The decision: patient directives evaluated as data (FHIR R5 nesting), the national data opt-out,
//! and the platform rules' verdicts, combined cell by cell as the contract's DECISION SEMANTICS say.
//!
//! Pure: the platform rules arrive already evaluated for the request context ([`PlatformVerdicts`]),
//! because they do not depend on the patient; this module never calls the policy engine.
//!
//! `context` holds the inputs besides the patient, `compiled` the patient's directives compiled
//! for evaluation, `evaluate` one directive's verdict for one cell, `decision` the result, and
//! `explain` the reasons in words; this module combines them cell by cell.

mod compiled;
mod context;
mod decision;
mod evaluate;
mod explain;
#[cfg(test)]
mod tests;

pub use compiled::{CompiledDirective, CompiledRules};
pub use context::{ClassVerdicts, Context, PlatformVerdicts, RuleMatch};
pub use decision::{Decision, Obligation, Reason, Source};

use std::sync::Arc;

use evaluate::{DirectiveResult, Path, evaluate_directive};

use crate::domain::codes::{Class, DataClass, Purpose};
use crate::domain::optout::{
    CheckValidity, DirectiveVerdict, OptOutStatus, PatientConsent, RecordedCheck,
};
use crate::domain::time::{Instant, Period, instant_from_micros};

/// The first instant after the evaluation time `at` at which a decision on the same recorded state
/// could differ with time alone: a directive's or a provision's period starts or ends, or the
/// opt-out check (judged at `now_micros`, as decisions judge it) expires; the platform rules do
/// not depend on time. `None`: no such instant.
pub fn valid_until(
    directives: &[CompiledDirective],
    opt_out: Option<RecordedCheck>,
    validity: CheckValidity,
    at: Instant,
    now_micros: i64,
) -> Option<Instant> {
    let mut boundaries = Vec::new();
    for directive in directives {
        directive.time_boundaries(&mut boundaries);
    }
    boundaries.retain(|&b| b > at);
    if let Some(check) = opt_out.filter(|c| validity.holds(c.check_time, now_micros)) {
        boundaries.push(instant_from_micros(validity.expiry(check.check_time)));
    }
    boundaries.into_iter().min()
}

/// A reason while cells are evaluated: no strings, so evaluation does not allocate per cell.
#[derive(Debug, Clone, PartialEq)]
struct RawReason {
    source: Source,
    /// Index into the applicable directives (sorted by directive_id).
    directive: Option<usize>,
    path: Path,
    rule: Option<Arc<str>>,
    permit: bool,
}

/// The reasons of one decision, deduplicated (a decision has few, so a linear scan is cheapest).
fn add_reason(reasons: &mut Vec<RawReason>, reason: RawReason) {
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}

fn rule_reason(rule: &RuleMatch, permit: bool) -> RawReason {
    RawReason {
        source: Source::PlatformPolicy,
        directive: None,
        path: Path::default(),
        rule: Some(rule.policy_id.clone()),
        permit,
    }
}

fn plain_reason(source: Source, permit: bool) -> RawReason {
    RawReason {
        source,
        directive: None,
        path: Path::default(),
        rule: None,
        permit,
    }
}

/// Decides for one patient: `directives` are the patient's ACTIVE directives (any order), `opt_out`
/// the national data opt-out status at the time of the decision, `platform` the rules' verdicts for
/// `ctx`.
pub fn decide(
    ctx: &Context,
    platform: &PlatformVerdicts,
    directives: &[CompiledDirective],
    opt_out: OptOutStatus,
    explain: bool,
) -> Decision {
    let mut applicable: Vec<&CompiledDirective> =
        directives.iter().filter(|d| d.applies(ctx)).collect();
    applicable.sort_by(|a, b| a.directive_id.cmp(&b.directive_id));

    // The effective-time axis is split at every boundary of the data periods consulted; each interval
    // is evaluated at its start (the first at minus infinity), which every data period either contains
    // for the whole interval or not at all.
    let mut bounds = Vec::new();
    for d in &applicable {
        d.provisions.iter().for_each(|n| n.boundaries(&mut bounds));
    }
    bounds.sort_unstable();
    bounds.dedup();
    let starts: Vec<Instant> = std::iter::once(Instant::MIN)
        .chain(bounds.iter().copied())
        .collect();

    let mut raw: Vec<RawReason> = Vec::new();
    let mut results: Vec<DirectiveResult> = Vec::with_capacity(applicable.len());
    let mut any_permit = false;
    let mut pseudonymise = false;
    let mut rule_flag = false;
    // Denied classes per interval, as a bit mask over Class::index().
    let mut denied = vec![0u16; starts.len()];

    for (k, &data_time) in starts.iter().enumerate() {
        for class in ctx.cell_classes() {
            let verdicts = &platform.classes[class.index()];
            let permit = decide_cell(
                ctx,
                verdicts,
                &applicable,
                opt_out,
                class,
                data_time,
                &mut CellOut {
                    reasons: &mut raw,
                    results: &mut results,
                    pseudonymise: &mut pseudonymise,
                    rule_flag: &mut rule_flag,
                },
            );
            if permit {
                any_permit = true;
            } else {
                denied[k] |= 1 << class.index();
            }
        }
    }

    let mut obligations = Vec::new();
    if any_permit {
        let mut k = 0;
        while k < starts.len() {
            let mut next = k + 1;
            while next < starts.len() && denied[next] == denied[k] {
                next += 1;
            }
            if denied[k] != 0 {
                let classes = DataClass::ALL
                    .into_iter()
                    .filter(|c| denied[k] & (1 << (*c as usize)) != 0)
                    .collect();
                obligations.push(Obligation::Withhold {
                    classes,
                    general: denied[k] & (1 << Class::General.index()) != 0,
                    data_period: Period {
                        start: (k > 0).then(|| starts[k]),
                        end: starts.get(next).copied(),
                    },
                });
            }
            k = next;
        }
        if pseudonymise {
            obligations.push(Obligation::Pseudonymise);
        }
    }
    let flag =
        ctx.break_glass || (any_permit && (ctx.legal_basis.is_asserted_override() || rule_flag));
    if flag {
        obligations.push(Obligation::FlagForReview);
    }

    // Listing order: source, directive_id, provision path (index by index), policy id.
    raw.sort_by(|a, b| {
        let id = |r: &RawReason| {
            r.directive
                .map_or("", |i| applicable[i].directive_id.as_str())
        };
        (
            a.source,
            id(a),
            a.path.as_slice(),
            a.rule.as_deref().unwrap_or(""),
            a.permit,
        )
            .cmp(&(
                b.source,
                id(b),
                b.path.as_slice(),
                b.rule.as_deref().unwrap_or(""),
                b.permit,
            ))
    });
    let mut reasons: Vec<Reason> = raw
        .iter()
        .map(|r| {
            let directive = r.directive.map(|i| applicable[i]);
            Reason {
                source: r.source,
                directive_id: directive.map_or_else(String::new, |d| d.directive_id.clone()),
                provision_path: r.path.as_slice().iter().map(|i| u32::from(*i)).collect(),
                policy_id: r.rule.as_deref().unwrap_or("").to_owned(),
                permit: r.permit,
                directive_version: directive.map_or(0, |d| d.version),
                explanation: String::new(),
            }
        })
        .collect();
    if explain {
        for reason in &mut reasons {
            reason.explanation = explain::explain(reason, ctx, platform, &applicable, opt_out);
        }
    }
    Decision {
        permit: any_permit,
        obligations,
        reasons,
    }
}

/// Where one cell's evaluation writes: reasons, scratch space, obligations of permitting rules.
struct CellOut<'a> {
    reasons: &'a mut Vec<RawReason>,
    results: &'a mut Vec<DirectiveResult>,
    pseudonymise: &'a mut bool,
    rule_flag: &'a mut bool,
}

/// Steps 1 to 7 of the contract for one cell; returns whether the cell is permitted.
fn decide_cell(
    ctx: &Context,
    verdicts: &ClassVerdicts,
    applicable: &[&CompiledDirective],
    opt_out: OptOutStatus,
    class: Class,
    data_time: Instant,
    out: &mut CellOut<'_>,
) -> bool {
    // 1. A platform FORBID rule: nothing overrides it.
    if !verdicts.forbid.is_empty() {
        for rule in &verdicts.forbid {
            add_reason(out.reasons, rule_reason(rule, false));
        }
        return false;
    }

    // The directives' verdict for the cell: DENY if any denies, else explicit PERMIT if any, else none.
    out.results.clear();
    out.results.extend(
        applicable
            .iter()
            .map(|d| evaluate_directive(d, ctx, class, data_time)),
    );
    let results = &*out.results;
    let verdict = if results.iter().any(|r| !r.permit) {
        DirectiveVerdict::Deny
    } else if results.iter().any(|r| r.explicit) {
        DirectiveVerdict::ExplicitPermit {
            study_specific: results.iter().any(|r| r.study_specific),
        }
    } else {
        DirectiveVerdict::NoObjection
    };

    // 2. The national data opt-out, for an opted-out patient or one whose status is unknown (fail
    // closed), unless an exemption rule sets it aside. An exemption is cited for an opted-out
    // patient; where the status is unknown and an exemption applies, the status did not matter. An
    // unknown status never touches the patient's own care or request, whatever the exemption rules
    // say: a missing check must not hold up care.
    let unknown_for_care = opt_out.is_unknown() && ctx.purpose.serves_the_patient();
    if opt_out.withholds() && !unknown_for_care {
        let source = if opt_out.is_unknown() {
            Source::OptOutStatusUnknown
        } else {
            Source::NationalDataOptOut
        };
        match &verdicts.exemptions[PatientConsent::of(verdict).index()] {
            Some(exemption) if source == Source::NationalDataOptOut => add_reason(
                out.reasons,
                RawReason {
                    rule: Some(exemption.policy_id.clone()),
                    ..plain_reason(source, true)
                },
            ),
            Some(_) => {}
            None => {
                add_reason(out.reasons, plain_reason(source, false));
                return false;
            }
        }
    }

    // 3. A platform OVERRIDE rule.
    if !verdicts.overrides.is_empty() {
        for rule in &verdicts.overrides {
            *out.pseudonymise |= rule.pseudonymise;
            *out.rule_flag |= rule.flag_for_review;
            add_reason(out.reasons, rule_reason(rule, true));
        }
        return true;
    }

    // 4. and 5. The patient's directives.
    let directive_reason = |i: usize, r: &DirectiveResult| RawReason {
        source: Source::PatientDirective,
        directive: Some(i),
        path: r.path,
        rule: None,
        permit: r.permit,
    };
    match verdict {
        DirectiveVerdict::Deny => {
            for (i, r) in results.iter().enumerate().filter(|(_, r)| !r.permit) {
                add_reason(out.reasons, directive_reason(i, r));
            }
            return false;
        }
        DirectiveVerdict::ExplicitPermit { .. } => {
            for (i, r) in results.iter().enumerate().filter(|(_, r)| r.explicit) {
                add_reason(out.reasons, directive_reason(i, r));
            }
            return true;
        }
        DirectiveVerdict::NoObjection => {}
    }

    // 6. Platform DEFAULT rules, deny winning.
    if let Some((permit, rules)) = &verdicts.default {
        for rule in rules {
            if *permit {
                *out.pseudonymise |= rule.pseudonymise;
                *out.rule_flag |= rule.flag_for_review;
            }
            add_reason(out.reasons, rule_reason(rule, *permit));
        }
        return *permit;
    }

    // 7. The contract's built-in default: implied consent for individual care, and the patient's
    // right of access to their own record. A matching DEFAULT rule (step 6) comes first, so a
    // deployment changes this default in its policy file.
    let permit = builtin_permits(ctx);
    add_reason(out.reasons, plain_reason(Source::Default, permit));
    permit
}

/// The built-in default (step 7): individual care (TREAT, ETREAT), and the patient reading their
/// own record (PATRQT with the patient as requester; subject access, UK GDPR Art. 15).
pub(super) fn builtin_permits(ctx: &Context) -> bool {
    match ctx.purpose {
        Purpose::Treat | Purpose::Etreat => true,
        Purpose::Patrqt => ctx.requester_is_patient,
        _ => false,
    }
}
