//! Pseudonymised extracts and suppressed aggregates for registered research and planning projects.
//!
//! Everything that can refuse the call (project, scopes, the audit log, cohort resolution, consent)
//! runs before the response starts, so such failures are the call's status. The rows then stream
//! from record hosting through de-identification to the client over a bounded channel: a slow
//! client slows the export instead of growing memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::consent::v1 as consent;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::AccessService;
use super::patients::{Reference, validate_period};
use super::read::{consent_legal_basis, types_in_scope, validate_types};
use crate::config::Project;
use crate::domain::auth::{Caller, Context};
use crate::domain::decision::{self, Policy};
use crate::domain::deid::{self, Subject};
use crate::domain::parse_uuid;
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

const MAX_COHORT: usize = 100_000;
/// Patients per BatchDecide call (consent's limit).
const DECIDE_BATCH: usize = 10_000;
/// Patients per ExportRecords call (record hosting's limit).
const EXPORT_BATCH: usize = 1000;
/// Concurrent identity look-ups while resolving a cohort.
const RESOLVE_CONCURRENCY: usize = 16;

/// An aggregate group: (resource_type, code system, code, month).
type GroupKey = (String, String, String, String);

/// The request fields extracts and aggregates share.
struct CohortArgs {
    project_id: String,
    purpose: String,
    legal_basis: i32,
    cohort: CohortSelection,
    types: Vec<String>,
    start: Option<i64>,
    end: Option<i64>,
}

enum CohortSelection {
    List(Vec<String>),
    Filter {
        types: Vec<String>,
        start: Option<i64>,
        end: Option<i64>,
    },
}

/// A cohort resolved, decided and ready to export.
struct Prepared {
    project: Project,
    counts: api::CohortCounts,
    /// Per included survivor: the consent policy and every id denoting the patient.
    included: HashMap<String, (Policy, Vec<String>)>,
    /// Record owner (any id records are held under) -> survivor.
    owner_to_survivor: HashMap<String, String>,
    fetch_types: Option<Vec<String>>,
}

fn validate_cohort_args(
    v: &mut Violations,
    project_id: &str,
    purpose: &str,
    legal_basis: i32,
    cohort: Option<&api::Cohort>,
    types: &[String],
    period: Option<&common::Period>,
) -> Option<CohortArgs> {
    let project_ok = (1..=64).contains(&project_id.len())
        && project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !project_ok {
        v.add(
            "project_id",
            "is required: 1 to 64 characters of A-Z a-z 0-9 . _ -",
        );
    }
    if !matches!(purpose, "HRESCH" | "HOPERAT") {
        v.add(
            "purpose_of_use",
            "must be HRESCH (research) or HOPERAT (operations and planning)",
        );
    }
    if api::LegalBasis::try_from(legal_basis).is_err() {
        v.add("legal_basis", "unknown value");
    } else if legal_basis == api::LegalBasis::DirectCare as i32 {
        v.add(
            "legal_basis",
            "LEGAL_BASIS_DIRECT_CARE is only valid for direct care",
        );
    }
    let types = validate_types(v, "resource_types", types);
    let (start, end) = validate_period(v, "effective_period", period);
    let selection = match cohort.and_then(|c| c.selection.as_ref()) {
        None => {
            v.add("cohort", "is required: a patient list or a filter");
            None
        }
        Some(api::cohort::Selection::PatientList(list)) => {
            if list.patient_ids.is_empty() || list.patient_ids.len() > MAX_COHORT {
                v.add(
                    "cohort.patient_list.patient_ids",
                    "must hold 1 to 100000 patient ids",
                );
                None
            } else {
                let mut ids = Vec::with_capacity(list.patient_ids.len());
                let mut seen = HashSet::new();
                for (i, raw) in list.patient_ids.iter().enumerate() {
                    match parse_uuid(raw.trim()) {
                        Some(id) => {
                            if seen.insert(id.clone()) {
                                ids.push(id);
                            }
                        }
                        None => v.add(
                            format!("cohort.patient_list.patient_ids[{i}]"),
                            "must be a UUID",
                        ),
                    }
                }
                Some(CohortSelection::List(ids))
            }
        }
        Some(api::cohort::Selection::Filter(filter)) => {
            let types = validate_types(v, "cohort.filter.resource_types", &filter.resource_types);
            let (start, end) = validate_period(
                v,
                "cohort.filter.effective_period",
                filter.effective_period.as_ref(),
            );
            Some(CohortSelection::Filter { types, start, end })
        }
    };
    let cohort = selection?;
    v.is_empty().then(|| CohortArgs {
        project_id: project_id.to_owned(),
        purpose: purpose.to_owned(),
        legal_basis,
        cohort,
        types,
        start,
        end,
    })
}

