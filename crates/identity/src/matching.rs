//! MatchPatients and EstimateMatchParameters: blocking, Fellegi-Sunter scoring and estimation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;

use crate::Settings;
use crate::domain::estimate::{self, SplitMix};
use crate::domain::features::{BLOCKING_RULES, Features, is_identifier_key, rule_of};
use crate::domain::model::{self, FIELD_COUNT, FIELDS, Field, Level, Model, Pattern};
use crate::domain::validate;
use crate::error::Error;
use crate::service::{classification_to_proto, level_to_proto};
use crate::store::{self, Store};

/// What to match.
pub enum Probe {
    Patient(String),
    Demographics(Features),
}

/// The relaxed validation of a demographics probe.
pub fn check_probe(p: &Patient, v: &mut Violations) {
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
        validate::check_date(d, "demographics.birth_date", v);
    }
    if let Some(d) = &p.deceased_date {
        validate::check_date(d, "demographics.deceased_date", v);
    }
}

/// The model of stored parameters; fields it does not name weigh nothing.
pub fn model_of(params: &MatchParameters) -> Model {
    let mut m = [[0.5; 3]; FIELD_COUNT];
    let mut u = [[0.5; 3]; FIELD_COUNT];
    for fp in &params.fields {
        let Some(field) = Field::from_name(&fp.field) else {
            continue;
        };
        for lp in &fp.levels {
            let level = match ComparisonLevel::try_from(lp.level) {
                Ok(ComparisonLevel::Exact) => Level::Exact,
                Ok(ComparisonLevel::Partial) => Level::Partial,
                Ok(ComparisonLevel::Disagree) => Level::Disagree,
                _ => continue,
            };
            m[field.index()][level.index()] = lp.m_probability;
            u[field.index()][level.index()] = lp.u_probability;
        }
    }
    Model {
        m,
        u,
        lambda: params.prior_match_probability,
        match_threshold: params.match_threshold,
        possible_threshold: params.possible_threshold,
    }
}

/// The built-in starting values of m and u per field, for the levels of `Field::levels` in
/// order, and the prior. They are deliberately conservative, typical of a national index (u from
/// the cardinality of each field, m from typical keying and change rates), so that an
/// identifier alone is never enough for a MATCH; EstimateMatchParameters replaces them with
/// values from the deployment's own data.
const STARTING_PRIOR: f64 = 1e-6;

fn starting_values(field: Field) -> (&'static [f64], &'static [f64]) {
    match field {
        Field::NhsNumber => (&[0.95, 0.02, 0.03], &[1e-6, 1e-5, 1.0 - 1.1e-5]),
        Field::Identifier => (&[0.90, 0.03, 0.07], &[1e-6, 1e-5, 1.0 - 1.1e-5]),
        Field::GivenName => (&[0.88, 0.08, 0.04], &[0.01, 0.02, 0.97]),
        Field::FamilyName => (&[0.90, 0.06, 0.04], &[0.005, 0.01, 0.985]),
        Field::BirthDate => (&[0.92, 0.05, 0.03], &[3e-5, 5e-4, 1.0 - 5.3e-4]),
        Field::Gender => (&[0.98, 0.02], &[0.5, 0.5]),
        Field::Postcode => (&[0.75, 0.10, 0.15], &[1e-4, 0.005, 1.0 - 5.1e-3]),
        Field::Address => (&[0.70, 0.15, 0.15], &[1e-4, 0.002, 1.0 - 2.1e-3]),
        Field::Phone | Field::Email => (&[0.70, 0.05, 0.25], &[1e-6, 1e-5, 1.0 - 1.1e-5]),
    }
}

