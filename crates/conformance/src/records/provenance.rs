//! Record.modified_by: who wrote each version, on every RPC that returns records.

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::records::v1::export_records_request::Scope;
use carerecord_contracts::records::v1::{
    CreateRecordRequest, ExportRecordsRequest, GetRecordRequest, ListRecordVersionsRequest,
    ListRecordsRequest, Record, RecordView, RetractRecordRequest, UpdateRecordRequest,
    WatchRecordChangesRequest,
};

use super::export::{by_patients, export_all};
use super::import::{first, import, item};
use super::support::{client, create_with, got_record, list_all, list_request, new_record};
use super::watch::{open, read_until_caught_up};
use crate::harness::{Ctx, TestResult, ensure_eq, fail, ok, present};

const VIEWS: [RecordView; 2] = [RecordView::Full, RecordView::Metadata];

/// A requester of the kit distinct in every field, so a copy of the wrong one shows.
fn writer(user: &str, ods: &str, role: &str) -> Requester {
    Requester {
        user_id: format!("conformance-kit-{user}"),
        organisation_ods_code: ods.to_owned(),
        role_code: role.to_owned(),
        display_name: format!("carerecord conformance kit ({user})"),
    }
}

/// One patient's record created by A, updated by B and retracted by C, then a record imported
/// by D.
struct Written {
    patient_id: String,
    /// Who wrote versions 1, 2 and 3 of the first record.
    authors: [Requester; 3],
    first: Record,
    importer: Requester,
    imported: Record,
}

async fn write_as_four(ctx: &Ctx) -> TestResult<Written> {
    let pid = ctx.new_patient();
    let authors = [
        writer("author", "X26", "R8000"),
        writer("editor", "RR8", "R8001"),
        writer("retractor", "A81001", "R8003"),
    ];
    let importer = writer("feed", "8KIT1", "R8008");
    let created = create_with(
        ctx,
        CreateRecordRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            record: Some(new_record(&pid)),
            requester: Some(authors[0].clone()),
        },
    )
    .await?;
    ensure_eq!(
        created.modified_by.as_ref(),
        Some(&authors[0]),
        "CreateRecord: modified_by is the create's requester"
    );
    let updated = ok(
        client(ctx)
            .update_record(UpdateRecordRequest {
                record: Some(Record {
                    record_id: created.record_id.clone(),
                    data_classes: vec!["genomic".into()],
                    ..Default::default()
                }),
                etag: created.etag.clone(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["data_classes".into()],
                }),
                requester: Some(authors[1].clone()),
            })
            .await,
        "UpdateRecord",
    )?;
    let updated = present(updated.record, "UpdateRecord: the response has no record")?;
    ensure_eq!(
        updated.modified_by.as_ref(),
        Some(&authors[1]),
        "UpdateRecord: modified_by is the update's requester"
    );
    let retracted = ok(
        client(ctx)
            .retract_record(RetractRecordRequest {
                record_id: created.record_id.clone(),
                etag: updated.etag.clone(),
                reason: "carerecord conformance kit: test data".into(),
                requester: Some(authors[2].clone()),
            })
            .await,
        "RetractRecord",
    )?;
    let retracted = present(
        retracted.record,
        "RetractRecord: the response has no record",
    )?;
    ensure_eq!(
        retracted.modified_by.as_ref(),
        Some(&authors[2]),
        "RetractRecord: modified_by is the retraction's requester"
    );
    let mut stream = first(
        vec![item(&uuid::Uuid::new_v4().to_string(), new_record(&pid))],
        true,
    );
    stream.requester = Some(importer.clone());
    let response = import(ctx, vec![stream]).await?;
    let Some(accepted) = response.accepted_records.first() else {
        fail!(
            "ImportRecords: the item was not accepted: {:?}",
            response.rejections
        )
    };
    let imported = get_in(ctx, &accepted.record_id, 0, RecordView::Full).await?;
    Ok(Written {
        patient_id: pid,
        authors,
        first: retracted,
        importer,
        imported,
    })
}

async fn get_in(ctx: &Ctx, record_id: &str, version: i64, view: RecordView) -> TestResult<Record> {
    got_record(
        client(ctx)
            .get_record(GetRecordRequest {
                record_id: record_id.to_owned(),
                version,
                view: view as i32,
            })
            .await,
        "GetRecord",
    )
}

