//! SearchPatients, MatchPatients and the match parameters.
//!
//! Scores of fuzzy search and the candidates of probabilistic matching depend on each
//! implementation's comparators and parameters, which the contract leaves open; these tests check
//! only what it fixes: exact-search semantics, validation, ordering, the arithmetic that ties
//! weights, probabilities and classifications together, and the shape of the evidence.

use carerecord_contracts::common::v1::{AdministrativeGender, Date, DateRange};
use carerecord_contracts::identity::v1::match_patients_request::Probe;
use carerecord_contracts::identity::v1::search_patients_request::Birth;
use carerecord_contracts::identity::v1::{
    ComparisonLevel, EstimateMatchParametersRequest, GetMatchParametersRequest,
    MatchClassification, MatchParameters, MatchPatientsRequest, Patient, SearchMode,
    SearchPatientsRequest,
};
use tonic::Code;

use super::{client, create, new_patient, requester};
use crate::harness::{
    Case, Ctx, Fail, TestResult, describe, ensure, ensure_eq, err, fail, has_reason, has_resource,
    has_violation, has_violation_under, ok,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "ID-SEARCH-001",
            "Exact search by family name and birth date finds the patient with score 1.0; given name, gender and postcode narrow it",
            search_exact,
        ),
        Case::new(
            "ID-SEARCH-002",
            "Exact search: a final `*` after two characters matches by prefix; birth date ranges are inclusive; historic names match",
            search_prefix_and_range,
        ),
        Case::new(
            "ID-SEARCH-003",
            "Search excludes merged patients and reports max_results_applied (default 10)",
            search_merged_and_limits,
        ),
        Case::new(
            "ID-SEARCH-004",
            "Fuzzy search returns every exact match with score 1.0, ordered by score then patient_id",
            search_fuzzy_includes_exact,
        ),
        Case::new(
            "ID-SEARCH-005",
            "Search validation: empty family name, no birth date, empty or reversed range, invalid date, bad wildcard, any wildcard when fuzzy, negative max_results -> INVALID_ARGUMENT",
            search_invalid,
        ),
        Case::new(
            "ID-PARAM-001",
            "GetMatchParameters: per field the m and u probabilities each sum to 1, weights are log2(m/u), thresholds ordered; none -> NOT_FOUND `current`",
            parameters,
        ),
        Case::new(
            "ID-MATCH-001",
            "MatchPatients: the probe patient is never a candidate; weights sum to match_weight, probability and class follow the parameters; ranked by weight",
            match_arithmetic,
        ),
        Case::new(
            "ID-MATCH-002",
            "MatchPatients validation: no probe, malformed id, empty demographics, bad NHS number, negative max_candidates -> INVALID_ARGUMENT; unknown id -> NOT_FOUND",
            match_invalid,
        ),
        Case::new(
            "ID-EST-001",
            "EstimateMatchParameters validation: no requester, negative bound, convergence_threshold outside [0, 1) -> INVALID_ARGUMENT",
            estimate_invalid,
        ),
    ]
}

const DOB: Date = Date {
    year: 1984,
    month: 3,
    day: 17,
};

fn search(family: &str, birth: Birth) -> SearchPatientsRequest {
    SearchPatientsRequest {
        family_name: family.into(),
        birth: Some(birth),
        ..Default::default()
    }
}

async fn ids(ctx: &Ctx, request: SearchPatientsRequest) -> TestResult<Vec<(String, f64)>> {
    let r = ok(client(ctx).search_patients(request).await, "SearchPatients")?;
    Ok(r.results
        .into_iter()
        .map(|r| (r.patient.map(|p| p.patient_id).unwrap_or_default(), r.score))
        .collect())
}