/// Every field's parameters, from its (m, u) at each of its levels.
fn field_parameters(m_u: impl Fn(Field, Level) -> (f64, f64)) -> Vec<FieldParameters> {
    FIELDS
        .iter()
        .map(|&field| FieldParameters {
            field: field.name().to_owned(),
            levels: field
                .levels()
                .iter()
                .map(|&level| {
                    let (m, u) = m_u(field, level);
                    LevelParameters {
                        level: level_to_proto(level) as i32,
                        comparator: field.rule(level).to_owned(),
                        m_probability: m,
                        u_probability: u,
                        weight: (m / u).log2(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The parameters an empty index starts with (origin CONFIGURED), with the configured thresholds.
pub fn starting_parameters(settings: &Settings) -> MatchParameters {
    MatchParameters {
        parameters_version: 0,
        origin: MatchParametersOrigin::Configured as i32,
        current: false,
        fields: field_parameters(|field, level| {
            let (m, u) = starting_values(field);
            let i = field.levels().iter().position(|&l| l == level).unwrap_or(0);
            (m[i], u[i])
        }),
        prior_match_probability: STARTING_PRIOR,
        match_threshold: settings.match_threshold,
        possible_threshold: settings.possible_threshold,
        ..Default::default()
    }
}

/// The current parameters and their model.
type Current = Arc<(MatchParameters, Model)>;

/// Matching with the current parameters, cached briefly so a match costs one query.
#[derive(Debug)]
pub struct Matcher {
    store: Store,
    settings: Arc<Settings>,
    cache: tokio::sync::RwLock<Option<(Instant, Current)>>,
    estimating: tokio::sync::Mutex<()>,
}

const CACHE_FOR: Duration = Duration::from_secs(5);

impl Matcher {
    pub fn new(store: Store, settings: Arc<Settings>) -> Self {
        Matcher {
            store,
            settings,
            cache: tokio::sync::RwLock::new(None),
            estimating: tokio::sync::Mutex::new(()),
        }
    }

    async fn current(&self) -> Result<Arc<(MatchParameters, Model)>, Error> {
        if let Some((at, cached)) = self.cache.read().await.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(cached.clone());
        }
        let params = self
            .store
            .parameters(None)
            .await?
            .ok_or(Error::ParametersMissing)?;
        let model = model_of(&params);
        let entry = Arc::new((params, model));
        *self.cache.write().await = Some((Instant::now(), entry.clone()));
        Ok(entry)
    }

    pub async fn find(
        &self,
        probe: Probe,
        max: usize,
        include_non_matches: bool,
    ) -> Result<MatchPatientsResponse, Error> {
        let (probe_id, features) = match probe {
            Probe::Patient(id) => {
                let stored = self
                    .store
                    .get(&id)
                    .await?
                    .ok_or_else(|| Error::patient_not_found(&id))?;
                (Some(id), stored.features)
            }
            Probe::Demographics(f) => (None, f),
        };
        let current = self.current().await?;
        let (params, model) = (&current.0, &current.1);
        let keys = features.blocking_keys();
        let mut candidates = self.store.candidates(&keys).await?;
        let score = |f: &Features| model.pattern_weight(model::pattern_with(model, &features, f));
        let mut weights: Vec<f64> = candidates.iter().map(|(_, f)| score(f)).collect();
        // The person the probe names, through its identifiers, is a second description of the
        // probe: other records of that person, registered without the identifier and too noisy
        // to share a blocking key with the probe, share one with that description.
        let more_keys = identified_keys(
            &features,
            &keys,
            probe_id.as_deref(),
            &candidates,
            &weights,
            model,
        );
        if !more_keys.is_empty() {
            let seen: HashSet<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
            for (id, f) in self.store.candidates(&more_keys).await? {
                if !seen.contains(&id) {
                    weights.push(score(&f));
                    candidates.push((id, f));
                }
            }
        }
        let mut scored: Vec<(f64, String, usize)> = Vec::with_capacity(candidates.len());
        let mut compared = 0;
        for (i, ((id, _), weight)) in candidates.iter().zip(&weights).enumerate() {
            if probe_id.as_deref() == Some(id.as_str()) {
                continue;
            }
            compared += 1;
            scored.push((*weight, id.clone(), i));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut out = Vec::new();
        let mut non_matches = Vec::new();
        for (weight, _, i) in scored {
            let probability = model.probability(weight);
            let class = model.classify(probability);
            if class == model::Classification::NonMatch {
                if include_non_matches && non_matches.len() < max {
                    non_matches.push((weight, probability, class, i));
                }
                continue;
            }
            if out.len() < max {
                out.push((weight, probability, class, i));
            }
        }
        out.extend(non_matches);
        out.truncate(max);
        let wanted: Vec<String> = out.iter().map(|c| candidates[c.3].0.clone()).collect();
        let mut stored: std::collections::HashMap<String, Patient> = self
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
                let evidence = model::explain(model, &features, f)
                    .into_iter()
                    .map(|c| FieldEvidence {
                        field: c.field.name().to_owned(),
                        level: level_to_proto(c.level) as i32,
                        comparator: c.comparator.to_owned(),
                        similarity: c.similarity,
                        weight: model.weight(c.field, c.level),
                        probe_value: c.probe_value,
                        candidate_value: c.candidate_value,
                    })
                    .collect();
                Ok(MatchCandidate {
                    patient: Some(patient),
                    match_probability: probability,
                    match_weight: weight,
                    classification: classification_to_proto(class) as i32,
                    evidence,
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

    pub async fn estimate(
        &self,
        request: EstimateMatchParametersRequest,
    ) -> Result<EstimateMatchParametersResponse, Error> {
        let Ok(_guard) = self.estimating.try_lock() else {
            return Err(Error::EstimationInProgress);
        };
        let settings = self.settings.clone();
        let records = self.store.active_features().await?;
        let n = records.len();
        if n < 2 {
            return Err(Error::InsufficientData(format!(
                "{n} active patients; at least 2 are needed"
            )));
        }
        let max_random = match request.max_random_pairs {
            0 => 1_000_000,
            x => x,
        }
        .min(settings.estimation_max_random_pairs);
        let max_blocked = match request.max_blocked_pairs {
            0 => settings.estimation_max_blocked_pairs,
            x => x.min(settings.estimation_max_blocked_pairs),
        };
        let max_iterations = match request.max_iterations {
            0 => 25,
            x => x.min(1000),
        } as u32;
        let threshold = if request.convergence_threshold == 0.0 {
            0.0001
        } else {
            request.convergence_threshold
        };
        let seed = if request.random_seed == 0 {
            (carerecord_platform::db::now_micros() & 0x7fff_ffff_ffff) | 1
        } else {
            request.random_seed
        };
        let (match_threshold, possible_threshold) =
            (settings.match_threshold, settings.possible_threshold);
        let result = tokio::task::spawn_blocking(move || {
            estimate_from(
                &records,
                max_random,
                max_blocked,
                max_iterations,
                threshold,
                seed as u64,
            )
        })
        .await
        .map_err(|e| Error::Corrupt(format!("estimation task failed: {e}")))??;
        let (est, random_used, blocked_used) = result;
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
            match_threshold,
            possible_threshold,
            iterations: est.iterations as i32,
            converged: est.converged,
            random_pairs_used: random_used,
            blocked_pairs_used: blocked_used,
            convergence_threshold: threshold,
            random_seed: seed,
            estimated_at: Some(store::timestamp(carerecord_platform::db::now_micros())),
            estimated_by: request.requester,
        };
        let activated = est.converged && !request.dry_run;
        if !request.dry_run {
            self.store.store_parameters(&mut params, activated).await?;
            *self.cache.write().await = None;
            tracing::info!(
                version = params.parameters_version,
                converged = est.converged,
                "match parameters estimated"
            );
        }
        Ok(EstimateMatchParametersResponse {
            parameters: Some(params),
            activated,
        })
    }
}

type EstimationResult = (estimate::Estimate, i64, i64);

/// The CPU-bound part of estimation, over all active patients' features.
fn estimate_from(
    records: &[(String, Features)],
    max_random: i64,
    max_blocked: i64,
    max_iterations: u32,
    threshold: f64,
    seed: u64,
) -> Result<EstimationResult, Error> {
    let n = records.len() as u64;
    let all_pairs = n as f64 * (n as f64 - 1.0) / 2.0;
    let mut rng = SplitMix::new(seed);
    // u: uniformly random distinct pairs.
    let random_count = (max_random as f64).min(all_pairs) as usize;
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
    // there are more than `max_blocked`.
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
        return Err(Error::InsufficientData(format!(
            "{n} active patients but no pair of them shares a blocking key"
        )));
    }
    let keep = (max_blocked as f64 / total).min(1.0);
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
    let blocked: Vec<(Pattern, u32)> = pairs
        .iter()
        .map(|(&(a, b), &mask)| {
            (
                model::pattern(&records[a as usize].1, &records[b as usize].1),
                mask,
            )
        })
        .collect();
    debug_assert!(BLOCKING_RULES.len() <= 32);
    let est = estimate::estimate(
        &blocked,
        u,
        all_pairs,
        estimate::Settings {
            max_iterations,
            convergence_threshold: threshold,
        },
    );
    // Lambda is over all pairs: scale sampled blocked pairs back up.
    let est = estimate::Estimate {
        lambda: model::clamp_probability(est.expected_matches / keep / all_pairs),
        ..est
    };
    Ok((est, random_count as i64, blocked.len() as i64))
}

/// The blocking keys, beyond the probe's own, of the candidates the probe identifies: holders of
/// its NHS number or of one of its identifiers whose demographics agree enough to classify as a
/// match (a noisy identifier alone is evidence, not proof). Each record these keys find is still
/// scored against the probe, never against the holder. An NHS number or identifier belongs to one
/// live patient, so there are at most a few holders.
fn identified_keys(
    probe: &Features,
    probe_keys: &[String],
    probe_id: Option<&str>,
    candidates: &[(String, Features)],
    weights: &[f64],
    model: &Model,
) -> Vec<String> {
    let mut keys = Vec::new();
    for ((id, candidate), &weight) in candidates.iter().zip(weights) {
        let identified = (!probe.nhs_number.is_empty() && probe.nhs_number == candidate.nhs_number)
            || probe
                .identifiers
                .iter()
                .any(|i| candidate.identifiers.contains(i));
        if !identified
            || probe_id == Some(id.as_str())
            || model.classify(model.probability(weight)) != model::Classification::Match
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Classification;
    use carerecord_platform::env::Env;

    fn classify(agreeing: &[(Field, Level)]) -> Classification {
        let settings = Settings::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
        let model = model_of(&starting_parameters(&settings));
        let mut levels = [Level::Missing; FIELD_COUNT];
        for (field, level) in agreeing {
            levels[field.index()] = *level;
        }
        let weight = model.pattern_weight(Pattern::from_levels(&levels));
        model.classify(model.probability(weight))
    }

    #[test]
    fn starting_parameters_are_probabilities_for_every_level() {
        let settings = Settings::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
        let params = starting_parameters(&settings);
        assert_eq!(params.origin, MatchParametersOrigin::Configured as i32);
        assert_eq!(params.fields.len(), FIELD_COUNT);
        for (fp, field) in params.fields.iter().zip(FIELDS) {
            assert_eq!(fp.levels.len(), field.levels().len(), "{}", fp.field);
            let m: f64 = fp.levels.iter().map(|l| l.m_probability).sum();
            let u: f64 = fp.levels.iter().map(|l| l.u_probability).sum();
            assert!(
                (m - 1.0).abs() < 1e-9 && (u - 1.0).abs() < 1e-9,
                "{}",
                fp.field
            );
            for l in &fp.levels {
                assert!((l.weight - (l.m_probability / l.u_probability).log2()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn starting_parameters_classify_sensibly() {
        use Field::*;
        use Level::*;
        // A national identifier alone is evidence, not proof.
        assert_ne!(classify(&[(NhsNumber, Exact)]), Classification::Match);
        assert_eq!(
            classify(&[(NhsNumber, Exact), (BirthDate, Exact)]),
            Classification::Match
        );
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Exact),
                (Gender, Exact)
            ]),
            Classification::Match
        );
        // Same name, different birth date: different people.
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Disagree)
            ]),
            Classification::NonMatch
        );
        // Names agree, birth date only nearly (a typo or a day/month swap): for a person to review.
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Partial)
            ]),
            Classification::Possible
        );
    }
}
