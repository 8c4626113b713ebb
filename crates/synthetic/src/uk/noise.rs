//! What registration does to a person's details: the index's first registration (mostly clean),
//! and a later one (moves, marriages, nicknames, typos, dates mis-keyed, NHS numbers missing or
//! mis-keyed, fields left out).

use carerecord_contracts::common::v1::{
    Address, AddressUse, AdministrativeGender, Date, HumanName, Identifier, NameUse,
};
use carerecord_contracts::identity::v1::Patient;
use carerecord_identity::domain::estimate::SplitMix;

use super::names::{NICKNAMES, VARIANTS};
use super::people::{Names, Person, Streets};
use super::{Config, MRN_SYSTEM, Tags, patient_of};

fn chance(rng: &mut SplitMix, p: f64) -> bool {
    rng.unit() < p
}

/// The index's registration of person `i`.
pub fn as_registered(
    rng: &mut SplitMix,
    config: &Config,
    person: &Person,
    i: usize,
    mut tags: Tags,
) -> (Patient, Tags) {
    let mut p = patient_of(person, &person.home);
    p.identifiers.push(Identifier {
        system: MRN_SYSTEM.into(),
        value: format!("RX{i:08}"),
    });
    if !chance(rng, config.nhs_in_index) {
        p.nhs_number.clear();
    }
    leave_out(rng, config, &mut p, &mut tags);
    (p, tags)
}

/// A later registration of person `i` (`registered`: whether the index holds them).
pub fn as_probe(
    rng: &mut SplitMix,
    names: &Names,
    config: &Config,
    people: &[Person],
    i: usize,
    registered: bool,
    mut tags: Tags,
) -> (Patient, Tags) {
    let person = &people[i];
    let mut p = patient_of(person, &person.home);
    let age = carerecord_identity::domain::validate::today().0 - person.birth.0;
    if registered && person.female && (18..=60).contains(&age) && chance(rng, config.married) {
        tags.married = true;
        marry(rng, names, &mut p);
    }
    if registered && chance(rng, if tags.married { 0.6 } else { config.moved }) {
        tags.moved = true;
        let old = p.addresses[0].clone();
        let home = Streets::elsewhere(rng);
        p.addresses = vec![Address {
            lines: vec![home.line],
            city: home.city,
            postal_code: home.postcode,
            ..Address::default()
        }];
        if chance(rng, 0.15) {
            p.addresses.push(Address {
                r#use: AddressUse::Old as i32,
                ..old
            });
        }
    }
    let given = &mut p.names[0].given[0];
    if chance(rng, config.nickname) {
        if let Some(other) = nickname(rng, given) {
            *given = other;
            tags.nickname = true;
        }
    } else if chance(rng, config.given_typo) {
        *given = typo(rng, given);
        tags.name_typo = true;
    }
    if chance(rng, config.family_typo) {
        let family = &mut p.names[0].family;
        *family = match variant(rng, family) {
            Some(v) => v,
            None => typo(rng, family),
        };
        tags.name_typo = true;
    }
    if let Some(d) = p.birth_date.as_mut() {
        if chance(rng, config.date_swap) && d.day <= 12 && d.day != d.month {
            std::mem::swap(&mut d.day, &mut d.month);
            tags.date_error = true;
        } else if chance(rng, config.date_typo) {
            date_typo(rng, d);
            tags.date_error = true;
        }
    }
    if !chance(rng, config.nhs_in_probe) {
        p.nhs_number.clear();
    } else if chance(rng, config.nhs_wrong_person) {
        // Another member of the household's number (a parent's on a child's form).
        if let Some(other) = people
            .iter()
            .filter(|o| o.household == person.household && o.nhs_number != person.nhs_number)
            .map(|o| o.nhs_number.clone())
            .next()
        {
            p.nhs_number = other;
            tags.nhs_wrong_person = true;
        }
    } else if chance(rng, config.nhs_miskeyed) {
        p.nhs_number = miskey(rng, &p.nhs_number);
        tags.nhs_miskeyed = true;
    }
    if chance(rng, 0.5) {
        p.telecoms.clear();
    }
    leave_out(rng, config, &mut p, &mut tags);
    (p, tags)
}

