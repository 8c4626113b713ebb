use carerecord_contracts::common::v1::{Address, AdministrativeGender, Date, HumanName};
use carerecord_contracts::identity::v1::Patient;

use super::*;
use crate::domain::model::Classification;

/// A person at 12 Mill Lane, LS1 4AP.
fn person(given: &str, family: &str, birth: (i32, i32, i32), female: bool) -> Patient {
    Patient {
        names: vec![HumanName {
            given: vec![given.into()],
            family: family.into(),
            ..HumanName::default()
        }],
        birth_date: Some(Date {
            year: birth.0,
            month: birth.1,
            day: birth.2,
        }),
        gender: if female {
            AdministrativeGender::Female
        } else {
            AdministrativeGender::Male
        } as i32,
        addresses: vec![Address {
            lines: vec!["12 Mill Lane".into()],
            city: "Leeds".into(),
            postal_code: "LS1 4AP".into(),
            ..Address::default()
        }],
        ..Patient::default()
    }
}

fn moved(mut p: Patient) -> Patient {
    p.addresses = vec![Address {
        lines: vec!["3 Orchard Way".into()],
        city: "York".into(),
        postal_code: "YO10 5DD".into(),
        ..Address::default()
    }];
    p
}

fn with_nhs(mut p: Patient, nhs: &str) -> Patient {
    p.nhs_number = nhs.into();
    p
}

fn model() -> Model {
    Model::starting(0.95, 0.5)
}

/// The classification, weight and evidence of a pair under the starting parameters.
fn score(
    a: &Patient,
    b: &Patient,
    frequencies: &NameFrequencies,
) -> (Classification, f64, Vec<FieldScore>) {
    let model = model();
    let scorer = Scorer::new(&model, frequencies);
    let (fa, fb) = (Features::of(a), Features::of(b));
    let scored = scorer.score(&fa, &fb);
    let weight = scored.weight;
    let explained = scorer.explain(&fa, &fb);
    let sum: f64 = explained.iter().map(|s| s.weight).sum();
    assert!((sum - weight).abs() < 1e-9);
    (scored.classify(&model), weight, explained)
}

fn field(scores: &[FieldScore], f: Field) -> &FieldScore {
    &scores[f.index()]
}

fn none() -> NameFrequencies {
    NameFrequencies::default()
}

#[test]
fn twins_at_one_address_are_not_matched() {
    let a = person("Jack", "Pamplin", (2015, 3, 7), false);
    // A twin with a name that sounds alike, and one with another name and sex.
    for b in [
        person("Jake", "Pamplin", (2015, 3, 7), false),
        person("Lily", "Pamplin", (2015, 3, 7), true),
    ] {
        let (class, _, evidence) = score(&a, &b, &none());
        assert_ne!(class, Classification::Match, "{evidence:#?}");
        assert_eq!(
            field(&evidence, Field::BirthDate).adjustment,
            Adjustment::SameHousehold
        );
        // A given name that only sounds alike says "twin", not "typo".
        let given = field(&evidence, Field::GivenName);
        if given.comparison.level == Level::Partial {
            assert_eq!(given.adjustment, Adjustment::Twin);
        }
    }
    // The same child registered twice at that address is.
    let (class, _, _) = score(&a, &person("Jack", "Pamplin", (2015, 3, 7), false), &none());
    assert_eq!(class, Classification::Match);
}

#[test]
fn a_missing_given_name_at_a_twins_address_is_at_most_possible() {
    let registered = person("Jack", "Pamplin", (2015, 3, 7), false);
    let mut nameless = registered.clone();
    nameless.names[0].given.clear();
    // Weighs like a match (weights alone cannot tell), yet a twin would look the same.
    let model = model();
    let (class, weight, evidence) = score(&nameless, &registered, &none());
    assert!(
        model.classify(model.probability(weight)) == Classification::Match,
        "the weight alone would say MATCH: {weight}"
    );
    assert_eq!(class, Classification::Possible, "{evidence:#?}");
    let given = field(&evidence, Field::GivenName);
    assert_eq!(
        (given.comparison.level, given.adjustment, given.weight),
        (Level::Missing, Adjustment::Twin, 0.0)
    );
    // An NHS number on both makes it the same patient again.
    let (class, _, _) = score(
        &with_nhs(nameless.clone(), "943 476 5919"),
        &with_nhs(registered.clone(), "943 476 5919"),
        &none(),
    );
    assert_eq!(class, Classification::Match);
    // Away from that address (a move) the rule does not apply.
    let (_, _, evidence) = score(&moved(nameless), &registered, &none());
    assert_eq!(
        field(&evidence, Field::GivenName).adjustment,
        Adjustment::None
    );
}