/// The modified_by of each record, for comparison with the expected writers.
fn writers(records: &[Record]) -> Vec<Option<Requester>> {
    records.iter().map(|r| r.modified_by.clone()).collect()
}

pub(super) async fn modified_by_on_writes_and_get(ctx: Ctx) -> TestResult {
    let w = write_as_four(&ctx).await?;
    for view in VIEWS {
        for (version, author) in [(1, &w.authors[0]), (2, &w.authors[1]), (0, &w.authors[2])] {
            let record = get_in(&ctx, &w.first.record_id, version, view).await?;
            ensure_eq!(
                record.modified_by.as_ref(),
                Some(author),
                "GetRecord(version {version}, {}): modified_by",
                view.as_str_name()
            );
        }
        let imported = get_in(&ctx, &w.imported.record_id, 0, view).await?;
        ensure_eq!(
            imported.modified_by.as_ref(),
            Some(&w.importer),
            "GetRecord(an imported record, {}): modified_by is the import stream's requester",
            view.as_str_name()
        );
    }
    Ok(())
}

pub(super) async fn modified_by_everywhere(ctx: Ctx) -> TestResult {
    let w = write_as_four(&ctx).await?;
    let latest = vec![Some(w.authors[2].clone()), Some(w.importer.clone())];
    for view in VIEWS {
        let (listed, _) = list_all(
            &ctx,
            ListRecordsRequest {
                include_retracted: true,
                view: view as i32,
                ..list_request(&w.patient_id)
            },
        )
        .await?;
        ensure_eq!(
            writers(&listed),
            latest,
            "ListRecords({}): modified_by of the retracted and the imported record",
            view.as_str_name()
        );
        let exported = export_all(
            &ctx,
            ExportRecordsRequest {
                include_retracted: true,
                view: view as i32,
                ..by_patients(&[&w.patient_id])
            },
        )
        .await?;
        let records: Vec<Record> = exported.into_iter().flat_map(|m| m.records).collect();
        ensure_eq!(
            writers(&records),
            latest,
            "ExportRecords(patients, {}): modified_by",
            view.as_str_name()
        );
    }
    let window = ExportRecordsRequest {
        scope: Some(Scope::UpdatedBetween(Period {
            start: w.first.create_time,
            end: None,
        })),
        include_retracted: true,
        ..Default::default()
    };
    let ours = [w.first.record_id.as_str(), w.imported.record_id.as_str()];
    let records: Vec<Record> = export_all(&ctx, window)
        .await?
        .into_iter()
        .flat_map(|m| m.records)
        .filter(|r| ours.contains(&r.record_id.as_str()))
        .collect();
    ensure_eq!(
        writers(&records),
        latest,
        "ExportRecords(updated_between): modified_by"
    );
    let versions = ok(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: w.first.record_id.clone(),
                ..Default::default()
            })
            .await,
        "ListRecordVersions",
    )?;
    let got: Vec<(Option<Requester>, Option<Requester>)> = versions
        .versions
        .iter()
        .map(|v| {
            (
                v.record.as_ref().and_then(|r| r.modified_by.clone()),
                v.requester.clone(),
            )
        })
        .collect();
    let expected: Vec<(Option<Requester>, Option<Requester>)> = w
        .authors
        .iter()
        .rev()
        .map(|a| (Some(a.clone()), Some(a.clone())))
        .collect();
    ensure_eq!(
        got,
        expected,
        "ListRecordVersions: (record.modified_by, requester) of each version, newest first"
    );
    let mut stream = open(
        &ctx,
        WatchRecordChangesRequest {
            patient_ids: vec![w.patient_id.clone()],
            ..Default::default()
        },
    )
    .await?;
    let (changes, _) = read_until_caught_up(&mut stream).await?;
    let got: Vec<(Option<Requester>, Option<Requester>)> = changes
        .iter()
        .map(|c| {
            (
                c.record.as_ref().and_then(|r| r.modified_by.clone()),
                c.requester.clone(),
            )
        })
        .collect();
    let mut expected: Vec<(Option<Requester>, Option<Requester>)> = w
        .authors
        .iter()
        .map(|a| (Some(a.clone()), Some(a.clone())))
        .collect();
    expected.push((Some(w.importer.clone()), Some(w.importer.clone())));
    ensure_eq!(
        got,
        expected,
        "WatchRecordChanges from the beginning: (record.modified_by, requester) of each change"
    );
    Ok(())
}
