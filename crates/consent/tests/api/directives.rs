//! Directive lifecycle: create (idempotent), get, list, update, revoke, versions.

use carerecord_contracts::consent::v1::*;
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: strings(paths),
    })
}

fn update_request(
    directive: ConsentDirective,
    paths: &[&str],
    etag: &str,
) -> UpdateConsentDirectiveRequest {
    UpdateConsentDirectiveRequest {
        directive: Some(directive),
        update_mask: mask(paths),
        etag: etag.into(),
        requester: Some(requester_at("RXA", "R8001")),
    }
}

fn revoke_request(d: &ConsentDirective) -> RevokeConsentDirectiveRequest {
    RevokeConsentDirectiveRequest {
        directive_id: d.directive_id.clone(),
        etag: d.etag.clone(),
        reason: "Patient withdrew consent by phone".into(),
        requester: Some(requester()),
    }
}

#[tokio::test]
async fn lifecycle_keeps_every_version() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let mut input = worked_example(&patient);
        input.provisions[1].actors[0].organisation_ods_code = "x26".into();
        input.version = 99; // output-only fields are ignored
        let created = create(c, input).await;
        assert_eq!(created.version, 1);
        assert!(!created.etag.is_empty() && created.create_time.is_some());
        assert_eq!(created.create_time, created.update_time);
        assert_eq!(created.recorded_by, Some(requester()));
        assert_eq!(
            created.provisions[1].actors[0].organisation_ods_code, "X26",
            "ODS codes are upper-cased"
        );

        let got = get_directive(c, &created.directive_id, 0).await.unwrap();
        assert_eq!(got, created);

        let edit = ConsentDirective {
            directive_id: created.directive_id.clone(),
            policy_text: "Revised".into(),
            ..Default::default()
        };
        let updated = update(
            c,
            update_request(edit.clone(), &["policy_text"], &created.etag),
        )
        .await
        .unwrap();
        assert_eq!(updated.version, 2);
        assert_ne!(updated.etag, created.etag);
        assert_eq!(updated.policy_text, "Revised");
        assert_eq!(
            updated.provisions, created.provisions,
            "unmasked fields are kept"
        );
        assert_eq!(updated.updated_by, Some(requester_at("RXA", "R8001")));
        assert_eq!(updated.recorded_by, created.recorded_by);

        // The same values again write nothing.
        let same = update(c, update_request(edit, &["policy_text"], &updated.etag))
            .await
            .unwrap();
        assert_eq!(same, updated);

        let revoked = revoke(c, revoke_request(&updated)).await.unwrap();
        assert_eq!(revoked.status(), ConsentDirectiveStatus::Inactive);
        assert_eq!(revoked.version, 3);
        assert_eq!(
            revoked.revocation_reason,
            "Patient withdrew consent by phone"
        );
        assert!(revoked.revoke_time.is_some());

        let again = revoke(c, revoke_request(&revoked)).await.unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);
        assert_eq!(
            again
                .get_error_details()
                .precondition_failure()
                .unwrap()
                .violations[0]
                .r#type,
            "STATUS"
        );

        // Fields of an INACTIVE directive cannot be edited; it can only become ENTERED_IN_ERROR.
        let edit = ConsentDirective {
            directive_id: created.directive_id.clone(),
            policy_text: "Late edit".into(),
            ..Default::default()
        };
        let err = update(c, update_request(edit, &["policy_text"], &revoked.etag))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let change_status = |status: ConsentDirectiveStatus, etag: &str| {
            let to = ConsentDirective {
                directive_id: created.directive_id.clone(),
                status: status as i32,
                ..Default::default()
            };
            update_request(to, &["status"], etag)
        };
        let to_error = change_status(ConsentDirectiveStatus::EnteredInError, &revoked.etag);
        let errored = update(c, to_error).await.unwrap();
        assert_eq!(errored.status(), ConsentDirectiveStatus::EnteredInError);
        assert_eq!(errored.revocation_reason, revoked.revocation_reason);
        let back = change_status(ConsentDirectiveStatus::Active, &errored.etag);
        let err = update(c, back).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);

        let page_after = |page_token: String| ListConsentDirectiveVersionsRequest {
            directive_id: created.directive_id.clone(),
            page_size: 3,
            page_token,
        };
        let versions = c
            .list_consent_directive_versions(page_after(String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            versions
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            [4, 3, 2]
        );
        let rest = c
            .list_consent_directive_versions(page_after(versions.next_page_token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rest.versions,
            std::slice::from_ref(&created),
            "version 1 as it stood"
        );
        assert!(rest.next_page_token.is_empty());

        let v1 = get_directive(c, &created.directive_id, 1).await.unwrap();
        assert_eq!(v1, created);
        let missing = get_directive(c, &created.directive_id, 9)
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    })
    .await;
}

