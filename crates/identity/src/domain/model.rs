//! The Fellegi-Sunter model: the level pattern of a pair, its weight, probability and class.

use super::compare::{self, DateAgreement};
use super::features::{Features, NameFeatures};
use super::field::{FIELD_COUNT, FIELDS, Field, Level};

/// One field's comparison, with the values that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub level: Level,
    pub comparator: &'static str,
    pub similarity: f64,
    pub probe_value: String,
    pub candidate_value: String,
}

/// The levels of every field for one pair, packed two bits per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern(pub u32);

impl Pattern {
    pub fn level(self, field: usize) -> Level {
        Level::from_index((self.0 >> (2 * field)) & 3)
    }
    pub fn from_levels(levels: &[Level; FIELD_COUNT]) -> Pattern {
        Pattern(
            levels
                .iter()
                .enumerate()
                .fold(0, |acc, (i, l)| acc | ((*l as u32) << (2 * i))),
        )
    }
}

/// The m and u probabilities of every field and level, the prior, and the thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// `m[field][level]` for Exact, Partial, Disagree.
    pub m: [[f64; 3]; FIELD_COUNT],
    pub u: [[f64; 3]; FIELD_COUNT],
    pub lambda: f64,
    pub match_threshold: f64,
    pub possible_threshold: f64,
    /// Whether the index holds households (different people at one address), so that the
    /// same-household and twin adjustments apply.
    pub households: bool,
}

pub const PROBABILITY_FLOOR: f64 = 0.000_001;
pub const PROBABILITY_CEILING: f64 = 0.999_999;

pub fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() {
        PROBABILITY_FLOOR
    } else {
        p.clamp(PROBABILITY_FLOOR, PROBABILITY_CEILING)
    }
}

/// The built-in starting values of m and u per field, for the levels of `Field::levels` in
/// order, and the prior. They are deliberately conservative, typical of a national index (u from
/// the cardinality of each field, m from typical keying and change rates: people move house and
/// change surnames), so that an identifier alone is never enough for a MATCH; an NHS number,
/// traced and unique to one person, comes close. EstimateMatchParameters replaces them with
/// values from the deployment's own data.
pub const STARTING_PRIOR: f64 = 1e-6;

/// See [`STARTING_PRIOR`].
pub fn starting_values(field: Field) -> (&'static [f64], &'static [f64]) {
    match field {
        Field::NhsNumber => (&[0.95, 0.02, 0.03], &[1e-7, 1e-5, 1.0 - 1.01e-5]),
        Field::Identifier => (&[0.90, 0.03, 0.07], &[1e-6, 1e-5, 1.0 - 1.1e-5]),
        Field::GivenName => (&[0.86, 0.10, 0.04], &[0.01, 0.02, 0.97]),
        Field::FamilyName => (&[0.88, 0.06, 0.06], &[0.005, 0.01, 0.985]),
        Field::BirthDate => (&[0.92, 0.05, 0.03], &[3e-5, 5e-4, 1.0 - 5.3e-4]),
        Field::Gender => (&[0.98, 0.02], &[0.5, 0.5]),
        Field::Postcode => (&[0.70, 0.05, 0.25], &[1e-4, 0.005, 1.0 - 5.1e-3]),
        Field::Address => (&[0.65, 0.10, 0.25], &[1e-4, 0.002, 1.0 - 2.1e-3]),
        Field::Phone | Field::Email => (&[0.70, 0.05, 0.25], &[1e-6, 1e-5, 1.0 - 1.1e-5]),
    }
}

/// How a candidate is classified by the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    Match,
    Possible,
    NonMatch,
}

impl Model {
    /// The model of the starting values, with these thresholds.
    pub fn starting(match_threshold: f64, possible_threshold: f64) -> Model {
        let (mut m, mut u) = ([[0.0; 3]; FIELD_COUNT], [[0.0; 3]; FIELD_COUNT]);
        for field in FIELDS {
            let (sm, su) = starting_values(field);
            for (i, level) in field.levels().iter().enumerate() {
                m[field.index()][level.index()] = sm[i];
                u[field.index()][level.index()] = su[i];
            }
        }
        Model {
            m,
            u,
            lambda: STARTING_PRIOR,
            match_threshold,
            possible_threshold,
            households: true,
        }
    }

