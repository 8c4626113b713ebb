//! The people of a UK-like population: households at addresses with postcodes, couples who share
//! a surname or not, children (and twins) with their parents' surnames, names drawn by sex and
//! birth cohort, and a unique NHS number each.

use carerecord_identity::domain::estimate::SplitMix;
use carerecord_platform::nhs_number as nhs;

use super::names::{self, parse};
use crate::places::{INWARD_LETTERS, STREETS};

/// A weighted list of names.
#[derive(Debug, Clone)]
pub struct Weighted {
    names: Vec<String>,
    cumulative: Vec<u64>,
}

impl Weighted {
    pub fn new(pairs: impl IntoIterator<Item = (String, u64)>) -> Self {
        let (mut names, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0u64);
        for (name, weight) in pairs {
            total += weight.max(1);
            names.push(name);
            cumulative.push(total);
        }
        Weighted { names, cumulative }
    }

    pub fn pick(&self, rng: &mut SplitMix) -> &str {
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = rng.below(total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        &self.names[i.min(self.names.len() - 1)]
    }

    /// The `n` most frequent names.
    pub fn most_common(&self, n: usize) -> Vec<String> {
        let mut weighted: Vec<(u64, &String)> = self
            .cumulative
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c - if i == 0 { 0 } else { self.cumulative[i - 1] },
                    &self.names[i],
                )
            })
            .collect();
        weighted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        weighted
            .into_iter()
            .take(n)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

const RARE_MALE: &[&str] = &[
    "Aurelio",
    "Benedikt",
    "Cosmo",
    "Dashiell",
    "Evander",
    "Florian",
    "Gideon",
    "Hamish",
    "Ignatius",
    "Jago",
    "Lorcan",
    "Magnus",
    "Nikolai",
    "Orson",
    "Peregrine",
    "Quentin",
    "Rufus",
    "Sebastiano",
    "Tobias",
    "Ulysses",
    "Valentin",
    "Wolfgang",
    "Xavier",
    "Yannick",
    "Zebedee",
    "Cassius",
    "Ptolemy",
    "Lysander",
    "Barnaby",
    "Crispin",
];
const RARE_FEMALE: &[&str] = &[
    "Araminta",
    "Beatrix",
    "Clementine",
    "Delphine",
    "Euphemia",
    "Fenella",
    "Georgiana",
    "Hermione",
    "Ianthe",
    "Juniper",
    "Kestrel",
    "Leonora",
    "Marigold",
    "Ottoline",
    "Persephone",
    "Rosamund",
    "Saffron",
    "Tallulah",
    "Ursula",
    "Verity",
    "Wilhelmina",
    "Xanthe",
    "Yolanda",
    "Zinnia",
    "Calliope",
    "Honoria",
    "Philippa",
    "Cordelia",
    "Isolde",
    "Oriel",
];

/// The name lists, weighted.
#[derive(Debug, Clone)]
pub struct Names {
    pub surnames: Weighted,
    given: [[Weighted; 3]; 2],
}

impl Names {
    pub fn new() -> Self {
        let listed = parse(names::SURNAMES);
        let listed_total: u64 = listed.iter().map(|(_, c)| u64::from(*c)).sum();
        // The long tail: about three people in four, spread Zipf-like over a few thousand names.
        let mut tail = Vec::new();
        for first in names::TAIL_FIRST {
            for second in names::TAIL_SECOND {
                for ending in ["", "e", "s"] {
                    tail.push(format!("{first}{second}{ending}"));
                }
            }
        }
        let harmonic: f64 = (1..=tail.len()).map(|r| 1.0 / (r as f64).powf(0.7)).sum();
        let tail_total = 3.0 * listed_total as f64;
        let surnames = Weighted::new(
            listed
                .into_iter()
                .map(|(n, c)| (display_surname(n), u64::from(c) * 1000))
                .chain(tail.into_iter().enumerate().map(|(r, n)| {
                    let w = tail_total / harmonic / ((r + 1) as f64).powf(0.7);
                    (n, (w * 1000.0) as u64)
                })),
        );
        let with_rare = |list: &'static str, rare: &[&str]| {
            let parsed = parse(list);
            let total: u64 = parsed.iter().map(|(_, c)| u64::from(*c)).sum();
            // Rare names: about one person in twenty-five.
            let each = total / 25 / rare.len() as u64;
            Weighted::new(
                parsed
                    .into_iter()
                    .map(|(n, c)| (n.to_owned(), u64::from(c)))
                    .chain(rare.iter().map(|n| ((*n).to_owned(), each))),
            )
        };
        Names {
            surnames,
            given: [
                [
                    with_rare(names::MALE_OLD, RARE_MALE),
                    with_rare(names::MALE_MID, RARE_MALE),
                    with_rare(names::MALE_NEW, RARE_MALE),
                ],
                [
                    with_rare(names::FEMALE_OLD, RARE_FEMALE),
                    with_rare(names::FEMALE_MID, RARE_FEMALE),
                    with_rare(names::FEMALE_NEW, RARE_FEMALE),
                ],
            ],
        }
    }

    pub fn given(&self, female: bool, birth_year: i32) -> &Weighted {
        let cohort = match birth_year {
            ..1960 => 0,
            1960..1990 => 1,
            _ => 2,
        };
        &self.given[usize::from(female)][cohort]
    }

    /// Whether a (given, family) pair is among the most common: both in the top 15 of their lists.
    pub fn common(&self) -> (Vec<String>, Vec<String>) {
        let mut given: Vec<String> = Vec::new();
        for sex in &self.given {
            for cohort in sex {
                given.extend(cohort.most_common(15));
            }
        }
        (given, self.surnames.most_common(15))
    }
}

