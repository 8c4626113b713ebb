//! A UK-like population for measuring patient matching: households at real-looking addresses,
//! en-GB names with their frequencies (and a long tail of rare ones), couples, children and
//! twins; an index holding one registration per registered person; and probes, which are later
//! registrations of some of those people (after moves, marriages, with nicknames, typos, day and
//! month swapped, fields missing, NHS numbers mis-keyed) and first registrations of people the
//! index has never seen (twins of registered people among them).
//!
//! Deterministic by seed. [`Config::development`] with [`DEVELOPMENT_SEED`] is the data a matcher
//! may be developed on; [`Config::held_out`] with [`HELD_OUT_SEED`] (other rates, other people)
//! is kept for judging it.

pub mod names;
mod noise;
pub mod people;

use carerecord_contracts::common::v1::{
    Address, AdministrativeGender, ContactPoint, ContactPointSystem, Date, HumanName, Identifier,
};
use carerecord_contracts::identity::v1::Patient;
use carerecord_identity::domain::estimate::SplitMix;

use people::{Home, Names, NhsNumbers, Person, Streets, birth_in};

/// The seed the matcher is developed on.
pub const DEVELOPMENT_SEED: u64 = 1;
/// The seed of the held-out data, used with [`Config::held_out`] only for judging.
pub const HELD_OUT_SEED: u64 = 20_261_118;
/// The system of the index's hospital numbers.
pub const MRN_SYSTEM: &str = "https://fhir.uk-synthetic-trust.nhs.uk/Id/mrn";

/// Sizes and rates of a population.
#[derive(Debug, Clone)]
pub struct Config {
    /// People living in the area (registered or not).
    pub people: usize,
    /// Share of people registered in the index.
    pub registered: f64,
    /// Share of registered people who register again (the probes with a true match).
    pub returning: f64,
    /// Share of unregistered people who arrive as new patients (probes without one).
    pub arriving: f64,
    /// Share of births that are twins.
    pub twin_births: f64,
    /// How much likelier a twin is to be probed than anyone else.
    pub twin_probe_boost: f64,
    /// Share of probes whose person moved house since the index registration.
    pub moved: f64,
    /// Share of women aged 18 to 60 whose surname changed (marriage, divorce).
    pub married: f64,
    /// Shares of probes with a nickname or another spelling, and with a typo, in the given name.
    pub nickname: f64,
    pub given_typo: f64,
    /// Share of probes with a typo or another spelling of the family name.
    pub family_typo: f64,
    /// Share of probes with the day and month of birth swapped, and with one digit wrong.
    pub date_swap: f64,
    pub date_typo: f64,
    /// Shares of index and probe records carrying the NHS number.
    pub nhs_in_index: f64,
    pub nhs_in_probe: f64,
    /// Share of probe NHS numbers mis-keyed (one digit, or two transposed).
    pub nhs_miskeyed: f64,
    /// Share of probes carrying another household member's NHS number.
    pub nhs_wrong_person: f64,
    /// Share of records missing each of postcode, address line, gender, given name.
    pub missing: f64,
    /// Share of records with only a birth year, or year and month.
    pub partial_birth: f64,
    /// Share of records with a single name (no family name).
    pub single_name: f64,
}

impl Config {
    /// The development data's rates.
    pub fn development(people: usize) -> Config {
        Config {
            people,
            registered: 0.9,
            returning: 0.12,
            arriving: 0.25,
            twin_births: 0.02,
            twin_probe_boost: 3.0,
            moved: 0.3,
            married: 0.12,
            nickname: 0.08,
            given_typo: 0.04,
            family_typo: 0.05,
            date_swap: 0.02,
            date_typo: 0.02,
            nhs_in_index: 0.92,
            nhs_in_probe: 0.7,
            nhs_miskeyed: 0.02,
            nhs_wrong_person: 0.003,
            missing: 0.03,
            partial_birth: 0.005,
            single_name: 0.003,
        }
    }

    /// Other rates for the held-out data: more moves and marriages, noisier names and dates,
    /// fewer NHS numbers.
    pub fn held_out(people: usize) -> Config {
        Config {
            moved: 0.35,
            married: 0.15,
            nickname: 0.1,
            given_typo: 0.05,
            family_typo: 0.06,
            date_swap: 0.025,
            date_typo: 0.025,
            nhs_in_index: 0.9,
            nhs_in_probe: 0.65,
            nhs_miskeyed: 0.03,
            twin_births: 0.016,
            missing: 0.04,
            ..Config::development(people)
        }
    }
}

