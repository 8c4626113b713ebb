//! ImportRecords: per-item rejections, idempotency shared with CreateRecord, stream errors.

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::{
    ImportItem, ImportRecordsRequest, ImportRecordsResponse, ImportRejectionReason,
    ListRecordVersionsRequest, Record,
};
use tonic::Code;

use super::support::{
    client, create_request, create_with, ensure_nothing_written, get, ids, list_all, list_request,
    new_record, requester, reused_request_id,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, fail, ok};
use crate::refusal::{Refusal, refuse_all, refused};

pub(super) fn item(request_id: &str, record: Record) -> ImportItem {
    ImportItem {
        request_id: request_id.to_owned(),
        record: Some(record),
    }
}

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) async fn import(
    ctx: &Ctx,
    messages: Vec<ImportRecordsRequest>,
) -> TestResult<ImportRecordsResponse> {
    let response = ok(
        client(ctx)
            .import_records(tokio_stream::iter(messages))
            .await,
        "ImportRecords",
    )?;
    for accepted in &response.accepted_records {
        ctx.created("record", &accepted.record_id);
    }
    Ok(response)
}

pub(super) fn first(items: Vec<ImportItem>, return_ids: bool) -> ImportRecordsRequest {
    ImportRecordsRequest {
        items,
        requester: Some(requester("import")),
        return_record_ids: return_ids,
    }
}

fn more(items: Vec<ImportItem>) -> ImportRecordsRequest {
    ImportRecordsRequest {
        items,
        ..Default::default()
    }
}

/// Two messages: valid, invalid payload, valid | unknown data class, valid without request_id.
fn mixed(pid: &str, rids: &[String; 4]) -> Vec<ImportRecordsRequest> {
    let bad_payload = Record {
        payload: b"{\"resourceType\":\"Observation\"}".to_vec(),
        ..new_record(pid)
    };
    let bad_class = Record {
        data_classes: vec!["nonsense".into()],
        ..new_record(pid)
    };
    vec![
        first(
            vec![
                item(&rids[0], new_record(pid)),
                item(&rids[1], bad_payload),
                item(&rids[2], new_record(pid)),
            ],
            true,
        ),
        more(vec![item(&rids[3], bad_class), item("", new_record(pid))]),
    ]
}

pub(super) async fn import_mixed(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let rids = [rid(), rid(), rid(), rid()];
    let response = import(&ctx, mixed(&pid, &rids)).await?;
    ensure_eq!(response.accepted_count, 3, "accepted_count");
    ensure_eq!(response.deduplicated_count, 0, "deduplicated_count");
    ensure_eq!(response.rejected_count, 2, "rejected_count");
    ensure!(!response.rejections_truncated, "rejections_truncated");
    let rejections: Vec<(i64, String, i32)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.request_id.clone(), r.reason))
        .collect();
    ensure_eq!(
        rejections,
        vec![
            (
                1,
                rids[1].clone(),
                ImportRejectionReason::InvalidRecord as i32
            ),
            (
                3,
                rids[3].clone(),
                ImportRejectionReason::InvalidRecord as i32
            )
        ],
        "rejections (index, request_id, reason)"
    );
    let fields = |i: usize| {
        response.rejections[i]
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect::<Vec<_>>()
    };
    ensure!(
        fields(0).iter().any(|f| f == "record.payload"),
        "rejection 1 must name `record.payload`, got {:?}",
        fields(0)
    );
    ensure!(
        fields(1).iter().any(|f| f == "record.data_classes[0]"),
        "rejection 3 must name `record.data_classes[0]`, got {:?}",
        fields(1)
    );
    let accepted: Vec<(i64, bool)> = response
        .accepted_records
        .iter()
        .map(|a| (a.index, a.deduplicated))
        .collect();
    ensure_eq!(
        accepted,
        vec![(0, false), (2, false), (4, false)],
        "accepted_records (index, deduplicated)"
    );
    ensure!(
        !response.accepted_records_truncated,
        "accepted_records_truncated"
    );
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    let imported: Vec<String> = response
        .accepted_records
        .iter()
        .map(|a| a.record_id.clone())
        .collect();
    ensure_eq!(
        ids(&listed),
        imported,
        "the patient's records are exactly the accepted items, in index order"
    );
    Ok(())
}

pub(super) async fn import_resend(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let rids = [rid(), rid(), rid(), rid()];
    let messages = mixed(&pid, &rids);
    let once = import(&ctx, messages.clone()).await?;
    let twice = import(&ctx, messages).await?;
    ensure_eq!(
        twice.accepted_count,
        3,
        "accepted_count of the re-sent stream"
    );
    ensure_eq!(
        twice.deduplicated_count,
        2,
        "deduplicated_count (the two valid items with request_ids)"
    );
    ensure_eq!(twice.rejected_count, 2, "rejected_count");
    let dedup: Vec<(i64, String, bool)> = twice
        .accepted_records
        .iter()
        .map(|a| (a.index, a.record_id.clone(), a.deduplicated))
        .collect();
    ensure_eq!(
        dedup[..2].to_vec(),
        vec![
            (0, once.accepted_records[0].record_id.clone(), true),
            (2, once.accepted_records[1].record_id.clone(), true),
        ],
        "deduplicated items return the records created the first time"
    );
    // The item without request_id is not idempotent: it is written again.
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        listed.len(),
        4,
        "records after the re-send (3 + the item without request_id)"
    );
    for r in &listed[..2] {
        ensure_eq!(r.version, 1, "a deduplicated item writes no new version");
    }
    Ok(())
}

