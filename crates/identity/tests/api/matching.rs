//! Search, match and parameter estimation.

use carerecord_contracts::common::v1::{Date, DateRange, HumanName};
use carerecord_contracts::identity::v1::*;
use carerecord_platform::testing::TestDatabase;
use carerecord_synthetic::Generator;
use tonic::Code;

use crate::helpers::*;

/// The candidate's evidence for `field`.
fn evidence<'a>(candidate: &'a MatchCandidate, field: &str) -> &'a FieldEvidence {
    let found = candidate.evidence.iter().find(|e| e.field == field);
    found.unwrap_or_else(|| panic!("no evidence for {field}"))
}

/// A match of `patient`'s demographics, with the default limits.
fn by_demographics(patient: Patient) -> MatchPatientsRequest {
    MatchPatientsRequest {
        probe: Some(match_patients_request::Probe::Demographics(patient)),
        ..Default::default()
    }
}

/// A match of the stored patient `patient_id`, with the default limits.
fn by_id(patient_id: &str) -> MatchPatientsRequest {
    MatchPatientsRequest {
        probe: Some(match_patients_request::Probe::PatientId(
            patient_id.to_owned(),
        )),
        ..Default::default()
    }
}

fn estimate_request() -> EstimateMatchParametersRequest {
    EstimateMatchParametersRequest {
        max_random_pairs: 20_000,
        random_seed: 11,
        requester: Some(requester()),
        max_iterations: 200,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_index_matches_with_the_configured_starting_parameters_until_estimated() {
    on_each_backend(async |c| {
        let start = ok(c
            .get_match_parameters(GetMatchParametersRequest::default())
            .await)
        .parameters
        .unwrap();
        assert_eq!(start.parameters_version, 1);
        assert!(start.current);
        assert_eq!(start.origin, MatchParametersOrigin::Configured as i32);
        assert_eq!(start.match_threshold, 0.95);

        let population = Generator::new(9).population(300, 0.2);
        let patients: Vec<&Patient> = population.iter().map(|g| &g.patient).collect();
        let registered = register_all(c, &patients).await;
        let (dup, original) = population
            .iter()
            .enumerate()
            .find_map(|(i, g)| g.duplicate_of.map(|o| (i, o)))
            .expect("a duplicate");
        let found = ok(c.match_patients(by_id(&registered[dup].patient_id)).await);
        assert_eq!(found.parameters_version, 1);
        assert!(
            found.candidates.iter().any(|m| m
                .patient
                .as_ref()
                .is_some_and(|p| p.patient_id == registered[original].patient_id)),
            "the duplicate's original is a candidate under the starting parameters"
        );

        // Estimation supersedes them; they stay readable as version 1.
        let estimated = ok(c.estimate_match_parameters(estimate_request()).await);
        assert!(estimated.activated, "{:?}", estimated.activation_checks);
        assert_eq!(estimated.parameters.unwrap().parameters_version, 2);
        let first = ok(c
            .get_match_parameters(GetMatchParametersRequest {
                parameters_version: 1,
            })
            .await)
        .parameters
        .unwrap();
        assert!(!first.current);
        assert_eq!(first.origin, MatchParametersOrigin::Configured as i32);
    })
    .await;
}

#[tokio::test]
async fn a_probe_finds_through_its_identifier_holder_a_record_it_shares_no_key_with() {
    on_each_backend(async |c| {
        let at = |mut p: Patient, line: &str, postcode: &str| {
            p.addresses[0].lines = vec![line.into()];
            p.addresses[0].postal_code = postcode.into();
            p
        };
        // One person three times: the holder of the MRN, and a record registered without it
        // whose family name, birth date (day and month swapped) and postcode (two characters
        // swapped) each differ from the probe's just enough to share no blocking key with it.
        let holder = create(
            c,
            with_mrn(
                at(
                    patient("Amber", "Pamplin", (1969, 6, 10)),
                    "14 Andrea Place",
                    "LS2 7XY",
                ),
                "M-1667",
            ),
        )
        .await;
        let unidentified = create(
            c,
            at(
                patient("Amber", "Pamplin", (1969, 6, 10)),
                "14 Andrea Place",
                "LS2 7YX",
            ),
        )
        .await;
        let probe = at(
            patient("Amber", "Bamplin", (1969, 10, 6)),
            "14 Andrea Place",
            "LS2 7XY",
        );
        let candidates = |found: MatchPatientsResponse| -> Vec<(String, i32)> {
            found
                .candidates
                .into_iter()
                .map(|m| (m.patient.unwrap().patient_id, m.classification))
                .collect()
        };
        let without_identifier =
            candidates(ok(c.match_patients(by_demographics(probe.clone())).await));
        assert!(
            !without_identifier
                .iter()
                .any(|(id, _)| *id == unidentified.patient_id),
            "the probe alone shares no blocking key with the unidentified record"
        );
        let with_identifier = candidates(ok(c
            .match_patients(by_demographics(with_mrn(probe, "M-1667")))
            .await));
        let matched = MatchClassification::Match as i32;
        assert!(with_identifier.contains(&(holder.patient_id.clone(), matched)));
        assert!(
            with_identifier.contains(&(unidentified.patient_id.clone(), matched)),
            "found through the holder's keys and scored against the probe: {with_identifier:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn blocking_keys_of_an_earlier_scheme_are_rebuilt_at_start() {
    use sqlx::Connection;
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let original = create(&mut app.client, patient("Ada", "Lovelace", (1985, 12, 10))).await;
        app.stop().await;

        // As an index written by an earlier release leaves them: other keys, scheme unknown.
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        for statement in [
            "DELETE FROM blocking_keys",
            "INSERT INTO blocking_keys (key, patient_id) SELECT 'pg:old', patient_id FROM patients",
            "UPDATE blocking_scheme SET version = 0",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }

        let mut app = spawn_app(&db.url).await;
        let found = ok(app
            .client
            .match_patients(by_demographics(patient("Ada", "Lovelace", (1985, 12, 10))))
            .await);
        assert_eq!(
            found.candidates[0].patient.as_ref().unwrap().patient_id,
            original.patient_id
        );
        let old: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM blocking_keys WHERE key = 'pg:old'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let scheme: i64 = sqlx::query_scalar("SELECT version FROM blocking_scheme")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            (old, scheme),
            (0, carerecord_identity::domain::features::BLOCKING_SCHEME)
        );
        conn.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn estimate_then_match_explains_candidates() {
    on_each_backend_with(
        &[("CARERECORD_MATCH_STARTING_PARAMETERS", "false")],
        async |c| {
            // Before any estimation.
            let probe = patient("Jo", "Smith", (1980, 3, 7));
            let status = refused(c.match_patients(by_demographics(probe.clone())).await);
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(reason(&status), "MATCH_PARAMETERS_MISSING");
            let status = refused(
                c.get_match_parameters(GetMatchParametersRequest::default())
                    .await,
            );
            assert_eq!(status.code(), Code::NotFound);
            let status = refused(c.estimate_match_parameters(estimate_request()).await);
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(reason(&status), "INSUFFICIENT_DATA");

            let population = Generator::new(5).population(600, 0.25);
            let patients: Vec<&Patient> = population.iter().map(|g| &g.patient).collect();
            let registered = register_all(c, &patients).await;

            // A dry run stores nothing.
            let dry = ok(c
                .estimate_match_parameters(EstimateMatchParametersRequest {
                    dry_run: true,
                    ..estimate_request()
                })
                .await);
            assert_eq!(dry.parameters.as_ref().unwrap().parameters_version, 0);
            assert!(!dry.activated);
            assert!(
                c.get_match_parameters(GetMatchParametersRequest::default())
                    .await
                    .is_err()
            );

            let estimated = ok(c.estimate_match_parameters(estimate_request()).await);
            assert!(estimated.activated, "{:?}", estimated.activation_checks);
            let params = estimated.parameters.unwrap();
            assert_eq!(params.parameters_version, 1);
            assert!(params.current && params.converged);
            assert_eq!(params.origin, MatchParametersOrigin::Estimated as i32);
            assert_eq!(params.random_seed, 11);
            assert_eq!(params.estimated_by.as_ref().unwrap().user_id, "clerk-1");
            assert!(params.prior_match_probability > 0.0 && params.prior_match_probability < 0.01);
            let fields: Vec<&str> = params.fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(
                fields,
                [
                    "nhs_number",
                    "identifier",
                    "given_name",
                    "family_name",
                    "birth_date",
                    "gender",
                    "postcode",
                    "address",
                    "phone",
                    "email"
                ]
            );
            for f in &params.fields {
                let m: f64 = f.levels.iter().map(|l| l.m_probability).sum();
                let u: f64 = f.levels.iter().map(|l| l.u_probability).sum();
                assert!((m - 1.0).abs() < 1e-3 && (u - 1.0).abs() < 1e-3, "{f:?}");
            }
            let family = params
                .fields
                .iter()
                .find(|f| f.field == "family_name")
                .unwrap();
            assert!(family.levels[0].weight > 3.0, "{family:?}");
            let got = ok(c
                .get_match_parameters(GetMatchParametersRequest {
                    parameters_version: 1,
                })
                .await);
            assert_eq!(got.parameters.unwrap().fields, params.fields);
            let status = refused(
                c.get_match_parameters(GetMatchParametersRequest {
                    parameters_version: 9,
                })
                .await,
            );
            assert_eq!(status.code(), Code::NotFound);
            let status = refused(
                c.get_match_parameters(GetMatchParametersRequest {
                    parameters_version: -1,
                })
                .await,
            );
            assert_eq!(violations(&status), ["parameters_version"]);

            // Each duplicate finds its original as the top MATCH, most of the time, with evidence.
            let mut found = 0;
            let mut total = 0;
            for (i, g) in population.iter().enumerate() {
                let Some(of) = g.duplicate_of else { continue };
                total += 1;
                let response = ok(c
                    .match_patients(MatchPatientsRequest {
                        max_candidates: 3,
                        include_non_matches: false,
                        ..by_id(&registered[i].patient_id)
                    })
                    .await);
                assert_eq!(response.parameters_version, 1);
                assert!(
                    response.candidates.iter().all(|cand| cand
                        .patient
                        .as_ref()
                        .unwrap()
                        .patient_id
                        != registered[i].patient_id)
                );
                if response.candidates.iter().any(|cand| {
                    cand.patient.as_ref().unwrap().patient_id == registered[of].patient_id
                        && cand.classification != MatchClassification::NonMatch as i32
                }) {
                    found += 1;
                }
                for cand in &response.candidates {
                    assert_eq!(cand.evidence.len(), 10);
                    let sum: f64 = cand.evidence.iter().map(|e| e.weight).sum();
                    assert!((sum - cand.match_weight).abs() < 1e-9);
                    assert!(cand.match_probability >= response.possible_threshold);
                }
            }
            assert!(
                found as f64 >= 0.85 * total as f64,
                "{found} of {total} duplicates found"
            );

            // A demographics probe with a typo: evidence says which fields agreed and how.
            let loner = (0..population.len())
                .find(|&i| {
                    population[i].duplicate_of.is_none()
                        && !population.iter().any(|g| g.duplicate_of == Some(i))
                })
                .unwrap();
            let original = &registered[loner];
            let mut probe = original.clone();
            probe.names[0].family = format!("{}x", probe.names[0].family);
            probe.identifiers.clear();
            let response = ok(c
                .match_patients(MatchPatientsRequest {
                    max_candidates: 5,
                    include_non_matches: true,
                    ..by_demographics(probe)
                })
                .await);
            let top = &response.candidates[0];
            assert_eq!(
                top.patient.as_ref().unwrap().patient_id,
                original.patient_id
            );
            assert_eq!(top.classification, MatchClassification::Match as i32);
            let family = evidence(top, "family_name");
            assert_eq!(family.level, ComparisonLevel::Partial as i32);
            assert_eq!(family.comparator, "jaro_winkler");
            let birth = evidence(top, "birth_date");
            assert_eq!(
                (birth.level, birth.similarity),
                (ComparisonLevel::Exact as i32, 1.0)
            );
            let identifier = evidence(top, "identifier");
            assert_eq!(
                (identifier.level, identifier.weight),
                (ComparisonLevel::Missing as i32, 0.0)
            );
            assert!(response.pairs_compared >= 1);

            // Bad probes.
            let status = refused(c.match_patients(MatchPatientsRequest::default()).await);
            assert_eq!(violations(&status), ["probe"]);
            let status = refused(
                c.match_patients(MatchPatientsRequest {
                    max_candidates: -1,
                    ..by_demographics(Patient {
                        nhs_number: "12345".into(),
                        ..Default::default()
                    })
                })
                .await,
            );
            assert_eq!(
                violations(&status),
                ["max_candidates", "demographics.nhs_number"]
            );
            let status = refused(c.match_patients(by_demographics(Patient::default())).await);
            assert_eq!(violations(&status), ["demographics"]);
            let status = refused(
                c.match_patients(by_id(&uuid::Uuid::new_v4().to_string()))
                    .await,
            );
            assert_eq!(status.code(), Code::NotFound);
            let status = refused(
                c.estimate_match_parameters(EstimateMatchParametersRequest {
                    convergence_threshold: 1.0,
                    max_random_pairs: -1,
                    ..Default::default()
                })
                .await,
            );
            assert_eq!(
                violations(&status),
                ["requester", "max_random_pairs", "convergence_threshold"]
            );
        },
    )
    .await;
}

#[tokio::test]
async fn search_exact_and_fuzzy() {
    use SearchMode::{Exact, Fuzzy};
    on_each_backend(async |c| {
        let smith = create(c, patient("Catherine", "Smith", (1980, 3, 7))).await;
        let smyth = create(c, patient("Catherine", "Smyth", (1980, 7, 3))).await;
        let mut married = patient("Anne", "Brown", (1975, 5, 20));
        married.names.push(HumanName {
            given: vec!["Anne".into()],
            family: "Green".into(),
            ..Default::default()
        });
        let married = create(c, married).await;
        let transposed = create(c, patient("Smith", "Catherine", (1980, 3, 7))).await;
        let query = |family: &str,
                     given: &str,
                     birth: search_patients_request::Birth,
                     mode: SearchMode| SearchPatientsRequest {
            family_name: family.into(),
            given_name: given.into(),
            birth: Some(birth),
            mode: mode as i32,
            ..Default::default()
        };
        let born = |y, m, d| {
            search_patients_request::Birth::BirthDate(Date {
                year: y,
                month: m,
                day: d,
            })
        };
        let ids = |r: &SearchPatientsResponse| {
            r.results
                .iter()
                .map(|x| x.patient.as_ref().unwrap().patient_id.clone())
                .collect::<Vec<_>>()
        };

        let exact = ok(c
            .search_patients(query("SMITH", "catherine", born(1980, 3, 7), Exact))
            .await);
        assert_eq!(ids(&exact), [smith.patient_id.as_str()]);
        assert_eq!(exact.results[0].score, 1.0);
        assert_eq!(exact.max_results_applied, 10);
        // Prefix wildcard, historic names, ranges.
        let r = ok(c
            .search_patients(query("Sm*", "", born(1980, 3, 7), Exact))
            .await);
        assert_eq!(ids(&r), [smith.patient_id.as_str()]);
        let range = search_patients_request::Birth::BirthDateRange(DateRange {
            start: Some(Date {
                year: 1975,
                month: 1,
                day: 1,
            }),
            end: None,
        });
        let r = ok(c.search_patients(query("green", "", range, Exact)).await);
        assert_eq!(ids(&r), [married.patient_id.as_str()]);

        // Fuzzy: phonetic and Jaro-Winkler names, swapped day and month, transposed names.
        let fuzzy = ok(c
            .search_patients(query("Smith", "Catherine", born(1980, 3, 7), Fuzzy))
            .await);
        let found = ids(&fuzzy);
        assert_eq!(found[0], smith.patient_id);
        assert_eq!(fuzzy.results[0].score, 1.0);
        assert!(found.contains(&smyth.patient_id), "{fuzzy:?}");
        assert!(found.contains(&transposed.patient_id), "{fuzzy:?}");
        assert!(fuzzy.results[1..].iter().all(|r| r.score < 1.0));
        // Capped results.
        let r = ok(c
            .search_patients(SearchPatientsRequest {
                max_results: 1,
                ..query("Smith", "Catherine", born(1980, 3, 7), Fuzzy)
            })
            .await);
        assert_eq!(r.results.len(), 1);
        assert!(r.more_results_available);
        let r = ok(c
            .search_patients(SearchPatientsRequest {
                max_results: 1000,
                ..query("Smith", "", born(1980, 3, 7), Exact)
            })
            .await);
        assert_eq!(r.max_results_applied, 50);

        // Bad input.
        let status = refused(
            c.search_patients(SearchPatientsRequest {
                family_name: " - ".into(),
                ..Default::default()
            })
            .await,
        );
        assert_eq!(violations(&status), ["family_name", "birth_date"]);
        let status = refused(
            c.search_patients(query("S*", "Ca*t", born(1980, 2, 30), Exact))
                .await,
        );
        assert_eq!(
            violations(&status),
            ["family_name", "given_name", "birth_date.day"]
        );
        let status = refused(
            c.search_patients(query("Smi*", "", born(1980, 1, 1), Fuzzy))
                .await,
        );
        assert_eq!(violations(&status), ["family_name"]);
        let bad_range = search_patients_request::Birth::BirthDateRange(DateRange {
            start: Some(Date {
                year: 1990,
                month: 1,
                day: 1,
            }),
            end: Some(Date {
                year: 1980,
                month: 1,
                day: 1,
            }),
        });
        let status = refused(
            c.search_patients(SearchPatientsRequest {
                max_results: -1,
                ..query("Smith", "", bad_range, Exact)
            })
            .await,
        );
        assert_eq!(violations(&status), ["birth_date_range", "max_results"]);
        let empty_range = search_patients_request::Birth::BirthDateRange(DateRange::default());
        let status = refused(
            c.search_patients(query("Smith", "", empty_range, Exact))
                .await,
        );
        assert_eq!(violations(&status), ["birth_date_range"]);
    })
    .await;
}

#[tokio::test]
async fn single_names_and_partial_birth_dates_register_and_match() {
    on_each_backend(async |c| {
        let mut single = patient("Madonna", "", (1958, 8, 16));
        single.names[0].given = vec!["Madonna".into()];
        let single = create(c, single).await;
        let year_only = create(c, patient("Peregrine", "Pamplin", (1961, 0, 0))).await;
        assert_eq!(
            year_only.birth_date.as_ref().map(|d| (d.month, d.day)),
            Some((0, 0))
        );

        // A later registration with the full date finds the year-only one, the dates agreeing
        // partially at the year.
        let found = ok(c
            .match_patients(by_demographics(patient(
                "Peregrine",
                "Pamplin",
                (1961, 4, 2),
            )))
            .await);
        let top = &found.candidates[0];
        assert_eq!(
            top.patient.as_ref().unwrap().patient_id,
            year_only.patient_id
        );
        let birth = evidence(top, "birth_date");
        assert_eq!(
            (
                birth.level,
                birth.comparator.as_str(),
                birth.candidate_value.as_str()
            ),
            (ComparisonLevel::Partial as i32, "partial_date", "1961")
        );
        // A single name is found by its given name; the missing family name is no evidence.
        let found = ok(c
            .match_patients(by_demographics(patient("Madonna", "", (1958, 8, 16))))
            .await);
        let top = &found.candidates[0];
        assert_eq!(top.patient.as_ref().unwrap().patient_id, single.patient_id);
        let family = evidence(top, "family_name");
        assert_eq!(
            (family.level, family.weight),
            (ComparisonLevel::Missing as i32, 0.0)
        );
        // Evidence keeps the level's weight beside the adjusted one, and names the adjustment.
        let given = evidence(top, "given_name");
        assert!(given.level_weight > 0.0);
        assert!(
            ["term_frequency", "same_household"].contains(&given.adjustment.as_str()),
            "{given:?}"
        );
        // A day without a month is still refused.
        let status = refused(
            c.create_patient(CreatePatientRequest {
                request_id: request_id(),
                patient: Some(patient("Ada", "Lovelace", (1985, 0, 10))),
                requester: Some(requester()),
            })
            .await,
        );
        assert_eq!(violations(&status), ["patient.birth_date.month"]);
    })
    .await;
}
