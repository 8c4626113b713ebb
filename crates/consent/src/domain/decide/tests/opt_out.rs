//! The national data opt-out step of a decision: an opted-out patient, a patient whose status is
//! unknown (never checked, or the check expired), and the exemption rules that set it aside.

use super::*;

/// Verdicts where `rule` exempts from the opt-out for the given patient-consent values.
fn exempting(rule_id: &str, consents: &[PatientConsent]) -> PlatformVerdicts {
    let mut v = PlatformVerdicts::default();
    for class in &mut v.classes {
        for c in consents {
            class.exemptions[c.index()] = Some(rule(rule_id));
        }
    }
    v
}

#[test]
fn an_unknown_opt_out_status_withholds_what_the_opt_out_covers() {
    let research = exempting("explicit-study", &[PatientConsent::StudySpecific]);
    let consent = study_consent("IRAS-1", vec![]);
    let study = Context {
        legal_basis: LegalBasis::ExplicitConsent,
        study_id: Some("IRAS-1".into()),
        ..ctx(Purpose::Hresch)
    };
    for unknown in [OptOutStatus::NeverChecked, OptOutStatus::CheckExpired] {
        // Planning for a patient whose status is not known: denied, with its own reason.
        let d = run_status(&ctx(Purpose::Hoperat), &research, &[], unknown);
        assert!(!d.permit);
        assert_eq!(
            reasons(&d),
            [cited(Source::OptOutStatusUnknown, false, "", "", "")]
        );
        assert_eq!(d.reasons[0].source.reason_code(), "opt-out-status-unknown");
        let explained = if unknown == OptOutStatus::NeverChecked {
            "never been checked"
        } else {
            "older than"
        };
        assert!(
            d.reasons[0].explanation.contains(explained),
            "{}",
            d.reasons[0].explanation
        );
        // An exemption sets it aside without being cited: the status did not matter.
        let d = run_status(&study, &research, std::slice::from_ref(&consent), unknown);
        assert!(d.permit);
        assert_eq!(
            reasons(&d),
            [cited(Source::PatientDirective, true, "d1", "0", "")]
        );
        // The patient's own care or request never waits for a check, even without exemption rules.
        for purpose in [Purpose::Treat, Purpose::Etreat, Purpose::Patrqt] {
            let d = run_status(&ctx(purpose), &PlatformVerdicts::default(), &[], unknown);
            assert_eq!(reasons(&d)[0].0, Source::Default, "{purpose:?}");
        }
    }
    // A recent check that the patient has not opted out: planning is decided by the later steps.
    let d = run_status(
        &ctx(Purpose::Hoperat),
        &PlatformVerdicts::default(),
        &[],
        OptOutStatus::NotOptedOut,
    );
    assert_eq!(reasons(&d), [cited(Source::Default, false, "", "", "")]);
    assert_eq!(
        run(&ctx(Purpose::Hoperat), &[], true).reasons[0]
            .source
            .reason_code(),
        "national-data-opt-out"
    );
}

#[test]
fn the_opt_out_denies_unless_an_exemption_rule_sets_it_aside() {
    // No exemption rule: the opt-out withholds even individual care.
    let d = run(&ctx(Purpose::Treat), &[], true);
    assert!(!d.permit);
    assert_eq!(
        reasons(&d),
        [cited(Source::NationalDataOptOut, false, "", "", "")]
    );
    // A context-only exemption (every patient-consent value): cited by id, then the next steps decide.
    let care = exempting("care", &PatientConsent::ALL);
    let d = run_with(&ctx(Purpose::Treat), &care, &[], true);
    assert!(d.permit);
    assert_eq!(
        reasons(&d),
        [
            cited(Source::NationalDataOptOut, true, "", "", "care"),
            cited(Source::Default, true, "", "", ""),
        ]
    );
    assert_eq!(
        reasons(&run_with(&ctx(Purpose::Treat), &care, &[], false)),
        [cited(Source::Default, true, "", "", "")],
        "not cited when the patient has not opted out"
    );
    // Exempt from the opt-out, a patient's refusal still applies.
    let refusal = directive("d0", false, vec![]);
    let d = run_with(&ctx(Purpose::Treat), &care, &[refusal], true);
    assert!(!d.permit);
    assert_eq!(d.reasons[0].policy_id, "care");
    assert_eq!(d.reasons[1].source, Source::PatientDirective);
}

#[test]
fn exemptions_see_whether_the_patient_consented_explicitly_and_to_the_study() {
    let study = exempting("study", &[PatientConsent::StudySpecific]);
    let consent = study_consent("S1", vec![]);
    let mut research = ctx(Purpose::Hresch);
    research.legal_basis = LegalBasis::ExplicitConsent;
    research.study_id = Some("S1".into());
    let d = run_with(&research, &study, std::slice::from_ref(&consent), true);
    assert!(d.permit);
    assert_eq!(
        reasons(&d),
        [
            cited(Source::NationalDataOptOut, true, "", "", "study"),
            cited(Source::PatientDirective, true, "d1", "0", ""),
        ]
    );
    // A general research consent (no study named) is explicit but not study-specific.
    let general = scoped("d2", "HRESCH", true);
    assert!(!run_with(&research, &study, std::slice::from_ref(&general), true).permit);
    let explicit = exempting("explicit", &[PatientConsent::Explicit]);
    assert_eq!(
        run_with(&research, &explicit, std::slice::from_ref(&general), true).reasons[0].policy_id,
        "explicit"
    );
    assert!(
        run(&research, &[general], false).permit,
        "without the opt-out it is an explicit permit"
    );
    // No directive at all: the patient gave no consent.
    assert!(!run_with(&research, &study, &[], true).permit);
}
