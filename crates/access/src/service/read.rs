//! ReadPatientRecord and BreakGlassReadPatientRecord: one path (resolve, decide, fetch, withhold,
//! audit) for both; what differs is parsed up front into [`ReadArgs`].

use std::collections::BTreeMap;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{Position, QueryKey};
use carerecord_platform::request::PageSize;
use tonic::Request;

use super::AccessService;
use super::audited::NamesAuditEntry;
use super::parse::{
    Paged, Reference, page_query, resume, validate_period, validate_purpose, validate_reference,
    validate_types,
};
use crate::cache::Checked;
use crate::domain::auth::{Caller, Context};
use crate::domain::decision::{self, Policy};
use crate::error::Error;
use crate::store::Appended;

/// A validated read request (either RPC).
struct ReadArgs {
    reference: Reference,
    purpose: String,
    legal_basis: i32,
    types: Vec<String>,
    period: Option<common::Period>,
    page_size: PageSize,
    /// Where the page token resumes: (index into the patient's ids, record hosting's page token).
    position: Option<(usize, String)>,
    query: QueryKey,
    /// Set for a break-glass read.
    break_glass_reason: Option<String>,
    filters: Filters,
}

/// What a read selects by besides type and effective time (ReadPatientRecord only): record
/// hosting applies them, so a page is never filtered after it was fetched.
#[derive(Debug, Clone, Default)]
pub(super) struct Filters {
    codes: Vec<String>,
    categories: Vec<String>,
    statuses: Vec<String>,
    last_updated: Option<common::Period>,
}

impl Filters {
    fn parse(v: &mut Violations, request: &api::ReadPatientRecordRequest) -> Filters {
        for (field, values, max) in [
            ("codes", &request.codes, 50),
            ("categories", &request.categories, 50),
            ("statuses", &request.statuses, 20),
        ] {
            if values.len() > max {
                v.add(field, format!("at most {max} values"));
            }
            for (i, value) in values.iter().enumerate() {
                if value.trim().is_empty() || value.len() > 512 {
                    v.add(format!("{field}[{i}]"), "must be 1 to 512 characters");
                }
            }
        }
        validate_period(v, "last_updated", request.last_updated.as_ref());
        Filters {
            codes: request.codes.clone(),
            categories: request.categories.clone(),
            statuses: request.statuses.clone(),
            last_updated: request.last_updated,
        }
    }
}

/// The fields both read requests carry alike (the purpose, a break-glass reason and the filters
/// are each request's own: [`ReadOwn`]).
pub(super) struct ReadFields<'a> {
    patient: Option<&'a api::PatientReference>,
    legal_basis: i32,
    resource_types: &'a [String],
    effective_period: Option<&'a common::Period>,
    page_size: i32,
    page_token: &'a str,
}

/// What a read request asks for in its own way: its purpose, a break-glass reason, filters.
pub(super) struct ReadOwn {
    purpose: String,
    /// Set for a break-glass read.
    break_glass_reason: Option<String>,
    filters: Filters,
}

/// ReadPatientRecord's and BreakGlassReadPatientRecord's requests.
pub(super) trait ReadRequest: Paged {
    /// What the read's page tokens are issued for.
    const KIND: &'static str;
    type Response: From<ReadPage>;

    fn fields(&self) -> ReadFields<'_>;

    /// The request's own fields, checked into `v`.
    fn own(&self, caller: &Caller, v: &mut Violations) -> ReadOwn;
}

/// Checks ReadPatientRecord's own fields: its purpose and filters.
fn read_own(
    request: &api::ReadPatientRecordRequest,
    caller: &Caller,
    v: &mut Violations,
) -> ReadOwn {
    validate_read_purpose(v, caller, &request.purpose_of_use);
    ReadOwn {
        purpose: request.purpose_of_use.clone(),
        break_glass_reason: None,
        filters: Filters::parse(v, request),
    }
}

/// Checks BreakGlassReadPatientRecord's own field, its reason; the purpose is ETREAT.
fn break_glass_own(
    request: &api::BreakGlassReadPatientRecordRequest,
    _: &Caller,
    v: &mut Violations,
) -> ReadOwn {
    let reason = request.reason.trim().to_owned();
    let reason_len = reason.chars().count();
    if reason.is_empty() {
        v.add("reason", "is required: why glass is being broken");
    } else if !(10..=1000).contains(&reason_len) {
        v.add("reason", "must be 10 to 1000 characters after trimming");
    }
    ReadOwn {
        purpose: "ETREAT".into(),
        break_glass_reason: Some(reason),
        filters: Filters::default(),
    }
}

