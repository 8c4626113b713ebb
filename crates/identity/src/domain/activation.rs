//! Whether an estimated model may replace the current one: checks that catch a run that
//! converged on the wrong thing (for example on family members and namesakes, in an index
//! that holds one record per person), so that estimation cannot make matching worse.

use super::estimate::Estimate;
use super::features::Features;
use super::field::{FIELDS, Field, Level};
use super::model::{Classification, Model};
use super::score::{NameFrequencies, Scorer};

/// Fewer expected matches than this, and m was estimated from near misses.
pub const MIN_EXPECTED_MATCHES: f64 = 20.0;
/// Plausibility bounds on the estimated m.
const MIN_M_EXACT: f64 = 0.3;
const MIN_EXACT_WEIGHT: f64 = 0.5;
const MAX_M_DISAGREE: f64 = 0.25;
const MIN_M_FAMILY_DISAGREE: f64 = 0.005;
/// Family names change more often than given names and birth dates (marriages).
const MAX_M_FAMILY_DISAGREE: f64 = 0.4;
/// Held-out agreement: the share of the current model's MATCH pairs the new model must keep,
/// and the share of the new model's MATCH pairs that may come from the current NON_MATCH.
const MIN_KEPT: f64 = 0.8;
const MAX_OVERTURNED: f64 = 0.25;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

fn check(name: &'static str, passed: bool, detail: String) -> Check {
    Check {
        name,
        passed,
        detail,
    }
}

/// What the checks read besides the estimate.
pub struct Context<'a> {
    pub records: &'a [(String, Features)],
    pub held_out: &'a [(u32, u32)],
    /// The current model, if there is one.
    pub current: Option<&'a Model>,
    pub new: &'a Model,
    pub frequencies: &'a NameFrequencies,
}

/// The activation checks of an estimate, in the contract's order.
pub fn checks(estimate: &Estimate, context: &Context) -> Vec<Check> {
    vec![
        check(
            "converged",
            estimate.converged,
            format!(
                "{} after {} iterations",
                if estimate.converged {
                    "converged"
                } else {
                    "did not converge"
                },
                estimate.iterations
            ),
        ),
        check(
            "expected_matches",
            estimate.expected_matches >= MIN_EXPECTED_MATCHES,
            format!(
                "{:.1} expected matches among the blocked pairs (at least {MIN_EXPECTED_MATCHES} needed)",
                estimate.expected_matches
            ),
        ),
        plausible(estimate),
        held_out_agreement(context),
    ]
}

fn plausible(estimate: &Estimate) -> Check {
    let mut problems = Vec::new();
    for field in FIELDS {
        let f = field.index();
        if !estimate.estimated[f] {
            continue;
        }
        let (m, u) = (estimate.m[f], estimate.u[f]);
        let exact = Level::Exact.index();
        let disagree = Level::Disagree.index();
        if m[exact] < MIN_M_EXACT {
            problems.push(format!(
                "{}: m(exact) {:.3} < {MIN_M_EXACT}",
                field.name(),
                m[exact]
            ));
        }
        if (m[exact] / u[exact]).log2() < MIN_EXACT_WEIGHT {
            problems.push(format!(
                "{}: exact agreement weighs {:.2} < {MIN_EXACT_WEIGHT}",
                field.name(),
                (m[exact] / u[exact]).log2()
            ));
        }
        let max_disagree = match field {
            Field::GivenName | Field::BirthDate => MAX_M_DISAGREE,
            Field::FamilyName => MAX_M_FAMILY_DISAGREE,
            _ => 1.0,
        };
        if m[disagree] > max_disagree {
            problems.push(format!(
                "{}: m(disagree) {:.3} > {max_disagree}",
                field.name(),
                m[disagree]
            ));
        }
        if field == Field::FamilyName && m[disagree] < MIN_M_FAMILY_DISAGREE {
            problems.push(format!(
                "family_name: m(disagree) {:.4} < {MIN_M_FAMILY_DISAGREE} (surnames do change)",
                m[disagree]
            ));
        }
    }
    let passed = problems.is_empty();
    check(
        "plausible",
        passed,
        if passed {
            "every estimated m within bounds".to_owned()
        } else {
            problems.join("; ")
        },
    )
}

fn held_out_agreement(context: &Context) -> Check {
    let Some(current) = context.current else {
        return check(
            "held_out_agreement",
            true,
            "no current parameters to compare with".to_owned(),
        );
    };
    let classify = |model: &Model, a: u32, b: u32| {
        let scorer = Scorer::new(model, context.frequencies);
        let (p, c) = (
            &context.records[a as usize].1,
            &context.records[b as usize].1,
        );
        scorer.score(p, c).classify(model)
    };
    let (mut current_matches, mut new_matches, mut kept, mut overturned) = (0, 0, 0, 0);
    for &(a, b) in context.held_out {
        let was = classify(current, a, b);
        let is = classify(context.new, a, b);
        current_matches += usize::from(was == Classification::Match);
        if is == Classification::Match {
            new_matches += 1;
            kept += usize::from(was == Classification::Match);
            overturned += usize::from(was == Classification::NonMatch);
        }
    }
    let kept_share = if current_matches == 0 {
        1.0
    } else {
        kept as f64 / current_matches as f64
    };
    // A couple of pairs either way is noise, not a verdict.
    let passed =
        kept_share >= MIN_KEPT && overturned as f64 <= MAX_OVERTURNED * new_matches as f64 + 2.0;
    check(
        "held_out_agreement",
        passed,
        format!(
            "{} held-out pairs: {current_matches} MATCH now, {new_matches} with the new parameters; {kept} kept ({:.0}%, at least {:.0}% needed), {overturned} from NON_MATCH (at most {:.0}% allowed)",
            context.held_out.len(),
            100.0 * kept_share,
            100.0 * MIN_KEPT,
            100.0 * MAX_OVERTURNED
        ),
    )
}
