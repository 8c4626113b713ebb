//! ReadPatientRecord and BreakGlassReadPatientRecord: resolve, decide, fetch, withhold, audit.

use std::collections::BTreeMap;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use prost::Message;
use tonic::{Request, Response, Status};

use super::patients::{Reference, page_query, validate_period, validate_reference};
use super::{AccessService, page_size};
use crate::domain::auth::{Caller, Context};
use crate::domain::decision::{self, Policy};
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

/// A validated read request (either RPC).
struct ReadArgs {
    reference: Reference,
    purpose: String,
    legal_basis: i32,
    types: Vec<String>,
    period: Option<common::Period>,
    page_size: i64,
    /// (index into the patient's ids, record hosting's page token).
    position: (usize, String),
    query: Vec<u8>,
    break_glass_reason: Option<String>,
}

struct ReadPage {
    patient_id: String,
    merged_from: String,
    records: Vec<api::DisclosedRecord>,
    disclosure: api::DisclosureSummary,
    decision: api::DecisionSummary,
    next_page_token: String,
}

/// The access legal basis as the consent module knows it (bases consent has no code for are
/// recorded in the audit log and passed as unspecified).
pub fn consent_legal_basis(basis: i32) -> consent::LegalBasis {
    match api::LegalBasis::try_from(basis) {
        Ok(api::LegalBasis::DirectCare) => consent::LegalBasis::DirectCare,
        Ok(api::LegalBasis::ExplicitConsent) => consent::LegalBasis::ExplicitConsent,
        Ok(api::LegalBasis::LegalObligation) => consent::LegalBasis::LegalRequirement,
        _ => consent::LegalBasis::Unspecified,
    }
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

fn validate_legal_basis(v: &mut Violations, basis: i32, purpose: &str) {
    match api::LegalBasis::try_from(basis) {
        Err(_) => v.add("legal_basis", "unknown value"),
        Ok(api::LegalBasis::DirectCare) if !matches!(purpose, "TREAT" | "ETREAT") => {
            v.add("legal_basis", "LEGAL_BASIS_DIRECT_CARE is only valid for purpose TREAT or ETREAT")
        }
        Ok(api::LegalBasis::ExplicitConsent) if purpose == "HRESCH" => v.add(
            "legal_basis",
            "research on the patient's explicit consent needs a study: use an extract for a registered project",
        ),
        Ok(_) => {}
    }
}

fn decode_position(pos: &[u8]) -> Option<(usize, String)> {
    let (idx, token) = pos.split_at_checked(4)?;
    let idx = u32::from_be_bytes(idx.try_into().ok()?) as usize;
    Some((idx, String::from_utf8(token.to_vec()).ok()?))
}

fn encode_position(idx: usize, token: &str) -> Vec<u8> {
    let mut out = (idx as u32).to_be_bytes().to_vec();
    out.extend_from_slice(token.as_bytes());
    out
}

/// The records' types a call reads: those asked for (each must be in scope), or all in scope.
/// `None` means every type.
pub fn types_in_scope(
    caller: &Caller,
    contexts: &[Context],
    requested: &[String],
) -> Result<Option<Vec<String>>, Error> {
    if requested.is_empty() {
        if caller.covers_all_types(contexts, 'r') {
            return Ok(None);
        }
        let covered = caller.covered_types(contexts, 'r');
        if covered.is_empty() {
            return Err(Error::ScopeMissing {
                required_scope: format!("{}/*.r", contexts.first().map_or("user", |c| c.as_str())),
            });
        }
        return Ok(Some(covered));
    }
    for t in requested {
        caller.require(contexts, t, 'r')?;
    }
    Ok(Some(requested.to_vec()))
}

impl AccessService {
    /// The requester sent to consent: consent needs a role, so system tokens without one are
    /// given the deployment's system role.
    pub(super) fn consent_requester(&self, caller: &Caller) -> common::Requester {
        let mut requester = caller.requester();
        if requester.role_code.is_empty() {
            requester.role_code = self.inner.config.system_role_code.clone();
        }
        requester
    }

    async fn decide(
        &self,
        caller: &Caller,
        patient_id: &str,
        purpose: &str,
        legal_basis: i32,
        break_glass_reason: &str,
    ) -> Result<consent::Decision, Error> {
        let up = &self.inner.upstream;
        let request = consent::DecideRequest {
            patient_id: patient_id.to_owned(),
            requester: Some(self.consent_requester(caller)),
            purpose_of_use: purpose.to_owned(),
            legal_basis: consent_legal_basis(legal_basis) as i32,
            break_glass_reason: break_glass_reason.to_owned(),
            ..Default::default()
        };
        let response = up
            .call(Dependency::Consent, || {
                let mut client = up.consent.clone();
                let request = up.request(request.clone());
                async move { client.decide(request).await }
            })
            .await
            .map_err(|s| unavailable(Dependency::Consent, &s))?;
        response
            .decision
            .ok_or_else(|| unavailable(Dependency::Consent, &Status::internal("decision missing")))
    }

    async fn read_body(
        &self,
        caller: &Caller,
        args: &ReadArgs,
        leaf: &mut api::AuditLeaf,
    ) -> Result<ReadPage, Error> {
        let break_glass = args.break_glass_reason.is_some();
        let patient_facing = !break_glass
            && caller.has_context(Context::Patient)
            && !caller.has_context(Context::User)
            && !caller.has_context(Context::System);
        let contexts: &[Context] = if break_glass {
            &[Context::User]
        } else if patient_facing {
            &[Context::Patient]
        } else {
            &[Context::User, Context::System]
        };
        if break_glass && !self.inner.config.clinical_roles.contains(&caller.role_code) {
            return Err(Error::RoleNotPermitted {
                required_roles: self.inner.config.clinical_roles.join(","),
            });
        }
        let fetch_types = types_in_scope(caller, contexts, &args.types)?;
        let resolved = self.resolve(&args.reference).await?;
        leaf.patient_id = resolved.id().to_owned();
        leaf.resolved_from_merged_patient_id = resolved.merged_from.clone();
        if patient_facing {
            self.check_patient_context(caller, &resolved).await?;
        }
        let decision = self
            .decide(
                caller,
                resolved.id(),
                &args.purpose,
                args.legal_basis,
                args.break_glass_reason.as_deref().unwrap_or(""),
            )
            .await?;
        let policy = decision::interpret(&decision, break_glass);
        if policy.denied || (policy.pseudonymise && !break_glass) {
            leaf.decision = Some(api::DecisionSummary {
                outcome: api::DecisionOutcome::Deny as i32,
                obligations: Vec::new(),
                reasons: policy.reasons.clone(),
            });
            let mut codes = policy.reason_codes();
            let mut texts = policy.reason_texts();
            if !policy.denied {
                codes.push("pseudonymisation-required".into());
                texts.push("Consent permits only a pseudonymised disclosure, which a record read cannot honour".into());
            }
            return Err(Error::ConsentDenied {
                reason_codes: codes,
                reason_texts: texts,
            });
        }
        let owners = self.patient_ids(&resolved.patient).await?;
        let (owner_idx, inner_token) = args.position.clone();
        let owner = owners.get(owner_idx).ok_or(Error::InvalidPageToken)?;
        let up = &self.inner.upstream;
        let list = records::ListRecordsRequest {
            patient_id: owner.clone(),
            resource_types: fetch_types.clone().unwrap_or_default(),
            effective_time: args.period,
            order: records::RecordOrder::EffectiveTimeDescending as i32,
            page_size: i32::try_from(args.page_size).unwrap_or(50),
            page_token: inner_token,
            ..Default::default()
        };
        let page = up
            .call(Dependency::Records, || {
                let mut client = up.records.clone();
                let request = up.request(list.clone());
                async move { client.list_records(request).await }
            })
            .await
            .map_err(|s| unavailable(Dependency::Records, &s))?;
        let next = if !page.next_page_token.is_empty() {
            Some(encode_position(owner_idx, &page.next_page_token))
        } else if owner_idx + 1 < owners.len() {
            Some(encode_position(owner_idx + 1, ""))
        } else {
            None
        };
        // The contract breaks effective-time ties by record_id; record hosting by creation order.
        let mut page_records = page.records;
        page_records.sort_by(|a, b| {
            let ta = a.effective_time.as_ref().and_then(crate::domain::micros);
            let tb = b.effective_time.as_ref().and_then(crate::domain::micros);
            match (ta, tb) {
                (Some(x), Some(y)) => y.cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then_with(|| a.record_id.cmp(&b.record_id))
        });
        let (disclosed, disclosure, any_labelled) = withhold(page_records, &policy);
        let outcome = if policy.overridden {
            api::DecisionOutcome::PermitBreakGlass
        } else if disclosure.withheld_count > 0 {
            api::DecisionOutcome::PermitPartial
        } else {
            api::DecisionOutcome::Permit
        };
        let obligations = if any_labelled {
            vec!["PERSISTLABEL".to_owned(), "NORDSCLCD".to_owned()]
        } else {
            Vec::new()
        };
        let decision = api::DecisionSummary {
            outcome: outcome as i32,
            obligations,
            reasons: policy.reasons.clone(),
        };
        leaf.returned_records = disclosed
            .iter()
            .map(|r| api::RecordRef {
                record_id: r.record_id.clone(),
                version: r.version,
            })
            .collect();
        leaf.returned_count = disclosure.returned_count;
        leaf.withheld_count = disclosure.withheld_count;
        leaf.withheld_by_rule = disclosure.withheld_by_rule.clone();
        leaf.decision = Some(decision.clone());
        Ok(ReadPage {
            patient_id: resolved.id().to_owned(),
            merged_from: resolved.merged_from.clone(),
            records: disclosed,
            disclosure,
            decision,
            next_page_token: next
                .map(|pos| self.inner.config.page_tokens.issue(&args.query, &pos))
                .unwrap_or_default(),
        })
    }

    pub(super) async fn read_rpc(
        &self,
        request: Request<api::ReadPatientRecordRequest>,
    ) -> Result<Response<api::ReadPatientRecordResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        super::patients::validate_purpose(&mut v, &req.purpose_of_use);
        if req.purpose_of_use == "ETREAT" {
            v.add(
                "purpose_of_use",
                "ETREAT is only accepted by BreakGlassReadPatientRecord",
            );
        }
        let patient_facing = caller.has_context(Context::Patient)
            && !caller.has_context(Context::User)
            && !caller.has_context(Context::System);
        if patient_facing && !req.purpose_of_use.is_empty() && req.purpose_of_use != "PATRQT" {
            v.add("purpose_of_use", "patient-facing tokens must use PATRQT");
        }
        validate_legal_basis(&mut v, req.legal_basis, &req.purpose_of_use);
        let types = validate_types(&mut v, "resource_types", &req.resource_types);
        validate_period(&mut v, "effective_period", req.effective_period.as_ref());
        let size = page_size(&mut v, "page_size", req.page_size);
        let query = page_query(
            &caller,
            &api::ReadPatientRecordRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            }
            .encode_to_vec(),
        );
        let position = self.position(&query, &req.page_token)?;
        let reference = match (reference, v.is_empty()) {
            (Some(r), true) => r,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let args = ReadArgs {
            reference,
            purpose: req.purpose_of_use.clone(),
            legal_basis: req.legal_basis,
            types,
            period: req.effective_period,
            page_size: size,
            position,
            query,
            break_glass_reason: None,
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::Read);
        leaf.purpose_of_use = args.purpose.clone();
        leaf.legal_basis = args.legal_basis;
        leaf.reference_kind = args.reference.kind() as i32;
        leaf.resource_types = args.types.clone();
        let result = self.read_body(&caller, &args, &mut leaf).await.map(|page| {
            api::ReadPatientRecordResponse {
                patient_id: page.patient_id,
                resolved_from_merged_patient_id: page.merged_from,
                records: page.records,
                disclosure: Some(page.disclosure),
                decision: Some(page.decision),
                next_page_token: page.next_page_token,
                ..Default::default()
            }
        });
        self.finish(leaf, result, false, |r, a| {
            r.audit_entry_id = a.entry_id.clone();
            r.audit_index = a.index;
        })
        .await
    }

    pub(super) async fn break_glass_rpc(
        &self,
        request: Request<api::BreakGlassReadPatientRecordRequest>,
    ) -> Result<Response<api::BreakGlassReadPatientRecordResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        let reason = req.reason.trim().to_owned();
        let reason_len = reason.chars().count();
        if reason.is_empty() {
            v.add("reason", "is required: why glass is being broken");
        } else if !(10..=1000).contains(&reason_len) {
            v.add("reason", "must be 10 to 1000 characters after trimming");
        }
        validate_legal_basis(&mut v, req.legal_basis, "ETREAT");
        let types = validate_types(&mut v, "resource_types", &req.resource_types);
        validate_period(&mut v, "effective_period", req.effective_period.as_ref());
        let size = page_size(&mut v, "page_size", req.page_size);
        let query = page_query(
            &caller,
            &api::BreakGlassReadPatientRecordRequest {
                page_size: 0,
                page_token: String::new(),
                ..req.clone()
            }
            .encode_to_vec(),
        );
        let position = self.position(&query, &req.page_token)?;
        let reference = match (reference, v.is_empty()) {
            (Some(r), true) => r,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let args = ReadArgs {
            reference,
            purpose: "ETREAT".into(),
            legal_basis: req.legal_basis,
            types,
            period: req.effective_period,
            page_size: size,
            position,
            query,
            break_glass_reason: Some(reason.clone()),
        };
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::BreakGlassRead);
        leaf.purpose_of_use = "ETREAT".into();
        leaf.legal_basis = args.legal_basis;
        leaf.reference_kind = args.reference.kind() as i32;
        leaf.resource_types = args.types.clone();
        leaf.break_glass_reason = reason;
        let result = self.read_body(&caller, &args, &mut leaf).await.map(|page| {
            api::BreakGlassReadPatientRecordResponse {
                patient_id: page.patient_id,
                resolved_from_merged_patient_id: page.merged_from,
                records: page.records,
                disclosure: Some(page.disclosure),
                decision: Some(page.decision),
                next_page_token: page.next_page_token,
                ..Default::default()
            }
        });
        self.finish(leaf, result, true, |r, a| {
            r.audit_entry_id = a.entry_id.clone();
            r.audit_index = a.index;
        })
        .await
    }

    fn position(&self, query: &[u8], token: &str) -> Result<(usize, String), Status> {
        if token.is_empty() {
            return Ok((0, String::new()));
        }
        self.inner
            .config
            .page_tokens
            .verify(query, token)
            .ok()
            .and_then(|pos| decode_position(&pos))
            .ok_or_else(|| Error::InvalidPageToken.into())
    }
}

