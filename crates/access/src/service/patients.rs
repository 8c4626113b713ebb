//! Resolving patient references through identity (following merges), the flow of reads made at
//! the patient's request, FindPatient and the patient's disclosure log.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::identity::v1 as identity;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::Position;
use prost::Message;
use tonic::{Code, Request, Status};

use super::audited::NamesAuditEntry;
use super::parse::{
    NHS_NUMBER_SYSTEM, Reference, page_query, resume, validate_period, validate_purpose,
    validate_reference,
};
use super::{AccessService, restricted};
use crate::domain::auth::{Caller, Context};
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

/// How many merges are followed before giving up (a cycle or a corrupt index).
const MAX_MERGE_HOPS: usize = 32;
/// How many patients merged into one are looked up for disclosure logs and reads.
const MAX_MERGED: usize = 64;

/// A patient resolved to the current (surviving) registration.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub patient: identity::Patient,
    /// The merged id the reference named, when resolution followed a merge.
    pub merged_from: String,
}

impl Resolved {
    pub fn id(&self) -> &str {
        &self.patient.patient_id
    }
}

fn identity_error(status: &Status, reference: &Reference) -> Error {
    match status.code() {
        Code::NotFound => Error::PatientNotFound {
            name: reference.name(),
        },
        Code::FailedPrecondition if reference_is_identifier(reference) => {
            Error::PatientMatchAmbiguous
        }
        _ => unavailable(Dependency::Identity, status),
    }
}

/// An NHS number or local identifier: identity answers FAILED_PRECONDITION when another
/// supplier's index holds it for more than one patient.
fn reference_is_identifier(reference: &Reference) -> bool {
    matches!(reference, Reference::Nhs(_) | Reference::Identifier(..))
}

/// Whether `caller` acts as a patient for themselves (a patient-facing token without `user/`
/// scopes); it must hold `<resource_type>.<permission>` in that context (else as a user).
pub(super) fn acting_as_patient(
    caller: &Caller,
    resource_type: &str,
    permission: char,
) -> Result<bool, Error> {
    let patient_facing = !caller.has_context(Context::User) && caller.has_context(Context::Patient);
    let contexts: &[Context] = if patient_facing {
        &[Context::Patient]
    } else {
        &[Context::User]
    };
    caller.require(contexts, resource_type, permission)?;
    Ok(patient_facing)
}

impl AccessService {
    /// The leaf of a call made at the patient's request (PATRQT): on their consent choices or
    /// their disclosures.
    pub(super) fn patient_request_leaf(
        &self,
        caller: &Caller,
        trace: &str,
        action: api::AuditAction,
        reference: Option<&Reference>,
    ) -> api::AuditLeaf {
        let mut leaf = self.leaf(caller, trace, action);
        leaf.purpose_of_use = "PATRQT".into();
        if let Some(reference) = reference {
            leaf.reference_kind = reference.kind() as i32;
        }
        leaf
    }

    /// A read made at the patient's request about them (their consent choices, their
    /// disclosures): the caller needs `<resource_type>.r`, as the patient or as staff; the patient
    /// is resolved, `read` runs for them, and the call is audited.
    pub(super) async fn patient_request<T: NamesAuditEntry>(
        &self,
        caller: &Caller,
        trace: &str,
        action: api::AuditAction,
        reference: &Reference,
        resource_type: &str,
        read: impl AsyncFnOnce(&Resolved, &mut api::AuditLeaf) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let leaf = self.patient_request_leaf(caller, trace, action, Some(reference));
        self.audited(leaf, async |leaf| {
            let patient_facing = acting_as_patient(caller, resource_type, 'r')?;
            let resolved = self
                .resolve_for(caller, patient_facing, reference, leaf)
                .await?;
            read(&resolved, leaf).await
        })
        .await
    }

    /// Resolves the patient onto `leaf` and, for a patient-facing token, checks it acts for them.
    pub(super) async fn resolve_for(
        &self,
        caller: &Caller,
        patient_facing: bool,
        reference: &Reference,
        leaf: &mut api::AuditLeaf,
    ) -> Result<Resolved, Error> {
        let resolved = self.resolve(reference).await?;
        leaf.patient_id = resolved.id().to_owned();
        leaf.resolved_from_merged_patient_id = resolved.merged_from.clone();
        if patient_facing {
            self.check_patient_context(caller, &resolved).await?;
        }
        Ok(resolved)
    }

    async fn get_patient(&self, patient_id: &str) -> Result<Option<identity::Patient>, Error> {
        let up = &self.inner.upstream;
        let request = identity::GetPatientRequest {
            patient_id: patient_id.to_owned(),
        };
        let result = up.get_patient(request).await;
        match result {
            Ok(response) => Ok(response.patient),
            Err(failed) if failed.status.code() == Code::NotFound => Ok(None),
            Err(failed) => Err(failed.into()),
        }
    }

