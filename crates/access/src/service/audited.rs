//! What every call goes through: the bearer token and the trace id; and for audited calls, the
//! audit leaf, its append (with the review event it may record: break glass, or a restricted
//! patient), and the answer naming the entry.

use std::collections::BTreeMap;

use carerecord_contracts::access::v1 as api;
use tonic::Request;

use super::{AccessService, deadline_passed, restricted};
use crate::domain::auth::Caller;
use crate::error::Error;
use crate::store::{Appended, BreakGlassRow, Effect};

/// Responses that carry the id and index of the audit entry recording the call.
pub(super) trait NamesAuditEntry {
    fn name_entry(&mut self, appended: &Appended);
}

macro_rules! names_audit_entry {
    ($($response:ty),* $(,)?) => {
        $(impl NamesAuditEntry for $response {
            fn name_entry(&mut self, appended: &Appended) {
                self.audit_entry_id = appended.entry_id.clone();
                self.audit_index = appended.index;
            }
        })*
    };
}

names_audit_entry!(
    api::FindPatientResponse,
    api::ListDisclosuresResponse,
    api::CreateRecordResponse,
    api::UpdateRecordResponse,
    api::RetractRecordResponse,
    api::ReadRecordResponse,
    api::ListRecordVersionsResponse,
    api::ListConsentDirectivesResponse,
    api::CreateConsentDirectiveResponse,
    api::RevokeConsentDirectiveResponse,
    api::GetNationalDataOptOutResponse,
);

/// Listings whose contract names no entry: the entry is appended all the same.
macro_rules! names_no_audit_entry {
    ($($response:ty),* $(,)?) => {
        $(impl NamesAuditEntry for $response {
            fn name_entry(&mut self, _: &Appended) {}
        })*
    };
}

names_no_audit_entry!(
    api::ListAuditEntriesResponse,
    api::ListBreakGlassEventsResponse
);

/// The token of an `authorization: Bearer <token>` metadata value.
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Result<&str, Error> {
    let value = metadata.get("authorization").ok_or(Error::TokenMissing)?;
    let value = value
        .to_str()
        .map_err(|_| Error::TokenInvalid("not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or(Error::TokenMissing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::TokenMissing);
    }
    Ok(token.trim())
}

/// The W3C trace id of the request's `traceparent`, or a fresh one.
fn trace_id(metadata: &tonic::metadata::MetadataMap) -> String {
    let from_header = metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let parts: Vec<&str> = v.trim().split('-').collect();
            let id = *parts.get(1)?;
            let valid = parts.len() >= 4
                && id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && id.bytes().any(|b| b != b'0');
            valid.then(|| id.to_owned())
        });
    from_header.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

impl AccessService {
    /// The verified caller, or UNAUTHENTICATED; admitted by its client's limits (else
    /// RESOURCE_EXHAUSTED); for an NHS login token, with the patient it acts for (or
    /// PERMISSION_DENIED when it may act for none).
    pub(super) async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Error> {
        let token = bearer(request.metadata())?;
        let mut caller = self.inner.config.tokens.verify(token).await?;
        caller.slot = self.inner.limiter.admit(caller.client_key())?;
        if let Some(login) = &caller.nhs_login {
            caller.patient = self.nhs_login_patient(login).await?;
        }
        Ok(caller)
    }

    /// The caller, the trace id its audit entry will carry, and the message.
    pub(super) async fn authenticated<T>(
        &self,
        request: Request<T>,
    ) -> Result<(Caller, String, T), Error> {
        let caller = self.authenticate(&request).await?;
        let trace = trace_id(request.metadata());
        Ok((caller, trace, request.into_inner()))
    }

    /// A new audit leaf for a call by `caller`.
    pub(super) fn leaf(
        &self,
        caller: &Caller,
        trace_id: &str,
        action: api::AuditAction,
    ) -> api::AuditLeaf {
        api::AuditLeaf {
            entry_id: uuid::Uuid::new_v4().to_string(),
            time: Some(crate::domain::timestamp(
                carerecord_platform::db::now_micros(),
            )),
            action: action as i32,
            requester: Some(caller.requester()),
            client_id: caller.client_id.clone(),
            trace_id: trace_id.to_owned(),
            ..Default::default()
        }
    }

