//! A synthetic UK-style population for tests and benchmarks: realistic names, birth dates,
//! postcodes and addresses, valid NHS numbers, and a share of noisy duplicate registrations
//! (typos, swapped day and month, moved house, missing or mis-keyed identifiers).

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, ContactPoint, ContactPointSystem, Date, HumanName, Identifier,
};
use carerecord_contracts::identity::v1::Patient;

use carerecord_identity::domain::estimate::SplitMix;
use carerecord_platform::nhs_number as nhs;

use crate::places::{INWARD_LETTERS, STREETS};

const MALE: &[&str] = &[
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Thomas",
    "Oscar",
    "William",
    "James",
    "Henry",
    "Leo",
    "Alfie",
    "Joshua",
    "Freddie",
    "Archie",
    "Ethan",
    "Isaac",
    "Alexander",
    "Joseph",
    "Edward",
    "Samuel",
    "Max",
    "Daniel",
    "Arthur",
    "Lucas",
    "Mohammed",
    "Logan",
    "Theo",
    "Harrison",
    "Benjamin",
    "Mason",
    "Sebastian",
    "Finley",
    "Adam",
    "Dylan",
    "Zachary",
    "Riley",
    "Teddy",
    "David",
    "John",
    "Michael",
    "Paul",
    "Peter",
    "Robert",
    "Richard",
    "Stephen",
    "Andrew",
    "Mark",
    "Christopher",
    "Anthony",
    "Kevin",
    "Gary",
    "Ian",
    "Simon",
    "Matthew",
    "Lee",
    "Craig",
    "Darren",
];
const FEMALE: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Isabella",
    "Mia",
    "Poppy",
    "Ella",
    "Lily",
    "Sophia",
    "Grace",
    "Evie",
    "Sophie",
    "Freya",
    "Charlotte",
    "Daisy",
    "Chloe",
    "Alice",
    "Phoebe",
    "Jessica",
    "Florence",
    "Ruby",
    "Evelyn",
    "Matilda",
    "Sienna",
    "Harper",
    "Ivy",
    "Millie",
    "Rosie",
    "Sarah",
    "Emma",
    "Laura",
    "Rebecca",
    "Hannah",
    "Rachel",
    "Claire",
    "Helen",
    "Nicola",
    "Karen",
    "Susan",
    "Margaret",
    "Elizabeth",
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Barbara",
    "Joanne",
    "Kathryn",
    "Amy",
    "Lucy",
    "Katie",
    "Megan",
    "Lauren",
    "Holly",
    "Zoe",
    "Aisha",
    "Fatima",
    "Priya",
];
const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Graham",
    "Pearson",
    "Ahmed",
    "Fletcher",
    "Walsh",
    "Kaur",
    "Gibson",
    "Howard",
    "Andrews",
    "Stewart",
    "Elliott",
    "Reynolds",
    "Saunders",
    "Payne",
    "Fox",
    "Ford",
    "Pearce",
    "Day",
    "Brooks",
    "West",
    "Lawrence",
    "Cole",
    "Atkinson",
    "Bradley",
    "Spencer",
    "Gill",
    "Dawson",
    "Ball",
    "Burton",
    "O'Brien",
    "Watts",
    "Rose",
    "Booth",
    "Perry",
    "Ryan",
    "Grant",
    "Wells",
    "Armstrong",
    "Francis",
    "Rees",
    "Hayes",
    "Hart",
    "Hudson",
    "Newman",
    "Barrett",
    "Webster",
    "Hunter",
    "Gregory",
    "Carr",
    "Lowe",
    "Page",
    "Marsh",
    "Riley",
    "Dunn",
    "Woods",
    "Parsons",
    "Berry",
    "Stone",
    "Reid",
    "Holland",
    "Hawkins",
    "Harding",
    "Porter",
    "Robertson",
    "Newton",
    "Oliver",
    "Reed",
    "Kennedy",
    "Williamson",
    "Bird",
    "Gardner",
    "Shah",
    "Dean",
    "Lane",
    "Cooke",
    "Bates",
    "Henderson",
    "Parry",
    "Burgess",
    "Bishop",
    "Walton",
    "Burns",
    "Nicholson",
    "Shepherd",
    "Ross",
    "Cross",
    "Long",
    "Freeman",
    "Warren",
    "Nicholls",
    "Hamilton",
    "Byrne",
    "Sutton",
    "McDonald",
    "Yates",
    "Hodgson",
    "Robson",
    "Curtis",
    "Hopkins",
    "O'Connor",
];
/// The streets this generator picks from: the first 40 of the shared list (the UK generator uses all
/// of it), the list this generator always had, so that a seed makes the same population.
const POPULATION_STREETS: &[&str] = STREETS.split_at(40).0;
/// Postcode areas with a post town each.
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
    ("NW", "London"),
    ("E", "London"),
    ("N", "London"),
    ("W", "London"),
    ("CF", "Cardiff"),
    ("EH", "Edinburgh"),
    ("G", "Glasgow"),
    ("YO", "York"),
    ("OX", "Oxford"),
    ("CB", "Cambridge"),
    ("PL", "Plymouth"),
    ("SO", "Southampton"),
    ("PO", "Portsmouth"),
    ("DE", "Derby"),
    ("ST", "Stoke-on-Trent"),
    ("WF", "Wakefield"),
    ("HD", "Huddersfield"),
    ("HX", "Halifax"),
    ("DN", "Doncaster"),
    ("WA", "Warrington"),
];

