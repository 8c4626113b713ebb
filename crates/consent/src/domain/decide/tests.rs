use super::*;
use crate::domain::codes::LegalBasis;
use crate::domain::optout::OptOutStatus;
use carerecord_contracts::common::v1::Period as P;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, Provision, ProvisionActor,
};
use prost_types::Timestamp;

/// The national data opt-out step: opted-out, unknown and checked patients, and the exemptions.
mod opt_out;

const SEC: i128 = 1_000_000_000;
/// 2020-01-01T00:00:00Z.
const Y2020: i64 = 1_577_836_800;
/// 2025-06-01T00:00:00Z, the request time.
const NOW: i64 = 1_748_736_000;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn ctx(purpose: Purpose) -> Context {
    Context::for_test(i128::from(NOW) * SEC, "A81001", "R8000", purpose)
}

fn org(code: &str) -> ProvisionActor {
    ProvisionActor {
        organisation_ods_code: code.into(),
        ..Default::default()
    }
}

fn classes(codes: &[&str]) -> Vec<String> {
    codes.iter().map(|c| (*c).to_owned()).collect()
}

fn directive(id: &str, permit: bool, provisions: Vec<Provision>) -> ConsentDirective {
    ConsentDirective {
        directive_id: id.into(),
        decision: if permit {
            ConsentDecision::Permit
        } else {
            ConsentDecision::Deny
        } as i32,
        provisions,
        ..Default::default()
    }
}

/// Directive `id` about `purpose` only, with no provisions.
fn scoped(id: &str, purpose: &str, permit: bool) -> ConsentDirective {
    ConsentDirective {
        scope_purposes: vec![purpose.into()],
        ..directive(id, permit, vec![])
    }
}

/// Directive "d1" about research: DENY, but for `study`, whose provision holds `within`.
fn study_consent(study: &str, within: Vec<Provision>) -> ConsentDirective {
    ConsentDirective {
        scope_purposes: vec!["HRESCH".into()],
        ..directive(
            "d1",
            false,
            vec![Provision {
                study_ids: vec![study.into()],
                provisions: within,
                ..Default::default()
            }],
        )
    }
}

fn compile(d: &ConsentDirective) -> CompiledDirective {
    CompiledDirective::compile(d.directive_id.clone(), 3, d)
}

/// A decision for a patient checked recently: opted out or not.
fn run(ctx: &Context, directives: &[ConsentDirective], opted_out: bool) -> Decision {
    run_with(ctx, &PlatformVerdicts::default(), directives, opted_out)
}

fn checked(opted_out: bool) -> OptOutStatus {
    if opted_out {
        OptOutStatus::OptedOut
    } else {
        OptOutStatus::NotOptedOut
    }
}

fn run_with(
    ctx: &Context,
    platform: &PlatformVerdicts,
    directives: &[ConsentDirective],
    opted_out: bool,
) -> Decision {
    run_status(ctx, platform, directives, checked(opted_out))
}

fn run_status(
    ctx: &Context,
    platform: &PlatformVerdicts,
    directives: &[ConsentDirective],
    opt_out: OptOutStatus,
) -> Decision {
    let compiled: Vec<CompiledDirective> = directives.iter().map(compile).collect();
    decide(ctx, platform, &compiled, opt_out, true)
}

fn withhold(
    classes: &[DataClass],
    general: bool,
    start: Option<i64>,
    end: Option<i64>,
) -> Obligation {
    Obligation::Withhold {
        classes: classes.to_vec(),
        general,
        data_period: Period {
            start: start.map(|s| i128::from(s) * SEC),
            end: end.map(|e| i128::from(e) * SEC),
        },
    }
}

/// One expected reason: (source, permit, directive id, path, policy id).
fn cited(
    source: Source,
    permit: bool,
    directive_id: &str,
    path: &str,
    policy_id: &str,
) -> (Source, bool, String, String, String) {
    (
        source,
        permit,
        directive_id.to_owned(),
        path.to_owned(),
        policy_id.to_owned(),
    )
}

