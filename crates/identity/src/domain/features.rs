//! The comparable form of a patient: normalised values and phonetic codes, computed once when a
//! patient is written and stored beside it, so matching never re-normalises candidates.

use carerecord_contracts::common::v1::{AdministrativeGender, ContactPointSystem};
use carerecord_contracts::identity::v1::Patient;

use super::{normalize, phonetic};

/// A normalised name entry: the first given name and the family name, with their NYSIIS codes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameFeatures {
    #[prost(string, tag = "1")]
    pub given: String,
    #[prost(string, tag = "2")]
    pub family: String,
    #[prost(string, tag = "3")]
    pub given_code: String,
    #[prost(string, tag = "4")]
    pub family_code: String,
}

/// A local identifier.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdentifierFeatures {
    #[prost(string, tag = "1")]
    pub system: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Everything matching compares, normalised.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(string, tag = "1")]
    pub nhs_number: String,
    #[prost(message, repeated, tag = "2")]
    pub identifiers: Vec<IdentifierFeatures>,
    #[prost(message, repeated, tag = "3")]
    pub names: Vec<NameFeatures>,
    /// YYYYMMDD, or 0 when unknown; a partial date has 00 for its unknown month and day.
    #[prost(int32, tag = "4")]
    pub birth_date: i32,
    /// 1 male, 2 female, 3 other; 0 when not given or unknown.
    #[prost(int32, tag = "5")]
    pub gender: i32,
    /// Postcodes without spaces, upper case.
    #[prost(string, repeated, tag = "6")]
    pub postcodes: Vec<String>,
    /// Address lines and city, normalised and joined by spaces (none without lines).
    #[prost(string, repeated, tag = "7")]
    pub addresses: Vec<String>,
    #[prost(string, repeated, tag = "8")]
    pub phones: Vec<String>,
    #[prost(string, repeated, tag = "9")]
    pub emails: Vec<String>,
}

impl Features {
    /// The features of `patient` (which need not be valid: match probes are relaxed).
    pub fn of(patient: &Patient) -> Features {
        let mut f = Features {
            nhs_number: patient
                .nhs_number
                .chars()
                .filter(char::is_ascii_digit)
                .collect(),
            ..Features::default()
        };
        for id in &patient.identifiers {
            let value = id.value.trim();
            if !id.system.is_empty() && !value.is_empty() {
                f.identifiers.push(IdentifierFeatures {
                    system: id.system.trim().to_owned(),
                    value: value.to_owned(),
                });
            }
        }
        for name in &patient.names {
            let given = name
                .given
                .iter()
                .map(|g| normalize::text(g))
                .find(|g| !g.is_empty())
                .unwrap_or_default();
            let family = normalize::text(&name.family);
            if given.is_empty() && family.is_empty() {
                continue;
            }
            let entry = NameFeatures {
                given_code: phonetic::nysiis(&given),
                family_code: phonetic::nysiis(&family),
                given,
                family,
            };
            if !f.names.contains(&entry) {
                f.names.push(entry);
            }
        }
        if let Some(d) = &patient.birth_date
            && d.year > 0
            && (d.month > 0 || d.day == 0)
        {
            f.birth_date = d.year * 10_000 + d.month * 100 + d.day;
        }
        f.gender = match AdministrativeGender::try_from(patient.gender) {
            Ok(AdministrativeGender::Male) => 1,
            Ok(AdministrativeGender::Female) => 2,
            Ok(AdministrativeGender::Other) => 3,
            _ => 0,
        };
        for address in &patient.addresses {
            if let Some(key) = normalize::postcode_key(&address.postal_code)
                && !f.postcodes.contains(&key)
            {
                f.postcodes.push(key);
            }
            let mut text = address
                .lines
                .iter()
                .map(|l| normalize::text(l))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            // A town alone is not an address: it says as little as a missing one.
            let city = normalize::text(&address.city);
            if !city.is_empty() && !text.is_empty() {
                text.push(' ');
                text.push_str(&city);
            }
            if !text.is_empty() && !f.addresses.contains(&text) {
                f.addresses.push(text);
            }
        }
        for telecom in &patient.telecoms {
            match ContactPointSystem::try_from(telecom.system) {
                Ok(ContactPointSystem::Phone) => {
                    let p = normalize::phone(&telecom.value);
                    if !p.is_empty() && !f.phones.contains(&p) {
                        f.phones.push(p);
                    }
                }
                Ok(ContactPointSystem::Email) => {
                    let e = telecom.value.trim().to_lowercase();
                    if !e.is_empty() && !f.emails.contains(&e) {
                        f.emails.push(e);
                    }
                }
                _ => {}
            }
        }
        f
    }