    pub fn weight(&self, field: Field, level: Level) -> f64 {
        if level == Level::Missing {
            return 0.0;
        }
        let (m, u) = (
            self.m[field.index()][level.index()],
            self.u[field.index()][level.index()],
        );
        (m / u).log2()
    }

    /// The posterior match probability of a total match weight.
    pub fn probability(&self, match_weight: f64) -> f64 {
        let prior = (self.lambda / (1.0 - self.lambda)).log2();
        1.0 / (1.0 + (-(prior + match_weight)).exp2())
    }

    pub fn classify(&self, probability: f64) -> Classification {
        if probability >= self.match_threshold {
            Classification::Match
        } else if probability >= self.possible_threshold {
            Classification::Possible
        } else {
            Classification::NonMatch
        }
    }

    pub fn pattern_weight(&self, pattern: Pattern) -> f64 {
        FIELDS
            .iter()
            .map(|f| self.weight(*f, pattern.level(f.index())))
            .sum()
    }
}

/// A field-level outcome before values are copied out: cheap enough for millions of pairs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome<'a> {
    pub level: Level,
    pub comparator: &'static str,
    pub similarity: f64,
    pub probe: Value<'a>,
    pub candidate: Value<'a>,
}

/// A compared value, as the outcome holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    None,
    Str(&'a str),
    Date(i32),
    Gender(i32),
}

impl Outcome<'_> {
    /// The outcome with its values copied out, as evidence shows it.
    pub fn comparison(self, field: Field) -> Comparison {
        Comparison {
            field,
            level: self.level,
            comparator: self.comparator,
            similarity: self.similarity,
            probe_value: self.probe.render(),
            candidate_value: self.candidate.render(),
        }
    }
}

impl<'a> Value<'a> {
    pub fn text(self) -> &'a str {
        match self {
            Value::Str(s) => s,
            _ => "",
        }
    }

    pub fn render(self) -> String {
        match self {
            Value::None => String::new(),
            Value::Str(s) => s.to_owned(),
            Value::Date(d) if d % 10_000 == 0 => format!("{:04}", d / 10_000),
            Value::Date(d) if d % 100 == 0 => format!("{:04}-{:02}", d / 10_000, d / 100 % 100),
            Value::Date(d) => format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100),
            Value::Gender(g) => match g {
                1 => "male",
                2 => "female",
                3 => "other",
                _ => "",
            }
            .to_owned(),
        }
    }
}

const MISSING: Outcome<'static> = Outcome {
    level: Level::Missing,
    comparator: "",
    similarity: 0.0,
    probe: Value::None,
    candidate: Value::None,
};

/// Keeps the better of two outcomes: by weight when a model is known, else by level order.
fn better<'a>(model: Option<&Model>, field: Field, a: Outcome<'a>, b: Outcome<'a>) -> Outcome<'a> {
    let rank = |o: &Outcome| match model {
        _ if o.level == Level::Missing => f64::NEG_INFINITY,
        Some(model) => model.weight(field, o.level),
        None => -(o.level as usize as f64),
    };
    if rank(&b) > rank(&a) || (rank(&b) == rank(&a) && b.similarity > a.similarity) {
        b
    } else {
        a
    }
}

fn edit_outcome<'a>(a: &'a str, b: &'a str) -> Outcome<'a> {
    if a == b {
        return Outcome {
            level: Level::Exact,
            comparator: "exact",
            similarity: 1.0,
            probe: Value::Str(a),
            candidate: Value::Str(b),
        };
    }
    let distance = compare::damerau_levenshtein(a, b);
    Outcome {
        level: if distance <= 1 {
            Level::Partial
        } else {
            Level::Disagree
        },
        comparator: "damerau_levenshtein",
        similarity: compare::distance_similarity(distance, a, b),
        probe: Value::Str(a),
        candidate: Value::Str(b),
    }
}

