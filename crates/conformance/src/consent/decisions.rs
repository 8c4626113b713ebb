//! Decide and BatchDecide: the decision table (the contract's DECISION SEMANTICS, case by case),
//! determinism, and request validation.
//!
//! Every case assumes the deployment's platform policy set has no rule matching the kit's requests
//! (the contract lets a deployment add FORBID, OVERRIDE and DEFAULT rules); a case whose decision
//! names a platform rule is reported as skipped, never as passed or failed.

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::consent::v1::{
    BatchDecideRequest, ConsentDecision, ConsentDirective, ConsentDirectiveStatus, DecideRequest,
    Decision, DecisionOutcome, DecisionSource, LegalBasis, Obligation, ObligationType, Provision,
    RevokeConsentDirectiveRequest,
};
use tonic::Code;

use super::{
    ALL_CLASSES, actor, classes, client, create, directive, period, reader, recorder, strings,
    worked_example, year,
};
use crate::harness::{
    Case, Ctx, Fail, TestResult, ensure, ensure_eq, err, fail, has_violation, has_violation_under,
    ok,
};

use ConsentDecision::{Deny as BaseDeny, Permit as BasePermit};
use DecisionOutcome::{Deny, Permit};
use DecisionSource::{Default as Builtin, NationalDataOptOut as Ndoo, PatientDirective as Pd};

