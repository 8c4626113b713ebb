//! MatchPatients (blocking, Fellegi-Sunter scoring, and the evidence of each candidate), and the
//! match parameters: GetMatchParameters and EstimateMatchParameters.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::identity::v1::match_patients_request::Probe;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;

use super::IdentityService;
use super::request::{check_requester, required_id, valid};
use crate::convert::{classification_to_proto, evidence, field_parameters};
use crate::domain::features::Features;
use crate::domain::model::{Classification, Model};
use crate::domain::pairs::{Sampling, estimate_from, identified_keys};
use crate::domain::patient::timestamp;
use crate::domain::score::{PairScore, Scorer};
use crate::domain::validate;
use crate::domain::{activation, estimate};
use crate::error::{Error, MATCH_PARAMETERS};

/// Random pairs an estimation samples unless the request asks for fewer (the configured bound
/// still applies).
const DEFAULT_RANDOM_PAIRS: i64 = 1_000_000;
const DEFAULT_ITERATIONS: u32 = 25;
const MAX_ITERATIONS: u32 = 1000;
const DEFAULT_CONVERGENCE: f64 = 0.0001;

/// What to match: a stored patient, or demographics.
enum MatchProbe {
    Patient(String),
    Demographics(Features),
}

/// The relaxed validation of a demographics probe.
fn check_probe(p: &Patient, v: &mut Violations) {
    let has_name = p
        .names
        .iter()
        .any(|n| !n.family.trim().is_empty() || n.given.iter().any(|g| !g.trim().is_empty()));
    let has_id = p
        .identifiers
        .iter()
        .any(|i| !i.system.trim().is_empty() && !i.value.trim().is_empty());
    if p.nhs_number.trim().is_empty() && !has_id && !has_name && p.birth_date.is_none() {
        v.add(
            "demographics",
            "needs at least one of nhs_number, identifiers, a name with a family or given name, or birth_date",
        );
    }
    if !p.nhs_number.trim().is_empty()
        && carerecord_platform::nhs_number::digits(&p.nhs_number).is_err()
    {
        v.add(
            "demographics.nhs_number",
            "must be ten digits (spaces and dashes allowed)",
        );
    }
    if let Some(d) = &p.birth_date {
        validate::check_birth_date(d, "demographics.birth_date", v);
    }
    if let Some(d) = &p.deceased_date {
        validate::check_date(d, "demographics.deceased_date", v);
    }
}

/// A scored candidate: its weight, probability and class, and its index among the candidates.
type Scored = (f64, f64, Classification, usize);

