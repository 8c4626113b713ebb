//! Patient search: terms as a person types them, which name entries hold candidates, and how a
//! candidate scores.

use carerecord_contracts::common::v1::Date;
use carerecord_platform::errors::Violations;

use super::features::Features;
use super::{compare, normalize, phonetic};

/// A normalised search term, possibly a prefix (`smi*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub prefix: bool,
}

impl Term {
    /// The term in `raw`, or `None` when it is empty after normalisation (a violation on `field`
    /// if `required`). A wildcard is one final `*` after at least two characters, and is refused in
    /// fuzzy mode.
    pub fn parse(
        raw: &str,
        field: &str,
        fuzzy: bool,
        required: bool,
        v: &mut Violations,
    ) -> Option<Term> {
        let raw = raw.trim();
        let stars = raw.matches('*').count();
        let prefix = stars > 0;
        if stars > 0 {
            if fuzzy {
                v.add(field, "wildcards are not allowed in SEARCH_MODE_FUZZY");
            } else if stars > 1
                || !raw.ends_with('*')
                || normalize::text(raw.trim_end_matches('*')).chars().count() < 2
            {
                v.add(
                    field,
                    "a wildcard must be a final * preceded by at least two characters",
                );
            }
        }
        let text = normalize::text(&raw.replace('*', ""));
        if text.is_empty() {
            if required {
                v.add(field, "is required (empty after normalisation)");
            }
            return None;
        }
        Some(Term { text, prefix })
    }

    fn matches(&self, value: &str) -> bool {
        if self.prefix {
            value.starts_with(&self.text)
        } else {
            value == self.text
        }
    }
}

/// A date as the integer YYYYMMDD, as stored.
pub fn date_int(d: &Date) -> i64 {
    i64::from(d.year) * 10_000 + i64::from(d.month) * 100 + i64::from(d.day)
}

/// The latest birth date an open-ended range reaches.
pub const LAST_DATE: i64 = 99_991_231;

/// Which name entries (one per patient name, with the patient's birth date) hold candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameQuery {
    /// Family (and given) names equal to, or starting with, the terms, born within the bounds.
    Names {
        family: Term,
        given: Option<Term>,
        born_from: i64,
        born_to: i64,
    },
    /// Any name of a patient born on one of these dates.
    BornOn(Vec<i64>),
    /// Names whose family name, or family phonetic code, agrees with one of the probe's, born
    /// within the bounds.
    Sounding {
        family: String,
        codes: Vec<String>,
        born_from: i64,
        born_to: i64,
    },
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct Criteria {
    pub family: Term,
    pub given: Option<Term>,
    /// Birth date bounds, YYYYMMDD, inclusive.
    pub born_from: i64,
    pub born_to: i64,
    /// The birth date, when the search gave one rather than a range.
    pub birth_date: Option<Date>,
    pub gender: i32,
    pub postcode: Option<String>,
    pub fuzzy: bool,
}

impl Criteria {
    /// The name entries to read candidates from; exact filtering and fuzzy scoring follow on the
    /// candidates' stored features.
    pub fn name_query(&self) -> NameQuery {
        if !self.fuzzy {
            return NameQuery::Names {
                family: self.family.clone(),
                given: self.given.clone(),
                born_from: self.born_from,
                born_to: self.born_to,
            };
        }
        if let Some(d) = self.birth_date {
            let mut dates = vec![self.born_from];
            if d.day <= 12 && d.day != d.month {
                dates.push(date_int(&Date {
                    year: d.year,
                    month: d.day,
                    day: d.month,
                }));
            }
            return NameQuery::BornOn(dates);
        }
        // A given name among the family codes finds transposed names.
        let mut codes = vec![phonetic::nysiis(&self.family.text)];
        codes.extend(self.given.as_ref().map(|g| phonetic::nysiis(&g.text)));
        NameQuery::Sounding {
            family: self.family.text.clone(),
            codes,
            born_from: self.born_from,
            born_to: self.born_to,
        }
    }

    /// Score of a stored patient: 1.0 for an exact match, a fuzzy score in fuzzy mode, `None`
    /// when it does not qualify.
    pub fn score(&self, f: &Features, gender: i32) -> Option<f64> {
        let birth = i64::from(f.birth_date);
        let date_ok = birth > 0 && birth >= self.born_from && birth <= self.born_to;
        let gender_ok = self.gender == 0 || gender == self.gender;
        let postcode_ok = self
            .postcode
            .as_ref()
            .is_none_or(|p| f.postcodes.contains(p));
        let names_ok = f.names.iter().any(|n| {
            self.family.matches(&n.family)
                && self.given.as_ref().is_none_or(|g| g.matches(&n.given))
        });
        if date_ok && gender_ok && postcode_ok && names_ok {
            return Some(1.0);
        }
        if !self.fuzzy {
            return None;
        }
        let sim = |a: &str, b: &str| -> f64 {
            if a == b {
                1.0
            } else if !b.is_empty() && phonetic::nysiis(a) == phonetic::nysiis(b) {
                compare::jaro_winkler(a, b).max(0.9)
            } else {
                compare::jaro_winkler(a, b)
            }
        };
        let name = f
            .names
            .iter()
            .map(|n| {
                let straight = match &self.given {
                    Some(g) => (sim(&self.family.text, &n.family) + sim(&g.text, &n.given)) / 2.0,
                    None => sim(&self.family.text, &n.family),
                };
                let transposed = match &self.given {
                    Some(g) => {
                        0.95 * (sim(&self.family.text, &n.given) + sim(&g.text, &n.family)) / 2.0
                    }
                    None => 0.0,
                };
                straight.max(transposed)
            })
            .fold(0.0, f64::max);
        let date = if date_ok { 1.0 } else { 0.9 };
        let gender = if gender_ok { 1.0 } else { 0.9 };
        let postcode = match &self.postcode {
            None => 1.0,
            Some(_) if postcode_ok => 1.0,
            Some(p) => {
                let outward = normalize::outward_code(p);
                if outward.is_some()
                    && f.postcodes
                        .iter()
                        .any(|c| normalize::outward_code(c) == outward)
                {
                    0.95
                } else {
                    0.85
                }
            }
        };
        Some(name * date * gender * postcode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(raw: &str, fuzzy: bool) -> (Option<Term>, Violations) {
        let mut v = Violations::new();
        (Term::parse(raw, "family_name", fuzzy, true, &mut v), v)
    }

    #[test]
    fn terms_take_one_final_wildcard_outside_fuzzy_mode() {
        let (t, v) = term(" Smi* ", false);
        assert_eq!(
            t,
            Some(Term {
                text: "smi".into(),
                prefix: true
            })
        );
        assert!(v.is_empty());
        for (raw, fuzzy) in [
            ("S*", false),
            ("Sm*th", false),
            ("Smi*", true),
            (" - ", false),
        ] {
            assert!(!term(raw, fuzzy).1.is_empty(), "{raw}");
        }
    }

    #[test]
    fn fuzzy_searches_by_date_read_the_day_and_month_swapped_too() {
        let criteria = Criteria {
            family: Term {
                text: "smith".into(),
                prefix: false,
            },
            given: None,
            born_from: 19800307,
            born_to: 19800307,
            birth_date: Some(Date {
                year: 1980,
                month: 3,
                day: 7,
            }),
            gender: 0,
            postcode: None,
            fuzzy: true,
        };
        assert_eq!(
            criteria.name_query(),
            NameQuery::BornOn(vec![19800307, 19800703])
        );
    }
}