    /// Appends `leaf` with the outcome of the call (`error`, if it failed); a break-glass call, and
    /// a find or read of a restricted patient's record, also becomes an event for review. On
    /// failure to append, the call fails UNAVAILABLE and nothing is disclosed.
    pub(super) async fn audit(
        &self,
        mut leaf: api::AuditLeaf,
        error: Option<&Error>,
        break_glass: bool,
    ) -> Result<Appended, Error> {
        match error {
            None => {
                leaf.outcome = api::AuditOutcome::Disclosed as i32;
            }
            Some(e) => {
                leaf.outcome = if e.code() == tonic::Code::PermissionDenied {
                    api::AuditOutcome::Refused as i32
                } else {
                    api::AuditOutcome::Failed as i32
                };
                leaf.status_code = e.code() as i32;
                leaf.error_reason = e.reason().to_owned();
                // Nothing is disclosed by a failed call.
                leaf.returned_records.clear();
                leaf.returned_count = 0;
            }
        }
        // A restricted patient's find or read goes to the privacy officer's review queue.
        let restricted = restricted::reviewed_action(leaf.action)
            .then(|| restricted::review(&leaf))
            .flatten();
        let effect = match (break_glass, restricted) {
            (true, restricted) => Effect::BreakGlass(Box::new(review_event(
                &leaf,
                api::ReviewEventKind::BreakGlass,
                restricted.is_some(),
            ))),
            (false, Some(patient_id)) => {
                let mut event = review_event(&leaf, api::ReviewEventKind::RestrictedPatient, true);
                event.patient_id = patient_id;
                Effect::BreakGlass(Box::new(event))
            }
            (false, None) => Effect::None,
        };
        self.inner.store.append(&leaf, effect).await.map_err(|e| {
            tracing::error!(error = %e, "cannot append to the audit log");
            Error::AuditLogUnavailable
        })
    }

    /// Audits a failed call; the error to answer with, naming the entry when it was appended.
    pub(super) async fn audited_failure(
        &self,
        leaf: api::AuditLeaf,
        error: Error,
        break_glass: bool,
    ) -> Error {
        match self.audit(leaf, Some(&error), break_glass).await {
            Ok(appended) => error.audited(&appended.entry_id, appended.index),
            Err(unavailable) => unavailable,
        }
    }

    /// Runs `body` with the leaf of the call, then audits the call whatever the outcome and
    /// answers (see [`Self::finish`]).
    pub(super) async fn audited<T: NamesAuditEntry>(
        &self,
        mut leaf: api::AuditLeaf,
        body: impl AsyncFnOnce(&mut api::AuditLeaf) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let result = body(&mut leaf).await;
        self.finish(leaf, result, false).await
    }

    /// Audits the call and answers: the response naming its entry, or the error naming it.
    pub(super) async fn finish<T: NamesAuditEntry>(
        &self,
        leaf: api::AuditLeaf,
        result: Result<T, Error>,
        break_glass: bool,
    ) -> Result<T, Error> {
        // A client that stopped waiting received nothing: the attempt is audited as failed.
        let result = match result {
            Ok(_) if deadline_passed() => Err(Error::DeadlineExceeded),
            other => other,
        };
        match result {
            Ok(mut response) => {
                let appended = self.audit(leaf, None, break_glass).await?;
                response.name_entry(&appended);
                Ok(response)
            }
            Err(e) => Err(self.audited_failure(leaf, e, break_glass).await),
        }
    }
}

/// Names on `leaf` the patients a call disclosed records of, with how many of each (and the
/// patient, when there is only one).
pub(super) fn name_patients(leaf: &mut api::AuditLeaf, counts: BTreeMap<String, i64>) {
    if counts.len() == 1 {
        leaf.patient_id = counts.keys().next().cloned().unwrap_or_default();
    }
    leaf.patients = counts
        .into_iter()
        .map(|(patient_id, record_count)| api::PatientRecordCount {
            patient_id,
            record_count,
        })
        .collect();
}

/// The review event a call's leaf records: a break-glass read, or a restricted patient's find or
/// read.
fn review_event(
    leaf: &api::AuditLeaf,
    kind: api::ReviewEventKind,
    restricted: bool,
) -> BreakGlassRow {
    let requester = leaf.requester.clone().unwrap_or_default();
    BreakGlassRow {
        event_id: leaf.entry_id.clone(),
        time_micros: leaf
            .time
            .as_ref()
            .and_then(crate::domain::micros)
            .unwrap_or_default(),
        user_id: requester.user_id,
        organisation_ods_code: requester.organisation_ods_code,
        role_code: requester.role_code,
        display_name: requester.display_name,
        client_id: leaf.client_id.clone(),
        patient_id: leaf.patient_id.clone(),
        reason: leaf.break_glass_reason.clone(),
        outcome: i64::from(leaf.outcome),
        returned_count: leaf.returned_count,
        withheld_count: leaf.withheld_count,
        version: 1,
        etag: uuid::Uuid::new_v4().simple().to_string(),
        kind: i64::from(kind as i32),
        action: i64::from(leaf.action),
        restricted_patient: i64::from(restricted),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_traceparent_or_are_made() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_id(&md), "4bf92f3577b34da6a3ce929d0e0e4736");
        md.insert(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let made = trace_id(&md);
        assert_eq!(made.len(), 32);
        assert_ne!(made, "00000000000000000000000000000000");
    }

    #[test]
    fn bearer_metadata_is_parsed() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert!(matches!(bearer(&md), Err(Error::TokenMissing)));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&md), Err(Error::TokenMissing)));
        md.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&md).unwrap(), "abc.def.ghi");
    }
}
