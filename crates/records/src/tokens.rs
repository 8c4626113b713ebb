//! Page tokens, export resume cursors and change feed cursors: positions signed with the
//! platform's HMAC tokens, bound to the query they were issued for.

use carerecord_platform::page_token::PageTokens;

use crate::error::Error;

/// The canonical bytes of a query, to bind a token to it: every field length-prefixed.
#[derive(Debug, Default)]
pub struct QueryKey(Vec<u8>);

impl QueryKey {
    pub fn new(kind: &str) -> QueryKey {
        let mut key = QueryKey::default();
        key.text(kind);
        key
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.0
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn optional(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(1).int(v),
            None => self.int(0),
        }
    }

    /// A list whose order does not matter: sorted and deduplicated first.
    pub fn set(&mut self, values: &[String]) -> &mut Self {
        let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.int(sorted.len() as i64);
        for value in sorted {
            self.text(value);
        }
        self
    }
}

/// The feed cursor's query: cursors are positions in the whole feed, bound to no filter.
const FEED: &[u8] = b"carerecord.records.v1.feed";

#[derive(Debug, Clone)]
pub struct Tokens(PageTokens);

impl Tokens {
    pub fn new(tokens: PageTokens) -> Tokens {
        Tokens(tokens)
    }

    /// A token for resuming `query` at a position made of integers.
    pub fn issue(&self, query: &QueryKey, position: &[i64]) -> String {
        let bytes: Vec<u8> = position.iter().flat_map(|p| p.to_be_bytes()).collect();
        self.0.issue(&query.0, &bytes)
    }

    /// The position in `token`, which must have been issued for `query` with `len` integers;
    /// otherwise INVALID_ARGUMENT on `field`.
    pub fn verify(
        &self,
        query: &QueryKey,
        token: &str,
        len: usize,
        field: &str,
    ) -> Result<Vec<i64>, Error> {
        let refused = || {
            Error::invalid(
                field,
                "malformed, tampered with, or issued for a different query: start again without it",
            )
        };
        let bytes = self.0.verify(&query.0, token).map_err(|_| refused())?;
        if bytes.len() != len * 8 {
            return Err(refused());
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// The feed cursor positioned just after sequence `seq`.
    pub fn feed_cursor(&self, seq: i64) -> String {
        self.0.issue(FEED, &seq.to_be_bytes())
    }

    /// The sequence of a feed cursor; INVALID_ARGUMENT on `field` if forged or from another deployment.
    pub fn parse_feed_cursor(&self, cursor: &str, field: &str) -> Result<i64, Error> {
        let refused = || {
            Error::invalid(
                field,
                "malformed, tampered with, or issued by another deployment",
            )
        };
        let bytes = self.0.verify(FEED, cursor).map_err(|_| refused())?;
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| refused())?;
        Ok(i64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(PageTokens::new(b"0123456789abcdef"))
    }

    #[test]
    fn positions_round_trip_only_for_their_query() {
        let mut query = QueryKey::new("list");
        query.text("p1").set(&["b".into(), "a".into(), "a".into()]);
        let token = tokens().issue(&query, &[7, -1, 42]);
        assert_eq!(
            tokens().verify(&query, &token, 3, "page_token").unwrap(),
            [7, -1, 42]
        );
        let mut same = QueryKey::new("list");
        same.text("p1").set(&["a".into(), "b".into()]);
        assert!(tokens().verify(&same, &token, 3, "page_token").is_ok());
        let mut other = QueryKey::new("list");
        other.text("p2").set(&[]);
        assert!(matches!(
            tokens().verify(&other, &token, 3, "page_token"),
            Err(Error::Invalid(_))
        ));
        assert!(tokens().verify(&query, &token, 2, "page_token").is_err());
        assert!(
            tokens()
                .verify(&query, "garbage!", 3, "page_token")
                .is_err()
        );
    }

    #[test]
    fn feed_cursors_round_trip_and_refuse_forgeries() {
        let cursor = tokens().feed_cursor(99);
        assert_eq!(
            tokens().parse_feed_cursor(&cursor, "after_cursor").unwrap(),
            99
        );
        let other = Tokens::new(PageTokens::new(b"another deployment"));
        assert!(other.parse_feed_cursor(&cursor, "after_cursor").is_err());
        let list = tokens().issue(&QueryKey::new("list"), &[99]);
        assert!(tokens().parse_feed_cursor(&list, "after_cursor").is_err());
    }
}
