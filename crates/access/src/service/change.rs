//! Changes to a contributed record: UpdateRecord and RetractRecord. Only the contributing
//! organisation may change a record; the version guards against overwriting a change not seen; a
//! request_id makes a retry return the first result, through the contributions table, including
//! after an answer was lost once the write was made.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Request;

use super::AccessService;
use super::audited::NamesAuditEntry;
use super::contribute::{
    Content, records_write_error, validate_content, validate_contribution_purpose,
    validate_contribution_reference,
};
use super::disclose::{disclosed, record_ref};
use super::parse::Reference;
use super::read::validate_legal_basis;
use crate::domain::auth::Caller;
use crate::error::Error;

/// The longest retraction reason.
const MAX_REASON_CHARS: usize = 1000;

/// A fingerprint of what an update or retraction asks for, to tell a retry from a reuse.
fn fingerprint(parts: &[&[u8]]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().to_vec()
}

/// The fields UpdateRecord and RetractRecord share.
pub(super) struct ChangeFields<'a> {
    request_id: &'a str,
    record_id: &'a str,
    etag: &'a str,
    expected_version: i64,
    patient: Option<&'a api::PatientReference>,
    purpose: &'a str,
    legal_basis: i32,
}

impl ChangeFields<'_> {
    /// The change the request asks for, identified and guarded; `kind` and `written` (what it
    /// writes) are fingerprinted with the record and the caller.
    fn guarded_change(
        &self,
        caller: &Caller,
        ids: (Id, Id),
        kind: &[u8],
        written: &[u8],
    ) -> Change {
        let fingerprint = fingerprint(&[
            kind,
            ids.1.as_str().as_bytes(),
            written,
            caller.user_id.as_bytes(),
            caller.client_id.as_bytes(),
        ]);
        Change {
            request_id: ids.0,
            record_id: ids.1,
            etag: self.etag.to_owned(),
            expected_version: self.expected_version,
            purpose: self.purpose.to_owned(),
            legal_basis: self.legal_basis,
            fingerprint,
        }
    }
}

/// UpdateRecord's and RetractRecord's requests: the fields they share, and the edit each asks for.
pub(super) trait ChangeRequest {
    const ACTION: api::AuditAction;
    /// What the fingerprint calls the change.
    const KIND: &'static [u8];
    type Response: From<Changed> + NamesAuditEntry;

    fn fields(&self) -> ChangeFields<'_>;

    /// The edit, checked into `v`, and the bytes of it that are fingerprinted.
    fn edit(&self, v: &mut Violations) -> Option<(Edit<'_>, Vec<u8>)>;
}

/// A changed record and its patient, as either response carries them.
pub(super) struct Changed {
    record: api::DisclosedRecord,
    patient_id: String,
}

/// Both change requests: what they name alike (the shared fields, the response), their audit
/// action, what the fingerprint calls them, and the check of their own edit.
macro_rules! change_requests {
    ($($request:ty => $response:ty, $action:ident, $kind:literal, $edit:ident;)*) => {
        $(impl ChangeRequest for $request {
            const ACTION: api::AuditAction = api::AuditAction::$action;
            const KIND: &'static [u8] = $kind;
            type Response = $response;

            fn fields(&self) -> ChangeFields<'_> {
                ChangeFields {
                    request_id: &self.request_id,
                    record_id: &self.record_id,
                    etag: &self.etag,
                    expected_version: self.expected_version,
                    patient: self.patient.as_ref(),
                    purpose: &self.purpose_of_use,
                    legal_basis: self.legal_basis,
                }
            }

            fn edit(&self, v: &mut Violations) -> Option<(Edit<'_>, Vec<u8>)> {
                $edit(self, v)
            }
        }

        impl From<Changed> for $response {
            fn from(changed: Changed) -> Self {
                Self {
                    record: Some(changed.record),
                    patient_id: changed.patient_id,
                    audit_entry_id: String::new(),
                    audit_index: 0,
                }
            }
        })*
    };
}

change_requests! {
    api::UpdateRecordRequest => api::UpdateRecordResponse, UpdateRecord, b"update", update_edit;
    api::RetractRecordRequest => api::RetractRecordResponse, RetractRecord, b"retract", retract_edit;
}

