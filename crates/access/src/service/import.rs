//! ImportRecords: contributions in bulk for device and batch feeds. Each request message is
//! checked item by item (request, patient, scope, consent), written to record hosting as one
//! import, audited as one entry, and only then answered with a result per item, in order.
//!
//! Patients resolved earlier in the stream are not resolved again; consent is asked afresh for
//! every message (a decision is never older than the message it governs).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::records::v1 as records;
use carerecord_platform::errors::Violations;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tonic::{Request, Status, Streaming};

use super::audited::name_patients;
use super::contribute::{
    Contributor, record_violations, validate_content, validate_contribution_reference,
};
use super::parse::Reference;
use super::read::caller_contexts;
use super::{AccessService, BoxStream};
use crate::domain::auth::{Caller, Context};
use crate::domain::decision;
use crate::error::Error;

/// The most items one request message may carry.
const MAX_ITEMS: usize = 1000;
/// Patients resolved at once.
const RESOLVE_CONCURRENCY: usize = 16;
/// Messages of one stream being written and audited at once (each waits on record hosting and
/// on the audit log's commit; one at a time left both idle between messages).
const PIPELINE: usize = 4;

/// An item's way to its record: checked, then either rejected or written.
enum Item {
    Rejected(api::ImportItemResult),
    Pending {
        request_id: String,
        reference: Option<Reference>,
        content: super::contribute::Content,
    },
}

/// One item at stream `index` checked on its own: its fields, that it names its patient, and that
/// `caller` may contribute its type in `contexts`.
fn check_item(caller: &Caller, contexts: &[Context], index: i64, item: api::ImportItem) -> Item {
    let invalid = |v| Item::Rejected(rejected(index, "INVALID_REQUEST", "", Some(v)));
    let mut v = Violations::new();
    let request_id = v.required_id("request_id", &item.request_id);
    let reference = validate_contribution_reference(&mut v, "patient", item.patient.as_ref());
    let content = validate_content(&mut v, "content", item.content.as_ref());
    let (Some(request_id), Some(content)) = (request_id, content.filter(|_| v.is_empty())) else {
        return invalid(v);
    };
    if reference.is_none() && content.nhs_number.is_none() {
        let mut v = Violations::new();
        v.add(
            "patient",
            "name the patient, or name them in the payload's subject by NHS number",
        );
        return invalid(v);
    }
    if let Err(e) = caller.require(contexts, &content.resource_type, 'c') {
        return Item::Rejected(rejected(index, e.reason(), "", None));
    }
    Item::Pending {
        request_id: request_id.into_string(),
        reference,
        content,
    }
}