/// Fields left out or recorded incompletely at registration.
fn leave_out(rng: &mut SplitMix, config: &Config, p: &mut Patient, tags: &mut Tags) {
    if chance(rng, config.missing) {
        p.addresses[0].postal_code.clear();
    }
    if chance(rng, config.missing) {
        p.addresses[0].lines.clear();
    }
    if chance(rng, config.missing) {
        p.gender = AdministrativeGender::Unspecified as i32;
    }
    if chance(rng, config.missing / 3.0) {
        p.names[0].given.clear();
    }
    if chance(rng, config.single_name) && !p.names[0].given.is_empty() {
        p.names[0].family.clear();
        p.names.truncate(1);
        tags.single_name = true;
    }
    if chance(rng, config.partial_birth)
        && let Some(d) = p.birth_date.as_mut()
    {
        d.day = 0;
        if chance(rng, 0.6) {
            d.month = 0;
        }
        tags.partial_birth = true;
    }
}

/// A new surname: often a common one, sometimes double-barrelled, and the maiden name sometimes
/// kept as a second name.
fn marry(rng: &mut SplitMix, names: &Names, p: &mut Patient) {
    let maiden = p.names[0].family.clone();
    let mut spouse = names.surnames.pick(rng).to_owned();
    while spouse == maiden {
        spouse = names.surnames.pick(rng).to_owned();
    }
    p.names[0].family = if chance(rng, 0.12) {
        format!("{maiden}-{spouse}")
    } else {
        spouse
    };
    if chance(rng, 0.25) {
        p.names.push(HumanName {
            r#use: NameUse::Maiden as i32,
            family: maiden,
            given: p.names[0].given.clone(),
            ..HumanName::default()
        });
    }
}

/// A nickname or another spelling of `given`, if it has one.
fn nickname(rng: &mut SplitMix, given: &str) -> Option<String> {
    if let Some((_, forms)) = NICKNAMES.iter().find(|(full, _)| *full == given) {
        return Some(forms[rng.below(forms.len() as u64) as usize].to_owned());
    }
    variant(rng, given)
}

fn variant(rng: &mut SplitMix, name: &str) -> Option<String> {
    let group = VARIANTS.iter().find(|g| g.contains(&name))?;
    let others: Vec<&&str> = group.iter().filter(|v| **v != name).collect();
    Some((*others[rng.below(others.len() as u64) as usize]).to_owned())
}

const KEYBOARD: &[&str] = &["qwertyuiop", "asdfghjkl", "zxcvbnm"];

/// A letter next to `c` on a QWERTY keyboard.
fn neighbour(rng: &mut SplitMix, c: char) -> char {
    for row in KEYBOARD {
        if let Some(i) = row.find(c.to_ascii_lowercase()) {
            let bytes = row.as_bytes();
            let j = if i == 0 || (i + 1 < bytes.len() && chance(rng, 0.5)) {
                i + 1
            } else {
                i - 1
            };
            return bytes[j] as char;
        }
    }
    c
}

/// One keying error: a neighbouring key, a dropped, doubled or transposed letter.
fn typo(rng: &mut SplitMix, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return s.to_owned();
    }
    let i = 1 + rng.below(chars.len() as u64 - 2) as usize;
    match rng.below(4) {
        0 => chars[i] = neighbour(rng, chars[i]),
        1 => {
            chars.remove(i);
        }
        2 => chars.insert(i, chars[i]),
        _ => chars.swap(i, i + 1),
    }
    chars.into_iter().collect()
}

/// One digit of the date mis-keyed (day, month or the year's last two digits), kept valid.
fn date_typo(rng: &mut SplitMix, d: &mut Date) {
    let days = |y, m| carerecord_identity::domain::validate::days_in_month(y, m);
    let today = carerecord_identity::domain::validate::today();
    for _ in 0..8 {
        let mut e = *d;
        match rng.below(4) {
            0 => e.day = (e.day / 10) * 10 + rng.below(10) as i32,
            1 => e.day = (rng.below(3) as i32) * 10 + e.day % 10,
            2 => e.year = (e.year / 10) * 10 + rng.below(10) as i32,
            _ => e.year = (e.year / 100) * 100 + (e.year % 10) * 10 + (e.year / 10) % 10,
        }
        if e != *d
            && e.day >= 1
            && e.day <= days(e.year, e.month)
            && (e.year, e.month, e.day) <= today
        {
            *d = e;
            return;
        }
    }
}

/// An NHS number mis-keyed: one digit wrong, or two adjacent digits transposed.
fn miskey(rng: &mut SplitMix, number: &str) -> String {
    let mut digits: Vec<u8> = number.bytes().collect();
    if digits.len() != 10 {
        return number.to_owned();
    }
    let i = rng.below(9) as usize;
    if chance(rng, 0.5) && digits[i] != digits[i + 1] {
        digits.swap(i, i + 1);
    } else {
        digits[i] = b'0' + ((digits[i] - b'0' + 1 + rng.below(9) as u8) % 10);
    }
    String::from_utf8(digits).unwrap_or_else(|_| number.to_owned())
}