    /// Follows merges from `patient` to the active survivor.
    async fn follow_merges(
        &self,
        mut patient: identity::Patient,
        reference: &Reference,
    ) -> Result<Resolved, Error> {
        let mut merged_from = String::new();
        for _ in 0..MAX_MERGE_HOPS {
            if patient.state != identity::PatientState::Merged as i32 {
                restricted::resolved(&patient);
                return Ok(Resolved {
                    patient,
                    merged_from,
                });
            }
            if merged_from.is_empty() {
                merged_from = patient.patient_id.clone();
            }
            let next = patient.merged_into_patient_id.clone();
            patient = self
                .get_patient(&next)
                .await?
                .ok_or_else(|| Error::PatientNotFound {
                    name: reference.name(),
                })?;
        }
        Err(Error::Internal("merge chain too long or cyclic".into()))
    }

    /// Resolves a reference to the surviving patient through identity (following merges).
    pub(super) async fn resolve_upstream(&self, reference: &Reference) -> Result<Resolved, Error> {
        let up = &self.inner.upstream;
        match reference {
            Reference::PatientId(id) => {
                let patient = self
                    .get_patient(id)
                    .await?
                    .ok_or_else(|| Error::PatientNotFound { name: id.clone() })?;
                self.follow_merges(patient, reference).await
            }
            Reference::Nhs(n) => {
                self.resolve_identifier(NHS_NUMBER_SYSTEM, n, reference)
                    .await
            }
            Reference::Identifier(system, value) => {
                self.resolve_identifier(system, value, reference).await
            }
            Reference::Demographics(d) => {
                let probe = identity::Patient {
                    names: vec![common::HumanName {
                        family: d.family.clone(),
                        given: d.given.split_whitespace().map(str::to_owned).collect(),
                        ..Default::default()
                    }],
                    birth_date: d.birth_date,
                    gender: d.gender,
                    addresses: if d.postal_code.trim().is_empty() {
                        Vec::new()
                    } else {
                        vec![common::Address {
                            postal_code: d.postal_code.clone(),
                            ..Default::default()
                        }]
                    },
                    ..Default::default()
                };
                let request = identity::MatchPatientsRequest {
                    probe: Some(identity::match_patients_request::Probe::Demographics(probe)),
                    max_candidates: 10,
                    include_non_matches: false,
                };
                let response = up.match_patients(request).await?;
                // A search naming a postcode never finds a restricted patient.
                let postcode = !d.postal_code.trim().is_empty();
                let at_least_possible: Vec<&identity::MatchCandidate> = response
                    .candidates
                    .iter()
                    .filter(|c| {
                        c.classification == identity::MatchClassification::Match as i32
                            || c.classification == identity::MatchClassification::Possible as i32
                    })
                    .filter(|c| match &c.patient {
                        Some(p) if postcode && restricted::is_restricted(p) => {
                            restricted::hidden(&p.patient_id);
                            false
                        }
                        _ => true,
                    })
                    .collect();
                match at_least_possible.as_slice() {
                    [] => Err(Error::PatientNotFound {
                        name: String::new(),
                    }),
                    [only]
                        if only.classification == identity::MatchClassification::Match as i32 =>
                    {
                        let patient = only.patient.clone().ok_or_else(|| {
                            Error::Internal("match candidate without patient".into())
                        })?;
                        let resolved = self.follow_merges(patient, reference).await?;
                        if postcode && restricted::is_restricted(&resolved.patient) {
                            restricted::hidden(resolved.id());
                            return Err(Error::PatientNotFound {
                                name: String::new(),
                            });
                        }
                        Ok(resolved)
                    }
                    _ => Err(Error::PatientMatchAmbiguous),
                }
            }
        }
    }

    async fn resolve_identifier(
        &self,
        system: &str,
        value: &str,
        reference: &Reference,
    ) -> Result<Resolved, Error> {
        let up = &self.inner.upstream;
        let identifier = common::Identifier {
            system: system.to_owned(),
            value: value.to_owned(),
        };
        let request = identity::ResolveIdentifierRequest {
            identifier: Some(identifier),
        };
        let response = up
            .resolve_identifier(request)
            .await
            .map_err(|f| identity_error(&f.status, reference))?;
        let patient = match response.patient {
            Some(p) => p,
            None => self
                .get_patient(&response.patient_id)
                .await?
                .ok_or_else(|| Error::PatientNotFound {
                    name: reference.name(),
                })?,
        };
        let mut resolved = self.follow_merges(patient, reference).await?;
        if response.followed_merge && resolved.merged_from.is_empty() {
            resolved.merged_from = response
                .merged_patient_ids
                .first()
                .cloned()
                .unwrap_or_default();
        }
        Ok(resolved)
    }

    /// The survivor's id and every patient id merged into it (transitively), survivor first.
    pub(super) async fn patient_ids(
        &self,
        survivor: &identity::Patient,
    ) -> Result<Vec<String>, Error> {
        let mut ids = vec![survivor.patient_id.clone()];
        let mut queue: Vec<String> = survivor.merged_from_patient_ids.clone();
        while let Some(id) = queue.pop() {
            if ids.contains(&id) || ids.len() >= MAX_MERGED {
                continue;
            }
            ids.push(id.clone());
            if let Some(merged) = self.get_patient(&id).await? {
                queue.extend(merged.merged_from_patient_ids);
            }
        }
        Ok(ids)
    }