    /// The birth date as (year, month, day), month and day 0 when unknown.
    pub fn birth(&self) -> Option<(i32, i32, i32)> {
        (self.birth_date > 0).then_some((
            self.birth_date / 10_000,
            self.birth_date / 100 % 100,
            self.birth_date % 100,
        ))
    }

    /// The birth date as YYYYMMDD when complete, else 0 (search finds complete dates only).
    pub fn complete_birth_date(&self) -> i32 {
        match self.birth() {
            Some((_, m, d)) if m > 0 && d > 0 => self.birth_date,
            _ => 0,
        }
    }

    /// The blocking keys of this record, each tagged by the rule that produced it. Changing them
    /// means bumping [`BLOCKING_SCHEME`], so that stored keys are rebuilt at the next start.
    pub fn blocking_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut push = |k: String| {
            if !keys.contains(&k) {
                keys.push(k);
            }
        };
        if !self.nhs_number.is_empty() {
            push(format!("n:{}", self.nhs_number));
        }
        for id in &self.identifiers {
            push(format!("i:{}|{}", id.system, id.value));
        }
        // The two broad keys (a birth date; a family name and birth year) are split by sex: in a
        // million patients each holds dozens, and most candidates came from them. A record of
        // unknown or other gender takes both halves, so it still meets everyone it did.
        let sexes: &[char] = match self.gender {
            1 => &['m'],
            2 => &['f'],
            _ => &['m', 'f'],
        };
        let birth = self.birth();
        if let Some((y, m, d)) = birth
            && m > 0
            && d > 0
        {
            for sex in sexes {
                push(format!("d:{y:04}{m:02}{d:02}|{sex}"));
            }
        }
        // The birth decade keeps name blocks small in a large index (common given and family
        // names together are shared by hundreds of people in a million); "-" when unknown.
        let decade = birth.map_or_else(|| "-".to_owned(), |(y, _, _)| (y / 10).to_string());
        for name in &self.names {
            if let Some((y, _, _)) = birth
                && !name.family_code.is_empty()
            {
                for sex in sexes {
                    push(format!("fy:{}|{y}|{sex}", name.family_code));
                }
            }
            // A single name (no family name): its given name and birth year.
            if let Some((y, _, _)) = birth
                && name.family_code.is_empty()
                && !name.given_code.is_empty()
            {
                push(format!("gy:{}|{y}", name.given_code));
            }
            if !name.given_code.is_empty() && !name.family_code.is_empty() {
                // Sorted, so a record with given and family transposed shares the key.
                let (a, b) = if name.given_code <= name.family_code {
                    (&name.given_code, &name.family_code)
                } else {
                    (&name.family_code, &name.given_code)
                };
                push(format!("gf:{a}|{b}|{decade}"));
                // The same names at the same house number: finds a re-registration whose birth
                // date and postcode were both mis-keyed.
                for house in self.addresses.iter().filter_map(|a| house_number(a)) {
                    push(format!("nh:{a}|{b}|{house}"));
                }
            }
            // One prefix for given and family codes, so transposed names share the key.
            for pc in &self.postcodes {
                for code in [&name.given_code, &name.family_code] {
                    if !code.is_empty() {
                        push(format!("pn:{pc}|{code}"));
                    }
                }
            }
        }
        keys
    }
}

