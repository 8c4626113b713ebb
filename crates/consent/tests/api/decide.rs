//! Decide and BatchDecide with the embedded platform rules.

use carerecord_consent::{Application, Config};
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::*;
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::env::Env;
use carerecord_platform::testing::TestDatabase;

use crate::helpers::*;

use DecisionOutcome::{Deny, Permit};
use DecisionSource::{
    Default as BuiltIn, NationalDataOptOut as OptOut, PatientDirective, PlatformPolicy,
};

fn s(x: &str) -> String {
    x.to_owned()
}

/// Registers the patient's national data opt-out.
async fn opt_out(c: &mut Client, patient_id: &str) {
    let request = SetNationalDataOptOutRequest {
        patient_id: patient_id.into(),
        opted_out: true,
        etag: String::new(),
        requester: Some(requester()),
        source: String::new(),
    };
    set_opt_out(c, request).await.unwrap();
}

#[tokio::test]
async fn worked_example_over_the_api() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let d = create(c, worked_example(&patient)).await;

        let gp = decide(c, decide_request(&patient, requester(), "TREAT")).await;
        assert_eq!(gp.outcome(), Permit);
        assert_eq!(gp.patient_id, patient);
        assert_eq!(
            gp.obligations,
            [Obligation {
                r#type: ObligationType::WithholdDataClasses as i32,
                data_classes: strings(&["mental-health"]),
                include_general_data: false,
                data_period: None,
            }]
        );
        assert_eq!(
            reasons(&gp),
            [
                (
                    PatientDirective,
                    Deny,
                    d.directive_id.clone(),
                    s("0"),
                    s("")
                ),
                (BuiltIn, Permit, s(""), s(""), s(""))
            ]
        );
        assert_eq!(gp.reasons[0].directive_version, 1);
        assert!(
            gp.reasons
                .iter()
                .all(|r| !r.explanation.is_empty() && r.explanation.chars().count() <= 500)
        );
        assert!(gp.policy_set_version.starts_with("sha256:"));
        assert!(gp.decided_at.is_some());

        let mut rxa = decide_request(&patient, requester_at("RXA", "R8000"), "TREAT");
        rxa.data_classes = strings(&["mental-health"]);
        let trust = decide(c, rxa).await;
        assert_eq!(trust.outcome(), Permit);
        assert!(trust.obligations.is_empty());

        let x1 = decide(
            c,
            decide_request(&patient, requester_at("X26", "R8000"), "TREAT"),
        )
        .await;
        assert_eq!(x1.outcome(), Permit);
        assert_eq!(x1.obligations.len(), 2);
        assert_eq!(x1.obligations[0].data_classes.len(), 7);
        assert!(x1.obligations[0].include_general_data);
        assert_eq!(x1.obligations[0].data_period, period(None, Some(Y2020)));
        assert_eq!(x1.obligations[1].data_classes, ["mental-health"]);
        assert_eq!(x1.obligations[1].data_period, period(Some(Y2020), None));

        let marketing = decide(c, decide_request(&patient, requester(), "HMARKT")).await;
        assert_eq!(marketing.outcome(), Deny);
        assert_eq!(
            reasons(&marketing),
            [(PlatformPolicy, Deny, s(""), s(""), s("no-marketing"))]
        );
    })
    .await;
}

#[tokio::test]
async fn revoked_and_draft_directives_stop_applying() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let draft = ConsentDirective {
            status: ConsentDirectiveStatus::Draft as i32,
            ..directive(&patient, ConsentDecision::Deny, vec![])
        };
        create(c, draft).await;
        assert_eq!(
            decide(c, decide_request(&patient, requester(), "TREAT"))
                .await
                .outcome(),
            Permit
        );
        let refusal = create(c, directive(&patient, ConsentDecision::Deny, vec![])).await;
        let denied = decide(c, decide_request(&patient, requester(), "TREAT")).await;
        assert_eq!(denied.outcome(), Deny);
        assert_eq!(
            reasons(&denied),
            [(
                PatientDirective,
                Deny,
                refusal.directive_id.clone(),
                s(""),
                s("")
            )]
        );
        c.revoke_consent_directive(RevokeConsentDirectiveRequest {
            directive_id: refusal.directive_id.clone(),
            etag: refusal.etag.clone(),
            reason: "withdrawn".into(),
            requester: Some(requester()),
        })
        .await
        .unwrap();
        assert_eq!(
            decide(c, decide_request(&patient, requester(), "TREAT"))
                .await
                .outcome(),
            Permit
        );
    })
    .await;
}