/// A page of either read, and the audit entry recording it.
pub(super) struct ReadPage {
    patient_id: String,
    merged_from: String,
    records: Vec<api::DisclosedRecord>,
    disclosure: api::DisclosureSummary,
    decision: api::DecisionSummary,
    next_page_token: String,
    audit_entry_id: String,
    audit_index: i64,
}

impl NamesAuditEntry for ReadPage {
    fn name_entry(&mut self, appended: &Appended) {
        self.audit_entry_id = appended.entry_id.clone();
        self.audit_index = appended.index;
    }
}

/// Both read requests: what they name alike (the shared fields, the response of a page), their
/// kind of page token and the check of their own fields.
macro_rules! read_requests {
    ($($request:ty => $response:ty, $kind:literal, $own:ident;)*) => {
        $(impl ReadRequest for $request {
            const KIND: &'static str = $kind;
            type Response = $response;

            fn fields(&self) -> ReadFields<'_> {
                ReadFields {
                    patient: self.patient.as_ref(),
                    legal_basis: self.legal_basis,
                    resource_types: &self.resource_types,
                    effective_period: self.effective_period.as_ref(),
                    page_size: self.page_size,
                    page_token: &self.page_token,
                }
            }

            fn own(&self, caller: &Caller, v: &mut Violations) -> ReadOwn {
                $own(self, caller, v)
            }
        }

        impl From<ReadPage> for $response {
            fn from(page: ReadPage) -> Self {
                Self {
                    patient_id: page.patient_id,
                    resolved_from_merged_patient_id: page.merged_from,
                    records: page.records,
                    disclosure: Some(page.disclosure),
                    decision: Some(page.decision),
                    next_page_token: page.next_page_token,
                    audit_entry_id: page.audit_entry_id,
                    audit_index: page.audit_index,
                }
            }
        })*
    };
}

read_requests! {
    api::ReadPatientRecordRequest => api::ReadPatientRecordResponse, "read", read_own;
    api::BreakGlassReadPatientRecordRequest => api::BreakGlassReadPatientRecordResponse,
        "break-glass-read", break_glass_own;
}

/// Purpose rules of reads other than break glass: any known code but ETREAT; PATRQT for patients.
pub(super) fn validate_read_purpose(v: &mut Violations, caller: &Caller, purpose: &str) {
    validate_purpose(v, purpose);
    if purpose == "ETREAT" {
        v.add(
            "purpose_of_use",
            "ETREAT is only accepted by BreakGlassReadPatientRecord",
        );
    }
    if is_patient_facing(caller) && !purpose.is_empty() && purpose != "PATRQT" {
        v.add("purpose_of_use", "patient-facing tokens must use PATRQT");
    }
}

/// The contexts a caller reads and contributes in: a patient-facing token's, else user and
/// system.
pub(super) fn caller_contexts(caller: &Caller) -> &'static [Context] {
    if is_patient_facing(caller) {
        &[Context::Patient]
    } else {
        &[Context::User, Context::System]
    }
}

/// A token whose scopes are only patient-facing ones.
pub(super) fn is_patient_facing(caller: &Caller) -> bool {
    caller.has_context(Context::Patient)
        && !caller.has_context(Context::User)
        && !caller.has_context(Context::System)
}