/// The version of [`Features::blocking_keys`]: 1 was the first release's keys; 2 has d:, fy:,
/// gf: with the birth decade, nh: and pn:; 3 adds gy: for single names; 4 splits d: and fy: by
/// sex.
pub const BLOCKING_SCHEME: i64 = 4;

/// The house number of a normalised address: its first token when that starts with a digit
/// ("12", "12a").
pub(crate) fn house_number(address: &str) -> Option<&str> {
    address
        .split(' ')
        .next()
        .filter(|t| t.len() <= 6 && t.starts_with(|c: char| c.is_ascii_digit()))
}

/// The blocking rules, by the key prefix they produce, with the compared fields each relies on
/// (so estimation can leave those fields out of the pairs the rule produced).
pub const BLOCKING_RULES: &[(&str, &[super::field::Field])] = {
    use super::field::Field::*;
    &[
        ("n:", &[NhsNumber]),
        ("i:", &[Identifier]),
        ("d:", &[BirthDate, Gender]),
        ("fy:", &[FamilyName, BirthDate, Gender]),
        ("gy:", &[GivenName, BirthDate]),
        ("gf:", &[GivenName, FamilyName, BirthDate]),
        ("nh:", &[GivenName, FamilyName, Address]),
        ("pn:", &[Postcode, GivenName, FamilyName]),
    ]
};

/// Whether `key` blocks on an NHS number or an identifier: it finds only their one live holder.
pub fn is_identifier_key(key: &str) -> bool {
    use super::field::Field::{Identifier, NhsNumber};
    rule_of(key).is_some_and(|rule| matches!(BLOCKING_RULES[rule].1, [NhsNumber] | [Identifier]))
}

