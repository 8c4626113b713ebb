//! What the search handlers share: naming a patient by identifier, page sizes and tokens, unknown
//! parameters, self and next links, and the note about withheld records.

use axum::response::Response;
use carerecord_contracts::access::v1::DisclosureSummary;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::common::v1::Identifier;
use http::{HeaderMap, StatusCode};
use serde_json::value::RawValue;

use crate::error::{Error, Issue, fhir_json_text, operation_outcome};
use crate::query::{Query, Token, encode};
use crate::resource::{NHS_NUMBER_SYSTEM, bundle, outcome_entry};

/// A patient named by an identifier token: the NHS number system is the front door's nhs_number.
pub(crate) fn identifier_reference(token: &Token, expression: &str) -> Result<Reference, Error> {
    match token.system.as_deref() {
        Some(NHS_NUMBER_SYSTEM) => Ok(Reference::NhsNumber(token.code.clone())),
        Some(system) if !system.is_empty() && !token.code.is_empty() => {
            Ok(Reference::Identifier(Identifier {
                system: system.to_owned(),
                value: token.code.clone(),
            }))
        }
        _ => Err(Error::invalid(
            "an identifier is searched as system|value",
            expression,
        )),
    }
}

/// Whether the client asked for strict handling of unknown search parameters.
pub(crate) fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "handling=strict"))
}

/// Refuses unknown parameters under `Prefer: handling=strict`; otherwise they are ignored (and
/// left out of the self link), as FHIR allows.
pub(crate) fn check_unknown(
    query: &Query,
    known: &[&str],
    headers: &HeaderMap,
) -> Result<(), Error> {
    if let Some(unknown) = query.unknown(known).next()
        && strict(headers)
    {
        return Err(Error::invalid(
            format!("unknown search parameter {}", unknown.name),
            unknown.name.clone(),
        ));
    }
    Ok(())
}

/// The query string of the parameters understood, for self links.
pub(crate) fn canonical_query(query: &Query, known: &[&str]) -> String {
    query
        .0
        .iter()
        .filter(|p| known.contains(&p.name.as_str()) || p.name == "_count")
        .map(|p| {
            let name = match &p.modifier {
                Some(m) => format!("{}:{m}", p.name),
                None => p.name.clone(),
            };
            format!("{}={}", encode(&name), encode(&p.value))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `_count`: 1 to 1000, default 50.
pub(crate) fn page_size(query: &Query) -> Result<i32, Error> {
    match query.one("_count")? {
        None => Ok(50),
        Some(p) => match p.value.parse::<i32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(Error::invalid(
                "_count must be a whole number from 1 to 1000",
                "_count",
            )),
        },
    }
}

/// `_page_token`: where the page starts (empty for the first page).
pub(crate) fn page_token(query: &Query) -> Result<String, Error> {
    Ok(query
        .one("_page_token")?
        .map(|p| p.value.clone())
        .unwrap_or_default())
}

/// A page as a Bundle of `kind` (`searchset`, `history`) with its `self` link and, when there is a
/// next page, a `next` link: `next_from()` (the page's URL and query without `_count` and
/// `_page_token`, ending in `?` or `&`; built only for a `next` link) with those two added.
pub(crate) fn page_bundle(
    kind: &str,
    entries: Vec<Box<RawValue>>,
    this: String,
    next_from: impl FnOnce() -> String,
    page_size: i32,
    next_page_token: &str,
) -> Response {
    let mut links = vec![("self", this)];
    if !next_page_token.is_empty() {
        links.push((
            "next",
            format!(
                "{}_count={page_size}&_page_token={}",
                next_from(),
                encode(next_page_token)
            ),
        ));
    }
    fhir_json_text(StatusCode::OK, bundle(kind, entries, links, None))
}

/// An informational outcome entry when consent withheld records from a page: the reader learns
/// that something was withheld (data access tells it so), never what.
pub(crate) fn withheld_note(
    disclosure: &Option<DisclosureSummary>,
    entries: &mut Vec<Box<RawValue>>,
) {
    let withheld = disclosure.as_ref().map_or(0, |d| d.withheld_count);
    if withheld > 0 {
        let mut issue = Issue::error(
            "suppressed",
            format!(
                "{withheld} record(s) of this page were withheld under the patient's consent directives"
            ),
        );
        issue.severity = "information";
        entries.push(outcome_entry(operation_outcome(&[issue])));
    }
}