pub(super) fn validate_legal_basis(v: &mut Violations, basis: i32, purpose: &str) {
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
    async fn read_body(
        &self,
        caller: &Caller,
        args: &ReadArgs,
        leaf: &mut api::AuditLeaf,
    ) -> Result<ReadPage, Error> {
        let break_glass = args.break_glass_reason.is_some();
        let patient_facing = !break_glass && is_patient_facing(caller);
        let contexts: &[Context] = if break_glass {
            &[Context::User]
        } else {
            caller_contexts(caller)
        };
        if break_glass && !self.inner.config.clinical_roles.contains(&caller.role_code) {
            return Err(Error::RoleNotPermitted {
                required_roles: self.inner.config.clinical_roles.join(","),
            });
        }
        let fetch_types = types_in_scope(caller, contexts, &args.types)?;
        // The kept decisions are checked while the patient is resolved (the check need only begin
        // after the read arrived); break glass always asks consent.
        let checking = async {
            if break_glass {
                Checked::Bypass
            } else {
                self.check_decisions().await
            }
        };
        let (resolved, checked) = tokio::join!(
            self.resolve_for(caller, patient_facing, &args.reference, leaf),
            checking
        );
        let resolved = resolved?;
        // The decision and the page are asked for at once; the page is only disclosed (or
        // dropped) once the decision is known.
        let decide = self.decide(
            caller,
            resolved.id(),
            &args.purpose,
            args.legal_basis,
            args.break_glass_reason.as_deref().unwrap_or(""),
            Some(checked),
        );
        let (decision, fetched) =
            tokio::join!(decide, self.fetch_page(&resolved, args, fetch_types));
        let policy = decision::interpret(&decision?, break_glass);
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
        let (owners, owner_idx, page) = fetched?;
        let next = if !page.next_page_token.is_empty() {
            Some((owner_idx, page.next_page_token.as_str()))
        } else if owner_idx + 1 < owners.len() {
            Some((owner_idx + 1, ""))
        } else {
            None
        };
        let next_page_token = next
            .map(|(owner, token)| {
                let owner = i64::try_from(owner).unwrap_or(i64::MAX);
                self.inner
                    .config
                    .page_tokens
                    .issue_at(&args.query, Position::new().int(owner).text(token))
            })
            .unwrap_or_default();
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
            next_page_token,
            audit_entry_id: String::new(),
            audit_index: 0,
        })
    }

    /// The page of records a read asks for: the patient's ids (survivor first), the index of the
    /// one this page is of, and record hosting's page.
    async fn fetch_page(
        &self,
        resolved: &super::patients::Resolved,
        args: &ReadArgs,
        fetch_types: Option<Vec<String>>,
    ) -> Result<(Vec<String>, usize, records::ListRecordsResponse), Error> {
        let owners = self.patient_ids(&resolved.patient).await?;
        let (owner_idx, inner_token) = args.position.clone().unwrap_or_default();
        let owner = owners.get(owner_idx).ok_or(Error::InvalidPageToken)?;
        let list = records::ListRecordsRequest {
            patient_id: owner.clone(),
            resource_types: fetch_types.unwrap_or_default(),
            effective_time: args.period,
            codes: args.filters.codes.clone(),
            categories: args.filters.categories.clone(),
            statuses: args.filters.statuses.clone(),
            updated_since: args.filters.last_updated.and_then(|p| p.start),
            updated_before: args.filters.last_updated.and_then(|p| p.end),
            order: records::RecordOrder::EffectiveTimeDescending as i32,
            page_size: i32::try_from(args.page_size.get()).unwrap_or(50),
            page_token: inner_token,
            ..Default::default()
        };
        let page = self.inner.upstream.list_records(list).await?;
        Ok((owners, owner_idx, page))
    }

    /// ReadPatientRecord or BreakGlassReadPatientRecord: the request's own checks, then those
    /// both share; the page, audited.
    pub(super) async fn read_patient<R: ReadRequest>(
        &self,
        request: Request<R>,
    ) -> Result<R::Response, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let fields = req.fields();
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", fields.patient);
        let own = req.own(&caller, &mut v);
        validate_legal_basis(&mut v, fields.legal_basis, &own.purpose);
        let types = validate_types(&mut v, "resource_types", fields.resource_types);
        validate_period(&mut v, "effective_period", fields.effective_period);
        let page_size = v.page_size(fields.page_size);
        let query = page_query(R::KIND, &caller, &req);
        let position = resume(
            &self.inner.config.page_tokens,
            &query,
            fields.page_token,
            |position| {
                let owner = usize::try_from(position.read_int()?).ok()?;
                Some((owner, position.read_text()?))
            },
        )?;
        let Some(reference) = reference.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let args = ReadArgs {
            reference,
            purpose: own.purpose,
            legal_basis: fields.legal_basis,
            types,
            period: fields.effective_period.copied(),
            page_size,
            position,
            query,
            break_glass_reason: own.break_glass_reason,
            filters: own.filters,
        };
        self.read_page(&caller, &trace, args).await.map(Into::into)
    }

    /// Reads a page and audits it (as a break-glass event too, for a break-glass read).
    async fn read_page(
        &self,
        caller: &Caller,
        trace: &str,
        args: ReadArgs,
    ) -> Result<ReadPage, Error> {
        let break_glass = args.break_glass_reason.is_some();
        let action = if break_glass {
            api::AuditAction::BreakGlassRead
        } else {
            api::AuditAction::Read
        };
        let mut leaf = self.leaf(caller, trace, action);
        leaf.purpose_of_use = args.purpose.clone();
        leaf.legal_basis = args.legal_basis;
        leaf.reference_kind = args.reference.kind() as i32;
        leaf.resource_types = args.types.clone();
        leaf.break_glass_reason = args.break_glass_reason.clone().unwrap_or_default();
        let result = self.read_body(caller, &args, &mut leaf).await;
        self.finish(leaf, result, break_glass).await
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
        if policy.withholds_record(&record) {
            *withheld.entry(policy.withheld_reason.clone()).or_default() += 1;
            continue;
        }
        labelled |= !record.data_classes.is_empty();
        let agent = record.modified_by.clone();
        disclosed.push(super::disclose::disclosed(record, agent));
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