#[tokio::test]
async fn create_is_idempotent_on_request_id() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let request = CreateConsentDirectiveRequest {
            request_id: new_id(),
            directive: Some(worked_example(&patient)),
            requester: Some(requester()),
        };
        // The first create, then its retry.
        let mut answers = Vec::new();
        for _ in 0..2 {
            let response = c.create_consent_directive(request.clone()).await.unwrap();
            answers.push(response.into_inner().directive.unwrap());
        }
        let (first, retry) = (&answers[0], &answers[1]);
        assert_eq!(first, retry);
        let mut different = request.clone();
        different.directive.as_mut().unwrap().policy_text = "Something else".into();
        let err = c.create_consent_directive(different).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(reason(&err), "REQUEST_ID_REUSED");
        assert_eq!(list_directives(c, &patient).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn malformed_directives_are_rejected_field_by_field() {
    on_each_backend(async |c: &mut Client| {
        let mut bad = directive(
            "",
            ConsentDecision::Permit,
            vec![
                Provision::default(),
                Provision {
                    purposes: strings(&["TREAT", "treatment"]),
                    data_classes: strings(&["cardiology"]),
                    period: period(Some(Y2020), Some(Y2020 - 1)),
                    provisions: vec![Provision {
                        actors: vec![ProvisionActor {
                            role_code: "8000".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        );
        bad.status = ConsentDirectiveStatus::Inactive as i32;
        let err = c
            .create_consent_directive(CreateConsentDirectiveRequest {
                request_id: "not-a-uuid".into(),
                directive: Some(bad),
                requester: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            violations(&err),
            [
                "request_id",
                "requester",
                "directive.patient_id",
                "directive.provisions[0]",
                "directive.provisions[1].period.end",
                "directive.provisions[1].purposes[1]",
                "directive.provisions[1].data_classes[0]",
                "directive.provisions[1].provisions[0].actors[0].role_code",
                "directive.status",
            ]
        );
        assert_eq!(reason(&err), "INVALID_ARGUMENT");

        let err = c
            .create_consent_directive(CreateConsentDirectiveRequest {
                request_id: new_id(),
                directive: None,
                requester: Some(requester()),
            })
            .await
            .unwrap_err();
        assert_invalid(&err, &["directive"]);

        // A policy_basis is a link readers follow: only https and urn.
        for basis in ["javascript:alert(1)", "http://example.org/protocol"] {
            let err = c
                .create_consent_directive(CreateConsentDirectiveRequest {
                    request_id: new_id(),
                    directive: Some(ConsentDirective {
                        policy_basis: basis.into(),
                        ..directive(&new_id(), ConsentDecision::Deny, vec![])
                    }),
                    requester: Some(requester()),
                })
                .await
                .unwrap_err();
            assert_invalid(&err, &["directive.policy_basis"]);
            let description = carerecord_platform::testing::first_description(&err);
            assert!(
                description.contains("https") && description.contains("urn"),
                "{description}"
            );
        }
        // Nothing was written.
        assert!(list_directives(c, &new_id()).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn update_checks_mask_etag_and_transitions() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let mut draft = worked_example(&patient);
        draft.status = ConsentDirectiveStatus::Draft as i32;
        let d = create(c, draft).await;
        let id = d.directive_id.clone();
        let with_id = |f: fn(&mut ConsentDirective)| {
            let mut x = ConsentDirective {
                directive_id: id.clone(),
                ..Default::default()
            };
            f(&mut x);
            x
        };

        // (request, the fields refused)
        let refused: [(UpdateConsentDirectiveRequest, &[&str]); 3] = [
            (
                update_request(with_id(|_| {}), &["patient_id", "colour"], &d.etag),
                &["update_mask.paths[0]", "update_mask.paths[1]"],
            ),
            (
                update_request(with_id(|_| {}), &[], ""),
                &["etag", "update_mask"],
            ),
            (
                update_request(with_id(|x| x.decision = 0), &["decision"], &d.etag),
                &["directive.decision"],
            ),
        ];
        for (request, fields) in refused {
            assert_invalid(&update(c, request).await.unwrap_err(), fields);
        }
        let err = update(
            c,
            update_request(with_id(|x| x.decision = 1), &["decision"], "stale"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        let mut unknown = with_id(|_| {});
        unknown.directive_id = new_id();
        let err = update(c, update_request(unknown.clone(), &["decision"], "x"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(resource_info(&err).resource_name, unknown.directive_id);

        // DRAFT -> ACTIVE with an edit, in one write; '*' replaces every updatable field.
        let mut whole = d.clone();
        whole.status = ConsentDirectiveStatus::Active as i32;
        whole.scope_purposes = strings(&["TREAT"]);
        let active = update(c, update_request(whole, &["*"], &d.etag))
            .await
            .unwrap();
        assert_eq!(active.status(), ConsentDirectiveStatus::Active);
        assert_eq!(active.scope_purposes, ["TREAT"]);
        assert_eq!(active.version, 2);

        // An edit of one field of the ACTIVE directive.
        let edit_active = |edit: fn(&mut ConsentDirective), field: &str| {
            update_request(with_id(edit), &[field], &active.etag)
        };
        let to_inactive = edit_active(
            |x| x.status = ConsentDirectiveStatus::Inactive as i32,
            "status",
        );
        let err = update(c, to_inactive).await.unwrap_err();
        assert_eq!(
            violations(&err),
            ["directive.status"],
            "revoke is the way to INACTIVE"
        );
        let to_draft = edit_active(
            |x| x.status = ConsentDirectiveStatus::Draft as i32,
            "status",
        );
        let err = update(c, to_draft).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let empty_period = edit_active(|x| x.period = period(Some(Y2020), Some(Y2020)), "period");
        let err = update(c, empty_period).await.unwrap_err();
        assert_invalid(&err, &["directive.period.end"]);
        // A DRAFT cannot be revoked.
        let draft = create(
            c,
            ConsentDirective {
                status: ConsentDirectiveStatus::Draft as i32,
                ..worked_example(&patient)
            },
        )
        .await;
        let err = revoke(c, revoke_request(&draft)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let mut no_reason = revoke_request(&active);
        no_reason.reason.clear();
        no_reason.directive_id = "x".into();
        let err = revoke(c, no_reason).await.unwrap_err();
        assert_invalid(&err, &["directive_id", "reason"]);
    })
    .await;
}

#[tokio::test]
async fn list_pages_newest_first_with_bound_tokens() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let mut ids = Vec::new();
        for i in 0..3 {
            let mut d = worked_example(&patient);
            if i == 1 {
                d.status = ConsentDirectiveStatus::Draft as i32;
            }
            ids.push(create(c, d).await.directive_id);
        }
        let other = create(c, worked_example(&new_id())).await;
        let request = |token: String, statuses: Vec<i32>| ListConsentDirectivesRequest {
            patient_id: patient.clone(),
            statuses,
            page_size: 2,
            page_token: token,
        };
        let first = c
            .list_consent_directives(request(String::new(), vec![]))
            .await
            .unwrap()
            .into_inner();
        let second = c
            .list_consent_directives(request(first.next_page_token.clone(), vec![]))
            .await
            .unwrap()
            .into_inner();
        let listed: Vec<String> = first
            .directives
            .iter()
            .chain(&second.directives)
            .map(|d| d.directive_id.clone())
            .collect();
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(listed, expected, "newest first");
        assert!(second.next_page_token.is_empty());
        assert!(!listed.contains(&other.directive_id));

        let drafts = c
            .list_consent_directives(request(
                String::new(),
                vec![ConsentDirectiveStatus::Draft as i32],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(drafts.directives.len(), 1);
        assert_eq!(drafts.directives[0].directive_id, ids[1]);

        let err = c
            .list_consent_directives(request(
                first.next_page_token.clone(),
                vec![ConsentDirectiveStatus::Active as i32],
            ))
            .await
            .unwrap_err();
        assert_eq!(
            violations(&err),
            ["page_token"],
            "a token is bound to its statuses"
        );
        let err = c
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: "nope".into(),
                statuses: vec![0],
                page_size: -1,
                page_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_invalid(&err, &["patient_id", "page_size", "statuses[0]"]);

        let err = c
            .list_consent_directive_versions(ListConsentDirectiveVersionsRequest {
                directive_id: new_id(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = get_directive(c, "zzz", -1).await.unwrap_err();
        assert_invalid(&err, &["directive_id", "version"]);
    })
    .await;
}
