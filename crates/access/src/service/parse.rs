//! Request fields several RPCs share: patient references, purposes of use, periods, resource
//! types, and the query a page token is bound to.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::patient_reference::Reference as Ref;
use carerecord_contracts::common::v1 as common;
use carerecord_platform::errors::Violations;
use carerecord_platform::nhs_number;
use carerecord_platform::page_token::{PageTokens, Position, QueryKey};
use prost::Message;

use crate::domain::auth::Caller;
use crate::error::Error;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// A validated patient reference.
#[derive(Debug, Clone)]
pub enum Reference {
    PatientId(String),
    Nhs(String),
    Identifier(String, String),
    Demographics(api::Demographics),
}

impl Reference {
    pub fn kind(&self) -> api::PatientReferenceKind {
        match self {
            Reference::PatientId(_) => api::PatientReferenceKind::PatientId,
            Reference::Nhs(_) => api::PatientReferenceKind::NhsNumber,
            Reference::Identifier(..) => api::PatientReferenceKind::Identifier,
            Reference::Demographics(_) => api::PatientReferenceKind::Demographics,
        }
    }

    /// The ResourceInfo name for NOT_FOUND: the id given, empty for demographics.
    pub fn name(&self) -> String {
        match self {
            Reference::PatientId(id) => id.clone(),
            Reference::Nhs(n) => n.clone(),
            Reference::Identifier(s, v) => format!("{s}|{v}"),
            Reference::Demographics(_) => String::new(),
        }
    }
}

/// Validates a PatientReference at `field`.
pub fn validate_reference(
    v: &mut Violations,
    field: &str,
    reference: Option<&api::PatientReference>,
) -> Option<Reference> {
    let Some(reference) = reference.and_then(|r| r.reference.as_ref()) else {
        v.add(
            field,
            "a patient reference is required: patient_id, nhs_number, identifier or demographics",
        );
        return None;
    };
    match reference {
        Ref::PatientId(id) => v
            .required_id(&format!("{field}.patient_id"), id.trim())
            .map(|id| Reference::PatientId(id.into_string())),
        Ref::NhsNumber(n) => nhs(v, &format!("{field}.nhs_number"), n),
        Ref::Identifier(id) => {
            let (system, value) = (id.system.trim(), id.value.trim());
            let mut ok = true;
            if system.is_empty() {
                v.add(format!("{field}.identifier.system"), "is required");
                ok = false;
            }
            if value.is_empty() {
                v.add(format!("{field}.identifier.value"), "is required");
                ok = false;
            }
            if !ok {
                return None;
            }
            if system == NHS_NUMBER_SYSTEM {
                return nhs(v, &format!("{field}.identifier.value"), value);
            }
            Some(Reference::Identifier(system.to_owned(), value.to_owned()))
        }
        Ref::Demographics(d) => {
            let before = v.iter().count();
            if d.family.trim().is_empty() {
                v.add(format!("{field}.demographics.family"), "is required");
            }
            match &d.birth_date {
                None => v.add(format!("{field}.demographics.birth_date"), "is required"),
                Some(date) => {
                    if !(1..=9999).contains(&date.year)
                        || !(1..=12).contains(&date.month)
                        || !(1..=31).contains(&date.day)
                    {
                        v.add(
                            format!("{field}.demographics.birth_date"),
                            "must be a full, valid date",
                        );
                    }
                }
            }
            if common::AdministrativeGender::try_from(d.gender).is_err() {
                v.add(format!("{field}.demographics.gender"), "unknown value");
            }
            (v.iter().count() == before).then(|| Reference::Demographics(d.clone()))
        }
    }
}

fn nhs(v: &mut Violations, field: &str, raw: &str) -> Option<Reference> {
    match nhs_number::normalise(raw) {
        Ok(n) => Some(Reference::Nhs(n)),
        Err(why) => {
            v.add(field, why.description());
            None
        }
    }
}

/// Purpose of use: required and known.
pub fn validate_purpose(v: &mut Violations, purpose: &str) {
    if purpose.is_empty() {
        v.add(
            "purpose_of_use",
            "is required (an HL7 ActReason code such as TREAT)",
        );
    } else if !crate::domain::is_known_purpose(purpose) {
        v.add("purpose_of_use", "unknown purpose of use; expected one of TREAT, ETREAT, HRESCH, HOPERAT, HPAYMT, PUBHLTH, HMARKT, PATRQT");
    }
}

