//! Estimation cannot make matching worse: on the UK-like development data, an estimation run
//! either is not activated (and says why) or does not lower F1; and a run that is activated (on an
//! index of duplicates without households, where estimation has matches to learn from) does not
//! lower F1 either.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::identity::v1::*;
use carerecord_synthetic::Generator;
use carerecord_synthetic::uk::{self, Config, Population};

use crate::helpers::*;

/// Registers `patients`, returning their ids in order.
async fn register(c: &mut Client, patients: &[&Patient]) -> Vec<String> {
    let registered = register_all(c, patients).await;
    registered.into_iter().map(|p| p.patient_id).collect()
}

/// F1 of the predicted pairs against the true ones.
fn f1_score(predicted: &HashSet<(usize, usize)>, truth: &HashSet<(usize, usize)>) -> f64 {
    let correct = predicted.intersection(truth).count() as f64;
    let (precision, recall) = (
        correct / predicted.len().max(1) as f64,
        correct / truth.len().max(1) as f64,
    );
    2.0 * precision * recall / (precision + recall).max(1e-9)
}

/// F1 of MATCH over (probe, index record) pairs: each probe by its demographics, or (when the
/// probes are registered too) by its patient id.
async fn f1(
    c: &mut Client,
    data: &Population,
    index_ids: &[String],
    probe_ids: Option<&[String]>,
) -> f64 {
    let truth: HashSet<(usize, usize)> = data
        .probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| data.index_of[p.person].map(|j| (i, j)))
        .collect();
    let mut predicted = HashSet::new();
    for (i, probe) in data.probes.iter().enumerate() {
        let probe = match probe_ids {
            Some(ids) => match_patients_request::Probe::PatientId(ids[i].clone()),
            None => match_patients_request::Probe::Demographics(probe.patient.clone()),
        };
        let found = ok(c
            .match_patients(MatchPatientsRequest {
                probe: Some(probe),
                max_candidates: 10,
                include_non_matches: false,
            })
            .await);
        for m in found.candidates {
            let id = m.patient.unwrap().patient_id;
            if m.classification == MatchClassification::Match as i32
                && let Some(j) = index_ids.iter().position(|x| *x == id)
            {
                predicted.insert((i, j));
            }
        }
    }
    f1_score(&predicted, &truth)
}

#[tokio::test]
async fn an_estimation_run_never_lowers_f1_on_the_development_data() {
    let data = uk::generate(uk::DEVELOPMENT_SEED, &Config::development(1_500));
    let index: Vec<&Patient> = data.index.iter().map(|r| &r.patient).collect();
    // A second registration cannot hold the NHS number the first holds.
    let probes: Vec<Patient> = data
        .probes
        .iter()
        .map(|r| Patient {
            nhs_number: String::new(),
            ..r.patient.clone()
        })
        .collect();
    let probes: Vec<&Patient> = probes.iter().collect();
    // An index of one record per person, probed by demographics; then one holding the probes
    // too (duplicate registrations to learn from, without their NHS numbers), probed by
    // patient id.
    for with_duplicates in [false, true] {
        on_each_backend(async |c| {
            let index_ids = register(c, &index).await;
            let probe_ids = if with_duplicates {
                Some(register(c, &probes).await)
            } else {
                None
            };
            let before = f1(c, &data, &index_ids, probe_ids.as_deref()).await;
            let estimated = ok(c
                .estimate_match_parameters(EstimateMatchParametersRequest {
                    max_random_pairs: 50_000,
                    random_seed: 11,
                    max_iterations: 200,
                    requester: Some(requester()),
                    ..Default::default()
                })
                .await);
            let names: Vec<&str> = estimated.activation_checks.iter().map(|c| c.check.as_str()).collect();
            assert_eq!(names, ["converged", "expected_matches", "plausible", "held_out_agreement"]);
            assert_eq!(
                estimated.activated,
                estimated.activation_checks.iter().all(|c| c.passed),
                "{:?}",
                estimated.activation_checks
            );
            let after = f1(c, &data, &index_ids, probe_ids.as_deref()).await;
            assert!(
                after >= before,
                "duplicates in the index: {with_duplicates}; F1 {before:.4} -> {after:.4}; {:?}",
                estimated.activation_checks
            );
            eprintln!(
                "duplicates in the index: {with_duplicates}: F1 {before:.4} -> {after:.4}, activated {}: {:?}",
                estimated.activated,
                estimated.activation_checks
            );
        })
        .await;
    }
}

/// F1 of MATCH over unordered pairs of registered records, each probed by its patient id.
async fn f1_of_pairs(c: &mut Client, ids: &[String], truth: &HashSet<(usize, usize)>) -> f64 {
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut predicted = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let found = ok(c
            .match_patients(MatchPatientsRequest {
                probe: Some(match_patients_request::Probe::PatientId(id.clone())),
                max_candidates: 10,
                include_non_matches: false,
            })
            .await);
        for m in found.candidates {
            if m.classification == MatchClassification::Match as i32
                && let Some(&j) = index.get(m.patient.unwrap().patient_id.as_str())
            {
                predicted.insert((i.min(j), i.max(j)));
            }
        }
    }
    f1_score(&predicted, truth)
}

#[tokio::test]
async fn an_activated_estimation_run_does_not_lower_f1() {
    // Registrations with a quarter noisy duplicates and no households, as FEBRL's data.
    let population = Generator::new(5).population(600, 0.25);
    let patients: Vec<&Patient> = population.iter().map(|g| &g.patient).collect();
    let root = |i: usize| population[i].duplicate_of.unwrap_or(i);
    let truth: HashSet<(usize, usize)> = (0..population.len())
        .flat_map(|j| (0..j).map(move |i| (i, j)))
        .filter(|&(i, j)| root(i) == root(j))
        .collect();
    assert!(truth.len() > 50, "{} true pairs", truth.len());
    on_each_backend(async |c| {
        let ids = register(c, &patients).await;
        let before = f1_of_pairs(c, &ids, &truth).await;
        let estimated = ok(c
            .estimate_match_parameters(EstimateMatchParametersRequest {
                random_seed: 11,
                max_iterations: 200,
                requester: Some(requester()),
                ..Default::default()
            })
            .await);
        assert!(estimated.activated, "{:?}", estimated.activation_checks);
        let after = f1_of_pairs(c, &ids, &truth).await;
        assert!(
            after >= before,
            "F1 {before:.4} -> {after:.4}; {:?}",
            estimated.activation_checks
        );
        eprintln!("activated run: F1 {before:.4} -> {after:.4}");
    })
    .await;
}
