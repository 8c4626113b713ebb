//! Validation and normalisation of patients as written by CreatePatient and UpdatePatient.

use carerecord_contracts::common::v1::{
    AddressUse, AdministrativeGender, ContactPointSystem, Date, NameUse,
};
use carerecord_contracts::identity::v1::Patient;
use carerecord_platform::errors::Violations;

use carerecord_platform::nhs_number as nhs;

use super::normalize;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const MAX_IDENTIFIERS: usize = 50;
pub const MAX_NAMES: usize = 20;
pub const MAX_ADDRESSES: usize = 20;
pub const MAX_TELECOMS: usize = 20;
pub const MAX_STRING: usize = 256;

/// Today's date (UTC) as (year, month, day).
pub fn today() -> (i32, i32, i32) {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    civil_from_days(days)
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i32, i32, i32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    ((y + i64::from(m <= 2)) as i32, m as i32, d as i32)
}

pub fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Checks a complete calendar date, recording violations under `path`.
pub fn check_date(date: &Date, path: &str, violations: &mut Violations) -> bool {
    let before = violations.clone();
    if !(1..=9999).contains(&date.year) {
        violations.add(format!("{path}.year"), "must be 1 to 9999");
    }
    if !(1..=12).contains(&date.month) {
        violations.add(format!("{path}.month"), "must be 1 to 12");
    } else if date.day < 1 || date.day > days_in_month(date.year, date.month) {
        violations.add(
            format!("{path}.day"),
            format!(
                "must be 1 to {} for {:04}-{:02}",
                days_in_month(date.year, date.month),
                date.year,
                date.month
            ),
        );
    }
    *violations == before
}

/// Checks a birth date, which may be partial: a complete date, the year alone (month and day 0)
/// or the year and month (day 0).
pub fn check_birth_date(date: &Date, path: &str, violations: &mut Violations) -> bool {
    if date.day != 0 || (date.month != 0 && !(1..=12).contains(&date.month)) {
        return check_date(date, path, violations);
    }
    let before = violations.clone();
    if !(1..=9999).contains(&date.year) {
        violations.add(format!("{path}.year"), "must be 1 to 9999");
    }
    *violations == before
}

pub fn date_key(date: &Date) -> (i32, i32, i32) {
    (date.year, date.month, date.day)
}

/// Whether `system` is an absolute URI (a scheme, a colon and something after it).
pub fn is_absolute_uri(system: &str) -> bool {
    let Some((scheme, rest)) = system.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !system.chars().any(char::is_whitespace)
}

fn check_len(value: &str, path: &str, violations: &mut Violations) {
    if value.trim().chars().count() > MAX_STRING {
        violations.add(path, format!("must be at most {MAX_STRING} characters"));
    }
}

/// The items of the list `{prefix}.{field}`, each with its path, after a violation on the list
/// when it holds more than `max` items.
fn items<'a, T>(
    violations: &mut Violations,
    prefix: &'a str,
    field: &'a str,
    list: &'a mut [T],
    max: usize,
) -> impl Iterator<Item = (String, &'a mut T)> + use<'a, T> {
    if list.len() > max {
        violations.add(
            format!("{prefix}.{field}"),
            format!("at most {max} {field}"),
        );
    }
    list.iter_mut()
        .enumerate()
        .map(move |(i, item)| (format!("{prefix}.{field}[{i}]"), item))
}

/// Trims each string of the list at `path` and checks its length.
fn trim_each(values: &mut [String], path: &str, violations: &mut Violations) {
    for (j, value) in values.iter_mut().enumerate() {
        *value = value.trim().to_owned();
        check_len(value, &format!("{path}[{j}]"), violations);
    }
}

/// Which parts of a patient to validate (all for a create; the masked ones for an update).
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub nhs_number: bool,
    pub identifiers: bool,
    pub names: bool,
    pub birth_date: bool,
    pub gender: bool,
    pub addresses: bool,
    pub telecoms: bool,
    pub deceased_date: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        nhs_number: true,
        identifiers: true,
        names: true,
        birth_date: true,
        gender: true,
        addresses: true,
        telecoms: true,
        deceased_date: true,
    };
}

