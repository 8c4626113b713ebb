//! ReadRecord and ListRecordVersions: one record by id, a version of it or its history, each
//! consent-decided for the record's patient and audited as a read.

use carerecord_contracts::access::v1::{
    DecisionOutcome, ListRecordVersionsRequest, ReadRecordRequest, ReadRecordResponse, RecordStatus,
};
use carerecord_contracts::records::v1::Record;
use tonic::Code;

use super::support::{
    Client, audited, client, ensure_audit_named, has_reason, invalid, read_record_request,
    record_hosting, record_versions, refusal, refused_audited, seed, unscoped, versions_request,
    withhold_hiv,
};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, every_page, fail, ok, present};
use crate::refusal::{Refusal, altered, refuse_each, refused};

async fn read(c: Client, record_id: &str, version: i64) -> TestResult<ReadRecordResponse> {
    let call = format!("ReadRecord(version {version})");
    ok(
        c.clone()
            .read_record(read_record_request(record_id, version))
            .await,
        &call,
    )
}

/// Writes versions 2 and 3 of `record` through record hosting, each with a new payload.
async fn two_more_versions(ctx: &Ctx, record: &Record) -> TestResult<Vec<Record>> {
    let records = record_hosting(ctx).await?;
    let mut versions = vec![record.clone()];
    for _ in 0..2 {
        let latest = versions.last().cloned().unwrap_or_default();
        let next = Record {
            record_id: record.record_id.clone(),
            ..crate::records::new_record(&record.patient_id)
        };
        versions.push(crate::records::update(&records, next, &latest.etag, &[], "kit").await?);
    }
    Ok(versions)
}

pub(super) async fn read_versions(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let versions = two_more_versions(&ctx, &s.records[0]).await?;
    let id = versions[0].record_id.as_str();
    for (asked, held) in [(0, &versions[2]), (1, &versions[0]), (3, &versions[2])] {
        let response = read(client(&ctx), id, asked).await?;
        ensure_eq!(
            response.patient_id,
            s.patient.patient_id,
            "ReadRecord(version {asked}): patient_id"
        );
        let record = present(response.record, "ReadRecord: no record")?;
        ensure_eq!(
            (
                record.record_id.as_str(),
                record.version,
                record.resource_type.as_str(),
                &record.payload,
                &record.data_classes,
                record.effective_time,
                record.source_organisation_ods_code.as_str(),
                record.status,
            ),
            (
                held.record_id.as_str(),
                held.version,
                held.resource_type.as_str(),
                &held.payload,
                &held.data_classes,
                held.effective_time,
                held.authoring_organisation_ods_code.as_str(),
                RecordStatus::Current as i32,
            ),
            "ReadRecord(version {asked}): the version as record hosting holds it"
        );
        ensure_eq!(
            record.content_type,
            "application/fhir+json; fhirVersion=4.0",
            "content_type"
        );
        ensure!(
            !record.etag.is_empty() && record.last_updated.is_some(),
            "ReadRecord(version {asked}): etag and last_updated must be set"
        );
        ensure!(
            response
                .decision
                .is_some_and(|d| d.outcome != 0 && d.outcome != DecisionOutcome::Deny as i32),
            "ReadRecord(version {asked}): a disclosing read carries a non-DENY decision"
        );
        let call = format!("ReadRecord(version {asked})");
        ensure_audit_named(&call, &response.audit_entry_id, response.audit_index)?;
    }
    Ok(())
}

pub(super) async fn read_not_found(ctx: Ctx) -> TestResult {
    let unknown = uuid::Uuid::new_v4().to_string();
    let not_found = |id: &str| refusal(Code::NotFound, "RECORD_NOT_FOUND").resource("Record", id);
    let result = client(&ctx)
        .read_record(read_record_request(&unknown, 0))
        .await;
    let call = "ReadRecord(an unknown record)";
    refused_audited(result, &not_found(&unknown), call)?;
    let list = versions_request(&unknown);
    let result = client(&ctx).list_record_versions(list).await;
    let call = "ListRecordVersions(an unknown record)";
    refused_audited(result, &not_found(&unknown), call)?;
    let s = seed(&ctx).await?;
    let id = s.records[0].record_id.as_str();
    let result = client(&ctx).read_record(read_record_request(id, 2)).await;
    let call = "ReadRecord(version 2 of a record with one)";
    refused_audited(result, &not_found(id), call).map(drop)
}

