//! Authentication, FindPatient, ReadPatientRecord, ListDisclosures, extracts and aggregates.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carerecord_contracts::access::v1::cohort::Selection;
use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    AggregateDimension, AggregateExtractRequest, AuditAction, Cohort, CohortFilter,
    DecisionOutcome, Demographics, ExtractPseudonymisedRequest, ExtractPseudonymisedResponse,
    ListDisclosuresRequest, PatientIdList, PatientReference, ReadPatientRecordRequest,
};
use carerecord_contracts::common::v1::{Identifier, Period};
use tonic::{Code, Status};

use super::{audited, by_id, client, find, has_reason, unscoped, with_header};
use crate::harness::{
    Case, Ctx, Fail, TestResult, describe, ensure, ensure_eq, err, fail, has_resource,
    has_violation, ok,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "ACC-AUTH-001",
            "A call without authorization metadata -> UNAUTHENTICATED, ErrorInfo TOKEN_MISSING",
            auth_missing,
        ),
        Case::new(
            "ACC-AUTH-002",
            "A bearer value that is not a JWT -> UNAUTHENTICATED, ErrorInfo TOKEN_INVALID",
            auth_malformed,
        ),
        Case::new(
            "ACC-AUTH-003",
            "The given token with its signature altered -> UNAUTHENTICATED TOKEN_INVALID",
            auth_tampered,
        ),
        Case::new(
            "ACC-AUTH-004",
            "The given token's claims re-sent with `alg: none` and no signature -> UNAUTHENTICATED TOKEN_INVALID",
            auth_alg_none,
        ),
        Case::new(
            "ACC-AUTH-005",
            "A valid token without the needed scope -> PERMISSION_DENIED SCOPE_MISSING with metadata required_scope",
            auth_scope_missing,
        ),
        Case::new(
            "ACC-FIND-001",
            "FindPatient of an unknown patient_id -> NOT_FOUND PATIENT_NOT_FOUND with ResourceInfo(Patient, id), audited (audit_entry_id, audit_index)",
            find_unknown_id,
        ),
        Case::new(
            "ACC-FIND-002",
            "FindPatient of an unknown NHS number -> NOT_FOUND PATIENT_NOT_FOUND with ResourceInfo(Patient), audited",
            find_unknown_nhs,
        ),
        Case::new(
            "ACC-FIND-003",
            "FindPatient validation: no reference, malformed id, bad NHS check digit, identifier without system, demographics without family, missing or unknown purpose -> INVALID_ARGUMENT INVALID_REQUEST naming the field",
            find_invalid,
        ),
        Case::new(
            "ACC-FIND-004",
            "FindPatient by patient_id, NHS number and identifier returns one summary without address or contact details, audited",
            find_seeded,
        ),
        Case::new(
            "ACC-READ-001",
            "ReadPatientRecord returns the patient's current records, effective time descending (none last) then record_id, payload byte for byte, counted and audited",
            read_seeded,
        ),
        Case::new(
            "ACC-READ-002",
            "ReadPatientRecord pages without gaps or duplicates; a tampered page token or one reused with other filters -> INVALID_ARGUMENT INVALID_PAGE_TOKEN",
            read_paging,
        ),
        Case::new(
            "ACC-READ-003",
            "ReadPatientRecord validation: ETREAT, unknown resource type, period end before start -> INVALID_ARGUMENT INVALID_REQUEST",
            read_invalid,
        ),
        Case::new(
            "ACC-READ-004",
            "A consent DENY -> PERMISSION_DENIED CONSENT_DENIED with decision_outcome DENY, reason codes and audit metadata; nothing disclosed",
            read_consent_denied,
        ),
        Case::new(
            "ACC-DISC-001",
            "ListDisclosures shows the patient's finds and reads newest first, refused ones too; the listing is audited but not in its own page",
            disclosures,
        ),
        Case::new(
            "ACC-EXT-001",
            "ExtractPseudonymised and AggregateExtract validation: purpose other than HRESCH/HOPERAT, malformed project id, no cohort, repeated or unspecified dimension -> INVALID_ARGUMENT",
            extract_invalid,
        ),
        Case::new(
            "ACC-EXT-002",
            "An extract for an unregistered project -> NOT_FOUND PROJECT_NOT_FOUND with ResourceInfo(Project, id), before any row",
            extract_unknown_project,
        ),
        Case::new(
            "ACC-EXT-003",
            "ExtractPseudonymised streams de-identified rows then exactly one summary, last, whose counts add up; pseudonyms are 64 lower-case hex",
            extract_shape,
        ),
        Case::new(
            "ACC-AGG-001",
            "AggregateExtract streams protected counts (suppressed 1-7 as 0, others multiples of 5) in order, then one summary counting the rows",
            aggregate_shape,
        ),
    ]
}

