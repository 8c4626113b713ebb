//! MergePatients and UnmergePatient.

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::identity::v1::*;
use carerecord_platform::errors::Violations;

use super::IdentityService;
use super::patients::check_etag;
use super::request::{body_hash, check_reason, check_requester, required_id, valid};
use crate::domain::patient::{is_restricted, merged, unmerged};
use crate::error::Error;
use crate::store::merges::PairWrite;

impl IdentityService {
    pub(super) async fn merge(
        &self,
        request: MergePatientsRequest,
    ) -> Result<MergePatientsResponse, Error> {
        let mut v = Violations::new();
        let request_id = required_id(&mut v, "request_id", &request.request_id);
        let source_id = required_id(&mut v, "source_patient_id", &request.source_patient_id);
        let target_id = required_id(&mut v, "target_patient_id", &request.target_patient_id);
        if source_id.is_some() && source_id == target_id {
            v.add(
                "target_patient_id",
                "must differ from source_patient_id (a patient cannot be merged into itself)",
            );
        }
        check_reason(&request.reason, true, &mut v);
        check_requester(request.requester.as_ref(), &mut v);
        let ids = request_id.zip(source_id).zip(target_id);
        let ((request_id, source_id), target_id) = valid(v, ids)?;
        let hash = body_hash(
            format!(
                "{source_id}\n{target_id}\n{}\n{}\n{}",
                request.reason, request.source_etag, request.target_etag
            )
            .as_bytes(),
        );
        let mut write = self.store.begin_write().await?;
        if let Some(first) = write.request(&request_id).await? {
            if first.body_hash != hash {
                return Err(Error::RequestIdReused {
                    patient_id: first.patient_id,
                });
            }
            drop(write);
            return Ok(MergePatientsResponse {
                source_patient: self.store.version(&first.patient_id, first.version).await?,
                target_patient: self
                    .store
                    .version(&first.related_id, first.related_version)
                    .await?,
            });
        }
        let source = write.load(&source_id).await?;
        let target = write.load(&target_id).await?;
        let (source, target) = match (source, target) {
            (Some(s), Some(t)) => (s, t),
            (s, t) => {
                let mut missing = Vec::new();
                if s.is_none() {
                    missing.push(source_id);
                }
                if t.is_none() {
                    missing.push(target_id);
                }
                return Err(Error::PatientsNotFound(missing));
            }
        };
        let merged_already: Vec<(String, String)> = [&source, &target]
            .iter()
            .filter(|s| s.is_merged())
            .map(|s| {
                (
                    s.patient.patient_id.clone(),
                    s.patient.merged_into_patient_id.clone(),
                )
            })
            .collect();
        if !merged_already.is_empty() {
            return Err(Error::PatientMerged(merged_already));
        }
        // A restricted person's record must not end up behind an unrestricted survivor.
        if is_restricted(&source.patient) && !is_restricted(&target.patient) {
            return Err(Error::PatientRestricted(target_id));
        }
        for (given, stored) in [
            (&request.source_etag, &source),
            (&request.target_etag, &target),
        ] {
            if !given.is_empty() {
                check_etag(given, stored)?;
            }
        }
        let now = carerecord_platform::db::now_micros();
        let (new_source, new_target) = merged(&source.patient, &target.patient, now);
        let pair = PairWrite {
            change_type: ChangeType::Merged,
            first: (&source, &new_source),
            second: (&target, &new_target),
            requester: &request.requester.unwrap_or_default(),
            reason: request.reason.trim(),
            request: Some((&request_id, &hash)),
        };
        self.store.write_pair(write, pair).await?;
        self.written();
        tracing::info!(source = %source_id, target = %target_id, "patients merged");
        Ok(MergePatientsResponse {
            source_patient: Some(new_source),
            target_patient: Some(new_target),
        })
    }

    pub(super) async fn unmerge(
        &self,
        request: UnmergePatientRequest,
    ) -> Result<UnmergePatientResponse, Error> {
        let mut v = Violations::new();
        let id = required_id(&mut v, "patient_id", &request.patient_id);
        if request.etag.trim().is_empty() {
            v.add("etag", "is required");
        }
        check_reason(&request.reason, true, &mut v);
        check_requester(request.requester.as_ref(), &mut v);
        let id = valid(v, id)?;
        let mut write = self.store.begin_write().await?;
        let duplicate = write
            .load(&id)
            .await?
            .ok_or_else(|| Error::patient_not_found(&id))?;
        if !duplicate.is_merged() {
            return Err(Error::PatientNotMerged(id));
        }
        check_etag(&request.etag, &duplicate)?;
        let former_id = duplicate.patient.merged_into_patient_id.clone();
        let former = write
            .load(&former_id)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("merge target {former_id} missing")))?;
        let now = carerecord_platform::db::now_micros();
        let (restored, new_former) = unmerged(&duplicate.patient, &former.patient, now);
        let pair = PairWrite {
            change_type: ChangeType::Unmerged,
            first: (&duplicate, &restored),
            second: (&former, &new_former),
            requester: &request.requester.unwrap_or_default(),
            reason: request.reason.trim(),
            request: None,
        };
        self.store.write_pair(write, pair).await?;
        self.written();
        tracing::info!(patient = %id, former_target = %former_id, "patient unmerged");
        Ok(UnmergePatientResponse {
            patient: Some(restored),
            former_target_patient: Some(new_former),
        })
    }
}
