//! Estimation of the m and u probabilities: u from random pairs, m and lambda by expectation
//! maximisation over blocked pairs with u held fixed.
//!
//! Pairs are reduced to level patterns (two bits per field) and counted, so each EM iteration
//! costs one pass over the distinct patterns, not over the pairs.

use std::collections::HashMap;

use super::features::BLOCKING_RULES;
use super::field::{FIELD_COUNT, FIELDS, Field, Level};
use super::model::{Pattern, clamp_probability};

/// What EM starts from, per level (exact, partial, disagree), before any data.
const START_M: [f64; 3] = [0.9, 0.07, 0.03];
const START_U: [f64; 3] = [0.01, 0.04, 0.95];

/// Fields whose m is not estimated but kept at its starting value: agreement on them marks a
/// household as much as a match, and expectation maximisation, which assumes fields
/// independent, takes family members for matches when they count.
pub const HOUSEHOLD_FIELDS: [Field; 2] = [Field::Postcode, Field::Address];

/// The fewest fields a blocking rule's run must estimate for its result to count.
const MIN_FIELDS_PER_RUN: usize = 3;

/// The estimation's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_iterations: u32,
    pub convergence_threshold: f64,
}

/// The estimated probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub m: [[f64; 3]; FIELD_COUNT],
    pub u: [[f64; 3]; FIELD_COUNT],
    /// Over all pairs of active patients.
    pub lambda: f64,
    pub iterations: u32,
    pub converged: bool,
    /// Expected matches among the blocked pairs.
    pub expected_matches: f64,
    /// The fields whose m was estimated (the others keep their starting values).
    pub estimated: [bool; FIELD_COUNT],
}

/// u probabilities: for each field and level, the share of random pairs at that level among those
/// where the field is not missing. Fields never observed keep the starting values.
pub fn u_from_random(random: &[Pattern]) -> [[f64; 3]; FIELD_COUNT] {
    let mut counts = [[0u64; 3]; FIELD_COUNT];
    for p in random {
        for (f, row) in counts.iter_mut().enumerate() {
            let l = p.level(f);
            if l != Level::Missing {
                row[l.index()] += 1;
            }
        }
    }
    let mut u = [[0.0; 3]; FIELD_COUNT];
    for field in FIELDS {
        let f = field.index();
        let total: u64 = counts[f].iter().sum();
        for level in field.levels() {
            let l = level.index();
            u[f][l] = clamp_probability(if total == 0 {
                START_U[l]
            } else {
                counts[f][l] as f64 / total as f64
            });
        }
    }
    normalise_levels(&mut u);
    u
}

// Fields without a partial level put its mass on disagreement so each row sums to one.
fn normalise_levels(p: &mut [[f64; 3]; FIELD_COUNT]) {
    for field in FIELDS {
        if !field.levels().contains(&Level::Partial) {
            let row = &mut p[field.index()];
            row[Level::Disagree.index()] += row[Level::Partial.index()];
            row[Level::Partial.index()] = 0.0;
        }
        let row = &mut p[field.index()];
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|x| *x /= sum);
        }
    }
}

fn start_m() -> [[f64; 3]; FIELD_COUNT] {
    let mut m = [START_M; FIELD_COUNT];
    for field in FIELDS {
        if !field.levels().contains(&Level::Partial) {
            m[field.index()] = [START_M[0] + START_M[1], 0.0, START_M[2]];
        }
    }
    m
}

/// Result of EM over one set of patterns.
struct EmRun {
    m: [[f64; 3]; FIELD_COUNT],
    /// Fields whose m this run estimated (observed and not used by the run's blocking rule).
    estimated: [bool; FIELD_COUNT],
    expected_matches: f64,
    iterations: u32,
    converged: bool,
}

