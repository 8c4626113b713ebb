//! Scoring a pair: each field's level weight, log2(m / u), adjusted where treating fields as
//! independent gets real records wrong (the contract names each adjustment on MatchPatients):
//!
//! - term frequency: a rare name agreeing is stronger evidence than a common one;
//! - household: postcode and address are one piece of evidence, not two;
//! - same household: family members share a family name and an address, and twins a birth
//!   date too, so at one address those agreements say less;
//! - twins: at one address with one birth date, a different given name is what twins look like;
//! - marriage: a new family name with the rest agreeing is what a marriage looks like.

use std::collections::HashMap;

use super::compare;
use super::features::{Features, house_number};
use super::field::{FIELD_COUNT, FIELDS, Field, Level};
use super::model::{self, Comparison, Model, Outcome};

/// Exact name agreement never weighs more than if the name were this many times rarer than
/// the average agreement u: one-off spellings are not that much evidence.
const TERM_FREQUENCY_FLOOR: f64 = 32.0;
/// Names the counted shares are smoothed with, each as common as the average agreement u, so a
/// small index (where every name is "common") gives about u.
const TERM_FREQUENCY_PRIOR: f64 = 1000.0;
/// Share of pairs of people at one postcode who live at one address.
const SAME_POSTCODE_SAME_ADDRESS: f64 = 0.07;
/// Shares of pairs of different people at one address who share a family name, a given name
/// (a son named after his father), a birth date (twins), an NHS number (one written on
/// another's form).
const HOUSEHOLD_FAMILY: f64 = 0.5;
const HOUSEHOLD_GIVEN: f64 = 0.005;
const HOUSEHOLD_BIRTH: f64 = 0.01;
const HOUSEHOLD_NHS_NUMBER: f64 = 0.003;
/// A name partially agreeing with a rare name is rarer than with a common one: u of a partial
/// agreement scales with the candidate name's share, down to this fraction of u.
const PARTIAL_FREQUENCY_FLOOR: f64 = 1.0 / 8.0;
/// Among twins, the shares whose given names compare partially and that disagree.
const TWIN_PARTIAL: f64 = 0.25;
const TWIN_DISAGREE: f64 = 0.75;
/// Share of the same woman's records, from 16 on, that carry different family names.
const MARRIAGE: f64 = 0.2;
const ADULT_AGE: i32 = 16;

/// Why a field's weight differs from its level's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    None,
    TermFrequency,
    Household,
    SameHousehold,
    Twin,
    Marriage,
}

impl Adjustment {
    /// The name the contract uses in `FieldEvidence.adjustment`; empty for none.
    pub fn name(self) -> &'static str {
        match self {
            Adjustment::None => "",
            Adjustment::TermFrequency => "term_frequency",
            Adjustment::Household => "household",
            Adjustment::SameHousehold => "same_household",
            Adjustment::Twin => "twin",
            Adjustment::Marriage => "marriage",
        }
    }
}

/// How often each normalised given and family name occurs among the index's names.
#[derive(Debug, Clone, Default)]
pub struct NameFrequencies {
    given: HashMap<String, u32>,
    family: HashMap<String, u32>,
    given_total: f64,
    family_total: f64,
}

impl NameFrequencies {
    pub fn new(
        given: impl IntoIterator<Item = (String, u32)>,
        family: impl IntoIterator<Item = (String, u32)>,
    ) -> Self {
        let given: HashMap<String, u32> = given.into_iter().collect();
        let family: HashMap<String, u32> = family.into_iter().collect();
        NameFrequencies {
            given_total: given.values().map(|&n| f64::from(n)).sum(),
            family_total: family.values().map(|&n| f64::from(n)).sum(),
            given,
            family,
        }
    }

    /// The share of names with this value, smoothed towards `u` (a name not counted, because
    /// registered since, counts once).
    fn share(&self, field: Field, value: &str, u: f64) -> f64 {
        let (counts, total) = match field {
            Field::GivenName => (&self.given, self.given_total),
            _ => (&self.family, self.family_total),
        };
        let n = f64::from(counts.get(value).copied().unwrap_or(0).max(1));
        (n + TERM_FREQUENCY_PRIOR * u) / (total + TERM_FREQUENCY_PRIOR)
    }
}

