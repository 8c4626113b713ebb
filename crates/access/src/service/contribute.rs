//! Contributions: CreateRecord, UpdateRecord and RetractRecord. The requester comes from the token,
//! the patient is resolved through identity, consent is asked, the write goes to record hosting
//! with provenance from the token, and every attempt is one audit entry.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;
use carerecord_platform::time::timestamp_from_micros;
use tonic::{Code, Request, Status};

use super::AccessService;
use super::disclose::{disclosed, record_ref};
use super::parse::{Reference, validate_purpose, validate_reference};
use super::patients::Resolved;
use super::read::caller_contexts;
use crate::domain::auth::Caller;
use crate::domain::contribution::{effective_micros, patient_naming, with_patient_reference};
use crate::domain::decision;
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

/// The media type record hosting stores payloads under.
const FHIR_JSON: &str = "application/fhir+json";

/// A contribution's validated content.
#[derive(Debug, Clone)]
pub(super) struct Content {
    pub resource_type: String,
    pub payload: Vec<u8>,
    pub data_classes: Vec<String>,
    pub effective_time: Option<prost_types::Timestamp>,
    pub recorded_time: Option<prost_types::Timestamp>,
    pub author: String,
    /// The NHS number the payload names its patient by, and where to insert the reference.
    pub nhs_number: Option<String>,
    pub insert_at: Vec<usize>,
}

/// Checks a RecordContent at `field`; record hosting checks the payload itself when it is written.
pub(super) fn validate_content(
    v: &mut Violations,
    field: &str,
    content: Option<&api::RecordContent>,
) -> Option<Content> {
    let Some(content) = content else {
        v.add(field, "the record's content is required");
        return None;
    };
    if !crate::domain::is_resource_type(&content.resource_type)
        || matches!(content.resource_type.as_str(), "Patient" | "Bundle")
    {
        v.add(
            format!("{field}.resource_type"),
            "must be a FHIR R4 resource type other than Patient and Bundle",
        );
    }
    if content.payload.is_empty() {
        v.add(format!("{field}.payload"), "the FHIR resource is required");
    }
    if content.author.chars().count() > 256 {
        v.add(format!("{field}.author"), "at most 256 characters");
    }
    let naming = match patient_naming(&content.payload) {
        Ok(naming) => naming,
        Err(refusal) => {
            v.add(format!("{field}.payload"), refusal);
            Default::default()
        }
    };
    Some(Content {
        resource_type: content.resource_type.clone(),
        payload: content.payload.clone(),
        data_classes: content.data_classes.clone(),
        effective_time: content
            .effective_time
            .or_else(|| effective_micros(&content.payload).map(timestamp_from_micros)),
        recorded_time: content.recorded_time,
        author: content.author.clone(),
        nhs_number: naming.nhs_number,
        insert_at: naming.insert_at,
    })
}

/// A patient named for a contribution: never by demographics.
pub(super) fn validate_contribution_reference(
    v: &mut Violations,
    field: &str,
    reference: Option<&api::PatientReference>,
) -> Option<Reference> {
    let given = reference.and_then(|r| r.reference.as_ref())?;
    if matches!(given, api::patient_reference::Reference::Demographics(_)) {
        v.add(
            format!("{field}.demographics"),
            "a contribution names its patient by patient_id, NHS number or identifier, never by a demographic match",
        );
        return None;
    }
    validate_reference(v, field, reference)
}

/// TREAT for staff and systems; PATRQT for (and only for) patient-facing tokens.
pub(super) fn validate_contribution_purpose(v: &mut Violations, caller: &Caller, purpose: &str) {
    validate_purpose(v, purpose);
    let patient_facing = super::read::is_patient_facing(caller);
    match (patient_facing, purpose) {
        (_, "") => {}
        (true, "PATRQT") | (false, "TREAT") => {}
        (true, _) => v.add(
            "purpose_of_use",
            "patient-facing tokens contribute with PATRQT",
        ),
        (false, _) => v.add(
            "purpose_of_use",
            "contributions are made for TREAT (direct care)",
        ),
    }
}

/// The fields of a record hosting validation error, renamed to this contract's paths.
pub(super) fn content_violations(status: &Status, field: &str) -> Option<Violations> {
    use tonic_types::StatusExt;
    if status.code() != Code::InvalidArgument {
        return None;
    }
    let details = status.get_error_details();
    let bad = details.bad_request()?;
    let found = bad
        .field_violations
        .iter()
        .map(|f| (f.field.clone(), f.description.clone()));
    Some(record_violations(found, field))
}