/// Why an item was rejected, as the result carries it.
fn rejected(
    index: i64,
    reason: &str,
    patient_id: &str,
    v: Option<Violations>,
) -> api::ImportItemResult {
    api::ImportItemResult {
        index,
        outcome: api::ImportOutcome::Rejected as i32,
        record_id: String::new(),
        patient_id: patient_id.to_owned(),
        reason: reason.to_owned(),
        field_violations: v
            .map(|v| {
                v.iter()
                    .map(|(field, description)| common::FieldViolation {
                        field: field.to_owned(),
                        description: description.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A resolved patient as an import needs it: the current id, and whether the caller may act for
/// them (always, but for a patient-facing token acting for someone else).
#[derive(Debug, Clone)]
struct Patient {
    id: String,
    in_context: bool,
}

/// A reference's patient, or why items naming it are rejected.
type Resolution = Result<Patient, String>;

/// The key of a reference in the stream's cache of resolved patients.
fn reference_key(reference: &Reference) -> String {
    match reference {
        Reference::PatientId(id) => format!("id:{id}"),
        Reference::Nhs(n) => format!("nhs:{n}"),
        Reference::Identifier(system, value) => format!("identifier:{system}|{value}"),
        Reference::Demographics(_) => String::new(),
    }
}

impl AccessService {
    pub(super) async fn import_records(
        &self,
        request: Request<Streaming<api::ImportRecordsRequest>>,
    ) -> Result<BoxStream<api::ImportRecordsResponse>, Error> {
        let (caller, trace, mut stream) = self.authenticated(request).await?;
        let contributor = self.contributor(&caller)?;
        let contexts = caller_contexts(&caller);
        if !caller.covers_all_types(contexts, 'c') && caller.covered_types(contexts, 'c').is_empty()
        {
            return Err(Error::ScopeMissing {
                required_scope: format!("{}/*.c", contexts[0].as_str()),
            });
        }
        let first = match stream.message().await {
            Ok(Some(first)) => first,
            Ok(None) => {
                return Err(Error::invalid(
                    "purpose_of_use",
                    "the stream has no message",
                ));
            }
            Err(status) => return Err(stream_error(status)),
        };
        let mut v = Violations::new();
        super::contribute::validate_contribution_purpose(&mut v, &caller, &first.purpose_of_use);
        if first.purpose_of_use.is_empty() {
            v.add("purpose_of_use", "is required in the first message");
        }
        super::read::validate_legal_basis(&mut v, first.legal_basis, &first.purpose_of_use);
        v.into_result()?;
        let (tx, rx) = mpsc::channel::<Result<api::ImportRecordsResponse, Status>>(PIPELINE);
        let this = self.clone();
        tokio::spawn(async move {
            let mut session = Session {
                stream: Arc::new(StreamContext {
                    caller,
                    trace,
                    contributor,
                    purpose: first.purpose_of_use.clone(),
                    legal_basis: first.legal_basis,
                }),
                next_index: 0,
                patients: HashMap::new(),
            };
            // Messages are checked and their patients resolved one after another (the stream's
            // cache of patients is built in order), then written and audited several at once,
            // and answered in order.
            let mut in_flight = InFlight::default();
            let mut next = Some(first);
            let mut ended = false;
            loop {
                if let Some(message) = next.take() {
                    match this.check_message(&mut session, message.items).await {
                        Ok(prepared) => {
                            // A request id an earlier message is still writing waits for it, so
                            // the first use of an id is the one that counts.
                            let ids = prepared.request_ids();
                            while in_flight.holds_any(&ids) {
                                if !in_flight.answer_oldest(&tx).await {
                                    return;
                                }
                            }
                            let (this, stream) = (this.clone(), session.stream.clone());
                            in_flight.push(
                                tokio::spawn(
                                    async move { this.write_message(&stream, prepared).await },
                                ),
                                ids,
                            );
                        }
                        Err(e) => {
                            ended = true;
                            in_flight.push_error(e);
                        }
                    }
                }
                if ended && in_flight.is_empty() {
                    return;
                }
                tokio::select! {
                    biased;
                    Some(answer) = in_flight.answers.next(), if !in_flight.is_empty() => {
                        if !in_flight.deliver(answer, &tx).await {
                            // Messages still being written finish on their own: their items are
                            // written and audited, and a resend comes back DEDUPLICATED.
                            return;
                        }
                    }
                    message = stream.message(), if !ended && in_flight.len() < PIPELINE => {
                        match message {
                            Ok(Some(message)) => next = Some(message),
                            Ok(None) => ended = true,
                            Err(status) => {
                                ended = true;
                                in_flight.push_error(stream_error(status));
                            }
                        }
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// One request message checked: its items' stream indexes, requests, scopes and patients.
    async fn check_message(
        &self,
        session: &mut Session,
        items: Vec<api::ImportItem>,
    ) -> Result<Prepared, Error> {
        if items.len() > MAX_ITEMS {
            return Err(Error::invalid(
                "items",
                format!("at most {MAX_ITEMS} items per message, got {}", items.len()),
            ));
        }
        let base = session.next_index;
        session.next_index += items.len() as i64;
        let contexts = caller_contexts(&session.stream.caller);
        let mut checked: Vec<Item> = Vec::with_capacity(items.len());
        for (offset, item) in items.into_iter().enumerate() {
            let index = base + offset as i64;
            checked.push(check_item(&session.stream.caller, contexts, index, item));
        }
        self.resolve_all(session, &checked).await?;
        // Each pending item's patient, or its rejection.
        let mut owners: Vec<Option<String>> = Vec::with_capacity(checked.len());
        for (offset, item) in checked.iter_mut().enumerate() {
            let index = base + offset as i64;
            let Item::Pending {
                reference, content, ..
            } = item
            else {
                owners.push(None);
                continue;
            };
            let by_reference = reference
                .as_ref()
                .map(|r| session.patients[&reference_key(r)].clone());
            let by_payload = content
                .nhs_number
                .as_ref()
                .map(|n| session.patients[&reference_key(&Reference::Nhs(n.clone()))].clone());
            let owner = match (by_reference, by_payload) {
                (Some(Err(reason)), _) | (_, Some(Err(reason))) => Err((reason, None)),
                (Some(Ok(a)), Some(Ok(b))) if a.id != b.id => {
                    let mut v = Violations::new();
                    v.add(
                        "content.payload",
                        "the payload's subject names a different patient than `patient`",
                    );
                    Err(("INVALID_REQUEST".to_owned(), Some(v)))
                }
                (Some(Ok(p)), _) | (None, Some(Ok(p))) if !p.in_context => {
                    Err(("PATIENT_CONTEXT_MISMATCH".to_owned(), None))
                }
                (Some(Ok(p)), _) | (None, Some(Ok(p))) => Ok(p.id),
                (None, None) => Err(("INVALID_REQUEST".to_owned(), None)),
            };
            match owner {
                Ok(id) => owners.push(Some(id)),
                Err((reason, v)) => {
                    *item = Item::Rejected(rejected(index, &reason, "", v));
                    owners.push(None);
                }
            }
        }
        Ok(Prepared {
            base,
            checked,
            owners,
        })
    }

    /// One checked message written and audited: consent asked for its patients now, the items
    /// still standing written to record hosting as one import, then one audit entry.
    async fn write_message(
        &self,
        stream: &StreamContext,
        prepared: Prepared,
    ) -> Result<api::ImportRecordsResponse, Error> {
        let Prepared {
            base,
            mut checked,
            owners,
        } = prepared;
        let denied = self.denied_patients(stream, &owners).await?;
        // The import record hosting writes: the items still standing, in order.
        let mut writes = Vec::new();
        let mut written_index = Vec::new();
        for (offset, (item, owner)) in checked.iter_mut().zip(&owners).enumerate() {
            let index = base + offset as i64;
            let (
                Item::Pending {
                    request_id,
                    content,
                    ..
                },
                Some(owner),
            ) = (&*item, owner)
            else {
                continue;
            };
            if denied.contains_key(owner) {
                *item = Item::Rejected(rejected(index, "CONSENT_DENIED", owner, None));
                continue;
            }
            let mut record = records::Record {
                patient_id: owner.clone(),
                resource_type: content.resource_type.clone(),
                content_type: "application/fhir+json".into(),
                payload: Self::stored_payload(content, owner),
                data_classes: content.data_classes.clone(),
                authoring_organisation_ods_code: stream.contributor.organisation.clone(),
                author: content.author.clone(),
                source_system: stream.contributor.source_system.clone(),
                effective_time: content.effective_time,
                recorded_time: content.recorded_time,
                ..Default::default()
            };
            record.record_id.clear();
            writes.push(records::ImportItem {
                request_id: request_id.clone(),
                record: Some(record),
            });
            written_index.push(offset);
        }
        let mut results: Vec<Option<api::ImportItemResult>> = checked
            .into_iter()
            .map(|item| match item {
                Item::Rejected(result) => Some(result),
                Item::Pending { .. } => None,
            })
            .collect();
        let mut leaf = self.leaf(
            &stream.caller,
            &stream.trace,
            api::AuditAction::ImportRecords,
        );
        leaf.purpose_of_use = stream.purpose.clone();
        leaf.legal_basis = stream.legal_basis;
        if !writes.is_empty() {
            let answer = self
                .inner
                .upstream
                .import_records(records::ImportRecordsRequest {
                    items: writes,
                    requester: Some(stream.contributor.requester.clone()),
                    return_record_ids: true,
                })
                .await?;
            // The offset in this batch of the item record hosting answers about at `index`.
            let offset_of = |index: i64| {
                let i = usize::try_from(index).ok()?;
                written_index.get(i).copied()
            };
            for accepted in answer.accepted_records {
                let Some(offset) = offset_of(accepted.index) else {
                    continue;
                };
                let owner = owners[offset].clone().unwrap_or_default();
                let outcome = if accepted.deduplicated {
                    api::ImportOutcome::Deduplicated
                } else {
                    leaf.returned_records.push(api::RecordRef {
                        record_id: accepted.record_id.clone(),
                        version: 1,
                    });
                    api::ImportOutcome::Accepted
                };
                results[offset] = Some(api::ImportItemResult {
                    index: base + offset as i64,
                    outcome: outcome as i32,
                    record_id: accepted.record_id,
                    patient_id: owner,
                    ..Default::default()
                });
            }
            for rejection in answer.rejections {
                let Some(offset) = offset_of(rejection.index) else {
                    continue;
                };
                let owner = owners[offset].clone().unwrap_or_default();
                let result =
                    if rejection.reason == records::ImportRejectionReason::RequestIdReused as i32 {
                        rejected(base + offset as i64, "REQUEST_ID_REUSED", &owner, None)
                    } else {
                        let found = rejection
                            .field_violations
                            .into_iter()
                            .map(|f| (f.field, f.description));
                        let v = record_violations(found, "content");
                        rejected(base + offset as i64, "INVALID_REQUEST", &owner, Some(v))
                    };
                results[offset] = Some(result);
            }
        }
        let results: Vec<api::ImportItemResult> = results
            .into_iter()
            .enumerate()
            .map(|(offset, r)| {
                r.unwrap_or_else(|| rejected(base + offset as i64, "INTERNAL", "", None))
            })
            .collect();
        let mut patients: BTreeMap<String, i64> = BTreeMap::new();
        for result in &results {
            if result.outcome == api::ImportOutcome::Accepted as i32 {
                *patients.entry(result.patient_id.clone()).or_default() += 1;
            }
        }
        name_patients(&mut leaf, patients);
        leaf.returned_count = leaf.returned_records.len() as i64;
        leaf.rejected_count = results
            .iter()
            .filter(|r| r.outcome == api::ImportOutcome::Rejected as i32)
            .count() as i64;
        let appended = self.audit(leaf, None, false).await?;
        Ok(api::ImportRecordsResponse {
            results,
            audit_entry_id: appended.entry_id,
            audit_index: appended.index,
        })
    }

    /// Resolves every reference of the pending items not resolved earlier in the stream.
    async fn resolve_all(&self, session: &mut Session, items: &[Item]) -> Result<(), Error> {
        let mut wanted: Vec<Reference> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let Item::Pending {
                reference, content, ..
            } = item
            else {
                continue;
            };
            let references = reference
                .iter()
                .cloned()
                .chain(content.nhs_number.iter().map(|n| Reference::Nhs(n.clone())));
            for r in references {
                let key = reference_key(&r);
                if !session.patients.contains_key(&key) && seen.insert(key) {
                    wanted.push(r);
                }
            }
        }
        let caller = session.stream.caller.clone();
        let resolved: Vec<(String, Result<Resolution, Error>)> = futures::stream::iter(wanted)
            .map(|reference| {
                let caller = caller.clone();
                async move {
                    let key = reference_key(&reference);
                    let outcome = match self.resolve(&reference).await {
                        Ok(patient) => {
                            let in_context = !super::read::is_patient_facing(&caller)
                                || self.check_patient_context(&caller, &patient).await.is_ok();
                            Ok(Ok(Patient {
                                id: patient.id().to_owned(),
                                in_context,
                            }))
                        }
                        Err(e @ (Error::PatientNotFound { .. } | Error::PatientMatchAmbiguous)) => {
                            Ok(Err(e.reason().to_owned()))
                        }
                        Err(e) => Err(e),
                    };
                    (key, outcome)
                }
            })
            .buffer_unordered(RESOLVE_CONCURRENCY)
            .collect()
            .await;
        for (key, outcome) in resolved {
            session.patients.insert(key, outcome?);
        }
        Ok(())
    }

    /// The patients among `owners` whose decision for this stream's purpose denies, decided now.
    async fn denied_patients(
        &self,
        stream: &StreamContext,
        owners: &[Option<String>],
    ) -> Result<HashMap<String, ()>, Error> {
        let mut patients: Vec<String> = owners.iter().flatten().cloned().collect();
        patients.sort();
        patients.dedup();
        let mut denied = HashMap::new();
        if patients.is_empty() {
            return Ok(denied);
        }
        let question = super::consent::Question {
            caller: &stream.caller,
            purpose: &stream.purpose,
            legal_basis: stream.legal_basis,
            study_id: "",
        };
        for (patient, decision) in self.decide_each(&question, &patients).await? {
            if decision::patient_dissents(&decision) {
                denied.insert(patient, ());
            }
        }
        Ok(denied)
    }
}

/// What every message of a stream shares.
struct StreamContext {
    caller: Caller,
    trace: String,
    contributor: Contributor,
    purpose: String,
    legal_basis: i32,
}

/// What a stream keeps between its messages.
struct Session {
    stream: Arc<StreamContext>,
    /// The stream index of the next message's first item.
    next_index: i64,
    /// Each reference resolved so far: the patient, or the rejection reason.
    patients: HashMap<String, Resolution>,
}

type Answer = Result<api::ImportRecordsResponse, Error>;

/// The messages of a stream being written, oldest first, each with its items' request ids.
#[derive(Default)]
struct InFlight {
    answers: FuturesOrdered<tokio::task::JoinHandle<Answer>>,
    request_ids: VecDeque<HashSet<String>>,
}

impl InFlight {
    fn push(&mut self, answer: tokio::task::JoinHandle<Answer>, request_ids: HashSet<String>) {
        self.answers.push_back(answer);
        self.request_ids.push_back(request_ids);
    }

    /// An error that ends the stream, answered after the messages before it.
    fn push_error(&mut self, error: Error) {
        self.push(tokio::spawn(async move { Err(error) }), HashSet::new());
    }

    fn len(&self) -> usize {
        self.answers.len()
    }

    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    fn holds_any(&self, ids: &HashSet<String>) -> bool {
        self.request_ids.iter().any(|held| !held.is_disjoint(ids))
    }

    /// Waits for the oldest message and sends its answer, as [`InFlight::deliver`].
    async fn answer_oldest(
        &mut self,
        tx: &mpsc::Sender<Result<api::ImportRecordsResponse, Status>>,
    ) -> bool {
        match self.answers.next().await {
            Some(answer) => self.deliver(answer, tx).await,
            None => true,
        }
    }

    /// Sends the oldest message's answer (just taken from `answers`); false when the stream is
    /// over (the answer was an error, or the client went away).
    async fn deliver(
        &mut self,
        answer: Result<Answer, tokio::task::JoinError>,
        tx: &mpsc::Sender<Result<api::ImportRecordsResponse, Status>>,
    ) -> bool {
        self.request_ids.pop_front();
        let answer = answer.unwrap_or_else(|e| {
            Err(Error::Internal(format!(
                "an import message's task failed: {e}"
            )))
        });
        let failed = answer.is_err();
        tx.send(answer.map_err(Status::from)).await.is_ok() && !failed
    }
}

/// A message checked and its patients resolved, ready to be written.
struct Prepared {
    /// The stream index of its first item.
    base: i64,
    checked: Vec<Item>,
    /// Each item's patient, where it has one.
    owners: Vec<Option<String>>,
}

impl Prepared {
    /// The request ids of the items to be written.
    fn request_ids(&self) -> HashSet<String> {
        self.checked
            .iter()
            .filter_map(|item| match item {
                Item::Pending { request_id, .. } => Some(request_id.clone()),
                Item::Rejected(_) => None,
            })
            .collect()
    }
}

/// A client stream that failed mid-way: its status (an undecodable message is the client's fault).
fn stream_error(status: Status) -> Error {
    match carerecord_platform::status_policy::client_facing(
        &status,
        "/carerecord.access.v1.DataAccessService/ImportRecords",
    ) {
        Some(_) => Error::invalid("items", "a message of the stream could not be decoded"),
        None if status.code() == tonic::Code::Cancelled => Error::Cancelled,
        None => Error::Internal(format!("import stream failed: {}", status.message())),
    }
}
