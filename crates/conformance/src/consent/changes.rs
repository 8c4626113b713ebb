//! ListDecisionChanges (optional: a module that answers UNIMPLEMENTED skips these cases) and
//! Decision.valid_until: what a holder of cached decisions relies on.

use super::support::{
    ask, checked_not_opted_out, client, create, directive, period, revoke_request, set_opt_out,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok, optional, present};
use crate::refusal::{change_listing_refusals, refuse_each};
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, Decision, ListDecisionChangesRequest,
    ListDecisionChangesResponse,
};

fn new_patient() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn list(
    ctx: &Ctx,
    after_cursor: &str,
    page_size: i32,
) -> TestResult<ListDecisionChangesResponse> {
    let request = ListDecisionChangesRequest {
        after_cursor: after_cursor.to_owned(),
        page_size,
    };
    let call = format!("ListDecisionChanges({after_cursor:?})");
    optional(client(ctx).list_decision_changes(request).await, &call)
}

/// The patients listed after `cursor`, in order, following `next_cursor` to the end; and where
/// the last listing ended.
async fn listed_after(ctx: &Ctx, mut cursor: String) -> TestResult<(Vec<String>, String)> {
    let mut patients = Vec::new();
    let mut last = i64::MIN;
    loop {
        let page = list(ctx, &cursor, 0).await?;
        ensure!(
            !page.next_cursor.is_empty(),
            "ListDecisionChanges: next_cursor is never empty"
        );
        for change in page.changes {
            ensure!(
                change.sequence > last,
                "sequences must strictly increase: {} then {}",
                last,
                change.sequence
            );
            last = change.sequence;
            patients.push(change.patient_id);
        }
        cursor = page.next_cursor;
        if !page.more {
            return Ok((patients, cursor));
        }
    }
}

async fn decide(ctx: &Ctx, patient_id: &str) -> TestResult<Decision> {
    let response = ok(client(ctx).decide(ask(patient_id, "TREAT")).await, "Decide")?;
    present(response.decision, "Decide: no decision")
}

pub(super) async fn list_changes(ctx: Ctx) -> TestResult {
    let head = list(&ctx, "", 0).await?;
    ensure!(
        head.changes.is_empty(),
        "a listing from an empty cursor lists nothing"
    );
    ensure!(
        !head.next_cursor.is_empty(),
        "a listing from an empty cursor answers the head"
    );
    let (directed, opted_out, checked) = (new_patient(), new_patient(), new_patient());
    ensure_eq!(
        head.policy_set_version,
        decide(&ctx, &directed).await?.policy_set_version,
        "the listing names the policy set Decide decides under"
    );
    let dissent = create(&ctx, directive(&directed, ConsentDecision::Deny, vec![])).await?;
    set_opt_out(&ctx, &opted_out, true, "").await?;
    checked_not_opted_out(&ctx, &checked).await?;
    ok(
        client(&ctx)
            .revoke_consent_directive(revoke_request(
                &dissent.directive_id,
                &dissent.etag,
                "withdrawn",
            ))
            .await,
        "RevokeConsentDirective",
    )?;
    let (listed, end) = listed_after(&ctx, head.next_cursor).await?;
    let ours: Vec<&String> = listed
        .iter()
        .filter(|p| [&directed, &opted_out, &checked].contains(p))
        .collect();
    ensure_eq!(
        ours,
        vec![&directed, &opted_out, &checked, &directed],
        "the patients of a directive created, an opt-out set, an opt-out check and a revocation, in commit order"
    );
    let (again, _) = listed_after(&ctx, end).await?;
    ensure!(
        again
            .iter()
            .all(|p| ![&directed, &opted_out, &checked].contains(&p)),
        "a listing from its own next_cursor lists nothing already listed"
    );
    Ok(())
}

pub(super) async fn list_changes_paged_and_invalid(ctx: Ctx) -> TestResult {
    let head = list(&ctx, "", 0).await?;
    let patient = new_patient();
    create(&ctx, directive(&patient, ConsentDecision::Permit, vec![])).await?;
    create(&ctx, directive(&patient, ConsentDecision::Permit, vec![])).await?;
    let page = list(&ctx, &head.next_cursor, 1).await?;
    ensure_eq!(page.changes.len(), 1, "page_size 1 lists one change");
    ensure!(page.more, "a full page says more may follow");
    let table = change_listing_refusals(&head.next_cursor, crate::records::FORGED_TOKEN)
        .into_iter()
        .map(|(what, after_cursor, page_size, refusal)| {
            let request = ListDecisionChangesRequest {
                after_cursor,
                page_size,
            };
            (what, request, refusal)
        })
        .collect();
    refuse_each!(client(&ctx), list_decision_changes, table).await
}

pub(super) async fn valid_until(ctx: Ctx) -> TestResult {
    // Skipped, with the listing, by a module that does not implement it.
    list(&ctx, "", 0).await?;
    // No directive and no opt-out check: nothing changes with time alone.
    let plain = new_patient();
    let decision = decide(&ctx, &plain).await?;
    ensure_eq!(
        decision.valid_until,
        None,
        "valid_until of a patient with nothing recorded"
    );
    // A directive that ends in ten days: the decision holds until then at the latest.
    let ending = new_patient();
    let end = crate::records::seconds_from_now(10 * 86_400);
    let timed = ConsentDirective {
        period: period(Some(super::support::now_minus_days(1)), Some(end)),
        ..directive(&ending, ConsentDecision::Deny, vec![])
    };
    create(&ctx, timed).await?;
    let decision = decide(&ctx, &ending).await?;
    ensure!(
        decision
            .valid_until
            .is_some_and(|until| until.seconds <= end.seconds && until.seconds > end.seconds - 2),
        "valid_until of a decision on a directive ending at {end:?}: {:?}",
        decision.valid_until
    );
    // A patient checked a moment ago: the decision holds until the check expires, in the future.
    let checked = new_patient();
    checked_not_opted_out(&ctx, &checked).await?;
    let decision = decide(&ctx, &checked).await?;
    let decided = decision.decided_at.map_or(0, |t| t.seconds);
    ensure!(
        decision
            .valid_until
            .is_some_and(|until| until.seconds > decided),
        "valid_until of a decision on a recent opt-out check is after decided_at: {:?}",
        decision.valid_until
    );
    Ok(())
}
