//! Clinical resources: search by patient (with date, code, category, status and `_lastUpdated`
//! filters applied by the front door, never after fetching a page), read, version read and history.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    ListRecordVersionsRequest, PatientReference, ReadPatientRecordRequest, ReadRecordRequest,
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use super::search::{
    canonical_query, check_unknown, identifier_reference, page_bundle, page_size, page_token,
    withheld_note,
};
use super::{legal_basis, purpose, resource_id};
use crate::Gateway;
use crate::error::{Error, Issue, fhir_json, operation_outcome};
use crate::query::{Query, Token, Window, alternatives, encode};
use crate::resource::{etag, is_retracted, match_entry, raw, record_json, record_resource};
use crate::table::is_clinical_type;

/// The search parameters clinical search understands.
const KNOWN: &[&str] = &[
    "patient",
    "subject",
    "patient.identifier",
    "date",
    "_lastUpdated",
    "code",
    "category",
    "status",
    "_page_token",
];

fn check_type(resource_type: &str) -> Result<(), Error> {
    if is_clinical_type(resource_type) {
        Ok(())
    } else {
        Err(Error::NotSupported(format!(
            "{} is not a resource type served here",
            carerecord_platform::status_policy::bounded(resource_type, 64)
        )))
    }
}

/// The patient a clinical search names: `patient=<id>` or `Patient/<id>`, `subject=Patient/<id>`,
/// or `patient.identifier=<system>|<value>`; exactly one.
fn patient_param(query: &Query) -> Result<Reference, Error> {
    let mut named = Vec::new();
    if let Some(p) = query.one("patient")? {
        named.push(Reference::PatientId(
            p.value
                .strip_prefix("Patient/")
                .unwrap_or(&p.value)
                .to_owned(),
        ));
    }
    if let Some(p) = query.one("subject")? {
        match p.value.strip_prefix("Patient/") {
            Some(id) => named.push(Reference::PatientId(id.to_owned())),
            None => {
                return Err(Error::invalid(
                    "subject is searched as Patient/<id>",
                    "subject",
                ));
            }
        }
    }
    if let Some(p) = query.one("patient.identifier")? {
        named.push(identifier_reference(
            &Token::parse(&p.value),
            "patient.identifier",
        )?);
    }
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => Err(Error::invalid(
            "a search names its patient: patient, subject or patient.identifier is required",
            "patient",
        )),
        _ => Err(Error::invalid(
            "name the patient once: patient, subject or patient.identifier",
            "patient",
        )),
    }
}

fn tokens(query: &Query, name: &str) -> Vec<String> {
    query
        .all(name)
        .flat_map(|p| alternatives(&p.value))
        .map(|v| Token::parse(&v).to_filter())
        .collect()
}

fn window(query: &Query, name: &str) -> Result<Window, Error> {
    let mut window = Window::default();
    for p in query.all(name) {
        window.narrow(name, &p.value)?;
    }
    Ok(window)
}

/// `GET /{type}?patient=...`: a searchset of the patient's current records of that type, paged
/// through the front door's own paging.
pub async fn search(
    State(gateway): State<Gateway>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    check_type(&resource_type)?;
    let query = Query::parse(uri.query())?;
    check_unknown(&query, KNOWN, &headers)?;
    if let Some(sort) = query.one("_sort")?
        && sort.value != "-date"
    {
        return Err(Error::invalid(
            "only _sort=-date (newest first, the default) is supported",
            "_sort",
        ));
    }
    let page_size = page_size(&query)?;
    let page_token = page_token(&query)?;
    let request = ReadPatientRecordRequest {
        patient: Some(PatientReference {
            reference: Some(patient_param(&query)?),
        }),
        purpose_of_use: purpose(&headers)?,
        legal_basis: legal_basis(&headers)?,
        resource_types: vec![resource_type.clone()],
        effective_period: window(&query, "date")?.to_period(),
        last_updated: window(&query, "_lastUpdated")?.to_period(),
        codes: tokens(&query, "code"),
        categories: tokens(&query, "category"),
        statuses: query
            .all("status")
            .flat_map(|p| alternatives(&p.value))
            .collect(),
        page_size,
        page_token: page_token.clone(),
    };
    let page = gateway
        .access()
        .read_patient_record(gateway.call(&headers, request))
        .await?
        .into_inner();
    let base = gateway.base_url(&headers);
    let mut entries = Vec::with_capacity(page.records.len() + 1);
    for record in &page.records {
        entries.push(match_entry(
            &format!("{base}/{}/{}", record.resource_type, record.record_id),
            &record_json(record)?,
        ));
    }
    withheld_note(&page.disclosure, &mut entries);
    let this = format!("{base}/{resource_type}?{}", canonical_query(&query, KNOWN));
    let next_from = || {
        let without_paging = Query(
            query
                .0
                .iter()
                .filter(|p| p.name != "_page_token" && p.name != "_count")
                .cloned()
                .collect(),
        );
        format!(
            "{base}/{resource_type}?{}&",
            canonical_query(&without_paging, KNOWN)
        )
    };
    Ok(page_bundle(
        "searchset",
        entries,
        this,
        next_from,
        page_size,
        &page.next_page_token,
    ))
}

/// One version of a record as a FHIR read response: the resource with `ETag` and `Last-Modified`,
/// or 304 when the client's `If-None-Match` names this version; a retracted record reads as deleted
/// (410 Gone).
fn resource_response(
    resource_type: &str,
    record: &carerecord_contracts::access::v1::DisclosedRecord,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    if record.resource_type != resource_type {
        return Err(Error::NotFound(format!("no {resource_type} with that id")));
    }
    if is_retracted(record) {
        let issue = Issue::error("deleted", "the record was retracted as entered in error");
        let mut response = fhir_json(StatusCode::GONE, &operation_outcome(&[issue]));
        version_headers(&mut response, record);
        return Ok(response);
    }
    let mut response = if if_none_match(headers) == Some(record.version) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        fhir_json(StatusCode::OK, &record_resource(record)?)
    };
    version_headers(&mut response, record);
    Ok(response)
}