/// (source, permit, directive id, path, policy id) of each reason.
fn reasons(d: &Decision) -> Vec<(Source, bool, String, String, String)> {
    d.reasons
        .iter()
        .map(|r| {
            (
                r.source,
                r.permit,
                r.directive_id.clone(),
                r.path_string(),
                r.policy_id.clone(),
            )
        })
        .collect()
}

fn rule(id: &str) -> RuleMatch {
    RuleMatch {
        policy_id: Arc::from(id),
        pseudonymise: false,
        flag_for_review: false,
        description: None,
    }
}

/// The worked example of the contract's Provision comment.
fn worked_example() -> ConsentDirective {
    directive(
        "d1",
        true,
        vec![
            Provision {
                data_classes: classes(&["mental-health"]),
                provisions: vec![Provision {
                    actors: vec![org("RXA")],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Provision {
                actors: vec![org("X26")],
                data_period: Some(P {
                    start: None,
                    end: ts(Y2020),
                }),
                ..Default::default()
            },
        ],
    )
}

#[test]
fn no_directive_means_implied_consent_for_care_only() {
    let d = run(&ctx(Purpose::Treat), &[], false);
    assert!(d.permit);
    assert!(d.obligations.is_empty());
    assert_eq!(reasons(&d), [cited(Source::Default, true, "", "", "")]);
    assert!(d.reasons[0].explanation.contains("implied consent"));
    for p in [
        Purpose::Hresch,
        Purpose::Hoperat,
        Purpose::Hmarkt,
        Purpose::Patrqt,
    ] {
        let d = run(&ctx(p), &[], false);
        assert!(!d.permit, "{p:?}");
        assert_eq!(d.reasons[0].source, Source::Default);
    }
}

#[test]
fn the_patient_may_read_their_own_record_by_default() {
    let patient = Context {
        organisation_ods_code: String::new(),
        role_code: String::new(),
        requester_is_patient: true,
        ..ctx(Purpose::Patrqt)
    };
    let d = run(&patient, &[], false);
    assert!(d.permit);
    assert!(d.obligations.is_empty());
    assert_eq!(reasons(&d), [cited(Source::Default, true, "", "", "")]);
    assert!(d.reasons[0].explanation.contains("right of access"));
    // The patient's own directive about PATRQT still decides (e.g. online access switched off).
    let d = run(&patient, &[scoped("d1", "PATRQT", false)], false);
    assert!(!d.permit);
    // Staff acting at the patient's request are not the patient: the default denies.
    assert!(!run(&ctx(Purpose::Patrqt), &[], false).permit);
}

#[test]
fn worked_example_gp_gets_everything_but_mental_health() {
    let d = run(&ctx(Purpose::Treat), &[worked_example()], false);
    assert!(d.permit);
    assert_eq!(
        d.obligations,
        [withhold(&[DataClass::MentalHealth], false, None, None)]
    );
    assert_eq!(
        reasons(&d),
        [
            cited(Source::PatientDirective, false, "d1", "0", ""),
            cited(Source::Default, true, "", "", ""),
        ]
    );
    assert_eq!(d.reasons[0].directive_version, 3);
}

#[test]
fn worked_example_nested_permit_is_more_specific() {
    let mut c = ctx(Purpose::Treat);
    c.organisation_ods_code = "RXA".into();
    c.classes = vec![DataClass::MentalHealth];
    let d = run(&c, &[worked_example()], false);
    assert!(d.permit);
    assert!(d.obligations.is_empty());
    // The base PERMIT does not name TREAT, so "0.0" is only "no objection": the default decides.
    assert_eq!(reasons(&d), [cited(Source::Default, true, "", "", "")]);
}

#[test]
fn worked_example_data_period_splits_obligations() {
    let mut c = ctx(Purpose::Treat);
    c.organisation_ods_code = "X26".into();
    let d = run(&c, &[worked_example()], false);
    assert!(d.permit);
    assert_eq!(
        d.obligations,
        [
            withhold(&DataClass::ALL, true, None, Some(Y2020)),
            withhold(&[DataClass::MentalHealth], false, Some(Y2020), None),
        ]
    );
    let paths: Vec<String> = d
        .reasons
        .iter()
        .filter(|r| r.source == Source::PatientDirective)
        .map(Reason::path_string)
        .collect();
    assert_eq!(paths, ["0", "1"]);
}

#[test]
fn worked_example_marketing_is_not_explicitly_permitted() {
    let d = run(&ctx(Purpose::Hmarkt), &[worked_example()], false);
    assert!(!d.permit);
    assert!(d.obligations.is_empty(), "no obligations on DENY");
}

#[test]
fn deny_wins_between_siblings_and_the_first_is_reported() {
    // Base DENY; two top-level PERMIT exceptions for TREAT; the second has a nested DENY for RXA.
    let dir = directive(
        "d1",
        false,
        vec![
            Provision {
                purposes: vec!["TREAT".into()],
                ..Default::default()
            },
            Provision {
                purposes: vec!["TREAT".into()],
                provisions: vec![Provision {
                    actors: vec![org("RXA")],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Provision {
                purposes: vec!["TREAT".into()],
                data_classes: classes(&["hiv"]),
                ..Default::default()
            },
        ],
    );
    let d = run(&ctx(Purpose::Treat), std::slice::from_ref(&dir), false);
    assert!(d.permit);
    assert!(d.obligations.is_empty());
    // Explicit permits: "0" comes first in path order for every class (hiv: "0" and "2" both permit).
    assert_eq!(
        reasons(&d),
        [cited(Source::PatientDirective, true, "d1", "0", "")]
    );

    let mut rxa = ctx(Purpose::Treat);
    rxa.organisation_ods_code = "RXA".into();
    let d = run(&rxa, &[dir], false);
    assert!(
        !d.permit,
        "the nested deny under \"1\" beats the sibling permit \"0\""
    );
    assert_eq!(
        reasons(&d),
        [cited(Source::PatientDirective, false, "d1", "1.0", "")]
    );
}

#[test]
fn research_consent_is_explicit_and_study_specific() {
    let consent = study_consent(
        "IRAS-1",
        vec![Provision {
            data_classes: classes(&["genomic"]),
            ..Default::default()
        }],
    );
    let mut c = ctx(Purpose::Hresch);
    c.study_id = Some("IRAS-1".into());
    let d = run(&c, std::slice::from_ref(&consent), false);
    assert!(d.permit);
    assert_eq!(
        d.obligations,
        [withhold(&[DataClass::Genomic], false, None, None)]
    );
    c.study_id = Some("IRAS-2".into());
    assert!(
        !run(&c, std::slice::from_ref(&consent), false).permit,
        "another study is denied by the base"
    );
    // The scope keeps the base DENY away from individual care.
    let d = run(&ctx(Purpose::Treat), &[consent], false);
    assert!(d.permit);
    assert_eq!(d.reasons[0].source, Source::Default);
}

#[test]
fn periods_limit_directives_and_provisions() {
    let mut expired = directive("d1", false, vec![]);
    expired.period = Some(P {
        start: ts(Y2020),
        end: ts(NOW),
    });
    assert!(
        run(&ctx(Purpose::Treat), &[expired.clone()], false).permit,
        "ended at the request time"
    );
    let mut c = ctx(Purpose::Treat);
    c.time = i128::from(NOW - 1) * SEC;
    assert!(
        !run(&c, &[expired], false).permit,
        "in force one second earlier"
    );

    let timed = directive(
        "d2",
        true,
        vec![Provision {
            period: Some(P {
                start: ts(NOW + 10),
                end: None,
            }),
            ..Default::default()
        }],
    );
    assert!(run(&ctx(Purpose::Treat), std::slice::from_ref(&timed), false).permit);
    let mut later = ctx(Purpose::Treat);
    later.time = i128::from(NOW + 10) * SEC;
    assert!(!run(&later, &[timed], false).permit);
}

#[test]
fn actors_roles_and_users_must_all_match() {
    let dir = directive(
        "d1",
        true,
        vec![Provision {
            actors: vec![ProvisionActor {
                organisation_ods_code: "A81001".into(),
                role_code: "R8001".into(),
                user_id: String::new(),
            }],
            ..Default::default()
        }],
    );
    assert!(
        run(&ctx(Purpose::Treat), std::slice::from_ref(&dir), false).permit,
        "R8000 is not R8001"
    );
    let mut nurse = ctx(Purpose::Treat);
    nurse.role_code = "R8001".into();
    assert!(!run(&nurse, std::slice::from_ref(&dir), false).permit);
    let by_user = directive(
        "d2",
        true,
        vec![Provision {
            actors: vec![ProvisionActor {
                user_id: "u1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    );
    assert!(!run(&ctx(Purpose::Treat), &[by_user], false).permit);
}

#[test]
fn a_deny_in_one_directive_beats_a_permit_in_another() {
    let permit = scoped("a", "HOPERAT", true);
    let deny = directive("b", false, vec![]);
    let d = run(&ctx(Purpose::Hoperat), &[permit.clone(), deny], false);
    assert!(!d.permit);
    assert_eq!(
        reasons(&d),
        [cited(Source::PatientDirective, false, "b", "", "")]
    );
    let d = run(&ctx(Purpose::Hoperat), &[permit], false);
    assert!(d.permit, "an explicit PERMIT grants without platform rules");
    assert_eq!(d.reasons[0].source, Source::PatientDirective);
}

#[test]
fn platform_rules_take_their_steps() {
    let consent = scoped("d1", "HOPERAT", true);
    let refusal = directive("d2", false, vec![]);
    let mut forbid = PlatformVerdicts::default();
    forbid
        .classes
        .iter_mut()
        .for_each(|c| c.forbid = vec![rule("f")]);
    let d = run_with(
        &ctx(Purpose::Hoperat),
        &forbid,
        std::slice::from_ref(&consent),
        false,
    );
    assert!(!d.permit, "FORBID beats an explicit permit");
    assert_eq!(
        reasons(&d),
        [cited(Source::PlatformPolicy, false, "", "", "f")]
    );

    let mut over = PlatformVerdicts::default();
    over.classes.iter_mut().for_each(|c| {
        c.overrides = vec![RuleMatch {
            flag_for_review: true,
            ..rule("o")
        }]
    });
    let d = run_with(
        &ctx(Purpose::Hoperat),
        &over,
        std::slice::from_ref(&refusal),
        false,
    );
    assert!(d.permit, "OVERRIDE beats the patient's DENY");
    assert_eq!(d.obligations, [Obligation::FlagForReview]);
    assert!(
        !run_with(
            &ctx(Purpose::Hoperat),
            &over,
            std::slice::from_ref(&refusal),
            true
        )
        .permit,
        "but not the opt-out"
    );

    let mut default = PlatformVerdicts::default();
    default.classes.iter_mut().for_each(|c| {
        c.default = Some((
            true,
            vec![RuleMatch {
                pseudonymise: true,
                ..rule("p")
            }],
        ))
    });
    default.classes[DataClass::Genomic as usize].default = Some((false, vec![rule("g")]));
    let d = run_with(&ctx(Purpose::Hoperat), &default, &[], false);
    assert!(d.permit);
    assert_eq!(
        d.obligations,
        [
            withhold(&[DataClass::Genomic], false, None, None),
            Obligation::Pseudonymise
        ]
    );
    assert_eq!(
        reasons(&d),
        [
            cited(Source::PlatformPolicy, false, "", "", "g"),
            cited(Source::PlatformPolicy, true, "", "", "p"),
        ]
    );
    let d = run_with(&ctx(Purpose::Hoperat), &default, &[refusal], false);
    assert!(
        !d.permit,
        "DEFAULT rules only apply where the patient expressed no wish"
    );
}

#[test]
fn break_glass_and_asserted_bases_are_flagged() {
    let mut glass = ctx(Purpose::Etreat);
    glass.break_glass = true;
    let d = run(&glass, &[worked_example()], false);
    assert!(d.permit);
    assert_eq!(d.obligations.last(), Some(&Obligation::FlagForReview));
    let refusal = directive("d1", false, vec![]);
    let d = run(&glass, &[refusal], false);
    assert!(!d.permit);
    assert_eq!(
        d.obligations,
        [Obligation::FlagForReview],
        "flagged on DENY too"
    );

    let consent = scoped("d2", "HOPERAT", true);
    let mut legal = ctx(Purpose::Hoperat);
    legal.legal_basis = LegalBasis::LegalRequirement;
    assert_eq!(
        run(&legal, &[consent], false).obligations,
        [Obligation::FlagForReview]
    );
    assert!(
        run(&legal, &[], false).obligations.is_empty(),
        "no flag on DENY without break-glass"
    );
}

#[test]
fn decisions_do_not_depend_on_directive_order_or_scope_order() {
    let a = worked_example();
    let b = directive(
        "d0",
        false,
        vec![Provision {
            data_classes: classes(&["hiv"]),
            ..Default::default()
        }],
    );
    let mut c = ctx(Purpose::Treat);
    c.organisation_ods_code = "X26".into();
    let one = run(&c, &[a.clone(), b.clone()], false);
    let two = run(&c, &[b, a], false);
    assert_eq!(one.permit, two.permit);
    assert_eq!(one.obligations, two.obligations);
    let ids: Vec<&str> = one
        .reasons
        .iter()
        .map(|r| r.directive_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["d0", "d1", "d1", ""],
        "sorted by source, then directive id, then path"
    );
    let twos: Vec<&str> = two
        .reasons
        .iter()
        .map(|r| r.directive_id.as_str())
        .collect();
    assert_eq!(ids, twos);
}

/// A decision's validity ends at the first period boundary or opt-out expiry after now.
#[test]
fn a_decision_is_valid_until_the_next_boundary_of_a_period_or_an_opt_out_check() {
    let now_micros = NOW * 1_000_000;
    let day = 86_400;
    let timed = ConsentDirective {
        // Began in the past; ends in ten days.
        period: Some(P {
            start: ts(Y2020),
            end: ts(NOW + 10 * day),
        }),
        ..directive(
            "d1",
            false,
            vec![Provision {
                // A provision that starts applying in three days.
                period: Some(P {
                    start: ts(NOW + 3 * day),
                    end: None,
                }),
                ..Default::default()
            }],
        )
    };
    let validity = CheckValidity::DEFAULT;
    let at = |seconds: i64| Some(i128::from(seconds) * SEC);
    assert_eq!(
        valid_until(
            &[compile(&timed)],
            None,
            validity,
            i128::from(NOW) * SEC,
            now_micros
        ),
        at(NOW + 3 * day)
    );
    // An opt-out check made 29 days ago expires (30-day validity) in one day.
    let check = RecordedCheck {
        opted_out: false,
        check_time: (NOW - 29 * day) * 1_000_000,
    };
    assert_eq!(
        valid_until(
            &[compile(&timed)],
            Some(check),
            validity,
            i128::from(NOW) * SEC,
            now_micros
        ),
        at(NOW + day)
    );
    // An expired check, a never-checked patient and timeless directives: valid until a write.
    let expired = RecordedCheck {
        check_time: (NOW - 31 * day) * 1_000_000,
        ..check
    };
    let timeless = compile(&scoped("d2", "TREAT", true));
    assert_eq!(
        valid_until(
            std::slice::from_ref(&timeless),
            Some(expired),
            validity,
            i128::from(NOW) * SEC,
            now_micros
        ),
        None
    );
    assert_eq!(
        valid_until(
            &[timeless],
            None,
            validity,
            i128::from(NOW) * SEC,
            now_micros
        ),
        None
    );
    // A boundary at now has passed: the decision already reflects it.
    let ending_now = ConsentDirective {
        period: Some(P {
            start: None,
            end: ts(NOW),
        }),
        ..directive("d3", true, vec![])
    };
    assert_eq!(
        valid_until(
            &[compile(&ending_now)],
            None,
            validity,
            i128::from(NOW) * SEC,
            now_micros
        ),
        None
    );
}