impl IdentityService {
    pub(super) async fn find_matches(
        &self,
        request: MatchPatientsRequest,
    ) -> Result<MatchPatientsResponse, Error> {
        let mut v = Violations::new();
        let max = v.page_size_within("max_candidates", request.max_candidates, 10, 100);
        let probe = match &request.probe {
            None => {
                v.add("probe", "demographics or patient_id is required");
                None
            }
            Some(Probe::PatientId(id)) => {
                required_id(&mut v, "patient_id", id).map(MatchProbe::Patient)
            }
            Some(Probe::Demographics(p)) => {
                check_probe(p, &mut v);
                Some(MatchProbe::Demographics(Features::of(p)))
            }
        };
        let probe = valid(v, probe)?;
        let (probe_id, features) = match probe {
            MatchProbe::Patient(id) => {
                let stored = self
                    .store
                    .get(&id)
                    .await?
                    .ok_or_else(|| Error::patient_not_found(&id))?;
                (Some(id), stored.features)
            }
            MatchProbe::Demographics(f) => (None, f),
        };
        let current = self.parameters.get().await?;
        let (params, model) = (&current.0, &current.1);
        let frequencies = self.frequencies.get().await?;
        let scorer = Scorer::new(model, &frequencies);
        let keys = features.blocking_keys();
        let mut candidates = self.store.candidates(&keys).await?;
        let score = |f: &Features| scorer.score(&features, f);
        let mut scores: Vec<PairScore> = candidates.iter().map(|(_, f)| score(f)).collect();
        // The person the probe names, through its identifiers, is a second description of the
        // probe: other records of that person, registered without the identifier and too noisy
        // to share a blocking key with the probe, share one with that description.
        let more_keys = identified_keys(
            &features,
            &keys,
            probe_id.as_deref(),
            &candidates,
            &scores,
            model,
        );
        if !more_keys.is_empty() {
            let seen: HashSet<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
            for (id, f) in self.store.candidates(&more_keys).await? {
                if !seen.contains(&id) {
                    scores.push(score(&f));
                    candidates.push((id, f));
                }
            }
        }
        let mut ranked: Vec<(f64, &str, usize)> = Vec::with_capacity(candidates.len());
        for (i, ((id, _), score)) in candidates.iter().zip(&scores).enumerate() {
            if probe_id.as_deref() != Some(id.as_str()) {
                ranked.push((score.weight, id, i));
            }
        }
        let compared = ranked.len() as i32;
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut out: Vec<Scored> = Vec::new();
        let mut non_matches = Vec::new();
        for (weight, _, i) in ranked {
            let probability = model.probability(weight);
            let class = scores[i].classify(model);
            if class == Classification::NonMatch {
                if request.include_non_matches && non_matches.len() < max.get() {
                    non_matches.push((weight, probability, class, i));
                }
                continue;
            }
            if out.len() < max.get() {
                out.push((weight, probability, class, i));
            }
        }
        out.extend(non_matches);
        out.truncate(max.get());
        let wanted: Vec<String> = out.iter().map(|c| candidates[c.3].0.clone()).collect();
        let mut stored: HashMap<String, Patient> = self
            .store
            .get_many(&wanted)
            .await?
            .into_iter()
            .map(|s| (s.patient.patient_id.clone(), s.patient))
            .collect();
        let candidates = out
            .into_iter()
            .map(|(weight, probability, class, i)| {
                let (id, f) = &candidates[i];
                let patient = stored
                    .remove(id)
                    .ok_or_else(|| Error::Corrupt(format!("candidate {id} vanished")))?;
                Ok(MatchCandidate {
                    patient: Some(patient),
                    match_probability: probability,
                    match_weight: weight,
                    classification: classification_to_proto(class) as i32,
                    evidence: evidence(scorer.explain(&features, f)),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(MatchPatientsResponse {
            candidates,
            parameters_version: params.parameters_version,
            prior_match_probability: params.prior_match_probability,
            match_threshold: params.match_threshold,
            possible_threshold: params.possible_threshold,
            pairs_compared: compared,
        })
    }

    pub(super) async fn match_parameters(
        &self,
        request: GetMatchParametersRequest,
    ) -> Result<GetMatchParametersResponse, Error> {
        let version = request.parameters_version;
        if version < 0 {
            return Err(Error::invalid("parameters_version", "must not be negative"));
        }
        let params = self
            .store
            .parameters((version > 0).then_some(version))
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: MATCH_PARAMETERS,
                name: if version == 0 {
                    "current".to_owned()
                } else {
                    version.to_string()
                },
            })?;
        Ok(GetMatchParametersResponse {
            parameters: Some(params),
        })
    }

    pub(super) async fn estimate(
        &self,
        request: EstimateMatchParametersRequest,
    ) -> Result<EstimateMatchParametersResponse, Error> {
        let mut v = Violations::new();
        check_requester(request.requester.as_ref(), &mut v);
        for (field, value) in [
            ("max_random_pairs", request.max_random_pairs),
            ("max_blocked_pairs", request.max_blocked_pairs),
            ("max_iterations", i64::from(request.max_iterations)),
            ("random_seed", request.random_seed),
        ] {
            if value < 0 {
                v.add(field, "must not be negative");
            }
        }
        if !(0.0..1.0).contains(&request.convergence_threshold) {
            v.add("convergence_threshold", "must be in [0, 1)");
        }
        v.into_result()?;
        let Ok(_running) = self.estimating.try_lock() else {
            return Err(Error::EstimationInProgress);
        };
        let settings = &self.settings;
        let records = self.store.active_features().await?;
        let n = records.len();
        if n < 2 {
            return Err(Error::InsufficientData(format!(
                "{n} active patients; at least 2 are needed"
            )));
        }
        let max_random_pairs = match request.max_random_pairs {
            0 => DEFAULT_RANDOM_PAIRS,
            x => x,
        }
        .min(settings.estimation_max_random_pairs);
        let max_blocked_pairs = match request.max_blocked_pairs {
            0 => settings.estimation_max_blocked_pairs,
            x => x.min(settings.estimation_max_blocked_pairs),
        };
        let max_iterations = match request.max_iterations {
            0 => DEFAULT_ITERATIONS,
            x => (x as u32).min(MAX_ITERATIONS),
        };
        let convergence_threshold = if request.convergence_threshold == 0.0 {
            DEFAULT_CONVERGENCE
        } else {
            request.convergence_threshold
        };
        let seed = if request.random_seed == 0 {
            (carerecord_platform::db::now_micros() & 0x7fff_ffff_ffff) | 1
        } else {
            request.random_seed
        };
        let sampling = Sampling {
            max_random_pairs,
            max_blocked_pairs,
            seed: seed as u64,
            settings: estimate::Settings {
                max_iterations,
                convergence_threshold,
            },
        };
        let current = match self.parameters.get().await {
            Ok(current) => Some(current),
            Err(Error::ParametersMissing) => None,
            Err(e) => return Err(e),
        };
        let frequencies = self.frequencies.get().await?;
        let thresholds = (settings.match_threshold, settings.possible_threshold);
        let (sampled, checks) = tokio::task::spawn_blocking(move || {
            let sampled = estimate_from(&records, sampling)?;
            let est = &sampled.estimate;
            let new = Model {
                m: est.m,
                u: est.u,
                lambda: est.lambda,
                match_threshold: thresholds.0,
                possible_threshold: thresholds.1,
                households: !sampled.households_absent,
            };
            let context = activation::Context {
                records: &records,
                held_out: &sampled.held_out,
                current: current.as_ref().map(|c| &c.1),
                new: &new,
                frequencies: &frequencies,
            };
            let checks = activation::checks(est, &context);
            Some((sampled, checks))
        })
        .await
        .map_err(|e| Error::Corrupt(format!("estimation task failed: {e}")))?
        .ok_or_else(|| {
            Error::InsufficientData(format!(
                "{n} active patients but no pair of them shares a blocking key"
            ))
        })?;
        let est = &sampled.estimate;
        let mut params = MatchParameters {
            parameters_version: 0,
            origin: MatchParametersOrigin::Estimated as i32,
            current: false,
            fields: field_parameters(|field, level| {
                (
                    est.m[field.index()][level.index()],
                    est.u[field.index()][level.index()],
                )
            }),
            prior_match_probability: est.lambda,
            match_threshold: settings.match_threshold,
            possible_threshold: settings.possible_threshold,
            iterations: est.iterations as i32,
            converged: est.converged,
            random_pairs_used: sampled.random_pairs,
            blocked_pairs_used: sampled.blocked_pairs,
            convergence_threshold,
            random_seed: seed,
            estimated_at: Some(timestamp(carerecord_platform::db::now_micros())),
            estimated_by: request.requester,
            households_absent: sampled.households_absent,
        };
        let activated = !request.dry_run && checks.iter().all(|c| c.passed);
        if !request.dry_run {
            self.store.store_parameters(&mut params, activated).await?;
            self.parameters.forget().await;
            tracing::info!(
                version = params.parameters_version,
                converged = est.converged,
                activated,
                failed_checks = ?checks.iter().filter(|c| !c.passed).map(|c| c.name).collect::<Vec<_>>(),
                "match parameters estimated"
            );
        }
        Ok(EstimateMatchParametersResponse {
            parameters: Some(params),
            activated,
            activation_checks: checks
                .into_iter()
                .map(|c| ActivationCheck {
                    check: c.name.to_owned(),
                    passed: c.passed,
                    detail: c.detail,
                })
                .collect(),
        })
    }
}
