//! Pages: the tokens that resume them, and the budget that keeps a response under 4 MiB.

use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{PageTokens, Position, QueryKey, REFUSED};

use crate::error::Error;
use crate::store::Version;

/// Responses stay under 4 MiB: pages stop adding payloads beyond this many bytes.
pub const PAGE_PAYLOAD_BUDGET: usize = 3 << 20;

/// A token for resuming `query` at a position of integers.
pub fn issue(tokens: &PageTokens, query: &QueryKey, position: &[i64]) -> String {
    let mut at = Position::new();
    for &int in position {
        at.int(int);
    }
    tokens.issue_at(query, &at)
}

/// The position of `N` integers in `token`, which must have been issued for `query`;
/// INVALID_ARGUMENT on `field` otherwise. None when `token` is empty.
pub fn resume<const N: usize>(
    tokens: &PageTokens,
    query: &QueryKey,
    token: &str,
    field: &str,
) -> Result<Option<[i64; N]>, Error> {
    let mut violations = Violations::new();
    let Some(mut position) = violations.page_position(field, tokens, query, token) else {
        violations.into_result()?;
        return Ok(None);
    };
    let mut ints = [0; N];
    for int in &mut ints {
        *int = position
            .read_int()
            .ok_or_else(|| Error::invalid(field, REFUSED))?;
    }
    if !position.is_done() {
        return Err(Error::invalid(field, REFUSED));
    }
    Ok(Some(ints))
}

/// The first `limit` rows that fit the response budget, and whether more remain.
pub fn fit_page(mut rows: Vec<Version>, limit: usize) -> (Vec<Version>, bool) {
    let mut more = rows.len() > limit;
    rows.truncate(limit);
    let mut bytes = 0;
    if let Some(fit) = rows.iter().position(|v| {
        bytes += v.fields.payload.len();
        bytes > PAGE_PAYLOAD_BUDGET
    }) {
        let keep = fit.max(1);
        more |= keep < rows.len();
        rows.truncate(keep);
    }
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(b"0123456789abcdef")
    }

    #[test]
    fn positions_round_trip_only_for_their_query() {
        let mut query = QueryKey::new("list");
        query.text("p1").set(&["b", "a", "a"]);
        let token = issue(&tokens(), &query, &[7, -1, 42]);
        assert_eq!(
            resume::<3>(&tokens(), &query, &token, "page_token").unwrap(),
            Some([7, -1, 42])
        );
        let mut same = QueryKey::new("list");
        same.text("p1").set(&["a", "b"]);
        assert!(resume::<3>(&tokens(), &same, &token, "page_token").is_ok());
        let mut other = QueryKey::new("list");
        other.text("p2").set::<&str>(&[]);
        assert!(matches!(
            resume::<3>(&tokens(), &other, &token, "page_token"),
            Err(Error::Invalid(_))
        ));
        assert!(resume::<2>(&tokens(), &query, &token, "page_token").is_err());
        assert!(resume::<4>(&tokens(), &query, &token, "page_token").is_err());
        assert!(resume::<3>(&tokens(), &query, "garbage!", "page_token").is_err());
        assert_eq!(
            resume::<3>(&tokens(), &query, "", "page_token").unwrap(),
            None
        );
    }
}
