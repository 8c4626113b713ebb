//! What the search handlers share: naming a patient by identifier, page sizes, unknown
//! parameters and self links, and the note about withheld records.

use carerecord_contracts::access::v1::DisclosureSummary;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::common::v1::Identifier;
use http::HeaderMap;
use serde_json::value::RawValue;

use crate::error::{Error, Issue, operation_outcome};
use crate::query::{Query, Token, encode};
use crate::resource::{NHS_NUMBER_SYSTEM, outcome_entry};

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
