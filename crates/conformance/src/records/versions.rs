//! ListRecordVersions: every version newest first, in pages, with its change type and requester.

use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::records::v1::{
    ListRecordVersionsRequest, ListRecordVersionsResponse, Record, RecordVersion, RecordView,
};

use super::support::{
    FHIR_JSON, FORGED_TOKEN, client, create, ensure_metadata_only, new_record, observation,
    requester, retract, tamper, unknown, update,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, every_page, fail, ok};
use crate::refusal::{Refusal, refuse_each};

async fn list_versions(
    ctx: &Ctx,
    record_id: &str,
    page_size: i32,
    view: RecordView,
) -> TestResult<Vec<RecordVersion>> {
    let (all, _) = every_page!(
        client(ctx),
        list_record_versions,
        "ListRecordVersions",
        versions,
        10_000,
        ListRecordVersionsRequest {
            record_id: record_id.to_owned(),
            page_size,
            page_token: String::new(),
            view: view as i32
        },
    )?;
    Ok(all)
}

/// A page of `record_id`'s versions in the default view.
fn page_request(record_id: &str, page_size: i32, page_token: &str) -> ListRecordVersionsRequest {
    ListRecordVersionsRequest {
        record_id: record_id.to_owned(),
        page_size,
        page_token: page_token.to_owned(),
        view: RecordView::Unspecified as i32,
    }
}

async fn versions_page(
    ctx: &Ctx,
    record_id: &str,
    page_size: i32,
    page_token: &str,
    call: &str,
) -> TestResult<ListRecordVersionsResponse> {
    let request = page_request(record_id, page_size, page_token);
    ok(client(ctx).list_record_versions(request).await, call)
}

/// Creates a record with 4 versions (created, updated twice, retracted), each by a different requester.
async fn four_versions(ctx: &Ctx) -> TestResult<Vec<Record>> {
    let pid = ctx.new_patient();
    let v1 = create(ctx, new_record(&pid)).await?;
    let v2 = update(
        ctx,
        Record {
            record_id: v1.record_id.clone(),
            data_classes: vec!["hiv".into()],
            ..Default::default()
        },
        &v1.etag,
        &["data_classes"],
        "second",
    )
    .await?;
    let v3 = update(
        ctx,
        Record {
            record_id: v1.record_id.clone(),
            content_type: FHIR_JSON.into(),
            payload: observation(&pid),
            ..Default::default()
        },
        &v2.etag,
        &["payload"],
        "third",
    )
    .await?;
    let v4 = retract(ctx, &v3, "fourth").await?;
    Ok(vec![v1, v2, v3, v4])
}

pub(super) async fn versions_basics(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let versions = list_versions(&ctx, &written[0].record_id, 0, RecordView::Unspecified).await?;
    let expected = [
        (&written[3], ChangeType::Retracted, "fourth"),
        (&written[2], ChangeType::Updated, "third"),
        (&written[1], ChangeType::Updated, "second"),
        (&written[0], ChangeType::Created, "create"),
    ];
    ensure_eq!(versions.len(), 4, "number of versions");
    for (got, (record, change, who)) in versions.iter().zip(expected) {
        ensure_eq!(
            got.record.as_ref(),
            Some(record),
            "version {}",
            record.version
        );
        ensure_eq!(
            got.change_type,
            change as i32,
            "change_type of version {}",
            record.version
        );
        ensure_eq!(
            got.requester,
            Some(requester(who)),
            "requester of version {}",
            record.version
        );
    }
    Ok(())
}

pub(super) async fn versions_paging(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let id = written[0].record_id.clone();
    let first = versions_page(&ctx, &id, 1, "", "ListRecordVersions(page_size 1)").await?;
    ensure_eq!(first.versions.len(), 1, "versions on a page of size 1");
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while versions remain"
    );
    // A write after the first page: never listed by this pagination.
    let pid = written[0].patient_id.clone();
    create(&ctx, new_record(&pid)).await?;
    let mut versions: Vec<i64> = first
        .versions
        .iter()
        .filter_map(|v| v.record.as_ref().map(|r| r.version))
        .collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = versions_page(&ctx, &id, 1, &token, "ListRecordVersions(next page)").await?;
        ensure!(
            page.versions.len() <= 1,
            "a page of size 1 held {} versions",
            page.versions.len()
        );
        versions.extend(
            page.versions
                .iter()
                .filter_map(|v| v.record.as_ref().map(|r| r.version)),
        );
        token = page.next_page_token;
        ensure!(versions.len() <= 10, "pagination does not end");
    }
    ensure_eq!(versions, vec![4, 3, 2, 1], "versions over all pages");
    // Page sizes above 1000 are coerced, not refused.
    let all = versions_page(&ctx, &id, 5000, "", "ListRecordVersions(page_size 5000)").await?;
    ensure_eq!(all.versions.len(), 4, "versions with page_size 5000");
    Ok(())
}

pub(super) async fn versions_bad_token(ctx: Ctx) -> TestResult {
    let written = four_versions(&ctx).await?;
    let id = written[0].record_id.clone();
    let other = create(&ctx, new_record(&written[0].patient_id)).await?;
    let first = versions_page(&ctx, &id, 1, "", "ListRecordVersions(page_size 1)").await?;
    let token = first.next_page_token;
    ensure!(!token.is_empty(), "a next_page_token while versions remain");
    let page_token = || Refusal::invalid("page_token");
    let table = vec![
        (
            "a forged token".to_owned(),
            page_request(&id, 1, FORGED_TOKEN),
            page_token(),
        ),
        (
            "a tampered token".to_owned(),
            page_request(&id, 1, &tamper(&token)),
            page_token(),
        ),
        (
            "a token issued for another record".to_owned(),
            page_request(&other.record_id, 1, &token),
            page_token(),
        ),
    ];
    refuse_each!(client(&ctx), list_record_versions, table).await
}

pub(super) async fn versions_errors_and_view(ctx: Ctx) -> TestResult {
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let mut table = vec![(
        "unknown record".to_owned(),
        page_request(&unknown_id, 0, ""),
        unknown(&unknown_id),
    )];
    for bad in ["", "not-a-uuid"] {
        table.push((
            format!("record_id {bad:?}"),
            page_request(bad, 0, ""),
            Refusal::invalid("record_id"),
        ));
    }
    refuse_each!(client(&ctx), list_record_versions, table).await?;
    let written = four_versions(&ctx).await?;
    let versions = list_versions(&ctx, &written[0].record_id, 0, RecordView::Metadata).await?;
    ensure_eq!(versions.len(), 4, "number of versions");
    for v in &versions {
        let Some(r) = &v.record else {
            fail!("a version without its record")
        };
        ensure_metadata_only(r)?;
    }
    Ok(())
}
