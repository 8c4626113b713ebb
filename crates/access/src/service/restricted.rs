//! Restricted patients (identity's confidentiality marker): what a call learns about them while it
//! runs, so that its audit entry can be put in the privacy officer's review queue.
//!
//! Resolving a patient notes a restricted survivor, and a restricted candidate a postcode search
//! left out; the patient-context check notes a patient acting for their own record. The notes live
//! for one audited call (a task-local scope opened by `detached`), and [`review_kind`] reads them
//! when the call's entry is appended. Outside such a scope (streams) nothing is noted.

use std::cell::RefCell;
use std::collections::HashSet;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::identity::v1 as identity;

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// What the current call learnt about restricted patients.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Restricted patients the call resolved.
    restricted: HashSet<String>,
    /// A restricted patient a postcode search matched and left out (the caller was told nothing).
    hidden: Option<String>,
    /// The caller acts for their own record (a patient-facing token for its own patient).
    own_record: bool,
}

/// Runs `call` with fresh notes.
pub(super) async fn noting<F: std::future::Future>(call: F) -> F::Output {
    NOTES.scope(RefCell::new(Notes::default()), call).await
}

fn note(change: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|notes| change(&mut notes.borrow_mut()));
}

pub(super) fn is_restricted(patient: &identity::Patient) -> bool {
    patient.confidentiality == identity::PatientConfidentiality::Restricted as i32
}

/// A patient the call resolved: noted when restricted.
pub(super) fn resolved(patient: &identity::Patient) {
    if is_restricted(patient) {
        note(|n| {
            n.restricted.insert(patient.patient_id.clone());
        });
    }
}

/// A restricted patient a search naming a postcode matched and left out.
pub(super) fn hidden(patient_id: &str) {
    note(|n| {
        n.hidden.get_or_insert_with(|| patient_id.to_owned());
    });
}

/// The caller acts for their own record.
pub(super) fn own_record() {
    note(|n| n.own_record = true);
}

/// Whether the call's entry (`leaf`) concerns a restricted patient, and the patient the review
/// event names: the entry's own, or the one a postcode search left out.
pub(super) fn review(leaf: &api::AuditLeaf) -> Option<String> {
    NOTES
        .try_with(|notes| {
            let notes = notes.borrow();
            if notes.own_record {
                return None;
            }
            if notes.restricted.contains(&leaf.patient_id) {
                return Some(leaf.patient_id.clone());
            }
            leaf.patient_id
                .is_empty()
                .then(|| notes.hidden.clone())
                .flatten()
        })
        .ok()
        .flatten()
}

/// The actions whose calls find or read a patient's record: a restricted patient's are reviewed.
pub(super) fn reviewed_action(action: i32) -> bool {
    action == api::AuditAction::FindPatient as i32
        || action == api::AuditAction::Read as i32
        || action == api::AuditAction::BreakGlassRead as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(patient_id: &str) -> api::AuditLeaf {
        api::AuditLeaf {
            patient_id: patient_id.into(),
            ..Default::default()
        }
    }

    fn patient(id: &str, level: identity::PatientConfidentiality) -> identity::Patient {
        identity::Patient {
            patient_id: id.into(),
            confidentiality: level as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn only_restricted_patients_of_the_call_are_reviewed() {
        use identity::PatientConfidentiality::{Restricted, Unrestricted};
        noting(async {
            resolved(&patient("a", Unrestricted));
            resolved(&patient("r", Restricted));
            assert_eq!(review(&leaf("a")), None);
            assert_eq!(review(&leaf("r")).as_deref(), Some("r"));
            // Nothing resolved: only a hidden candidate names a patient.
            assert_eq!(review(&leaf("")), None);
            hidden("h");
            hidden("h2");
            assert_eq!(review(&leaf("")).as_deref(), Some("h"));
            own_record();
            assert_eq!(review(&leaf("r")), None);
        })
        .await;
        // Another call starts afresh; outside a call nothing is noted.
        noting(async { assert_eq!(review(&leaf("r")), None) }).await;
        resolved(&patient("r", Restricted));
        assert_eq!(review(&leaf("r")), None);
    }
}
