//! Decide and BatchDecide beyond the decision table: determinism, batches and request
//! validation.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::{
    BatchDecideRequest, ConsentDecision, DecideRequest, DecisionOutcome, LegalBasis,
};

use super::support::{
    ask, ask_as, at, client, create, decide, directive, own_request, platform_rule, reader,
    strings, the_patient, worked_example,
};
use crate::harness::{Ctx, Fail, TestResult, ensure, ensure_eq, ok};
use crate::refusal::{Refusal, refuse_each};

use ConsentDecision::Deny as BaseDeny;
use DecisionOutcome::{Deny, Permit};

pub(super) async fn deterministic(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    create(&ctx, worked_example(&pid)).await?;
    let request = at(ask_as(&pid, "TREAT", "X11", "R8000"), 2026);
    let a = decide(&ctx, request.clone()).await?;
    let b = decide(&ctx, request).await?;
    ensure_eq!(a.patient_id, pid, "patient_id");
    ensure!(
        !a.policy_set_version.is_empty(),
        "policy_set_version must be set"
    );
    ensure!(a.decided_at.is_some(), "decided_at must be set");
    ensure!(a.outcome != 0, "outcome must not be UNSPECIFIED");
    ensure_eq!(
        (b.outcome, &b.obligations, &b.reasons, &b.policy_set_version),
        (a.outcome, &a.obligations, &a.reasons, &a.policy_set_version),
        "a repeated decision"
    );
    Ok(())
}

pub(super) async fn decide_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let treat = |change: fn(&mut DecideRequest)| {
        let mut request = ask(&pid, "TREAT");
        change(&mut request);
        request
    };
    let research = |change: fn(&mut DecideRequest)| {
        let mut request = ask(&pid, "HRESCH");
        change(&mut request);
        request
    };
    let emergency = |change: fn(&mut DecideRequest)| {
        let mut request = ask(&pid, "ETREAT");
        change(&mut request);
        request
    };
    let role = || Refusal::invalid("requester.role_code");
    let purpose = || Refusal::invalid("purpose_of_use");
    let basis = || Refusal::invalid("legal_basis");
    let study = || Refusal::invalid("study_id");
    let break_glass = || Refusal::invalid("break_glass_reason");
    let table = vec![
        (
            "a malformed patient_id",
            treat(|r| r.patient_id = "x".into()),
            Refusal::invalid("patient_id"),
        ),
        (
            "no requester",
            treat(|r| r.requester = None),
            Refusal::invalid_under("requester"),
        ),
        (
            "a requester without role_code",
            treat(|r| r.requester = Some(reader("A81001", ""))),
            role(),
        ),
        (
            "a requester with a role that is not an R-code",
            treat(|r| r.requester = Some(reader("A81001", "S8000:G8000:R8000"))),
            role(),
        ),
        (
            "a requester without organisation",
            treat(|r| r.requester = Some(reader("", "R8000"))),
            Refusal::invalid("requester.organisation_ods_code"),
        ),
        ("a lower-case purpose", ask(&pid, "treat"), purpose()),
        ("an unknown purpose", ask(&pid, "RESEARCH"), purpose()),
        (
            "an unknown data class",
            treat(|r| r.data_classes = strings(&["hiv", "secret"])),
            Refusal::invalid("data_classes[1]"),
        ),
        (
            "DIRECT_CARE with HRESCH",
            research(|r| r.legal_basis = LegalBasis::DirectCare as i32),
            basis(),
        ),
        (
            "PUBLIC_HEALTH with TREAT",
            treat(|r| r.legal_basis = LegalBasis::PublicHealth as i32),
            basis(),
        ),
        (
            "EXPLICIT_CONSENT with HRESCH and no study_id",
            research(|r| r.legal_basis = LegalBasis::ExplicitConsent as i32),
            study(),
        ),
        (
            "a study_id over 128 characters",
            research(|r| r.study_id = "s".repeat(129)),
            study(),
        ),
        (
            "ETREAT without break_glass_reason",
            ask(&pid, "ETREAT"),
            break_glass(),
        ),
        (
            "a break_glass_reason with TREAT",
            treat(|r| r.break_glass_reason = "Unconscious in ED, need history".into()),
            break_glass(),
        ),
        (
            "a break_glass_reason over 1000 characters",
            emergency(|r| r.break_glass_reason = "b".repeat(1001)),
            break_glass(),
        ),
    ];
    refuse_each!(client(&ctx), decide, table).await
}

