//! ImportRecords: one answer per message with a result per item in order, item problems as
//! results with their reasons, a re-sent stream deduplicated, stream errors, and the audit entry
//! of each answered message.

use std::collections::BTreeMap;

use carerecord_contracts::access::v1::{
    AuditAction, ImportItem, ImportItemResult, ImportOutcome, ImportRecordsRequest,
    ImportRecordsResponse, PatientRecordCount, PatientReference,
};
use tonic::{Code, Status};

use super::support::{
    Client, by_demographics, by_id, by_nhs, content, contributor, current_ids, current_records,
    disclosed_entry, ensure_reference_inserted, invalid, naming_by_nhs, observation,
    observation_by_nhs, observation_of, register,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail};
use crate::refusal::refuse_all;

/// An item for `patient` (none: the payload names them) with an Observation and a fresh request_id.
pub(super) fn item(patient: Option<PatientReference>, payload: Vec<u8>) -> ImportItem {
    ImportItem {
        request_id: uuid::Uuid::new_v4().to_string(),
        patient,
        content: observation(payload),
    }
}

/// The first message of a stream: the purpose, and items.
pub(super) fn first_message(items: Vec<ImportItem>) -> ImportRecordsRequest {
    ImportRecordsRequest {
        purpose_of_use: "TREAT".into(),
        items,
        ..Default::default()
    }
}

/// A later message: items only.
fn later_message(items: Vec<ImportItem>) -> ImportRecordsRequest {
    ImportRecordsRequest {
        items,
        ..Default::default()
    }
}

/// Sends every message on one stream and reads every answer until the server ends the stream.
async fn import(
    mut client: Client,
    messages: Vec<ImportRecordsRequest>,
) -> Result<Vec<ImportRecordsResponse>, Status> {
    let mut stream = client
        .import_records(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let mut answers = Vec::new();
    while let Some(answer) = stream.message().await? {
        answers.push(answer);
    }
    Ok(answers)
}

/// Imports, requiring the stream to succeed; notes the records written as left behind.
pub(super) async fn import_ok(
    ctx: &Ctx,
    c: &Client,
    messages: Vec<ImportRecordsRequest>,
) -> TestResult<Vec<ImportRecordsResponse>> {
    match import(c.clone(), messages).await {
        Ok(answers) => {
            for result in answers.iter().flat_map(|a| &a.results) {
                if !result.record_id.is_empty() {
                    ctx.created("record", &result.record_id);
                }
            }
            Ok(answers)
        }
        Err(status) => fail!("ImportRecords: expected OK, got {}", describe(&status)),
    }
}

/// Every result of every answer, in the order received.
fn results(answers: &[ImportRecordsResponse]) -> Vec<&ImportItemResult> {
    answers.iter().flat_map(|a| &a.results).collect()
}

fn outcome_name(outcome: i32) -> String {
    ImportOutcome::try_from(outcome)
        .map(|o| o.as_str_name().to_owned())
        .unwrap_or_else(|_| outcome.to_string())
}

pub(super) async fn answers_in_order(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (a, b) = (register(&ctx).await?, register(&ctx).await?);
    let by_payload = observation_by_nhs(&a.nhs_number);
    let messages = vec![
        first_message(vec![
            item(by_nhs(&a.nhs_number), observation_of(&a.patient_id)),
            item(None, by_payload.clone()),
            item(by_id(&b.patient_id), observation_of(&b.patient_id)),
        ]),
        later_message(Vec::new()),
        later_message(vec![
            item(by_nhs(&b.nhs_number), observation_by_nhs(&b.nhs_number)),
            item(by_id(&a.patient_id), observation_of(&a.patient_id)),
        ]),
    ];
    let answers = import_ok(&ctx, &c, messages).await?;
    let sizes: Vec<usize> = answers.iter().map(|a| a.results.len()).collect();
    ensure_eq!(
        sizes,
        vec![3, 0, 2],
        "one answer per message, with a result per item of that message"
    );
    let all = results(&answers);
    let indexes: Vec<i64> = all.iter().map(|r| r.index).collect();
    ensure_eq!(
        indexes,
        (0..5).collect::<Vec<i64>>(),
        "result indexes, numbered on over the stream"
    );
    let owners = [
        &a.patient_id,
        &a.patient_id,
        &b.patient_id,
        &b.patient_id,
        &a.patient_id,
    ];
    for (result, owner) in all.iter().zip(owners) {
        ensure_eq!(
            (outcome_name(result.outcome), result.patient_id.as_str()),
            (outcome_name(ImportOutcome::Accepted as i32), owner.as_str()),
            "item {}: outcome and patient_id",
            result.index
        );
        ensure!(
            uuid::Uuid::parse_str(&result.record_id).is_ok(),
            "item {}: an accepted item names the record written",
            result.index
        );
    }
    let entries: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a.audit_entry_id.as_str()).collect();
    ensure!(
        entries.len() == answers.len() && entries.iter().all(|e| uuid::Uuid::parse_str(e).is_ok()),
        "each answered message has its own audit entry, got {entries:?}"
    );
    // The item whose payload alone named the patient is stored as CreateRecord stores it.
    let stored = current_records(&ctx, &a.patient_id).await?;
    let Some(record) = stored.iter().find(|r| r.record_id == all[1].record_id) else {
        fail!("the record item 1 wrote is not among the patient's records")
    };
    ensure_reference_inserted(&by_payload, &record.payload, &a.patient_id)?;
    let mut expected: Vec<String> = [0, 1, 4]
        .iter()
        .map(|&i| all[i].record_id.clone())
        .collect();
    expected.sort();
    ensure_eq!(
        current_ids(&ctx, &a.patient_id).await?,
        expected,
        "the records written for the first patient"
    );
    Ok(())
}

