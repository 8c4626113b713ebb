//! The defects found trying the platform from outside (issue 17), each against the real services on
//! both backends: a patient reading their own record, long input in error trailers, undecodable and
//! over-long requests, NUL in text, and research under section 251 support.

use carerecord_contracts::access::v1::{
    self as api, FindPatientRequest, LegalBasis, PatientReference, patient_reference::Reference,
};
use carerecord_contracts::common::v1::Identifier;
use carerecord_contracts::identity::v1::ResolveIdentifierRequest;
use carerecord_contracts::records::v1::{CreateRecordRequest, Record};
use carerecord_e2e::{
    Overrides, PROJECT, Platform, authed, by_nhs, patient_token, read_request, token, token_at,
    uuid,
};
use carerecord_platform::testing::{call_raw, error_info, violations};
use prost::Message;
use tonic::Code;

/// Every error's trailers stay well under the 16 KiB common clients accept.
fn assert_small(status: &tonic::Status) {
    let size = status.message().len() + status.details().len();
    assert!(
        size < 8 * 1024,
        "{size} bytes of status: {:?}",
        status.code()
    );
}

#[tokio::test]
async fn a_patient_reads_their_own_record_and_staff_need_an_organisation() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, nhs) = platform.register_patient("Pat", "Ient").await;
        let own = platform.add_record(&patient_id, &[]).await;
        platform.add_record(&patient_id, &["safeguarding"]).await;
        let mut access = platform.access_client().await;
        let app = patient_token(&patient_id, "patient/*.rs");
        let page = access
            .read_patient_record(authed(read_request(by_nhs(&nhs), "PATRQT"), &app))
            .await
            .unwrap_or_else(|s| panic!("{backend:?}: the patient's own read: {s:?}"))
            .into_inner();
        let returned: Vec<&str> = page.records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(
            returned,
            [own.as_str()],
            "{backend:?}: safeguarding data awaits review"
        );
        assert_eq!(page.disclosure.unwrap().withheld_count, 1);

        // A system token without an organisation is refused for what it is, not as an outage.
        let nameless = token_at("", "", "system/*.rs", "integration");
        let refused = access
            .read_patient_record(authed(read_request(by_nhs(&nhs), "TREAT"), &nameless))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), error_info(&refused).reason.as_str()),
            (Code::PermissionDenied, "ORGANISATION_MISSING"),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn long_input_never_swells_the_trailers_nor_looks_like_an_outage() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let long = "9".repeat(10 * 1024);
        let status = platform
            .identity_client()
            .await
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: "https://fhir.example.nhs.uk/Id/mrn".into(),
                    value: long.clone(),
                }),
            })
            .await
            .unwrap_err();
        assert_small(&status);
        assert_ne!(status.code(), Code::ResourceExhausted, "{status:?}");

        let clinician = token("R8000", "user/*.rs");
        let status = platform
            .access_client()
            .await
            .find_patient(authed(
                FindPatientRequest {
                    patient: Some(PatientReference {
                        reference: Some(Reference::Identifier(Identifier {
                            system: "https://fhir.example.nhs.uk/Id/mrn".into(),
                            value: long.clone(),
                        })),
                    }),
                    purpose_of_use: "TREAT".into(),
                },
                &clinician,
            ))
            .await
            .unwrap_err();
        assert_small(&status);
        assert!(
            matches!(status.code(), Code::NotFound | Code::InvalidArgument),
            "{:?}: not an outage: {status:?}",
            platform.backend
        );

        let status = platform
            .records_client()
            .await
            .create_record(CreateRecordRequest {
                request_id: uuid(),
                record: Some(Record {
                    resource_type: long.clone(),
                    ..Record::default()
                }),
                requester: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_small(&status);
    }
}

#[tokio::test]
async fn undecodable_and_oversized_requests_are_the_clients_fault_on_every_module() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let methods = [
            (
                &platform.identity,
                "/carerecord.identity.v1.PatientIdentityService/GetPatient",
            ),
            (
                &platform.records,
                "/carerecord.records.v1.RecordHostingService/GetRecord",
            ),
            (
                &platform.consent,
                "/carerecord.consent.v1.ConsentService/Decide",
            ),
            (
                &platform.access,
                "/carerecord.access.v1.DataAccessService/FindPatient",
            ),
        ];
        for (endpoint, method) in methods {
            let channel = Platform::channel(endpoint).await;
            let status = call_raw(
                channel.clone(),
                method,
                vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff],
            )
            .await
            .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
            assert_eq!(error_info(&status).reason, "MALFORMED_REQUEST", "{method}");
            let status = call_raw(channel, method, vec![0; 17 << 20])
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::ResourceExhausted,
                "{method}: {status:?}"
            );
            assert_eq!(error_info(&status).reason, "MESSAGE_TOO_LARGE", "{method}");
        }
    }
}

#[tokio::test]
async fn nul_in_any_text_field_is_refused_alike_on_both_backends() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (patient_id, _) = platform.register_patient("Nul", "Byte").await;
        let status = platform
            .records_client()
            .await
            .create_record(CreateRecordRequest {
                request_id: uuid(),
                record: Some(Record {
                    patient_id: patient_id.clone(),
                    resource_type: "Observation".into(),
                    source_system: "epr\0".into(),
                    ..Record::default()
                }),
                requester: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            violations(&status),
            ["record.source_system"],
            "{:?}",
            platform.backend
        );

        let mut request = api::CreateRecordRequest {
            request_id: uuid(),
            purpose_of_use: "TREAT\0".into(),
            ..api::CreateRecordRequest::default()
        };
        request.content = Some(api::RecordContent {
            author: "device\0".into(),
            ..api::RecordContent::default()
        });
        let raw = call_raw(
            Platform::channel(&platform.access).await,
            "/carerecord.access.v1.DataAccessService/CreateRecord",
            request.encode_to_vec(),
        )
        .await
        .unwrap_err();
        assert_eq!(violations(&raw), ["purpose_of_use", "content.author"]);
        assert_eq!(error_info(&raw).reason, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn research_under_section_251_support_is_permitted_and_the_opt_out_still_applies() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let (may, opted_out) = platform
            .opt_out_cohort(("Sec", "Twofiftyone"), ("Opt", "Out"))
            .await;
        let researcher = token("R8000", "user/*.rs");
        let request = api::ExtractPseudonymisedRequest {
            project_id: PROJECT.into(),
            purpose_of_use: "HRESCH".into(),
            legal_basis: LegalBasis::Section251Support as i32,
            cohort: Some(api::Cohort {
                selection: Some(api::cohort::Selection::PatientList(api::PatientIdList {
                    patient_ids: vec![may.clone(), opted_out.clone()],
                })),
            }),
            ..api::ExtractPseudonymisedRequest::default()
        };
        let mut stream = platform
            .access_client()
            .await
            .extract_pseudonymised(authed(request, &researcher))
            .await
            .unwrap_or_else(|s| panic!("{:?}: {s:?}", platform.backend))
            .into_inner();
        let (mut rows, mut summary) = (0, None);
        while let Some(message) = stream.message().await.unwrap() {
            match message.item {
                Some(api::extract_pseudonymised_response::Item::Row(_)) => rows += 1,
                Some(api::extract_pseudonymised_response::Item::Summary(s)) => summary = Some(s),
                None => {}
            }
        }
        let counts = summary.expect("a summary").cohort_counts.unwrap();
        assert_eq!(
            (
                rows,
                counts.patients_included,
                counts.patients_excluded_opt_out
            ),
            (1, 1, 1),
            "{:?}",
            platform.backend
        );
    }
}
