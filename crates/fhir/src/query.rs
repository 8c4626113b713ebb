//! FHIR search parameters from a query string: names with modifiers, comma-separated alternatives,
//! date prefixes and `system|code` tokens.

use carerecord_platform::time::fhir_range;

use crate::error::Error;

/// One `name[:modifier]=value` pair of a query string, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub modifier: Option<String>,
    pub value: String,
}

/// The parameters of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(pub Vec<Param>);

impl Query {
    /// Parses `a=1&b:exact=x%20y`; a pair without `=` has an empty value.
    pub fn parse(raw: Option<&str>) -> Result<Query, Error> {
        let mut params = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name =
                decode(name).ok_or_else(|| Error::invalid("bad percent-encoding", "query"))?;
            let value = decode(value)
                .ok_or_else(|| Error::invalid("bad percent-encoding", name.clone()))?;
            let (name, modifier) = match name.split_once(':') {
                Some((n, m)) => (n.to_owned(), Some(m.to_owned())),
                None => (name, None),
            };
            params.push(Param {
                name,
                modifier,
                value,
            });
        }
        Ok(Query(params))
    }

    /// Every value of `name` (any modifier).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Param> + 'a {
        self.0.iter().filter(move |p| p.name == name)
    }

    /// The one value of `name`, if given; given twice is an error.
    pub fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a Param>, Error> {
        let mut found = self.all(name);
        let first = found.next();
        if found.next().is_some() {
            return Err(Error::invalid(
                format!("{name} may be given only once"),
                name,
            ));
        }
        Ok(first)
    }

    /// The parameters whose names are not in `known` (FHIR's `_format` and paging are always known).
    pub fn unknown<'a>(&'a self, known: &'a [&str]) -> impl Iterator<Item = &'a Param> + 'a {
        self.0.iter().filter(move |p| {
            !known.contains(&p.name.as_str())
                && ![
                    "_format",
                    "_count",
                    "_page_token",
                    "_pretty",
                    "_summary",
                    "_sort",
                ]
                .contains(&p.name.as_str())
        })
    }
}

/// Percent-decoding of a query component (`+` is a space, as forms send it).
pub fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encoding of a query value, for the links the gateway writes.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A `system|code` token (either part may be empty: `|code` is code with no system, `code` any
/// system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub system: Option<String>,
    pub code: String,
}

impl Token {
    pub fn parse(value: &str) -> Token {
        match value.split_once('|') {
            Some((system, code)) => Token {
                system: Some(system.to_owned()),
                code: code.to_owned(),
            },
            None => Token {
                system: None,
                code: value.to_owned(),
            },
        }
    }

    /// `system|code` as data access filters take it (`code` alone matches any system).
    pub fn to_filter(&self) -> String {
        match &self.system {
            Some(system) => format!("{system}|{}", self.code),
            None => self.code.clone(),
        }
    }
}

/// Comma-separated alternatives of one parameter value (`code=a,b` is a OR b), unescaping `\,`.
pub fn alternatives(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("never empty").push(next);
                }
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// A time window `[start, end)` in microseconds, either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Window {
    /// Narrows the window with one date parameter value such as `ge2024-01-01` or `2024-03`.
    pub fn narrow(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let (prefix, date) = match value.get(..2) {
            Some(p @ ("eq" | "ge" | "gt" | "le" | "lt" | "sa" | "eb")) => (p, &value[2..]),
            _ => ("eq", value),
        };
        let (from, to) = fhir_range(date).ok_or_else(|| {
            Error::invalid(
                format!("{name}: expected a FHIR date or dateTime with an optional prefix (eq, ge, gt, le, lt), got {}", carerecord_platform::status_policy::bounded(value, 64)),
                name,
            )
        })?;
        let (start, end) = match prefix {
            "eq" => (Some(from), Some(to)),
            "ge" => (Some(from), None),
            "gt" | "sa" => (Some(to), None),
            "lt" | "eb" => (None, Some(from)),
            _ => (None, Some(to)), // le
        };
        if let Some(start) = start {
            self.start = Some(self.start.map_or(start, |s| s.max(start)));
        }
        if let Some(end) = end {
            self.end = Some(self.end.map_or(end, |e| e.min(end)));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// The window as a contract Period, or `None` when open at both ends.
    pub fn to_period(self) -> Option<carerecord_contracts::common::v1::Period> {
        use carerecord_platform::time::timestamp_from_micros;
        (!self.is_empty()).then(|| carerecord_contracts::common::v1::Period {
            start: self.start.map(timestamp_from_micros),
            end: self.end.map(timestamp_from_micros),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split_and_decoded() {
        let query = Query::parse(Some(
            "identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919&family:exact=O%27Brien&given=Ann+Marie&flag",
        ))
        .unwrap();
        assert_eq!(
            query.0[0].value,
            "https://fhir.nhs.uk/Id/nhs-number|9434765919"
        );
        assert_eq!(query.0[1].modifier.as_deref(), Some("exact"));
        assert_eq!(query.0[1].value, "O'Brien");
        assert_eq!(query.0[2].value, "Ann Marie");
        assert_eq!(query.0[3].value, "");
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(query.one("family").is_ok());
        let twice = Query::parse(Some("a=1&a=2")).unwrap();
        assert!(twice.one("a").is_err());
        assert_eq!(decode(&encode("a b|c/é")).as_deref(), Some("a b|c/é"));
    }

    #[test]
    fn tokens_and_alternatives() {
        assert_eq!(
            Token::parse("http://loinc.org|2339-0").to_filter(),
            "http://loinc.org|2339-0"
        );
        assert_eq!(Token::parse("2339-0").system, None);
        assert_eq!(alternatives("a,b\\,c,,d"), ["a", "b,c", "d"]);
    }

    #[test]
    fn date_prefixes_narrow_the_window() {
        let mut window = Window::default();
        window.narrow("date", "ge2024-01-01").unwrap();
        window.narrow("date", "lt2024-02").unwrap();
        let (jan, _) = fhir_range("2024-01-01").unwrap();
        let (feb, _) = fhir_range("2024-02").unwrap();
        assert_eq!(
            window,
            Window {
                start: Some(jan),
                end: Some(feb)
            }
        );
        let mut year = Window::default();
        year.narrow("date", "2023").unwrap();
        assert_eq!(year.end, Some(jan));
        let mut le = Window::default();
        le.narrow("date", "le2023-12-31").unwrap();
        assert_eq!(le.end, Some(jan));
        assert!(Window::default().narrow("date", "ge-yesterday").is_err());
        assert!(Window::default().to_period().is_none());
    }
}