fn name_outcome<'a>(
    family: bool,
    a: &'a str,
    a_code: &str,
    b: &'a str,
    b_code: &str,
) -> Outcome<'a> {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    let (probe, candidate) = (Value::Str(a), Value::Str(b));
    if a == b {
        return Outcome {
            level: Level::Exact,
            comparator: "exact",
            similarity: 1.0,
            probe,
            candidate,
        };
    }
    let jw = compare::jaro_winkler(a, b);
    let (level, comparator) = if !family && super::nicknames::same_name(a, b) {
        (Level::Partial, "nickname")
    } else if family && compare::one_part_of_other(a, b) {
        (Level::Partial, "double_barrelled")
    } else if jw >= 0.88 {
        (Level::Partial, "jaro_winkler")
    } else if !a_code.is_empty() && a_code == b_code {
        (Level::Partial, "phonetic")
    } else if compare::damerau_levenshtein(a, b) <= 1 {
        (Level::Partial, "damerau_levenshtein")
    } else {
        (Level::Disagree, "jaro_winkler")
    };
    Outcome {
        level,
        comparator,
        similarity: jw,
        probe,
        candidate,
    }
}

fn compare_names<'a>(
    model: Option<&Model>,
    field: Field,
    probe: &'a [NameFeatures],
    candidate: &'a [NameFeatures],
) -> Outcome<'a> {
    let pick = |n: &'a NameFeatures, given: bool| -> (&'a str, &'a str) {
        if given {
            (&n.given, &n.given_code)
        } else {
            (&n.family, &n.family_code)
        }
    };
    let given = field == Field::GivenName;
    let mut best = MISSING;
    for p in probe {
        let (pv, pc) = pick(p, given);
        for c in candidate {
            let (cv, cc) = pick(c, given);
            let mut outcome = name_outcome(!given, pv, pc, cv, cc);
            if outcome.level == Level::Disagree {
                // This name found in the candidate's other name field (given and family
                // transposed, or one of them entered in the wrong field): partial at most.
                let (tv, tc) = pick(c, !given);
                let crossed = name_outcome(false, pv, pc, tv, tc);
                let (ov, oc) = pick(p, !given);
                let other = name_outcome(given, ov, oc, cv, cc).level;
                let both = matches!(other, Level::Exact | Level::Partial)
                    && matches!(crossed.level, Level::Exact | Level::Partial);
                // One name alone in the wrong field must be (nearly) the same name: similar-looking
                // names are common, and crossing doubles the chances of a chance resemblance.
                let alone = crossed.level == Level::Exact
                    || (crossed.level == Level::Partial
                        && compare::damerau_levenshtein(pv, tv) <= 1);
                if both || alone {
                    outcome = Outcome {
                        level: Level::Partial,
                        comparator: if both { "transposed" } else { "crossed" },
                        similarity: crossed.similarity,
                        probe: crossed.probe,
                        candidate: crossed.candidate,
                    };
                }
            }
            best = better(model, field, best, outcome);
        }
    }
    best
}

