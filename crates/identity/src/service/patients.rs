//! CreatePatient, BatchCreatePatients, GetPatient, UpdatePatient and ListPatientVersions.

use std::collections::HashMap;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::identity::v1::{batch_create_patients_result::Outcome, *};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{self, Position, QueryKey};
use prost::Message;

use super::IdentityService;
use super::request::{body_hash, check_reason, check_requester, required_id, valid};
use crate::convert::version_to_proto;
use crate::domain::patient::{changed_fields, stamp, update_paths, updated, writable};
use crate::domain::validate::{self, Parts};
use crate::error::Error;
use crate::store::{NewPatient, Stored};

/// The most items one BatchCreatePatients takes.
const MAX_BATCH: usize = 1000;

/// Validates one create item; violation paths are relative to the item, as the contract asks.
fn new_patient(request: &CreatePatientRequest, v: &mut Violations) -> Option<NewPatient> {
    let request_id = required_id(v, "request_id", &request.request_id);
    let Some(patient) = &request.patient else {
        v.add("patient", "is required");
        return None;
    };
    let mut normalised = patient.clone();
    validate::patient(&mut normalised, Parts::ALL, "patient", v);
    let request_id = request_id.filter(|_| v.is_empty())?;
    Some(NewPatient {
        request_id,
        body_hash: body_hash(&patient.encode_to_vec()),
        patient: writable(normalised),
    })
}

/// ETAG_MISMATCH unless `etag` is that of the stored patient.
pub(super) fn check_etag(etag: &str, stored: &Stored) -> Result<(), Error> {
    if etag == stored.patient.etag {
        return Ok(());
    }
    Err(Error::EtagMismatch {
        patient_id: stored.patient.patient_id.clone(),
        current_version: stored.patient.version,
    })
}

/// The query a ListPatientVersions page token is bound to.
fn versions_query(patient_id: &str) -> QueryKey {
    let mut query = QueryKey::new("versions");
    query.text(patient_id);
    query
}

impl IdentityService {
    pub(super) async fn create(
        &self,
        request: CreatePatientRequest,
    ) -> Result<CreatePatientResponse, Error> {
        let mut v = Violations::new();
        check_requester(request.requester.as_ref(), &mut v);
        let item = new_patient(&request, &mut v);
        let item = valid(v, item)?;
        let requester = request.requester.unwrap_or_default();
        let mut results = self.store.create(vec![Ok(item)], &requester).await?;
        let patient = results
            .pop()
            .unwrap_or_else(|| Err(Error::Corrupt("no result".into())))?;
        self.written();
        Ok(CreatePatientResponse {
            patient: Some(patient),
        })
    }

    pub(super) async fn batch_create(
        &self,
        request: BatchCreatePatientsRequest,
    ) -> Result<BatchCreatePatientsResponse, Error> {
        let mut v = Violations::new();
        if request.requests.is_empty() || request.requests.len() > MAX_BATCH {
            v.add("requests", format!("must hold 1 to {MAX_BATCH} items"));
        }
        check_requester(request.requester.as_ref(), &mut v);
        let mut seen = HashMap::new();
        for (i, item) in request.requests.iter().enumerate() {
            let id = item.request_id.trim().to_lowercase();
            if id.is_empty() {
                continue;
            }
            if let Some(first) = seen.insert(id, i) {
                v.add(
                    format!("requests[{i}].request_id"),
                    format!("repeats the request_id of requests[{first}]"),
                );
            }
        }
        v.into_result()?;
        let requester = request.requester.unwrap_or_default();
        let items: Vec<Result<NewPatient, Error>> = request
            .requests
            .iter()
            .map(|item| {
                let mut v = Violations::new();
                if let Some(r) = &item.requester
                    && *r != Requester::default()
                    && *r != requester
                {
                    v.add("requester", "must be unset or equal to the batch requester");
                }
                let new = new_patient(item, &mut v);
                match new {
                    Some(n) if v.is_empty() => Ok(n),
                    _ => Err(Error::Invalid(v)),
                }
            })
            .collect();
        let results = self.store.create(items, &requester).await?;
        self.written();
        let mut response = BatchCreatePatientsResponse::default();
        for (i, result) in results.into_iter().enumerate() {
            let outcome = match result {
                Ok(p) => {
                    response.succeeded_count += 1;
                    Outcome::Patient(p)
                }
                Err(e) if e.fails_the_batch() => return Err(e),
                Err(e) => {
                    response.failed_count += 1;
                    Outcome::Error(e.to_batch_item())
                }
            };
            response.results.push(BatchCreatePatientsResult {
                position: i as i32,
                outcome: Some(outcome),
            });
        }
        Ok(response)
    }