#[tokio::test]
async fn roles_purposes_and_break_glass() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let clerk = decide(
            c,
            decide_request(&patient, requester_at("A81001", "R8010"), "TREAT"),
        )
        .await;
        assert_eq!(clerk.outcome(), Deny);
        assert_eq!(
            reasons(&clerk),
            [(PlatformPolicy, Deny, s(""), s(""), s("care-roles-only"))]
        );

        let student = decide(
            c,
            decide_request(&patient, requester_at("A81001", "R8004"), "TREAT"),
        )
        .await;
        assert_eq!(student.outcome(), Permit);
        assert_eq!(student.obligations[0].data_classes, ["safeguarding"]);

        create(c, directive(&patient, ConsentDecision::Deny, vec![])).await;
        let mut glass = decide_request(&patient, requester(), "ETREAT");
        glass.break_glass_reason = "Unconscious in A&E".into();
        let emergency = decide(c, glass.clone()).await;
        assert_eq!(
            emergency.outcome(),
            Deny,
            "break-glass does not override the patient's refusal here"
        );
        assert_eq!(
            obligation_types(&emergency),
            [ObligationType::FlagForReview]
        );
        let fresh = new_id();
        glass.patient_id = fresh.clone();
        let emergency = decide(c, glass.clone()).await;
        assert_eq!(emergency.outcome(), Permit);
        assert_eq!(
            obligation_types(&emergency),
            [ObligationType::FlagForReview]
        );
        glass.requester = Some(requester_at("A81001", "R8008"));
        let admin = decide(c, glass).await;
        assert_eq!(admin.outcome(), Deny);
        assert_eq!(obligation_types(&admin), [ObligationType::FlagForReview]);
        assert_eq!(admin.reasons[0].policy_id, "break-glass-clinicians-only");
    })
    .await;
}

#[tokio::test]
async fn opt_out_and_each_exemption() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        checked(c, &[&patient]).await;
        let planning = decide(c, decide_request(&patient, requester(), "HOPERAT")).await;
        assert_eq!(
            planning.outcome(),
            Permit,
            "planning by default, pseudonymised, without genomic data"
        );
        assert_eq!(
            obligation_types(&planning),
            [
                ObligationType::WithholdDataClasses,
                ObligationType::Pseudonymise
            ]
        );
        assert_eq!(planning.obligations[0].data_classes, ["genomic"]);

        opt_out(c, &patient).await;
        let planning = decide(c, decide_request(&patient, requester(), "HOPERAT")).await;
        assert_eq!(planning.outcome(), Deny);
        assert_eq!(reasons(&planning)[0].0, OptOut);

        // Individual care.
        let care = decide(c, decide_request(&patient, requester(), "TREAT")).await;
        assert_eq!(care.outcome(), Permit);
        assert_eq!(
            reasons(&care)[0],
            (OptOut, Permit, s(""), s(""), s("opt-out-individual-care"))
        );
        assert!(
            care.reasons[0]
                .explanation
                .contains("exemption opt-out-individual-care"),
            "{}",
            care.reasons[0].explanation
        );

        // A court order (exempt, permitted by the override rule, flagged) and communicable disease
        // under a public-health basis: (purpose, basis, permitting rule, exemption, flagged).
        let exempt = [
            (
                "HOPERAT",
                LegalBasis::CourtOrder,
                "court-order",
                "opt-out-legal-obligation",
                true,
            ),
            (
                "PUBHLTH",
                LegalBasis::PublicHealth,
                "public-health",
                "opt-out-public-health",
                false,
            ),
        ];
        for (purpose, basis, rule, exemption, flagged) in exempt {
            let mut request = decide_request(&patient, requester(), purpose);
            request.legal_basis = basis as i32;
            let decision = decide(c, request).await;
            assert_eq!(decision.outcome(), Permit, "{purpose}");
            assert_eq!(
                reasons(&decision),
                [
                    (PlatformPolicy, Permit, s(""), s(""), s(rule)),
                    (OptOut, Permit, s(""), s(""), s(exemption))
                ]
            );
            if flagged {
                assert_eq!(obligation_types(&decision), [ObligationType::FlagForReview]);
            }
        }

        // A study the patient consented to specifically, and only that study.
        let consent = ConsentDirective {
            scope_purposes: strings(&["HRESCH"]),
            ..directive(
                &patient,
                ConsentDecision::Deny,
                vec![Provision {
                    study_ids: strings(&["IRAS-1"]),
                    ..Default::default()
                }],
            )
        };
        let consent = create(c, consent).await;
        let mut research = decide_request(&patient, requester(), "HRESCH");
        research.legal_basis = LegalBasis::ExplicitConsent as i32;
        research.study_id = "IRAS-1".into();
        let study = decide(c, research.clone()).await;
        assert_eq!(study.outcome(), Permit);
        assert_eq!(
            reasons(&study),
            [
                (OptOut, Permit, s(""), s(""), s("opt-out-explicit-consent")),
                (
                    PatientDirective,
                    Permit,
                    consent.directive_id.clone(),
                    s("0"),
                    s("")
                )
            ]
        );
        research.study_id = "IRAS-2".into();
        let other_study = decide(c, research).await;
        assert_eq!(other_study.outcome(), Deny);
        assert_eq!(reasons(&other_study), [(OptOut, Deny, s(""), s(""), s(""))]);
    })
    .await;
}

