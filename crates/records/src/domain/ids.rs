//! Identifiers: UUIDs in the 36-character hyphenated form, stored and returned in lower case.

/// Why an identifier was refused, phrased for a field violation.
pub const UUID_EXPECTED: &str = "expected a UUID in the 36-character hyphenated form (8-4-4-4-12 hexadecimal digits), not the nil UUID";

/// The lower-case form of `raw` if it is a hyphenated, non-nil UUID (any letter case).
pub fn parse_uuid(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut all_zero = true;
    for (i, &b) in bytes.iter().enumerate() {
        match i {
            8 | 13 | 18 | 23 => {
                if b != b'-' {
                    return None;
                }
            }
            _ => {
                if !b.is_ascii_hexdigit() {
                    return None;
                }
                all_zero &= b == b'0';
            }
        }
    }
    (!all_zero).then(|| raw.to_ascii_lowercase())
}

/// A new record id: UUIDv7, so that ids inserted together sit together in the primary key index.
pub fn new_record_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hyphenated_uuids_in_any_case_and_lowercases_them() {
        assert_eq!(
            parse_uuid("0B9D5C4E-1F2A-4B3C-8D4E-5F6A7B8C9D0E").as_deref(),
            Some("0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e")
        );
        assert!(parse_uuid(&new_record_id()).is_some());
    }

    #[test]
    fn refuses_other_forms_and_the_nil_uuid() {
        for raw in [
            "",
            "0b9d5c4e1f2a4b3c8d4e5f6a7b8c9d0e",
            "{0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e}",
            "urn:uuid:0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0g",
            "0b9d5c4e-1f2a-4b3c-8d4e_5f6a7b8c9d0e",
            "00000000-0000-0000-0000-000000000000",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0é",
        ] {
            assert_eq!(parse_uuid(raw), None, "{raw}");
        }
    }
}
