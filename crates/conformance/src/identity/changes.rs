//! ListPatientChanges: who the change feed touched after a cursor, in one call. Optional: an
//! index that answers UNIMPLEMENTED skips these cases (data access then asks it every time).

use super::support::{client, create, merge, new_patient, regender};
use crate::harness::{Ctx, TestResult, describe, ensure, ensure_eq, fail, optional};
use crate::refusal::{change_listing_refusals, refuse_each};
use carerecord_contracts::common::v1::ChangeType;
use carerecord_contracts::identity::v1::{
    ListPatientChangesRequest, ListPatientChangesResponse, PatientChange,
    WatchPatientChangesRequest,
};

const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

async fn list(
    ctx: &Ctx,
    after_cursor: &str,
    page_size: i32,
) -> TestResult<ListPatientChangesResponse> {
    let request = ListPatientChangesRequest {
        after_cursor: after_cursor.to_owned(),
        page_size,
    };
    let call = format!("ListPatientChanges({after_cursor:?})");
    optional(client(ctx).list_patient_changes(request).await, &call)
}

/// Every change after `cursor` to one of `patients`, following `next_cursor` to the head.
async fn changes_of(
    ctx: &Ctx,
    mut cursor: String,
    patients: &[&str],
) -> TestResult<Vec<PatientChange>> {
    let mut ours = Vec::new();
    let mut last = i64::MIN;
    loop {
        let page = list(ctx, &cursor, 0).await?;
        ensure!(
            !page.next_cursor.is_empty(),
            "ListPatientChanges: next_cursor is never empty"
        );
        for change in &page.changes {
            ensure!(
                change.sequence > last,
                "sequences must strictly increase: {} then {}",
                last,
                change.sequence
            );
            last = change.sequence;
        }
        ours.extend(
            page.changes
                .into_iter()
                .filter(|c| patients.contains(&c.patient_id.as_str())),
        );
        if !page.more {
            return Ok(ours);
        }
        cursor = page.next_cursor;
    }
}

pub(super) async fn list_changes(ctx: Ctx) -> TestResult {
    let head = list(&ctx, "", 0).await?;
    ensure!(
        head.changes.is_empty(),
        "a listing from an empty cursor lists nothing"
    );
    ensure!(!head.more, "a listing from an empty cursor has no more");
    ensure!(
        !head.next_cursor.is_empty(),
        "a listing from an empty cursor answers the head"
    );
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let a2 = regender(&ctx, &a, 1).await?;
    merge(&ctx, &b, &a2).await?;
    let ids = [a.patient_id.as_str(), b.patient_id.as_str()];
    let ours = changes_of(&ctx, head.next_cursor.clone(), &ids).await?;
    let summary: Vec<_> = ours
        .iter()
        .map(|c| {
            (
                c.patient_id.clone(),
                c.change_type,
                c.related_patient_id.clone(),
            )
        })
        .collect();
    ensure_eq!(
        summary,
        vec![
            (
                a.patient_id.clone(),
                ChangeType::Created as i32,
                String::new()
            ),
            (
                b.patient_id.clone(),
                ChangeType::Created as i32,
                String::new()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Updated as i32,
                String::new()
            ),
            (
                b.patient_id.clone(),
                ChangeType::Merged as i32,
                a.patient_id.clone()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Merged as i32,
                b.patient_id.clone()
            ),
        ],
        "changes after the head (patient, type, related patient)"
    );
    let first = &ours[0];
    ensure!(
        first
            .identifiers
            .iter()
            .any(|i| i.system == NHS_NUMBER_SYSTEM && i.value == a.nhs_number),
        "a change lists the patient's NHS number among its identifiers: {:?}",
        first.identifiers
    );
    for local in &a.identifiers {
        ensure!(
            first.identifiers.contains(local),
            "a change lists the patient's local identifier {local:?}"
        );
    }
    // A listing from the last change's cursor does not list ours again.
    let mut cursor = head.next_cursor;
    loop {
        let page = list(&ctx, &cursor, 0).await?;
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    let again = list(&ctx, &cursor, 0).await?;
    ensure!(
        again
            .changes
            .iter()
            .all(|c| !ids.contains(&c.patient_id.as_str())),
        "a listing from its own next_cursor lists nothing already listed"
    );
    Ok(())
}

pub(super) async fn list_changes_paged(ctx: Ctx) -> TestResult {
    let head = list(&ctx, "", 0).await?;
    let a = create(&ctx, new_patient()).await?;
    regender(&ctx, &a, 1).await?;
    let page = list(&ctx, &head.next_cursor, 1).await?;
    ensure_eq!(page.changes.len(), 1, "page_size 1 lists one change");
    ensure!(page.more, "a full page says more may follow");
    // A WatchPatientChanges cursor resumes a listing: the first event after the head, then list.
    let mut stream = match client(&ctx)
        .watch_patient_changes(WatchPatientChangesRequest {
            after_cursor: head.next_cursor.clone(),
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => fail!("WatchPatientChanges(head): {}", describe(&s)),
    };
    let event =
        match tokio::time::timeout(std::time::Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(event))) => event,
            _ => fail!("WatchPatientChanges(head): no event within 30 s"),
        };
    drop(stream);
    ensure_eq!(
        event.sequence,
        page.changes[0].sequence,
        "the feed's first event after the head"
    );
    let after_event = list(&ctx, &event.cursor, 1).await?;
    let after_page = list(&ctx, &page.next_cursor, 1).await?;
    ensure_eq!(
        after_event.changes.first().map(|c| c.sequence),
        after_page.changes.first().map(|c| c.sequence),
        "a feed event's cursor and a listing's next_cursor resume at the same place"
    );
    Ok(())
}

pub(super) async fn list_changes_invalid(ctx: Ctx) -> TestResult {
    // Skipped, not failed, by an index without the listing.
    let head = list(&ctx, "", 0).await?;
    let table = change_listing_refusals(&head.next_cursor, crate::records::FORGED_TOKEN)
        .into_iter()
        .map(|(what, after_cursor, page_size, refusal)| {
            let request = ListPatientChangesRequest {
                after_cursor,
                page_size,
            };
            (what, request, refusal)
        })
        .collect();
    refuse_each!(client(&ctx), list_patient_changes, table).await
}