/// Record hosting's violations (field, description) of a record written for the request's
/// `field`: its `record.` paths renamed to the request's.
pub(super) fn record_violations(
    found: impl IntoIterator<Item = (String, String)>,
    field: &str,
) -> Violations {
    let mut v = Violations::new();
    for (path, description) in found {
        let path = match path.strip_prefix("record.") {
            Some(rest) => format!("{field}.{rest}"),
            None => path,
        };
        v.add(path, description);
    }
    v
}

/// Who a contribution is recorded as: the token's requester, with an organisation (a patient's
/// contributions are filed under the deployment's organisation for patient-entered data).
pub(super) struct Contributor {
    pub requester: common::Requester,
    pub organisation: String,
    pub source_system: String,
    pub patient_facing: bool,
}

impl AccessService {
    pub(super) fn contributor(&self, caller: &Caller) -> Result<Contributor, Error> {
        let patient_facing = super::read::is_patient_facing(caller);
        let organisation = if patient_facing {
            self.inner
                .config
                .patient_contributions_ods_code
                .clone()
                .ok_or(Error::PatientContributionsDisabled)?
        } else {
            caller.organisation_ods_code.clone()
        };
        if organisation.is_empty() {
            return Err(Error::OrganisationMissing);
        }
        Ok(Contributor {
            requester: caller.requester(),
            organisation,
            source_system: if caller.client_id.is_empty() {
                caller.user_id.clone()
            } else {
                caller.client_id.clone()
            },
            patient_facing,
        })
    }

    /// The scope a contribution needs: `permission` on `resource_type`, in the contexts the token
    /// may contribute in.
    pub(super) fn require_contribution_scope(
        &self,
        caller: &Caller,
        resource_type: &str,
        permission: char,
    ) -> Result<(), Error> {
        caller
            .require(caller_contexts(caller), resource_type, permission)
            .map(drop)
    }

    /// The patient a contribution is about: the reference given, the NHS number in the payload, or
    /// both when they agree.
    pub(super) async fn contribution_patient(
        &self,
        reference: Option<&Reference>,
        content: &Content,
        payload_field: &str,
    ) -> Result<Resolved, Error> {
        let by_reference = match reference {
            Some(reference) => Some(self.resolve(reference).await?),
            None => None,
        };
        let by_payload = match &content.nhs_number {
            Some(number) => Some(self.resolve(&Reference::Nhs(number.clone())).await?),
            None => None,
        };
        match (by_reference, by_payload) {
            (Some(named), Some(in_payload)) if named.id() != in_payload.id() => {
                Err(Error::invalid(
                    payload_field,
                    "the payload's subject names a different patient than `patient`",
                ))
            }
            (Some(named), _) => Ok(named),
            (None, Some(in_payload)) => Ok(in_payload),
            (None, None) => Err(Error::invalid(
                "patient",
                "name the patient, or name them in the payload's subject by NHS number",
            )),
        }
    }

    /// Asks consent whether `caller` may contribute to `patient_id`'s record for `purpose`: only
    /// the patient's own dissent refuses (see [`decision::patient_dissents`]).
    pub(super) async fn consent_to_contribute(
        &self,
        caller: &Caller,
        patient_id: &str,
        purpose: &str,
        legal_basis: i32,
        leaf: &mut api::AuditLeaf,
    ) -> Result<(), Error> {
        let decision = self
            .decide(caller, patient_id, purpose, legal_basis, "", None)
            .await?;
        let policy = decision::interpret(&decision, false);
        let refused = decision::patient_dissents(&decision);
        let outcome = if refused {
            api::DecisionOutcome::Deny
        } else {
            api::DecisionOutcome::Permit
        };
        leaf.decision = Some(api::DecisionSummary {
            outcome: outcome as i32,
            obligations: Vec::new(),
            reasons: policy.reasons.clone(),
        });
        if refused {
            return Err(Error::ConsentDenied {
                reason_codes: policy.reason_codes(),
                reason_texts: policy.reason_texts(),
            });
        }
        Ok(())
    }

    /// The payload as stored: with the patient reference inserted where it names them by NHS number.
    pub(super) fn stored_payload(content: &Content, patient_id: &str) -> Vec<u8> {
        if content.insert_at.is_empty() {
            content.payload.clone()
        } else {
            with_patient_reference(&content.payload, &content.insert_at, patient_id)
        }
    }

    /// The record hosting record a contribution writes.
    pub(super) fn new_record(
        contributor: &Contributor,
        patient_id: &str,
        content: &Content,
    ) -> records::Record {
        records::Record {
            patient_id: patient_id.to_owned(),
            resource_type: content.resource_type.clone(),
            content_type: FHIR_JSON.into(),
            payload: Self::stored_payload(content, patient_id),
            data_classes: content.data_classes.clone(),
            authoring_organisation_ods_code: contributor.organisation.clone(),
            author: content.author.clone(),
            source_system: contributor.source_system.clone(),
            effective_time: content.effective_time,
            recorded_time: content.recorded_time,
            ..Default::default()
        }
    }

