//! Change feed cursors: a position in the whole feed, bound to no filter. Integrators store them
//! durably, so their bytes never change: the feed's name, then the sequence as 8 big-endian bytes.

use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;

/// The query every feed cursor is issued for.
const FEED: &[u8] = b"carerecord.records.v1.feed";

/// The feed cursor positioned just after sequence `seq`.
pub fn feed_cursor(tokens: &PageTokens, seq: i64) -> String {
    tokens.issue(FEED, &seq.to_be_bytes())
}

/// The sequence of a feed cursor; a violation on `field` if forged or from another deployment.
pub fn parse_feed_cursor(
    tokens: &PageTokens,
    cursor: &str,
    field: &str,
    violations: &mut Violations,
) -> Option<i64> {
    let seq = tokens
        .verify(FEED, cursor)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(i64::from_be_bytes);
    if seq.is_none() {
        violations.add(
            field,
            "malformed, tampered with, or issued by another deployment",
        );
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_platform::page_token::{Position, QueryKey};

    fn tokens() -> PageTokens {
        PageTokens::new(b"0123456789abcdef")
    }

    fn parse(tokens: &PageTokens, cursor: &str) -> Option<i64> {
        let mut violations = Violations::new();
        let seq = parse_feed_cursor(tokens, cursor, "after_cursor", &mut violations);
        assert_eq!(seq.is_none(), !violations.is_empty());
        seq
    }

    #[test]
    fn feed_cursors_round_trip_and_refuse_forgeries() {
        let cursor = feed_cursor(&tokens(), 99);
        assert_eq!(parse(&tokens(), &cursor), Some(99));
        let other = PageTokens::new(b"another deployment");
        assert_eq!(parse(&other, &cursor), None);
        let list = tokens().issue_at(&QueryKey::new("list"), Position::new().int(99));
        assert_eq!(parse(&tokens(), &list), None);
    }

    #[test]
    fn feed_cursors_keep_their_bytes() {
        // Integrators hold cursors issued by earlier releases: this one must still be issued.
        assert_eq!(
            feed_cursor(&tokens(), 99),
            "_Hqs753tsNIcxS_cI897DAAAAAAAAABj"
        );
    }
}