pub(super) async fn import_shared_request_ids(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let request = create_request(new_record(&pid));
    let created = create_with(&ctx, request.clone()).await?;
    let Some(same) = request.record.clone() else {
        fail!("no record")
    };
    let shared = rid();
    let response = import(
        &ctx,
        vec![first(
            vec![
                item(&request.request_id, same),
                item(&request.request_id, new_record(&pid)),
                item(&shared, new_record(&pid)),
                item(&shared, new_record(&pid)),
            ],
            true,
        )],
    )
    .await?;
    ensure_eq!(
        (
            response.accepted_count,
            response.deduplicated_count,
            response.rejected_count
        ),
        (2, 1, 2),
        "(accepted, deduplicated, rejected)"
    );
    ensure_eq!(
        response
            .accepted_records
            .first()
            .map(|a| (a.index, a.record_id.clone(), a.deduplicated)),
        Some((0, created.record_id.clone(), true)),
        "the item repeating a CreateRecord"
    );
    let rejections: Vec<(i64, i32)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.reason))
        .collect();
    ensure_eq!(
        rejections,
        vec![
            (1, ImportRejectionReason::RequestIdReused as i32),
            (3, ImportRejectionReason::RequestIdReused as i32)
        ],
        "rejections (index, reason): reuse against CreateRecord and within the stream"
    );
    // And the other way: CreateRecord with an import item's request_id and another record.
    let mut reuse = create_request(new_record(&pid));
    reuse.request_id = shared;
    refused(
        client(&ctx).create_record(reuse).await,
        &reused_request_id(),
        "CreateRecord(an import item's request_id, another record)",
    )?;
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        listed.len(),
        2,
        "records of the patient (the create and one import item)"
    );
    Ok(())
}

pub(super) async fn import_order_and_requester(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let items: Vec<ImportItem> = (0..25).map(|_| item(&rid(), new_record(&pid))).collect();
    let payloads: Vec<Vec<u8>> = items
        .iter()
        .filter_map(|i| i.record.as_ref().map(|r| r.payload.clone()))
        .collect();
    let response = import(
        &ctx,
        vec![
            first(items[..10].to_vec(), false),
            more(items[10..].to_vec()),
        ],
    )
    .await?;
    ensure_eq!(response.accepted_count, 25, "accepted_count");
    ensure!(
        response.accepted_records.is_empty(),
        "accepted_records must be empty without return_record_ids"
    );
    ensure!(
        !response.accepted_records_truncated,
        "accepted_records_truncated without return_record_ids"
    );
    let (listed, _) = list_all(&ctx, list_request(&pid)).await?;
    for r in &listed {
        ctx.created("record", &r.record_id);
    }
    let got: Vec<Vec<u8>> = listed.iter().map(|r| r.payload.clone()).collect();
    ensure!(
        got == payloads,
        "records in creation order must match item order ({} records)",
        got.len()
    );
    let Some(one) = listed.first() else {
        fail!("no record imported")
    };
    let versions = ok(
        client(&ctx)
            .list_record_versions(ListRecordVersionsRequest {
                record_id: one.record_id.clone(),
                ..Default::default()
            })
            .await,
        "ListRecordVersions",
    )?;
    let Some(v) = versions.versions.first() else {
        fail!("an imported record has no version")
    };
    ensure_eq!(
        v.change_type,
        ChangeType::Created as i32,
        "change_type of an imported record"
    );
    ensure_eq!(
        v.requester,
        Some(requester("import")),
        "requester of an imported record (the stream's)"
    );
    ensure_eq!(get(&ctx, &one.record_id, 0).await?.version, 1, "version");
    Ok(())
}

/// Sends import streams, each of which must be refused with INVALID_ARGUMENT.
async fn imports_refused(ctx: &Ctx, table: Vec<(&str, Vec<ImportRecordsRequest>)>) -> TestResult {
    let table = table
        .into_iter()
        .map(|(what, messages)| (what, messages, Refusal::new(Code::InvalidArgument)))
        .collect();
    refuse_all(
        &client(ctx),
        "ImportRecords",
        |mut c, messages: Vec<ImportRecordsRequest>| async move {
            c.import_records(tokio_stream::iter(messages)).await
        },
        table,
    )
    .await
}

pub(super) async fn import_stream_errors(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let no_requester = ImportRecordsRequest {
        items: vec![item(&rid(), new_record(&pid))],
        requester: None,
        return_record_ids: false,
    };
    imports_refused(
        &ctx,
        vec![
            ("no message", vec![]),
            ("first message without requester", vec![no_requester]),
        ],
    )
    .await?;
    ensure_nothing_written(&ctx, &pid).await?;
    let big: Vec<ImportItem> = (0..1001).map(|_| item(&rid(), new_record(&pid))).collect();
    imports_refused(
        &ctx,
        vec![("a message with 1001 items", vec![first(big, false)])],
    )
    .await?;
    // An item whose request_id is not a UUID is an item problem, not a stream error.
    let response = import(
        &ctx,
        vec![first(vec![item("not-a-uuid", new_record(&pid))], false)],
    )
    .await?;
    ensure_eq!(
        response.rejected_count,
        1,
        "rejected_count for an item with a malformed request_id"
    );
    let fields: Vec<String> = response
        .rejections
        .iter()
        .flat_map(|r| r.field_violations.iter().map(|v| v.field.clone()))
        .collect();
    ensure_eq!(
        fields,
        vec!["request_id".to_owned()],
        "field violations of the item"
    );
    Ok(())
}