/// One field's part in a pair's score.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldScore {
    pub comparison: Comparison,
    /// log2(m / u) of the level; 0 when missing.
    pub level_weight: f64,
    /// What the field contributes.
    pub weight: f64,
    pub adjustment: Adjustment,
}

/// Scores pairs under a model and the index's name frequencies.
#[derive(Debug, Clone, Copy)]
pub struct Scorer<'a> {
    model: &'a Model,
    frequencies: &'a NameFrequencies,
    this_year: i32,
}

struct Evaluation<'a> {
    outcomes: [Outcome<'a>; FIELD_COUNT],
    weights: [f64; FIELD_COUNT],
    adjustments: [Adjustment; FIELD_COUNT],
    /// Whether nothing in the pair tells a patient from their twin (see [`PairScore`]).
    twin_ambiguous: bool,
}

/// A pair's match weight, and whether its class may be MATCH at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScore {
    pub weight: f64,
    /// False when the pair lives at one address with one birth date, one of them has no given
    /// name, and no NHS number or identifier agrees: a twin would look exactly the same, so the
    /// pair is at most a possible match, for a person to decide.
    pub may_match: bool,
}

impl PairScore {
    /// The pair's class under `model`: its probability's class, at most POSSIBLE when it may
    /// not match.
    pub fn classify(&self, model: &Model) -> model::Classification {
        let class = model.classify(model.probability(self.weight));
        if class == model::Classification::Match && !self.may_match {
            model::Classification::Possible
        } else {
            class
        }
    }
}

impl Evaluation<'_> {
    fn set(&mut self, field: Field, weight: f64, why: Adjustment) {
        self.weights[field.index()] = weight;
        self.adjustments[field.index()] = why;
    }
}

impl<'a> Scorer<'a> {
    pub fn new(model: &'a Model, frequencies: &'a NameFrequencies) -> Self {
        Scorer {
            model,
            frequencies,
            this_year: super::validate::today().0,
        }
    }

    /// The pair's match weight.
    pub fn weight(&self, p: &Features, c: &Features) -> f64 {
        self.score(p, c).weight
    }

    /// The pair's match weight and whether it may be a match.
    pub fn score(&self, p: &Features, c: &Features) -> PairScore {
        let e = self.evaluate(p, c);
        PairScore {
            weight: e.weights.iter().sum(),
            may_match: !e.twin_ambiguous,
        }
    }

    /// Every field's comparison and weight, in field order.
    pub fn explain(&self, p: &Features, c: &Features) -> Vec<FieldScore> {
        let e = self.evaluate(p, c);
        FIELDS
            .iter()
            .map(|&field| {
                let o = e.outcomes[field.index()];
                FieldScore {
                    comparison: o.comparison(field),
                    level_weight: self.model.weight(field, o.level),
                    weight: e.weights[field.index()],
                    adjustment: e.adjustments[field.index()],
                }
            })
            .collect()
    }

    /// log2(m / u) for a field's level with u replaced.
    fn given_u(&self, field: Field, level: Level, u: f64) -> f64 {
        (self.model.m[field.index()][level.index()] / u).log2()
    }