fn compare_field<'a>(
    model: Option<&Model>,
    field: Field,
    p: &'a Features,
    c: &'a Features,
) -> Outcome<'a> {
    match field {
        Field::NhsNumber => {
            if p.nhs_number.is_empty() || c.nhs_number.is_empty() {
                MISSING
            } else {
                edit_outcome(&p.nhs_number, &c.nhs_number)
            }
        }
        Field::Identifier => {
            let mut best = MISSING;
            for a in &p.identifiers {
                for b in c.identifiers.iter().filter(|b| b.system == a.system) {
                    best = better(model, field, best, edit_outcome(&a.value, &b.value));
                }
            }
            best
        }
        Field::GivenName | Field::FamilyName => compare_names(model, field, &p.names, &c.names),
        Field::BirthDate => match (p.birth(), c.birth()) {
            (Some(a), Some(b)) if a.1 == 0 || a.2 == 0 || b.1 == 0 || b.2 == 0 => {
                // A partial date: compared at the coarser precision.
                let agree = a.0 == b.0 && (a.1 == 0 || b.1 == 0 || a.1 == b.1);
                Outcome {
                    level: if agree {
                        Level::Partial
                    } else {
                        Level::Disagree
                    },
                    comparator: "partial_date",
                    similarity: if agree { 0.5 } else { 0.0 },
                    probe: Value::Date(p.birth_date),
                    candidate: Value::Date(c.birth_date),
                }
            }
            (Some(a), Some(b)) => {
                let (level, comparator, similarity) = match compare::compare_dates(a, b) {
                    DateAgreement::Exact => (Level::Exact, "exact", 1.0),
                    DateAgreement::Swapped => (Level::Partial, "date_swap", 0.75),
                    DateAgreement::OneTypo => (Level::Partial, "date_typo", 0.875),
                    DateAgreement::Different => {
                        let (mut ba, mut bb) = (itoa::Buffer::new(), itoa::Buffer::new());
                        let (fa, fb) = (ba.format(p.birth_date), bb.format(c.birth_date));
                        let d = compare::damerau_levenshtein(fa, fb);
                        (
                            Level::Disagree,
                            "levenshtein",
                            compare::distance_similarity(d, fa, fb),
                        )
                    }
                };
                Outcome {
                    level,
                    comparator,
                    similarity,
                    probe: Value::Date(p.birth_date),
                    candidate: Value::Date(c.birth_date),
                }
            }
            _ => MISSING,
        },
        Field::Gender => {
            if p.gender == 0 || c.gender == 0 {
                MISSING
            } else {
                let same = p.gender == c.gender;
                Outcome {
                    level: if same { Level::Exact } else { Level::Disagree },
                    comparator: "exact",
                    similarity: if same { 1.0 } else { 0.0 },
                    probe: Value::Gender(p.gender),
                    candidate: Value::Gender(c.gender),
                }
            }
        }
        Field::Postcode => {
            let mut best = MISSING;
            for a in &p.postcodes {
                for b in &c.postcodes {
                    let mut outcome = edit_outcome(a, b);
                    if outcome.level == Level::Disagree
                        && let (Some(x), Some(y)) = (
                            super::normalize::outward_code(a),
                            super::normalize::outward_code(b),
                        )
                        && x == y
                    {
                        outcome.level = Level::Partial;
                        outcome.comparator = "outward_code";
                    }
                    best = better(model, field, best, outcome);
                }
            }
            best
        }
        Field::Address => {
            let mut best = MISSING;
            for a in &p.addresses {
                for b in &c.addresses {
                    let outcome = if a == b {
                        Outcome {
                            level: Level::Exact,
                            comparator: "exact",
                            similarity: 1.0,
                            probe: Value::Str(a),
                            candidate: Value::Str(b),
                        }
                    } else {
                        // Tokens tolerate reordering; bigrams of the text without spaces
                        // tolerate split and joined words ("jervoisstreet").
                        let tokens = compare::token_set(a, b);
                        let bigrams = compare::bigram_dice(a, b);
                        let (s, comparator) = if bigrams > tokens {
                            (bigrams, "bigram_dice")
                        } else {
                            (tokens, "token_set")
                        };
                        Outcome {
                            level: if tokens >= 0.6 || bigrams >= 0.7 {
                                Level::Partial
                            } else {
                                Level::Disagree
                            },
                            comparator,
                            similarity: s,
                            probe: Value::Str(a),
                            candidate: Value::Str(b),
                        }
                    };
                    best = better(model, field, best, outcome);
                }
            }
            best
        }
        Field::Phone | Field::Email => {
            let (xs, ys) = if field == Field::Phone {
                (&p.phones, &c.phones)
            } else {
                (&p.emails, &c.emails)
            };
            let mut best = MISSING;
            for a in xs {
                for b in ys {
                    best = better(model, field, best, edit_outcome(a, b));
                }
            }
            best
        }
    }
}

/// The level pattern of a pair (levels chosen by level order), for estimation.
pub fn pattern(p: &Features, c: &Features) -> Pattern {
    let mut levels = [Level::Missing; FIELD_COUNT];
    for field in FIELDS {
        levels[field.index()] = compare_field(None, field, p, c).level;
    }
    Pattern::from_levels(&levels)
}

/// Every field's outcome under `model`, in field order, for scoring.
pub(crate) fn outcomes<'a>(
    model: &Model,
    p: &'a Features,
    c: &'a Features,
) -> [Outcome<'a>; FIELD_COUNT] {
    FIELDS.map(|field| compare_field(Some(model), field, p, c))
}