/// UpdateRecord's edit: the new content (its encoding is fingerprinted).
fn update_edit<'a>(
    request: &'a api::UpdateRecordRequest,
    v: &mut Violations,
) -> Option<(Edit<'a>, Vec<u8>)> {
    let content = validate_content(v, "content", request.content.as_ref())?;
    let written = request
        .content
        .as_ref()
        .map(Message::encode_to_vec)
        .unwrap_or_default();
    Some((Edit::Update(content), written))
}

/// RetractRecord's edit: the reason the record is entered in error.
fn retract_edit<'a>(
    request: &'a api::RetractRecordRequest,
    v: &mut Violations,
) -> Option<(Edit<'a>, Vec<u8>)> {
    let reason = request.reason.trim();
    if reason.is_empty() {
        v.add("reason", "is required: why the record is entered in error");
    } else if reason.chars().count() > MAX_REASON_CHARS {
        v.add("reason", format!("at most {MAX_REASON_CHARS} characters"));
    }
    Some((Edit::Retract(reason), reason.as_bytes().to_vec()))
}

impl AccessService {
    /// UpdateRecord or RetractRecord: the checks both share, then the request's own; the change,
    /// audited.
    pub(super) async fn change_record<R: ChangeRequest>(
        &self,
        request: Request<R>,
    ) -> Result<R::Response, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let fields = req.fields();
        let mut v = Violations::new();
        let request_id = v.required_id("request_id", fields.request_id);
        let record_id = v.required_id("record_id", fields.record_id);
        check_precondition(&mut v, fields.etag, fields.expected_version);
        let reference = validate_contribution_reference(&mut v, "patient", fields.patient);
        validate_contribution_purpose(&mut v, &caller, fields.purpose);
        validate_legal_basis(&mut v, fields.legal_basis, fields.purpose);
        let mut leaf = self.leaf(&caller, &trace, R::ACTION);
        leaf.purpose_of_use = fields.purpose.to_owned();
        leaf.legal_basis = fields.legal_basis;
        leaf.request_id = request_id.as_ref().map(Id::to_string).unwrap_or_default();
        let edit = req.edit(&mut v);
        let (Some(ids), Some((edit, written))) =
            (request_id.zip(record_id), edit.filter(|_| v.is_empty()))
        else {
            return Err(v.into());
        };
        let change = fields.guarded_change(&caller, ids, R::KIND, &written);
        self.audited(leaf, async |leaf| {
            let changed = self.make_change(&caller, &change, reference.as_ref(), edit, leaf);
            changed.await.map(R::Response::from)
        })
        .await
    }

    /// An update or retraction of an existing record, idempotent by request_id.
    async fn make_change(
        &self,
        caller: &Caller,
        change: &Change,
        reference: Option<&Reference>,
        edit: Edit<'_>,
        leaf: &mut api::AuditLeaf,
    ) -> Result<Changed, Error> {
        let store = &self.inner.store;
        let up = &self.inner.upstream;
        let prior = store.contribution(change.request_id.as_str()).await?;
        if let Some(prior) = &prior {
            if prior.fingerprint != change.fingerprint {
                return Err(Error::RequestIdReused);
            }
            if prior.version > 0 {
                // A retry of a change already made: its result, written once.
                let written = self
                    .record_version(prior.record_id.as_str(), prior.version)
                    .await?;
                let patient_id = written.patient_id.clone();
                let record = disclosed(written, Some(caller.requester()));
                leaf.patient_id = patient_id.clone();
                leaf.returned_records = vec![record_ref(&record)];
                leaf.returned_count = 1;
                return Ok(Changed { record, patient_id });
            }
        }
        let current = self.record_version(change.record_id.as_str(), 0).await?;
        leaf.patient_id = current.patient_id.clone();
        leaf.resource_types = vec![current.resource_type.clone()];
        self.require_contribution_scope(caller, &current.resource_type, 'u')?;
        let contributor = self.contributor(caller)?;
        if current.authoring_organisation_ods_code != contributor.organisation {
            return Err(Error::RecordNotOwned);
        }
        let owner = self
            .resolve(&Reference::PatientId(current.patient_id.clone()))
            .await?;
        if contributor.patient_facing {
            self.check_patient_context(caller, &owner).await?;
        }
        if let Some(reference) = reference {
            let named = self.resolve(reference).await?;
            if named.id() != owner.id() {
                return Err(Error::invalid(
                    "patient",
                    "the record belongs to another patient",
                ));
            }
        }
        if let Edit::Update(content) = &edit {
            if content.resource_type != current.resource_type {
                return Err(Error::invalid(
                    "content.resource_type",
                    "a record's resource type cannot change",
                ));
            }
            if let Some(number) = &content.nhs_number {
                let named = self.resolve(&Reference::Nhs(number.clone())).await?;
                if named.id() != owner.id() {
                    return Err(Error::invalid(
                        "content.payload",
                        "the payload's subject names a different patient than the record's",
                    ));
                }
            }
        }
        let intended = match &edit {
            Edit::Update(content) => Self::stored_payload(content, &current.patient_id),
            Edit::Retract(_) => current.payload.clone(),
        };
        if let Some(prior) = &prior
            && current.version == prior.base_version + 1
            && already_applied(&current, &edit, &intended)
        {
            // The earlier attempt wrote the change but was not answered: finish recording it.
            store
                .complete_contribution(change.request_id.as_str(), current.version)
                .await?;
            let record = disclosed(current, Some(caller.requester()));
            leaf.returned_records = vec![record_ref(&record)];
            leaf.returned_count = 1;
            return Ok(Changed {
                record,
                patient_id: owner.id().to_owned(),
            });
        }
        if current.status == records::RecordStatus::EnteredInError as i32 {
            return Err(Error::RecordRetracted(current.record_id.clone()));
        }
        let stale = if change.etag.is_empty() {
            change.expected_version != current.version
        } else {
            change.etag != current.etag
        };
        if stale {
            return Err(Error::EtagMismatch);
        }
        self.consent_to_contribute(
            caller,
            owner.id(),
            &change.purpose,
            change.legal_basis,
            leaf,
        )
        .await?;
        if prior.is_none() {
            store
                .begin_contribution(
                    change.request_id.as_str(),
                    &change.fingerprint,
                    change.record_id.as_str(),
                    current.version,
                )
                .await?;
        }
        let requester = contributor.requester.clone();
        let written = match edit {
            Edit::Update(content) => {
                let mut record = Self::new_record(&contributor, &current.patient_id, &content);
                record.record_id = current.record_id.clone();
                up.update_record(records::UpdateRecordRequest {
                    record: Some(record),
                    etag: current.etag.clone(),
                    update_mask: None,
                    requester: Some(requester.clone()),
                })
                .await
                .map_err(|f| records_write_error(&f.status))?
                .record
            }
            Edit::Retract(reason) => {
                up.retract_record(records::RetractRecordRequest {
                    record_id: current.record_id.clone(),
                    etag: current.etag.clone(),
                    reason: reason.to_owned(),
                    requester: Some(requester.clone()),
                })
                .await
                .map_err(|f| records_write_error(&f.status))?
                .record
            }
        }
        .ok_or_else(|| Error::Internal("record hosting answered without the record".into()))?;
        store
            .complete_contribution(change.request_id.as_str(), written.version)
            .await?;
        let record = disclosed(written, Some(requester));
        leaf.returned_records = vec![record_ref(&record)];
        leaf.returned_count = 1;
        Ok(Changed {
            record,
            patient_id: owner.id().to_owned(),
        })
    }
}