#[test]
fn postcode_and_address_count_once() {
    let a = person("Ada", "Lovelace", (1985, 12, 10), true);
    let (_, _, evidence) = score(&a, &a.clone(), &none());
    let (postcode, address) = (
        field(&evidence, Field::Postcode),
        field(&evidence, Field::Address),
    );
    assert!(postcode.weight + address.weight < postcode.level_weight + address.level_weight - 8.0);
    // Moving is one event: the address adds nothing to the postcode's disagreement.
    let (class, _, evidence) = score(&a, &moved(a.clone()), &none());
    assert_eq!(field(&evidence, Field::Address).weight, 0.0);
    assert_eq!(class, Classification::Match);
}

#[test]
fn a_marriage_with_a_move_matches_on_the_nhs_number() {
    let a = with_nhs(
        person("Ada", "Lovelace", (1985, 12, 10), true),
        "9434765919",
    );
    let b = with_nhs(
        moved(person("Ada", "Byron", (1985, 12, 10), true)),
        "9434765919",
    );
    let (class, _, evidence) = score(&a, &b, &none());
    assert_eq!(class, Classification::Match);
    assert_eq!(
        field(&evidence, Field::FamilyName).adjustment,
        Adjustment::Marriage
    );
    // A man's surname change is not read as a marriage.
    let c = person("Adam", "Lovelace", (1985, 12, 10), false);
    let d = person("Adam", "Byron", (1985, 12, 10), false);
    let (_, _, evidence) = score(&c, &d, &none());
    assert_eq!(
        field(&evidence, Field::FamilyName).adjustment,
        Adjustment::None
    );
}

#[test]
fn rare_names_agreeing_count_more_than_common_ones() {
    let frequencies = NameFrequencies::new(
        [("john".to_owned(), 900), ("peregrine".to_owned(), 1)],
        [
            ("smith".to_owned(), 1_150),
            ("pamplin".to_owned(), 2),
            ("x".to_owned(), 98_000),
        ],
    );
    let common = moved(person("John", "Smith", (1970, 1, 2), false));
    let rare = moved(person("Peregrine", "Pamplin", (1970, 1, 2), false));
    let (_, w_common, e) = score(
        &common,
        &person("John", "Smith", (1970, 1, 2), false),
        &frequencies,
    );
    assert_eq!(
        field(&e, Field::FamilyName).adjustment,
        Adjustment::TermFrequency
    );
    let (_, w_rare, _) = score(
        &rare,
        &person("Peregrine", "Pamplin", (1970, 1, 2), false),
        &frequencies,
    );
    assert!(w_rare > w_common + 8.0, "{w_rare} {w_common}");
}

#[test]
fn nicknames_and_double_barrelled_names_agree_partially() {
    let a = person("William", "Smith-Jones", (1970, 1, 2), false);
    let b = person("Bill", "Jones", (1970, 1, 2), false);
    let (_, _, e) = score(&a, &b, &none());
    assert_eq!(
        (
            field(&e, Field::GivenName).comparison.comparator,
            field(&e, Field::FamilyName).comparison.comparator
        ),
        ("nickname", "double_barrelled")
    );
}

#[test]
fn partial_birth_dates_compare_at_their_precision() {
    let a = person("Ada", "", (1985, 0, 0), true);
    let (_, _, e) = score(
        &a,
        &person("Ada", "Lovelace", (1985, 12, 10), true),
        &none(),
    );
    let birth = &field(&e, Field::BirthDate).comparison;
    assert_eq!(
        (birth.level, birth.comparator),
        (Level::Partial, "partial_date")
    );
    assert_eq!(birth.probe_value, "1985");
    assert_eq!(
        field(&e, Field::FamilyName).comparison.level,
        Level::Missing
    );
    let (_, _, e) = score(
        &a,
        &person("Ada", "Lovelace", (1986, 12, 10), true),
        &none(),
    );
    assert_eq!(
        field(&e, Field::BirthDate).comparison.level,
        Level::Disagree
    );
}