fn log_ratio(
    m: &[[f64; 3]; FIELD_COUNT],
    u: &[[f64; 3]; FIELD_COUNT],
    active: &[bool; FIELD_COUNT],
    p: Pattern,
) -> f64 {
    let mut total = 0.0;
    for f in 0..FIELD_COUNT {
        if !active[f] {
            continue;
        }
        let l = p.level(f);
        if l != Level::Missing {
            total += (m[f][l.index()] / u[f][l.index()]).ln();
        }
    }
    total
}

fn posterior(lambda: f64, log_ratio: f64) -> f64 {
    // p = lambda r / (lambda r + 1 - lambda), computed in log space to avoid overflow.
    let logit = (lambda / (1.0 - lambda)).ln() + log_ratio;
    1.0 / (1.0 + (-logit).exp())
}

fn run_em(
    patterns: &HashMap<Pattern, f64>,
    u: &[[f64; 3]; FIELD_COUNT],
    active: [bool; FIELD_COUNT],
    settings: Settings,
) -> EmRun {
    let total: f64 = patterns.values().sum();
    let mut m = start_m();
    let mut lambda = 0.5;
    let mut iterations = 0;
    let mut converged = false;
    let mut expected = 0.0;
    let mut observed = [false; FIELD_COUNT];
    for p in patterns.keys() {
        for (f, seen) in observed.iter_mut().enumerate() {
            *seen |= p.level(f) != Level::Missing;
        }
    }
    let estimated: [bool; FIELD_COUNT] = std::array::from_fn(|f| active[f] && observed[f]);
    // Two classes need at least three independent fields to be told apart: with fewer the run
    // wanders, and teaches nothing.
    if estimated.iter().filter(|e| **e).count() < MIN_FIELDS_PER_RUN {
        return EmRun {
            m,
            estimated: [false; FIELD_COUNT],
            expected_matches: 0.0,
            iterations: 0,
            converged: true,
        };
    }
    while iterations < settings.max_iterations {
        iterations += 1;
        let mut acc = [[0.0f64; 3]; FIELD_COUNT];
        expected = 0.0;
        for (p, count) in patterns {
            let w = posterior(lambda, log_ratio(&m, u, &active, *p)) * count;
            expected += w;
            for (f, row) in acc.iter_mut().enumerate() {
                let l = p.level(f);
                if l != Level::Missing {
                    row[l.index()] += w;
                }
            }
        }
        let mut change: f64 = 0.0;
        for field in FIELDS {
            let f = field.index();
            let denominator: f64 = acc[f].iter().sum();
            if !estimated[f] || denominator <= 0.0 {
                continue;
            }
            for level in field.levels() {
                let l = level.index();
                let new = clamp_probability(acc[f][l] / denominator);
                change = change.max((new - m[f][l]).abs());
                m[f][l] = new;
            }
        }
        let new_lambda = clamp_probability(expected / total);
        change = change.max((new_lambda - lambda).abs());
        lambda = new_lambda;
        if change < settings.convergence_threshold {
            converged = true;
            break;
        }
    }
    EmRun {
        m,
        estimated,
        expected_matches: expected,
        iterations,
        converged,
    }
}

