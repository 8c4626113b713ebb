//! Writes through the front door's contribute path: `POST /{type}` creates, `PUT /{type}/{id}`
//! with `If-Match` updates, `DELETE /{type}/{id}` retracts (entered in error; nothing is deleted).
//!
//! Provenance comes from the caller's token in data access, never from the request. A payload whose
//! `subject` names the patient by NHS-number identifier alone is accepted: data access resolves it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    CreateRecordRequest, DisclosedRecord, PatientReference, ReadRecordRequest, RecordContent,
    RetractRecordRequest, UpdateRecordRequest,
};
use carerecord_platform::request::Id;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use super::clinical::version_headers;
use super::{legal_basis, purpose, resource_id};
use crate::Gateway;
use crate::error::{Error, Issue, fhir_json, operation_outcome};
use crate::resource::{DATA_CLASS_SYSTEM, record_resource};
use crate::table::is_clinical_type;

/// The request header carrying a client's idempotency key (a UUID), as `request_id`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The request header giving why a record is retracted on DELETE.
pub const RETRACTION_REASON_HEADER: &str = "x-retraction-reason";

/// The body of a write: a JSON object of the URL's resource type.
fn resource_body(
    resource_type: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/fhir+json" | "application/json") {
        return Err(Error::Invalid {
            message: "send the resource as application/fhir+json".into(),
            expression: None,
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        });
    }
    let resource: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| Error::invalid("the body is not a JSON object", "resource"))?;
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(resource),
        _ => Err(Error::invalid(
            format!("the body's resourceType must be {resource_type}, as in the URL"),
            "resourceType",
        )),
    }
}

/// The patient a resource's `subject` (or `patient`) references by id, if it does: `Patient/<id>`,
/// `<base>/Patient/<id>` or `urn:uuid:<id>`. An identifier-only reference gives `None`: data access
/// resolves the NHS number itself.
fn referenced_patient(resource: &Map<String, Value>) -> Option<PatientReference> {
    let element = resource
        .get("subject")
        .or_else(|| resource.get("patient"))?;
    let reference = element.get("reference")?.as_str()?;
    let id = reference
        .strip_prefix("urn:uuid:")
        .or_else(|| reference.rsplit_once("Patient/").map(|(_, id)| id))?;
    Some(PatientReference {
        reference: Some(Reference::PatientId(id.to_owned())),
    })
}