pub(super) async fn item_reasons(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (a, b) = (register(&ctx).await?, register(&ctx).await?);
    let unknown = crate::identity::nhs_number();
    let first = item(by_nhs(&a.nhs_number), observation_of(&a.patient_id));
    let mut malformed = item(by_id(&a.patient_id), observation_of(&a.patient_id));
    malformed.request_id = "not-a-uuid".into();
    let mut condition = item(by_nhs(&a.nhs_number), Vec::new());
    condition.content = content("Condition", naming_by_nhs("Condition", &a.nhs_number));
    let reused = ImportItem {
        content: observation(observation_of(&a.patient_id)),
        ..first.clone()
    };
    // (item, outcome, reason, field violation): the bad items between good ones.
    let rows: Vec<(ImportItem, ImportOutcome, &str, &str)> = vec![
        (
            item(by_nhs(&unknown), observation_by_nhs(&unknown)),
            ImportOutcome::Rejected,
            "PATIENT_NOT_FOUND",
            "",
        ),
        (
            item(by_id(&b.patient_id), observation_of(&b.patient_id)),
            ImportOutcome::Accepted,
            "",
            "",
        ),
        (
            malformed,
            ImportOutcome::Rejected,
            "INVALID_REQUEST",
            "request_id",
        ),
        (condition, ImportOutcome::Rejected, "SCOPE_MISSING", ""),
        (
            item(by_demographics(), observation_of(&a.patient_id)),
            ImportOutcome::Rejected,
            "INVALID_REQUEST",
            "patient.demographics",
        ),
        (
            item(by_nhs(&a.nhs_number), observation_by_nhs(&b.nhs_number)),
            ImportOutcome::Rejected,
            "INVALID_REQUEST",
            "content.payload",
        ),
        (reused, ImportOutcome::Rejected, "REQUEST_ID_REUSED", ""),
        (
            item(None, observation_by_nhs(&a.nhs_number)),
            ImportOutcome::Accepted,
            "",
            "",
        ),
    ];
    let messages = vec![
        first_message(vec![first]),
        later_message(rows.iter().map(|row| row.0.clone()).collect()),
    ];
    let answers = import_ok(&ctx, &c, messages).await?;
    let all = results(&answers);
    ensure_eq!(
        all.len(),
        rows.len() + 1,
        "a result for every item of both messages"
    );
    ensure_eq!(
        outcome_name(all[0].outcome),
        outcome_name(ImportOutcome::Accepted as i32),
        "item 0"
    );
    for (result, (_, outcome, reason, field)) in all[1..].iter().zip(&rows) {
        let index = result.index;
        let got = (outcome_name(result.outcome), result.reason.as_str());
        ensure_eq!(
            got,
            (outcome_name(*outcome as i32), *reason),
            "item {index}: outcome and reason"
        );
        if *outcome == ImportOutcome::Rejected {
            ensure!(
                result.record_id.is_empty(),
                "item {index}: a rejected item names no record"
            );
        }
        if !field.is_empty() {
            let fields: Vec<&str> = result
                .field_violations
                .iter()
                .map(|v| v.field.as_str())
                .collect();
            ensure!(
                fields.contains(field),
                "item {index}: field_violations must name `{field}`, got {fields:?}"
            );
        }
    }
    Ok(())
}