/// Estimates m and lambda from blocked pairs (each with the mask of the blocking rules that
/// produced it), u held fixed.
///
/// EM runs once per blocking rule over the pairs that rule produced, leaving out the fields the
/// rule relies on (they agree by construction there); a field's m is the average of the runs
/// that estimated it, weighted by their expected matches. Lambda then comes from the union of
/// blocked pairs under the combined m: expected matches divided by `all_pairs`.
pub fn estimate(
    blocked: &[(Pattern, u32)],
    u: [[f64; 3]; FIELD_COUNT],
    all_pairs: f64,
    settings: Settings,
) -> Estimate {
    let mut sum_m = [[0.0f64; 3]; FIELD_COUNT];
    let mut weight_m = [0.0f64; FIELD_COUNT];
    let mut iterations = 0;
    let mut converged = true;
    for (r, (_, used)) in BLOCKING_RULES.iter().enumerate() {
        let mut patterns: HashMap<Pattern, f64> = HashMap::new();
        for (p, mask) in blocked {
            if mask & (1 << r) != 0 {
                *patterns.entry(*p).or_default() += 1.0;
            }
        }
        if patterns.is_empty() {
            continue;
        }
        let active: [bool; FIELD_COUNT] = std::array::from_fn(|f| {
            !used.iter().any(|x| x.index() == f) && !HOUSEHOLD_FIELDS.iter().any(|x| x.index() == f)
        });
        let run = run_em(&patterns, &u, active, settings);
        iterations = iterations.max(run.iterations);
        converged &= run.converged;
        for f in 0..FIELD_COUNT {
            if run.estimated[f] && run.expected_matches > 0.0 {
                for (sum, m) in sum_m[f].iter_mut().zip(run.m[f]) {
                    *sum += m * run.expected_matches;
                }
                weight_m[f] += run.expected_matches;
            }
        }
    }
    let mut m = start_m();
    for field in FIELDS {
        let f = field.index();
        if weight_m[f] > 0.0 {
            for level in field.levels() {
                m[f][level.index()] = clamp_probability(sum_m[f][level.index()] / weight_m[f]);
            }
        }
    }
    for field in HOUSEHOLD_FIELDS {
        let (starting, _) = super::model::starting_values(field);
        for (level, value) in field.levels().iter().zip(starting) {
            m[field.index()][level.index()] = *value;
        }
    }
    normalise_levels(&mut m);
    keep_unobservable_levels(&mut m, blocked, &weight_m);
    make_monotone(&mut m, &u);

    // Lambda over the union of blocked pairs, m and u fixed.
    let mut patterns: HashMap<Pattern, f64> = HashMap::new();
    for (p, _) in blocked {
        *patterns.entry(*p).or_default() += 1.0;
    }
    let total: f64 = patterns.values().sum();
    let ratios: Vec<(f64, f64)> = patterns
        .iter()
        .map(|(p, c)| (log_ratio(&m, &u, &[true; FIELD_COUNT], *p), *c))
        .collect();
    let mut lambda_blocked = 0.5;
    let mut expected = 0.0;
    let mut lambda_converged = total == 0.0;
    for i in 0..settings.max_iterations {
        expected = ratios
            .iter()
            .map(|(r, c)| posterior(lambda_blocked, *r) * c)
            .sum();
        let new = clamp_probability(expected / total);
        let change = (new - lambda_blocked).abs();
        lambda_blocked = new;
        iterations = iterations.max(i + 1);
        if change < settings.convergence_threshold {
            lambda_converged = true;
            break;
        }
    }
    Estimate {
        m,
        u,
        lambda: clamp_probability(if all_pairs > 0.0 {
            expected / all_pairs
        } else {
            0.0
        }),
        iterations,
        converged: converged && lambda_converged,
        expected_matches: expected,
        estimated: weight_m.map(|w| w > 0.0),
    }
}

/// Levels that no blocked pair exhibits keep their starting m, the observed levels sharing the
/// rest in their estimated proportions. This matters for identifiers: an identifier belongs to
/// one patient, so two registered patients never agree on it exactly and the index cannot show
/// how often the same person's records do; a probe, though, often carries the very identifier
/// a registered patient holds.
fn keep_unobservable_levels(
    m: &mut [[f64; 3]; FIELD_COUNT],
    blocked: &[(Pattern, u32)],
    estimated_weight: &[f64; FIELD_COUNT],
) {
    let mut seen = [[false; 3]; FIELD_COUNT];
    for (p, _) in blocked {
        for (f, row) in seen.iter_mut().enumerate() {
            let l = p.level(f);
            if l != Level::Missing {
                row[l.index()] = true;
            }
        }
    }
    let start = start_m();
    for field in FIELDS {
        let f = field.index();
        let levels: Vec<usize> = field.levels().iter().map(|l| l.index()).collect();
        let unseen: Vec<usize> = levels.iter().copied().filter(|&l| !seen[f][l]).collect();
        if estimated_weight[f] == 0.0 || unseen.is_empty() || unseen.len() == levels.len() {
            continue;
        }
        let reserved: f64 = unseen.iter().map(|&l| start[f][l]).sum();
        let observed: f64 = levels
            .iter()
            .filter(|l| !unseen.contains(l))
            .map(|&l| m[f][l])
            .sum();
        for &l in &levels {
            m[f][l] = clamp_probability(if unseen.contains(&l) {
                start[f][l]
            } else {
                m[f][l] / observed * (1.0 - reserved)
            });
        }
    }
}