    fn evaluate<'p>(&self, p: &'p Features, c: &'p Features) -> Evaluation<'p> {
        let outcomes = model::outcomes(self.model, p, c);
        let level = |f: Field| outcomes[f.index()].level;
        let mut e = Evaluation {
            outcomes,
            weights: FIELDS.map(|f| self.model.weight(f, level(f))),
            adjustments: [Adjustment::None; FIELD_COUNT],
            twin_ambiguous: false,
        };
        let agrees = |l: Level| matches!(l, Level::Exact | Level::Partial);

        // Term frequency of names agreeing exactly, and partially (not across fields).
        for f in [Field::GivenName, Field::FamilyName] {
            let o = outcomes[f.index()];
            let u_exact = self.model.u[f.index()][Level::Exact.index()];
            let share = self.frequencies.share(f, o.candidate.text(), u_exact);
            if o.level == Level::Exact {
                let floor = u_exact / TERM_FREQUENCY_FLOOR;
                e.set(
                    f,
                    self.given_u(f, Level::Exact, share.max(floor)),
                    Adjustment::TermFrequency,
                );
            } else if o.level == Level::Partial && !matches!(o.comparator, "transposed" | "crossed")
            {
                let u = self.model.u[f.index()][Level::Partial.index()];
                let scale = (share / u_exact).clamp(PARTIAL_FREQUENCY_FLOOR, 1.0);
                if scale < 1.0 {
                    e.set(
                        f,
                        self.given_u(f, Level::Partial, u * scale),
                        Adjustment::TermFrequency,
                    );
                }
            }
        }

        // Postcode and address: one piece of evidence (agreeing, where neighbours share a
        // postcode and often a street; an index without households has few neighbours).
        let (postcode, address) = (level(Field::Postcode), level(Field::Address));
        if agrees(postcode) && agrees(address) && self.model.households {
            let weaker = if e.weights[Field::Postcode.index()] < e.weights[Field::Address.index()] {
                Field::Postcode
            } else {
                Field::Address
            };
            let conditional = self.given_u(weaker, level(weaker), SAME_POSTCODE_SAME_ADDRESS);
            if conditional < e.weights[weaker.index()] {
                e.set(weaker, conditional, Adjustment::Household);
            }
        } else if postcode == Level::Disagree && address == Level::Disagree {
            e.set(Field::Address, 0.0, Adjustment::Household);
        }

        // At one address, what family members share says less, and twins look like this.
        let a = outcomes[Field::Address.index()];
        let same_house = (agrees(address)
            && postcode != Level::Disagree
            && (address == Level::Exact
                || house_number(a.probe.text())
                    .is_some_and(|n| house_number(a.candidate.text()) == Some(n))))
            || (postcode == Level::Exact && address == Level::Missing);
        if same_house && self.model.households {
            for (f, share) in [
                (Field::FamilyName, HOUSEHOLD_FAMILY),
                (Field::GivenName, HOUSEHOLD_GIVEN),
                (Field::BirthDate, HOUSEHOLD_BIRTH),
                (Field::NhsNumber, HOUSEHOLD_NHS_NUMBER),
            ] {
                let conditional = self.given_u(f, Level::Exact, share);
                if level(f) == Level::Exact && conditional < e.weights[f.index()] {
                    e.set(f, conditional, Adjustment::SameHousehold);
                }
            }
            // Names alike but not one keying error apart (Jack and Jake), or unlike: twins'
            // names; a nickname or a single slip of the keyboard is the same child's.
            let given = outcomes[Field::GivenName.index()];
            let twin_like = match given.level {
                Level::Disagree => true,
                Level::Partial => {
                    given.comparator != "nickname"
                        && compare::damerau_levenshtein(given.probe.text(), given.candidate.text())
                            > 1
                }
                _ => false,
            };
            // No given name on one side: nothing tells the patient from a twin, unless an NHS
            // number or identifier agrees.
            if level(Field::BirthDate) == Level::Exact
                && given.level == Level::Missing
                && level(Field::NhsNumber) != Level::Exact
                && level(Field::Identifier) != Level::Exact
            {
                e.adjustments[Field::GivenName.index()] = Adjustment::Twin;
                e.twin_ambiguous = true;
            }
            if level(Field::BirthDate) == Level::Exact && twin_like {
                let share = if given.level == Level::Partial {
                    TWIN_PARTIAL
                } else {
                    TWIN_DISAGREE
                };
                let twin = self.given_u(Field::GivenName, given.level, share);
                if twin < e.weights[Field::GivenName.index()] {
                    e.set(Field::GivenName, twin, Adjustment::Twin);
                }
            }
        }

        // A new family name, the rest agreeing: a marriage.
        let adult = [p, c].iter().any(|f| {
            f.birth()
                .is_some_and(|(y, _, _)| y <= self.this_year - ADULT_AGE)
        });
        if level(Field::FamilyName) == Level::Disagree
            && agrees(level(Field::GivenName))
            && agrees(level(Field::BirthDate))
            && p.gender != 1
            && c.gender != 1
            && adult
        {
            let u = self.model.u[Field::FamilyName.index()][Level::Disagree.index()];
            let married = (MARRIAGE / u).log2();
            if married > e.weights[Field::FamilyName.index()] {
                e.set(Field::FamilyName, married, Adjustment::Marriage);
            }
        }
        e
    }
}

#[cfg(test)]
mod tests;
