//! Listings of a change log in one unary call ("what changed after this cursor"), as identity's
//! ListPatientChanges and consent's ListDecisionChanges answer them: an empty cursor answers the
//! head, a cursor is the last sequence seen (HMAC-bound to the log's name), and a full page says
//! more may follow.

use crate::errors::Violations;
use crate::page_token::PageTokens;

/// The most changes one listing answers, and its page size when the request names none.
pub const MAX_LISTED: i64 = 1000;

/// A parsed listing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// List nothing; answer the head of the log.
    Head,
    /// List at most `limit` changes after the change numbered `sequence`.
    After { sequence: i64, limit: i64 },
}

/// A cursor of the change log `log` after the change numbered `sequence`. Holders keep cursors,
/// so these bytes never change.
pub fn cursor(tokens: &PageTokens, log: &[u8], sequence: i64) -> String {
    tokens.issue(log, &sequence.to_be_bytes())
}

/// The sequence a cursor of `log` resumes after (0 for an empty cursor: the log's start); `None`
/// when the cursor is malformed or was issued for something else.
pub fn resume_after(tokens: &PageTokens, log: &[u8], cursor: &str) -> Option<i64> {
    if cursor.is_empty() {
        return Some(0);
    }
    let position = tokens.verify(log, cursor).ok()?;
    Some(i64::from_be_bytes(
        <[u8; 8]>::try_from(position.as_slice()).ok()?,
    ))
}

impl Listing {
    /// Parses a request's `after_cursor` and `page_size` into `v`'s violations or a listing.
    pub fn parse(
        v: &mut Violations,
        tokens: &PageTokens,
        log: &[u8],
        after_cursor: &str,
        page_size: i32,
    ) -> Option<Listing> {
        if page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        let limit = match i64::from(page_size) {
            n if n <= 0 => MAX_LISTED,
            n => n.min(MAX_LISTED),
        };
        let listing = if after_cursor.is_empty() {
            Listing::Head
        } else {
            match resume_after(tokens, log, after_cursor) {
                Some(sequence) => Listing::After { sequence, limit },
                None => {
                    v.add(
                        "after_cursor",
                        "is malformed or was not issued by this service",
                    );
                    return None;
                }
            }
        };
        v.is_empty().then_some(listing)
    }

    /// The listing's `next_cursor` and `more`, given the sequences it listed in order (for
    /// [`Listing::Head`], the head's sequence).
    pub fn answer(&self, tokens: &PageTokens, log: &[u8], listed: &[i64]) -> (String, bool) {
        match *self {
            Listing::Head => (
                cursor(tokens, log, listed.first().copied().unwrap_or(0)),
                false,
            ),
            Listing::After { sequence, limit } => {
                let last = listed.last().copied().unwrap_or(sequence);
                (cursor(tokens, log, last), listed.len() as i64 >= limit)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"test/log";

    fn parse(cursor: &str, page_size: i32) -> Result<Listing, Vec<String>> {
        let mut v = Violations::new();
        let tokens = PageTokens::new(b"k");
        Listing::parse(&mut v, &tokens, LOG, cursor, page_size)
            .ok_or_else(|| v.iter().map(|(field, _)| field.to_owned()).collect())
    }

    #[test]
    fn a_listing_resumes_where_its_cursor_says() {
        let tokens = PageTokens::new(b"k");
        assert_eq!(parse("", 0), Ok(Listing::Head));
        let at_7 = cursor(&tokens, LOG, 7);
        assert_eq!(
            parse(&at_7, 0),
            Ok(Listing::After {
                sequence: 7,
                limit: MAX_LISTED
            })
        );
        assert_eq!(
            parse(&at_7, 5000),
            Ok(Listing::After {
                sequence: 7,
                limit: MAX_LISTED
            })
        );
        assert_eq!(
            parse(&at_7, 2),
            Ok(Listing::After {
                sequence: 7,
                limit: 2
            })
        );
    }

    #[test]
    fn a_foreign_or_malformed_cursor_or_a_negative_page_size_is_refused() {
        let other_log = cursor(&PageTokens::new(b"k"), b"other", 7);
        let other_key = cursor(&PageTokens::new(b"other key"), LOG, 7);
        for bad in [other_log.as_str(), other_key.as_str(), "not a cursor"] {
            assert_eq!(parse(bad, 0), Err(vec!["after_cursor".to_owned()]));
        }
        assert_eq!(parse("", -1), Err(vec!["page_size".to_owned()]));
    }

    #[test]
    fn a_full_page_says_more_and_the_cursor_moves_to_the_last_listed() {
        let tokens = PageTokens::new(b"k");
        let listing = Listing::After {
            sequence: 3,
            limit: 2,
        };
        let (next, more) = listing.answer(&tokens, LOG, &[4, 9]);
        assert_eq!((resume_after(&tokens, LOG, &next), more), (Some(9), true));
        let (next, more) = listing.answer(&tokens, LOG, &[]);
        assert_eq!((resume_after(&tokens, LOG, &next), more), (Some(3), false));
        let (head, more) = Listing::Head.answer(&tokens, LOG, &[12]);
        assert_eq!((resume_after(&tokens, LOG, &head), more), (Some(12), false));
    }
}