/// Makes each field's weights non-increasing from exact agreement to disagreement (a closer
/// agreement is never weaker evidence of a match) by pooling adjacent violating levels: the
/// pooled levels share the likelihood ratio sum(m) / sum(u), which keeps the m sum unchanged.
fn make_monotone(m: &mut [[f64; 3]; FIELD_COUNT], u: &[[f64; 3]; FIELD_COUNT]) {
    for field in FIELDS {
        let f = field.index();
        // Blocks of (sum m, sum u, levels), pool-adjacent-violators.
        let mut blocks: Vec<(f64, f64, Vec<usize>)> = Vec::new();
        for level in field.levels() {
            let l = level.index();
            blocks.push((m[f][l], u[f][l], vec![l]));
            while blocks.len() >= 2 {
                let (top_m, top_u, _) = &blocks[blocks.len() - 1];
                let (prev_m, prev_u, _) = &blocks[blocks.len() - 2];
                if prev_m / prev_u >= top_m / top_u {
                    break;
                }
                let (tm, tu, tl) = blocks.pop().unwrap_or_default();
                if let Some(prev) = blocks.last_mut() {
                    prev.0 += tm;
                    prev.1 += tu;
                    prev.2.extend(tl);
                }
            }
        }
        for (sum_m, sum_u, levels) in blocks {
            if levels.len() > 1 {
                for l in levels {
                    m[f][l] = clamp_probability(u[f][l] * sum_m / sum_u);
                }
            }
        }
    }
}

