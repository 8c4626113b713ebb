//! FollowRecordChanges: a care team told of changes to their patients' records, through record
//! hosting's change feed, with consent decided for every message at delivery and every delivery
//! audited. Notifications are id-only; a change the decision withholds is not delivered at all.
//!
//! The cursor wraps record hosting's feed cursor, bound to the request and the requester, so it is
//! as durable as the feed itself (given a stable `CARERECORD_TOKEN_SECRET`).

use std::collections::{BTreeMap, HashMap};

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::{Position, QueryKey};
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Code, Request, Status};

use super::audited::name_patients;
use super::contribute::validate_contribution_reference;
use super::parse::{Reference, page_query, resume, validate_purpose, validate_types};
use super::read::{caller_contexts, is_patient_facing, types_in_scope, validate_legal_basis};
use super::{AccessService, BoxStream};
use crate::domain::auth::Caller;
use crate::domain::decision::{self, Policy};
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

/// The most patients one stream follows.
const MAX_PATIENTS: usize = 1000;
/// The most resource types one stream follows.
const MAX_TYPES: usize = 50;
/// Patients resolved at once when a stream opens.
const RESOLVE_CONCURRENCY: usize = 16;

/// A validated follow request.
struct Follow {
    references: Vec<Reference>,
    types: Vec<String>,
    purpose: String,
    legal_basis: i32,
    after_cursor: Option<String>,
    start_at_head: bool,
    query: QueryKey,
}

/// What a delivery loop needs.
struct Delivery {
    caller: Caller,
    trace: String,
    purpose: String,
    legal_basis: i32,
    query: QueryKey,
    /// Each followed id (merged ids included) to its current patient.
    survivors: HashMap<String, String>,
}

impl AccessService {
    pub(super) async fn follow_record_changes(
        &self,
        request: Request<api::FollowRecordChangesRequest>,
    ) -> Result<BoxStream<api::FollowRecordChangesResponse>, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let follow = self.parse_follow(&caller, &req)?;
        let mut leaf = self.leaf(&caller, &trace, api::AuditAction::FollowRecordChanges);
        leaf.purpose_of_use = follow.purpose.clone();
        leaf.legal_basis = follow.legal_basis;
        leaf.resource_types = follow.types.clone();
        leaf.reference_kind = follow
            .references
            .first()
            .map_or(api::PatientReferenceKind::Unspecified, Reference::kind)
            as i32;
        let opened = self.open_follow(&caller, &follow, &mut leaf).await;
        let (upstream, survivors) = match opened {
            Ok(opened) => {
                self.audit(leaf, None, false).await?;
                opened
            }
            Err(e) => return Err(self.audited_failure(leaf, e, false).await),
        };
        let delivery = Delivery {
            caller,
            trace,
            purpose: follow.purpose,
            legal_basis: follow.legal_basis,
            query: follow.query,
            survivors,
        };
        let (tx, rx) = mpsc::channel::<Result<api::FollowRecordChangesResponse, Status>>(4);
        let this = self.clone();
        tokio::spawn(async move { this.deliver(delivery, upstream, tx).await });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    fn parse_follow(
        &self,
        caller: &Caller,
        req: &api::FollowRecordChangesRequest,
    ) -> Result<Follow, Error> {
        let mut v = Violations::new();
        if req.patients.is_empty() || req.patients.len() > MAX_PATIENTS {
            v.add(
                "patients",
                format!(
                    "follow 1 to {MAX_PATIENTS} patients, got {}",
                    req.patients.len()
                ),
            );
        }
        let mut references = Vec::new();
        for (i, patient) in req.patients.iter().enumerate().take(MAX_PATIENTS) {
            let field = format!("patients[{i}]");
            match validate_contribution_reference(&mut v, &field, Some(patient)) {
                Some(reference) => references.push(reference),
                None if patient.reference.is_none() => {
                    v.add(field, "a patient reference is required")
                }
                None => {}
            }
        }
        if req.resource_types.len() > MAX_TYPES {
            v.add("resource_types", format!("at most {MAX_TYPES} types"));
        }
        let types = validate_types(&mut v, "resource_types", &req.resource_types);
        validate_purpose(&mut v, &req.purpose_of_use);
        if req.purpose_of_use == "ETREAT" {
            v.add(
                "purpose_of_use",
                "ETREAT is not a purpose to follow a record for",
            );
        }
        if is_patient_facing(caller)
            && !req.purpose_of_use.is_empty()
            && req.purpose_of_use != "PATRQT"
        {
            v.add("purpose_of_use", "patient-facing tokens must use PATRQT");
        }
        validate_legal_basis(&mut v, req.legal_basis, &req.purpose_of_use);
        if req.start_at_head && !req.after_cursor.is_empty() {
            v.add("after_cursor", "must be empty when start_at_head is set");
        }
        v.into_result()?;
        let query = page_query("follow", caller, req);
        let after_cursor = resume(
            &self.inner.config.page_tokens,
            &query,
            &req.after_cursor,
            Position::read_text,
        )?;
        Ok(Follow {
            references,
            types,
            purpose: req.purpose_of_use.clone(),
            legal_basis: req.legal_basis,
            after_cursor,
            start_at_head: req.start_at_head,
            query,
        })
    }