/// What a change does to the record.
pub(super) enum Edit<'a> {
    Update(Content),
    Retract(&'a str),
}

/// Whether `current` (the version after the one a pending change was based on) is that change.
fn already_applied(current: &records::Record, edit: &Edit<'_>, intended_payload: &[u8]) -> bool {
    match edit {
        Edit::Update(_) => current.content_hash == hex::encode(Sha256::digest(intended_payload)),
        Edit::Retract(reason) => {
            current.status == records::RecordStatus::EnteredInError as i32
                && current.retraction_reason == *reason
        }
    }
}

/// Exactly one of an etag and an expected version.
fn check_precondition(v: &mut Violations, etag: &str, expected_version: i64) {
    match (etag.is_empty(), expected_version) {
        (true, 0) => v.add(
            "etag",
            "the latest version's etag (or expected_version) is required",
        ),
        (false, n) if n != 0 => v.add(
            "expected_version",
            "give etag or expected_version, not both",
        ),
        (_, n) if n < 0 => v.add("expected_version", "must be a version number from 1"),
        _ => {}
    }
}

/// A write to an existing record: what identifies it and guards it.
struct Change {
    request_id: Id,
    record_id: Id,
    etag: String,
    expected_version: i64,
    purpose: String,
    legal_basis: i32,
    fingerprint: Vec<u8>,
}