#[tokio::test]
async fn section_251_support_permits_research_and_planning_but_not_over_the_opt_out() {
    on_each_backend(async |c: &mut Client| {
        let under_251 = |patient: &str, purpose: &str| DecideRequest {
            legal_basis: LegalBasis::Section251Support as i32,
            study_id: if purpose == "HRESCH" {
                s("IRAS-251")
            } else {
                s("")
            },
            ..decide_request(patient, requester(), purpose)
        };
        let patient = new_id();
        checked(c, &[&patient]).await;
        let research = decide(c, under_251(&patient, "HRESCH")).await;
        assert_eq!(research.outcome(), Permit);
        assert_eq!(
            reasons(&research),
            [(
                PlatformPolicy,
                Permit,
                s(""),
                s(""),
                s("section-251-support")
            )]
        );
        assert_eq!(obligation_types(&research), [ObligationType::FlagForReview]);
        // Planning on it: identifiable (no pseudonymisation), genomic still withheld.
        let planning = decide(c, under_251(&patient, "HOPERAT")).await;
        assert_eq!(planning.outcome(), Permit);
        assert_eq!(
            obligation_types(&planning),
            [
                ObligationType::WithholdDataClasses,
                ObligationType::FlagForReview
            ]
        );
        assert_eq!(planning.obligations[0].data_classes, ["genomic"]);

        // The national data opt-out still applies.
        let opted_out = new_id();
        opt_out(c, &opted_out).await;
        let denied = decide(c, under_251(&opted_out, "HRESCH")).await;
        assert_eq!(reasons(&denied), [(OptOut, Deny, s(""), s(""), s(""))]);
        // And so does the patient's own objection.
        let objector = new_id();
        checked(c, &[&objector]).await;
        let objection = ConsentDirective {
            scope_purposes: strings(&["HRESCH"]),
            ..directive(&objector, ConsentDecision::Deny, vec![])
        };
        create(c, objection).await;
        let denied = decide(c, under_251(&objector, "HRESCH")).await;
        assert_eq!(denied.outcome(), Deny);
        assert_eq!(denied.reasons[0].source(), PatientDirective);

        // Only research, planning and payment; research names its study.
        for (request, field) in [
            (under_251(&patient, "TREAT"), "legal_basis"),
            (under_251(&patient, "HMARKT"), "legal_basis"),
            (
                DecideRequest {
                    study_id: s(""),
                    ..under_251(&patient, "HRESCH")
                },
                "study_id",
            ),
        ] {
            assert_invalid(&c.decide(request).await.unwrap_err(), &[field]);
        }
    })
    .await;
}