impl Default for Names {
    fn default() -> Self {
        Names::new()
    }
}

/// "OBrien" as written: "O'Brien".
fn display_surname(name: &str) -> String {
    match name.strip_prefix('O') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => format!("O'{rest}"),
        _ => name.to_owned(),
    }
}

/// A house: its street line, town and postcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub line: String,
    pub city: String,
    pub postcode: String,
}

/// A person of the population.
#[derive(Debug, Clone)]
pub struct Person {
    pub given: String,
    pub family: String,
    pub female: bool,
    pub birth: (i32, i32, i32),
    pub nhs_number: String,
    pub household: usize,
    pub home: Home,
    pub phone: Option<String>,
    /// The other twin, for a twin.
    pub twin: Option<usize>,
}

const AREAS: &[(&str, &str)] = &[
    ("LS", "Leeds"),
    ("M", "Manchester"),
    ("B", "Birmingham"),
    ("L", "Liverpool"),
    ("S", "Sheffield"),
    ("BD", "Bradford"),
    ("NE", "Newcastle upon Tyne"),
    ("BS", "Bristol"),
    ("NG", "Nottingham"),
    ("LE", "Leicester"),
    ("CV", "Coventry"),
    ("HU", "Hull"),
    ("SW", "London"),
    ("SE", "London"),
    ("E", "London"),
    ("N", "London"),
    ("CF", "Cardiff"),
    ("YO", "York"),
    ("OX", "Oxford"),
    ("PL", "Plymouth"),
    ("DE", "Derby"),
    ("WF", "Wakefield"),
    ("HD", "Huddersfield"),
    ("HX", "Halifax"),
    ("DN", "Doncaster"),
];

/// Addresses: postcode units of a dozen or so houses on one street, filled in turn, so that
/// neighbours share a postcode as they do in the UK.
#[derive(Debug)]
pub struct Streets {
    unit: Option<(String, String, &'static str, u32)>,
    houses_left: u32,
}

impl Streets {
    pub fn new() -> Self {
        Streets {
            unit: None,
            houses_left: 0,
        }
    }

    /// A house in a random new postcode unit (a move, usually far away).
    pub fn elsewhere(rng: &mut SplitMix) -> Home {
        let (postcode, city, street) = unit(rng);
        Home {
            line: format!("{} {street}", 1 + rng.below(120)),
            city,
            postcode,
        }
    }

    /// The next house of the current unit, or of a new one.
    pub fn next_home(&mut self, rng: &mut SplitMix) -> Home {
        if self.houses_left == 0 || self.unit.is_none() {
            let (postcode, city, street) = unit(rng);
            self.unit = Some((postcode, city, street, 1 + 2 * rng.below(20) as u32));
            self.houses_left = 6 + rng.below(10) as u32;
        }
        self.houses_left -= 1;
        let (postcode, city, street, number) = self.unit.as_mut().expect("a unit");
        *number += 1 + rng.below(2) as u32;
        Home {
            line: format!("{number} {street}"),
            city: city.clone(),
            postcode: postcode.clone(),
        }
    }
}

impl Default for Streets {
    fn default() -> Self {
        Streets::new()
    }
}

fn unit(rng: &mut SplitMix) -> (String, String, &'static str) {
    let (area, town) = AREAS[rng.below(AREAS.len() as u64) as usize];
    let letter = |rng: &mut SplitMix| {
        INWARD_LETTERS[rng.below(INWARD_LETTERS.len() as u64) as usize] as char
    };
    let postcode = format!(
        "{area}{} {}{}{}",
        1 + rng.below(30),
        rng.below(10),
        letter(rng),
        letter(rng)
    );
    let street = STREETS[rng.below(STREETS.len() as u64) as usize];
    (postcode, town.to_owned(), street)
}

/// NHS numbers in sequence from a seed-dependent start, each with a valid check digit.
#[derive(Debug)]
pub struct NhsNumbers(u64);

impl NhsNumbers {
    pub fn new(seed: u64) -> Self {
        NhsNumbers(600_000_000 + seed % 997 * 300_000)
    }

    pub fn next_number(&mut self) -> String {
        loop {
            self.0 += 1 + self.0 % 3;
            let nine = format!("{:09}", self.0 % 1_000_000_000);
            if let Some(check) = nhs::check_digit(nine.as_bytes()) {
                return format!("{nine}{check}");
            }
        }
    }
}

/// A random valid date of birth in `year`.
pub fn birth_in(rng: &mut SplitMix, year: i32) -> (i32, i32, i32) {
    let month = 1 + rng.below(12) as i32;
    let days = carerecord_identity::domain::validate::days_in_month(year, month);
    (year, month, 1 + rng.below(days as u64) as i32)
}
