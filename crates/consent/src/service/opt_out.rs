//! The national data opt-out: read a patient's record, set it by hand (compare-and-set on its
//! etag), and record a batch of the national service's answers.

use std::collections::HashSet;

use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;

use super::{ConsentService, new_etag, now, parse};
use crate::domain::optout::CheckValidity;
use crate::domain::time::timestamp_from_micros;
use crate::domain::validate::{
    DATE_TIME_SKEW_NANOS, char_count, check_timestamp, validate_requester,
};
use crate::error::{Error, OPT_OUT_RESOURCE};
use crate::store::opt_outs::{CheckBatch, OptOutRecord};

/// The check source of a status set by hand without a source of its own.
pub const MANUAL_SOURCE: &str = "manual";
/// The longest source of a check, in characters.
pub const MAX_SOURCE_CHARS: usize = 200;
/// The most patients one RecordNationalDataOptOutCheck may name.
pub const MAX_CHECKED_PATIENTS: usize = 10_000;

impl ConsentService {
    pub(super) async fn get_opt_out(
        &self,
        req: pb::GetNationalDataOptOutRequest,
    ) -> Result<pb::GetNationalDataOptOutResponse, Error> {
        let patient_id = parse(|v| v.required_id("patient_id", &req.patient_id))?;
        let record = self.store.opt_out(patient_id.as_str()).await?;
        Ok(pb::GetNationalDataOptOutResponse {
            national_data_opt_out: Some(self.to_proto(patient_id.as_str(), record.as_ref())),
        })
    }