#[tokio::test]
async fn an_ics_policy_file_changes_the_exemptions_and_the_default() {
    // The embedded rules, with the public-health exemption withdrawn and a default rule that keeps
    // genomic data out of individual care unless a patient directive permits it.
    let text = carerecord_consent::policy::DEFAULT_POLICIES.replace(
        "permit (principal, action == Action::\"PUBHLTH\", resource)\nwhen { context.legal_basis == \"PUBLIC_HEALTH\" };",
        "permit (principal, action == Action::\"PUBHLTH\", resource)\nwhen { false };",
    ) + "\n@id(\"ics-no-genomic-by-default\") @kind(\"default\")\n\
           forbid (principal, action == Action::\"TREAT\", resource == DataClass::\"genomic\");\n";
    assert!(text.contains("when { false }"), "the exemption was found");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ics.cedar");
    std::fs::write(&file, &text).unwrap();
    let path = file.display().to_string();
    for db in TestDatabase::each_backend().await {
        let mut embedded = spawn_app(&db.url).await;
        let mut ics = spawn_app_with(&db.url, &[("CARERECORD_CONSENT_POLICY_FILE", &path)]).await;
        let patient = new_id();
        opt_out(&mut embedded.client, &patient).await;
        let mut copi = decide_request(&patient, requester(), "PUBHLTH");
        copi.legal_basis = LegalBasis::PublicHealth as i32;

        let before = decide(&mut embedded.client, copi.clone()).await;
        assert_eq!(before.outcome(), Permit);
        let after = decide(&mut ics.client, copi).await;
        assert_eq!(
            after.outcome(),
            Deny,
            "this ICS does not exempt public health"
        );
        assert_eq!(reasons(&after), [(OptOut, Deny, s(""), s(""), s(""))]);
        assert_ne!(before.policy_set_version, after.policy_set_version);

        // The other exemptions still hold, and the new default rule decides before the built-in one.
        let care = decide(
            &mut ics.client,
            decide_request(&patient, requester(), "TREAT"),
        )
        .await;
        assert_eq!(care.outcome(), Permit);
        assert_eq!(care.obligations[0].data_classes, ["genomic"]);
        assert_eq!(
            reasons(&care),
            [
                (
                    PlatformPolicy,
                    Deny,
                    s(""),
                    s(""),
                    s("ics-no-genomic-by-default")
                ),
                (OptOut, Permit, s(""), s(""), s("opt-out-individual-care")),
                (BuiltIn, Permit, s(""), s(""), s(""))
            ]
        );
        let embedded_care = decide(
            &mut embedded.client,
            decide_request(&patient, requester(), "TREAT"),
        )
        .await;
        assert!(embedded_care.obligations.is_empty());
    }
}

#[tokio::test]
async fn a_patient_reads_their_own_record() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        // A patient acts for no organisation and holds no role.
        let me = Requester {
            user_id: "nhs-login-subject-1".into(),
            ..Default::default()
        };
        let own = decide(c, decide_request(&patient, me.clone(), "PATRQT")).await;
        assert_eq!(own.outcome(), Permit);
        assert_eq!(
            own.obligations,
            [Obligation {
                r#type: ObligationType::WithholdDataClasses as i32,
                data_classes: strings(&["safeguarding"]),
                ..Default::default()
            }]
        );
        assert_eq!(
            reasons(&own),
            [
                (
                    PlatformPolicy,
                    Deny,
                    s(""),
                    s(""),
                    s("patient-access-no-safeguarding")
                ),
                (BuiltIn, Permit, s(""), s(""), s(""))
            ]
        );

        // Staff asking at the patient's request are not the patient: denied unless a rule permits.
        let staff = decide(c, decide_request(&patient, requester(), "PATRQT")).await;
        assert_eq!(reasons(&staff), [(BuiltIn, Deny, s(""), s(""), s(""))]);

        // The national data opt-out does not apply to the patient's own request.
        opt_out(c, &patient).await;
        let opted_out = decide(c, decide_request(&patient, me.clone(), "PATRQT")).await;
        assert_eq!(opted_out.outcome(), Permit);
        assert_eq!(
            reasons(&opted_out)[1],
            (OptOut, Permit, s(""), s(""), s("opt-out-individual-care"))
        );

        // Without an organisation only PATRQT is valid, and only with neither organisation nor role.
        let refused: [(&str, Requester, &[&str]); 3] = [
            (
                "TREAT",
                me.clone(),
                &["requester.organisation_ods_code", "requester.role_code"],
            ),
            (
                "HRESCH",
                me.clone(),
                &["requester.organisation_ods_code", "requester.role_code"],
            ),
            (
                "PATRQT",
                Requester {
                    role_code: "R8000".into(),
                    ..me.clone()
                },
                &["requester.organisation_ods_code"],
            ),
        ];
        for (purpose, requester, fields) in refused {
            let err = c
                .decide(decide_request(&patient, requester, purpose))
                .await
                .unwrap_err();
            assert_invalid(&err, fields);
        }
        let nobody = Requester::default();
        let err = c
            .decide(decide_request(&patient, nobody, "PATRQT"))
            .await
            .unwrap_err();
        assert_invalid(&err, &["requester.user_id"]);
    })
    .await;
}