async fn search_exact(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    let family = p.names[0].family.clone();
    let found = ids(&ctx, search(&family, Birth::BirthDate(DOB))).await?;
    ensure_eq!(
        found,
        vec![(p.patient_id.clone(), 1.0)],
        "search by family name and birth date"
    );
    let found = ids(&ctx, search(&family.to_uppercase(), Birth::BirthDate(DOB))).await?;
    ensure_eq!(
        found.len(),
        1,
        "family names compare normalised (case folded)"
    );
    let narrow =
        |given: &str, gender: AdministrativeGender, postcode: &str| SearchPatientsRequest {
            given_name: given.into(),
            gender: gender as i32,
            postcode: postcode.into(),
            ..search(&family, Birth::BirthDate(DOB))
        };
    ensure_eq!(
        ids(
            &ctx,
            narrow("alexandra", AdministrativeGender::Female, "ls14ap")
        )
        .await?
        .len(),
        1,
        "given name, gender and postcode that match"
    );
    ensure!(
        ids(&ctx, narrow("Bob", AdministrativeGender::Unspecified, ""))
            .await?
            .is_empty(),
        "another given name must not match in exact mode"
    );
    ensure!(
        ids(&ctx, narrow("", AdministrativeGender::Male, ""))
            .await?
            .is_empty(),
        "another gender must not match in exact mode"
    );
    ensure!(
        ids(
            &ctx,
            narrow("", AdministrativeGender::Unspecified, "LS2 7UE")
        )
        .await?
        .is_empty(),
        "another postcode must not match in exact mode"
    );
    ensure!(
        ids(
            &ctx,
            search(
                &family,
                Birth::BirthDate(Date {
                    year: 1984,
                    month: 3,
                    day: 18
                })
            )
        )
        .await?
        .is_empty(),
        "another birth date must not match in exact mode"
    );
    Ok(())
}

async fn search_prefix_and_range(ctx: Ctx) -> TestResult {
    let mut input = new_patient();
    let old_family = super::family_name();
    input
        .names
        .push(carerecord_contracts::common::v1::HumanName {
            r#use: carerecord_contracts::common::v1::NameUse::Maiden as i32,
            given: vec!["Alexandra".into()],
            family: old_family.clone(),
            ..Default::default()
        });
    let p = create(&ctx, input).await?;
    let family = p.names[0].family.clone();
    let prefix = format!("{}*", &family[..family.len() - 2]);
    ensure_eq!(
        ids(&ctx, search(&prefix, Birth::BirthDate(DOB)))
            .await?
            .iter()
            .map(|f| f.0.clone())
            .collect::<Vec<_>>(),
        vec![p.patient_id.clone()],
        "prefix search"
    );
    let range =
        |start: Option<Date>, end: Option<Date>| Birth::BirthDateRange(DateRange { start, end });
    ensure_eq!(
        ids(&ctx, search(&family, range(Some(DOB), Some(DOB))))
            .await?
            .len(),
        1,
        "a range of one day (inclusive)"
    );
    ensure_eq!(
        ids(
            &ctx,
            search(
                &family,
                range(
                    Some(Date {
                        year: 1984,
                        month: 1,
                        day: 1
                    }),
                    None
                )
            )
        )
        .await?
        .len(),
        1,
        "a range open at the end"
    );
    ensure!(
        ids(
            &ctx,
            search(
                &family,
                range(
                    None,
                    Some(Date {
                        year: 1984,
                        month: 3,
                        day: 16
                    })
                )
            )
        )
        .await?
        .is_empty(),
        "a range ending the day before"
    );
    ensure_eq!(
        ids(&ctx, search(&old_family, Birth::BirthDate(DOB)))
            .await?
            .len(),
        1,
        "a historic (maiden) name matches"
    );
    Ok(())
}

async fn search_merged_and_limits(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let family = a.names[0].family.clone();
    let mut twin = new_patient();
    twin.names[0].family = family.clone();
    let b = create(&ctx, twin).await?;
    let found: Vec<String> = ids(&ctx, search(&family, Birth::BirthDate(DOB)))
        .await?
        .into_iter()
        .map(|f| f.0)
        .collect();
    let mut both = vec![a.patient_id.clone(), b.patient_id.clone()];
    both.sort();
    ensure_eq!(
        found,
        both,
        "two exact matches, ordered by patient_id (equal scores)"
    );
    let r = ok(
        client(&ctx)
            .search_patients(SearchPatientsRequest {
                max_results: 1,
                ..search(&family, Birth::BirthDate(DOB))
            })
            .await,
        "SearchPatients(max_results 1)",
    )?;
    ensure_eq!(
        (
            r.results.len(),
            r.more_results_available,
            r.max_results_applied
        ),
        (1, true, 1),
        "(results, more_results_available, max_results_applied) with max_results 1"
    );
    let r = ok(
        client(&ctx)
            .search_patients(search(&family, Birth::BirthDate(DOB)))
            .await,
        "SearchPatients",
    )?;
    ensure_eq!(r.max_results_applied, 10, "max_results_applied by default");
    ok(
        client(&ctx)
            .merge_patients(carerecord_contracts::identity::v1::MergePatientsRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                source_patient_id: a.patient_id.clone(),
                target_patient_id: b.patient_id.clone(),
                reason: "duplicate".into(),
                requester: Some(requester()),
                ..Default::default()
            })
            .await,
        "MergePatients",
    )?;
    let found: Vec<String> = ids(&ctx, search(&family, Birth::BirthDate(DOB)))
        .await?
        .into_iter()
        .map(|f| f.0)
        .collect();
    ensure_eq!(
        found,
        vec![b.patient_id],
        "a merged duplicate is not returned"
    );
    Ok(())
}

