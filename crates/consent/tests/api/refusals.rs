//! Input refused the same way on both backends: NUL characters in text fields, and errors that
//! stay small whatever the input.

use carerecord_consent::ConsentService;
use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1::consent_service_server::ConsentService as _;
use carerecord_contracts::consent::v1::*;
use carerecord_platform::status_policy::{MAX_MESSAGE_BYTES, MAX_VIOLATION_BYTES};
use carerecord_platform::testing::{TestDatabase, first_description};
use prost_types::FieldMask;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

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
        assert_eq!(list_directives(c, &patient).await.len(), 1);

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
                requester: Some(requester()),
                source: NUL.into(),
            },
        )
        .await
        .map(drop);
        assert_nul_refused(result, "source");
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

/// The most bytes of details a status carries here: every trailer fits well within the 16 KiB
/// common clients accept.
const MAX_DETAILS_BYTES: usize = 6 * 1024;

/// A 10 KiB value.
fn long() -> String {
    "x".repeat(10 * 1024)
}

/// INVALID_ARGUMENT, small, listing at most 20 violations, none echoing the long value.
fn assert_small(err: &Status, total: usize) {
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().len() <= MAX_MESSAGE_BYTES,
        "{}",
        err.message()
    );
    assert!(
        err.details().len() <= MAX_DETAILS_BYTES,
        "{}",
        err.details().len()
    );
    let violations = err
        .get_error_details()
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .clone();
    assert!(!violations.is_empty() && violations.len() <= 20);
    let bytes: usize = violations
        .iter()
        .map(|v| v.field.len() + v.description.len() + 8)
        .sum();
    assert!(bytes <= MAX_VIOLATION_BYTES, "{bytes}");
    let echo = "x".repeat(64);
    assert!(!err.message().contains(&echo));
    assert!(violations.iter().all(|v| !v.description.contains(&echo)));
    if total > violations.len() {
        let said = format!(
            "(and {} more; the first {} are listed)",
            total - 1,
            violations.len()
        );
        assert!(err.message().contains(&said), "{}", err.message());
    }
}

/// The status of a call that must be refused.
fn refused<T: std::fmt::Debug>(result: Result<T, Status>) -> Status {
    result.expect_err("refused")
}

async fn refusals(service: &ConsentService) -> Vec<(Status, usize)> {
    let patient = new_id();
    let batch = BatchDecideRequest {
        patient_ids: vec![long(); 1000],
        requester: Some(requester()),
        purpose_of_use: long(),
        data_classes: vec![long(); 100],
        ..Default::default()
    };
    let decide = DecideRequest {
        data_classes: vec![long(); 100],
        ..decide_request(&patient, requester(), &long())
    };
    let everywhere = Provision {
        purposes: vec![long(); 10],
        data_classes: vec![long(); 10],
        ..Default::default()
    };
    let create = CreateConsentDirectiveRequest {
        request_id: new_id(),
        directive: Some(ConsentDirective {
            scope_purposes: vec![long(); 50],
            ..directive(&patient, ConsentDecision::Deny, vec![everywhere; 20])
        }),
        requester: Some(requester()),
    };
    let update = UpdateConsentDirectiveRequest {
        directive: Some(ConsentDirective {
            directive_id: new_id(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec![long(); 100],
        }),
        etag: "e".into(),
        requester: Some(requester()),
    };
    vec![
        (
            refused(service.batch_decide(Request::new(batch)).await),
            1101,
        ),
        (refused(service.decide(Request::new(decide)).await), 101),
        (
            refused(service.create_consent_directive(Request::new(create)).await),
            450,
        ),
        (
            refused(service.update_consent_directive(Request::new(update)).await),
            100,
        ),
    ]
}

#[tokio::test]
async fn errors_stay_small_whatever_the_input() {
    for db in TestDatabase::each_backend().await {
        // The service's own statuses, before the server's layer bounds any status.
        let service = direct_service(&db.url).await;
        for (err, total) in refusals(&service).await {
            assert_small(&err, total);
        }
        // Over the wire, the same: 1,000 bad 10 KiB ids do not fill the trailers.
        let mut app = spawn_app(&db.url).await;
        let batch = BatchDecideRequest {
            patient_ids: vec![long(); 1000],
            requester: Some(requester()),
            purpose_of_use: "HRESCH".into(),
            ..Default::default()
        };
        let err = app.client.batch_decide(batch).await.unwrap_err();
        assert_small(&err, 1000);
        assert_eq!(violations(&err)[0], "patient_ids[0]");
    }
}
