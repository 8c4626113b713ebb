//! CreateRecord, UpdateRecord and RetractRecord.

use carerecord_contracts::records::v1::{
    CreateRecordRequest, Record, RetractRecordRequest, UpdateRecordRequest,
};
use carerecord_platform::db::now_micros;
use carerecord_platform::errors::Violations;

use super::messages::record_message;
use super::state::RecordsService;
use crate::domain::ids::required_id;
use crate::domain::record::{
    UpdatePaths, actor, apply_update, retraction_reason, validate_new, validate_update,
};
use crate::error::Error;
use crate::store::{CreateOutcome, ENTERED_IN_ERROR, NewRecord, RETRACTED, UPDATED, Version};

/// The etag violation of an update or retraction without one.
const ETAG_REQUIRED: &str = "required: the etag of the latest version, as read";

impl RecordsService {
    pub(super) async fn create(&self, request: CreateRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let request_id = required_id(&request.request_id, "request_id", &mut violations);
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        let Some(record) = &request.record else {
            violations.add("record", "required");
            return Err(violations.into());
        };
        let fields = validate_new(
            record,
            "record",
            &self.config.rules,
            now_micros(),
            &mut violations,
        );
        violations.into_result()?;
        let outcome = self
            .writer
            .call(NewRecord {
                request_id: Some(request_id.clone()),
                fields,
                requester,
            })
            .await?;
        match outcome {
            CreateOutcome::Created(version) => Ok(record_message(*version)),
            CreateOutcome::Deduplicated { record_id } => {
                let first = self.store.get(&record_id, Some(1), true).await?;
                first.map(record_message).ok_or_else(|| {
                    Error::Internal(format!(
                        "request id {request_id} names missing record {record_id}"
                    ))
                })
            }
            CreateOutcome::RequestIdReused => Err(Error::RequestIdReused(request_id)),
        }
    }

    pub(super) async fn update(&self, request: UpdateRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let Some(record) = request.record else {
            violations.add("record", "required");
            return Err(violations.into());
        };
        let record_id = required_id(&record.record_id, "record.record_id", &mut violations);
        violations.check(!request.etag.is_empty(), "etag", ETAG_REQUIRED);
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        let mask = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let paths = UpdatePaths::from_mask(&mask, &mut violations);
        let values = validate_update(&record, paths, &self.config.rules, &mut violations);
        violations.into_result()?;

        let latest = self.writable_latest(&record_id, &request.etag).await?;
        let fields = apply_update(&latest.fields, &record, values, &self.config.rules)?;
        let next = Version {
            fields,
            change_type: UPDATED,
            requester,
            ..latest.clone()
        };
        self.append(&latest, next).await
    }

    pub(super) async fn retract(&self, request: RetractRecordRequest) -> Result<Record, Error> {
        let mut violations = Violations::new();
        let record_id = required_id(&request.record_id, "record_id", &mut violations);
        violations.check(!request.etag.is_empty(), "etag", ETAG_REQUIRED);
        retraction_reason(&request.reason, &mut violations);
        let requester = actor(request.requester.as_ref(), "requester", &mut violations);
        violations.into_result()?;

        let latest = self.writable_latest(&record_id, &request.etag).await?;
        let next = Version {
            change_type: RETRACTED,
            status: ENTERED_IN_ERROR,
            retraction_reason: request.reason,
            requester,
            ..latest.clone()
        };
        self.append(&latest, next).await
    }

    /// The latest version, checked for existence, etag and state in the contract's order.
    async fn writable_latest(&self, record_id: &str, etag: &str) -> Result<Version, Error> {
        let latest = self
            .store
            .latest_for_write(record_id)
            .await?
            .ok_or_else(|| Error::NotFound(record_id.to_owned()))?;
        if latest.etag() != etag {
            return Err(Error::EtagMismatch(record_id.to_owned()));
        }
        if latest.status == ENTERED_IN_ERROR {
            return Err(Error::Retracted(record_id.to_owned()));
        }
        Ok(latest)
    }

    /// Writes `next` after `latest`, unless another write got there first.
    async fn append(&self, latest: &Version, next: Version) -> Result<Record, Error> {
        match self.store.append_version(latest.version, next).await? {
            Some(written) => Ok(record_message(written)),
            None => Err(Error::EtagMismatch(latest.record_id.clone())),
        }
    }
}