async fn find_status(
    client: &mut super::Client,
    reference: Option<PatientReference>,
    purpose: &str,
) -> Result<carerecord_contracts::access::v1::FindPatientResponse, Status> {
    client
        .find_patient(find(reference, purpose))
        .await
        .map(|r| r.into_inner())
}

async fn auth_missing(ctx: Ctx) -> TestResult {
    let mut c = super::with_auth(&ctx, crate::harness::Auth(None));
    let status = err(
        find_status(&mut c, by_id(&uuid::Uuid::new_v4().to_string()), "TREAT").await,
        Code::Unauthenticated,
        "FindPatient(no token)",
    )?;
    has_reason(&status, "TOKEN_MISSING").map(|_| ())
}

async fn auth_malformed(ctx: Ctx) -> TestResult {
    let mut c = with_header(&ctx, "Bearer not-a-jwt")?;
    let status = err(
        find_status(&mut c, by_id(&uuid::Uuid::new_v4().to_string()), "TREAT").await,
        Code::Unauthenticated,
        "FindPatient(malformed token)",
    )?;
    has_reason(&status, "TOKEN_INVALID").map(|_| ())
}

fn token_parts(ctx: &Ctx) -> TestResult<(String, String, String)> {
    let token = ctx.options.token.clone().unwrap_or_default();
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [h, p, s] => Ok(((*h).to_owned(), (*p).to_owned(), (*s).to_owned())),
        _ => Err(Fail::Skipped(
            "the given token is not a compact JWS (three parts)".into(),
        )),
    }
}

async fn auth_tampered(ctx: Ctx) -> TestResult {
    let (h, p, s) = token_parts(&ctx)?;
    let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap_or_default();
    if let Some(b) = sig.first_mut() {
        *b ^= 0x01;
    }
    let forged = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let mut c = with_header(&ctx, &format!("Bearer {forged}"))?;
    let status = err(
        find_status(&mut c, by_id(&uuid::Uuid::new_v4().to_string()), "TREAT").await,
        Code::Unauthenticated,
        "FindPatient(altered signature)",
    )?;
    has_reason(&status, "TOKEN_INVALID").map(|_| ())
}

async fn auth_alg_none(ctx: Ctx) -> TestResult {
    let (_, p, _) = token_parts(&ctx)?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let mut c = with_header(&ctx, &format!("Bearer {header}.{p}."))?;
    let status = err(
        find_status(&mut c, by_id(&uuid::Uuid::new_v4().to_string()), "TREAT").await,
        Code::Unauthenticated,
        "FindPatient(alg none)",
    )?;
    has_reason(&status, "TOKEN_INVALID").map(|_| ())
}

async fn auth_scope_missing(ctx: Ctx) -> TestResult {
    let mut c = unscoped(&ctx)?;
    let status = err(
        find_status(&mut c, by_id(&uuid::Uuid::new_v4().to_string()), "TREAT").await,
        Code::PermissionDenied,
        "FindPatient(token without Patient.r)",
    )?;
    let metadata = has_reason(&status, "SCOPE_MISSING")?;
    ensure!(
        metadata
            .get("required_scope")
            .is_some_and(|s| !s.is_empty()),
        "ErrorInfo metadata required_scope must name a scope, got {metadata:?}"
    );
    Ok(())
}

