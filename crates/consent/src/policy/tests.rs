use std::sync::Arc;

use super::*;
use crate::domain::codes::{Class, DataClass, LegalBasis, Purpose};
use crate::domain::decide::{CompiledDirective, Context, RuleMatch, Source, decide};
use crate::domain::optout::OptOutStatus;
use carerecord_contracts::consent::v1::{ConsentDecision, ConsentDirective, Provision};

fn ctx(role: &str, purpose: Purpose) -> Context {
    Context::for_test(0, "RXA", role, purpose)
}

fn ids(rules: &[RuleMatch]) -> Vec<&str> {
    rules.iter().map(|r| &*r.policy_id).collect()
}

fn forbids(p: &PlatformPolicies, c: &Context, class: Class) -> Vec<String> {
    let v = p.evaluate(c).unwrap();
    ids(&v.classes[class.index()].forbid)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn embedded_rules_load_and_have_a_version() {
    let p = PlatformPolicies::embedded().unwrap();
    assert!(p.version().starts_with("sha256:"));
    assert_eq!(p.sets.by_id.len(), 15);
    assert_eq!(
        p.exemption_ids(),
        [
            "opt-out-individual-care",
            "opt-out-legal-obligation",
            "opt-out-public-health",
            "opt-out-explicit-consent"
        ]
    );
}

#[test]
fn a_patient_reading_their_own_record_does_not_see_safeguarding() {
    let p = PlatformPolicies::embedded().unwrap();
    let patient = Context {
        organisation_ods_code: String::new(),
        role_code: String::new(),
        requester_is_patient: true,
        ..ctx("", Purpose::Patrqt)
    };
    let safeguarding = Class::Labelled(DataClass::Safeguarding);
    assert_eq!(
        forbids(&p, &patient, safeguarding),
        ["patient-access-no-safeguarding"]
    );
    assert!(forbids(&p, &patient, Class::General).is_empty());
    // Staff acting at the patient's request are reviewed by their organisation, not this rule.
    assert!(forbids(&p, &ctx("R8000", Purpose::Patrqt), safeguarding).is_empty());
}

#[test]
fn roles_are_checked_for_purposes() {
    let p = PlatformPolicies::embedded().unwrap();
    let general = Class::General;
    assert!(forbids(&p, &ctx("R8000", Purpose::Treat), general).is_empty());
    assert_eq!(
        forbids(&p, &ctx("R8010", Purpose::Treat), general),
        ["care-roles-only"]
    );
    assert_eq!(
        forbids(&p, &ctx("R8008", Purpose::Etreat), general),
        ["break-glass-clinicians-only"]
    );
    assert_eq!(
        forbids(&p, &ctx("R8010", Purpose::Etreat), general),
        ["break-glass-clinicians-only", "care-roles-only"],
        "every matching rule is cited, by id"
    );
    let student = ctx("R8004", Purpose::Treat);
    assert_eq!(
        forbids(&p, &student, Class::Labelled(DataClass::Safeguarding)),
        ["students-no-safeguarding"]
    );
    assert!(forbids(&p, &student, Class::Labelled(DataClass::MentalHealth)).is_empty());
    assert_eq!(
        forbids(&p, &ctx("R8000", Purpose::Hmarkt), general),
        ["no-marketing"]
    );
    let mut research = ctx("R8000", Purpose::Hresch);
    assert_eq!(forbids(&p, &research, general), ["research-names-study"]);
    research.study_id = Some("IRAS-1".into());
    assert!(forbids(&p, &research, general).is_empty());
}

#[test]
fn overrides_and_defaults() {
    let p = PlatformPolicies::embedded().unwrap();
    let mut court = ctx("R8000", Purpose::Hoperat);
    court.legal_basis = LegalBasis::CourtOrder;
    let v = p.evaluate(&court).unwrap();
    let general = &v.classes[Class::General.index()];
    assert_eq!(ids(&general.overrides), ["court-order"]);
    assert!(general.overrides[0].flag_for_review);

    let v = p.evaluate(&ctx("R8000", Purpose::Hoperat)).unwrap();
    let (permit, rules) = v.classes[Class::General.index()].default.clone().unwrap();
    assert!(permit);
    assert_eq!(ids(&rules), ["planning-pseudonymised"]);
    assert!(rules[0].pseudonymise);
    let (permit, rules) = v.classes[DataClass::Genomic as usize]
        .default
        .clone()
        .unwrap();
    assert!(!permit, "deny wins among DEFAULT rules");
    assert_eq!(ids(&rules), ["planning-no-genomic"]);

    let mut copi = ctx("R8000", Purpose::Pubhlth);
    assert!(p.evaluate(&copi).unwrap().classes[0].default.is_none());
    copi.legal_basis = LegalBasis::PublicHealth;
    let v = p.evaluate(&copi).unwrap();
    assert_eq!(
        ids(&v.classes[0].default.as_ref().unwrap().1),
        ["public-health"]
    );
    assert!(
        p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap().classes[0]
            .default
            .is_none()
    );
}

#[test]
fn verdicts_are_cached_per_context() {
    let p = PlatformPolicies::embedded().unwrap();
    let a = p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap();
    let b = p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let c = p.evaluate(&ctx("R8001", Purpose::Treat)).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
}

/// The exemption each patient-consent value gets for general data.
fn exemptions(p: &PlatformPolicies, c: &Context) -> [Option<String>; 3] {
    let v = p.evaluate(c).unwrap();
    v.classes[Class::General.index()]
        .exemptions
        .clone()
        .map(|e| e.map(|r| r.policy_id.to_string()))
}

fn with_basis(purpose: Purpose, basis: LegalBasis) -> Context {
    Context {
        legal_basis: basis,
        ..ctx("R8000", purpose)
    }
}

/// A decision for an opted-out patient with these directives.
fn decide_opted_out(
    p: &PlatformPolicies,
    c: &Context,
    directives: &[ConsentDirective],
) -> crate::domain::decide::Decision {
    let compiled: Vec<CompiledDirective> = directives
        .iter()
        .enumerate()
        .map(|(i, d)| CompiledDirective::compile(format!("d{i}"), 1, d))
        .collect();
    decide(
        c,
        &p.evaluate(c).unwrap(),
        &compiled,
        OptOutStatus::OptedOut,
        true,
    )
}

fn research_consent(study: Option<&str>) -> ConsentDirective {
    ConsentDirective {
        decision: ConsentDecision::Deny as i32,
        scope_purposes: vec!["HRESCH".into()],
        provisions: study
            .map(|s| Provision {
                study_ids: vec![s.into()],
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn all(id: &str) -> [Option<String>; 3] {
    [Some(id.into()), Some(id.into()), Some(id.into())]
}

#[test]
fn individual_care_is_exempt_from_the_opt_out() {
    let p = PlatformPolicies::embedded().unwrap();
    for purpose in [Purpose::Treat, Purpose::Etreat, Purpose::Patrqt] {
        let mut c = ctx("R8000", purpose);
        c.break_glass = purpose == Purpose::Etreat;
        assert_eq!(
            exemptions(&p, &c),
            all("opt-out-individual-care"),
            "{purpose:?}"
        );
    }
    let d = decide_opted_out(&p, &ctx("R8000", Purpose::Treat), &[]);
    assert!(d.permit);
    let reason = &d.reasons[0];
    assert_eq!(
        (reason.source, reason.permit, reason.policy_id.as_str()),
        (Source::NationalDataOptOut, true, "opt-out-individual-care")
    );
    assert!(
        reason.explanation.contains("opt-out-individual-care")
            && reason.explanation.contains("own care"),
        "{}",
        reason.explanation
    );
    for purpose in [
        Purpose::Hresch,
        Purpose::Hoperat,
        Purpose::Hpaymt,
        Purpose::Hmarkt,
        Purpose::Pubhlth,
    ] {
        let c = with_basis(purpose, LegalBasis::Unspecified);
        assert_eq!(exemptions(&p, &c), [None, None, None], "{purpose:?}");
        let d = decide_opted_out(&p, &c, &[]);
        assert!(!d.permit, "{purpose:?}");
    }
}

#[test]
fn legal_requirements_and_court_orders_are_exempt_from_the_opt_out() {
    let p = PlatformPolicies::embedded().unwrap();
    for basis in [
        LegalBasis::LegalRequirement,
        LegalBasis::CourtOrder,
        LegalBasis::OverridingPublicInterest,
    ] {
        let c = with_basis(Purpose::Hoperat, basis);
        assert_eq!(
            exemptions(&p, &c),
            all("opt-out-legal-obligation"),
            "{basis:?}"
        );
        let d = decide_opted_out(&p, &c, &[]);
        let ndoo: Vec<_> = d
            .reasons
            .iter()
            .filter(|r| r.source == Source::NationalDataOptOut)
            .map(|r| (r.permit, r.policy_id.as_str()))
            .collect();
        assert_eq!(ndoo, [(true, "opt-out-legal-obligation")], "{basis:?}");
    }
}

#[test]
fn public_health_is_exempt_from_the_opt_out() {
    let p = PlatformPolicies::embedded().unwrap();
    let copi = with_basis(Purpose::Pubhlth, LegalBasis::PublicHealth);
    assert_eq!(exemptions(&p, &copi), all("opt-out-public-health"));
    let d = decide_opted_out(&p, &copi, &[]);
    assert!(
        d.permit,
        "exempt, then the public-health DEFAULT rule permits"
    );
    assert_eq!(
        d.reasons
            .iter()
            .map(|r| (r.source, r.policy_id.as_str()))
            .collect::<Vec<_>>(),
        [
            (Source::PlatformPolicy, "public-health"),
            (Source::NationalDataOptOut, "opt-out-public-health")
        ]
    );
    let no_basis = with_basis(Purpose::Pubhlth, LegalBasis::Unspecified);
    assert_eq!(exemptions(&p, &no_basis), [None, None, None]);
}

#[test]
fn explicit_consent_is_exempt_only_when_the_directives_record_it() {
    let p = PlatformPolicies::embedded().unwrap();
    let mut research = with_basis(Purpose::Hresch, LegalBasis::ExplicitConsent);
    research.study_id = Some("IRAS-1".into());
    let id = Some("opt-out-explicit-consent".to_owned());
    // Research needs the study named; other purposes any explicit permit.
    assert_eq!(exemptions(&p, &research), [None, None, id.clone()]);
    let planning = with_basis(Purpose::Hoperat, LegalBasis::ExplicitConsent);
    assert_eq!(exemptions(&p, &planning), [None, id.clone(), id.clone()]);
    // Without the EXPLICIT_CONSENT basis, consent in the directives exempts nothing.
    let mut unstated = with_basis(Purpose::Hresch, LegalBasis::Unspecified);
    unstated.study_id = Some("IRAS-1".into());
    assert_eq!(exemptions(&p, &unstated), [None, None, None]);

    // Through the decision: the directive's verdict picks the exemption.
    let d = decide_opted_out(&p, &research, &[research_consent(Some("IRAS-1"))]);
    assert!(d.permit);
    assert_eq!(
        (d.reasons[0].source, d.reasons[0].policy_id.as_str()),
        (Source::NationalDataOptOut, "opt-out-explicit-consent")
    );
    assert_eq!(d.reasons[1].source, Source::PatientDirective);
    let other_study = decide_opted_out(&p, &research, &[research_consent(Some("IRAS-2"))]);
    assert!(!other_study.permit);
    let general = ConsentDirective {
        decision: ConsentDecision::Permit as i32,
        ..research_consent(None)
    };
    let d = decide_opted_out(&p, &research, &[general]);
    assert!(!d.permit, "a general research consent names no study");
    assert_eq!(
        (d.reasons[0].source, d.reasons[0].permit),
        (Source::NationalDataOptOut, false)
    );
    assert!(!decide_opted_out(&p, &unstated, &[research_consent(Some("IRAS-1"))]).permit);
}

#[test]
fn an_ics_policy_file_changes_the_exemptions() {
    let embedded = PlatformPolicies::embedded().unwrap();
    // An ICS that does not accept an overriding public interest as an exemption.
    let narrowed = DEFAULT_POLICIES.replace(
        " ||\n  context.legal_basis == \"OVERRIDING_PUBLIC_INTEREST\"",
        "",
    );
    assert_ne!(narrowed, DEFAULT_POLICIES);
    let p = PlatformPolicies::load(&narrowed).unwrap();
    assert_ne!(p.version(), embedded.version());
    let interest = with_basis(Purpose::Hoperat, LegalBasis::OverridingPublicInterest);
    assert_eq!(
        exemptions(&embedded, &interest),
        all("opt-out-legal-obligation")
    );
    assert_eq!(exemptions(&p, &interest), [None, None, None]);
    assert!(!decide_opted_out(&p, &interest, &[]).permit);
    let court = with_basis(Purpose::Hoperat, LegalBasis::CourtOrder);
    assert_eq!(exemptions(&p, &court), all("opt-out-legal-obligation"));

    // And one that exempts payment audits by its own rule, cited by its id.
    let extended = format!(
        "{DEFAULT_POLICIES}\n@id(\"ics-payment-audit\") @kind(\"optout-exemption\")\n\
         permit (principal == Role::\"R8008\", action == Action::\"HPAYMT\", resource);"
    );
    let p = PlatformPolicies::load(&extended).unwrap();
    let audit = ctx("R8008", Purpose::Hpaymt);
    assert_eq!(exemptions(&p, &audit), all("ics-payment-audit"));
    assert_eq!(
        exemptions(&p, &ctx("R8000", Purpose::Hpaymt)),
        [None, None, None]
    );
    let d = decide_opted_out(&p, &audit, &[]);
    assert_eq!(
        (d.reasons[0].source, d.reasons[0].policy_id.as_str()),
        (Source::NationalDataOptOut, "ics-payment-audit")
    );
    assert!(
        !d.permit,
        "exempt from the opt-out; the built-in default still denies HPAYMT"
    );

    // Without exemptions, the opt-out withholds individual care too.
    let p = PlatformPolicies::load("").unwrap();
    assert!(p.exemption_ids().is_empty());
    assert!(!decide_opted_out(&p, &ctx("R8000", Purpose::Treat), &[]).permit);
}

#[test]
fn only_exemptions_read_the_patients_consent() {
    let p = PlatformPolicies::load(
        "@id(\"e\") @kind(\"optout-exemption\") permit (principal, action, resource) \
         when { context has patient_study_consent && context.patient_study_consent };",
    )
    .unwrap();
    assert_eq!(
        exemptions(&p, &ctx("R8000", Purpose::Hoperat)),
        [None, None, Some("e".into())]
    );
    for kind in ["forbid", "default"] {
        let effect = if kind == "forbid" { "forbid" } else { "permit" };
        let message = load_error(&format!(
            "@id(\"k\") @kind(\"{kind}\") {effect} (principal, action, resource) \
             when {{ context.patient_explicit_consent }};"
        ));
        assert!(
            message.contains("patient_explicit_consent") && message.contains("optout-exemption"),
            "{message}"
        );
    }
    assert!(
        load_error(
            "@id(\"o\") @kind(\"override\") permit (principal, action, resource) \
             when { context has patient_study_consent };"
        )
        .contains("patient_study_consent")
    );
    // Naming the attribute in a string is not reading it.
    assert!(
        PlatformPolicies::load(
            "@id(\"s\") @kind(\"forbid\") @description(\"patient_study_consent\") \
             forbid (principal, action, resource) when { context.study_id == \"patient_study_consent\" };"
        )
        .is_ok()
    );
}

fn load_error(text: &str) -> String {
    PlatformPolicies::load(text).unwrap_err().to_string()
}

#[test]
fn bad_policy_files_are_refused_with_a_reason() {
    assert!(load_error("permit (principal,").starts_with("does not parse"));
    let typo = load_error(
        "@id(\"a\") @kind(\"forbid\") forbid (principal, action, resource) when { context.purpose == \"HRESCH\" };",
    );
    assert!(typo.starts_with("does not type-check"), "{typo}");
    // (policy file, what its refusal says)
    let refused = [
        (
            "@kind(\"forbid\") forbid (principal, action, resource);",
            "@id",
        ),
        (
            "@id(\"a\") @kind(\"forbid\") forbid (principal, action, resource);\n\
             @id(\"a\") @kind(\"forbid\") forbid (principal, action, resource);",
            "\"a\" is used by more than one policy",
        ),
        (
            "@id(\"a\") @kind(\"override\") forbid (principal, action, resource);",
            "must be a permit",
        ),
        (
            "@id(\"a\") @kind(\"forbid\") permit (principal, action, resource);",
            "must be a forbid",
        ),
        ("@id(\"a\") permit (principal, action, resource);", "@kind"),
        (
            "@id(\"a\") @kind(\"optout-exemption\") forbid (principal, action, resource);",
            "must be a permit",
        ),
        (
            "@id(\"a\") @kind(\"optout-exemption\") @obligations(\"pseudonymise\") permit (principal, action, resource);",
            "no @obligations",
        ),
        (
            "@id(\"a\") @kind(\"default\") @obligations(\"shred\") permit (principal, action, resource);",
            "@obligations",
        ),
        (
            "@id(\"a\") @kind(\"default\") @obligations(\"pseudonymise\") forbid (principal, action, resource);",
            "only be attached to a permit",
        ),
        (
            "@id(\"t\") @kind(\"forbid\") forbid (principal == ?principal, action, resource);",
            "templates",
        ),
    ];
    for (text, says) in refused {
        let message = load_error(text);
        assert!(message.contains(says), "{text}: {message}");
    }
    assert!(
        PlatformPolicies::load("").is_ok(),
        "an empty set leaves the built-in default"
    );
}