/// A small deterministic generator (SplitMix64) for sampling, so runs reproduce from a seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(rng: &mut SplitMix, probs: &[f64; 3]) -> Level {
        let x = rng.unit();
        if x < probs[0] {
            Level::Exact
        } else if x < probs[0] + probs[1] {
            Level::Partial
        } else {
            Level::Disagree
        }
    }

    fn synthetic_pattern(rng: &mut SplitMix, probs: &[[f64; 3]; FIELD_COUNT]) -> Pattern {
        let mut levels = [Level::Missing; FIELD_COUNT];
        for field in [
            Field::GivenName,
            Field::FamilyName,
            Field::BirthDate,
            Field::Postcode,
            Field::Address,
        ] {
            levels[field.index()] = draw(rng, &probs[field.index()]);
        }
        Pattern::from_levels(&levels)
    }

    #[test]
    fn em_recovers_known_m_and_lambda() {
        let mut true_m = [[0.0; 3]; FIELD_COUNT];
        let mut true_u = [[0.0; 3]; FIELD_COUNT];
        for (f, (m, u)) in [
            (Field::GivenName, ([0.85, 0.10, 0.05], [0.02, 0.05, 0.93])),
            (Field::FamilyName, ([0.80, 0.15, 0.05], [0.01, 0.04, 0.95])),
            (Field::BirthDate, ([0.90, 0.07, 0.03], [0.003, 0.01, 0.987])),
            (Field::Postcode, ([0.75, 0.15, 0.10], [0.001, 0.03, 0.969])),
            (Field::Address, ([0.70, 0.20, 0.10], [0.001, 0.02, 0.979])),
        ] {
            true_m[f.index()] = m;
            true_u[f.index()] = u;
        }
        let mut rng = SplitMix::new(7);
        // Random pairs: all non-matches.
        let random: Vec<Pattern> = (0..200_000)
            .map(|_| synthetic_pattern(&mut rng, &true_u))
            .collect();
        let u = u_from_random(&random);
        for f in [Field::GivenName, Field::BirthDate] {
            for l in 0..3 {
                assert!(
                    (u[f.index()][l] - true_u[f.index()][l]).abs() < 0.005,
                    "u {f:?} {l}"
                );
            }
        }
        // Blocked pairs: 30% matches, produced by the identifier rule (which uses no compared field here).
        let rule = BLOCKING_RULES.iter().position(|(p, _)| *p == "i:").unwrap();
        let blocked: Vec<(Pattern, u32)> = (0..50_000)
            .map(|_| {
                let probs = if rng.unit() < 0.3 { &true_m } else { &true_u };
                (synthetic_pattern(&mut rng, probs), 1 << rule)
            })
            .collect();
        let estimate = estimate(
            &blocked,
            u,
            1e7,
            Settings {
                max_iterations: 200,
                convergence_threshold: 1e-6,
            },
        );
        assert!(estimate.converged);
        for f in [Field::GivenName, Field::FamilyName, Field::BirthDate] {
            for (l, want) in true_m[f.index()].into_iter().enumerate() {
                let got = estimate.m[f.index()][l];
                assert!(
                    (got - want).abs() < 0.02,
                    "m {f:?} level {l}: {got} vs {want}"
                );
            }
        }
        // Household fields keep their starting m (and count towards lambda with it).
        for f in HOUSEHOLD_FIELDS {
            let (starting, _) = crate::domain::model::starting_values(f);
            assert_eq!(&estimate.m[f.index()][..], starting, "{f:?}");
        }
        let expected_matches = estimate.lambda * 1e7;
        assert!(
            (expected_matches - 15_000.0).abs() < 1_500.0,
            "{expected_matches}"
        );
    }

    #[test]
    fn unobserved_fields_keep_starting_values_and_rows_sum_to_one() {
        let u = u_from_random(&[]);
        for field in FIELDS {
            let sum: f64 = u[field.index()].iter().sum();
            assert!((sum - 1.0).abs() < 1e-3, "{field:?} {sum}");
        }
    }

    #[test]
    fn weights_are_made_monotone_keeping_sums() {
        let mut m = [[0.9, 0.07, 0.03]; FIELD_COUNT];
        let u = [[0.01, 0.5, 0.49]; FIELD_COUNT];
        m[Field::Address.index()] = [0.5, 0.1, 0.4];
        make_monotone(&mut m, &u);
        let row = m[Field::Address.index()];
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(row[0], 0.5);
        assert!((row[1] / 0.5 - row[2] / 0.49).abs() < 1e-9, "{row:?}");
    }

    #[test]
    fn exact_agreement_never_seen_keeps_its_starting_m() {
        let field = Field::Identifier.index();
        let mut levels = [Level::Missing; FIELD_COUNT];
        levels[field] = Level::Partial;
        let partial = Pattern::from_levels(&levels);
        levels[field] = Level::Disagree;
        let disagree = Pattern::from_levels(&levels);
        let blocked = [(partial, 1), (disagree, 1), (disagree, 1)];
        let mut m = [[0.0, 0.4, 0.6]; FIELD_COUNT];
        let mut weight = [0.0; FIELD_COUNT];
        weight[field] = 1.0;
        keep_unobservable_levels(&mut m, &blocked, &weight);
        let row = m[field];
        assert_eq!(row[0], START_M[0]);
        assert!((row[1] - 0.4 * (1.0 - START_M[0])).abs() < 1e-9);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Fields not estimated at all are left alone.
        assert_eq!(m[Field::GivenName.index()], [0.0, 0.4, 0.6]);
    }

    #[test]
    fn sampling_is_reproducible_and_in_range() {
        let mut a = SplitMix::new(42);
        let mut b = SplitMix::new(42);
        for _ in 0..1000 {
            let x = a.below(17);
            assert_eq!(x, b.below(17));
            assert!(x < 17);
        }
    }
}