async fn find_unknown_id(ctx: Ctx) -> TestResult {
    let id = uuid::Uuid::new_v4().to_string();
    let status = err(
        find_status(&mut client(&ctx), by_id(&id), "TREAT").await,
        Code::NotFound,
        "FindPatient(unknown patient_id)",
    )?;
    let metadata = has_reason(&status, "PATIENT_NOT_FOUND")?;
    has_resource(&status, "Patient", &id)?;
    audited(&metadata).map(|_| ())
}

async fn find_unknown_nhs(ctx: Ctx) -> TestResult {
    let nhs = crate::identity::nhs_number();
    let reference = Some(PatientReference {
        reference: Some(Reference::NhsNumber(nhs.clone())),
    });
    let status = err(
        find_status(&mut client(&ctx), reference, "TREAT").await,
        Code::NotFound,
        "FindPatient(unknown NHS number)",
    )?;
    let metadata = has_reason(&status, "PATIENT_NOT_FOUND")?;
    ensure!(
        tonic_types::StatusExt::get_details_resource_info(&status)
            .is_some_and(|r| r.resource_type == "Patient"),
        "expected ResourceInfo(Patient), got {}",
        describe(&status)
    );
    audited(&metadata).map(|_| ())
}

async fn find_invalid(ctx: Ctx) -> TestResult {
    let reference = |r: Reference| Some(PatientReference { reference: Some(r) });
    let cases: Vec<(&str, Option<PatientReference>, &str, &str)> = vec![
        ("no reference", None, "TREAT", "patient"),
        (
            "an empty reference",
            Some(PatientReference { reference: None }),
            "TREAT",
            "patient",
        ),
        (
            "a malformed patient_id",
            reference(Reference::PatientId("12345".into())),
            "TREAT",
            "patient.patient_id",
        ),
        (
            "an NHS number failing its check digit",
            reference(Reference::NhsNumber(crate::identity::bad_check_digit())),
            "TREAT",
            "patient.nhs_number",
        ),
        (
            "an identifier without system",
            reference(Reference::Identifier(Identifier {
                system: String::new(),
                value: "X1".into(),
            })),
            "TREAT",
            "patient.identifier.system",
        ),
        (
            "demographics without family",
            reference(Reference::Demographics(Demographics {
                given: "Alex".into(),
                birth_date: Some(carerecord_contracts::common::v1::Date {
                    year: 1984,
                    month: 3,
                    day: 17,
                }),
                ..Default::default()
            })),
            "TREAT",
            "patient.demographics.family",
        ),
        (
            "no purpose",
            by_id(&uuid::Uuid::new_v4().to_string()),
            "",
            "purpose_of_use",
        ),
        (
            "a lower-case purpose",
            by_id(&uuid::Uuid::new_v4().to_string()),
            "treat",
            "purpose_of_use",
        ),
    ];
    for (what, r, purpose, field) in cases {
        let status = err(
            find_status(&mut client(&ctx), r, purpose).await,
            Code::InvalidArgument,
            &format!("FindPatient({what})"),
        )?;
        has_reason(&status, "INVALID_REQUEST")?;
        has_violation(&status, field)?;
    }
    Ok(())
}

/// A patient registered through identity, with three records in record hosting.
pub(super) struct Seeded {
    pub patient: carerecord_contracts::identity::v1::Patient,
    pub records: Vec<carerecord_contracts::records::v1::Record>,
}

/// Registers a patient and three records (effective 2020-01-02, 2020-01-04 and none; the second
/// labelled `hiv`) through the deployment's identity and record hosting contracts.
pub(super) async fn seed(ctx: &Ctx) -> TestResult<Seeded> {
    let (Some(identity), Some(records)) = (
        ctx.options.identity_endpoint.clone(),
        ctx.options.records_endpoint.clone(),
    ) else {
        return Err(Fail::Skipped("needs the deployment's identity and record hosting endpoints to register a test patient (--identity-endpoint, --records-endpoint)".into()));
    };
    let identity_ctx = ctx.for_endpoint(&identity).await?;
    let records_ctx = ctx.for_endpoint(&records).await?;
    let patient = crate::identity::create(&identity_ctx, crate::identity::new_patient()).await?;
    let pid = patient.patient_id.clone();
    let mut made = Vec::new();
    for (days, classes) in [
        (Some(1), vec![]),
        (Some(3), vec!["hiv".to_owned()]),
        (None, vec![]),
    ] {
        let r = carerecord_contracts::records::v1::Record {
            effective_time: days.map(crate::records::day),
            data_classes: classes,
            ..crate::records::new_record(&pid)
        };
        made.push(crate::records::create(&records_ctx, r).await?);
    }
    ctx.absorb(&identity_ctx);
    ctx.absorb(&records_ctx);
    Ok(Seeded {
        patient,
        records: made,
    })
}

