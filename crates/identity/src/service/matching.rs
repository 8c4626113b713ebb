//! MatchPatients: blocking, Fellegi-Sunter scoring, and the evidence of each candidate.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::identity::v1::match_patients_request::Probe;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;

use super::IdentityService;
use super::request::{required_id, valid};
use crate::convert::{classification_to_proto, evidence};
use crate::domain::features::Features;
use crate::domain::model::{self, Classification};
use crate::domain::pairs::identified_keys;
use crate::domain::validate;
use crate::error::Error;

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
        validate::check_date(d, "demographics.birth_date", v);
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
        let mut ranked: Vec<(f64, &str, usize)> = Vec::with_capacity(candidates.len());
        for (i, ((id, _), weight)) in candidates.iter().zip(&weights).enumerate() {
            if probe_id.as_deref() != Some(id.as_str()) {
                ranked.push((*weight, id, i));
            }
        }
        let compared = ranked.len() as i32;
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut out: Vec<Scored> = Vec::new();
        let mut non_matches = Vec::new();
        for (weight, _, i) in ranked {
            let probability = model.probability(weight);
            let class = model.classify(probability);
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
                    evidence: evidence(model, model::explain(model, &features, f)),
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
}