#[tokio::test]
async fn bad_decide_requests_are_rejected() {
    on_each_backend(async |c: &mut Client| {
        let mut bad = decide_request("nope", requester_at("A81001", ""), "research");
        bad.data_classes = strings(&["hiv", "cardiology"]);
        bad.break_glass_reason = "because".into();
        let err = c.decide(bad).await.unwrap_err();
        assert_eq!(
            violations(&err),
            [
                "patient_id",
                "requester.role_code",
                "purpose_of_use",
                "data_classes[1]",
                "break_glass_reason"
            ]
        );
        let research_under = |legal_basis: i32| DecideRequest {
            legal_basis,
            ..decide_request(&new_id(), requester(), "HRESCH")
        };
        let no_requester = DecideRequest {
            requester: None,
            ..decide_request(&new_id(), requester(), "TREAT")
        };
        // (request, the fields refused)
        let refused: [(DecideRequest, &[&str]); 5] = [
            (
                research_under(LegalBasis::DirectCare as i32),
                &["legal_basis"],
            ),
            (
                research_under(LegalBasis::ExplicitConsent as i32),
                &["study_id"],
            ),
            (research_under(42), &["legal_basis"]),
            (
                decide_request(&new_id(), requester(), "ETREAT"),
                &["break_glass_reason"],
            ),
            (no_requester, &["requester"]),
        ];
        for (request, fields) in refused {
            assert_invalid(&c.decide(request).await.unwrap_err(), fields);
        }
    })
    .await;
}

#[tokio::test]
async fn batch_decides_each_patient_in_order() {
    on_each_backend(async |c: &mut Client| {
        let with_directive = new_id();
        let opted_out = new_id();
        let nothing = new_id();
        let consent = ConsentDirective {
            scope_purposes: strings(&["HOPERAT"]),
            ..directive(&with_directive, ConsentDecision::Permit, vec![])
        };
        create(c, consent).await;
        checked(c, &[&with_directive, &nothing]).await;
        opt_out(c, &opted_out).await;
        let request = BatchDecideRequest {
            patient_ids: vec![
                with_directive.clone(),
                opted_out.clone(),
                nothing.clone(),
                with_directive.clone(),
            ],
            requester: Some(requester()),
            purpose_of_use: "HOPERAT".into(),
            ..Default::default()
        };
        let decisions = batch_decide(c, request.clone()).await;
        let summary: Vec<(String, DecisionOutcome)> = decisions
            .iter()
            .map(|d| (d.patient_id.clone(), d.outcome()))
            .collect();
        assert_eq!(
            summary,
            [
                (with_directive.clone(), Permit),
                (opted_out.clone(), Deny),
                (nothing.clone(), Permit),
                (with_directive.clone(), Permit)
            ]
        );
        assert_eq!(decisions[0].reasons[0].source(), PatientDirective);
        assert!(
            decisions[0].obligations.is_empty(),
            "explicit consent: no pseudonymisation, genomic included"
        );
        assert_eq!(
            obligation_types(&decisions[2]),
            [
                ObligationType::WithholdDataClasses,
                ObligationType::Pseudonymise
            ]
        );
        assert!(
            decisions
                .iter()
                .flat_map(|d| &d.reasons)
                .all(|r| r.explanation.is_empty())
        );
        // Each matches the single Decide.
        for d in &decisions {
            let single = decide(c, decide_request(&d.patient_id, requester(), "HOPERAT")).await;
            assert_eq!(
                (single.outcome, &single.obligations),
                (d.outcome, &d.obligations)
            );
            assert_eq!(reasons(&single), reasons(d));
        }
        let explained = BatchDecideRequest {
            include_explanations: true,
            ..request.clone()
        };
        let decisions = batch_decide(c, explained).await;
        assert!(
            decisions
                .iter()
                .flat_map(|d| &d.reasons)
                .all(|r| !r.explanation.is_empty())
        );

        let mut bad = request.clone();
        bad.patient_ids[2] = "x".into();
        bad.purpose_of_use = "ETREAT".into();
        let empty = BatchDecideRequest {
            patient_ids: vec![],
            ..request.clone()
        };
        let too_many = BatchDecideRequest {
            patient_ids: vec![nothing.clone(); 10_001],
            ..request
        };
        // (request, the fields refused)
        let refused: [(BatchDecideRequest, &[&str]); 3] = [
            (bad, &["patient_ids[2]", "purpose_of_use"]),
            (empty, &["patient_ids"]),
            (too_many, &["patient_ids"]),
        ];
        for (request, fields) in refused {
            assert_invalid(&c.batch_decide(request).await.unwrap_err(), fields);
        }
    })
    .await;
}