/// What was done to a record, for reporting results by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags {
    pub moved: bool,
    pub married: bool,
    pub nickname: bool,
    pub name_typo: bool,
    pub date_error: bool,
    pub nhs_miskeyed: bool,
    pub nhs_wrong_person: bool,
    /// The person has a twin.
    pub twin: bool,
    /// The person is not in the index.
    pub new_patient: bool,
    /// Both names are among the most common.
    pub common_name: bool,
    pub partial_birth: bool,
    pub single_name: bool,
}

impl Tags {
    /// Changes other than a move.
    pub fn other_changes(&self) -> usize {
        [
            self.married,
            self.nickname,
            self.name_typo,
            self.date_error,
            self.nhs_miskeyed,
        ]
        .iter()
        .filter(|t| **t)
        .count()
    }
}

/// A record of a person, as registered somewhere.
#[derive(Debug, Clone)]
pub struct Record {
    pub patient: Patient,
    /// The person (index into [`Population::people`]).
    pub person: usize,
    pub tags: Tags,
}

/// A generated population: its people, the index and the probes.
#[derive(Debug, Clone)]
pub struct Population {
    pub people: Vec<Person>,
    /// One record per registered person.
    pub index: Vec<Record>,
    /// Later registrations of registered people, and first ones of new people.
    pub probes: Vec<Record>,
    /// For each person, their record in the index, if registered.
    pub index_of: Vec<Option<usize>>,
}

/// Generates a population.
pub fn generate(seed: u64, config: &Config) -> Population {
    let mut rng = SplitMix::new(seed ^ 0x5eed_0f0c_0a11);
    let names = Names::new();
    let people = households(&mut rng, &names, config, seed);
    let (common_given, common_family) = names.common();
    let is_common =
        |p: &Person| common_given.contains(&p.given) && common_family.contains(&p.family);
    let mut index = Vec::new();
    let mut index_of = vec![None; people.len()];
    let mut probes = Vec::new();
    for (i, person) in people.iter().enumerate() {
        let registered = rng.unit() < config.registered;
        let boost = if person.twin.is_some() {
            config.twin_probe_boost
        } else {
            1.0
        };
        let base = Tags {
            twin: person.twin.is_some(),
            common_name: is_common(person),
            new_patient: !registered,
            ..Tags::default()
        };
        if registered {
            let (patient, tags) = noise::as_registered(&mut rng, config, person, i, base);
            index_of[i] = Some(index.len());
            index.push(Record {
                patient,
                person: i,
                tags,
            });
        }
        let probed = if registered {
            config.returning
        } else {
            config.arriving
        };
        if rng.unit() < (probed * boost).min(1.0) {
            let (patient, tags) =
                noise::as_probe(&mut rng, &names, config, &people, i, registered, base);
            probes.push(Record {
                patient,
                person: i,
                tags,
            });
        }
    }
    Population {
        people,
        index,
        probes,
        index_of,
    }
}