    /// Resolves the patients and opens record hosting's feed for them.
    async fn open_follow(
        &self,
        caller: &Caller,
        follow: &Follow,
        leaf: &mut api::AuditLeaf,
    ) -> Result<
        (
            tonic::Streaming<records::WatchRecordChangesResponse>,
            HashMap<String, String>,
        ),
        Error,
    > {
        let patient_facing = is_patient_facing(caller);
        let contexts = caller_contexts(caller);
        let types = types_in_scope(caller, contexts, &follow.types)?;
        let resolved: Vec<Result<super::patients::Resolved, Error>> =
            futures::stream::iter(follow.references.clone())
                .map(|reference| async move { self.resolve(&reference).await })
                .buffered(RESOLVE_CONCURRENCY)
                .collect()
                .await;
        let mut survivors: HashMap<String, String> = HashMap::new();
        let mut followed: BTreeMap<String, i64> = BTreeMap::new();
        for patient in resolved {
            let patient = patient?;
            if patient_facing {
                self.check_patient_context(caller, &patient).await?;
            }
            for id in self.patient_ids(&patient.patient).await? {
                survivors.insert(id, patient.id().to_owned());
            }
            followed.insert(patient.id().to_owned(), 0);
        }
        if survivors.len() > MAX_PATIENTS {
            return Err(Error::invalid(
                "patients",
                format!(
                    "with their merged registrations, the patients name more than {MAX_PATIENTS} ids: follow fewer at once"
                ),
            ));
        }
        if followed.len() == 1 {
            leaf.patient_id = followed.keys().next().cloned().unwrap_or_default();
        }
        leaf.patients = followed
            .into_keys()
            .map(|patient_id| api::PatientRecordCount {
                patient_id,
                record_count: 0,
            })
            .collect();
        let mut ids: Vec<String> = survivors.keys().cloned().collect();
        ids.sort();
        let watch = records::WatchRecordChangesRequest {
            after_cursor: follow.after_cursor.clone().unwrap_or_default(),
            start_at_head: follow.start_at_head,
            patient_ids: ids,
            resource_types: types.unwrap_or_default(),
            view: records::RecordView::Metadata as i32,
        };
        let mut client = self.inner.upstream.records.clone();
        // No deadline: the stream lasts as long as the client listens.
        match client
            .watch_record_changes(tonic::Request::new(watch))
            .await
        {
            Ok(stream) => Ok((stream.into_inner(), survivors)),
            Err(status) => Err(watch_error(&status)),
        }
    }

