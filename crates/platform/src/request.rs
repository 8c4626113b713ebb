//! Parsing requests: the checks every service makes, as types that only hold valid values.
//!
//! A handler parses its request field by field into these types, collecting every problem in one
//! [`Violations`]; a request with any violation is refused whole, as INVALID_ARGUMENT listing each
//! field (see [`crate::errors`]). Values a client sent are never echoed in a description, so an
//! error stays small whatever the input.

use std::fmt;

use crate::errors::Violations;
use crate::page_token::{PageTokens, Position, QueryKey};

/// A resource id: a UUID in the 36-character hyphenated form, stored and returned in lower case.
/// The nil UUID is never an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// Why a value is not an id, phrased for a field violation.
    pub const EXPECTED: &'static str = "expected a UUID in the 36-character hyphenated form (8-4-4-4-12 hexadecimal digits), not the nil UUID";

    /// The id in `raw` (any letter case), or `None`.
    pub fn parse(raw: &str) -> Option<Id> {
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
        (!all_zero).then(|| Id(raw.to_ascii_lowercase()))
    }

    /// A new random id (UUIDv4).
    pub fn random() -> Id {
        Id(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// A new time-ordered id (UUIDv7): ids made together sit together in a primary key index.
    pub fn time_ordered() -> Id {
        Id(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

/// How many items a page holds: the client's `page_size`, defaulted and capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(usize);

impl PageSize {
    /// What `page_size = 0` means in every list of the contracts.
    pub const DEFAULT: usize = 50;
    /// The most any list returns in one page.
    pub const MAX: usize = 1000;

    /// A fixed size, for callers that page internally.
    pub fn of(size: usize) -> PageSize {
        PageSize(size.max(1))
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// The size as a SQL `LIMIT`.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// One more than the page: a store fetches this many to learn whether another page follows.
    pub fn fetch_limit(self) -> i64 {
        self.as_i64().saturating_add(1)
    }
}

impl Violations {
    /// A required id: a violation on `field` when `raw` is empty or not an id.
    pub fn required_id(&mut self, field: &str, raw: &str) -> Option<Id> {
        if raw.is_empty() {
            self.add(field, "is required");
            return None;
        }
        self.optional_id(field, raw)
    }

    /// An optional id: `None` without a violation when `raw` is empty.
    pub fn optional_id(&mut self, field: &str, raw: &str) -> Option<Id> {
        if raw.is_empty() {
            return None;
        }
        let id = Id::parse(raw);
        if id.is_none() {
            self.add(field, Id::EXPECTED);
        }
        id
    }

    /// A list of at most `max` ids, sorted and deduplicated; each bad one is a violation on
    /// `field[i]`. An over-long list is one violation, and its items are not checked.
    pub fn id_list(&mut self, field: &str, values: &[String], max: usize) -> Vec<Id> {
        if values.len() > max {
            self.add(field, format!("at most {max} ids, got {}", values.len()));
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(values.len());
        for (i, raw) in values.iter().enumerate() {
            match Id::parse(raw) {
                Some(id) => ids.push(id),
                None => self.add(format!("{field}[{i}]"), Id::EXPECTED),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `page_size`: 0 means [`PageSize::DEFAULT`], more than [`PageSize::MAX`] means the maximum,
    /// negative is a violation.
    pub fn page_size(&mut self, raw: i32) -> PageSize {
        self.page_size_within("page_size", raw, PageSize::DEFAULT, PageSize::MAX)
    }

    /// [`Violations::page_size`] with this list's own field name, default and maximum.
    pub fn page_size_within(
        &mut self,
        field: &str,
        raw: i32,
        default: usize,
        max: usize,
    ) -> PageSize {
        match usize::try_from(raw) {
            Err(_) => {
                self.add(field, "must not be negative");
                PageSize::of(default)
            }
            Ok(0) => PageSize::of(default),
            Ok(n) => PageSize::of(n.min(max)),
        }
    }

    /// The position in a page token or cursor issued by `tokens` for `query`; `None` when `raw` is
    /// empty, or (with a violation on `field`) when it is forged or belongs to another query.
    pub fn page_position(
        &mut self,
        field: &str,
        tokens: &PageTokens,
        query: &QueryKey,
        raw: &str,
    ) -> Option<Position> {
        if raw.is_empty() {
            return None;
        }
        match tokens.resume(query, raw) {
            Ok(position) => Some(position),
            Err(_) => {
                self.add(field, crate::page_token::REFUSED);
                None
            }
        }
    }
}

/// A text field with an upper bound on its length, so that nothing unbounded reaches a store or an
/// error message.
pub fn check_length(violations: &mut Violations, field: &str, value: &str, max_bytes: usize) {
    if value.len() > max_bytes {
        violations.add(field, format!("at most {max_bytes} bytes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hyphenated_uuids_in_lower_case() {
        assert_eq!(
            Id::parse("0B9D5C4E-1F2A-4B3C-8D4E-5F6A7B8C9D0E")
                .unwrap()
                .as_str(),
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
        );
        assert!(Id::parse(Id::random().as_str()).is_some());
        assert!(Id::parse(Id::time_ordered().as_str()).is_some());
        for raw in [
            "",
            "0b9d5c4e1f2a4b3c8d4e5f6a7b8c9d0e",
            "{0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e}",
            "urn:uuid:0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0g",
            "0b9d5c4e-1f2a-4b3c-8d4e_5f6a7b8c9d0e",
            "00000000-0000-0000-0000-000000000000",
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0é",
            " 0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0",
        ] {
            assert_eq!(Id::parse(raw), None, "{raw}");
        }
    }

    #[test]
    fn id_fields_record_what_is_wrong() {
        let mut v = Violations::new();
        assert_eq!(v.required_id("patient_id", ""), None);
        assert_eq!(v.optional_id("after", ""), None);
        assert_eq!(v.optional_id("after", "nope"), None);
        let ids = v.id_list(
            "patient_ids",
            &[
                "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e".into(),
                "bad".into(),
                "0B9D5C4E-1F2A-4B3C-8D4E-5F6A7B8C9D0E".into(),
            ],
            10,
        );
        assert_eq!(ids.len(), 1);
        let fields: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["patient_id", "after", "patient_ids[1]"]);
        let mut v = Violations::new();
        assert!(v.id_list("ids", &vec![String::new(); 3], 2).is_empty());
        assert_eq!(v.iter().count(), 1);
    }

    #[test]
    fn page_sizes_default_and_cap() {
        let mut v = Violations::new();
        assert_eq!(v.page_size(0).get(), 50);
        assert_eq!(v.page_size(7).get(), 7);
        assert_eq!(v.page_size(5000).get(), 1000);
        assert_eq!(v.page_size(7).fetch_limit(), 8);
        assert!(v.is_empty());
        v.page_size(-1);
        assert_eq!(v.iter().next().unwrap().0, "page_size");
        let mut v = Violations::new();
        assert_eq!(v.page_size_within("max_results", 0, 10, 100).get(), 10);
        assert_eq!(v.page_size_within("max_results", 500, 10, 100).get(), 100);
    }

    #[test]
    fn page_positions_come_back_only_for_their_query() {
        let tokens = PageTokens::new(b"0123456789abcdef");
        let mut query = QueryKey::new("list");
        query.text("p1");
        let token = tokens.issue_at(&query, Position::new().int(42).text("r-9"));
        let mut v = Violations::new();
        let mut position = v
            .page_position("page_token", &tokens, &query, &token)
            .unwrap();
        assert_eq!(position.read_int(), Some(42));
        assert_eq!(position.read_text().as_deref(), Some("r-9"));
        assert!(position.is_done());
        assert!(v.is_empty());

        let mut other = QueryKey::new("list");
        other.text("p2");
        assert!(
            v.page_position("page_token", &tokens, &other, &token)
                .is_none()
        );
        assert!(v.page_position("page_token", &tokens, &other, "").is_none());
        assert_eq!(v.iter().count(), 1);
    }

    #[test]
    fn long_values_are_bounded_without_echoing_them() {
        let mut v = Violations::new();
        let long = "x".repeat(10_000);
        check_length(&mut v, "source_system", &long, 256);
        let (_, description) = v.iter().next().unwrap();
        assert!(!description.contains("xxx"));
    }
}