async fn find_seeded(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let p = &s.patient;
    let nhs = format!(
        "{} {} {}",
        &p.nhs_number[..3],
        &p.nhs_number[3..6],
        &p.nhs_number[6..]
    );
    let refs = [
        ("patient_id", by_id(&p.patient_id.to_uppercase())),
        (
            "NHS number",
            Some(PatientReference {
                reference: Some(Reference::NhsNumber(nhs)),
            }),
        ),
        (
            "identifier",
            Some(PatientReference {
                reference: Some(Reference::Identifier(p.identifiers[0].clone())),
            }),
        ),
    ];
    for (what, r) in refs {
        let found = ok(
            client(&ctx).find_patient(find(r, "TREAT")).await,
            &format!("FindPatient(by {what})"),
        )?;
        let Some(summary) = found.patient else {
            fail!("FindPatient(by {what}): no patient")
        };
        ensure_eq!(
            summary.patient_id,
            p.patient_id,
            "patient_id found by {what}"
        );
        ensure_eq!(summary.nhs_number, p.nhs_number, "nhs_number");
        ensure_eq!(summary.birth_date, p.birth_date, "birth_date");
        ensure_eq!(summary.gender, p.gender, "gender");
        ensure!(
            summary.names.iter().any(|n| n.family == p.names[0].family),
            "the summary carries the patient's names"
        );
        ensure!(
            found.resolved_from_merged_patient_id.is_empty(),
            "no merge was followed"
        );
        ensure!(
            uuid::Uuid::parse_str(&found.audit_entry_id).is_ok() && found.audit_index >= 0,
            "audit_entry_id and audit_index must be set"
        );
    }
    Ok(())
}

fn read(pid: &str) -> ReadPatientRecordRequest {
    ReadPatientRecordRequest {
        patient: by_id(pid),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    }
}

/// The expected order: effective time descending, records without one last, then record_id.
fn expected_order(records: &[carerecord_contracts::records::v1::Record]) -> Vec<String> {
    let mut v: Vec<_> = records.iter().collect();
    v.sort_by_key(|r| {
        (
            r.effective_time.is_none(),
            std::cmp::Reverse(crate::records::ts_key(&r.effective_time)),
            r.record_id.clone(),
        )
    });
    v.into_iter().map(|r| r.record_id.clone()).collect()
}

async fn read_seeded(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let page = ok(
        client(&ctx)
            .read_patient_record(read(&s.patient.patient_id))
            .await,
        "ReadPatientRecord",
    )?;
    ensure_eq!(page.patient_id, s.patient.patient_id, "patient_id");
    let got: Vec<String> = page.records.iter().map(|r| r.record_id.clone()).collect();
    ensure_eq!(got, expected_order(&s.records), "records in order");
    for r in &page.records {
        let Some(src) = s.records.iter().find(|x| x.record_id == r.record_id) else {
            fail!("an unexpected record {}", r.record_id)
        };
        ensure_eq!(
            (
                r.version,
                r.resource_type.as_str(),
                &r.payload,
                &r.data_classes,
                r.effective_time
            ),
            (
                src.version,
                src.resource_type.as_str(),
                &src.payload,
                &src.data_classes,
                src.effective_time
            ),
            "record {} as held by record hosting",
            r.record_id
        );
        ensure_eq!(
            r.content_type,
            "application/fhir+json; fhirVersion=4.0",
            "content_type"
        );
        ensure_eq!(
            r.source_organisation_ods_code,
            src.authoring_organisation_ods_code,
            "source_organisation_ods_code"
        );
    }
    let Some(d) = page.disclosure else {
        fail!("no disclosure summary")
    };
    ensure_eq!(
        d.returned_count,
        page.records.len() as i64,
        "disclosure.returned_count"
    );
    ensure_eq!(
        d.withheld_count,
        d.withheld_by_rule.iter().map(|w| w.count).sum::<i64>(),
        "withheld_count is the sum of withheld_by_rule"
    );
    ensure!(
        page.decision
            .is_some_and(|dec| dec.outcome != 0 && dec.outcome != DecisionOutcome::Deny as i32),
        "a disclosing page carries a non-DENY decision"
    );
    ensure!(
        uuid::Uuid::parse_str(&page.audit_entry_id).is_ok() && page.audit_index >= 0,
        "audit_entry_id and audit_index must be set"
    );
    ensure!(
        page.next_page_token.is_empty(),
        "three records fit one page of 50"
    );
    Ok(())
}