/// The version an `If-None-Match` names: `W/"3"`, `"3"` or `3`.
fn if_none_match(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(header::IF_NONE_MATCH)?
        .to_str()
        .ok()?
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// `ETag` and `Last-Modified` of a record version.
pub(crate) fn version_headers(
    response: &mut Response,
    record: &carerecord_contracts::access::v1::DisclosedRecord,
) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag(record.version)) {
        headers.insert(header::ETAG, value);
    }
    if let Some(updated) = record
        .last_updated
        .as_ref()
        .and_then(carerecord_platform::time::micros)
        && let Ok(value) = HeaderValue::from_str(&http_date(updated))
    {
        headers.insert(header::LAST_MODIFIED, value);
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate) of microseconds since the epoch.
pub(crate) fn http_date(micros: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = micros.div_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = carerecord_platform::time::civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

async fn read_version(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource_type: &str,
    record_id: String,
    version: i64,
) -> Result<Response, Error> {
    check_type(resource_type)?;
    let record_id = resource_id(resource_type, &record_id)?;
    let response = gateway
        .access()
        .read_record(gateway.call(
            headers,
            ReadRecordRequest {
                record_id,
                version,
                purpose_of_use: purpose(headers)?,
                legal_basis: legal_basis(headers)?,
            },
        ))
        .await?
        .into_inner();
    resource_response(resource_type, &response.record.unwrap_or_default(), headers)
}

/// `GET /{type}/{id}`.
pub async fn read(
    State(gateway): State<Gateway>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    read_version(&gateway, &headers, &resource_type, id, 0).await
}

/// `GET /{type}/{id}/_history/{version}`.
pub async fn vread(
    State(gateway): State<Gateway>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let version = version
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| Error::invalid("a version is a whole number from 1", "version"))?;
    read_version(&gateway, &headers, &resource_type, id, version).await
}

/// `GET /{type}/{id}/_history`: a history Bundle, newest first.
pub async fn history(
    State(gateway): State<Gateway>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    check_type(&resource_type)?;
    let id = resource_id(&resource_type, &id)?;
    let query = Query::parse(uri.query())?;
    let page_size = page_size(&query)?;
    let page_token = page_token(&query)?;
    let page = gateway
        .access()
        .list_record_versions(gateway.call(
            &headers,
            ListRecordVersionsRequest {
                record_id: id.clone(),
                purpose_of_use: purpose(&headers)?,
                legal_basis: legal_basis(&headers)?,
                page_size,
                page_token: page_token.clone(),
            },
        ))
        .await?
        .into_inner();
    let base = gateway.base_url(&headers);
    let mut entries = Vec::with_capacity(page.versions.len());
    for version in &page.versions {
        if version.resource_type != resource_type {
            return Err(Error::NotFound(format!("no {resource_type} with that id")));
        }
        let url = format!(
            "{base}/{resource_type}/{}/_history/{}",
            version.record_id, version.version
        );
        let (method, resource) = if is_retracted(version) {
            ("DELETE", None)
        } else if version.version == 1 {
            ("POST", Some(record_resource(version)?))
        } else {
            ("PUT", Some(record_resource(version)?))
        };
        let mut entry = serde_json::json!({
            "fullUrl": format!("{base}/{resource_type}/{}", version.record_id),
            "request": {"method": method, "url": format!("{resource_type}/{}", version.record_id)},
            "response": {"status": if method == "POST" { "201" } else if method == "DELETE" { "204" } else { "200" }, "etag": etag(version.version), "location": url},
        });
        if let Some(resource) = resource {
            entry["resource"] = resource;
        }
        entries.push(raw(&entry));
    }
    withheld_note(&page.disclosure, &mut entries);
    let this = format!("{base}/{resource_type}/{}/_history", encode(&id));
    let next_from = format!("{this}?");
    Ok(page_bundle(
        "history",
        entries,
        this,
        || next_from,
        page_size,
        &page.next_page_token,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patient_is_named_exactly_once() {
        let q = |s: &str| Query::parse(Some(s)).unwrap();
        assert_eq!(
            patient_param(&q("patient=Patient/abc")).unwrap(),
            Reference::PatientId("abc".into())
        );
        assert_eq!(
            patient_param(&q("subject=Patient/abc")).unwrap(),
            Reference::PatientId("abc".into())
        );
        assert_eq!(
            patient_param(&q(
                "patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
            ))
            .unwrap(),
            Reference::NhsNumber("9434765919".into())
        );
        assert!(patient_param(&q("code=x")).is_err());
        assert!(patient_param(&q("patient=a&subject=Patient/a")).is_err());
        assert!(patient_param(&q("subject=Group/g")).is_err());
    }

    #[test]
    fn counts_and_dates() {
        let q = |s: &str| Query::parse(Some(s)).unwrap();
        assert_eq!(page_size(&q("")).unwrap(), 50);
        assert_eq!(page_size(&q("_count=7")).unwrap(), 7);
        assert!(page_size(&q("_count=0")).is_err());
        assert!(page_size(&q("_count=5000")).is_err());
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_700_000_000_000_000),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            tokens(&q("code=http://loinc.org|1,2"), "code"),
            ["http://loinc.org|1", "2"]
        );
    }
}
