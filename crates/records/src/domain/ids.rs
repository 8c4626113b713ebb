//! Identifiers: the platform's [`Id`] (UUIDs in the 36-character hyphenated form, lower case).

use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;

/// A required id field, lower-cased; records a violation when missing or malformed (and returns
/// an empty string, for a request that is refused anyway).
pub fn required_id(raw: &str, field: &str, violations: &mut Violations) -> String {
    if raw.is_empty() {
        violations.add(field, "required");
        return String::new();
    }
    violations
        .optional_id(field, raw)
        .map(String::from)
        .unwrap_or_default()
}

/// A new record id: UUIDv7, so that ids inserted together sit together in the primary key index.
pub fn new_record_id() -> String {
    Id::time_ordered().into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_ids_are_lower_cased_and_checked() {
        let mut violations = Violations::new();
        assert_eq!(
            required_id(
                "0B9D5C4E-1F2A-4B3C-8D4E-5F6A7B8C9D0E",
                "id",
                &mut violations
            ),
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
        );
        assert_eq!(
            required_id(&new_record_id(), "id", &mut violations).len(),
            36
        );
        assert!(violations.is_empty());
        assert_eq!(required_id("", "a", &mut violations), "");
        assert_eq!(required_id("nope", "b", &mut violations), "");
        let found: Vec<(&str, &str)> = violations.iter().collect();
        assert_eq!(found, [("a", "required"), ("b", Id::EXPECTED)]);
    }

    #[test]
    fn refuses_other_forms_and_the_nil_uuid() {
        for raw in [
            "0b9d5c4e1f2a4b3c8d4e5f6a7b8c9d0e",
            "{0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e}",
            "urn:uuid:0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0g",
            "0b9d5c4e-1f2a-4b3c-8d4e_5f6a7b8c9d0e",
            "00000000-0000-0000-0000-000000000000",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0é",
        ] {
            let mut violations = Violations::new();
            assert_eq!(required_id(raw, "id", &mut violations), "", "{raw}");
            assert_eq!(violations.iter().count(), 1, "{raw}");
        }
    }
}