async fn read_paging(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let base = ReadPatientRecordRequest {
        page_size: 1,
        ..read(&s.patient.patient_id)
    };
    let mut got = Vec::new();
    let mut token = String::new();
    let mut first_token = String::new();
    loop {
        let page = ok(
            client(&ctx)
                .read_patient_record(ReadPatientRecordRequest {
                    page_token: token.clone(),
                    ..base.clone()
                })
                .await,
            "ReadPatientRecord(page_size 1)",
        )?;
        ensure!(
            page.records.len() <= 1,
            "a page of size 1 held {}",
            page.records.len()
        );
        got.extend(page.records.into_iter().map(|r| r.record_id));
        if page.next_page_token.is_empty() {
            break;
        }
        if first_token.is_empty() {
            first_token = page.next_page_token.clone();
        }
        ensure!(got.len() <= 10, "pagination does not end");
        token = page.next_page_token;
    }
    ensure_eq!(got, expected_order(&s.records), "records over every page");
    ensure!(
        !first_token.is_empty(),
        "three records with page_size 1 need a next_page_token"
    );
    for (what, request) in [
        (
            "a tampered token",
            ReadPatientRecordRequest {
                page_token: crate::records::tamper(&first_token),
                ..base.clone()
            },
        ),
        (
            "a token with other filters",
            ReadPatientRecordRequest {
                page_token: first_token.clone(),
                resource_types: vec!["Observation".into()],
                ..base.clone()
            },
        ),
    ] {
        let status = err(
            client(&ctx).read_patient_record(request).await,
            Code::InvalidArgument,
            &format!("ReadPatientRecord({what})"),
        )?;
        has_reason(&status, "INVALID_PAGE_TOKEN")?;
    }
    Ok(())
}

async fn read_invalid(ctx: Ctx) -> TestResult {
    let pid = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(&str, ReadPatientRecordRequest, &str)> = vec![
        (
            "purpose ETREAT",
            ReadPatientRecordRequest {
                purpose_of_use: "ETREAT".into(),
                ..read(&pid)
            },
            "purpose_of_use",
        ),
        (
            "an unknown resource type",
            ReadPatientRecordRequest {
                resource_types: vec!["CarePathway".into()],
                ..read(&pid)
            },
            "resource_types[0]",
        ),
        (
            "a period ending before it starts",
            ReadPatientRecordRequest {
                effective_period: Some(Period {
                    start: Some(crate::records::day(2)),
                    end: Some(crate::records::day(1)),
                }),
                ..read(&pid)
            },
            "effective_period",
        ),
    ];
    for (what, request, field) in cases {
        let status = err(
            client(&ctx).read_patient_record(request).await,
            Code::InvalidArgument,
            &format!("ReadPatientRecord({what})"),
        )?;
        has_reason(&status, "INVALID_REQUEST")?;
        crate::harness::has_violation_under(&status, field)?;
    }
    Ok(())
}

