//! Input refused the same way on both backends: NUL characters in text fields.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::*;
use carerecord_platform::testing::first_description;
use prost_types::FieldMask;
use tonic::Status;

use crate::helpers::*;

const NUL: &str = "a\u{0}b";

/// The request refused, naming `field` alone, for its NUL.
fn assert_nul_refused(result: Result<(), Status>, field: &str) {
    let err = result.expect_err(field);
    assert_invalid(&err, &[field]);
    assert!(
        first_description(&err).contains("U+0000"),
        "{field}: {err:?}"
    );
}

fn with_nul_name() -> Requester {
    Requester {
        display_name: NUL.into(),
        ..requester()
    }
}

#[tokio::test]
async fn nul_in_any_text_field_is_refused_naming_the_field() {
    on_each_backend(async |c: &mut Client| {
        let patient = new_id();
        let created = create(c, directive(&patient, ConsentDecision::Permit, vec![])).await;
        let create_with = |edit: fn(&mut CreateConsentDirectiveRequest)| {
            let mut request = CreateConsentDirectiveRequest {
                request_id: new_id(),
                directive: Some(directive(&patient, ConsentDecision::Deny, vec![])),
                requester: Some(requester()),
            };
            edit(&mut request);
            request
        };
        // (request, the field holding NUL): each would otherwise be accepted.
        let creates: [(CreateConsentDirectiveRequest, &str); 4] = [
            (
                create_with(|r| r.directive.as_mut().unwrap().policy_text = NUL.into()),
                "directive.policy_text",
            ),
            (
                create_with(|r| r.directive.as_mut().unwrap().grantor_display = NUL.into()),
                "directive.grantor_display",
            ),
            (
                create_with(|r| {
                    r.directive.as_mut().unwrap().provisions = vec![Provision {
                        study_ids: strings(&["IRAS-1", NUL]),
                        ..Default::default()
                    }]
                }),
                "directive.provisions[0].study_ids[1]",
            ),
            (
                create_with(|r| r.requester = Some(with_nul_name())),
                "requester.display_name",
            ),
        ];
        for (request, field) in creates {
            let result = c.create_consent_directive(request).await.map(drop);
            assert_nul_refused(result, field);
        }
        // Nothing was stored for the patient but the first directive.
        let listed = c
            .list_consent_directives(ListConsentDirectivesRequest {
                patient_id: patient.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.directives.len(), 1);

        let edit = ConsentDirective {
            policy_text: "ok".into(),
            ..created.clone()
        };
        let result = update(
            c,
            UpdateConsentDirectiveRequest {
                directive: Some(edit),
                update_mask: Some(FieldMask {
                    paths: vec![NUL.into()],
                }),
                etag: created.etag.clone(),
                requester: Some(requester()),
            },
        )
        .await
        .map(drop);
        assert_nul_refused(result, "update_mask.paths[0]");
        let result = revoke(
            c,
            RevokeConsentDirectiveRequest {
                directive_id: created.directive_id.clone(),
                etag: created.etag.clone(),
                reason: NUL.into(),
                requester: Some(requester()),
            },
        )
        .await
        .map(drop);
        assert_nul_refused(result, "reason");
        let result = set_opt_out(
            c,
            SetNationalDataOptOutRequest {
                patient_id: patient.clone(),
                opted_out: true,
                etag: String::new(),
                requester: Some(with_nul_name()),
            },
        )
        .await
        .map(drop);
        assert_nul_refused(result, "requester.display_name");
        assert_nul_refused(get_opt_out(c, NUL).await.map(drop), "patient_id");

        let decides: [(DecideRequest, &str); 3] = [
            (
                DecideRequest {
                    legal_basis: LegalBasis::ExplicitConsent as i32,
                    study_id: NUL.into(),
                    ..decide_request(&patient, requester(), "HRESCH")
                },
                "study_id",
            ),
            (
                DecideRequest {
                    break_glass_reason: NUL.into(),
                    ..decide_request(&patient, requester(), "ETREAT")
                },
                "break_glass_reason",
            ),
            (
                decide_request(&patient, with_nul_name(), "TREAT"),
                "requester.display_name",
            ),
        ];
        for (request, field) in decides {
            assert_nul_refused(c.decide(request).await.map(drop), field);
        }
        let batch = BatchDecideRequest {
            patient_ids: vec![patient.clone(), NUL.into()],
            requester: Some(requester()),
            purpose_of_use: "TREAT".into(),
            ..Default::default()
        };
        assert_nul_refused(c.batch_decide(batch).await.map(drop), "patient_ids[1]");
    })
    .await;
}
