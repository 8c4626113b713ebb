//! The national data opt-out: read it, and set it with compare-and-set on its etag.

use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::db::now_micros;

use super::{ConsentService, new_etag, parse, refuse_nul};
use crate::domain::time::timestamp_from_micros;
use crate::domain::validate::validate_requester;
use crate::error::{Error, OPT_OUT_RESOURCE};
use crate::store::opt_outs::OptOutRecord;

impl ConsentService {
    pub(super) async fn get_opt_out(
        &self,
        req: pb::GetNationalDataOptOutRequest,
    ) -> Result<pb::GetNationalDataOptOutResponse, Error> {
        refuse_nul(&req)?;
        let patient_id = parse(|v| v.required_id("patient_id", &req.patient_id))?;
        let record = self.store.opt_out(patient_id.as_str()).await?;
        Ok(pb::GetNationalDataOptOutResponse {
            national_data_opt_out: Some(to_proto(patient_id.as_str(), record.as_ref())),
        })
    }

    pub(super) async fn set_opt_out(
        &self,
        req: pb::SetNationalDataOptOutRequest,
    ) -> Result<pb::SetNationalDataOptOutResponse, Error> {
        refuse_nul(&req)?;
        let mut requester = req.requester;
        let patient_id = parse(|v| {
            let patient_id = v.required_id("patient_id", &req.patient_id);
            validate_requester(requester.as_mut(), "requester", false, v);
            patient_id
        })?
        .into_string();
        let current = self.store.opt_out(&patient_id).await?;
        let current_etag = current.as_ref().map_or("", |r| r.etag.as_str());
        if !req.etag.is_empty() && req.etag != current_etag {
            return Err(Error::stale(OPT_OUT_RESOURCE, patient_id));
        }
        let current_opted_out = current.as_ref().is_some_and(|r| r.opted_out);
        let record = if current_opted_out == req.opted_out {
            current
        } else {
            let expected = current.as_ref().map_or(0, |r| r.version);
            let record = OptOutRecord {
                patient_id: patient_id.clone(),
                opted_out: req.opted_out,
                version: expected + 1,
                etag: new_etag(),
                update_time: now_micros(),
                updated_by: requester.unwrap_or_default(),
            };
            if !self.store.write_opt_out(&record, expected).await? {
                return Err(Error::stale(OPT_OUT_RESOURCE, patient_id));
            }
            tracing::info!(patient_id = %patient_id, opted_out = record.opted_out, version = record.version, "national data opt-out recorded");
            Some(record)
        };
        Ok(pb::SetNationalDataOptOutResponse {
            national_data_opt_out: Some(to_proto(&patient_id, record.as_ref())),
        })
    }
}

/// A patient's opt-out as the contract shows it; never recorded reads as not opted out, version 0.
fn to_proto(patient_id: &str, record: Option<&OptOutRecord>) -> pb::NationalDataOptOut {
    match record {
        None => pb::NationalDataOptOut {
            patient_id: patient_id.to_owned(),
            ..Default::default()
        },
        Some(r) => pb::NationalDataOptOut {
            patient_id: r.patient_id.clone(),
            opted_out: r.opted_out,
            update_time: Some(timestamp_from_micros(r.update_time)),
            etag: r.etag.clone(),
            version: r.version,
            updated_by: Some(r.updated_by.clone()),
        },
    }
}
