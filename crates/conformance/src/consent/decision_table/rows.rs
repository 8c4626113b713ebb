//! The rows of the decision table, in id order.

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, DecideRequest, DecisionOutcome,
    DecisionSource, LegalBasis, Obligation, ObligationType, Provision,
};

use super::{OptOut, Reason, Row};
use crate::consent::support::{
    ALL_CLASSES, actor, ask, ask_as, at, classes, directive, own_request, period, strings,
    worked_example, year,
};

use ConsentDecision::{Deny as BaseDeny, Permit as BasePermit};
use DecisionOutcome::{Deny, Permit};
use DecisionSource::{Default as Builtin, NationalDataOptOut as Ndoo, PatientDirective as Pd};

/// The built-in default decided.
const DEFAULT_PERMIT: Reason = (Builtin, Permit, None, "", "");
const DEFAULT_DENY: Reason = (Builtin, Deny, None, "", "");
/// A valid check says the patient opted out, and the opt-out applies.
const OPTED_OUT_DENY: Reason = (Ndoo, Deny, None, "", "national-data-opt-out");
/// A valid check says the patient opted out, and an exemption set the opt-out aside.
const OPTED_OUT_EXEMPT: Reason = (Ndoo, Permit, None, "", "national-data-opt-out");
/// No valid check is recorded, and the opt-out applies as if the patient had opted out.
const STATUS_UNKNOWN_DENY: Reason = (Ndoo, Deny, None, "", "opt-out-status-unknown");

fn none(_: &str) -> Vec<ConsentDirective> {
    Vec::new()
}