/// Splits a page of records into the disclosed and the withheld, counting the withheld by rule.
/// Returns the disclosed records, the summary, and whether any disclosed record is labelled.
fn withhold(
    page: Vec<records::Record>,
    policy: &Policy,
) -> (Vec<api::DisclosedRecord>, api::DisclosureSummary, bool) {
    let mut disclosed = Vec::with_capacity(page.len());
    let mut withheld: BTreeMap<String, i64> = BTreeMap::new();
    let mut labelled = false;
    for record in page {
        let effective = record
            .effective_time
            .as_ref()
            .and_then(crate::domain::micros);
        if policy.withholds(&record.data_classes, effective) {
            *withheld.entry(policy.withheld_reason.clone()).or_default() += 1;
            continue;
        }
        labelled |= !record.data_classes.is_empty();
        disclosed.push(api::DisclosedRecord {
            record_id: record.record_id,
            version: record.version,
            resource_type: record.resource_type,
            content_type: "application/fhir+json; fhirVersion=4.0".into(),
            payload: record.payload,
            data_classes: record.data_classes,
            effective_time: record.effective_time,
            last_updated: record.update_time,
            source_organisation_ods_code: record.authoring_organisation_ods_code,
        });
    }
    let withheld_count = withheld.values().sum();
    let summary = api::DisclosureSummary {
        returned_count: disclosed.len() as i64,
        withheld_count,
        withheld_by_rule: withheld
            .into_iter()
            .map(|(reason_code, count)| api::WithheldCount { reason_code, count })
            .collect(),
    };
    (disclosed, summary, labelled)
}
