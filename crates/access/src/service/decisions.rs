//! Consent decisions kept between calls ([`crate::cache`]): a decision for the same question (the
//! patient, the requester, the purpose and the legal basis, exactly as asked) is reused once a
//! check of consent's change listing, begun after the call arrived, has dropped the decisions of
//! every patient a write touched since; and only until its `valid_until` (a period that starts or
//! ends, an opt-out check that expires) and while consent's policy set is the one it was made
//! under. Break-glass decisions are always asked afresh.

use std::sync::Mutex;

use carerecord_contracts::consent::v1 as consent;
use prost::Message;

use super::AccessService;
use crate::cache::{Changes, Checked, LISTED_PER_CHECK, ValidatedCache};
use crate::upstream::Failed;

#[derive(Debug)]
pub(super) struct Decisions {
    /// By the encoded DecideRequest.
    cache: ValidatedCache<Vec<u8>, consent::Decision>,
    /// The policy set consent decided under at the last check.
    policy_set_version: Mutex<String>,
}

impl Decisions {
    pub(super) fn new(capacity: usize) -> Self {
        Decisions {
            cache: ValidatedCache::new("consent decisions", capacity),
            policy_set_version: Mutex::new(String::new()),
        }
    }

    /// What consent's listing says changed; everything when the policy set changed.
    fn changed(&self, response: consent::ListDecisionChangesResponse) -> Changes {
        let mut known = self
            .policy_set_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let policies_changed = *known != response.policy_set_version;
        if policies_changed {
            known.clone_from(&response.policy_set_version);
        }
        Changes {
            tags: response.changes.into_iter().map(|c| c.patient_id).collect(),
            next_cursor: response.next_cursor,
            more: response.more || policies_changed,
        }
    }
}

/// Whether `decision` may still be used at `now` (microseconds since the epoch); a malformed
/// `valid_until` counts as passed.
fn current(decision: &consent::Decision, now: i64) -> bool {
    match &decision.valid_until {
        None => true,
        Some(until) => crate::domain::micros(until).is_some_and(|until| now < until),
    }
}

impl AccessService {
    /// Waits for a check of the kept decisions that began after this call (see [`crate::cache`]).
    pub(super) async fn check_decisions(&self) -> Checked {
        self.inner
            .decisions
            .cache
            .validate(|after_cursor| self.consent_changes(after_cursor))
            .await
    }

    /// Consent's decision on `request`: from memory when a check (`checked`, or one run now)
    /// allows it and it is still current, else asked of consent (and kept). Break-glass requests
    /// always ask.
    pub(super) async fn decide_reusing(
        &self,
        request: consent::DecideRequest,
        checked: Option<Checked>,
    ) -> Result<consent::DecideResponse, Failed> {
        if !request.break_glass_reason.is_empty() {
            return self.inner.upstream.decide(request).await;
        }
        let decisions = &self.inner.decisions;
        let checked = match checked {
            Some(checked) => checked,
            None => self.check_decisions().await,
        };
        let key = request.encode_to_vec();
        let now = carerecord_platform::db::now_micros();
        if let Some(decision) = decisions
            .cache
            .get(checked, &key)
            .filter(|d| current(d, now))
        {
            return Ok(consent::DecideResponse {
                decision: Some(decision),
            });
        }
        let patient_id = request.patient_id.clone();
        let response = self.inner.upstream.decide(request).await?;
        if let Some(decision) = response.decision.as_ref().filter(|d| current(d, now))
            && checked != Checked::Bypass
        {
            decisions
                .cache
                .insert(checked, key, decision.clone(), vec![patient_id]);
        }
        Ok(response)
    }

    async fn consent_changes(&self, after_cursor: String) -> Result<Changes, tonic::Status> {
        let request = consent::ListDecisionChangesRequest {
            after_cursor,
            page_size: LISTED_PER_CHECK,
        };
        let listed = self.inner.upstream.list_decision_changes(request).await;
        listed
            .map(|response| self.inner.decisions.changed(response))
            .map_err(|failed| failed.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_current_until_its_valid_until() {
        let at = |seconds: i64| consent::Decision {
            valid_until: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        assert!(current(&at(10), 9_999_999));
        assert!(!current(&at(10), 10_000_000));
        assert!(current(&consent::Decision::default(), i64::MAX));
    }

    #[test]
    fn a_new_policy_set_drops_every_decision() {
        let decisions = Decisions::new(10);
        let listing = |version: &str| consent::ListDecisionChangesResponse {
            changes: vec![consent::DecisionChange {
                sequence: 1,
                patient_id: "p".into(),
            }],
            next_cursor: "c".into(),
            more: false,
            policy_set_version: version.into(),
        };
        // The first listing learns the version (nothing is kept yet).
        assert!(decisions.changed(listing("v1")).more);
        let same = decisions.changed(listing("v1"));
        assert!(!same.more);
        assert_eq!(same.tags, ["p"]);
        assert!(decisions.changed(listing("v2")).more);
    }
}