/// A period's bounds in microseconds; end before start is a violation.
pub fn validate_period(
    v: &mut Violations,
    field: &str,
    period: Option<&common::Period>,
) -> (Option<i64>, Option<i64>) {
    let Some(period) = period else {
        return (None, None);
    };
    let mut bound = |name: &str, ts: Option<&prost_types::Timestamp>| -> Option<i64> {
        let ts = ts?;
        let micros = crate::domain::micros(ts);
        if micros.is_none() {
            v.add(format!("{field}.{name}"), "is not a valid timestamp");
        }
        micros
    };
    let start = bound("start", period.start.as_ref());
    let end = bound("end", period.end.as_ref());
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        v.add(format!("{field}.end"), "must not be before start");
    }
    (start, end)
}

/// Validates resource types: known FHIR R4 types, duplicates dropped.
pub fn validate_types(v: &mut Violations, field: &str, types: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if !crate::domain::is_resource_type(t) {
            v.add(
                format!("{field}[{i}]"),
                "is not a FHIR R4 resource type (case-sensitive)",
            );
        } else if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// A request read in pages: its page tokens are bound to its fields other than the paging ones.
pub trait Paged: Message + Sized {
    /// The request with the fields that move from page to page cleared.
    fn unpaged(&self) -> Self;
}

/// Requests whose paging fields are `page_size` and `page_token`.
macro_rules! paged {
    ($($request:ty),* $(,)?) => {
        $(impl Paged for $request {
            fn unpaged(&self) -> Self {
                Self {
                    page_size: 0,
                    page_token: String::new(),
                    ..self.clone()
                }
            }
        })*
    };
}

paged!(
    api::ReadPatientRecordRequest,
    api::BreakGlassReadPatientRecordRequest,
    api::ListRecordVersionsRequest,
    api::ListDisclosuresRequest,
    api::ListBreakGlassEventsRequest,
    api::ListConsentDirectivesRequest,
);

impl Paged for api::ListAuditEntriesRequest {
    /// Later pages resume at their own index, not the first page's start.
    fn unpaged(&self) -> Self {
        Self {
            page_size: 0,
            page_token: String::new(),
            start_index: 0,
            ..self.clone()
        }
    }
}

impl Paged for api::FollowRecordChangesRequest {
    /// A follow resumes at its cursor, wherever it first started.
    fn unpaged(&self) -> Self {
        Self {
            after_cursor: String::new(),
            start_at_head: false,
            ..self.clone()
        }
    }
}

/// What a page token of the list `kind` is bound to: the requester and the request's other
/// fields.
pub fn page_query(kind: &str, caller: &Caller, request: &impl Paged) -> QueryKey {
    let mut query = QueryKey::new(kind);
    query
        .text(&caller.user_id)
        .text(&caller.client_id)
        .text(&caller.organisation_ods_code)
        .text(&hex::encode(request.unpaged().encode_to_vec()));
    query
}

/// The page token of the next page of a listing another module pages (`next`, its own token):
/// bound to `query`, and empty once that module's listing has ended.
pub fn relayed_token(tokens: &PageTokens, query: &QueryKey, next: &str) -> String {
    if next.is_empty() {
        String::new()
    } else {
        tokens.issue_at(query, Position::new().text(next))
    }
}

/// Where a page token resumes, as `read` takes it out of the token's position; `None` without a
/// token. A token not issued for `query`, or holding anything else, is INVALID_PAGE_TOKEN.
pub fn resume<T>(
    tokens: &PageTokens,
    query: &QueryKey,
    token: &str,
    read: impl FnOnce(&mut Position) -> Option<T>,
) -> Result<Option<T>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut position = tokens
        .resume(query, token)
        .map_err(|_| Error::InvalidPageToken)?;
    match read(&mut position) {
        Some(value) if position.is_done() => Ok(Some(value)),
        _ => Err(Error::InvalidPageToken),
    }
}