/// The sensitivity labels a client put in `meta.security` under carerecord's data-class system.
fn data_classes(resource: &Map<String, Value>) -> Vec<String> {
    resource
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .map(|codings| {
            codings
                .iter()
                .filter(|c| c.get("system").and_then(Value::as_str) == Some(DATA_CLASS_SYSTEM))
                .filter_map(|c| c.get("code")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn request_id(headers: &HeaderMap) -> Result<String, Error> {
    match headers.get(REQUEST_ID_HEADER) {
        None => Ok(Id::random().into_string()),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(Id::parse)
            .map(Id::into_string)
            .ok_or_else(|| Error::invalid("X-Request-Id must be a UUID", "X-Request-Id")),
    }
}

/// The version an `If-Match: W/"3"` (or `"3"`) names.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 1)
        .map(Some)
        .ok_or_else(|| Error::invalid("If-Match must be W/\"<version>\"", "If-Match"))
}

/// What `Prefer: return=...` asks for: the resource (default), nothing, or an OperationOutcome.
fn respond(
    headers: &HeaderMap,
    status: StatusCode,
    record: &DisclosedRecord,
    location: Option<String>,
) -> Result<Response, Error> {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("return="))
        .unwrap_or("representation")
        .to_owned();
    let mut response = match prefer.as_str() {
        "minimal" => status.into_response(),
        "OperationOutcome" => {
            let mut issue = Issue::error(
                "informational",
                format!(
                    "{} {} version {}",
                    record.resource_type, record.record_id, record.version
                ),
            );
            issue.severity = "information";
            fhir_json(status, &operation_outcome(&[issue]))
        }
        _ => fhir_json(status, &record_resource(record)?),
    };
    version_headers(&mut response, record);
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn content(resource_type: &str, resource: &Map<String, Value>, body: Bytes) -> RecordContent {
    RecordContent {
        resource_type: resource_type.to_owned(),
        payload: body.to_vec(),
        data_classes: data_classes(resource),
        ..RecordContent::default()
    }
}

fn check_type(resource_type: &str) -> Result<(), Error> {
    if is_clinical_type(resource_type) {
        Ok(())
    } else {
        Err(Error::NotSupported(format!(
            "{} cannot be written here",
            carerecord_platform::status_policy::bounded(resource_type, 64)
        )))
    }
}

/// `POST /{type}`: 201 Created with `Location`, `ETag` and `Last-Modified`.
pub async fn create(
    State(gateway): State<Gateway>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    check_type(&resource_type)?;
    let resource = resource_body(&resource_type, &headers, &body)?;
    let request = CreateRecordRequest {
        request_id: request_id(&headers)?,
        patient: referenced_patient(&resource),
        purpose_of_use: purpose(&headers)?,
        legal_basis: legal_basis(&headers)?,
        content: Some(content(&resource_type, &resource, body)),
    };
    let created = gateway
        .access()
        .create_record(gateway.call(&headers, request))
        .await?
        .into_inner();
    let record = created.record.unwrap_or_default();
    let location = format!(
        "{}/{resource_type}/{}/_history/{}",
        gateway.base_url(&headers),
        record.record_id,
        record.version
    );
    respond(&headers, StatusCode::CREATED, &record, Some(location))
}

/// `PUT /{type}/{id}` with `If-Match: W/"<version>"` (required: updates never overwrite a change
/// the client has not seen).
pub async fn update(
    State(gateway): State<Gateway>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    check_type(&resource_type)?;
    let id = resource_id(&resource_type, &id)?;
    let resource = resource_body(&resource_type, &headers, &body)?;
    if let Some(body_id) = resource.get("id").and_then(Value::as_str)
        && body_id != id
    {
        return Err(Error::invalid(
            "the body's id must be the id in the URL",
            "id",
        ));
    }
    let Some(version) = if_match(&headers)? else {
        return Err(Error::Invalid {
            message: "an update needs If-Match: W/\"<version>\" of the version it replaces".into(),
            expression: Some("If-Match".into()),
            status: StatusCode::PRECONDITION_REQUIRED,
        });
    };
    let request = UpdateRecordRequest {
        request_id: request_id(&headers)?,
        record_id: id,
        expected_version: version,
        purpose_of_use: purpose(&headers)?,
        legal_basis: legal_basis(&headers)?,
        content: Some(content(&resource_type, &resource, body)),
        ..UpdateRecordRequest::default()
    };
    let updated = gateway
        .access()
        .update_record(gateway.call(&headers, request))
        .await?
        .into_inner();
    respond(
        &headers,
        StatusCode::OK,
        &updated.record.unwrap_or_default(),
        None,
    )
}

/// `DELETE /{type}/{id}`: retracts the record as entered in error (its history stays). With
/// `If-Match`, only if that is the latest version; without, the latest version is read first.
pub async fn delete(
    State(gateway): State<Gateway>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    check_type(&resource_type)?;
    let id = resource_id(&resource_type, &id)?;
    let purpose = purpose(&headers)?;
    let version = match if_match(&headers)? {
        Some(version) => version,
        None => {
            let current = gateway
                .access()
                .read_record(gateway.call(
                    &headers,
                    ReadRecordRequest {
                        record_id: id.clone(),
                        purpose_of_use: purpose.clone(),
                        legal_basis: legal_basis(&headers)?,
                        ..ReadRecordRequest::default()
                    },
                ))
                .await?
                .into_inner()
                .record
                .unwrap_or_default();
            if current.resource_type != resource_type {
                return Err(Error::NotFound(format!("no {resource_type} with that id")));
            }
            current.version
        }
    };
    let reason = headers
        .get(RETRACTION_REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("retracted through the FHIR API (DELETE)")
        .to_owned();
    let retracted = gateway
        .access()
        .retract_record(gateway.call(
            &headers,
            RetractRecordRequest {
                request_id: request_id(&headers)?,
                record_id: id,
                expected_version: version,
                reason,
                purpose_of_use: purpose,
                legal_basis: legal_basis(&headers)?,
                ..RetractRecordRequest::default()
            },
        ))
        .await?
        .into_inner();
    let mut response = StatusCode::NO_CONTENT.into_response();
    version_headers(&mut response, &retracted.record.unwrap_or_default());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_patient_comes_from_the_subject_reference() {
        let by_reference = object(r#"{"subject":{"reference":"Patient/p-1"}}"#);
        assert_eq!(
            referenced_patient(&by_reference).unwrap().reference,
            Some(Reference::PatientId("p-1".into()))
        );
        let absolute = object(r#"{"patient":{"reference":"https://fhir.example/R4/Patient/p-2"}}"#);
        assert_eq!(
            referenced_patient(&absolute).unwrap().reference,
            Some(Reference::PatientId("p-2".into()))
        );
        let by_nhs_number = object(
            r#"{"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}}"#,
        );
        assert!(referenced_patient(&by_nhs_number).is_none());
    }

    #[test]
    fn labels_and_preconditions() {
        let labelled = object(&format!(
            r#"{{"meta":{{"security":[{{"system":"{DATA_CLASS_SYSTEM}","code":"mental-health"}},{{"system":"other","code":"R"}}]}}}}"#
        ));
        assert_eq!(data_classes(&labelled), ["mental-health"]);
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).unwrap(), None);
        headers.insert(header::IF_MATCH, "W/\"3\"".parse().unwrap());
        assert_eq!(if_match(&headers).unwrap(), Some(3));
        headers.insert(header::IF_MATCH, "*".parse().unwrap());
        assert!(if_match(&headers).is_err());
        headers.insert(REQUEST_ID_HEADER, "not-a-uuid".parse().unwrap());
        assert!(request_id(&headers).is_err());
    }

    #[test]
    fn bodies_must_be_fhir_json_of_the_urls_type() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/fhir+json".parse().unwrap(),
        );
        assert!(
            resource_body(
                "Observation",
                &headers,
                br#"{"resourceType":"Observation"}"#
            )
            .is_ok()
        );
        assert!(
            resource_body("Observation", &headers, br#"{"resourceType":"Condition"}"#).is_err()
        );
        assert!(resource_body("Observation", &headers, b"[]").is_err());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(
            resource_body(
                "Observation",
                &headers,
                br#"{"resourceType":"Observation"}"#
            )
            .is_err()
        );
    }
}
