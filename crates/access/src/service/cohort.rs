//! The cohort of a research or planning extract: its request fields, the project it runs for,
//! and its patients resolved, counted and decided before anything streams.

use std::collections::{BTreeMap, HashMap};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;
use futures::StreamExt;
use tonic::Status;

use super::AccessService;
use super::parse::{Reference, validate_period, validate_types};
use super::patients::Resolved;
use super::read::types_in_scope;
use crate::config::Project;
use crate::domain::auth::{Caller, Context};
use crate::domain::decision::{self, Policy};
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

const MAX_COHORT: usize = 100_000;
/// Patients per ExportRecords call (record hosting's limit).
const EXPORT_BATCH: usize = 1000;
/// Concurrent identity look-ups while resolving a cohort.
const RESOLVE_CONCURRENCY: usize = 16;

/// The request fields extracts and aggregates share.
pub(super) struct CohortArgs {
    pub project_id: String,
    pub purpose: String,
    pub legal_basis: i32,
    pub cohort: CohortSelection,
    pub types: Vec<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

pub(super) enum CohortSelection {
    List(Vec<String>),
    Filter {
        types: Vec<String>,
        start: Option<i64>,
        end: Option<i64>,
    },
}

/// A cohort resolved, decided and ready to export.
pub(super) struct Prepared {
    pub project: Project,
    pub counts: api::CohortCounts,
    /// Per included survivor: the consent policy and every id denoting the patient.
    included: HashMap<String, (Policy, Vec<String>)>,
    /// Record owner (any id records are held under) -> survivor.
    owner_to_survivor: HashMap<String, String>,
    fetch_types: Option<Vec<String>>,
}

/// What an extract does with one exported record.
pub(super) enum Admission<'a> {
    /// Outside the period, or not an included patient's: not counted.
    Skipped,
    /// Withheld by the patient's consent: counted as withheld.
    Withheld,
    /// Disclosed, for the included patient `survivor` (every id of whom is in `ids`).
    Admitted {
        survivor: &'a str,
        ids: &'a [String],
        effective: Option<i64>,
    },
}

impl Prepared {
    /// The included patients' (survivors') ids.
    pub(super) fn included_patients(&self) -> impl Iterator<Item = &str> {
        self.included.keys().map(String::as_str)
    }

    pub(super) fn admit(&self, record: &records::Record, args: &CohortArgs) -> Admission<'_> {
        let effective = record
            .effective_time
            .as_ref()
            .and_then(crate::domain::micros);
        if !in_period(effective, args.start, args.end) {
            return Admission::Skipped;
        }
        let Some(survivor) = self.owner_to_survivor.get(&record.patient_id) else {
            return Admission::Skipped;
        };
        let Some((policy, ids)) = self.included.get(survivor) else {
            return Admission::Skipped;
        };
        if policy.withholds(&record.data_classes, effective) {
            return Admission::Withheld;
        }
        Admission::Admitted {
            survivor,
            ids,
            effective,
        }
    }

    /// The patients whose ids extracts are asked for: every id, sorted, in batches.
    pub(super) fn owner_batches(&self) -> Vec<Vec<String>> {
        let mut owners: Vec<String> = self.owner_to_survivor.keys().cloned().collect();
        owners.sort();
        owners
            .chunks(EXPORT_BATCH)
            .map(<[String]>::to_vec)
            .collect()
    }

    /// The export of one batch of owners' records, of the types the call reads.
    pub(super) fn export_request(
        &self,
        owners: Vec<String>,
        view: records::RecordView,
    ) -> records::ExportRecordsRequest {
        records::ExportRecordsRequest {
            scope: Some(records::export_records_request::Scope::Patients(
                records::PatientIdList {
                    patient_ids: owners,
                },
            )),
            resource_types: self.fetch_types.clone().unwrap_or_default(),
            view: view as i32,
            ..Default::default()
        }
    }
}

/// [`validate_cohort_args`] on the fields both extract requests name alike.
macro_rules! cohort_args {
    ($violations:expr, $request:expr) => {
        $crate::service::cohort::validate_cohort_args(
            $violations,
            &$request.project_id,
            &$request.purpose_of_use,
            $request.legal_basis,
            $request.cohort.as_ref(),
            &$request.resource_types,
            $request.effective_period.as_ref(),
        )
    };
}
pub(super) use cohort_args;

pub(super) fn validate_cohort_args(
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
                let trimmed: Vec<String> = list
                    .patient_ids
                    .iter()
                    .map(|raw| raw.trim().to_owned())
                    .collect();
                let ids = v.id_list("cohort.patient_list.patient_ids", &trimmed, MAX_COHORT);
                Some(CohortSelection::List(
                    ids.into_iter().map(Id::into_string).collect(),
                ))
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
    pub(super) async fn export(
        &self,
        request: records::ExportRecordsRequest,
        mut each: impl FnMut(records::Record) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let up = &self.inner.upstream;
        let mut stream = up.export_records(request).await?;
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
    pub(super) async fn prepare(
        &self,
        caller: &Caller,
        args: &CohortArgs,
    ) -> Result<Prepared, Error> {
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
        let resolved: Vec<Result<Option<Resolved>, Error>> = futures::stream::iter(candidates)
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
        let mut survivors: BTreeMap<String, Resolved> = BTreeMap::new();
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
        let study_id = if args.purpose == "HRESCH" {
            args.project_id.clone()
        } else {
            String::new()
        };
        let question = super::consent::Question {
            caller,
            purpose: &args.purpose,
            legal_basis: args.legal_basis,
            study_id: &study_id,
        };
        for (patient_id, decision) in self.decide_each(&question, &survivor_ids).await? {
            let policy = decision::interpret(&decision, false);
            if policy.denied {
                excluded += 1;
            } else {
                included.insert(patient_id, policy);
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

    pub(super) fn cohort_leaf(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_half_open() {
        assert!(in_period(None, None, None));
        assert!(!in_period(None, Some(1), None));
        assert!(in_period(Some(1), Some(1), Some(2)));
        assert!(!in_period(Some(2), Some(1), Some(2)));
    }
}