async fn read_consent_denied(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let Some(consent) = ctx.options.consent_endpoint.clone() else {
        return Err(Fail::Skipped(
            "needs the deployment's consent endpoint to record a refusal (--consent-endpoint)"
                .into(),
        ));
    };
    let consent_ctx = ctx.for_endpoint(&consent).await?;
    crate::consent::create(
        &consent_ctx,
        crate::consent::directive(
            &s.patient.patient_id,
            carerecord_contracts::consent::v1::ConsentDecision::Deny,
            vec![],
        ),
    )
    .await?;
    ctx.absorb(&consent_ctx);
    let status = err(
        client(&ctx)
            .read_patient_record(read(&s.patient.patient_id))
            .await,
        Code::PermissionDenied,
        "ReadPatientRecord(patient refuses all sharing)",
    )?;
    let metadata = has_reason(&status, "CONSENT_DENIED")?;
    ensure_eq!(
        metadata.get("decision_outcome").map(String::as_str),
        Some("DENY"),
        "ErrorInfo metadata decision_outcome"
    );
    ensure!(
        metadata.contains_key("reason_codes"),
        "ErrorInfo metadata reason_codes must be present, got {metadata:?}"
    );
    audited(&metadata)?;
    let localized = tonic_types::StatusExt::get_details_localized_message(&status);
    ensure!(
        localized.is_some_and(|l| l.locale == "en-GB"),
        "a google.rpc.LocalizedMessage (en-GB) must carry the reasons, got {}",
        describe(&status)
    );
    Ok(())
}

async fn disclosures(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let pid = s.patient.patient_id.clone();
    let found = ok(
        client(&ctx).find_patient(find(by_id(&pid), "TREAT")).await,
        "FindPatient",
    )?;
    let page = ok(
        client(&ctx).read_patient_record(read(&pid)).await,
        "ReadPatientRecord",
    )?;
    let request = ListDisclosuresRequest {
        patient: by_id(&pid),
        ..Default::default()
    };
    let listing = match client(&ctx).list_disclosures(request).await {
        Ok(r) => r.into_inner(),
        Err(st) if st.code() == Code::PermissionDenied => {
            has_reason(&st, "SCOPE_MISSING")?;
            return Err(Fail::Skipped(
                "the token lacks user/AuditEvent.r or patient/AuditEvent.r (SCOPE_MISSING checked)"
                    .into(),
            ));
        }
        Err(st) => fail!("ListDisclosures: expected OK, got {}", describe(&st)),
    };
    ensure_eq!(listing.patient_id, pid, "patient_id");
    let entries: Vec<(String, i32)> = listing
        .disclosures
        .iter()
        .map(|d| (d.audit_entry_id.clone(), d.action))
        .collect();
    ensure!(
        entries.contains(&(page.audit_entry_id.clone(), AuditAction::Read as i32)),
        "the read must be listed, got {entries:?}"
    );
    ensure!(
        entries.contains(&(
            found.audit_entry_id.clone(),
            AuditAction::FindPatient as i32
        )),
        "the find must be listed, got {entries:?}"
    );
    ensure!(
        listing
            .disclosures
            .windows(2)
            .all(|w| w[0].audit_index > w[1].audit_index),
        "disclosures must be newest first (descending audit_index)"
    );
    ensure!(
        !listing.audit_entry_id.is_empty()
            && listing
                .disclosures
                .iter()
                .all(|d| d.audit_entry_id != listing.audit_entry_id),
        "the listing is audited but not in its own page"
    );
    ensure!(
        listing.disclosures.iter().all(|d| d.patient_id == pid),
        "every disclosure names the patient"
    );
    Ok(())
}

/// Reads a server stream to its end (or error) within a time limit.
async fn drain<T>(
    result: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> TestResult<(Vec<T>, Result<(), Status>)> {
    let mut stream = match result {
        Ok(s) => s.into_inner(),
        Err(st) => return Ok((Vec::new(), Err(st))),
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.message()).await {
            Err(_) => fail!("no message or end of stream within 60 s"),
            Ok(Ok(Some(m))) => out.push(m),
            Ok(Ok(None)) => return Ok((out, Ok(()))),
            Ok(Err(st)) => return Ok((out, Err(st))),
        }
    }
}

fn cohort(ids: Vec<String>) -> Option<Cohort> {
    Some(Cohort {
        selection: Some(Selection::PatientList(PatientIdList { patient_ids: ids })),
    })
}

