//! Patient: search (by id, identifier or demographics) and read through the front door's
//! FindPatient, and `$everything`.

use axum::extract::{Path, State};
use axum::response::Response;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    Demographics, FindPatientRequest, PatientReference, ReadPatientRecordRequest,
};
use carerecord_contracts::common::v1::{AdministrativeGender, Date};
use http::{HeaderMap, StatusCode, Uri};
use serde_json::value::RawValue;
use tonic::Code;

use super::search::{
    canonical_query, check_unknown, identifier_reference, page_bundle, page_size, page_token,
    withheld_note,
};
use super::{legal_basis, purpose, resource_id};
use crate::Gateway;
use crate::error::{Error, Issue, fhir_json, fhir_json_text, operation_outcome};
use crate::query::{Query, Token, encode};
use crate::resource::{bundle, match_entry, outcome_entry, patient_resource, raw, record_json};

/// The search parameters Patient search understands.
const KNOWN: &[&str] = &[
    "_id",
    "identifier",
    "family",
    "given",
    "birthdate",
    "gender",
    "address-postalcode",
];

fn reference_from(query: &Query) -> Result<Reference, Error> {
    if let Some(id) = query.one("_id")? {
        return Ok(Reference::PatientId(id.value.clone()));
    }
    if let Some(identifier) = query.one("identifier")? {
        return identifier_reference(&Token::parse(&identifier.value), "identifier");
    }
    let family = query.one("family")?.map(|p| p.value.clone());
    let birthdate = query.one("birthdate")?.map(|p| p.value.clone());
    let (Some(family), Some(birthdate)) = (family, birthdate) else {
        return Err(Error::invalid(
            "search Patient by _id, by identifier, or by family and birthdate (with given, gender and address-postalcode to narrow it)",
            "Patient",
        ));
    };
    let birth_date = full_date(birthdate.strip_prefix("eq").unwrap_or(&birthdate))
        .ok_or_else(|| Error::invalid("birthdate must be a full date, YYYY-MM-DD", "birthdate"))?;
    let gender = match query.one("gender")?.map(|p| p.value.as_str()) {
        None => AdministrativeGender::Unspecified,
        Some("male") => AdministrativeGender::Male,
        Some("female") => AdministrativeGender::Female,
        Some("other") => AdministrativeGender::Other,
        Some("unknown") => AdministrativeGender::Unknown,
        Some(_) => {
            return Err(Error::invalid(
                "gender is male, female, other or unknown",
                "gender",
            ));
        }
    };
    Ok(Reference::Demographics(Demographics {
        given: query
            .all("given")
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        family,
        birth_date: Some(birth_date),
        gender: gender as i32,
        postal_code: query
            .one("address-postalcode")?
            .map(|p| p.value.clone())
            .unwrap_or_default(),
    }))
}

fn full_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    Some(Date {
        year: year.parse().ok()?,
        month: month.parse().ok()?,
        day: day.parse().ok()?,
    })
}

/// `GET /Patient?...`: zero or one patient (the front door only ever resolves one). An ambiguous
/// demographic match is an empty result with an outcome entry saying so, not an error.
pub async fn search(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    let query = Query::parse(uri.query())?;
    check_unknown(&query, KNOWN, &headers)?;
    let reference = reference_from(&query)?;
    let base = gateway.base_url(&headers);
    let self_link = format!("{base}/Patient?{}", canonical_query(&query, KNOWN));
    let request = FindPatientRequest {
        patient: Some(PatientReference {
            reference: Some(reference),
        }),
        purpose_of_use: purpose(&headers)?,
    };
    let found = gateway
        .access()
        .find_patient(gateway.call(&headers, request))
        .await;
    let (entries, total) = match found {
        Ok(response) => {
            let response = response.into_inner();
            let patient = response.patient.unwrap_or_default();
            let full_url = format!("{base}/Patient/{}", patient.patient_id);
            (
                vec![match_entry(&full_url, &raw(&patient_resource(&patient)))],
                1,
            )
        }
        Err(status) if status.code() == Code::NotFound => (Vec::new(), 0),
        Err(status) if status.code() == Code::FailedPrecondition => {
            let (_, issues, _) = crate::error::from_status(&status);
            let mut issue = issues.into_iter().next().unwrap_or_else(|| {
                Issue::error("multiple-matches", "more than one patient matches")
            });
            issue.severity = "warning";
            (vec![outcome_entry(operation_outcome(&[issue]))], 0)
        }
        Err(status) => return Err(status.into()),
    };
    Ok(fhir_json_text(
        StatusCode::OK,
        bundle("searchset", entries, vec![("self", self_link)], Some(total)),
    ))
}

