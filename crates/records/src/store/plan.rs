//! What a batch of creates writes, planned from the request ids already known: no I/O.

use std::collections::HashMap;

use super::request_ids::{KnownRequestIds, NewRequestId};
use super::version::{CREATED, CURRENT, Version};
use crate::domain::ids::new_record_id;
use crate::domain::record::{Actor, RecordFields};

/// A record to create, validated.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub request_id: Option<String>,
    pub fields: RecordFields,
    pub requester: Actor,
}

/// What became of one create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Written as version 1.
    Created(Box<Version>),
    /// The request id was used before with the same record, which this is: nothing written.
    Deduplicated { record_id: String },
    /// The request id was used before with a different record: nothing written.
    RequestIdReused,
}

/// The request ids of `items`, to look up before planning them.
pub(super) fn request_ids_of(items: &[NewRecord]) -> Vec<String> {
    items.iter().filter_map(|i| i.request_id.clone()).collect()
}

/// What a batch of creates will write, before sequences are assigned.
pub(super) struct Plan<'a> {
    /// Per item: the index of its new version, or its outcome without a write.
    slots: Vec<Result<usize, CreateOutcome>>,
    pub(super) versions: Vec<Version>,
    /// Request ids first used by this batch.
    pub(super) new_ids: Vec<NewRequestId<'a>>,
}

impl<'a> Plan<'a> {
    pub(super) fn new(items: &'a [NewRecord], known: &KnownRequestIds, now: i64) -> Plan<'a> {
        let mut plan = Plan {
            slots: Vec::with_capacity(items.len()),
            versions: Vec::new(),
            new_ids: Vec::new(),
        };
        let mut fresh: HashMap<&str, usize> = HashMap::new(); // request id -> index in new_ids
        for item in items {
            let fingerprint = item.request_id.as_ref().map(|_| item.fields.fingerprint());
            if let (Some(request_id), Some(fingerprint)) = (&item.request_id, &fingerprint) {
                let earlier = known
                    .get(request_id.as_str())
                    .map(|(f, id)| (f, id))
                    .or_else(|| {
                        fresh
                            .get(request_id.as_str())
                            .map(|&i| (&plan.new_ids[i].1, &plan.new_ids[i].2))
                    });
                if let Some((earlier_fingerprint, record_id)) = earlier {
                    let outcome = if earlier_fingerprint == fingerprint {
                        CreateOutcome::Deduplicated {
                            record_id: record_id.clone(),
                        }
                    } else {
                        CreateOutcome::RequestIdReused
                    };
                    plan.slots.push(Err(outcome));
                    continue;
                }
            }
            let version = Version {
                record_id: new_record_id(),
                version: 1,
                seq: 0,
                creation_seq: 0,
                change_type: CREATED,
                status: CURRENT,
                retraction_reason: String::new(),
                payload_size: item.fields.payload.len() as i64,
                recorded_time: item.fields.recorded_time.unwrap_or(now),
                create_time: now,
                update_time: now,
                fields: item.fields.clone(),
                requester: item.requester.clone(),
            };
            if let (Some(request_id), Some(fingerprint)) = (&item.request_id, fingerprint) {
                fresh.insert(request_id, plan.new_ids.len());
                plan.new_ids
                    .push((request_id, fingerprint, version.record_id.clone()));
            }
            plan.slots.push(Ok(plan.versions.len()));
            plan.versions.push(version);
        }
        plan
    }

    /// Gives the new versions their sequences, consecutive from `first`, once they are reserved.
    pub(super) fn number_from(&mut self, first: i64) {
        for (j, version) in self.versions.iter_mut().enumerate() {
            version.seq = first + j as i64;
            version.creation_seq = version.seq;
        }
    }

    pub(super) fn outcomes(self) -> Vec<CreateOutcome> {
        let mut versions: Vec<Option<Version>> = self.versions.into_iter().map(Some).collect();
        self.slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => CreateOutcome::Created(Box::new(
                    versions[i].take().expect("each new version is taken once"),
                )),
                Err(outcome) => outcome,
            })
            .collect()
    }
}