fn no_obligations() -> Vec<Obligation> {
    Vec::new()
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

/// What a row does not set: no directives, no revocation, no opt-out, no obligations. Every row
/// sets its own id, title, request, outcome and reasons.
const ROW: Row = Row {
    id: "",
    title: "",
    directives: none,
    revoke: false,
    opt_out: OptOut::NotOptedOut,
    request: |p| ask(p, "TREAT"),
    outcome: Permit,
    obligations: no_obligations,
    reasons: None,
};

pub(super) const TABLE: &[Row] = &[
    Row {
        id: "CON-DT-01",
        title: "No directive, TREAT: the built-in default permits individual care",
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-02",
        title: "No directive, HRESCH: the built-in default denies every purpose but care",
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        reasons: Some(&[DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-03",
        title: "No directive, HMARKT: denied by the built-in default",
        request: |p| ask(p, "HMARKT"),
        outcome: Deny,
        reasons: Some(&[DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-04",
        title: "No directive, PATRQT by staff at the patient's request: denied by the built-in default (it implies only care and the patient's own read)",
        request: |p| ask(p, "PATRQT"),
        outcome: Deny,
        reasons: Some(&[DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-05",
        title: "No directive, ETREAT with a break-glass reason: PERMIT flagged for review",
        request: |p| DecideRequest {
            break_glass_reason: "Unconscious in ED, need medication history".into(),
            ..ask(p, "ETREAT")
        },
        outcome: Permit,
        obligations: || vec![flag()],
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-06",
        title: "Worked example, GP A81001, TREAT, all data: PERMIT withholding mental-health",
        directives: |p| vec![worked_example(p)],
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: || vec![withhold(&["mental-health"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-07",
        title: "Worked example, trust RXA asks for mental-health: the more specific provision 0.0 decides, PERMIT without obligation",
        directives: |p| vec![worked_example(p)],
        request: |p| DecideRequest {
            data_classes: strings(&["mental-health"]),
            ..ask_as(p, "TREAT", "RXA", "R8000")
        },
        outcome: Permit,
        reasons: None,
        ..ROW
    },
    Row {
        id: "CON-DT-08",
        title: "Worked example, X11, all data: two withhold obligations split at 2020-01-01, in canonical order",
        directives: |p| vec![worked_example(p)],
        request: |p| ask_as(p, "TREAT", "X11", "R8000"),
        outcome: Permit,
        obligations: || {
            vec![
                withhold(&ALL_CLASSES, true, period(None, Some(year(2020)))),
                withhold(&["mental-health"], false, period(Some(year(2020)), None)),
            ]
        },
        reasons: Some(&[
            (Pd, Deny, Some(0), "0", ""),
            (Pd, Deny, Some(0), "1", ""),
            DEFAULT_PERMIT,
        ]),
        ..ROW
    },
    Row {
        id: "CON-DT-09",
        title: "Worked example, HMARKT: a PERMIT base not naming the purpose is only no objection -> DENY",
        directives: |p| vec![worked_example(p)],
        request: |p| ask(p, "HMARKT"),
        outcome: Deny,
        reasons: Some(&[(Pd, Deny, Some(0), "0", ""), DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-10",
        title: "A blanket DENY directive denies individual care too",
        directives: blanket_deny,
        request: |p| ask(p, "TREAT"),
        outcome: Deny,
        reasons: Some(&[(Pd, Deny, Some(0), "", "")]),
        ..ROW
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
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
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
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-13",
        title: "A DENY scoped to HRESCH does not affect TREAT",
        directives: |p| vec![scoped(p, BaseDeny, &["HRESCH"])],
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-14",
        title: "A DENY scoped to HRESCH denies HRESCH",
        directives: |p| vec![scoped(p, BaseDeny, &["HRESCH"])],
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        reasons: Some(&[(Pd, Deny, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-15",
        title: "A PERMIT naming HRESCH in scope_purposes is explicit: HRESCH permitted by the directive",
        directives: |p| vec![scoped(p, BasePermit, &["HRESCH"])],
        request: |p| ask(p, "HRESCH"),
        outcome: Permit,
        reasons: Some(&[(Pd, Permit, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-16",
        title: "A PERMIT base not naming HRESCH is no objection: HRESCH denied by the default",
        directives: |p| vec![directive(p, BasePermit, vec![])],
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        reasons: Some(&[DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-17",
        title: "Opted out, HRESCH under EXPLICIT_CONSENT, consent not naming the study: the opt-out denies",
        directives: |p| vec![scoped(p, BasePermit, &["HRESCH"])],
        opt_out: OptOut::OptedOut,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-1"),
        outcome: Deny,
        reasons: Some(&[OPTED_OUT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-18",
        title: "Opted out, HRESCH under EXPLICIT_CONSENT with study-specific consent: exempt, the directive permits",
        directives: study_consent,
        opt_out: OptOut::OptedOut,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-1"),
        outcome: Permit,
        reasons: Some(&[OPTED_OUT_EXEMPT, (Pd, Permit, Some(0), "0", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-19",
        title: "Opted out, consent for study IRAS-1, request for study IRAS-2: the opt-out denies",
        directives: study_consent,
        opt_out: OptOut::OptedOut,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-2"),
        outcome: Deny,
        reasons: Some(&[OPTED_OUT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-20",
        title: "Opted out, study-specific consent but no EXPLICIT_CONSENT basis: the opt-out denies",
        directives: study_consent,
        opt_out: OptOut::OptedOut,
        request: |p| research(p, LegalBasis::Unspecified, "IRAS-1"),
        outcome: Deny,
        reasons: Some(&[OPTED_OUT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-21",
        title: "The opt-out does not apply to individual care (TREAT)",
        opt_out: OptOut::OptedOut,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: None,
        ..ROW
    },
    Row {
        id: "CON-DT-22",
        title: "Opted out, HOPERAT under LEGAL_REQUIREMENT: exempt from the opt-out, but nothing permits -> DENY (default)",
        opt_out: OptOut::OptedOut,
        request: |p| DecideRequest {
            legal_basis: LegalBasis::LegalRequirement as i32,
            ..ask(p, "HOPERAT")
        },
        outcome: Deny,
        reasons: Some(&[OPTED_OUT_EXEMPT, DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-23",
        title: "HOPERAT under LEGAL_REQUIREMENT with explicit permission: PERMIT flagged for review",
        directives: |p| vec![scoped(p, BasePermit, &["HOPERAT"])],
        request: |p| DecideRequest {
            legal_basis: LegalBasis::LegalRequirement as i32,
            ..ask(p, "HOPERAT")
        },
        outcome: Permit,
        obligations: || vec![flag()],
        reasons: Some(&[(Pd, Permit, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-24",
        title: "Opted out, PUBHLTH under PUBLIC_HEALTH with explicit permission: exempt, PERMIT without flag",
        directives: |p| vec![scoped(p, BasePermit, &["PUBHLTH"])],
        opt_out: OptOut::OptedOut,
        request: |p| DecideRequest {
            legal_basis: LegalBasis::PublicHealth as i32,
            ..ask(p, "PUBHLTH")
        },
        outcome: Permit,
        reasons: Some(&[OPTED_OUT_EXEMPT, (Pd, Permit, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-25",
        title: "ETREAT against a blanket DENY directive: DENY, still flagged for review",
        directives: blanket_deny,
        request: |p| DecideRequest {
            break_glass_reason: "Unconscious in ED, need medication history".into(),
            ..ask(p, "ETREAT")
        },
        outcome: Deny,
        obligations: || vec![flag()],
        reasons: Some(&[(Pd, Deny, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-26",
        title: "Asking for [hiv] when the patient denies hiv: PERMIT withholding hiv (general data stays in scope)",
        directives: deny_hiv,
        request: |p| DecideRequest {
            data_classes: strings(&["hiv"]),
            ..ask(p, "TREAT")
        },
        outcome: Permit,
        obligations: || vec![withhold(&["hiv"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-27",
        title: "Asking for [genomic] when the patient denies only hiv: PERMIT without obligation",
        directives: deny_hiv,
        request: |p| DecideRequest {
            data_classes: strings(&["genomic"]),
            ..ask(p, "TREAT")
        },
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-28",
        title: "DENY base with a provision covering every class: only general data withheld (empty data_classes, include_general_data)",
        directives: |p| vec![directive(p, BaseDeny, vec![classes(&ALL_CLASSES)])],
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        obligations: || vec![withhold(&[], true, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-29",
        title: "An actor matches only when every set field matches: RXA nurse (R8001) is not RXA R8000",
        directives: rxa_practitioners,
        request: |p| ask_as(p, "TREAT", "RXA", "R8001"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-30",
        title: "An actor {RXA, R8000} matches a clinical practitioner at RXA: genomic withheld",
        directives: rxa_practitioners,
        request: |p| ask_as(p, "TREAT", "RXA", "R8000"),
        outcome: Permit,
        obligations: || vec![withhold(&["genomic"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-31",
        title: "A provision period is compared with the request time: before it starts, nothing withheld",
        directives: from_2030,
        request: |p| at(ask(p, "TREAT"), 2029),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-32",
        title: "A provision period is compared with the request time: once started, hiv withheld",
        directives: from_2030,
        request: |p| at(ask(p, "TREAT"), 2031),
        outcome: Permit,
        obligations: || vec![withhold(&["hiv"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-33",
        title: "Nested provisions: 0.0 lists TREAT, so its PERMIT is explicit and decides mental-health",
        directives: nested,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[(Pd, Permit, Some(0), "0.0", ""), DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-34",
        title: "Nested provisions: for X99 the most specific 0.0.0 denies mental-health",
        directives: nested,
        request: |p| ask_as(p, "TREAT", "X99", "R8000"),
        outcome: Permit,
        obligations: || vec![withhold(&["mental-health"], false, None)],
        reasons: Some(&[(Pd, Deny, Some(0), "0.0.0", ""), DEFAULT_PERMIT]),
        ..ROW
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
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        reasons: Some(&[(Pd, Deny, Some(1), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-36",
        title: "A revoked directive stops affecting decisions as soon as the revoke returns",
        directives: blanket_deny,
        revoke: true,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-37",
        title: "Never checked (opt-out status UNKNOWN), HRESCH with an explicit PERMIT: the opt-out applies as if opted out -> DENY, reason_code opt-out-status-unknown",
        directives: |p| vec![scoped(p, BasePermit, &["HRESCH"])],
        opt_out: OptOut::NeverChecked,
        request: |p| ask(p, "HRESCH"),
        outcome: Deny,
        reasons: Some(&[STATUS_UNKNOWN_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-38",
        title: "Never checked, TREAT: individual care never depends on a check -> PERMIT (default)",
        opt_out: OptOut::NeverChecked,
        request: |p| ask(p, "TREAT"),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-39",
        title: "The patient reading their own record (PATRQT, no organisation or role), [hiv]: the built-in default permits",
        request: |p| own_request(p, &["hiv"]),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-40",
        title: "Opted out, the patient reading their own record: the opt-out does not apply -> PERMIT",
        opt_out: OptOut::OptedOut,
        request: |p| own_request(p, &["hiv"]),
        outcome: Permit,
        reasons: None,
        ..ROW
    },
    Row {
        id: "CON-DT-41",
        title: "Opted out, HRESCH under SECTION_251_SUPPORT naming a study: section 251 is not exempt, the opt-out denies",
        opt_out: OptOut::OptedOut,
        request: |p| research(p, LegalBasis::Section251Support, "IRAS-1"),
        outcome: Deny,
        reasons: Some(&[OPTED_OUT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-42",
        title: "Section 251 support never overrides the patient's DENY scoped to HRESCH",
        directives: |p| vec![scoped(p, BaseDeny, &["HRESCH"])],
        request: |p| research(p, LegalBasis::Section251Support, "IRAS-1"),
        outcome: Deny,
        reasons: Some(&[(Pd, Deny, Some(0), "", "")]),
        ..ROW
    },
    Row {
        id: "CON-DT-43",
        title: "HRESCH under SECTION_251_SUPPORT grants nothing by itself: without a platform rule the built-in default denies",
        request: |p| research(p, LegalBasis::Section251Support, "IRAS-1"),
        outcome: Deny,
        reasons: Some(&[DEFAULT_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-44",
        title: "Never checked, HOPERAT: the opt-out applies as if opted out -> DENY, reason_code opt-out-status-unknown",
        opt_out: OptOut::NeverChecked,
        request: |p| ask(p, "HOPERAT"),
        outcome: Deny,
        reasons: Some(&[STATUS_UNKNOWN_DENY]),
        ..ROW
    },
    Row {
        id: "CON-DT-45",
        title: "Never checked, the patient reading their own record: the status does not matter -> PERMIT (default), no opt-out reason",
        opt_out: OptOut::NeverChecked,
        request: |p| own_request(p, &["hiv"]),
        outcome: Permit,
        reasons: Some(&[DEFAULT_PERMIT]),
        ..ROW
    },
    Row {
        id: "CON-DT-46",
        title: "Never checked, HRESCH under EXPLICIT_CONSENT with study-specific consent: exempt, the directive permits, no opt-out reason",
        directives: study_consent,
        opt_out: OptOut::NeverChecked,
        request: |p| research(p, LegalBasis::ExplicitConsent, "IRAS-1"),
        outcome: Permit,
        reasons: Some(&[(Pd, Permit, Some(0), "0", "")]),
        ..ROW
    },
];