/// Validates the writable fields of `patient` named by `parts`, normalising them in place
/// (NHS number digits, trimmed identifier values and strings, postcodes). Violation paths
/// start with `prefix` (for example `patient`).
pub fn patient(patient: &mut Patient, parts: Parts, prefix: &str, violations: &mut Violations) {
    if parts.nhs_number && !patient.nhs_number.trim().is_empty() {
        match nhs::normalise(&patient.nhs_number) {
            Ok(n) => patient.nhs_number = n,
            Err(e) => violations.add(format!("{prefix}.nhs_number"), e.description()),
        }
    } else if parts.nhs_number {
        patient.nhs_number.clear();
    }
    if parts.identifiers {
        let mut seen: Vec<(String, String)> = Vec::new();
        let ids = &mut patient.identifiers;
        for (path, id) in items(violations, prefix, "identifiers", ids, MAX_IDENTIFIERS) {
            id.system = id.system.trim().to_owned();
            id.value = id.value.trim().to_owned();
            if id.system.is_empty() {
                violations.add(format!("{path}.system"), "is required");
            } else if id.system == NHS_NUMBER_SYSTEM {
                violations.add(
                    format!("{path}.system"),
                    "the NHS number belongs in nhs_number, not identifiers",
                );
            } else if !is_absolute_uri(&id.system) {
                violations.add(format!("{path}.system"), "must be an absolute URI");
            }
            check_len(&id.system, &format!("{path}.system"), violations);
            if id.value.is_empty() {
                violations.add(format!("{path}.value"), "is required");
            }
            check_len(&id.value, &format!("{path}.value"), violations);
            let key = (id.system.clone(), id.value.clone());
            if seen.contains(&key) {
                violations.add(path, "duplicates an earlier identifier of this patient");
            } else {
                seen.push(key);
            }
        }
    }
    if parts.names {
        let named = patient.names.iter().any(|n| {
            !normalize::text(&n.family).is_empty()
                || n.given.iter().any(|g| !normalize::text(g).is_empty())
        });
        let names = items(violations, prefix, "names", &mut patient.names, MAX_NAMES);
        if !named {
            violations.add(
                format!("{prefix}.names"),
                "at least one name with a non-empty family or given name is required",
            );
        }
        for (path, name) in names {
            if NameUse::try_from(name.r#use).is_err() {
                violations.add(format!("{path}.use"), "unknown name use");
            }
            name.family = name.family.trim().to_owned();
            check_len(&name.family, &format!("{path}.family"), violations);
            trim_each(&mut name.given, &format!("{path}.given"), violations);
            trim_each(&mut name.prefixes, &format!("{path}.prefixes"), violations);
        }
    }
    let today = today();
    if parts.birth_date
        && let Some(birth) = &patient.birth_date
        && check_birth_date(birth, &format!("{prefix}.birth_date"), violations)
        && date_key(birth) > today
    {
        violations.add(format!("{prefix}.birth_date"), "must not be in the future");
    }
    if parts.gender && AdministrativeGender::try_from(patient.gender).is_err() {
        violations.add(format!("{prefix}.gender"), "unknown administrative gender");
    }
    if parts.addresses {
        let addresses = &mut patient.addresses;
        for (path, address) in items(violations, prefix, "addresses", addresses, MAX_ADDRESSES) {
            if AddressUse::try_from(address.r#use).is_err() {
                violations.add(format!("{path}.use"), "unknown address use");
            }
            trim_each(&mut address.lines, &format!("{path}.lines"), violations);
            for (field, value) in [
                ("city", &mut address.city),
                ("district", &mut address.district),
                ("country", &mut address.country),
                ("postal_code", &mut address.postal_code),
            ] {
                *value = value.trim().to_owned();
                check_len(value, &format!("{path}.{field}"), violations);
            }
            address.postal_code = normalize::postcode_display(&address.postal_code);
        }
    }
    if parts.telecoms {
        let telecoms = &mut patient.telecoms;
        for (path, telecom) in items(violations, prefix, "telecoms", telecoms, MAX_TELECOMS) {
            if ContactPointSystem::try_from(telecom.system).is_err() {
                violations.add(format!("{path}.system"), "unknown contact point system");
            }
            telecom.value = telecom.value.trim().to_owned();
            if telecom.value.is_empty() {
                violations.add(format!("{path}.value"), "is required");
            }
            check_len(&telecom.value, &format!("{path}.value"), violations);
            check_len(&telecom.r#use, &format!("{path}.use"), violations);
        }
    }
    if parts.deceased_date
        && let Some(death) = &patient.deceased_date
        && check_date(death, &format!("{prefix}.deceased_date"), violations)
    {
        if date_key(death) > today {
            violations.add(
                format!("{prefix}.deceased_date"),
                "must not be in the future",
            );
        } else if let Some(birth) = &patient.birth_date
            && date_key(death) < date_key(birth)
        {
            violations.add(
                format!("{prefix}.deceased_date"),
                "must not be before birth_date",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_contracts::common::v1::{HumanName, Identifier};

    fn valid() -> Patient {
        Patient {
            nhs_number: "943 476 5919".into(),
            names: vec![HumanName {
                family: " Smith ".into(),
                given: vec!["Jo".into()],
                ..HumanName::default()
            }],
            birth_date: Some(Date {
                year: 1980,
                month: 2,
                day: 29,
            }),
            identifiers: vec![Identifier {
                system: "https://fhir.rxx.nhs.uk/Id/mrn".into(),
                value: " 123 ".into(),
            }],
            ..Patient::default()
        }
    }

    fn date(year: i32, month: i32, day: i32) -> Date {
        Date { year, month, day }
    }

    /// The fields violated when all of `p` is validated (and normalised in place).
    fn violated_fields(p: &mut Patient) -> Vec<String> {
        let mut v = Violations::new();
        patient(p, Parts::ALL, "patient", &mut v);
        v.iter().map(|(f, _)| f.to_owned()).collect()
    }

    #[test]
    fn valid_patient_is_normalised() {
        let mut p = valid();
        let mut v = Violations::new();
        patient(&mut p, Parts::ALL, "patient", &mut v);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(p.nhs_number, "9434765919");
        assert_eq!(p.identifiers[0].value, "123");
        assert_eq!(p.names[0].family, "Smith");
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut p = valid();
        p.nhs_number = "9434765918".into();
        p.names[0].family = " - ".into();
        p.names[0].given = vec![" ' ".into()];
        p.birth_date = Some(date(1981, 2, 29));
        for (system, value) in [("not a uri", ""), (NHS_NUMBER_SYSTEM, "1")] {
            p.identifiers.push(Identifier {
                system: system.into(),
                value: value.into(),
            });
        }
        p.deceased_date = Some(date(9999, 1, 1));
        assert_eq!(
            violated_fields(&mut p),
            [
                "patient.nhs_number",
                "patient.identifiers[1].system",
                "patient.identifiers[1].value",
                "patient.identifiers[2].system",
                "patient.names",
                "patient.birth_date.day",
                "patient.deceased_date",
            ]
        );
    }

    #[test]
    fn single_names_and_partial_birth_dates_are_accepted() {
        // (given, family, birth date, fields refused)
        type Case = (
            &'static str,
            &'static str,
            (i32, i32, i32),
            &'static [&'static str],
        );
        let cases: [Case; 6] = [
            ("Cher", "", (1946, 5, 20), &[]),
            ("", "Madonna", (1958, 0, 0), &[]),
            ("Ada", "", (1985, 12, 0), &[]),
            ("Ada", "", (1985, 0, 10), &["patient.birth_date.month"]),
            ("Ada", "", (1985, 13, 0), &["patient.birth_date.month"]),
            ("Ada", "", (9999, 0, 0), &["patient.birth_date"]),
        ];
        for (given, family, (year, month, day), want) in cases {
            let mut p = valid();
            p.names[0].given = vec![given.into()];
            p.names[0].family = family.into();
            p.birth_date = Some(date(year, month, day));
            assert_eq!(
                violated_fields(&mut p),
                want,
                "{given} {family} {year}-{month}-{day}"
            );
        }
    }

    #[test]
    fn dates_and_uris() {
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert!(is_absolute_uri("https://febrl.example/Id/soc-sec-id"));
        assert!(is_absolute_uri("urn:oid:1.2.3"));
        assert!(!is_absolute_uri("mrn"));
        assert!(!is_absolute_uri("1http://x"));
        let mut p = valid();
        p.birth_date = Some(date(2000, 1, 1));
        p.deceased_date = Some(date(1999, 1, 1));
        assert_eq!(violated_fields(&mut p), ["patient.deceased_date"]);
    }
}