    /// Forwards record hosting's feed, deciding consent for every message and auditing every
    /// delivery, until the client leaves or a dependency fails.
    async fn deliver(
        &self,
        delivery: Delivery,
        mut upstream: tonic::Streaming<records::WatchRecordChangesResponse>,
        tx: mpsc::Sender<Result<api::FollowRecordChangesResponse, Status>>,
    ) {
        loop {
            let message = tokio::select! {
                () = tx.closed() => return,
                message = upstream.message() => message,
            };
            let answer = match message {
                Ok(Some(message)) => self.delivery(&delivery, message).await,
                Ok(None) => return,
                Err(status) => Err(watch_error(&status)),
            };
            let failed = answer.is_err();
            if tx.send(answer.map_err(Status::from)).await.is_err() || failed {
                return;
            }
        }
    }

    /// One upstream message as the subscriber receives it.
    async fn delivery(
        &self,
        delivery: &Delivery,
        message: records::WatchRecordChangesResponse,
    ) -> Result<api::FollowRecordChangesResponse, Error> {
        let cursor = self
            .inner
            .config
            .page_tokens
            .issue_at(&delivery.query, Position::new().text(&message.cursor));
        let mut response = api::FollowRecordChangesResponse {
            notifications: Vec::new(),
            cursor,
            caught_up: message.caught_up,
            audit_entry_id: String::new(),
            audit_index: 0,
        };
        if message.changes.is_empty() {
            return Ok(response);
        }
        let policies = self.policies(delivery, &message.changes).await?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut leaf = self.leaf(
            &delivery.caller,
            &delivery.trace,
            api::AuditAction::FollowRecordChanges,
        );
        for change in message.changes {
            let Some(patient) = delivery.survivors.get(&change.patient_id) else {
                continue;
            };
            let Some(policy) = policies.get(patient) else {
                continue;
            };
            let record = change.record.unwrap_or_default();
            if policy.withholds_record(&record) {
                continue;
            }
            *counts.entry(patient.clone()).or_default() += 1;
            leaf.returned_records.push(api::RecordRef {
                record_id: change.record_id.clone(),
                version: change.version,
            });
            response.notifications.push(api::ChangeNotification {
                record_id: change.record_id,
                version: change.version,
                resource_type: record.resource_type,
                patient_id: patient.clone(),
                change_type: change.change_type,
                provenance: Some(api::Provenance {
                    agent: change.requester,
                    source_system: record.source_system,
                    recorded_time: change.change_time,
                }),
            });
        }
        if response.notifications.is_empty() {
            return Ok(response);
        }
        leaf.purpose_of_use = delivery.purpose.clone();
        leaf.legal_basis = delivery.legal_basis;
        leaf.returned_count = response.notifications.len() as i64;
        name_patients(&mut leaf, counts);
        let appended = self.audit(leaf, None, false).await?;
        response.audit_entry_id = appended.entry_id;
        response.audit_index = appended.index;
        Ok(response)
    }

    /// The consent policy of each patient in `changes` whose decision does not deny, decided now.
    async fn policies(
        &self,
        delivery: &Delivery,
        changes: &[records::RecordChange],
    ) -> Result<HashMap<String, Policy>, Error> {
        let mut patients: Vec<String> = changes
            .iter()
            .filter_map(|c| delivery.survivors.get(&c.patient_id).cloned())
            .collect();
        patients.sort();
        patients.dedup();
        let question = super::consent::Question {
            caller: &delivery.caller,
            purpose: &delivery.purpose,
            legal_basis: delivery.legal_basis,
            study_id: "",
        };
        Ok(self
            .decide_each(&question, &patients)
            .await?
            .into_iter()
            .map(|(patient, decision)| (patient, decision::interpret(&decision, false)))
            .filter(|(_, policy)| !policy.denied && !policy.pseudonymise)
            .collect())
    }
}

/// What record hosting's refusal of a watch means to the subscriber.
fn watch_error(status: &Status) -> Error {
    match status.code() {
        Code::FailedPrecondition => Error::CursorAheadOfFeed,
        Code::InvalidArgument => Error::InvalidPageToken,
        _ => unavailable(Dependency::Records, status),
    }
}