#[tokio::test]
async fn a_policy_file_replaces_the_embedded_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.cedar");
    std::fs::write(
        &file,
        "@id(\"ics-research-permit\") @kind(\"default\") @obligations(\"pseudonymise flag_for_review\")\n\
         permit (principal, action == Action::\"HRESCH\", resource);",
    )
    .unwrap();
    let path = file.display().to_string();
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app_with(&db.url, &[("CARERECORD_CONSENT_POLICY_FILE", &path)]).await;
        let c = &mut app.client;
        // The file has no opt-out exemptions: only a checked patient who has not opted out.
        let patient = new_id();
        checked(c, &[&patient]).await;
        let research = decide(
            c,
            decide_request(&patient, requester_at("A81001", "R8010"), "HRESCH"),
        )
        .await;
        assert_eq!(research.outcome(), Permit);
        assert_eq!(
            reasons(&research),
            [(
                PlatformPolicy,
                Permit,
                s(""),
                s(""),
                s("ics-research-permit")
            )]
        );
        assert_eq!(
            obligation_types(&research),
            [ObligationType::Pseudonymise, ObligationType::FlagForReview]
        );
        let marketing = decide(c, decide_request(&patient, requester(), "HMARKT")).await;
        assert_eq!(reasons(&marketing), [(BuiltIn, Deny, s(""), s(""), s(""))]);
    }

    std::fs::write(&file, "@id(\"x\") @kind(\"forbid\") forbid (principal, action, resource) when { context.porpoise };").unwrap();
    let config = Config::from_env(&Env::from_pairs([
        ("DATABASE_URL", "sqlite::memory:"),
        ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0"),
        ("CARERECORD_CONSENT_POLICY_FILE", path.as_str()),
    ]))
    .unwrap();
    let message = carerecord_platform::app::start::<Application>(config)
        .await
        .err()
        .expect("a bad policy file stops start-up")
        .to_string();
    assert!(
        message.contains("CARERECORD_CONSENT_POLICY_FILE") && message.contains("type-check"),
        "{message}"
    );
}

#[tokio::test]
async fn a_large_batch_is_decided_in_chunks_each_patient_in_its_place() {
    on_each_backend(async |c: &mut Client| {
        // 2,500 patients (several chunks); every 250th has refused planning, every 250th (offset
        // 125) has opted out, so patients with state fall in every chunk.
        let ids: Vec<String> = (0..2_500).map(|_| new_id()).collect();
        let mut opted_out = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if i % 250 == 0 {
                let refusal = ConsentDirective {
                    scope_purposes: strings(&["HOPERAT"]),
                    ..directive(id, ConsentDecision::Deny, vec![])
                };
                create(c, refusal).await;
            } else if i % 250 == 125 {
                opted_out.push(id.clone());
            }
        }
        // One answer of the national service for everyone.
        let answer = c
            .record_national_data_opt_out_check(check_answer(&ids, &opted_out))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (answer.patients_checked, answer.patients_opted_out),
            (2_500, 10)
        );
        let mut patient_ids = ids.clone();
        patient_ids.push(ids[0].clone());
        patient_ids.push(ids[1].clone());
        let decisions = batch_decide(
            c,
            BatchDecideRequest {
                patient_ids: patient_ids.clone(),
                requester: Some(requester()),
                purpose_of_use: "HOPERAT".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(decisions.len(), patient_ids.len());
        for (i, (d, id)) in decisions.iter().zip(&patient_ids).enumerate() {
            assert_eq!(&d.patient_id, id, "decision {i} is for its entry");
            let expected = match i % 2_500 {
                k if k % 250 == 0 => (Deny, PatientDirective),
                k if k % 250 == 125 => (Deny, OptOut),
                _ => (Permit, PlatformPolicy),
            };
            assert_eq!(
                (d.outcome(), d.reasons[0].source()),
                expected,
                "decision {i}"
            );
        }
    })
    .await;
}