pub(super) async fn resent_deduplicated(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let (pid, nhs) = (patient.patient_id.as_str(), patient.nhs_number.as_str());
    let messages = vec![
        first_message(vec![
            item(by_nhs(nhs), observation_of(pid)),
            item(None, observation_by_nhs(nhs)),
            item(by_id(pid), observation_of(pid)),
        ]),
        later_message(vec![
            item(None, observation_by_nhs(nhs)),
            item(by_nhs(nhs), observation_of(pid)),
        ]),
    ];
    let first = import_ok(&ctx, &c, messages.clone()).await?;
    let again = import_ok(&ctx, &c, messages).await?;
    let (first, again) = (results(&first), results(&again));
    ensure_eq!(again.len(), first.len(), "a result for every re-sent item");
    for (before, now) in first.iter().zip(&again) {
        ensure_eq!(
            (
                outcome_name(now.outcome),
                now.record_id.as_str(),
                now.patient_id.as_str()
            ),
            (
                outcome_name(ImportOutcome::Deduplicated as i32),
                before.record_id.as_str(),
                before.patient_id.as_str()
            ),
            "re-sent item {}: DEDUPLICATED, naming the record written the first time",
            now.index
        );
    }
    ensure_eq!(
        current_ids(&ctx, pid).await?.len(),
        first.len(),
        "records of the patient after the stream was sent twice"
    );
    Ok(())
}

pub(super) async fn stream_errors(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let pid = uuid::Uuid::new_v4().to_string();
    let table = vec![
        (
            "no purpose in the first message",
            vec![later_message(vec![item(by_id(&pid), observation_of(&pid))])],
            invalid("purpose_of_use"),
        ),
        (
            "1001 items in a message",
            vec![first_message(vec![ImportItem::default(); 1001])],
            super::support::refusal(Code::InvalidArgument, "INVALID_REQUEST").under("items"),
        ),
    ];
    refuse_all(&c, "ImportRecords", import, table).await
}

pub(super) async fn import_entry(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (a, b) = (register(&ctx).await?, register(&ctx).await?);
    let mut malformed = item(by_id(&a.patient_id), observation_of(&a.patient_id));
    malformed.request_id = "not-a-uuid".into();
    let messages = vec![first_message(vec![
        item(by_id(&a.patient_id), observation_of(&a.patient_id)),
        item(by_id(&b.patient_id), observation_of(&b.patient_id)),
        malformed,
        item(None, observation_by_nhs(&a.nhs_number)),
    ])];
    let answers = import_ok(&ctx, &c, messages).await?;
    let Some(answer) = answers.first() else {
        fail!("ImportRecords: no answer to the message")
    };
    let (index, entry) = (answer.audit_index, &answer.audit_entry_id);
    let leaf = disclosed_entry(&ctx, index, entry, AuditAction::ImportRecords).await?;
    ensure_eq!(
        (leaf.request_id.as_str(), leaf.rejected_count),
        ("", 1),
        "request_id (none for an import) and rejected_count"
    );
    let mut written: Vec<(String, i64)> = leaf
        .returned_records
        .iter()
        .map(|r| (r.record_id.clone(), r.version))
        .collect();
    written.sort();
    let mut accepted: Vec<(String, i64)> = answer
        .results
        .iter()
        .filter(|r| r.outcome == ImportOutcome::Accepted as i32)
        .map(|r| (r.record_id.clone(), 1))
        .collect();
    accepted.sort();
    ensure_eq!(
        written,
        accepted,
        "returned_records: the accepted items' records, version 1"
    );
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    *counts.entry(a.patient_id.as_str()).or_default() += 2;
    *counts.entry(b.patient_id.as_str()).or_default() += 1;
    let expected: Vec<PatientRecordCount> = counts
        .into_iter()
        .map(|(patient_id, record_count)| PatientRecordCount {
            patient_id: patient_id.to_owned(),
            record_count,
        })
        .collect();
    ensure_eq!(
        leaf.patients,
        expected,
        "patients: each patient's records, in ascending patient_id order"
    );
    ensure_eq!(
        leaf.patient_id,
        "",
        "patient_id is empty when the entry concerns two patients"
    );
    Ok(())
}
