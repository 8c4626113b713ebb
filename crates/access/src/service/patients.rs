//! Patient references: validation, resolution through identity (following merges), FindPatient
//! and the patient's disclosure log.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::access::v1::patient_reference::Reference as Ref;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::identity::v1 as identity;
use carerecord_platform::errors::Violations;
use prost::Message;
use tonic::{Code, Request, Response, Status};

use super::{AccessService, page_size};
use crate::domain::auth::{Caller, Context};
use carerecord_platform::nhs_number;

use crate::domain::parse_uuid;
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// How many merges are followed before giving up (a cycle or a corrupt index).
const MAX_MERGE_HOPS: usize = 32;
/// How many patients merged into one are looked up for disclosure logs and reads.
const MAX_MERGED: usize = 64;

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
    fn name(&self) -> String {
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
        Ref::PatientId(id) => match parse_uuid(id.trim()) {
            Some(id) => Some(Reference::PatientId(id)),
            None => {
                v.add(
                    format!("{field}.patient_id"),
                    "must be a UUID (8-4-4-4-12 hexadecimal digits)",
                );
                None
            }
        },
        Ref::NhsNumber(n) => match nhs_number::normalise(n) {
            Ok(n) => Some(Reference::Nhs(n)),
            Err(why) => {
                v.add(format!("{field}.nhs_number"), why.description());
                None
            }
        },
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
                return match nhs_number::normalise(value) {
                    Ok(n) => Some(Reference::Nhs(n)),
                    Err(why) => {
                        v.add(format!("{field}.identifier.value"), why.description());
                        None
                    }
                };
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

fn reference_is_identifier(reference: &Reference) -> bool {
    matches!(reference, Reference::Identifier(..))
}

impl AccessService {
    async fn get_patient(&self, patient_id: &str) -> Result<Option<identity::Patient>, Error> {
        let up = &self.inner.upstream;
        let result = up
            .call(Dependency::Identity, || {
                let mut client = up.identity.clone();
                let request = up.request(identity::GetPatientRequest {
                    patient_id: patient_id.to_owned(),
                });
                async move { client.get_patient(request).await }
            })
            .await;
        match result {
            Ok(response) => Ok(response.patient),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(unavailable(Dependency::Identity, &status)),
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

    /// Resolves a reference to the surviving patient.
    pub(super) async fn resolve(&self, reference: &Reference) -> Result<Resolved, Error> {
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
                let response = up
                    .call(Dependency::Identity, || {
                        let mut client = up.identity.clone();
                        let request = up.request(identity::MatchPatientsRequest {
                            probe: Some(identity::match_patients_request::Probe::Demographics(
                                probe.clone(),
                            )),
                            max_candidates: 10,
                            include_non_matches: false,
                        });
                        async move { client.match_patients(request).await }
                    })
                    .await
                    .map_err(|s| unavailable(Dependency::Identity, &s))?;
                let at_least_possible: Vec<&identity::MatchCandidate> = response
                    .candidates
                    .iter()
                    .filter(|c| {
                        c.classification == identity::MatchClassification::Match as i32
                            || c.classification == identity::MatchClassification::Possible as i32
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
                        self.follow_merges(patient, reference).await
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
        let response = up
            .call(Dependency::Identity, || {
                let mut client = up.identity.clone();
                let request = up.request(identity::ResolveIdentifierRequest {
                    identifier: Some(identifier.clone()),
                });
                async move { client.resolve_identifier(request).await }
            })
            .await
            .map_err(|s| identity_error(&s, reference))?;
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
            return Ok(());
        }
        let ids = self.patient_ids(&resolved.patient).await?;
        if ids.contains(&caller.patient) {
            Ok(())
        } else {
            Err(Error::PatientContextMismatch)
        }
    }

    pub(super) async fn find_patient_rpc(
        &self,
        request: Request<api::FindPatientRequest>,
    ) -> Result<Response<api::FindPatientResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        validate_purpose(&mut v, &req.purpose_of_use);
        let reference = match (reference, v.is_empty()) {
            (Some(r), true) => r,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::FindPatient);
        leaf.purpose_of_use = req.purpose_of_use.clone();
        leaf.reference_kind = reference.kind() as i32;
        let result = async {
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
                resolved_from_merged_patient_id: resolved.merged_from.clone(),
                ..Default::default()
            })
        }
        .await;
        self.finish(leaf, result, false, |r, a| {
            r.audit_entry_id = a.entry_id.clone();
            r.audit_index = a.index;
        })
        .await
    }

    pub(super) async fn list_disclosures_rpc(
        &self,
        request: Request<api::ListDisclosuresRequest>,
    ) -> Result<Response<api::ListDisclosuresResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        let (start, end) = validate_period(&mut v, "period", req.period.as_ref());
        let limit = page_size(&mut v, "page_size", req.page_size);
        let query = page_query(
            &caller,
            &api::ListDisclosuresRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            }
            .encode_to_vec(),
        );
        let before = if req.page_token.is_empty() {
            i64::MAX
        } else {
            match self
                .inner
                .config
                .page_tokens
                .verify(&query, &req.page_token)
            {
                Ok(pos) if pos.len() == 8 => i64::from_be_bytes(pos.try_into().unwrap_or_default()),
                _ => return Err(Error::InvalidPageToken.into()),
            }
        };
        let reference = match (reference, v.is_empty()) {
            (Some(r), true) => r,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::ListDisclosures);
        leaf.purpose_of_use = "PATRQT".into();
        leaf.reference_kind = reference.kind() as i32;
        let result = async {
            let patient_facing =
                !caller.has_context(Context::User) && caller.has_context(Context::Patient);
            let contexts: &[Context] = if patient_facing {
                &[Context::Patient]
            } else {
                &[Context::User]
            };
            caller.require(contexts, "AuditEvent", 'r')?;
            let resolved = self.resolve(&reference).await?;
            leaf.patient_id = resolved.id().to_owned();
            leaf.resolved_from_merged_patient_id = resolved.merged_from.clone();
            if patient_facing {
                self.check_patient_context(&caller, &resolved).await?;
            }
            let ids = self.patient_ids(&resolved.patient).await?;
            let actions = [
                api::AuditAction::FindPatient as i32,
                api::AuditAction::Read as i32,
                api::AuditAction::BreakGlassRead as i32,
                api::AuditAction::ListDisclosures as i32,
            ];
            let rows = self
                .inner
                .store
                .patient_entries(&ids, &actions, before, start, end, limit + 1)
                .await?;
            let more = rows.len() as i64 > limit;
            let mut disclosures = Vec::new();
            let mut last = before;
            for row in rows.into_iter().take(usize::try_from(limit).unwrap_or(0)) {
                last = row.index;
                let entry = api::AuditLeaf::decode(row.leaf_data.as_slice()).map_err(|_| {
                    Error::Internal(format!("audit entry {} does not parse", row.index))
                })?;
                disclosures.push(api::Disclosure {
                    audit_entry_id: entry.entry_id,
                    audit_index: row.index,
                    time: entry.time,
                    requester: entry.requester,
                    client_id: entry.client_id,
                    action: entry.action,
                    purpose_of_use: entry.purpose_of_use,
                    outcome: entry.outcome,
                    returned_count: entry.returned_count,
                    withheld_count: entry.withheld_count,
                    break_glass_reason: entry.break_glass_reason,
                    patient_id: entry.patient_id,
                });
            }
            leaf.returned_count = disclosures.len() as i64;
            let next_page_token = if more {
                self.inner
                    .config
                    .page_tokens
                    .issue(&query, &last.to_be_bytes())
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
        }
        .await;
        self.finish(leaf, result, false, |r, a| {
            r.audit_entry_id = a.entry_id.clone();
            r.audit_index = a.index;
        })
        .await
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

/// The bytes a page token is bound to: the request's other fields and the requester.
pub fn page_query(caller: &Caller, request_bytes: &[u8]) -> Vec<u8> {
    let mut query = Vec::with_capacity(request_bytes.len() + 64);
    for part in [
        &caller.user_id,
        &caller.client_id,
        &caller.organisation_ods_code,
    ] {
        query.extend_from_slice(&(part.len() as u32).to_be_bytes());
        query.extend_from_slice(part.as_bytes());
    }
    query.extend_from_slice(request_bytes);
    query
}