    pub(super) async fn set_opt_out(
        &self,
        req: pb::SetNationalDataOptOutRequest,
    ) -> Result<pb::SetNationalDataOptOutResponse, Error> {
        let mut requester = req.requester;
        let patient_id = parse(|v| {
            let patient_id = v.required_id("patient_id", &req.patient_id);
            validate_requester(requester.as_mut(), "requester", false, v);
            if !req.source.trim().is_empty() {
                check_source(&req.source, v);
            }
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
            let (now_us, _) = now();
            let record = OptOutRecord {
                patient_id: patient_id.clone(),
                opted_out: req.opted_out,
                version: expected + 1,
                etag: new_etag(),
                update_time: now_us,
                updated_by: requester.unwrap_or_default(),
                check_time: now_us,
                check_source: match req.source.trim() {
                    "" => MANUAL_SOURCE,
                    source => source,
                }
                .to_owned(),
            };
            if !self.store.write_opt_out(&record, expected).await? {
                return Err(Error::stale(OPT_OUT_RESOURCE, patient_id));
            }
            tracing::info!(patient_id = %patient_id, opted_out = record.opted_out, version = record.version, "national data opt-out recorded");
            Some(record)
        };
        Ok(pb::SetNationalDataOptOutResponse {
            national_data_opt_out: Some(self.to_proto(&patient_id, record.as_ref())),
        })
    }

    pub(super) async fn record_check(
        &self,
        req: pb::RecordNationalDataOptOutCheckRequest,
    ) -> Result<pb::RecordNationalDataOptOutCheckResponse, Error> {
        let (now_us, now) = now();
        let mut requester = req.requester;
        let (patients, check_time) = parse(|v| {
            let checked = checked_patients(&req.checked_patient_ids, v);
            let not_opted_out = not_opted_out(&req.not_opted_out_patient_ids, &checked, v);
            let check_time = check_time(req.check_time.as_ref(), now, self.opt_out_validity, v);
            check_source(&req.source, v);
            validate_requester(requester.as_mut(), "requester", false, v);
            let patients: Vec<(String, bool)> = checked
                .into_iter()
                .map(|id| {
                    let opted_out = !not_opted_out.contains(id.as_str());
                    (id.into_string(), opted_out)
                })
                .collect();
            Some((patients, check_time?))
        })?;
        let etags: Vec<String> = patients.iter().map(|_| new_etag()).collect();
        let updated_by = requester.unwrap_or_default();
        let written = self
            .store
            .record_checks(&CheckBatch {
                patients: &patients,
                check_time,
                source: req.source.trim(),
                update_time: now_us,
                updated_by: &updated_by,
                etags: &etags,
            })
            .await?;
        let opted_out = patients.iter().filter(|(_, out)| *out).count();
        tracing::info!(
            patients = patients.len(),
            opted_out,
            written,
            "national data opt-out check recorded"
        );
        Ok(pb::RecordNationalDataOptOutCheckResponse {
            patients_checked: count(patients.len()),
            patients_opted_out: count(opted_out),
            patients_recorded: count(written),
        })
    }

    /// A patient's opt-out as the contract shows it; never recorded reads as not opted out,
    /// version 0, never checked.
    fn to_proto(&self, patient_id: &str, record: Option<&OptOutRecord>) -> pb::NationalDataOptOut {
        match record {
            None => pb::NationalDataOptOut {
                patient_id: patient_id.to_owned(),
                ..Default::default()
            },
            Some(r) => {
                let checked = r.check_time > 0;
                pb::NationalDataOptOut {
                    patient_id: r.patient_id.clone(),
                    opted_out: r.opted_out,
                    update_time: Some(timestamp_from_micros(r.update_time)),
                    etag: r.etag.clone(),
                    version: r.version,
                    updated_by: Some(r.updated_by.clone()),
                    check_time: checked.then(|| timestamp_from_micros(r.check_time)),
                    check_source: r.check_source.clone(),
                    check_expire_time: checked
                        .then(|| timestamp_from_micros(self.opt_out_validity.expiry(r.check_time))),
                }
            }
        }
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The distinct patients of `checked_patient_ids`, 1 to [`MAX_CHECKED_PATIENTS`] entries.
fn checked_patients(raw: &[String], v: &mut Violations) -> Vec<Id> {
    if raw.is_empty() {
        v.add("checked_patient_ids", "must name at least one patient");
        return Vec::new();
    }
    v.id_list("checked_patient_ids", raw, MAX_CHECKED_PATIENTS)
}

/// The patients of `not_opted_out_patient_ids`, each of which must be among `checked`.
fn not_opted_out(raw: &[String], checked: &[Id], v: &mut Violations) -> HashSet<String> {
    let checked: HashSet<&str> = checked.iter().map(Id::as_str).collect();
    let mut ids = HashSet::with_capacity(raw.len());
    for (i, raw) in raw.iter().enumerate() {
        let field = format!("not_opted_out_patient_ids[{i}]");
        match Id::parse(raw) {
            None => v.add(field, Id::EXPECTED),
            Some(id) if !checked.contains(id.as_str()) && !checked.is_empty() => v.add(
                field,
                "is not among checked_patient_ids: the national service answers only for the numbers it was sent",
            ),
            Some(id) => {
                ids.insert(id.into_string());
            }
        }
    }
    ids
}

/// The check's time in microseconds: set, not in the future (beyond clock skew), and still valid.
fn check_time(
    raw: Option<&prost_types::Timestamp>,
    now: crate::domain::time::Instant,
    validity: CheckValidity,
    v: &mut Violations,
) -> Option<i64> {
    let Some(raw) = raw else {
        v.add(
            "check_time",
            "is required: when the national service answered",
        );
        return None;
    };
    let instant = check_timestamp(Some(raw), "check_time", v)?;
    let micros = i64::try_from(instant.div_euclid(1000)).ok()?;
    let now_us = i64::try_from(now.div_euclid(1000)).unwrap_or(i64::MAX);
    if instant > now + DATE_TIME_SKEW_NANOS {
        v.add(
            "check_time",
            "must not be more than 5 minutes in the future",
        );
        None
    } else if !validity.holds(micros, now_us) {
        v.add(
            "check_time",
            format!(
                "is older than this deployment keeps a check ({validity}): the answer may no longer be used; check again"
            ),
        );
        None
    } else {
        Some(micros)
    }
}

/// A check's source: not blank, at most [`MAX_SOURCE_CHARS`] characters.
fn check_source(raw: &str, v: &mut Violations) {
    if raw.trim().is_empty() {
        v.add("source", "is required: where the answer came from");
    } else if char_count(raw) > MAX_SOURCE_CHARS {
        v.add(
            "source",
            format!("must be at most {MAX_SOURCE_CHARS} characters"),
        );
    }
}