pub(super) async fn batch(ctx: Ctx) -> TestResult {
    let denied = ctx.new_patient();
    create(&ctx, directive(&denied, BaseDeny, vec![])).await?;
    let free = ctx.new_patient();
    let request = BatchDecideRequest {
        patient_ids: vec![denied.clone(), free.clone(), denied.clone()],
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let response = ok(client(&ctx).batch_decide(request).await, "BatchDecide")?;
    if let Some(policy) = response.decisions.iter().find_map(platform_rule) {
        return Err(Fail::Skipped(format!(
            "the deployment's platform rule {policy:?} decided part of this case"
        )));
    }
    let got: Vec<(String, i32)> = response
        .decisions
        .iter()
        .map(|d| (d.patient_id.clone(), d.outcome))
        .collect();
    ensure_eq!(
        got,
        vec![
            (denied.clone(), Deny as i32),
            (free.clone(), Permit as i32),
            (denied.clone(), Deny as i32)
        ],
        "(patient_id, outcome) per entry, in order"
    );
    let single = decide(&ctx, ask(&free, "TREAT")).await?;
    ensure_eq!(
        (
            &response.decisions[1].obligations,
            response.decisions[1].reasons.len()
        ),
        (&single.obligations, single.reasons.len()),
        "a batch decision matches Decide"
    );
    for d in &response.decisions {
        ensure!(
            d.reasons.iter().all(|r| r.explanation.is_empty()),
            "explanations must be empty unless include_explanations is set"
        );
    }
    Ok(())
}

pub(super) async fn batch_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let base = BatchDecideRequest {
        patient_ids: vec![pid.clone()],
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let with_ids = |patient_ids| BatchDecideRequest {
        patient_ids,
        ..base.clone()
    };
    let many: Vec<String> = (0..10_001).map(|_| pid.clone()).collect();
    let table = vec![
        (
            "no patient ids",
            with_ids(vec![]),
            Refusal::invalid("patient_ids"),
        ),
        (
            "10001 patient ids",
            with_ids(many),
            Refusal::invalid("patient_ids"),
        ),
        (
            "a malformed id",
            with_ids(vec![pid.clone(), "nope".into()]),
            Refusal::invalid("patient_ids[1]"),
        ),
        (
            "ETREAT",
            BatchDecideRequest {
                purpose_of_use: "ETREAT".into(),
                ..base.clone()
            },
            Refusal::invalid("purpose_of_use"),
        ),
        (
            "a requester without role_code",
            BatchDecideRequest {
                requester: Some(reader("A81001", "")),
                ..base.clone()
            },
            Refusal::invalid_under("requester"),
        ),
    ];
    refuse_each!(client(&ctx), batch_decide, table).await
}

pub(super) async fn requester_without_organisation(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    decide(&ctx, own_request(&pid, &[])).await?;
    ok(
        client(&ctx)
            .batch_decide(BatchDecideRequest {
                patient_ids: vec![pid.clone()],
                requester: Some(the_patient()),
                purpose_of_use: "PATRQT".into(),
                ..Default::default()
            })
            .await,
        "BatchDecide(PATRQT, the patient as requester)",
    )?;
    let as_requester = |purpose: &str, requester: Requester| DecideRequest {
        requester: Some(requester),
        ..ask(&pid, purpose)
    };
    let with_role = Requester {
        role_code: "R8000".into(),
        ..the_patient()
    };
    let table = vec![
        (
            "TREAT by a requester with a user id alone",
            as_requester("TREAT", the_patient()),
            Refusal::invalid("requester.organisation_ods_code").field("requester.role_code"),
        ),
        (
            "PATRQT by a requester with a role and no organisation",
            as_requester("PATRQT", with_role),
            Refusal::invalid("requester.organisation_ods_code"),
        ),
        (
            "PATRQT by a requester with nothing set",
            as_requester("PATRQT", Requester::default()),
            Refusal::invalid("requester.user_id"),
        ),
    ];
    refuse_each!(client(&ctx), decide, table).await
}

pub(super) async fn section_251_consistency(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let s251 = |purpose: &str| DecideRequest {
        legal_basis: LegalBasis::Section251Support as i32,
        ..ask(&pid, purpose)
    };
    let table = vec![
        (
            "HRESCH under SECTION_251_SUPPORT without a study",
            s251("HRESCH"),
            Refusal::invalid("study_id"),
        ),
        (
            "TREAT under SECTION_251_SUPPORT",
            s251("TREAT"),
            Refusal::invalid("legal_basis"),
        ),
        (
            "HMARKT under SECTION_251_SUPPORT",
            s251("HMARKT"),
            Refusal::invalid("legal_basis"),
        ),
    ];
    refuse_each!(client(&ctx), decide, table).await?;
    for purpose in ["HOPERAT", "HPAYMT"] {
        ok(
            client(&ctx).decide(s251(purpose)).await,
            &format!("Decide({purpose} under SECTION_251_SUPPORT, no study)"),
        )?;
    }
    Ok(())
}
