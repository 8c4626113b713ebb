//! SearchPatients: exact and fuzzy search, ordering, limits and validation.
//!
//! Scores of fuzzy search depend on each implementation's comparators, which the contract leaves
//! open; these tests check only what it fixes: exact-search semantics, validation and ordering.

use carerecord_contracts::common::v1::{AdministrativeGender, Date, DateRange};
use carerecord_contracts::identity::v1::search_patients_request::Birth;
use carerecord_contracts::identity::v1::{SearchMode, SearchPatientsRequest};

use super::support::{client, create, family_name, new_patient, requester};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok};
use crate::refusal::{Refusal, refuse_each};

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

pub(super) async fn search_exact(ctx: Ctx) -> TestResult {
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

pub(super) async fn search_prefix_and_range(ctx: Ctx) -> TestResult {
    let mut input = new_patient();
    let old_family = family_name();
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

pub(super) async fn search_merged_and_limits(ctx: Ctx) -> TestResult {
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

pub(super) async fn search_fuzzy_includes_exact(ctx: Ctx) -> TestResult {
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

pub(super) async fn search_invalid(ctx: Ctx) -> TestResult {
    let on = |year, month, day| Date { year, month, day };
    let range = |start, end| Birth::BirthDateRange(DateRange { start, end });
    let smith = |birth| search("Smith", birth);
    let family_name = || Refusal::invalid_under("family_name");
    let table = vec![
        (
            "an empty family name",
            search(" - ", Birth::BirthDate(DOB)),
            family_name(),
        ),
        (
            "no birth date",
            SearchPatientsRequest {
                family_name: "Smith".into(),
                ..Default::default()
            },
            Refusal::invalid_request(),
        ),
        (
            "a range with no bound",
            smith(range(None, None)),
            Refusal::invalid_under("birth_date_range"),
        ),
        (
            "a range with start after end",
            smith(range(Some(on(1990, 1, 2)), Some(on(1990, 1, 1)))),
            Refusal::invalid_under("birth_date_range"),
        ),
        (
            "an invalid date",
            smith(Birth::BirthDate(on(1990, 13, 1))),
            Refusal::invalid_under("birth_date"),
        ),
        (
            "a wildcard after one character",
            search("S*", Birth::BirthDate(DOB)),
            family_name(),
        ),
        (
            "a wildcard not at the end",
            search("Sm*th", Birth::BirthDate(DOB)),
            family_name(),
        ),
        (
            "a wildcard in fuzzy mode",
            SearchPatientsRequest {
                mode: SearchMode::Fuzzy as i32,
                ..search("Smi*", Birth::BirthDate(DOB))
            },
            family_name(),
        ),
        (
            "negative max_results",
            SearchPatientsRequest {
                max_results: -1,
                ..smith(Birth::BirthDate(DOB))
            },
            Refusal::invalid_under("max_results"),
        ),
    ];
    refuse_each!(client(&ctx), search_patients, table).await
}