fn in_period(effective: Option<i64>, start: Option<i64>, end: Option<i64>) -> bool {
    if start.is_none() && end.is_none() {
        return true;
    }
    match effective {
        None => false,
        Some(t) => start.is_none_or(|s| s <= t) && end.is_none_or(|e| t < e),
    }
}

/// `YYYY-MM` of a UTC instant (days-from-civil inverse, H. Hinnant).
pub fn month_of(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

/// The first coding of the resource's `code` (or `medicationCodeableConcept`).
fn first_coding(resource_type: &str, payload: &[u8]) -> (String, String) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Default::default();
    };
    let element = if matches!(resource_type, "MedicationRequest" | "MedicationStatement") {
        "medicationCodeableConcept"
    } else {
        "code"
    };
    let coding = value
        .get(element)
        .and_then(|c| c.get("coding"))
        .and_then(|c| c.get(0));
    let field = |name: &str| {
        coding
            .and_then(|c| c.get(name))
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (field("system"), field("code"))
}

impl AccessService {
    fn project_for(&self, caller: &Caller, args: &CohortArgs) -> Result<Project, Error> {
        let project = self
            .inner
            .config
            .projects
            .get(&args.project_id)
            .ok_or_else(|| Error::ProjectNotFound(args.project_id.clone()))?;
        if !project.purposes.contains(&args.purpose) {
            return Err(Error::ProjectNotPermitted("purpose"));
        }
        if !project.organisations.is_empty()
            && !project
                .organisations
                .contains(&caller.organisation_ods_code)
        {
            return Err(Error::ProjectNotPermitted("organisation"));
        }
        if !project.clients.is_empty() && !project.clients.contains(&caller.client_id) {
            return Err(Error::ProjectNotPermitted("client"));
        }
        Ok(project.clone())
    }

    /// Streams every current record matching `request`, calling `each` per record.
    async fn export(
        &self,
        request: records::ExportRecordsRequest,
        mut each: impl FnMut(records::Record) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let up = &self.inner.upstream;
        let mut stream = up
            .call(Dependency::Records, || {
                let mut client = up.records.clone();
                let request = up.request(request.clone());
                async move { client.export_records(request).await }
            })
            .await
            .map_err(|s| unavailable(Dependency::Records, &s))?;
        loop {
            let message = tokio::time::timeout(up.timeout, stream.message())
                .await
                .map_err(|_| {
                    unavailable(
                        Dependency::Records,
                        &Status::deadline_exceeded("export stalled"),
                    )
                })?
                .map_err(|s| unavailable(Dependency::Records, &s))?;
            let Some(message) = message else {
                return Ok(());
            };
            for record in message.records {
                each(record)?;
            }
        }
    }