/// The system of the synthetic trusts' hospital numbers.
pub const MRN_SYSTEM: &str = "https://fhir.synthetic-trust.nhs.uk/Id/mrn";
/// A second trust, used by duplicate registrations.
pub const OTHER_MRN_SYSTEM: &str = "https://fhir.other-trust.nhs.uk/Id/mrn";

/// A generated patient, with the index of the person it duplicates, if any.
#[derive(Debug, Clone)]
pub struct Generated {
    pub patient: Patient,
    /// The index (in generation order) of the original this record duplicates.
    pub duplicate_of: Option<usize>,
}

/// A deterministic generator.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SplitMix,
    next_nhs: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: SplitMix::new(seed),
            next_nhs: 400_000_000 + seed % 1000 * 100_000,
        }
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        // Mild skew towards the front of each list (the UK's most common names first): the
        // first of 200 surnames gets about 1.2% of the draws, as Smith does in the UK.
        let n = list.len() as f64;
        let i = (n * self.rng.unit().powf(1.2)) as usize;
        list[i.min(list.len() - 1)]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.unit() < p
    }

    /// A fresh, valid NHS number (unique within this generator).
    pub fn nhs_number(&mut self) -> String {
        loop {
            self.next_nhs += 1;
            let nine = format!("{:09}", self.next_nhs % 1_000_000_000);
            if let Some(check) = nhs::check_digit(nine.as_bytes()) {
                return format!("{nine}{check}");
            }
        }
    }

    fn postcode(&mut self) -> (String, &'static str) {
        let (area, town) = AREAS[self.rng.below(AREAS.len() as u64) as usize];
        let district = 1 + self.rng.below(20);
        let sector = self.rng.below(10);
        let a = INWARD_LETTERS[self.rng.below(INWARD_LETTERS.len() as u64) as usize] as char;
        let b = INWARD_LETTERS[self.rng.below(INWARD_LETTERS.len() as u64) as usize] as char;
        (format!("{area}{district} {sector}{a}{b}"), town)
    }

    /// A new person, registered at the synthetic trust with hospital number `mrn`.
    pub fn person(&mut self, mrn: u64) -> Patient {
        let female = self.chance(0.5);
        let given = if female {
            self.pick(FEMALE)
        } else {
            self.pick(MALE)
        };
        let family = self.pick(SURNAMES);
        let year = 1925 + self.rng.below(99) as i32;
        let month = 1 + self.rng.below(12) as i32;
        let day = 1 + self
            .rng
            .below(carerecord_identity::domain::validate::days_in_month(year, month) as u64)
            as i32;
        let (postcode, town) = self.postcode();
        let street = self.pick(POPULATION_STREETS);
        let number = 1 + self.rng.below(180);
        let mut telecoms = Vec::new();
        if self.chance(0.7) {
            telecoms.push(ContactPoint {
                system: ContactPointSystem::Phone as i32,
                value: format!("07700 {:06}", self.rng.below(1_000_000)),
                r#use: "mobile".into(),
            });
        }
        Patient {
            nhs_number: if self.chance(0.95) {
                self.nhs_number()
            } else {
                String::new()
            },
            identifiers: vec![Identifier {
                system: MRN_SYSTEM.into(),
                value: format!("M{mrn:08}"),
            }],
            names: vec![HumanName {
                given: vec![given.into()],
                family: family.into(),
                ..HumanName::default()
            }],
            birth_date: Some(Date { year, month, day }),
            gender: (if female {
                AdministrativeGender::Female
            } else {
                AdministrativeGender::Male
            }) as i32,
            addresses: vec![Address {
                lines: vec![format!("{number} {street}")],
                city: town.into(),
                postal_code: postcode,
                ..Address::default()
            }],
            telecoms,
            ..Patient::default()
        }
    }

    fn typo(&mut self, s: &str) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        if chars.len() < 3 {
            return s.to_owned();
        }
        let i = 1 + self.rng.below(chars.len() as u64 - 2) as usize;
        match self.rng.below(4) {
            0 => {
                chars.remove(i);
            }
            1 => chars.swap(i, i + 1),
            2 => chars[i] = (b'a' + self.rng.below(26) as u8) as char,
            _ => chars.insert(i, chars[i]),
        }
        chars.into_iter().collect()
    }

    /// A noisy re-registration of `original` at another trust, with new hospital number `mrn`.
    pub fn duplicate(&mut self, original: &Patient, mrn: u64) -> Patient {
        let mut p = original.clone();
        p.identifiers = vec![Identifier {
            system: OTHER_MRN_SYSTEM.into(),
            value: format!("X{mrn:08}"),
        }];
        // The NHS number is often missing on a re-registration; it is never reused here, as a
        // second holder would be refused.
        p.nhs_number.clear();
        let mut edits = 1 + self.rng.below(3);
        while edits > 0 {
            edits -= 1;
            match self.rng.below(8) {
                0 => p.names[0].family = self.typo(&p.names[0].family),
                1 => {
                    if let Some(g) = p.names[0].given.first_mut() {
                        let t = self.typo(g);
                        *g = t;
                    }
                }
                2 => {
                    if let Some(d) = p.birth_date.as_mut() {
                        if d.day <= 12 && d.day != d.month {
                            std::mem::swap(&mut d.day, &mut d.month);
                        } else {
                            d.day = if d.day > 1 { d.day - 1 } else { 2 };
                        }
                    }
                }
                3 => {
                    let (postcode, town) = self.postcode();
                    let street = self.pick(POPULATION_STREETS);
                    p.addresses = vec![Address {
                        lines: vec![format!("{} {street}", 1 + self.rng.below(180))],
                        city: town.into(),
                        postal_code: postcode,
                        ..Address::default()
                    }];
                }
                4 => p.telecoms.clear(),
                5 => p.gender = AdministrativeGender::Unspecified as i32,
                // A new family name (a marriage).
                6 => p.names[0].family = self.pick(SURNAMES).to_owned(),
                _ => {
                    let given = p.names[0].given.first().cloned().unwrap_or_default();
                    let family = std::mem::replace(&mut p.names[0].family, given);
                    p.names[0].given = vec![family];
                }
            }
        }
        p
    }

    /// `n` patients of which about `duplicate_share` are duplicates of earlier ones.
    pub fn population(&mut self, n: usize, duplicate_share: f64) -> Vec<Generated> {
        let mut out: Vec<Generated> = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 && self.chance(duplicate_share) {
                let of = self.rng.below(out.len() as u64) as usize;
                let of = out[of].duplicate_of.unwrap_or(of);
                let patient = self.duplicate(&out[of].patient.clone(), i as u64);
                out.push(Generated {
                    patient,
                    duplicate_of: Some(of),
                });
            } else {
                out.push(Generated {
                    patient: self.person(i as u64),
                    duplicate_of: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_identity::domain::validate::{self, Parts};
    use carerecord_platform::errors::Violations;

    #[test]
    fn generated_patients_are_valid_and_reproducible() {
        let a = Generator::new(3).population(500, 0.2);
        let b = Generator::new(3).population(500, 0.2);
        assert_eq!(a.len(), 500);
        assert!(a.iter().zip(&b).all(|(x, y)| x.patient == y.patient));
        let dups = a.iter().filter(|g| g.duplicate_of.is_some()).count();
        assert!((50..=150).contains(&dups), "{dups}");
        for g in &a {
            let mut p = g.patient.clone();
            let mut v = Violations::new();
            validate::patient(&mut p, Parts::ALL, "patient", &mut v);
            assert!(v.is_empty(), "{v:?} {:?}", g.patient);
        }
    }
}
