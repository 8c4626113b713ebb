//! What contributions leave in the audit log and in the patient's disclosure log.

use carerecord_contracts::access::v1::{AuditAction, AuditOutcome, DisclosedRecord, RecordRef};
use tonic::Code;

use super::change::{retract_request, retracted, update_request, updated};
use super::follow::{follow, open, read_until};
use super::import::{first_message, import_ok, item};
use super::reads::disclosure_log;
use super::support::{
    audit_leaf, audited, by_nhs, client, content, contribute, contributor, create_request,
    has_reason, naming_by_nhs, observation, observation_by_nhs, observation_of, refusal, register,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq};
use crate::refusal::refused;

/// One call's expected audit entry.
struct Expected<'a> {
    call: &'a str,
    index: i64,
    action: AuditAction,
    outcome: AuditOutcome,
    request_id: &'a str,
    written: Vec<RecordRef>,
}

fn version_of(record: &DisclosedRecord) -> RecordRef {
    RecordRef {
        record_id: record.record_id.clone(),
        version: record.version,
    }
}

pub(super) async fn contribution_entries(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let (pid, nhs) = (patient.patient_id.as_str(), patient.nhs_number.as_str());
    let create = create_request(by_nhs(nhs), observation(observation_of(pid)));
    let (created, v1) = contribute(&ctx, c.clone(), create.clone()).await?;
    let next = observation(observation_by_nhs(nhs));
    let update = update_request(&v1.record_id, &v1.etag, next);
    let v2 = updated(&c, update.clone(), "UpdateRecord").await?;
    let retraction = retract_request(&v1.record_id, &v2.record.etag);
    let v3 = retracted(&c, retraction.clone(), "RetractRecord").await?;
    let condition = content("Condition", naming_by_nhs("Condition", nhs));
    let not_covered = create_request(by_nhs(nhs), condition);
    let call = "CreateRecord(a Condition, which the token cannot create)";
    let status = refused(
        c.clone().create_record(not_covered.clone()).await,
        &refusal(Code::PermissionDenied, "SCOPE_MISSING"),
        call,
    )?;
    let refused_index = audited(&has_reason(&status, "SCOPE_MISSING")?)?;
    let expectations = [
        Expected {
            call: "CreateRecord",
            index: created.audit_index,
            action: AuditAction::CreateRecord,
            outcome: AuditOutcome::Disclosed,
            request_id: &create.request_id,
            written: vec![version_of(&v1)],
        },
        Expected {
            call: "UpdateRecord",
            index: v2.index,
            action: AuditAction::UpdateRecord,
            outcome: AuditOutcome::Disclosed,
            request_id: &update.request_id,
            written: vec![version_of(&v2.record)],
        },
        Expected {
            call: "RetractRecord",
            index: v3.index,
            action: AuditAction::RetractRecord,
            outcome: AuditOutcome::Disclosed,
            request_id: &retraction.request_id,
            written: vec![version_of(&v3.record)],
        },
        Expected {
            call,
            index: refused_index,
            action: AuditAction::CreateRecord,
            outcome: AuditOutcome::Refused,
            request_id: &not_covered.request_id,
            written: Vec::new(),
        },
    ];
    for expected in expectations {
        let leaf = audit_leaf(&ctx, expected.index).await?;
        let call = expected.call;
        ensure_eq!(
            (leaf.action, leaf.outcome),
            (expected.action as i32, expected.outcome as i32),
            "{call}: the entry's action and outcome"
        );
        ensure_eq!(leaf.request_id, expected.request_id, "{call}: request_id");
        ensure_eq!(
            leaf.returned_records,
            expected.written,
            "{call}: the version written, in returned_records"
        );
        ensure_eq!(leaf.purpose_of_use, "TREAT", "{call}: purpose_of_use");
        ensure_eq!(
            leaf.requester
                .as_ref()
                .map(|r| r.organisation_ods_code.as_str()),
            Some(v1.source_organisation_ods_code.as_str()),
            "{call}: the requester's organisation, from the token"
        );
        if expected.outcome == AuditOutcome::Disclosed {
            ensure_eq!(
                (leaf.patient_id.as_str(), leaf.status_code),
                (pid, 0),
                "{call}: patient_id and status_code"
            );
        } else {
            ensure_eq!(
                (leaf.status_code, leaf.error_reason.as_str()),
                (Code::PermissionDenied as i32, "SCOPE_MISSING"),
                "{call}: status_code and error_reason"
            );
        }
    }
    Ok(())
}

pub(super) async fn disclosures_of_contributions(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let nhs = patient.nhs_number.as_str();
    let mut stream = open(&client(&ctx), follow(&patient.patient_id, "")).await?;
    let create = create_request(by_nhs(nhs), observation(observation_by_nhs(nhs)));
    let (created, v1) = contribute(&ctx, c.clone(), create).await?;
    let next = observation(observation_by_nhs(nhs));
    let update = update_request(&v1.record_id, &v1.etag, next);
    let v2 = updated(&c, update, "UpdateRecord").await?;
    let retraction = retract_request(&v1.record_id, &v2.record.etag);
    let v3 = retracted(&c, retraction, "RetractRecord").await?;
    let items = vec![item(None, observation_by_nhs(nhs))];
    let imported = import_ok(&ctx, &c, vec![first_message(items)]).await?;
    let delivered = read_until(&mut stream, "the contributions", |d| {
        !d.notifications.is_empty()
    })
    .await?;
    let notified = delivered
        .messages
        .iter()
        .find(|m| !m.notifications.is_empty())
        .map_or(String::new(), |m| m.audit_entry_id.clone());
    let log = disclosure_log(&ctx, &patient.patient_id).await?;
    let listed: Vec<(&str, i32, &str)> = log
        .disclosures
        .iter()
        .map(|d| {
            (
                d.audit_entry_id.as_str(),
                d.action,
                d.requester
                    .as_ref()
                    .map_or("", |r| r.organisation_ods_code.as_str()),
            )
        })
        .collect();
    let organisation = v1.source_organisation_ods_code.as_str();
    let import_entry = imported.first().map_or("", |r| r.audit_entry_id.as_str());
    ensure!(
        listed.iter().any(|(entry, action, _)| *entry == notified
            && *action == AuditAction::FollowRecordChanges as i32),
        "ListDisclosures must list the delivery of the notifications (FOLLOW_RECORD_CHANGES, entry {notified}), got {listed:?}"
    );
    for (what, entry, action) in [
        (
            "the create",
            created.audit_entry_id.as_str(),
            AuditAction::CreateRecord,
        ),
        (
            "the update",
            v2.entry_id.as_str(),
            AuditAction::UpdateRecord,
        ),
        (
            "the retraction",
            v3.entry_id.as_str(),
            AuditAction::RetractRecord,
        ),
        ("the import", import_entry, AuditAction::ImportRecords),
    ] {
        ensure!(
            listed.contains(&(entry, action as i32, organisation)),
            "ListDisclosures must list {what} ({action:?}, entry {entry}) by organisation {organisation}, got {listed:?}"
        );
    }
    Ok(())
}