pub(super) async fn read_invalid(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    let base = read_record_request(&id, 0);
    let read = |f: fn(&mut ReadRecordRequest)| altered(&base, f);
    let table = vec![
        (
            "a malformed record_id",
            read(|r| r.record_id = "not-a-uuid".into()),
            invalid("record_id"),
        ),
        (
            "no record_id",
            read(|r| r.record_id.clear()),
            invalid("record_id"),
        ),
        (
            "a negative version",
            read(|r| r.version = -1),
            invalid("version"),
        ),
        (
            "no purpose",
            read(|r| r.purpose_of_use.clear()),
            invalid("purpose_of_use"),
        ),
        (
            "purpose ETREAT",
            read(|r| r.purpose_of_use = "ETREAT".into()),
            invalid("purpose_of_use"),
        ),
        (
            "an unknown purpose",
            read(|r| r.purpose_of_use = "TREATMENT".into()),
            invalid("purpose_of_use"),
        ),
    ];
    refuse_each!(client(&ctx), read_record, table).await?;
    let base = versions_request(&id);
    let list = |f: fn(&mut ListRecordVersionsRequest)| altered(&base, f);
    let table = vec![
        (
            "a malformed record_id",
            list(|r| r.record_id = "not-a-uuid".into()),
            invalid("record_id"),
        ),
        (
            "purpose ETREAT",
            list(|r| r.purpose_of_use = "ETREAT".into()),
            invalid("purpose_of_use"),
        ),
        (
            "a negative page size",
            list(|r| r.page_size = -1),
            invalid("page_size"),
        ),
    ];
    refuse_versions(&ctx, table).await
}

/// Sends every ListRecordVersions request of a table, each refused as its row says.
async fn refuse_versions(
    ctx: &Ctx,
    table: Vec<(&str, ListRecordVersionsRequest, Refusal)>,
) -> TestResult {
    refuse_each!(client(ctx), list_record_versions, table).await
}

pub(super) async fn list_versions(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let versions = two_more_versions(&ctx, &s.records[0]).await?;
    let id = versions[0].record_id.as_str();
    let all = record_versions(&ctx, versions_request(id), "ListRecordVersions").await?;
    let listed: Vec<(i64, &[u8])> = all
        .versions
        .iter()
        .map(|v| (v.version, v.payload.as_slice()))
        .collect();
    let held: Vec<(i64, &[u8])> = versions
        .iter()
        .rev()
        .map(|v| (v.version, v.payload.as_slice()))
        .collect();
    ensure_eq!(
        listed,
        held,
        "every version, newest first, payload byte for byte"
    );
    ensure_eq!(all.patient_id, s.patient.patient_id, "patient_id");
    ensure!(
        all.disclosure
            .is_some_and(|d| d.returned_count == 3 && d.withheld_count == 0),
        "disclosure counts three versions returned, none withheld"
    );
    ensure!(
        uuid::Uuid::parse_str(&all.audit_entry_id).is_ok() && all.next_page_token.is_empty(),
        "an audited single page"
    );
    let (got, first_token) = every_page!(
        client(&ctx),
        list_record_versions,
        "ListRecordVersions(page_size 1)",
        versions,
        10,
        ListRecordVersionsRequest {
            page_size: 1,
            ..versions_request(id)
        },
    )?;
    let got: Vec<i64> = got.iter().map(|v| v.version).collect();
    ensure_eq!(got, vec![3, 2, 1], "versions over every page");
    ensure!(
        !first_token.is_empty(),
        "three versions with page_size 1 need a next_page_token"
    );
    let table = vec![
        (
            "a tampered token",
            ListRecordVersionsRequest {
                page_size: 1,
                page_token: crate::records::tamper(&first_token),
                ..versions_request(id)
            },
            refusal(Code::InvalidArgument, "INVALID_PAGE_TOKEN"),
        ),
        (
            "a token of another record",
            ListRecordVersionsRequest {
                page_size: 1,
                page_token: first_token.clone(),
                ..versions_request(&s.records[2].record_id)
            },
            refusal(Code::InvalidArgument, "INVALID_PAGE_TOKEN"),
        ),
    ];
    refuse_versions(&ctx, table).await
}