    /// The stored patient `id`, or NOT_FOUND.
    pub(super) async fn stored(&self, id: &str) -> Result<Stored, Error> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::patient_not_found(id))
    }

    /// The stored patient `id` for a change read at `etag`: NOT_FOUND, ETAG_MISMATCH, or
    /// PATIENT_MERGED (a merged patient changes only by unmerging).
    pub(super) async fn changeable(&self, id: &str, etag: &str) -> Result<Stored, Error> {
        let current = self.stored(id).await?;
        check_etag(etag, &current)?;
        if current.is_merged() {
            return Err(Error::PatientMerged(vec![(
                id.to_owned(),
                current.patient.merged_into_patient_id.clone(),
            )]));
        }
        Ok(current)
    }

    pub(super) async fn get(
        &self,
        request: GetPatientRequest,
    ) -> Result<GetPatientResponse, Error> {
        let mut v = Violations::new();
        let id = required_id(&mut v, "patient_id", &request.patient_id);
        let id = valid(v, id)?;
        Ok(GetPatientResponse {
            patient: Some(self.stored(&id).await?.patient),
        })
    }

    pub(super) async fn update(
        &self,
        request: UpdatePatientRequest,
    ) -> Result<UpdatePatientResponse, Error> {
        let mut v = Violations::new();
        if request.patient.is_none() {
            v.add("patient", "is required");
        }
        let input = request.patient.unwrap_or_default();
        let id = required_id(&mut v, "patient.patient_id", &input.patient_id);
        if request.etag.trim().is_empty() {
            v.add("etag", "is required");
        }
        let paths = match &request.update_mask {
            None => {
                v.add("update_mask", "is required");
                Vec::new()
            }
            Some(mask) if mask.paths.is_empty() => {
                v.add("update_mask", "must name at least one field");
                Vec::new()
            }
            Some(mask) => update_paths(&mask.paths, &mut v),
        };
        check_requester(request.requester.as_ref(), &mut v);
        check_reason(&request.reason, false, &mut v);
        let id = valid(v, id)?;
        let current = self.changeable(&id, &request.etag).await?;
        let mut new = updated(&current.patient, &input, &paths);
        let mut v = Violations::new();
        validate::patient(&mut new, Parts::ALL, "patient", &mut v);
        v.into_result()?;
        let changed = changed_fields(&current.patient, &new);
        if changed.is_empty() {
            return Ok(UpdatePatientResponse {
                patient: Some(current.patient),
            });
        }
        stamp(
            &mut new,
            current.patient.version + 1,
            carerecord_platform::db::now_micros(),
        );
        self.store
            .update(
                &current,
                &new,
                &changed,
                request.requester.as_ref().unwrap_or(&Requester::default()),
                request.reason.trim(),
            )
            .await?;
        self.written();
        Ok(UpdatePatientResponse { patient: Some(new) })
    }

    pub(super) async fn versions(
        &self,
        request: ListPatientVersionsRequest,
    ) -> Result<ListPatientVersionsResponse, Error> {
        let mut v = Violations::new();
        let id = required_id(&mut v, "patient_id", &request.patient_id);
        let size = v.page_size(request.page_size);
        let query = versions_query(id.as_deref().unwrap_or_default());
        let after = match v.page_position("page_token", &self.tokens, &query, &request.page_token) {
            None => 0,
            Some(mut position) => match position.read_int() {
                Some(version) if position.is_done() => version,
                _ => {
                    v.add("page_token", page_token::REFUSED);
                    0
                }
            },
        };
        let id = valid(v, id)?;
        self.stored(&id).await?;
        let mut rows = self.store.versions(&id, after, size.fetch_limit()).await?;
        let next_page_token = if rows.len() > size.get() {
            rows.truncate(size.get());
            let last = rows.last().map_or(after, |r| r.patient.version);
            self.tokens.issue_at(&query, Position::new().int(last))
        } else {
            String::new()
        };
        Ok(ListPatientVersionsResponse {
            versions: rows.into_iter().map(version_to_proto).collect(),
            next_page_token,
        })
    }
}