/// An expected reason: source, effect, index of the case's directive (for PATIENT_DIRECTIVE),
/// provision path.
type Reason = (DecisionSource, DecisionOutcome, Option<usize>, &'static str);

struct Row {
    id: &'static str,
    title: &'static str,
    directives: fn(&str) -> Vec<ConsentDirective>,
    /// Revoke every directive after creating it (it must stop applying at once).
    revoke: bool,
    opted_out: bool,
    request: fn(&str) -> DecideRequest,
    outcome: DecisionOutcome,
    obligations: fn() -> Vec<Obligation>,
    /// None where the contract leaves the reason list open for the case.
    reasons: Option<&'static [Reason]>,
}

fn none(_: &str) -> Vec<ConsentDirective> {
    Vec::new()
}

fn no_obligations() -> Vec<Obligation> {
    Vec::new()
}

fn ask(pid: &str, purpose: &str) -> DecideRequest {
    DecideRequest {
        patient_id: pid.into(),
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: purpose.into(),
        ..Default::default()
    }
}

fn ask_as(pid: &str, purpose: &str, ods: &str, role: &str) -> DecideRequest {
    DecideRequest {
        requester: Some(reader(ods, role)),
        ..ask(pid, purpose)
    }
}

fn withhold(data_classes: &[&str], general: bool, data_period: Option<Period>) -> Obligation {
    Obligation {
        r#type: ObligationType::WithholdDataClasses as i32,
        data_classes: strings(data_classes),
        include_general_data: general,
        data_period,
    }
}

fn flag() -> Obligation {
    Obligation {
        r#type: ObligationType::FlagForReview as i32,
        ..Default::default()
    }
}

fn blanket_deny(pid: &str) -> Vec<ConsentDirective> {
    vec![directive(pid, BaseDeny, vec![])]
}

fn scoped(pid: &str, decision: ConsentDecision, purposes: &[&str]) -> ConsentDirective {
    ConsentDirective {
        scope_purposes: strings(purposes),
        ..directive(pid, decision, vec![])
    }
}

fn study_consent(pid: &str) -> Vec<ConsentDirective> {
    vec![ConsentDirective {
        scope_purposes: strings(&["HRESCH"]),
        ..directive(
            pid,
            BaseDeny,
            vec![Provision {
                study_ids: strings(&["IRAS-1"]),
                ..Default::default()
            }],
        )
    }]
}

fn research(pid: &str, basis: LegalBasis, study: &str) -> DecideRequest {
    DecideRequest {
        legal_basis: basis as i32,
        study_id: study.into(),
        ..ask(pid, "HRESCH")
    }
}

fn deny_hiv(pid: &str) -> Vec<ConsentDirective> {
    vec![directive(pid, BasePermit, vec![classes(&["hiv"])])]
}

fn nested(pid: &str) -> Vec<ConsentDirective> {
    vec![directive(
        pid,
        BasePermit,
        vec![Provision {
            data_classes: strings(&["mental-health"]),
            provisions: vec![Provision {
                purposes: strings(&["TREAT"]),
                provisions: vec![Provision {
                    actors: vec![actor("X99", "")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    )]
}

fn rxa_practitioners(pid: &str) -> Vec<ConsentDirective> {
    vec![directive(
        pid,
        BasePermit,
        vec![Provision {
            actors: vec![actor("RXA", "R8000")],
            data_classes: strings(&["genomic"]),
            ..Default::default()
        }],
    )]
}

fn from_2030(pid: &str) -> Vec<ConsentDirective> {
    vec![directive(
        pid,
        BasePermit,
        vec![Provision {
            period: period(Some(year(2030)), None),
            data_classes: strings(&["hiv"]),
            ..Default::default()
        }],
    )]
}

fn at(mut r: DecideRequest, y: i64) -> DecideRequest {
    r.time = Some(year(y));
    r
}

const TABLE: &[Row] = &[
    Row {
        id: "CON-DT-01",
        title: "No directive, TREAT: the built-in default permits individual care",
        directives: none,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-02",
        title: "No directive, HRESCH: the built-in default denies every purpose but care",
        directives: none,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-03",
        title: "No directive, HMARKT: denied by the built-in default",
        directives: none,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HMARKT"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-04",
        title: "No directive, PATRQT: denied by the built-in default (only TREAT and ETREAT are implied)",
        directives: none,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "PATRQT"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-05",
        title: "No directive, ETREAT with a break-glass reason: PERMIT flagged for review",
        directives: none,
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            break_glass_reason: "Unconscious in ED, need medication history".into(),
            ..ask(p, "ETREAT")
        },
        outcome: Permit,
        obligations: || vec![flag()],
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-06",
        title: "Worked example, GP A81001, TREAT, all data: PERMIT withholding mental-health",
        directives: |p| vec![worked_example(p)],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: || vec![withhold(&["mental-health"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-07",
        title: "Worked example, trust RXA asks for mental-health: the more specific provision 0.0 decides, PERMIT without obligation",
        directives: |p| vec![worked_example(p)],
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            data_classes: strings(&["mental-health"]),
            ..ask_as(p, "TREAT", "RXA", "R8000")
        },
        outcome: Permit,
        obligations: no_obligations,
        reasons: None,
    },
    Row {
        id: "CON-DT-08",
        title: "Worked example, X11, all data: two withhold obligations split at 2020-01-01, in canonical order",
        directives: |p| vec![worked_example(p)],
        revoke: false,
        opted_out: false,
        request: |p| ask_as(p, "TREAT", "X11", "R8000"),
        outcome: Permit,
        obligations: || {
            vec![
                withhold(&ALL_CLASSES, true, period(None, Some(year(2020)))),
                withhold(&["mental-health"], false, period(Some(year(2020)), None)),
            ]
        },
        reasons: Some(&[
            (Pd, Deny, Some(0), "0"),
            (Pd, Deny, Some(0), "1"),
            (Builtin, Permit, None, ""),
        ]),
    },
    Row {
        id: "CON-DT-09",
        title: "Worked example, HMARKT: a PERMIT base not naming the purpose is only no objection -> DENY",
        directives: |p| vec![worked_example(p)],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HMARKT"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Deny, Some(0), "0"), (Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-10",
        title: "A blanket DENY directive denies individual care too",
        directives: blanket_deny,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Deny, Some(0), "")]),
    },
    Row {
        id: "CON-DT-11",
        title: "A DRAFT directive never affects decisions",
        directives: |p| {
            vec![ConsentDirective {
                status: ConsentDirectiveStatus::Draft as i32,
                ..directive(p, BaseDeny, vec![])
            }]
        },
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-12",
        title: "A directive whose period has ended no longer applies",
        directives: |p| {
            vec![ConsentDirective {
                period: period(Some(year(2020)), Some(year(2021))),
                ..directive(p, BaseDeny, vec![])
            }]
        },
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-13",
        title: "A DENY scoped to HRESCH does not affect TREAT",
        directives: |p| vec![scoped(p, BaseDeny, &["HRESCH"])],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-14",
        title: "A DENY scoped to HRESCH denies HRESCH",
        directives: |p| vec![scoped(p, BaseDeny, &["HRESCH"])],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Deny, Some(0), "")]),
    },
    Row {
        id: "CON-DT-15",
        title: "A PERMIT naming HRESCH in scope_purposes is explicit: HRESCH permitted by the directive",
        directives: |p| vec![scoped(p, BasePermit, &["HRESCH"])],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HRESCH"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Permit, Some(0), "")]),
    },
    Row {
        id: "CON-DT-16",
        title: "A PERMIT base not naming HRESCH is no objection: HRESCH denied by the default",
        directives: |p| vec![directive(p, BasePermit, vec![])],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-17",
        title: "Opted out, HRESCH under EXPLICIT_CONSENT, consent not naming the study: the opt-out denies",
        directives: |p| vec![scoped(p, BasePermit, &["HRESCH"])],
        revoke: false,
        opted_out: true,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-1"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-18",
        title: "Opted out, HRESCH under EXPLICIT_CONSENT with study-specific consent: exempt, the directive permits",
        directives: study_consent,
        revoke: false,
        opted_out: true,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-1"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Permit, None, ""), (Pd, Permit, Some(0), "0")]),
    },
    Row {
        id: "CON-DT-19",
        title: "Opted out, consent for study IRAS-1, request for study IRAS-2: the opt-out denies",
        directives: study_consent,
        revoke: false,
        opted_out: true,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-2"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-20",
        title: "Opted out, study-specific consent but no EXPLICIT_CONSENT basis: the opt-out denies",
        directives: study_consent,
        revoke: false,
        opted_out: true,
        request: |p| research(p, LegalBasis::Unspecified, "IRAS-1"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-21",
        title: "The opt-out does not apply to individual care (TREAT)",
        directives: none,
        revoke: false,
        opted_out: true,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: None,
    },
    Row {
        id: "CON-DT-22",
        title: "Opted out, HOPERAT under LEGAL_REQUIREMENT: exempt from the opt-out, but nothing permits -> DENY (default)",
        directives: none,
        revoke: false,
        opted_out: true,
        request: |p| DecideRequest {
            legal_basis: LegalBasis::LegalRequirement as i32,
            ..ask(p, "HOPERAT")
        },
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Permit, None, ""), (Builtin, Deny, None, "")]),
    },
    Row {
        id: "CON-DT-23",
        title: "HOPERAT under LEGAL_REQUIREMENT with explicit permission: PERMIT flagged for review",
        directives: |p| vec![scoped(p, BasePermit, &["HOPERAT"])],
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            legal_basis: LegalBasis::LegalRequirement as i32,
            ..ask(p, "HOPERAT")
        },
        outcome: Permit,
        obligations: || vec![flag()],
        reasons: Some(&[(Pd, Permit, Some(0), "")]),
    },
    Row {
        id: "CON-DT-24",
        title: "Opted out, PUBHLTH under PUBLIC_HEALTH with explicit permission: exempt, PERMIT without flag",
        directives: |p| vec![scoped(p, BasePermit, &["PUBHLTH"])],
        revoke: false,
        opted_out: true,
        request: |p| DecideRequest {
            legal_basis: LegalBasis::PublicHealth as i32,
            ..ask(p, "PUBHLTH")
        },
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Ndoo, Permit, None, ""), (Pd, Permit, Some(0), "")]),
    },
    Row {
        id: "CON-DT-25",
        title: "ETREAT against a blanket DENY directive: DENY, still flagged for review",
        directives: blanket_deny,
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            break_glass_reason: "Unconscious in ED, need medication history".into(),
            ..ask(p, "ETREAT")
        },
        outcome: Deny,
        obligations: || vec![flag()],
        reasons: Some(&[(Pd, Deny, Some(0), "")]),
    },
    Row {
        id: "CON-DT-26",
        title: "Asking for [hiv] when the patient denies hiv: PERMIT withholding hiv (general data stays in scope)",
        directives: deny_hiv,
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            data_classes: strings(&["hiv"]),
            ..ask(p, "TREAT")
        },
        outcome: Permit,
        obligations: || vec![withhold(&["hiv"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-27",
        title: "Asking for [genomic] when the patient denies only hiv: PERMIT without obligation",
        directives: deny_hiv,
        revoke: false,
        opted_out: false,
        request: |p| DecideRequest {
            data_classes: strings(&["genomic"]),
            ..ask(p, "TREAT")
        },
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-28",
        title: "DENY base with a provision covering every class: only general data withheld (empty data_classes, include_general_data)",
        directives: |p| vec![directive(p, BaseDeny, vec![classes(&ALL_CLASSES)])],
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: || vec![withhold(&[], true, None)],
        reasons: Some(&[(Pd, Deny, Some(0), ""), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-29",
        title: "An actor matches only when every set field matches: RXA nurse (R8001) is not RXA R8000",
        directives: rxa_practitioners,
        revoke: false,
        opted_out: false,
        request: |p| ask_as(p, "TREAT", "RXA", "R8001"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-30",
        title: "An actor {RXA, R8000} matches a clinical practitioner at RXA: genomic withheld",
        directives: rxa_practitioners,
        revoke: false,
        opted_out: false,
        request: |p| ask_as(p, "TREAT", "RXA", "R8000"),
        outcome: Permit,
        obligations: || vec![withhold(&["genomic"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-31",
        title: "A provision period is compared with the request time: before it starts, nothing withheld",
        directives: from_2030,
        revoke: false,
        opted_out: false,
        request: |p| at(ask(p, "TREAT"), 2029),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-32",
        title: "A provision period is compared with the request time: once started, hiv withheld",
        directives: from_2030,
        revoke: false,
        opted_out: false,
        request: |p| at(ask(p, "TREAT"), 2031),
        outcome: Permit,
        obligations: || vec![withhold(&["hiv"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-33",
        title: "Nested provisions: 0.0 lists TREAT, so its PERMIT is explicit and decides mental-health",
        directives: nested,
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Permit, Some(0), "0.0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-34",
        title: "Nested provisions: for X99 the most specific 0.0.0 denies mental-health",
        directives: nested,
        revoke: false,
        opted_out: false,
        request: |p| ask_as(p, "TREAT", "X99", "R8000"),
        outcome: Permit,
        obligations: || vec![withhold(&["mental-health"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0.0.0"), (Builtin, Permit, None, "")]),
    },
    Row {
        id: "CON-DT-35",
        title: "A separate PERMIT directive never overrides another directive's DENY",
        directives: |p| {
            vec![
                scoped(p, BasePermit, &["HRESCH"]),
                directive(p, BaseDeny, vec![]),
            ]
        },
        revoke: false,
        opted_out: false,
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        obligations: no_obligations,
        reasons: Some(&[(Pd, Deny, Some(1), "")]),
    },
    Row {
        id: "CON-DT-36",
        title: "A revoked directive stops affecting decisions as soon as the revoke returns",
        directives: blanket_deny,
        revoke: true,
        opted_out: false,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: no_obligations,
        reasons: Some(&[(Builtin, Permit, None, "")]),
    },
];

pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = TABLE
        .iter()
        .map(|row| Case::new(row.id, row.title, move |ctx| run_row(ctx, row)))
        .collect();
    cases.push(Case::new("CON-DEC-001", "Decide is deterministic and echoes the patient: same outcome, obligations and reasons; policy_set_version and decided_at set", deterministic));
    cases.push(Case::new("CON-DEC-002", "Decide validation: bad patient_id, requester without role, unknown or lower-case purpose, unknown class, inconsistent legal basis, break-glass reason rules, long study id -> INVALID_ARGUMENT", decide_invalid));
    cases.push(Case::new("CON-BATCH-001", "BatchDecide returns one decision per entry, in order, duplicates decided independently, each as Decide would", batch));
    cases.push(Case::new("CON-BATCH-002", "BatchDecide validation: no ids, over 10000 ids, a malformed id, ETREAT -> INVALID_ARGUMENT", batch_invalid));
    cases
}

fn platform_rule(decision: &Decision) -> Option<String> {
    decision
        .reasons
        .iter()
        .find(|r| r.source == DecisionSource::PlatformPolicy as i32)
        .map(|r| r.policy_id.clone())
}

async fn decide(ctx: &Ctx, request: DecideRequest) -> TestResult<Decision> {
    match ok(client(ctx).decide(request).await, "Decide")?.decision {
        Some(d) => Ok(d),
        None => fail!("Decide: the response has no decision"),
    }
}

async fn run_row(ctx: Ctx, row: &'static Row) -> TestResult {
    let pid = ctx.new_patient();
    let mut made = Vec::new();
    for d in (row.directives)(&pid) {
        made.push(create(&ctx, d).await?);
    }
    if row.revoke {
        for d in &made {
            ok(
                client(&ctx)
                    .revoke_consent_directive(RevokeConsentDirectiveRequest {
                        directive_id: d.directive_id.clone(),
                        etag: d.etag.clone(),
                        reason: "conformance kit".into(),
                        requester: Some(recorder()),
                    })
                    .await,
                "RevokeConsentDirective",
            )?;
        }
    }
    if row.opted_out {
        super::directives::set_opt_out(&ctx, &pid, true, "").await?;
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
        let got: Vec<(i32, i32, String, i64, String)> = decision
            .reasons
            .iter()
            .map(|r| {
                (
                    r.source,
                    r.effect,
                    r.directive_id.clone(),
                    r.directive_version,
                    r.provision_path.clone(),
                )
            })
            .collect();
        let want: Vec<(i32, i32, String, i64, String)> = reasons
            .iter()
            .map(|(source, effect, index, path)| {
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
                )
            })
            .collect();
        ensure!(
            got == want,
            "reasons (source, effect, directive_id, directive_version, provision_path): expected {want:?}, got {got:?}"
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

async fn deterministic(ctx: Ctx) -> TestResult {
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

async fn decide_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let base = ask(&pid, "TREAT");
    let cases: Vec<(&str, DecideRequest, &str, bool)> = vec![
        (
            "a malformed patient_id",
            DecideRequest {
                patient_id: "x".into(),
                ..base.clone()
            },
            "patient_id",
            true,
        ),
        (
            "no requester",
            DecideRequest {
                requester: None,
                ..base.clone()
            },
            "requester",
            false,
        ),
        (
            "a requester without role_code",
            DecideRequest {
                requester: Some(reader("A81001", "")),
                ..base.clone()
            },
            "requester.role_code",
            true,
        ),
        (
            "a requester with a role that is not an R-code",
            DecideRequest {
                requester: Some(reader("A81001", "S8000:G8000:R8000")),
                ..base.clone()
            },
            "requester.role_code",
            true,
        ),
        (
            "a requester without organisation",
            DecideRequest {
                requester: Some(reader("", "R8000")),
                ..base.clone()
            },
            "requester.organisation_ods_code",
            true,
        ),
        (
            "a lower-case purpose",
            ask(&pid, "treat"),
            "purpose_of_use",
            true,
        ),
        (
            "an unknown purpose",
            ask(&pid, "RESEARCH"),
            "purpose_of_use",
            true,
        ),
        (
            "an unknown data class",
            DecideRequest {
                data_classes: strings(&["hiv", "secret"]),
                ..base.clone()
            },
            "data_classes[1]",
            true,
        ),
        (
            "DIRECT_CARE with HRESCH",
            DecideRequest {
                legal_basis: LegalBasis::DirectCare as i32,
                ..ask(&pid, "HRESCH")
            },
            "legal_basis",
            true,
        ),
        (
            "PUBLIC_HEALTH with TREAT",
            DecideRequest {
                legal_basis: LegalBasis::PublicHealth as i32,
                ..base.clone()
            },
            "legal_basis",
            true,
        ),
        (
            "EXPLICIT_CONSENT with HRESCH and no study_id",
            DecideRequest {
                legal_basis: LegalBasis::ExplicitConsent as i32,
                ..ask(&pid, "HRESCH")
            },
            "study_id",
            true,
        ),
        (
            "a study_id over 128 characters",
            DecideRequest {
                study_id: "s".repeat(129),
                ..ask(&pid, "HRESCH")
            },
            "study_id",
            true,
        ),
        (
            "ETREAT without break_glass_reason",
            ask(&pid, "ETREAT"),
            "break_glass_reason",
            true,
        ),
        (
            "a break_glass_reason with TREAT",
            DecideRequest {
                break_glass_reason: "Unconscious in ED, need history".into(),
                ..base.clone()
            },
            "break_glass_reason",
            true,
        ),
        (
            "a break_glass_reason over 1000 characters",
            DecideRequest {
                break_glass_reason: "b".repeat(1001),
                ..ask(&pid, "ETREAT")
            },
            "break_glass_reason",
            true,
        ),
    ];
    for (what, request, field, exact) in cases {
        let status = err(
            client(&ctx).decide(request).await,
            Code::InvalidArgument,
            &format!("Decide({what})"),
        )?;
        if exact {
            has_violation(&status, field).map(|_| ())
        } else {
            has_violation_under(&status, field)
        }?;
    }
    Ok(())
}

async fn batch(ctx: Ctx) -> TestResult {
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

async fn batch_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let base = BatchDecideRequest {
        patient_ids: vec![pid.clone()],
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    };
    let many: Vec<String> = (0..10_001).map(|_| pid.clone()).collect();
    let cases: Vec<(&str, BatchDecideRequest, &str, bool)> = vec![
        (
            "no patient ids",
            BatchDecideRequest {
                patient_ids: vec![],
                ..base.clone()
            },
            "patient_ids",
            true,
        ),
        (
            "10001 patient ids",
            BatchDecideRequest {
                patient_ids: many,
                ..base.clone()
            },
            "patient_ids",
            true,
        ),
        (
            "a malformed id",
            BatchDecideRequest {
                patient_ids: vec![pid.clone(), "nope".into()],
                ..base.clone()
            },
            "patient_ids[1]",
            true,
        ),
        (
            "ETREAT",
            BatchDecideRequest {
                purpose_of_use: "ETREAT".into(),
                ..base.clone()
            },
            "purpose_of_use",
            true,
        ),
        (
            "a requester without role_code",
            BatchDecideRequest {
                requester: Some(reader("A81001", "")),
                ..base.clone()
            },
            "requester",
            false,
        ),
    ];
    for (what, request, field, exact) in cases {
        let status = err(
            client(&ctx).batch_decide(request).await,
            Code::InvalidArgument,
            &format!("BatchDecide({what})"),
        )?;
        if exact {
            has_violation(&status, field).map(|_| ())
        } else {
            has_violation_under(&status, field)
        }?;
    }
    Ok(())
}
