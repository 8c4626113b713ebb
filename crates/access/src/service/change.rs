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
struct ChangeFields<'a> {
    request_id: &'a str,
    record_id: &'a str,
    etag: &'a str,
    expected_version: i64,
    patient: Option<&'a api::PatientReference>,
    purpose: &'a str,
    legal_basis: i32,
}

impl AccessService {
    /// The checks UpdateRecord and RetractRecord share, and the audit leaf of the call.
    fn parse_change(
        &self,
        caller: &Caller,
        trace: &str,
        action: api::AuditAction,
        fields: &ChangeFields<'_>,
        v: &mut Violations,
    ) -> (Option<(Id, Id)>, Option<Reference>, api::AuditLeaf) {
        let request_id = v.required_id("request_id", fields.request_id);
        let record_id = v.required_id("record_id", fields.record_id);
        check_precondition(v, fields.etag, fields.expected_version);
        let reference = validate_contribution_reference(v, "patient", fields.patient);
        validate_contribution_purpose(v, caller, fields.purpose);
        validate_legal_basis(v, fields.legal_basis, fields.purpose);
        let mut leaf = self.leaf(caller, trace, action);
        leaf.purpose_of_use = fields.purpose.to_owned();
        leaf.legal_basis = fields.legal_basis;
        leaf.request_id = request_id.as_ref().map(Id::to_string).unwrap_or_default();
        (request_id.zip(record_id), reference, leaf)
    }

    /// The change a request asks for, identified and guarded.
    fn change_of(fields: &ChangeFields<'_>, ids: (Id, Id), fingerprint: Vec<u8>) -> Change {
        Change {
            request_id: ids.0,
            record_id: ids.1,
            etag: fields.etag.to_owned(),
            expected_version: fields.expected_version,
            purpose: fields.purpose.to_owned(),
            legal_basis: fields.legal_basis,
            fingerprint,
        }
    }

    pub(super) async fn update_record(
        &self,
        request: Request<api::UpdateRecordRequest>,
    ) -> Result<api::UpdateRecordResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let fields = ChangeFields {
            request_id: &req.request_id,
            record_id: &req.record_id,
            etag: &req.etag,
            expected_version: req.expected_version,
            patient: req.patient.as_ref(),
            purpose: &req.purpose_of_use,
            legal_basis: req.legal_basis,
        };
        let mut v = Violations::new();
        let (ids, reference, mut leaf) = self.parse_change(
            &caller,
            &trace,
            api::AuditAction::UpdateRecord,
            &fields,
            &mut v,
        );
        let content = validate_content(&mut v, "content", req.content.as_ref());
        let (Some(ids), Some(content)) = (ids, content.filter(|_| v.is_empty())) else {
            return Err(v.into());
        };
        let print = fingerprint(&[
            b"update",
            ids.1.as_str().as_bytes(),
            &req.content
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            caller.user_id.as_bytes(),
            caller.client_id.as_bytes(),
        ]);
        let change = Self::change_of(&fields, ids, print);
        let result = self
            .change(
                &caller,
                &change,
                reference.as_ref(),
                Edit::Update(&content),
                &mut leaf,
            )
            .await
            .map(|(record, patient_id)| api::UpdateRecordResponse {
                record: Some(record),
                patient_id,
                audit_entry_id: String::new(),
                audit_index: 0,
            });
        self.finish(leaf, result, false).await
    }

    pub(super) async fn retract_record(
        &self,
        request: Request<api::RetractRecordRequest>,
    ) -> Result<api::RetractRecordResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let fields = ChangeFields {
            request_id: &req.request_id,
            record_id: &req.record_id,
            etag: &req.etag,
            expected_version: req.expected_version,
            patient: req.patient.as_ref(),
            purpose: &req.purpose_of_use,
            legal_basis: req.legal_basis,
        };
        let mut v = Violations::new();
        let (ids, reference, mut leaf) = self.parse_change(
            &caller,
            &trace,
            api::AuditAction::RetractRecord,
            &fields,
            &mut v,
        );
        let reason = req.reason.trim();
        if reason.is_empty() {
            v.add("reason", "is required: why the record is entered in error");
        } else if reason.chars().count() > MAX_REASON_CHARS {
            v.add("reason", format!("at most {MAX_REASON_CHARS} characters"));
        }
        let Some(ids) = ids.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let print = fingerprint(&[
            b"retract",
            ids.1.as_str().as_bytes(),
            reason.as_bytes(),
            caller.user_id.as_bytes(),
            caller.client_id.as_bytes(),
        ]);
        let change = Self::change_of(&fields, ids, print);
        let result = self
            .change(
                &caller,
                &change,
                reference.as_ref(),
                Edit::Retract(reason),
                &mut leaf,
            )
            .await
            .map(|(record, patient_id)| api::RetractRecordResponse {
                record: Some(record),
                patient_id,
                audit_entry_id: String::new(),
                audit_index: 0,
            });
        self.finish(leaf, result, false).await
    }

    /// An update or retraction of an existing record, idempotent by request_id.
    async fn change(
        &self,
        caller: &Caller,
        change: &Change,
        reference: Option<&Reference>,
        edit: Edit<'_>,
        leaf: &mut api::AuditLeaf,
    ) -> Result<(api::DisclosedRecord, String), Error> {
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
                return Ok((record, patient_id));
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
            return Ok((record, owner.id().to_owned()));
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
                let mut record = Self::new_record(&contributor, &current.patient_id, content);
                record.record_id = current.record_id.clone();
                up.update_record(records::UpdateRecordRequest {
                    record: Some(record),
                    etag: current.etag.clone(),
                    update_mask: None,
                    requester: Some(requester.clone()),
                })
                .await
                .map_err(|s| records_write_error(&s))?
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
                .map_err(|s| records_write_error(&s))?
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
        Ok((record, owner.id().to_owned()))
    }
}

/// What a change does to the record.
enum Edit<'a> {
    Update(&'a Content),
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