/// Every field's comparison with the values that decided it, for evidence.
pub fn explain(model: &Model, p: &Features, c: &Features) -> Vec<Comparison> {
    FIELDS
        .iter()
        .zip(outcomes(model, p, c))
        .map(|(&field, o)| o.comparison(field))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::IdentifierFeatures;

    fn person(given: &str, family: &str, birth: i32) -> Features {
        let given = crate::domain::normalize::text(given);
        let family = crate::domain::normalize::text(family);
        Features {
            names: vec![NameFeatures {
                given_code: crate::domain::phonetic::nysiis(&given),
                family_code: crate::domain::phonetic::nysiis(&family),
                given,
                family,
            }],
            birth_date: birth,
            ..Features::default()
        }
    }

    /// The same m and u for every field.
    fn uniform_model() -> Model {
        Model {
            m: [[0.9, 0.05, 0.05]; FIELD_COUNT],
            u: [[0.01, 0.04, 0.95]; FIELD_COUNT],
            lambda: 0.001,
            match_threshold: 0.95,
            possible_threshold: 0.5,
            households: true,
        }
    }

    #[test]
    fn name_levels() {
        let a = person("John", "Smith", 19800307);
        let b = person("Jon", "Smyth", 19800703);
        let p = pattern(&a, &b);
        assert_eq!(p.level(Field::GivenName.index()), Level::Partial);
        assert_eq!(p.level(Field::FamilyName.index()), Level::Partial);
        assert_eq!(p.level(Field::BirthDate.index()), Level::Partial);
        assert_eq!(p.level(Field::Postcode.index()), Level::Missing);
        let c = person("Mary", "Jones", 19550101);
        let p = pattern(&a, &c);
        assert_eq!(p.level(Field::GivenName.index()), Level::Disagree);
        assert_eq!(p.level(Field::BirthDate.index()), Level::Disagree);
    }

    /// The evidence of each field when `a` is compared with `b` under [`uniform_model`].
    fn evidence(a: &Features, b: &Features) -> Vec<Comparison> {
        explain(&uniform_model(), a, b)
    }

    #[test]
    fn transposed_names_agree_partially() {
        let evidence = evidence(&person("John", "Smith", 0), &person("Smith", "John", 0));
        let given = &evidence[Field::GivenName.index()];
        assert_eq!(given.level, Level::Partial);
        assert_eq!(given.comparator, "transposed");
    }

    #[test]
    fn a_name_in_the_other_field_agrees_partially() {
        // "Ebony Weller" registered again as given "Weller", family "Flynn".
        let evidence = evidence(&person("Weller", "Flynn", 0), &person("Ebony", "Welqer", 0));
        let given = &evidence[Field::GivenName.index()];
        assert_eq!((given.level, given.comparator), (Level::Partial, "crossed"));
        assert_eq!(
            (given.probe_value.as_str(), given.candidate_value.as_str()),
            ("weller", "welqer")
        );
        // The family names themselves still disagree.
        assert_eq!(evidence[Field::FamilyName.index()].level, Level::Disagree);
    }

    #[test]
    fn weights_and_probability() {
        let model = Model {
            lambda: 0.5,
            ..uniform_model()
        };
        assert!((model.weight(Field::GivenName, Level::Exact) - (90f64).log2()).abs() < 1e-9);
        assert_eq!(model.weight(Field::GivenName, Level::Missing), 0.0);
        assert!((model.probability(0.0) - 0.5).abs() < 1e-12);
        assert!((model.probability(1.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(model.classify(0.96), Classification::Match);
        assert_eq!(model.classify(0.6), Classification::Possible);
        assert_eq!(model.classify(0.1), Classification::NonMatch);
    }

    #[test]
    fn identifiers_compare_within_a_system_only() {
        let mut a = person("A", "B", 0);
        let mut b = person("A", "B", 0);
        let id = |system: &str, value: &str| IdentifierFeatures {
            system: system.into(),
            value: value.into(),
        };
        a.identifiers.push(id("s1", "12345"));
        b.identifiers.push(id("s2", "12345"));
        assert_eq!(
            pattern(&a, &b).level(Field::Identifier.index()),
            Level::Missing
        );
        b.identifiers.push(id("s1", "12354"));
        assert_eq!(
            pattern(&a, &b).level(Field::Identifier.index()),
            Level::Partial
        );
    }

    #[test]
    fn patterns_pack_and_unpack() {
        let mut levels = [Level::Missing; FIELD_COUNT];
        levels[0] = Level::Exact;
        levels[4] = Level::Partial;
        levels[9] = Level::Disagree;
        let p = Pattern::from_levels(&levels);
        for (i, l) in levels.iter().enumerate() {
            assert_eq!(p.level(i), *l);
        }
    }
}
