//! The decision table: the contract's DECISION SEMANTICS, case by case, through Decide.
//!
//! Every case assumes the deployment's platform policy set has no rule matching the kit's requests
//! (the contract lets a deployment add FORBID, OVERRIDE and DEFAULT rules); a case whose decision
//! names a platform rule is reported as skipped, never as passed or failed. A case's patient has a
//! national data opt-out check recorded just before the decision, saying they have opted out or
//! not, unless the case is about a patient never checked. The rows are in `rows.rs`.

mod rows;

use carerecord_contracts::consent::v1::{
    ConsentDirective, DecideRequest, DecisionOutcome, DecisionSource, Obligation, ObligationType,
};

use super::support::{
    checked_not_opted_out, client, create, decide, platform_rule, revoke_request, set_opt_out,
};
use crate::harness::{Case, Ctx, Fail, TestResult, ensure, ensure_eq, ok};
use rows::TABLE;

/// An expected reason: source, effect, index of the case's directive (for PATIENT_DIRECTIVE),
/// provision path, reason_code.
type Reason = (
    DecisionSource,
    DecisionOutcome,
    Option<usize>,
    &'static str,
    &'static str,
);

/// The patient's national data opt-out status when the case decides.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptOut {
    /// A check recorded now says the patient has not opted out.
    NotOptedOut,
    /// The patient opted out (a manual check, recorded now).
    OptedOut,
    /// Never checked: the status is UNKNOWN.
    NeverChecked,
}

struct Row {
    id: &'static str,
    title: &'static str,
    directives: fn(&str) -> Vec<ConsentDirective>,
    /// Revoke every directive after creating it (it must stop applying at once).
    revoke: bool,
    opt_out: OptOut,
    request: fn(&str) -> DecideRequest,
    outcome: DecisionOutcome,
    obligations: fn() -> Vec<Obligation>,
    /// None where the contract leaves the reason list open for the case.
    reasons: Option<&'static [Reason]>,
}

pub(super) fn cases() -> Vec<Case> {
    TABLE
        .iter()
        .map(|row| Case::new(row.id, row.title, move |ctx| run_row(ctx, row)))
        .collect()
}

async fn run_row(ctx: Ctx, row: &'static Row) -> TestResult {
    let pid = ctx.new_patient();
    let mut made = Vec::new();
    for d in (row.directives)(&pid) {
        made.push(create(&ctx, d).await?);
    }
    if row.revoke {
        for d in &made {
            let revoke = revoke_request(&d.directive_id, &d.etag, "conformance kit");
            ok(
                client(&ctx).revoke_consent_directive(revoke).await,
                "RevokeConsentDirective",
            )?;
        }
    }
    match row.opt_out {
        OptOut::NotOptedOut => checked_not_opted_out(&ctx, &pid).await?,
        OptOut::OptedOut => drop(set_opt_out(&ctx, &pid, true, "").await?),
        OptOut::NeverChecked => {}
    }
    let decision = decide(&ctx, (row.request)(&pid)).await?;
    if let Some(policy) = platform_rule(&decision) {
        return Err(Fail::Skipped(format!(
            "the deployment's platform rule {policy:?} decided part of this case; the expectation assumes no platform rule applies"
        )));
    }
    ensure_eq!(decision.patient_id, pid, "patient_id");
    ensure_eq!(
        DecisionOutcome::try_from(decision.outcome).ok(),
        Some(row.outcome),
        "outcome"
    );
    let expected = (row.obligations)();
    ensure!(
        decision.obligations == expected,
        "obligations: expected {}, got {}",
        show_obligations(&expected),
        show_obligations(&decision.obligations)
    );
    if let Some(reasons) = row.reasons {
        let got: Vec<(i32, i32, String, i64, String, String)> = decision
            .reasons
            .iter()
            .map(|r| {
                (
                    r.source,
                    r.effect,
                    r.directive_id.clone(),
                    r.directive_version,
                    r.provision_path.clone(),
                    r.reason_code.clone(),
                )
            })
            .collect();
        let want: Vec<(i32, i32, String, i64, String, String)> = reasons
            .iter()
            .map(|(source, effect, index, path, code)| {
                let (id, version) =
                    index
                        .and_then(|i| made.get(i))
                        .map_or((String::new(), 0), |d| {
                            (
                                d.directive_id.clone(),
                                if row.revoke { d.version + 1 } else { d.version },
                            )
                        });
                (
                    *source as i32,
                    *effect as i32,
                    id,
                    version,
                    (*path).to_owned(),
                    (*code).to_owned(),
                )
            })
            .collect();
        ensure!(
            got == want,
            "reasons (source, effect, directive_id, directive_version, provision_path, reason_code): expected {want:?}, got {got:?}"
        );
        for r in &decision.reasons {
            ensure!(
                r.explanation.chars().count() <= 500,
                "an explanation is over 500 characters"
            );
        }
    }
    Ok(())
}

fn show_obligations(obligations: &[Obligation]) -> String {
    let parts: Vec<String> = obligations
        .iter()
        .map(|o| {
            let kind = ObligationType::try_from(o.r#type)
                .map_or_else(|_| o.r#type.to_string(), |t| t.as_str_name().to_owned());
            let p = o
                .data_period
                .as_ref()
                .map(|p| {
                    format!(
                        " period[{:?}, {:?})",
                        p.start.as_ref().map(|t| t.seconds),
                        p.end.as_ref().map(|t| t.seconds)
                    )
                })
                .unwrap_or_default();
            format!(
                "{kind}{:?}{}{p}",
                o.data_classes,
                if o.include_general_data {
                    "+general"
                } else {
                    ""
                }
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
