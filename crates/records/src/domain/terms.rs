//! The clinical terms of a payload that ListRecords filters on (its top-level `code`, `category`
//! and `status`), as stored with each version, and the filter values that match them.
//!
//! A coding is stored as `<system>\t<code>` and a list of codings as `\n<coding>\n<coding>\n`
//! (empty when none). FHIR forbids tabs and line breaks in systems and codes, and codings holding
//! one are left out, so a filter value matches by plain substring search: `system|code` looks for
//! `\n<system>\t<code>\n`, a bare `code` for `\t<code>\n`, `system|` for `\n<system>\t`.

use carerecord_platform::errors::Violations;

/// The terms of one version, encoded for storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// Codings of the top-level `code` CodeableConcept.
    pub codes: String,
    /// Codings of the top-level `category` (a CodeableConcept, a list of them, or plain codes).
    pub categories: String,
    /// The top-level `status` string; empty when absent or not a string.
    pub status: String,
}

/// Collects codings into their stored form, deduplicated, in payload order.
#[derive(Debug, Default)]
pub struct Codings {
    encoded: String,
}

impl Codings {
    /// Adds a coding; one without a code, or with a tab or a line break, is left out.
    pub fn add(&mut self, system: Option<&str>, code: &str) {
        let system = system.unwrap_or_default();
        let unsearchable = |s: &str| s.contains(['\t', '\n', '\r']);
        if code.is_empty() || unsearchable(code) || unsearchable(system) {
            return;
        }
        let known = self
            .encoded
            .split('\n')
            .any(|entry| entry.split_once('\t') == Some((system, code)));
        if known {
            return;
        }
        if self.encoded.is_empty() {
            self.encoded.push('\n');
        }
        for part in [system, "\t", code, "\n"] {
            self.encoded.push_str(part);
        }
    }

    pub fn encode(self) -> String {
        self.encoded
    }
}

/// At most this many values in `codes` and in `categories`.
pub const MAX_CODES: usize = 50;
/// At most this many values in `statuses`.
pub const MAX_STATUSES: usize = 20;
/// The longest filter value accepted, in characters.
const MAX_VALUE: usize = 512;

/// The substrings to look for in stored codings, one per `system|code` filter value (`code`
/// alone: any system; `|code`: no system; `system|`: any code of the system). Violations are
/// reported on `field[i]`, or on `field` when there are too many.
pub fn coding_needles(values: &[String], field: &str, violations: &mut Violations) -> Vec<String> {
    if too_many(values, MAX_CODES, field, violations) {
        return Vec::new();
    }
    let mut needles = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        if let Err(reason) = check_value(value) {
            violations.add(format!("{field}[{i}]"), reason);
            continue;
        }
        let needle = match value.split_once('|') {
            None => format!("\t{value}\n"),
            Some(("", "")) => {
                violations.add(
                    format!("{field}[{i}]"),
                    "expected system|code, |code, system| or code",
                );
                continue;
            }
            Some((system, "")) => format!("\n{system}\t"),
            Some((system, code)) => format!("\n{system}\t{code}\n"),
        };
        needles.push(needle);
    }
    needles.sort_unstable();
    needles.dedup();
    needles
}

/// Status filter values, checked, sorted and deduplicated.
pub fn statuses(values: &[String], field: &str, violations: &mut Violations) -> Vec<String> {
    if too_many(values, MAX_STATUSES, field, violations) {
        return Vec::new();
    }
    for (i, value) in values.iter().enumerate() {
        if let Err(reason) = check_value(value) {
            violations.add(format!("{field}[{i}]"), reason);
        }
    }
    let mut statuses = values.to_vec();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// Whether a list is over its limit, reported on the list's own field.
fn too_many(values: &[String], max: usize, field: &str, violations: &mut Violations) -> bool {
    if values.len() > max {
        violations.add(field, format!("at most {max} values, got {}", values.len()));
    }
    values.len() > max
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.chars().count() > MAX_VALUE {
        return Err(format!("at most {MAX_VALUE} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters (tabs, line breaks)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(codings: &[(Option<&str>, &str)]) -> String {
        let mut all = Codings::default();
        for (system, code) in codings {
            all.add(*system, code);
        }
        all.encode()
    }

    fn needles(values: &[&str]) -> Result<Vec<String>, Vec<String>> {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut violations = Violations::new();
        let needles = coding_needles(&values, "codes", &mut violations);
        if violations.is_empty() {
            Ok(needles)
        } else {
            Err(violations.iter().map(|(f, _)| f.to_owned()).collect())
        }
    }

    fn matches(stored: &str, value: &str) -> bool {
        needles(&[value])
            .unwrap()
            .iter()
            .any(|n| stored.contains(n.as_str()))
    }

    #[test]
    fn codings_are_stored_once_each_and_unsearchable_ones_left_out() {
        assert_eq!(stored(&[]), "");
        assert_eq!(
            stored(&[
                (Some("http://loinc.org"), "8867-4"),
                (None, "hr"),
                (Some("http://loinc.org"), "8867-4"),
                (Some("s"), ""),
                (Some("s"), "a\tb"),
                (Some("s\n"), "c"),
            ]),
            "\nhttp://loinc.org\t8867-4\n\thr\n"
        );
    }

    #[test]
    fn filter_values_match_by_system_and_code() {
        let codes = stored(&[
            (Some("http://loinc.org"), "8867-4"),
            (Some("http://snomed.info/sct"), "a|b"),
            (None, "local"),
        ]);
        for (value, expected) in [
            ("http://loinc.org|8867-4", true),
            ("8867-4", true),
            ("8867", false),
            ("867-4", false),
            ("http://loinc.org|8867", false),
            ("http://loinc.or|8867-4", false),
            ("http://loinc.org|", true),
            ("http://loinc.org/|", false),
            ("|8867-4", false),
            ("|local", true),
            ("local", true),
            ("http://snomed.info/sct|a|b", true),
            ("HTTP://LOINC.ORG|8867-4", false),
        ] {
            assert_eq!(matches(&codes, value), expected, "{value}");
        }
        assert!(!matches("", "8867-4"));
    }

    #[test]
    fn filter_values_are_checked() {
        assert_eq!(
            needles(&["", "|", "a\tb", "ok", &"x".repeat(513)]),
            Err(vec![
                "codes[0]".to_owned(),
                "codes[1]".to_owned(),
                "codes[2]".to_owned(),
                "codes[4]".to_owned()
            ])
        );
        let many: Vec<&str> = vec!["a"; MAX_CODES + 1];
        assert_eq!(needles(&many), Err(vec!["codes".to_owned()]));
        assert_eq!(needles(&["b", "a", "b"]).unwrap(), ["\ta\n", "\tb\n"]);
        let mut violations = Violations::new();
        let too_many = vec!["final".to_owned(); MAX_STATUSES + 1];
        statuses(&too_many, "statuses", &mut violations);
        let fields: Vec<&str> = violations.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["statuses"]);
    }
}