/// Households until there are `config.people` people.
fn households(rng: &mut SplitMix, names: &Names, config: &Config, seed: u64) -> Vec<Person> {
    let mut town = Town {
        people: Vec::with_capacity(config.people + 8),
        numbers: NhsNumbers::new(seed),
        household: 0,
        home: None,
    };
    let mut streets = Streets::new();
    let today = carerecord_identity::domain::validate::today();
    let this_year = today.0;
    while town.people.len() < config.people {
        town.household += 1;
        town.home = Some(streets.next_home(rng));
        let kind = rng.unit();
        let adult_year = |rng: &mut SplitMix, min_age: i32, max_age: i32| {
            this_year - min_age - rng.below((max_age - min_age) as u64) as i32
        };
        let first_family = names.surnames.pick(rng).to_owned();
        let female = rng.unit() < 0.5;
        let year = if kind < 0.55 {
            adult_year(rng, 18, 95)
        } else {
            adult_year(rng, 24, 55)
        };
        let given = names.given(female, year).pick(rng).to_owned();
        let birth = birth_in(rng, year);
        let first = town.add(rng, given, first_family.clone(), female, birth);
        if kind < 0.3 {
            continue; // living alone
        }
        let mut father = (!female).then_some(first);
        let mut child_family = first_family.clone();
        if kind < 0.85 {
            // A partner, usually of the other sex and a similar age.
            let partner_female = if rng.unit() < 0.95 { !female } else { female };
            let partner_year = (year + rng.below(11) as i32 - 5).min(this_year - 18);
            let shares = rng.unit() < 0.75;
            let family = if shares {
                first_family.clone()
            } else {
                names.surnames.pick(rng).to_owned()
            };
            let given = names
                .given(partner_female, partner_year)
                .pick(rng)
                .to_owned();
            let birth = birth_in(rng, partner_year);
            let partner = town.add(rng, given, family.clone(), partner_female, birth);
            if !partner_female {
                father = Some(partner);
            }
            if !shares && rng.unit() < 0.1 {
                child_family = format!("{first_family}-{family}");
            }
        }
        if kind < 0.55 {
            continue; // no children at home
        }
        let oldest_parent = town.people[first].birth.0;
        for _ in 0..1 + rng.below(3) {
            let year = (oldest_parent + 20 + rng.below(20) as i32).min(this_year);
            let mut birth = birth_in(rng, year);
            if birth > today {
                birth = (year - 1, birth.1, birth.2.min(28));
            }
            let female = rng.unit() < 0.49;
            let given = match father {
                Some(f) if !female && rng.unit() < 0.03 => town.people[f].given.clone(),
                _ => names.given(female, birth.0).pick(rng).to_owned(),
            };
            let child = town.add(rng, given.clone(), child_family.clone(), female, birth);
            if rng.unit() < config.twin_births {
                // Same birth date and family name; another given name; same sex two times in three.
                let twin_female = if rng.unit() < 0.65 { female } else { !female };
                let mut twin_given = names.given(twin_female, birth.0).pick(rng).to_owned();
                while twin_given == given {
                    twin_given = names.given(twin_female, birth.0).pick(rng).to_owned();
                }
                let twin = town.add(rng, twin_given, child_family.clone(), twin_female, birth);
                town.people[child].twin = Some(twin);
                town.people[twin].twin = Some(child);
            }
        }
    }
    town.people
}

/// The people so far, and the household being filled.
struct Town {
    people: Vec<Person>,
    numbers: NhsNumbers,
    household: usize,
    home: Option<Home>,
}

impl Town {
    fn add(
        &mut self,
        rng: &mut SplitMix,
        given: String,
        family: String,
        female: bool,
        birth: (i32, i32, i32),
    ) -> usize {
        let phone = (rng.unit() < 0.7)
            .then(|| format!("07{:03} {:06}", 700 + rng.below(300), rng.below(1_000_000)));
        self.people.push(Person {
            given,
            family,
            female,
            birth,
            nhs_number: self.numbers.next_number(),
            household: self.household,
            home: self.home.clone().unwrap_or_else(|| Streets::elsewhere(rng)),
            phone,
            twin: None,
        });
        self.people.len() - 1
    }
}

/// The patient a record of `person` describes, before noise.
fn patient_of(person: &Person, home: &Home) -> Patient {
    Patient {
        nhs_number: person.nhs_number.clone(),
        names: vec![HumanName {
            given: vec![person.given.clone()],
            family: person.family.clone(),
            ..HumanName::default()
        }],
        birth_date: Some(Date {
            year: person.birth.0,
            month: person.birth.1,
            day: person.birth.2,
        }),
        gender: if person.female {
            AdministrativeGender::Female
        } else {
            AdministrativeGender::Male
        } as i32,
        addresses: vec![Address {
            lines: vec![home.line.clone()],
            city: home.city.clone(),
            postal_code: home.postcode.clone(),
            ..Address::default()
        }],
        telecoms: person
            .phone
            .iter()
            .map(|p| ContactPoint {
                system: ContactPointSystem::Phone as i32,
                value: p.clone(),
                r#use: "mobile".into(),
            })
            .collect(),
        identifiers: Vec::<Identifier>::new(),
        ..Patient::default()
    }
}

#[cfg(test)]
mod tests;
