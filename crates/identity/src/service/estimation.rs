//! GetMatchParameters and EstimateMatchParameters.

use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;

use super::IdentityService;
use super::request::check_requester;
use crate::convert::field_parameters;
use crate::domain::estimate;
use crate::domain::pairs::{Sampling, estimate_from};
use crate::domain::patient::timestamp;
use crate::error::{Error, MATCH_PARAMETERS};

/// Random pairs an estimation samples unless the request asks for fewer (the configured bound
/// still applies).
const DEFAULT_RANDOM_PAIRS: i64 = 1_000_000;
const DEFAULT_ITERATIONS: u32 = 25;
const MAX_ITERATIONS: u32 = 1000;
const DEFAULT_CONVERGENCE: f64 = 0.0001;

impl IdentityService {
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
        let sampled = tokio::task::spawn_blocking(move || estimate_from(&records, sampling))
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
        };
        let activated = est.converged && !request.dry_run;
        if !request.dry_run {
            self.store.store_parameters(&mut params, activated).await?;
            self.parameters.forget().await;
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