pub(super) async fn withheld_record(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    withhold_hiv(&ctx, &s.patient.patient_id).await?;
    let (general, labelled) = (&s.records[0], &s.records[1]);
    let status = refused(
        client(&ctx)
            .read_record(read_record_request(&labelled.record_id, 0))
            .await,
        &refusal(Code::PermissionDenied, "CONSENT_DENIED"),
        "ReadRecord(a record labelled hiv, which the patient withholds)",
    )?;
    let metadata = has_reason(&status, "CONSENT_DENIED")?;
    audited(&metadata)?;
    let localized = tonic_types::StatusExt::get_details_localized_message(&status)
        .map(|l| l.message)
        .unwrap_or_default();
    let told = format!("{} {metadata:?} {localized}", status.message());
    for secret in ["hiv", labelled.resource_type.as_str()] {
        ensure!(
            !told.contains(secret),
            "the refusal must not reveal the record's type or labels ({secret:?}): {}",
            describe(&status)
        );
    }
    read(client(&ctx), &general.record_id, 0).await?;
    let history = record_versions(
        &ctx,
        versions_request(&labelled.record_id),
        "ListRecordVersions(a withheld record)",
    )
    .await?;
    ensure!(
        history.versions.is_empty(),
        "ListRecordVersions must leave out versions the decision withholds, got {} version(s)",
        history.versions.len()
    );
    let Some(disclosure) = history.disclosure else {
        fail!("ListRecordVersions: no disclosure summary")
    };
    ensure_eq!(
        (disclosure.returned_count, disclosure.withheld_count),
        (0, 1),
        "disclosure: the withheld version counted"
    );
    ensure_eq!(
        disclosure
            .withheld_by_rule
            .iter()
            .map(|w| w.count)
            .sum::<i64>(),
        1,
        "withheld_by_rule adds up to withheld_count"
    );
    Ok(())
}

pub(super) async fn scope_missing(ctx: Ctx) -> TestResult {
    let c = unscoped(&ctx)?;
    let s = seed(&ctx).await?;
    let record = &s.records[0];
    let id = record.record_id.as_str();
    let missing = || refusal(Code::PermissionDenied, "SCOPE_MISSING");
    let statuses = [
        (
            "ReadRecord(a token without Observation.r)",
            refused(
                c.clone().read_record(read_record_request(id, 0)).await,
                &missing(),
                "ReadRecord(a token without Observation.r)",
            )?,
        ),
        (
            "ListRecordVersions(a token without Observation.r)",
            refused(
                c.clone().list_record_versions(versions_request(id)).await,
                &missing(),
                "ListRecordVersions(a token without Observation.r)",
            )?,
        ),
    ];
    for (call, status) in statuses {
        let metadata = has_reason(&status, "SCOPE_MISSING")?;
        audited(&metadata)?;
        ensure!(
            metadata
                .get("required_scope")
                .is_some_and(|scope| !scope.is_empty()),
            "{call}: ErrorInfo metadata must name a required_scope, got {metadata:?}"
        );
        // The record stays undescribed: neither the message nor any detail names its type.
        let told = format!(
            "{} {}",
            status.message(),
            String::from_utf8_lossy(status.details())
        );
        ensure!(
            !told.contains(record.resource_type.as_str()),
            "{call}: the refusal must not reveal the record's type ({:?}): {}",
            record.resource_type,
            describe(&status)
        );
    }
    Ok(())
}