    pub(super) async fn create_record(
        &self,
        request: Request<api::CreateRecordRequest>,
    ) -> Result<api::CreateRecordResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let request_id = v.required_id("request_id", &req.request_id);
        let reference = validate_contribution_reference(&mut v, "patient", req.patient.as_ref());
        validate_contribution_purpose(&mut v, &caller, &req.purpose_of_use);
        super::read::validate_legal_basis(&mut v, req.legal_basis, &req.purpose_of_use);
        let content = validate_content(&mut v, "content", req.content.as_ref());
        let (Some(request_id), Some(content)) = (request_id, content.filter(|_| v.is_empty()))
        else {
            return Err(v.into());
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::CreateRecord);
        leaf.purpose_of_use = req.purpose_of_use.clone();
        leaf.legal_basis = req.legal_basis;
        leaf.request_id = request_id.to_string();
        leaf.resource_types = vec![content.resource_type.clone()];
        leaf.reference_kind = reference
            .as_ref()
            .map_or(api::PatientReferenceKind::NhsNumber, Reference::kind)
            as i32;
        self.audited(leaf, async |leaf| {
            self.create_body(&caller, request_id, reference, content, &req, leaf)
                .await
        })
        .await
    }

    async fn create_body(
        &self,
        caller: &Caller,
        request_id: Id,
        reference: Option<Reference>,
        content: Content,
        req: &api::CreateRecordRequest,
        leaf: &mut api::AuditLeaf,
    ) -> Result<api::CreateRecordResponse, Error> {
        self.require_contribution_scope(caller, &content.resource_type, 'c')?;
        let contributor = self.contributor(caller)?;
        let patient = self
            .contribution_patient(reference.as_ref(), &content, "content.payload")
            .await?;
        leaf.patient_id = patient.id().to_owned();
        leaf.resolved_from_merged_patient_id = patient.merged_from.clone();
        if contributor.patient_facing {
            self.check_patient_context(caller, &patient).await?;
        }
        self.consent_to_contribute(
            caller,
            patient.id(),
            &req.purpose_of_use,
            req.legal_basis,
            leaf,
        )
        .await?;
        let write = records::CreateRecordRequest {
            request_id: request_id.into_string(),
            record: Some(Self::new_record(&contributor, patient.id(), &content)),
            requester: Some(contributor.requester.clone()),
        };
        let created = self
            .inner
            .upstream
            .create_record(write)
            .await
            .map_err(|f| records_write_error(&f.status))?
            .record
            .ok_or_else(|| Error::Internal("record hosting answered without the record".into()))?;
        let record = disclosed(created, Some(contributor.requester));
        leaf.returned_records = vec![record_ref(&record)];
        leaf.returned_count = 1;
        Ok(api::CreateRecordResponse {
            patient_id: patient.id().to_owned(),
            resolved_from_merged_patient_id: patient.merged_from.clone(),
            record: Some(record),
            audit_entry_id: String::new(),
            audit_index: 0,
        })
    }

    /// A version of a record (0: the latest), or RECORD_NOT_FOUND.
    pub(super) async fn record_version(
        &self,
        record_id: &str,
        version: i64,
    ) -> Result<records::Record, Error> {
        let answer = self
            .inner
            .upstream
            .get_record(records::GetRecordRequest {
                record_id: record_id.to_owned(),
                version,
                view: records::RecordView::Full as i32,
            })
            .await;
        match answer {
            Ok(response) => response.record.ok_or_else(|| {
                Error::Internal("record hosting answered without the record".into())
            }),
            Err(failed) if failed.status.code() == Code::NotFound => {
                Err(Error::RecordNotFound(record_id.to_owned()))
            }
            Err(failed) => Err(failed.into()),
        }
    }
}

/// The error of a failed write to record hosting: its validation and state errors mean something
/// to the caller; anything else is record hosting being unavailable.
pub(super) fn records_write_error(status: &Status) -> Error {
    use tonic_types::StatusExt;
    if let Some(v) = content_violations(status, "content") {
        return Error::Invalid(v);
    }
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    match (status.code(), reason.as_str()) {
        (Code::FailedPrecondition, "REQUEST_ID_REUSED") => Error::RequestIdReused,
        (Code::Aborted, _) => Error::EtagMismatch,
        (Code::FailedPrecondition, _) => Error::RecordRetracted(String::new()),
        (Code::NotFound, _) => Error::RecordNotFound(String::new()),
        _ => unavailable(Dependency::Records, status),
    }
}