fn extract(project: &str, purpose: &str, cohort: Option<Cohort>) -> ExtractPseudonymisedRequest {
    ExtractPseudonymisedRequest {
        project_id: project.into(),
        purpose_of_use: purpose.into(),
        cohort,
        ..Default::default()
    }
}

async fn extract_invalid(ctx: Ctx) -> TestResult {
    let some = cohort(vec![uuid::Uuid::new_v4().to_string()]);
    let cases: Vec<(&str, ExtractPseudonymisedRequest, &str)> = vec![
        (
            "purpose TREAT",
            extract("kit-project", "TREAT", some.clone()),
            "purpose_of_use",
        ),
        (
            "a project id with a space",
            extract("kit project", "HRESCH", some.clone()),
            "project_id",
        ),
        (
            "no cohort",
            extract("kit-project", "HRESCH", None),
            "cohort",
        ),
        (
            "an empty patient list",
            extract("kit-project", "HRESCH", cohort(vec![])),
            "cohort",
        ),
        (
            "a malformed patient id",
            extract("kit-project", "HRESCH", cohort(vec!["nope".into()])),
            "cohort",
        ),
    ];
    for (what, request, field) in cases {
        let (rows, end) = drain(client(&ctx).extract_pseudonymised(request).await).await?;
        ensure!(
            rows.is_empty(),
            "ExtractPseudonymised({what}) sent messages before its error"
        );
        let status = err(
            end,
            Code::InvalidArgument,
            &format!("ExtractPseudonymised({what})"),
        )?;
        crate::harness::has_violation_under(&status, field)?;
    }
    let agg = |group_by: Vec<i32>| AggregateExtractRequest {
        project_id: "kit-project".into(),
        purpose_of_use: "HRESCH".into(),
        cohort: some.clone(),
        group_by,
        ..Default::default()
    };
    for (what, request) in [
        (
            "a repeated dimension",
            agg(vec![
                AggregateDimension::ResourceType as i32,
                AggregateDimension::ResourceType as i32,
            ]),
        ),
        (
            "an unspecified dimension",
            agg(vec![AggregateDimension::Unspecified as i32]),
        ),
    ] {
        let (rows, end) = drain(client(&ctx).aggregate_extract(request).await).await?;
        ensure!(
            rows.is_empty(),
            "AggregateExtract({what}) sent messages before its error"
        );
        let status = err(
            end,
            Code::InvalidArgument,
            &format!("AggregateExtract({what})"),
        )?;
        crate::harness::has_violation_under(&status, "group_by")?;
    }
    Ok(())
}

async fn extract_unknown_project(ctx: Ctx) -> TestResult {
    let project = format!("kit-{}", uuid::Uuid::new_v4().simple());
    let (rows, end) = drain(
        client(&ctx)
            .extract_pseudonymised(extract(
                &project,
                "HRESCH",
                cohort(vec![uuid::Uuid::new_v4().to_string()]),
            ))
            .await,
    )
    .await?;
    ensure!(rows.is_empty(), "rows were sent for an unknown project");
    let status = err(
        end,
        Code::NotFound,
        "ExtractPseudonymised(unregistered project)",
    )?;
    has_reason(&status, "PROJECT_NOT_FOUND")?;
    has_resource(&status, "Project", &project)
}