    /// Resolves, counts and decides the cohort.
    async fn prepare(&self, caller: &Caller, args: &CohortArgs) -> Result<Prepared, Error> {
        let project = self.project_for(caller, args)?;
        let fetch_types = types_in_scope(caller, &[Context::User, Context::System], &args.types)?;
        self.inner.store.ping().await?;
        let candidates: Vec<String> = match &args.cohort {
            CohortSelection::List(ids) => ids.clone(),
            CohortSelection::Filter { types, start, end } => {
                let mut ids = BTreeMap::new();
                let request = records::ExportRecordsRequest {
                    scope: Some(records::export_records_request::Scope::UpdatedBetween(
                        common::Period::default(),
                    )),
                    resource_types: types.clone(),
                    view: records::RecordView::Metadata as i32,
                    ..Default::default()
                };
                self.export(request, |r| {
                    let effective = r.effective_time.as_ref().and_then(crate::domain::micros);
                    if in_period(effective, *start, *end) {
                        ids.insert(r.patient_id, ());
                    }
                    Ok(())
                })
                .await?;
                ids.into_keys().collect()
            }
        };
        // Resolve each candidate to its survivor, with bounded concurrency.
        let resolved: Vec<Result<Option<super::patients::Resolved>, Error>> =
            futures::stream::iter(candidates)
                .map(|id| async move {
                    match self.resolve(&Reference::PatientId(id)).await {
                        Ok(r) => Ok(Some(r)),
                        Err(Error::PatientNotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(RESOLVE_CONCURRENCY)
                .collect()
                .await;
        let mut not_found = 0i64;
        let mut survivors: BTreeMap<String, super::patients::Resolved> = BTreeMap::new();
        for r in resolved {
            match r? {
                None => not_found += 1,
                Some(r) => {
                    survivors.entry(r.id().to_owned()).or_insert(r);
                }
            }
        }
        let survivor_ids: Vec<String> = survivors.keys().cloned().collect();
        let mut included = HashMap::new();
        let mut excluded = 0i64;
        let up = &self.inner.upstream;
        let study_id = if args.purpose == "HRESCH" {
            args.project_id.clone()
        } else {
            String::new()
        };
        for chunk in survivor_ids.chunks(DECIDE_BATCH) {
            let request = consent::BatchDecideRequest {
                patient_ids: chunk.to_vec(),
                requester: Some(self.consent_requester(caller)),
                purpose_of_use: args.purpose.clone(),
                legal_basis: consent_legal_basis(args.legal_basis) as i32,
                study_id: study_id.clone(),
                ..Default::default()
            };
            let response = up
                .call(Dependency::Consent, || {
                    let mut client = up.consent.clone();
                    let request = up.request(request.clone());
                    async move { client.batch_decide(request).await }
                })
                .await
                .map_err(|s| unavailable(Dependency::Consent, &s))?;
            if response.decisions.len() != chunk.len() {
                return Err(unavailable(
                    Dependency::Consent,
                    &Status::internal("decision count differs from the batch"),
                ));
            }
            for (patient_id, decision) in chunk.iter().zip(response.decisions) {
                let policy = decision::interpret(&decision, false);
                if policy.denied {
                    excluded += 1;
                } else {
                    included.insert(patient_id.clone(), policy);
                }
            }
        }
        let mut prepared_included = HashMap::new();
        let mut owner_to_survivor = HashMap::new();
        for (id, policy) in included {
            let resolved = &survivors[&id];
            let ids = self.patient_ids(&resolved.patient).await?;
            for owner in &ids {
                owner_to_survivor.insert(owner.clone(), id.clone());
            }
            prepared_included.insert(id, (policy, ids));
        }
        let counts = api::CohortCounts {
            patients_considered: survivors.len() as i64 + not_found,
            patients_not_found: not_found,
            patients_excluded_opt_out: excluded,
            patients_included: prepared_included.len() as i64,
        };
        Ok(Prepared {
            project,
            counts,
            included: prepared_included,
            owner_to_survivor,
            fetch_types,
        })
    }

    fn owners_batches(prepared: &Prepared) -> Vec<Vec<String>> {
        let mut owners: Vec<String> = prepared.owner_to_survivor.keys().cloned().collect();
        owners.sort();
        owners
            .chunks(EXPORT_BATCH)
            .map(<[String]>::to_vec)
            .collect()
    }

    fn export_request(
        owners: Vec<String>,
        prepared: &Prepared,
        view: records::RecordView,
    ) -> records::ExportRecordsRequest {
        records::ExportRecordsRequest {
            scope: Some(records::export_records_request::Scope::Patients(
                records::PatientIdList {
                    patient_ids: owners,
                },
            )),
            resource_types: prepared.fetch_types.clone().unwrap_or_default(),
            view: view as i32,
            ..Default::default()
        }
    }

    fn cohort_leaf(
        &self,
        caller: &Caller,
        trace: &str,
        action: api::AuditAction,
        args: &CohortArgs,
    ) -> api::AuditLeaf {
        let mut leaf = self.leaf(caller, trace, action);
        leaf.purpose_of_use = args.purpose.clone();
        leaf.legal_basis = args.legal_basis;
        leaf.project_id = args.project_id.clone();
        leaf.resource_types = args.types.clone();
        leaf
    }

    pub(super) async fn extract_rpc(
        &self,
        request: Request<api::ExtractPseudonymisedRequest>,
    ) -> Result<Response<super::BoxStream<api::ExtractPseudonymisedResponse>>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let args = validate_cohort_args(
            &mut v,
            &req.project_id,
            &req.purpose_of_use,
            req.legal_basis,
            req.cohort.as_ref(),
            &req.resource_types,
            req.effective_period.as_ref(),
        );
        let args = match (args, v.is_empty()) {
            (Some(a), true) => a,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let mut leaf = self.cohort_leaf(&caller, &trace, api::AuditAction::Extract, &args);
        let prepared = match self.prepare(&caller, &args).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .finish::<super::BoxStream<_>>(leaf, Err(e), false, |_, _| {})
                    .await;
            }
        };
        leaf.cohort_counts = Some(prepared.counts);
        let (tx, rx) = mpsc::channel::<Result<api::ExtractPseudonymisedResponse, Status>>(64);
        let service = self.clone();
        tokio::spawn(async move {
            service.stream_extract(prepared, args, leaf, tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn stream_extract(
        &self,
        prepared: Prepared,
        args: CohortArgs,
        mut leaf: api::AuditLeaf,
        tx: mpsc::Sender<Result<api::ExtractPseudonymisedResponse, Status>>,
    ) {
        let mut rows = 0i64;
        let mut withheld = 0i64;
        let pseudonymiser = prepared.project.pseudonymiser.clone();
        let patient_pseudonyms: HashMap<&str, String> = prepared
            .included
            .keys()
            .map(|id| (id.as_str(), pseudonymiser.pseudonym(id)))
            .collect();
        let mut outcome: Result<(), Error> = Ok(());
        'batches: for owners in Self::owners_batches(&prepared) {
            let mut pending: Vec<api::PseudonymisedRow> = Vec::new();
            let request = Self::export_request(owners, &prepared, records::RecordView::Full);
            let exported = self
                .export(request, |record| {
                    let effective = record
                        .effective_time
                        .as_ref()
                        .and_then(crate::domain::micros);
                    if !in_period(effective, args.start, args.end) {
                        return Ok(());
                    }
                    let Some(survivor) = prepared.owner_to_survivor.get(&record.patient_id) else {
                        return Ok(());
                    };
                    let Some((policy, ids)) = prepared.included.get(survivor) else {
                        return Ok(());
                    };
                    if policy.withholds(&record.data_classes, effective) {
                        withheld += 1;
                        return Ok(());
                    }
                    let patient_pseudonym = &patient_pseudonyms[survivor.as_str()];
                    let record_pseudonym = pseudonymiser.pseudonym(&record.record_id);
                    let subject = Subject {
                        pseudonymiser: &pseudonymiser,
                        patient_ids: ids,
                        patient_pseudonym,
                        record_pseudonym: &record_pseudonym,
                    };
                    // Record hosting only holds JSON objects; anything else is not disclosed.
                    let Ok(payload) = deid::deidentify(&record.payload, &subject) else {
                        withheld += 1;
                        return Ok(());
                    };
                    pending.push(api::PseudonymisedRow {
                        pseudonym: patient_pseudonym.clone(),
                        record_pseudonym,
                        resource_type: record.resource_type,
                        payload,
                        effective_time: record.effective_time,
                        data_classes: record.data_classes,
                    });
                    Ok(())
                })
                .await;
            if let Err(e) = exported {
                outcome = Err(e);
                break 'batches;
            }
            for row in pending {
                let message = api::ExtractPseudonymisedResponse {
                    item: Some(api::extract_pseudonymised_response::Item::Row(row)),
                };
                if tx.send(Ok(message)).await.is_err() {
                    outcome = Err(Error::Cancelled);
                    break 'batches;
                }
                rows += 1;
            }
        }
        leaf.row_count = rows;
        leaf.returned_count = rows;
        leaf.withheld_count = withheld;
        match outcome {
            Ok(()) => match self.audit(leaf, None, false).await {
                Ok(appended) => {
                    let summary = api::ExtractSummary {
                        cohort_counts: Some(prepared.counts),
                        rows,
                        records_withheld: withheld,
                        audit_entry_id: appended.entry_id,
                        audit_index: appended.index,
                    };
                    let _ = tx
                        .send(Ok(api::ExtractPseudonymisedResponse {
                            item: Some(api::extract_pseudonymised_response::Item::Summary(summary)),
                        }))
                        .await;
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                }
            },
            Err(e) => {
                // The rows already sent stay counted in the FAILED entry.
                let mut failed = leaf;
                failed.row_count = rows;
                let status = match self.audit(failed.clone(), Some(&e), false).await {
                    Ok(appended) => e.to_status(Some((&appended.entry_id, appended.index))),
                    Err(status) => status,
                };
                let _ = tx.send(Err(status)).await;
            }
        }
    }

    pub(super) async fn aggregate_rpc(
        &self,
        request: Request<api::AggregateExtractRequest>,
    ) -> Result<Response<super::BoxStream<api::AggregateExtractResponse>>, Status> {
        let caller = self.authenticate(&request).await?;
        let trace = super::trace_id(request.metadata());
        let req = request.into_inner();
        let mut v = Violations::new();
        let args = validate_cohort_args(
            &mut v,
            &req.project_id,
            &req.purpose_of_use,
            req.legal_basis,
            req.cohort.as_ref(),
            &req.resource_types,
            req.effective_period.as_ref(),
        );
        let mut dims = Vec::new();
        for (i, d) in req.group_by.iter().enumerate() {
            match api::AggregateDimension::try_from(*d) {
                Ok(api::AggregateDimension::Unspecified) | Err(_) => {
                    v.add(format!("group_by[{i}]"), "must be a known dimension")
                }
                Ok(dim) if dims.contains(&dim) => {
                    v.add(format!("group_by[{i}]"), "repeats a dimension")
                }
                Ok(dim) => dims.push(dim),
            }
        }
        let measure = match api::AggregateMeasure::try_from(req.measure) {
            Ok(api::AggregateMeasure::Records) => api::AggregateMeasure::Records,
            Ok(_) => api::AggregateMeasure::Patients,
            Err(_) => {
                v.add("measure", "unknown value");
                api::AggregateMeasure::Patients
            }
        };
        let args = match (args, v.is_empty()) {
            (Some(a), true) => a,
            _ => return Err(Error::InvalidRequest(v).into()),
        };
        let mut leaf = self.cohort_leaf(&caller, &trace, api::AuditAction::Aggregate, &args);
        let result = async {
            let prepared = self.prepare(&caller, &args).await?;
            leaf.cohort_counts = Some(prepared.counts);
            let by_code = dims.contains(&api::AggregateDimension::Code);
            let view = if by_code {
                records::RecordView::Full
            } else {
                records::RecordView::Metadata
            };
            // (resource_type, system, code, month) -> (records, patients)
            let mut groups: BTreeMap<GroupKey, (u64, HashSet<String>)> = BTreeMap::new();
            let mut withheld = 0i64;
            for owners in Self::owners_batches(&prepared) {
                let request = Self::export_request(owners, &prepared, view);
                self.export(request, |record| {
                    let effective = record
                        .effective_time
                        .as_ref()
                        .and_then(crate::domain::micros);
                    if !in_period(effective, args.start, args.end) {
                        return Ok(());
                    }
                    let Some(survivor) = prepared.owner_to_survivor.get(&record.patient_id) else {
                        return Ok(());
                    };
                    let Some((policy, _)) = prepared.included.get(survivor) else {
                        return Ok(());
                    };
                    if policy.withholds(&record.data_classes, effective) {
                        withheld += 1;
                        return Ok(());
                    }
                    let resource_type = if dims.contains(&api::AggregateDimension::ResourceType) {
                        record.resource_type.clone()
                    } else {
                        String::new()
                    };
                    let (system, code) = if by_code {
                        first_coding(&record.resource_type, &record.payload)
                    } else {
                        Default::default()
                    };
                    let month = if dims.contains(&api::AggregateDimension::EffectiveMonth) {
                        effective.map(month_of).unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let group = groups
                        .entry((resource_type, system, code, month))
                        .or_default();
                    group.0 += 1;
                    group.1.insert(survivor.clone());
                    Ok(())
                })
                .await?;
            }
            let rows: Vec<api::AggregateRow> = groups
                .into_iter()
                .map(
                    |((resource_type, system, code, month), (records, patients))| {
                        let true_count = match measure {
                            api::AggregateMeasure::Records => records,
                            _ => patients.len() as u64,
                        };
                        let (count, suppressed) = crate::domain::suppression::protect(true_count);
                        api::AggregateRow {
                            resource_type,
                            code: by_code.then(|| common::Coding {
                                system,
                                code,
                                display: String::new(),
                            }),
                            effective_month: month,
                            count: i64::try_from(count).unwrap_or(i64::MAX),
                            suppressed,
                        }
                    },
                )
                .collect();
            leaf.row_count = rows.len() as i64;
            leaf.returned_count = rows.len() as i64;
            leaf.withheld_count = withheld;
            Ok(rows)
        }
        .await;
        let appended = self.audit(leaf, result.as_ref().err(), false).await?;
        let rows = result.map_err(|e| e.to_status(Some((&appended.entry_id, appended.index))))?;
        let summary = api::AggregateSummary {
            rows: rows.len() as i64,
            audit_entry_id: appended.entry_id,
            audit_index: appended.index,
        };
        let messages: Vec<Result<api::AggregateExtractResponse, Status>> = rows
            .into_iter()
            .map(|row| {
                Ok(api::AggregateExtractResponse {
                    item: Some(api::aggregate_extract_response::Item::Row(row)),
                })
            })
            .chain(std::iter::once(Ok(api::AggregateExtractResponse {
                item: Some(api::aggregate_extract_response::Item::Summary(summary)),
            })))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(
            month_of(951_782_400_000_000),
            "2000-02-29".get(..7).unwrap()
        );
        assert_eq!(month_of(1_709_251_199_000_000), "2024-02");
        assert_eq!(month_of(1_709_251_200_000_000), "2024-03");
        assert_eq!(month_of(-1), "1969-12");
    }

    #[test]
    fn periods_are_half_open() {
        assert!(in_period(None, None, None));
        assert!(!in_period(None, Some(1), None));
        assert!(in_period(Some(1), Some(1), Some(2)));
        assert!(!in_period(Some(2), Some(1), Some(2)));
    }

    #[test]
    fn codes_come_from_the_first_coding() {
        let obs = br#"{"resourceType":"Observation","code":{"coding":[{"system":"http://snomed.info/sct","code":"123"},{"code":"x"}]}}"#;
        assert_eq!(
            first_coding("Observation", obs),
            ("http://snomed.info/sct".into(), "123".into())
        );
        let med = br#"{"medicationCodeableConcept":{"coding":[{"system":"dmd","code":"9"}]}}"#;
        assert_eq!(
            first_coding("MedicationRequest", med),
            ("dmd".into(), "9".into())
        );
        assert_eq!(
            first_coding("Observation", b"{}"),
            (String::new(), String::new())
        );
    }
}