async fn search_fuzzy_includes_exact(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    let family = p.names[0].family.clone();
    let r = ok(
        client(&ctx)
            .search_patients(SearchPatientsRequest {
                mode: SearchMode::Fuzzy as i32,
                max_results: 50,
                ..search(&family, Birth::BirthDate(DOB))
            })
            .await,
        "SearchPatients(fuzzy)",
    )?;
    let hit = r.results.iter().find(|x| {
        x.patient
            .as_ref()
            .is_some_and(|q| q.patient_id == p.patient_id)
    });
    ensure_eq!(
        hit.map(|h| h.score),
        Some(1.0),
        "the exact match's score in fuzzy mode"
    );
    for pair in r.results.windows(2) {
        let (x, y) = (&pair[0], &pair[1]);
        let (xi, yi) = (
            x.patient.as_ref().map(|p| p.patient_id.clone()),
            y.patient.as_ref().map(|p| p.patient_id.clone()),
        );
        ensure!(
            x.score > y.score || (x.score == y.score && xi < yi),
            "results must be ordered by descending score, then patient_id"
        );
    }
    for x in &r.results {
        ensure!(
            (0.0..=1.0).contains(&x.score),
            "scores are between 0 and 1, got {}",
            x.score
        );
    }
    Ok(())
}

async fn search_invalid(ctx: Ctx) -> TestResult {
    let cases: Vec<(&str, SearchPatientsRequest, &str)> = vec![
        (
            "an empty family name",
            search(" - ", Birth::BirthDate(DOB)),
            "family_name",
        ),
        (
            "no birth date",
            SearchPatientsRequest {
                family_name: "Smith".into(),
                ..Default::default()
            },
            "",
        ),
        (
            "a range with no bound",
            search("Smith", Birth::BirthDateRange(DateRange::default())),
            "birth_date_range",
        ),
        (
            "a range with start after end",
            search(
                "Smith",
                Birth::BirthDateRange(DateRange {
                    start: Some(Date {
                        year: 1990,
                        month: 1,
                        day: 2,
                    }),
                    end: Some(Date {
                        year: 1990,
                        month: 1,
                        day: 1,
                    }),
                }),
            ),
            "birth_date_range",
        ),
        (
            "an invalid date",
            search(
                "Smith",
                Birth::BirthDate(Date {
                    year: 1990,
                    month: 13,
                    day: 1,
                }),
            ),
            "birth_date",
        ),
        (
            "a wildcard after one character",
            search("S*", Birth::BirthDate(DOB)),
            "family_name",
        ),
        (
            "a wildcard not at the end",
            search("Sm*th", Birth::BirthDate(DOB)),
            "family_name",
        ),
        (
            "a wildcard in fuzzy mode",
            SearchPatientsRequest {
                mode: SearchMode::Fuzzy as i32,
                ..search("Smi*", Birth::BirthDate(DOB))
            },
            "family_name",
        ),
        (
            "negative max_results",
            SearchPatientsRequest {
                max_results: -1,
                ..search("Smith", Birth::BirthDate(DOB))
            },
            "max_results",
        ),
    ];
    for (what, request, field) in cases {
        let status = err(
            client(&ctx).search_patients(request).await,
            Code::InvalidArgument,
            &format!("SearchPatients({what})"),
        )?;
        if field.is_empty() {
            crate::harness::has_bad_request(&status)
        } else {
            has_violation_under(&status, field)
        }?;
    }
    Ok(())
}

/// The current parameters, or None when the deployment has none yet.
async fn current_parameters(ctx: &Ctx) -> TestResult<Option<MatchParameters>> {
    match client(ctx)
        .get_match_parameters(GetMatchParametersRequest {
            parameters_version: 0,
        })
        .await
    {
        Ok(r) => Ok(r.into_inner().parameters),
        Err(s) if s.code() == Code::NotFound => {
            has_resource(&s, "carerecord.identity.v1.MatchParameters", "current")?;
            Ok(None)
        }
        Err(s) => fail!(
            "GetMatchParameters: expected OK or NOT_FOUND, got {}",
            describe(&s)
        ),
    }
}

