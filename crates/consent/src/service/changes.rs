//! ListDecisionChanges: the patients whose decisions writes may have changed, after a cursor.

use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::change_log::Listing;

use super::{ConsentService, parse};
use crate::error::Error;

/// What the log's cursors are bound to. Holders keep cursors, so these bytes never change.
const CHANGE_LOG: &[u8] = b"carerecord.consent.v1/decision-changes";

impl ConsentService {
    pub(super) async fn list_decision_changes(
        &self,
        req: pb::ListDecisionChangesRequest,
    ) -> Result<pb::ListDecisionChangesResponse, Error> {
        let listing = parse(|v| {
            Listing::parse(
                v,
                &self.tokens,
                CHANGE_LOG,
                &req.after_cursor,
                req.page_size,
            )
        })?;
        let (changes, listed) = match listing {
            Listing::Head => (Vec::new(), vec![self.store.changes_head().await?]),
            Listing::After { sequence, limit } => {
                let changes = self.store.changes_after(sequence, limit).await?;
                let listed = changes.iter().map(|c| c.seq).collect();
                (changes, listed)
            }
        };
        let (next_cursor, more) = listing.answer(&self.tokens, CHANGE_LOG, &listed);
        Ok(pb::ListDecisionChangesResponse {
            changes: changes
                .into_iter()
                .map(|c| pb::DecisionChange {
                    sequence: c.seq,
                    patient_id: c.patient_id,
                })
                .collect(),
            next_cursor,
            more,
            policy_set_version: self.policies.version().to_owned(),
        })
    }
}
