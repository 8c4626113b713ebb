//! Quoting a client's text in an error description, bounded so that an error never echoes a long
//! input. (The rule that no text field holds NUL is applied to every request of every module by the
//! contracts' codec, `carerecord_contracts::codec`, before a request reaches this service.)

/// The most characters of a client's value an error description quotes.
pub const MAX_QUOTED_CHARS: usize = 32;

/// `raw` quoted for an error description, cut to [`MAX_QUOTED_CHARS`] characters (saying how
/// long it was when cut), so that an error never echoes a long input.
pub fn quoted(raw: &str) -> String {
    let length = raw.chars().count();
    if length <= MAX_QUOTED_CHARS {
        return format!("{raw:?}");
    }
    let start: String = raw.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{start:?}… ({length} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_short() {
        assert_eq!(quoted("HRESCH"), "\"HRESCH\"");
        let long = quoted(&"é".repeat(10_000));
        assert!(long.chars().count() < 60, "{long}");
        assert!(long.ends_with("… (10000 characters)"));
    }
}