async fn parameters(ctx: Ctx) -> TestResult {
    let status = err(
        client(&ctx)
            .get_match_parameters(GetMatchParametersRequest {
                parameters_version: -1,
            })
            .await,
        Code::InvalidArgument,
        "GetMatchParameters(-1)",
    )?;
    has_violation(&status, "parameters_version")?;
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
            .get_match_parameters(GetMatchParametersRequest {
                parameters_version: p.parameters_version,
            })
            .await,
        "GetMatchParameters(by version)",
    )?;
    ensure_eq!(
        again.parameters.as_ref(),
        Some(&p),
        "the current version by number"
    );
    let beyond = p.parameters_version + 1_000_000;
    let status = err(
        client(&ctx)
            .get_match_parameters(GetMatchParametersRequest {
                parameters_version: beyond,
            })
            .await,
        Code::NotFound,
        "GetMatchParameters(a version that does not exist)",
    )?;
    has_resource(
        &status,
        "carerecord.identity.v1.MatchParameters",
        &beyond.to_string(),
    )
}

async fn match_arithmetic(ctx: Ctx) -> TestResult {
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
            .get_match_parameters(GetMatchParametersRequest {
                parameters_version: r.parameters_version,
            })
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

async fn match_invalid(ctx: Ctx) -> TestResult {
    let cases: Vec<(&str, MatchPatientsRequest, &str)> = vec![
        ("no probe", MatchPatientsRequest::default(), ""),
        (
            "a malformed patient_id",
            MatchPatientsRequest {
                probe: Some(Probe::PatientId("x".into())),
                ..Default::default()
            },
            "patient_id",
        ),
        (
            "demographics with nothing to match on",
            MatchPatientsRequest {
                probe: Some(Probe::Demographics(Patient {
                    gender: 1,
                    ..Default::default()
                })),
                ..Default::default()
            },
            "demographics",
        ),
        (
            "an NHS number of nine digits",
            MatchPatientsRequest {
                probe: Some(Probe::Demographics(Patient {
                    nhs_number: "999 123 456".into(),
                    ..Default::default()
                })),
                ..Default::default()
            },
            "demographics.nhs_number",
        ),
        (
            "negative max_candidates",
            MatchPatientsRequest {
                probe: Some(Probe::Demographics(new_patient())),
                max_candidates: -1,
                ..Default::default()
            },
            "max_candidates",
        ),
    ];
    for (what, request, field) in cases {
        let status = err(
            client(&ctx).match_patients(request).await,
            Code::InvalidArgument,
            &format!("MatchPatients({what})"),
        )?;
        if field.is_empty() {
            crate::harness::has_bad_request(&status)
        } else {
            has_violation_under(&status, field)
        }?;
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    match client(&ctx)
        .match_patients(MatchPatientsRequest {
            probe: Some(Probe::PatientId(unknown.clone())),
            ..Default::default()
        })
        .await
    {
        Err(s) if s.code() == Code::NotFound => has_resource(&s, super::RESOURCE_TYPE, &unknown),
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

async fn estimate_invalid(ctx: Ctx) -> TestResult {
    let base = EstimateMatchParametersRequest {
        dry_run: true,
        requester: Some(requester()),
        ..Default::default()
    };
    let cases: Vec<(&str, EstimateMatchParametersRequest, &str)> = vec![
        (
            "no requester",
            EstimateMatchParametersRequest {
                requester: None,
                ..base.clone()
            },
            "requester",
        ),
        (
            "a negative max_random_pairs",
            EstimateMatchParametersRequest {
                max_random_pairs: -1,
                ..base.clone()
            },
            "max_random_pairs",
        ),
        (
            "a negative max_iterations",
            EstimateMatchParametersRequest {
                max_iterations: -1,
                ..base.clone()
            },
            "max_iterations",
        ),
        (
            "convergence_threshold 1",
            EstimateMatchParametersRequest {
                convergence_threshold: 1.0,
                ..base.clone()
            },
            "convergence_threshold",
        ),
        (
            "a negative convergence_threshold",
            EstimateMatchParametersRequest {
                convergence_threshold: -0.1,
                ..base.clone()
            },
            "convergence_threshold",
        ),
    ];
    for (what, request, field) in cases {
        let status = err(
            client(&ctx).estimate_match_parameters(request).await,
            Code::InvalidArgument,
            &format!("EstimateMatchParameters({what})"),
        )?;
        has_violation_under(&status, field)?;
    }
    Ok(())
}
