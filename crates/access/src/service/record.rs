//! Reading one record by id: ReadRecord (a version) and ListRecordVersions (its history), each
//! consent-decided for the record's patient and audited as a read.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::Position;
use carerecord_platform::request::Id;
use tonic::Request;

use super::AccessService;
use super::disclose::{disclosed, record_ref};
use super::parse::{Reference, page_query, relayed_token, resume};
use super::read::{
    caller_contexts, is_patient_facing, validate_legal_basis, validate_read_purpose,
};
use crate::domain::auth::Caller;
use crate::domain::decision::{self, Policy};
use crate::error::Error;

impl AccessService {
    /// The audit leaf of a read of one record (the patient is named by the record's patient id).
    fn record_leaf(
        &self,
        caller: &Caller,
        trace: &str,
        purpose: &str,
        legal_basis: i32,
    ) -> api::AuditLeaf {
        let mut leaf = self.leaf(caller, trace, api::AuditAction::Read);
        leaf.purpose_of_use = purpose.to_owned();
        leaf.legal_basis = legal_basis;
        leaf.reference_kind = api::PatientReferenceKind::PatientId as i32;
        leaf
    }

    /// A version of a record (0: the latest) and the consent policy for reading it, after the
    /// scope and patient-context checks; refuses when the decision denies. Returns the record, its
    /// current patient (after merges) and the policy.
    async fn record_policy(
        &self,
        caller: &Caller,
        record_id: &Id,
        version: i64,
        purpose: &str,
        legal_basis: i32,
        leaf: &mut api::AuditLeaf,
    ) -> Result<(records::Record, String, Policy), Error> {
        let record = self.record_version(record_id.as_str(), version).await?;
        leaf.resource_types = vec![record.resource_type.clone()];
        let patient_facing = is_patient_facing(caller);
        let contexts = caller_contexts(caller);
        // Refused without naming the type: a record the caller may not read stays undescribed.
        caller
            .require(contexts, &record.resource_type, 'r')
            .map_err(|_| Error::ScopeMissing {
                required_scope: format!("{}/*.r", contexts[0].as_str()),
            })?;
        let owner = self
            .resolve(&Reference::PatientId(record.patient_id.clone()))
            .await?;
        leaf.patient_id = owner.id().to_owned();
        if patient_facing {
            self.check_patient_context(caller, &owner).await?;
        }
        let decision = self
            .decide(caller, owner.id(), purpose, legal_basis, "", None)
            .await?;
        let policy = decision::interpret(&decision, false);
        let summary = |outcome: api::DecisionOutcome| api::DecisionSummary {
            outcome: outcome as i32,
            obligations: Vec::new(),
            reasons: policy.reasons.clone(),
        };
        if policy.denied || policy.pseudonymise {
            leaf.decision = Some(summary(api::DecisionOutcome::Deny));
            return Err(Error::ConsentDenied {
                reason_codes: policy.reason_codes(),
                reason_texts: policy.reason_texts(),
            });
        }
        leaf.decision = Some(summary(api::DecisionOutcome::Permit));
        Ok((record, owner.id().to_owned(), policy))
    }

    pub(super) async fn read_record(
        &self,
        request: Request<api::ReadRecordRequest>,
    ) -> Result<api::ReadRecordResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let record_id = v.required_id("record_id", &req.record_id);
        if req.version < 0 {
            v.add(
                "version",
                "must be 0 (the latest) or a version number from 1",
            );
        }
        validate_read_purpose(&mut v, &caller, &req.purpose_of_use);
        validate_legal_basis(&mut v, req.legal_basis, &req.purpose_of_use);
        let Some(record_id) = record_id.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let leaf = self.record_leaf(&caller, &trace, &req.purpose_of_use, req.legal_basis);
        self.audited(leaf, async |leaf| {
            let (record, patient_id, policy) = self
                .record_policy(
                    &caller,
                    &record_id,
                    req.version,
                    &req.purpose_of_use,
                    req.legal_basis,
                    leaf,
                )
                .await?;
            if policy.withholds_record(&record) {
                return Err(Error::ConsentDenied {
                    reason_codes: vec![policy.withheld_reason.clone()],
                    reason_texts: vec![
                        "the patient's consent directives withhold this record from you".into(),
                    ],
                });
            }
            let agent = record.modified_by.clone();
            let record = disclosed(record, agent);
            leaf.returned_records = vec![record_ref(&record)];
            leaf.returned_count = 1;
            Ok(api::ReadRecordResponse {
                decision: leaf.decision.clone(),
                record: Some(record),
                patient_id,
                audit_entry_id: String::new(),
                audit_index: 0,
            })
        })
        .await
    }

    pub(super) async fn list_record_versions(
        &self,
        request: Request<api::ListRecordVersionsRequest>,
    ) -> Result<api::ListRecordVersionsResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let record_id = v.required_id("record_id", &req.record_id);
        validate_read_purpose(&mut v, &caller, &req.purpose_of_use);
        validate_legal_basis(&mut v, req.legal_basis, &req.purpose_of_use);
        let page_size = v.page_size(req.page_size);
        let query = page_query("record-versions", &caller, &req);
        let tokens = &self.inner.config.page_tokens;
        let inner_token = resume(tokens, &query, &req.page_token, Position::read_text)?;
        let Some(record_id) = record_id.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let leaf = self.record_leaf(&caller, &trace, &req.purpose_of_use, req.legal_basis);
        self.audited(leaf, async |leaf| {
            // The latest version decides who the record's patient is and what may be read.
            let (_, patient_id, policy) = self
                .record_policy(
                    &caller,
                    &record_id,
                    0,
                    &req.purpose_of_use,
                    req.legal_basis,
                    leaf,
                )
                .await?;
            let page = self
                .inner
                .upstream
                .list_record_versions(records::ListRecordVersionsRequest {
                    record_id: record_id.to_string(),
                    page_size: i32::try_from(page_size.get()).unwrap_or(50),
                    page_token: inner_token.unwrap_or_default(),
                    view: records::RecordView::Full as i32,
                })
                .await?;
            let mut versions = Vec::with_capacity(page.versions.len());
            let mut withheld = 0;
            for version in page.versions {
                let Some(record) = version.record else {
                    continue;
                };
                if policy.withholds_record(&record) {
                    withheld += 1;
                    continue;
                }
                versions.push(disclosed(record, version.requester));
            }
            let disclosure = api::DisclosureSummary {
                returned_count: versions.len() as i64,
                withheld_count: withheld,
                withheld_by_rule: if withheld > 0 {
                    vec![api::WithheldCount {
                        reason_code: policy.withheld_reason.clone(),
                        count: withheld,
                    }]
                } else {
                    Vec::new()
                },
            };
            leaf.returned_records = versions.iter().map(record_ref).collect();
            leaf.returned_count = disclosure.returned_count;
            leaf.withheld_count = disclosure.withheld_count;
            leaf.withheld_by_rule = disclosure.withheld_by_rule.clone();
            let next_page_token = relayed_token(tokens, &query, &page.next_page_token);
            Ok(api::ListRecordVersionsResponse {
                versions,
                patient_id,
                disclosure: Some(disclosure),
                decision: leaf.decision.clone(),
                next_page_token,
                audit_entry_id: String::new(),
                audit_index: 0,
            })
        })
        .await
    }
}
