//! The privacy officer's review queue (break-glass calls, and accesses to restricted patients'
//! records): listing events and recording reviews.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::Position;
use tonic::Request;

use super::AccessService;
use super::parse::{Reference, page_query, resume, validate_period};
use crate::error::Error;
use crate::store::{BreakGlassRow, Effect, EventFilter};

fn event_from(row: BreakGlassRow) -> api::BreakGlassEvent {
    let reviewed = row.review_outcome != 0;
    api::BreakGlassEvent {
        event_id: row.event_id,
        audit_index: row.audit_index,
        time: Some(crate::domain::timestamp(row.time_micros)),
        requester: Some(common::Requester {
            user_id: row.user_id,
            organisation_ods_code: row.organisation_ods_code,
            role_code: row.role_code,
            display_name: row.display_name,
        }),
        client_id: row.client_id,
        patient_id: row.patient_id,
        reason: row.reason,
        outcome: i32::try_from(row.outcome).unwrap_or_default(),
        returned_count: row.returned_count,
        withheld_count: row.withheld_count,
        reviewed,
        review: reviewed.then(|| api::BreakGlassReview {
            outcome: i32::try_from(row.review_outcome).unwrap_or_default(),
            notes: row.review_notes,
            reviewer: Some(common::Requester {
                user_id: row.reviewer_user_id,
                organisation_ods_code: row.reviewer_organisation_ods_code,
                role_code: row.reviewer_role_code,
                display_name: row.reviewer_display_name,
            }),
            review_time: Some(crate::domain::timestamp(row.review_time_micros)),
            audit_entry_id: row.review_entry_id,
        }),
        etag: row.etag,
        version: row.version,
        kind: i32::try_from(row.kind).unwrap_or_default(),
        action: i32::try_from(row.action).unwrap_or_default(),
        restricted_patient: row.restricted_patient != 0,
    }
}

impl AccessService {
    pub(super) async fn events(
        &self,
        request: Request<api::ListBreakGlassEventsRequest>,
    ) -> Result<api::ListBreakGlassEventsResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let (start, end) = validate_period(&mut v, "period", req.period.as_ref());
        if api::BreakGlassReviewFilter::try_from(req.review_filter).is_err() {
            v.add("review_filter", "unknown value");
        }
        if api::ReviewEventKind::try_from(req.kind).is_err() {
            v.add("kind", "unknown value");
        }
        let patient = v.optional_id("patient_id", &req.patient_id);
        let limit = v.page_size(req.page_size);
        let query = page_query("break-glass-events", &caller, &req);
        let tokens = &self.inner.config.page_tokens;
        let after = resume(tokens, &query, &req.page_token, Position::read_int)?.unwrap_or(-1);
        v.into_result()?;
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::ListBreakGlassEvents);
        leaf.purpose_of_use = "HOPERAT".into();
        self.audited(leaf, async |leaf| {
            self.require_auditor(&caller, 'r', false)?;
            let patient_ids = match &patient {
                None => Vec::new(),
                Some(id) => {
                    let reference = Reference::PatientId(id.to_string());
                    match self.resolve(&reference).await {
                        Ok(resolved) => {
                            leaf.patient_id = resolved.id().to_owned();
                            self.patient_ids(&resolved.patient).await?
                        }
                        // Events stay listable for a patient identity no longer knows.
                        Err(Error::PatientNotFound { .. }) => vec![id.to_string()],
                        Err(e) => return Err(e),
                    }
                }
            };
            let rows = self
                .inner
                .store
                .events(&EventFilter {
                    start_micros: start,
                    end_micros: end,
                    review_filter: i64::from(req.review_filter),
                    patient_ids,
                    kind: i64::from(req.kind),
                    after_index: after,
                    limit: limit.fetch_limit(),
                })
                .await?;
            let more = rows.len() > limit.get();
            let events: Vec<api::BreakGlassEvent> =
                rows.into_iter().take(limit.get()).map(event_from).collect();
            leaf.returned_count = events.len() as i64;
            let next_page_token = match (more, events.last()) {
                (true, Some(last)) => {
                    tokens.issue_at(&query, Position::new().int(last.audit_index))
                }
                _ => String::new(),
            };
            Ok(api::ListBreakGlassEventsResponse {
                events,
                next_page_token,
            })
        })
        .await
    }

    pub(super) async fn review(
        &self,
        request: Request<api::ReviewBreakGlassEventRequest>,
    ) -> Result<api::ReviewBreakGlassEventResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let event_id = v.required_id("event_id", &req.event_id);
        v.check(
            !req.etag.is_empty(),
            "etag",
            "is required: the event's current etag",
        );
        let outcome = api::BreakGlassReviewOutcome::try_from(req.outcome)
            .unwrap_or(api::BreakGlassReviewOutcome::Unspecified);
        if outcome == api::BreakGlassReviewOutcome::Unspecified {
            v.add("outcome", "is required");
        }
        let notes = req.notes.trim().to_owned();
        if notes.chars().count() > 4000 {
            v.add("notes", "must be at most 4000 characters");
        }
        if notes.is_empty()
            && matches!(
                outcome,
                api::BreakGlassReviewOutcome::Inappropriate
                    | api::BreakGlassReviewOutcome::FollowUpRequired
            )
        {
            v.add(
                "notes",
                "are required for INAPPROPRIATE and FOLLOW_UP_REQUIRED",
            );
        }
        let Some(event_id) = event_id.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let event_id = event_id.into_string();
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::ReviewBreakGlassEvent);
        leaf.purpose_of_use = "HOPERAT".into();
        leaf.related_entry_id = event_id.clone();
        leaf.review_outcome = outcome as i32;
        let checked = async {
            self.require_auditor(&caller, 'u', false)?;
            let event = self
                .inner
                .store
                .event(&event_id)
                .await?
                .ok_or_else(|| Error::BreakGlassEventNotFound(event_id.clone()))?;
            leaf.patient_id = event.patient_id.clone();
            if event.user_id == caller.user_id {
                return Err(Error::SelfReview);
            }
            if event.etag != req.etag {
                return Err(Error::EtagMismatch);
            }
            Ok(())
        }
        .await;
        if let Err(e) = checked {
            return Err(self.audited_failure(leaf, e, false).await);
        }
        let mut disclosed = leaf.clone();
        disclosed.outcome = api::AuditOutcome::Disclosed as i32;
        let effect = Effect::Review {
            event_id: event_id.clone(),
            expected_etag: req.etag.clone(),
            outcome: i64::from(outcome as i32),
            notes,
            reviewer: caller.requester(),
        };
        match self.inner.store.append(&disclosed, effect).await {
            Ok(_) => {}
            // Someone reviewed it meanwhile: the attempt is audited as failed.
            Err(Error::EtagMismatch) => {
                return Err(self.audited_failure(leaf, Error::EtagMismatch, false).await);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot append to the audit log");
                return Err(Error::AuditLogUnavailable);
            }
        }
        let event = self
            .inner
            .store
            .event(&event_id)
            .await?
            .ok_or_else(|| Error::Internal("reviewed event vanished".into()))?;
        Ok(api::ReviewBreakGlassEventResponse {
            event: Some(event_from(event)),
        })
    }
}
