//! GetMatchParameters, MatchPatients and EstimateMatchParameters.
//!
//! The candidates of probabilistic matching depend on each implementation's comparators and
//! parameters, which the contract leaves open; these tests check only what it fixes: validation,
//! ordering, the arithmetic that ties weights, probabilities and classifications together, and the
//! shape of the evidence.

use carerecord_contracts::identity::v1::match_patients_request::Probe;
use carerecord_contracts::identity::v1::{
    ComparisonLevel, EstimateMatchParametersRequest, GetMatchParametersRequest,
    MatchClassification, MatchParameters, MatchPatientsRequest, Patient,
};
use tonic::Code;

use super::support::{RESOURCE_TYPE, client, create, new_patient, requester};
use crate::harness::{
    Ctx, Fail, TestResult, describe, ensure, ensure_eq, fail, has_reason, has_resource, ok,
};
use crate::refusal::{Refusal, refuse_each, refused};

/// The protobuf type named in ResourceInfo for match parameters.
const PARAMETERS: &str = "carerecord.identity.v1.MatchParameters";

/// The current parameters, or None when the deployment has none yet.
async fn current_parameters(ctx: &Ctx) -> TestResult<Option<MatchParameters>> {
    match client(ctx).get_match_parameters(version(0)).await {
        Ok(r) => Ok(r.into_inner().parameters),
        Err(s) if s.code() == Code::NotFound => {
            has_resource(&s, PARAMETERS, "current")?;
            Ok(None)
        }
        Err(s) => fail!(
            "GetMatchParameters: expected OK or NOT_FOUND, got {}",
            describe(&s)
        ),
    }
}

fn version(parameters_version: i64) -> GetMatchParametersRequest {
    GetMatchParametersRequest { parameters_version }
}

pub(super) async fn parameters(ctx: Ctx) -> TestResult {
    refused(
        client(&ctx).get_match_parameters(version(-1)).await,
        &Refusal::invalid("parameters_version"),
        "GetMatchParameters(-1)",
    )?;
    let Some(p) = current_parameters(&ctx).await? else {
        return Err(Fail::Skipped(
            "the deployment has no match parameters yet (NOT_FOUND `current` checked)".into(),
        ));
    };
    ensure!(p.current, "the current parameters must say current");
    ensure!(p.parameters_version >= 1, "a stored version is 1 or more");
    let lambda = p.prior_match_probability;
    ensure!(
        lambda > 0.0 && lambda < 1.0,
        "prior_match_probability in (0, 1), got {lambda}"
    );
    ensure!(
        p.possible_threshold > 0.0
            && p.match_threshold < 1.0
            && p.match_threshold > p.possible_threshold,
        "0 < possible_threshold < match_threshold < 1, got {} and {}",
        p.possible_threshold,
        p.match_threshold
    );
    for f in &p.fields {
        let (m, u): (f64, f64) = f.levels.iter().fold((0.0, 0.0), |(m, u), l| {
            (m + l.m_probability, u + l.u_probability)
        });
        ensure!(
            (m - 1.0).abs() < 1e-6 && (u - 1.0).abs() < 1e-6,
            "field {}: m and u must each sum to 1, got {m} and {u}",
            f.field
        );
        for l in &f.levels {
            ensure!(
                l.level != ComparisonLevel::Missing as i32 && l.level != 0,
                "field {}: MISSING and UNSPECIFIED have no parameters",
                f.field
            );
            ensure!(
                (l.weight - (l.m_probability / l.u_probability).log2()).abs() < 1e-6,
                "field {}: weight must be log2(m/u)",
                f.field
            );
        }
    }
    let again = ok(
        client(&ctx)
            .get_match_parameters(version(p.parameters_version))
            .await,
        "GetMatchParameters(by version)",
    )?;
    ensure_eq!(
        again.parameters.as_ref(),
        Some(&p),
        "the current version by number"
    );
    let beyond = p.parameters_version + 1_000_000;
    refused(
        client(&ctx).get_match_parameters(version(beyond)).await,
        &Refusal::not_found(PARAMETERS, &beyond.to_string()),
        "GetMatchParameters(a version that does not exist)",
    )
    .map(|_| ())
}