fn project(ctx: &Ctx) -> TestResult<String> {
    ctx.options.project_id.clone().ok_or_else(|| {
        Fail::Skipped(
            "needs a registered project approved for HRESCH for this token (--project)".into(),
        )
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn extract_shape(ctx: Ctx) -> TestResult {
    let project = project(&ctx)?;
    let s = seed(&ctx).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let request = extract(
        &project,
        "HRESCH",
        cohort(vec![s.patient.patient_id.clone(), unknown]),
    );
    let (messages, end) = drain(client(&ctx).extract_pseudonymised(request).await).await?;
    if let Err(st) = end {
        fail!(
            "ExtractPseudonymised: expected the stream to end OK, got {}",
            describe(&st)
        );
    }
    use carerecord_contracts::access::v1::extract_pseudonymised_response::Item;
    let Some((last, rows)) = messages.split_last() else {
        fail!("an extract must end with a summary")
    };
    let Some(Item::Summary(summary)) = &last.item else {
        fail!("the last message must be the summary")
    };
    ensure!(
        rows.iter()
            .all(|m: &ExtractPseudonymisedResponse| matches!(m.item, Some(Item::Row(_)))),
        "exactly one summary, last"
    );
    ensure_eq!(summary.rows, rows.len() as i64, "summary.rows");
    let Some(c) = &summary.cohort_counts else {
        fail!("the summary has no cohort counts")
    };
    ensure_eq!(
        c.patients_considered,
        c.patients_not_found + c.patients_excluded_opt_out + c.patients_included,
        "patients_considered = not_found + excluded + included"
    );
    ensure_eq!(
        (c.patients_considered, c.patients_not_found),
        (2, 1),
        "(patients_considered, patients_not_found)"
    );
    ensure!(
        uuid::Uuid::parse_str(&summary.audit_entry_id).is_ok(),
        "the summary names its audit entry"
    );
    let mut pseudonyms = std::collections::BTreeSet::new();
    for m in rows {
        if let Some(Item::Row(r)) = &m.item {
            ensure!(
                is_hex64(&r.pseudonym) && is_hex64(&r.record_pseudonym),
                "pseudonyms are 64 lower-case hex characters"
            );
            pseudonyms.insert(r.pseudonym.clone());
            let text = String::from_utf8_lossy(&r.payload);
            ensure!(
                !text.contains(&s.patient.patient_id),
                "a row's payload still names the patient_id"
            );
            ensure!(
                !s.records.iter().any(|x| text.contains(&x.record_id)),
                "a row's payload still names a record_id"
            );
        }
    }
    ensure!(
        pseudonyms.len() <= 1,
        "one patient has one pseudonym in an extract, got {}",
        pseudonyms.len()
    );
    Ok(())
}

async fn aggregate_shape(ctx: Ctx) -> TestResult {
    let project = project(&ctx)?;
    // At least the seeded patient's records exist to be counted.
    seed(&ctx).await?;
    let request = AggregateExtractRequest {
        project_id: project,
        purpose_of_use: "HRESCH".into(),
        cohort: Some(Cohort {
            selection: Some(Selection::Filter(CohortFilter::default())),
        }),
        group_by: vec![
            AggregateDimension::ResourceType as i32,
            AggregateDimension::EffectiveMonth as i32,
        ],
        ..Default::default()
    };
    let (messages, end) = drain(client(&ctx).aggregate_extract(request).await).await?;
    if let Err(st) = end {
        fail!(
            "AggregateExtract: expected the stream to end OK, got {}",
            describe(&st)
        );
    }
    use carerecord_contracts::access::v1::aggregate_extract_response::Item;
    let Some((last, rows)) = messages.split_last() else {
        fail!("an aggregate must end with a summary")
    };
    let Some(Item::Summary(summary)) = &last.item else {
        fail!("the last message must be the summary")
    };
    ensure_eq!(summary.rows, rows.len() as i64, "summary.rows");
    let mut keys = Vec::new();
    for m in rows {
        let Some(Item::Row(r)) = &m.item else {
            fail!("exactly one summary, last")
        };
        if r.suppressed {
            ensure_eq!(r.count, 0, "a suppressed count is sent as 0");
        } else {
            ensure!(
                r.count >= 10 && r.count % 5 == 0,
                "an unsuppressed count is a multiple of 5 of at least 10 (true count 8 or more), got {}",
                r.count
            );
        }
        ensure!(
            r.code.is_none()
                || r.code
                    .as_ref()
                    .is_some_and(|c| c.system.is_empty() && c.code.is_empty()),
            "code is empty when not grouped by CODE"
        );
        keys.push((r.resource_type.clone(), r.effective_month.clone()));
    }
    let mut sorted = keys.clone();
    sorted.sort();
    ensure_eq!(
        keys,
        sorted,
        "rows in ascending order of resource_type, then effective_month"
    );
    Ok(())
}