/// The index in [`BLOCKING_RULES`] of the rule that produced `key`.
pub fn rule_of(key: &str) -> Option<usize> {
    BLOCKING_RULES
        .iter()
        .position(|(prefix, _)| key.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_contracts::common::v1::{Address, Date, HumanName};

    #[test]
    fn identifier_keys_are_told_from_demographic_keys() {
        assert!(is_identifier_key("n:9434765919"));
        assert!(is_identifier_key("i:https://trust.example/mrn|123"));
        for key in [
            "d:19800101",
            "fy:SM|1980",
            "gf:JN|SM|198",
            "nh:JN|SM|12",
            "pn:LS1|SM",
        ] {
            assert!(!is_identifier_key(key), "{key}");
        }
        assert!(!is_identifier_key("x:unknown"));
    }

    #[test]
    fn features_and_keys_of_a_patient() {
        let patient = Patient {
            nhs_number: "943 476 5919".into(),
            names: vec![HumanName {
                given: vec!["Zoë".into()],
                family: "O'Brien".into(),
                ..HumanName::default()
            }],
            birth_date: Some(Date {
                year: 1980,
                month: 3,
                day: 7,
            }),
            addresses: vec![Address {
                lines: vec!["1 High St.".into()],
                city: "Leeds".into(),
                postal_code: "ls1 4ap".into(),
                ..Address::default()
            }],
            ..Patient::default()
        };
        let f = Features::of(&patient);
        assert_eq!(f.nhs_number, "9434765919");
        assert_eq!(f.names[0].given, "zoe");
        assert_eq!(f.names[0].family, "obrien");
        assert_eq!(f.birth(), Some((1980, 3, 7)));
        assert_eq!(f.postcodes, ["LS14AP"]);
        assert_eq!(f.addresses, ["1 high st leeds"]);
        let keys = f.blocking_keys();
        assert!(keys.contains(&"n:9434765919".to_owned()));
        // Gender unknown: both halves of the birth date and family name keys.
        assert!(keys.contains(&"d:19800307|m".to_owned()));
        assert!(keys.contains(&"d:19800307|f".to_owned()));
        assert!(
            keys.iter()
                .any(|k| k.starts_with("fy:") && k.ends_with("|1980|f"))
        );
        assert!(keys.iter().all(|k| rule_of(k).is_some()));
    }

    /// A patient with one name and nothing else.
    fn named(given: &str, family: &str) -> Patient {
        Patient {
            names: vec![HumanName {
                given: vec![given.into()],
                family: family.into(),
                ..HumanName::default()
            }],
            ..Patient::default()
        }
    }

    #[test]
    fn the_broad_keys_are_split_by_sex_and_unknown_meets_both() {
        let with_gender = |gender: AdministrativeGender| {
            Features::of(&Patient {
                gender: gender as i32,
                birth_date: Some(Date {
                    year: 1980,
                    month: 3,
                    day: 7,
                }),
                ..named("Mary", "Jones")
            })
            .blocking_keys()
        };
        let broad = |keys: &[String]| -> Vec<String> {
            keys.iter()
                .filter(|k| k.starts_with("d:") || k.starts_with("fy:"))
                .cloned()
                .collect()
        };
        let male = broad(&with_gender(AdministrativeGender::Male));
        let female = broad(&with_gender(AdministrativeGender::Female));
        let unknown = broad(&with_gender(AdministrativeGender::Unspecified));
        assert_eq!(male.len(), 2);
        assert!(!male.iter().any(|k| female.contains(k)));
        assert!(male.iter().chain(&female).all(|k| unknown.contains(k)));
        // The name keys are not split: a sex recorded wrongly still meets its other record.
        let other_keys = |keys: Vec<String>| -> Vec<String> {
            keys.into_iter()
                .filter(|k| !k.starts_with("d:") && !k.starts_with("fy:"))
                .collect()
        };
        assert_eq!(
            other_keys(with_gender(AdministrativeGender::Male)),
            other_keys(with_gender(AdministrativeGender::Female))
        );
    }

    #[test]
    fn transposed_names_share_a_key() {
        let mk = |g: &str, fam: &str| Features::of(&named(g, fam)).blocking_keys();
        let a = mk("Smith", "John");
        let b = mk("John", "Smith");
        assert!(a.iter().any(|k| k.starts_with("gf:") && b.contains(k)));
    }

    fn keys_of(given: &str, family: &str, year: i32, line: &str, postcode: &str) -> Vec<String> {
        Features::of(&Patient {
            birth_date: Some(Date {
                year,
                month: 6,
                day: 1,
            }),
            addresses: vec![Address {
                lines: vec![line.into()],
                postal_code: postcode.into(),
                ..Address::default()
            }],
            ..named(given, family)
        })
        .blocking_keys()
    }

    #[test]
    fn transposed_names_at_one_postcode_share_a_key() {
        let a = keys_of("Sam", "Webb", 1988, "5 Deamer Crescent", "LS1 4AP");
        let b = keys_of("Webb", "Sam", 1936, "5 Deamer Crescent", "LS1 4AP");
        assert!(a.iter().any(|k| k.starts_with("pn:") && b.contains(k)));
    }

    #[test]
    fn same_names_at_the_same_house_number_share_a_key_across_mis_keyed_dates_and_postcodes() {
        let a = keys_of("Amber", "Pamplin", 1969, "14 Andrea Place", "LS1 4AP");
        let b = keys_of("Amber", "Pamplin", 1937, "14 Andrea Palce", "LS14 1AP");
        let shared: Vec<&String> = a.iter().filter(|k| b.contains(k)).collect();
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert!(shared[0].starts_with("nh:") && shared[0].ends_with("|14"));
        // No house number, no such key.
        let c = keys_of("Amber", "Pamplin", 1969, "Rose Cottage", "LS1 4AP");
        assert!(!c.iter().any(|k| k.starts_with("nh:")));
    }
}
