//! Which pairs of records are compared: a probe's candidates beyond its own blocking keys, and the
//! pairs sampled to estimate the model.

use std::collections::HashMap;

use super::estimate::{self, Estimate, SplitMix};
use super::features::{BLOCKING_RULES, Features, is_identifier_key, rule_of};
use super::field::{Field, Level};
use super::model::{self, Classification, Model, Pattern};
use super::score::PairScore;

/// The blocking keys, beyond the probe's own, of the candidates the probe identifies: holders of
/// its NHS number or of one of its identifiers whose demographics agree enough to classify as a
/// match (a noisy identifier alone is evidence, not proof). Each record these keys find is still
/// scored against the probe, never against the holder. An NHS number or identifier belongs to one
/// live patient, so there are at most a few holders.
pub fn identified_keys(
    probe: &Features,
    probe_keys: &[String],
    probe_id: Option<&str>,
    candidates: &[(String, Features)],
    scores: &[PairScore],
    model: &Model,
) -> Vec<String> {
    let mut keys = Vec::new();
    for ((id, candidate), score) in candidates.iter().zip(scores) {
        let identified = (!probe.nhs_number.is_empty() && probe.nhs_number == candidate.nhs_number)
            || probe
                .identifiers
                .iter()
                .any(|i| candidate.identifiers.contains(i));
        if !identified
            || probe_id == Some(id.as_str())
            || score.classify(model) != Classification::Match
        {
            continue;
        }
        for key in candidate.blocking_keys() {
            // Identifier keys find only their holder, which is already here.
            if !is_identifier_key(&key) && !probe_keys.contains(&key) && !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// How many pairs an estimation samples, and how it runs.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub max_random_pairs: i64,
    pub max_blocked_pairs: i64,
    pub seed: u64,
    pub settings: estimate::Settings,
}

/// An estimate and the pairs it was made from.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub estimate: Estimate,
    pub random_pairs: i64,
    pub blocked_pairs: i64,
    /// Blocked pairs kept out of the estimation (indexes into the records), to check it on.
    pub held_out: Vec<(u32, u32)>,
    /// Whether the index looks like one without households: of the blocked pairs at one
    /// address, few are different people (given name and birth date both disagreeing).
    pub households_absent: bool,
}

/// Below this share of different people among pairs at one address, an index has no
/// households to speak of (its pairs at one address are duplicates).
const HOUSEHOLD_SHARE: f64 = 0.2;
/// Fewer pairs at one address than this, and the share says nothing.
const MIN_PAIRS_AT_ONE_ADDRESS: usize = 20;

/// The share of blocked pairs held out of estimation, and at most how many.
const HELD_OUT_SHARE: f64 = 0.2;
const MAX_HELD_OUT: usize = 200_000;

/// Estimates the model from all active patients' features (CPU-bound): u from random pairs, m and
/// lambda from blocked pairs. `None` when no two records share a blocking key.
pub fn estimate_from(records: &[(String, Features)], sampling: Sampling) -> Option<Sampled> {
    let n = records.len() as u64;
    let all_pairs = n as f64 * (n as f64 - 1.0) / 2.0;
    let mut rng = SplitMix::new(sampling.seed);
    // u: uniformly random distinct pairs.
    let random_count = (sampling.max_random_pairs as f64).min(all_pairs) as usize;
    let mut random = Vec::with_capacity(random_count);
    for _ in 0..random_count {
        let a = rng.below(n);
        let mut b = rng.below(n - 1);
        if b >= a {
            b += 1;
        }
        random.push(model::pattern(
            &records[a as usize].1,
            &records[b as usize].1,
        ));
    }
    let u = estimate::u_from_random(&random);
    drop(random);

    // Blocked pairs, each with the mask of the rules producing it, sampled uniformly when
    // there are more than `max_blocked_pairs`.
    let mut blocks: HashMap<&str, Vec<u32>> = HashMap::new();
    let keys: Vec<Vec<String>> = records.iter().map(|(_, f)| f.blocking_keys()).collect();
    for (i, ks) in keys.iter().enumerate() {
        for k in ks {
            blocks.entry(k.as_str()).or_default().push(i as u32);
        }
    }
    let total: f64 = blocks
        .values()
        .map(|b| (b.len() * (b.len().saturating_sub(1)) / 2) as f64)
        .sum();
    if total == 0.0 {
        return None;
    }
    let keep = (sampling.max_blocked_pairs as f64 / total).min(1.0);
    let mut pairs: HashMap<(u32, u32), u32> = HashMap::new();
    let mut block_list: Vec<(&&str, &Vec<u32>)> = blocks.iter().collect();
    block_list.sort_by(|a, b| a.0.cmp(b.0)); // reproducible from the seed
    for (key, members) in block_list {
        let Some(rule) = rule_of(key) else { continue };
        for x in 0..members.len() {
            for y in x + 1..members.len() {
                if keep < 1.0 && rng.unit() >= keep {
                    continue;
                }
                let pair = (members[x].min(members[y]), members[x].max(members[y]));
                *pairs.entry(pair).or_default() |= 1 << rule;
            }
        }
    }
    let mut sorted: Vec<((u32, u32), u32)> = pairs.into_iter().collect();
    sorted.sort_unstable(); // reproducible from the seed
    let mut held_out = Vec::new();
    let mut blocked: Vec<(Pattern, u32)> = Vec::with_capacity(sorted.len());
    let (mut at_one_address, mut different_people) = (0usize, 0usize);
    for ((a, b), mask) in sorted {
        let pattern = model::pattern(&records[a as usize].1, &records[b as usize].1);
        if pattern.level(Field::Address.index()) == Level::Exact {
            at_one_address += 1;
            different_people += usize::from(
                pattern.level(Field::GivenName.index()) == Level::Disagree
                    && pattern.level(Field::BirthDate.index()) == Level::Disagree,
            );
        }
        if held_out.len() < MAX_HELD_OUT && rng.unit() < HELD_OUT_SHARE {
            held_out.push((a, b));
            continue;
        }
        blocked.push((pattern, mask));
    }
    let households_absent = at_one_address >= MIN_PAIRS_AT_ONE_ADDRESS
        && (different_people as f64) < HOUSEHOLD_SHARE * at_one_address as f64;
    debug_assert!(BLOCKING_RULES.len() <= 32);
    let est = estimate::estimate(&blocked, u, all_pairs, sampling.settings);
    // Lambda is over all pairs: scale the sampled, not held-out, blocked pairs back up.
    let used = 1.0 - held_out.len() as f64 / (held_out.len() + blocked.len()).max(1) as f64;
    let estimate = Estimate {
        lambda: model::clamp_probability(est.expected_matches / keep / used / all_pairs),
        ..est
    };
    Some(Sampled {
        estimate,
        random_pairs: random_count as i64,
        blocked_pairs: blocked.len() as i64,
        held_out,
        households_absent,
    })
}