    /// For a patient-facing token, checks the token's patient is the resolved patient.
    pub(super) async fn check_patient_context(
        &self,
        caller: &Caller,
        resolved: &Resolved,
    ) -> Result<(), Error> {
        if caller.patient.is_empty() {
            return Err(Error::PatientContextMismatch);
        }
        if caller.patient == resolved.id() {
            restricted::own_record();
            return Ok(());
        }
        let ids = self.patient_ids(&resolved.patient).await?;
        if ids.contains(&caller.patient) {
            restricted::own_record();
            Ok(())
        } else {
            Err(Error::PatientContextMismatch)
        }
    }

    pub(super) async fn find(
        &self,
        request: Request<api::FindPatientRequest>,
    ) -> Result<api::FindPatientResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        validate_purpose(&mut v, &req.purpose_of_use);
        let Some(reference) = reference.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::FindPatient);
        leaf.purpose_of_use = req.purpose_of_use.clone();
        leaf.reference_kind = reference.kind() as i32;
        self.audited(leaf, async |leaf| {
            caller.require(&[Context::User, Context::System], "Patient", 'r')?;
            let resolved = self.resolve(&reference).await?;
            leaf.patient_id = resolved.id().to_owned();
            leaf.resolved_from_merged_patient_id = resolved.merged_from.clone();
            leaf.returned_count = 1;
            let p = &resolved.patient;
            Ok(api::FindPatientResponse {
                patient: Some(api::PatientSummary {
                    patient_id: p.patient_id.clone(),
                    nhs_number: p.nhs_number.clone(),
                    names: p.names.clone(),
                    birth_date: p.birth_date,
                    gender: p.gender,
                }),
                restricted: restricted::is_restricted(p),
                resolved_from_merged_patient_id: resolved.merged_from.clone(),
                ..Default::default()
            })
        })
        .await
    }

    pub(super) async fn disclosures(
        &self,
        request: Request<api::ListDisclosuresRequest>,
    ) -> Result<api::ListDisclosuresResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        let (start, end) = validate_period(&mut v, "period", req.period.as_ref());
        let limit = v.page_size(req.page_size);
        let query = page_query("disclosures", &caller, &req);
        let tokens = &self.inner.config.page_tokens;
        let before =
            resume(tokens, &query, &req.page_token, Position::read_int)?.unwrap_or(i64::MAX);
        let Some(reference) = reference.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let action = api::AuditAction::ListDisclosures;
        self.patient_request(
            &caller,
            &trace,
            action,
            &reference,
            "AuditEvent",
            async |resolved, leaf| {
                let ids = self.patient_ids(&resolved.patient).await?;
                let actions = [
                    api::AuditAction::FindPatient as i32,
                    api::AuditAction::Read as i32,
                    api::AuditAction::BreakGlassRead as i32,
                    api::AuditAction::ListDisclosures as i32,
                    api::AuditAction::CreateRecord as i32,
                    api::AuditAction::UpdateRecord as i32,
                    api::AuditAction::RetractRecord as i32,
                    api::AuditAction::ImportRecords as i32,
                    api::AuditAction::FollowRecordChanges as i32,
                ];
                let rows = self
                    .inner
                    .store
                    .patient_entries(&ids, &actions, before, start, end, limit.fetch_limit())
                    .await?;
                let more = rows.len() > limit.get();
                let mut disclosures = Vec::new();
                let mut last = before;
                for row in rows.into_iter().take(limit.get()) {
                    last = row.index;
                    let entry = api::AuditLeaf::decode(row.leaf_data.as_slice()).map_err(|_| {
                        Error::Internal(format!("audit entry {} does not parse", row.index))
                    })?;
                    // An entry about several patients counts only this patient's records.
                    let named = entry.patients.iter().find(|p| ids.contains(&p.patient_id));
                    let (patient_id, returned_count) = match named {
                        Some(named) => (named.patient_id.clone(), named.record_count),
                        None => (entry.patient_id.clone(), entry.returned_count),
                    };
                    disclosures.push(api::Disclosure {
                        audit_entry_id: entry.entry_id,
                        audit_index: row.index,
                        time: entry.time,
                        requester: entry.requester,
                        client_id: entry.client_id,
                        action: entry.action,
                        purpose_of_use: entry.purpose_of_use,
                        outcome: entry.outcome,
                        returned_count,
                        withheld_count: entry.withheld_count,
                        break_glass_reason: entry.break_glass_reason,
                        patient_id,
                    });
                }
                leaf.returned_count = disclosures.len() as i64;
                let next_page_token = if more {
                    tokens.issue_at(&query, Position::new().int(last))
                } else {
                    String::new()
                };
                Ok(api::ListDisclosuresResponse {
                    patient_id: resolved.id().to_owned(),
                    resolved_from_merged_patient_id: resolved.merged_from.clone(),
                    disclosures,
                    next_page_token,
                    ..Default::default()
                })
            },
        )
        .await
    }
}