pub(super) async fn match_arithmetic(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let mut dup = new_patient();
    dup.names = a.names.clone();
    dup.addresses = a.addresses.clone();
    let b = create(&ctx, dup).await?;
    let request = MatchPatientsRequest {
        probe: Some(Probe::PatientId(a.patient_id.clone())),
        max_candidates: 100,
        include_non_matches: true,
    };
    let r = match client(&ctx).match_patients(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::FailedPrecondition => {
            has_reason(&s, "MATCH_PARAMETERS_MISSING")?;
            return Err(Fail::Skipped("the deployment has no match parameters yet (FAILED_PRECONDITION MATCH_PARAMETERS_MISSING checked)".into()));
        }
        Err(s) => fail!("MatchPatients: expected OK, got {}", describe(&s)),
    };
    let params = ok(
        client(&ctx)
            .get_match_parameters(version(r.parameters_version))
            .await,
        "GetMatchParameters(version used)",
    )?
    .parameters;
    let Some(params) = params else {
        fail!("GetMatchParameters: no parameters")
    };
    ensure_eq!(
        (
            r.prior_match_probability,
            r.match_threshold,
            r.possible_threshold
        ),
        (
            params.prior_match_probability,
            params.match_threshold,
            params.possible_threshold
        ),
        "echoed parameters"
    );
    ensure!(
        r.candidates
            .iter()
            .all(|c| c.patient.as_ref().map(|p| p.patient_id.as_str())
                != Some(a.patient_id.as_str())),
        "the probe patient must never be a candidate"
    );
    ensure!(
        r.candidates
            .iter()
            .any(|c| c.patient.as_ref().map(|p| p.patient_id.as_str())
                == Some(b.patient_id.as_str())),
        "a patient with the same names and birth date shares blocking keys and must be a candidate"
    );
    let field_order: Vec<String> = params.fields.iter().map(|f| f.field.clone()).collect();
    let prior = (params.prior_match_probability / (1.0 - params.prior_match_probability)).log2();
    for c in &r.candidates {
        let evidence_fields: Vec<String> = c.evidence.iter().map(|e| e.field.clone()).collect();
        ensure_eq!(
            evidence_fields,
            field_order,
            "evidence: one entry per parameter field, in order"
        );
        let sum: f64 = c.evidence.iter().map(|e| e.weight).sum();
        ensure!(
            (sum - c.match_weight).abs() < 1e-6,
            "match_weight {} must be the sum of the evidence weights {sum}",
            c.match_weight
        );
        for e in &c.evidence {
            if e.level == ComparisonLevel::Missing as i32 {
                ensure!(
                    e.weight == 0.0 && e.comparator.is_empty(),
                    "a MISSING comparison has weight 0 and no comparator"
                );
            }
        }
        let p = 1.0 / (1.0 + (-(prior + c.match_weight)).exp2());
        ensure!(
            (p - c.match_probability).abs() < 1e-9,
            "match_probability {} must be 1/(1+2^-(log2(λ/(1-λ)) + w)) = {p}",
            c.match_probability
        );
        let class = if c.match_probability >= params.match_threshold {
            MatchClassification::Match
        } else if c.match_probability >= params.possible_threshold {
            MatchClassification::Possible
        } else {
            MatchClassification::NonMatch
        };
        ensure_eq!(
            c.classification,
            class as i32,
            "classification of a candidate with probability {}",
            c.match_probability
        );
        ensure!(
            c.patient.as_ref().is_some_and(|p| p.state == 1),
            "candidates are active patients"
        );
    }
    // Ranking: MATCH and POSSIBLE by descending weight (then id), non-matches after them.
    let rank = |c: &carerecord_contracts::identity::v1::MatchCandidate| {
        (
            c.classification == MatchClassification::NonMatch as i32,
            -c.match_weight,
            c.patient.as_ref().map(|p| p.patient_id.clone()),
        )
    };
    for pair in r.candidates.windows(2) {
        ensure!(
            rank(&pair[0]).partial_cmp(&rank(&pair[1])) != Some(std::cmp::Ordering::Greater),
            "candidates must be ranked by descending match_weight, then patient_id, non-matches last"
        );
    }
    Ok(())
}

pub(super) async fn match_invalid(ctx: Ctx) -> TestResult {
    let probe = |probe| MatchPatientsRequest {
        probe: Some(probe),
        ..Default::default()
    };
    let demographics = |change: fn(&mut Patient)| {
        let mut patient = Patient::default();
        change(&mut patient);
        probe(Probe::Demographics(patient))
    };
    let table = vec![
        (
            "no probe",
            MatchPatientsRequest::default(),
            Refusal::invalid_request(),
        ),
        (
            "a malformed patient_id",
            probe(Probe::PatientId("x".into())),
            Refusal::invalid_under("patient_id"),
        ),
        (
            "demographics with nothing to match on",
            demographics(|p| p.gender = 1),
            Refusal::invalid_under("demographics"),
        ),
        (
            "an NHS number of nine digits",
            demographics(|p| p.nhs_number = "999 123 456".into()),
            Refusal::invalid_under("demographics.nhs_number"),
        ),
        (
            "negative max_candidates",
            MatchPatientsRequest {
                max_candidates: -1,
                ..probe(Probe::Demographics(new_patient()))
            },
            Refusal::invalid_under("max_candidates"),
        ),
    ];
    refuse_each!(client(&ctx), match_patients, table).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    match client(&ctx)
        .match_patients(probe(Probe::PatientId(unknown.clone())))
        .await
    {
        Err(s) if s.code() == Code::NotFound => has_resource(&s, RESOURCE_TYPE, &unknown),
        Err(s) if s.code() == Code::FailedPrecondition => Err(Fail::Skipped(format!(
            "the deployment has no match parameters yet ({})",
            describe(&s)
        ))),
        other => fail!(
            "MatchPatients(unknown patient_id): expected NOT_FOUND, got {:?}",
            other.map(|_| "OK").map_err(|s| describe(&s))
        ),
    }
}

pub(super) async fn estimate_invalid(ctx: Ctx) -> TestResult {
    let with = |change: fn(&mut EstimateMatchParametersRequest)| {
        let mut request = EstimateMatchParametersRequest {
            dry_run: true,
            requester: Some(requester()),
            ..Default::default()
        };
        change(&mut request);
        request
    };
    let threshold = || Refusal::invalid_under("convergence_threshold");
    let table = vec![
        (
            "no requester",
            with(|r| r.requester = None),
            Refusal::invalid_under("requester"),
        ),
        (
            "a negative max_random_pairs",
            with(|r| r.max_random_pairs = -1),
            Refusal::invalid_under("max_random_pairs"),
        ),
        (
            "a negative max_iterations",
            with(|r| r.max_iterations = -1),
            Refusal::invalid_under("max_iterations"),
        ),
        (
            "convergence_threshold 1",
            with(|r| r.convergence_threshold = 1.0),
            threshold(),
        ),
        (
            "a negative convergence_threshold",
            with(|r| r.convergence_threshold = -0.1),
            threshold(),
        ),
    ];
    refuse_each!(client(&ctx), estimate_match_parameters, table).await
}
