//! Text normalisation for comparisons: NFKC, case folding, no diacritics, no punctuation, single
//! spaces. Stored values are kept as given; only comparisons use these forms.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `raw` normalised for comparison, as the contract defines it.
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    // NFKD after NFKC splits letters from their diacritics so the marks can be dropped.
    for c in raw.nfkc().collect::<String>().nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else if c.is_whitespace() || c == '/' || c == ',' || c == '_' {
            pending_space = true;
        }
        // Other punctuation (hyphens, apostrophes, full stops) is removed without a space, so
        // `O'Neill` and `ONeill` compare equal.
    }
    out
}

/// A postcode with spaces removed, upper case, for equality; `None` when blank.
pub fn postcode_key(raw: &str) -> Option<String> {
    let key: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect();
    (!key.is_empty()).then_some(key)
}

/// A postcode as stored: upper case with one space before the inward code (the last three
/// characters) when it looks like a UK postcode; otherwise upper case with spaces collapsed.
pub fn postcode_display(raw: &str) -> String {
    let Some(key) = postcode_key(raw) else {
        return String::new();
    };
    if looks_like_uk_postcode(&key) {
        let (outward, inward) = key.split_at(key.len() - 3);
        format!("{outward} {inward}")
    } else {
        raw.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    }
}

/// The outward code (district) of a UK postcode key, for blocking and partial agreement.
pub fn outward_code(key: &str) -> Option<&str> {
    looks_like_uk_postcode(key).then(|| &key[..key.len() - 3])
}

fn looks_like_uk_postcode(key: &str) -> bool {
    let b = key.as_bytes();
    (5..=7).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 3].is_ascii_digit()
        && b[b.len() - 2].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphabetic()
}

/// Digits only (telephone numbers), keeping a leading international `+44` as `0`.
pub fn phone(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("44") {
        Some(rest) if raw.trim_start().starts_with('+') => format!("0{rest}"),
        _ => digits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_folded_and_stripped() {
        assert_eq!(text("  O'Néill-Smith  "), "oneillsmith");
        assert_eq!(text("Zoë   ANNE"), "zoe anne");
        assert_eq!(text("ＪＯＨＮ"), "john");
        assert_eq!(text("St. Mary's"), "st marys");
        assert_eq!(text("..."), "");
    }

    #[test]
    fn postcodes_get_one_space_before_the_inward_code() {
        assert_eq!(postcode_display("ls14ap"), "LS1 4AP");
        assert_eq!(postcode_display(" sw1a  1aa "), "SW1A 1AA");
        assert_eq!(postcode_display("4011"), "4011");
        assert_eq!(postcode_key("LS1 4AP").as_deref(), Some("LS14AP"));
        assert_eq!(outward_code("LS14AP"), Some("LS1"));
        assert_eq!(outward_code("4011"), None);
        assert_eq!(postcode_key("  "), None);
    }

    #[test]
    fn phones_keep_digits() {
        assert_eq!(phone("+44 7700 900123"), "07700900123");
        assert_eq!(phone("(0113) 496-0000"), "01134960000");
    }
}