/// `GET /Patient/{id}`.
pub async fn read(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let request = FindPatientRequest {
        patient: Some(PatientReference {
            reference: Some(Reference::PatientId(resource_id("Patient", &id)?)),
        }),
        purpose_of_use: purpose(&headers)?,
    };
    let response = gateway
        .access()
        .find_patient(gateway.call(&headers, request))
        .await?
        .into_inner();
    Ok(fhir_json(
        StatusCode::OK,
        &patient_resource(&response.patient.unwrap_or_default()),
    ))
}

/// `GET /Patient/{id}/$everything`: the patient, then every record the token and consent allow,
/// a page at a time (`_count`, and `next` links).
pub async fn everything(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    let id = resource_id("Patient", &id)?;
    let query = Query::parse(uri.query())?;
    check_unknown(&query, &["_page_token"], &headers)?;
    let page_size = page_size(&query)?;
    let page_token = page_token(&query)?;
    let purpose = purpose(&headers)?;
    let base = gateway.base_url(&headers);
    let patient = || PatientReference {
        reference: Some(Reference::PatientId(id.clone())),
    };
    let mut entries: Vec<Box<RawValue>> = Vec::new();
    if page_token.is_empty() {
        let found = gateway
            .access()
            .find_patient(gateway.call(
                &headers,
                FindPatientRequest {
                    patient: Some(patient()),
                    purpose_of_use: purpose.clone(),
                },
            ))
            .await;
        match found {
            Ok(found) => {
                let summary = found.into_inner().patient.unwrap_or_default();
                entries.push(match_entry(
                    &format!("{base}/Patient/{}", summary.patient_id),
                    &raw(&patient_resource(&summary)),
                ));
            }
            // FindPatient honours no `patient/` scope: a patient's own app gets their records
            // without the Patient resource (the record read below decides what it may see).
            Err(status)
                if status.code() == Code::PermissionDenied && super::patient_facing(&headers) => {}
            Err(status) => return Err(status.into()),
        }
    }
    let page = gateway
        .access()
        .read_patient_record(gateway.call(
            &headers,
            ReadPatientRecordRequest {
                patient: Some(patient()),
                purpose_of_use: purpose,
                legal_basis: legal_basis(&headers)?,
                page_size,
                page_token: page_token.clone(),
                ..ReadPatientRecordRequest::default()
            },
        ))
        .await?
        .into_inner();
    for record in &page.records {
        entries.push(match_entry(
            &format!("{base}/{}/{}", record.resource_type, record.record_id),
            &record_json(record)?,
        ));
    }
    withheld_note(&page.disclosure, &mut entries);
    let this = format!("{base}/Patient/{}/$everything", encode(&id));
    let next_from = format!("{this}?");
    let self_link = if page_token.is_empty() {
        this
    } else {
        format!("{this}?_page_token={}", encode(&page_token))
    };
    Ok(page_bundle(
        "searchset",
        entries,
        self_link,
        || next_from,
        page_size,
        &page.next_page_token,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_patient_one_way() {
        let q = |s: &str| Query::parse(Some(s)).unwrap();
        assert_eq!(
            reference_from(&q(
                "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
            ))
            .unwrap(),
            Reference::NhsNumber("9434765919".into())
        );
        assert!(matches!(
            reference_from(&q("identifier=https://fhir.rxx.nhs.uk/Id/mrn|123")).unwrap(),
            Reference::Identifier(_)
        ));
        let Reference::Demographics(d) =
            reference_from(&q("family=Lovelace&given=Ada&birthdate=1985-12-10&gender=female&address-postalcode=LS1%204AP")).unwrap()
        else {
            panic!("demographics")
        };
        assert_eq!(
            (d.family.as_str(), d.postal_code.as_str()),
            ("Lovelace", "LS1 4AP")
        );
        assert_eq!(d.birth_date.unwrap().day, 10);
        assert!(reference_from(&q("family=Lovelace")).is_err());
        assert!(reference_from(&q("family=Lovelace&birthdate=1985")).is_err());
        assert!(reference_from(&q("identifier=9434765919")).is_err());
        assert!(reference_from(&q("family=A&birthdate=1985-12-10&gender=f")).is_err());
    }

    #[test]
    fn self_links_keep_only_what_was_understood() {
        let query = Query::parse(Some("family=O%27Brien&bogus=1&_count=5")).unwrap();
        assert_eq!(canonical_query(&query, KNOWN), "family=O%27Brien&_count=5");
    }
}
