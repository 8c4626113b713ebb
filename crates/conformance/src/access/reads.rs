//! ReadPatientRecord and ListDisclosures.

use carerecord_contracts::access::v1::{
    AuditAction, DecisionOutcome, ListDisclosuresRequest, ListDisclosuresResponse,
    ReadPatientRecordRequest,
};
use carerecord_contracts::common::v1::Period;
use tonic::Code;

use super::support::{
    audited, by_id, client, ensure_audit_named, find, has_reason, record_directive, seed,
};
use crate::harness::{
    Ctx, Fail, TestResult, describe, ensure, ensure_eq, err, every_page, fail, ok,
};
use crate::refusal::{Refusal, refuse_each};

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

pub(super) async fn read_seeded(ctx: Ctx) -> TestResult {
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
    ensure_audit_named("ReadPatientRecord", &page.audit_entry_id, page.audit_index)?;
    ensure!(
        page.next_page_token.is_empty(),
        "three records fit one page of 50"
    );
    Ok(())
}

pub(super) async fn read_paging(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    let base = ReadPatientRecordRequest {
        page_size: 1,
        ..read(&s.patient.patient_id)
    };
    let (got, first_token) = every_page!(
        client(&ctx),
        read_patient_record,
        "ReadPatientRecord",
        records,
        10,
        &base,
    )?;
    let got: Vec<String> = got.into_iter().map(|r| r.record_id).collect();
    ensure_eq!(got, expected_order(&s.records), "records over every page");
    ensure!(
        !first_token.is_empty(),
        "three records with page_size 1 need a next_page_token"
    );
    let bad_token = || Refusal::new(Code::InvalidArgument).reason("INVALID_PAGE_TOKEN");
    let table = vec![
        (
            "a tampered token",
            ReadPatientRecordRequest {
                page_token: crate::records::tamper(&first_token),
                ..base.clone()
            },
            bad_token(),
        ),
        (
            "a token with other filters",
            ReadPatientRecordRequest {
                page_token: first_token.clone(),
                resource_types: vec!["Observation".into()],
                ..base.clone()
            },
            bad_token(),
        ),
    ];
    refuse_each!(client(&ctx), read_patient_record, table).await
}

pub(super) async fn read_invalid(ctx: Ctx) -> TestResult {
    let pid = uuid::Uuid::new_v4().to_string();
    let invalid = |field| {
        Refusal::new(Code::InvalidArgument)
            .reason("INVALID_REQUEST")
            .under(field)
    };
    let cases = vec![
        (
            "purpose ETREAT",
            ReadPatientRecordRequest {
                purpose_of_use: "ETREAT".into(),
                ..read(&pid)
            },
            invalid("purpose_of_use"),
        ),
        (
            "an unknown resource type",
            ReadPatientRecordRequest {
                resource_types: vec!["CarePathway".into()],
                ..read(&pid)
            },
            invalid("resource_types[0]"),
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
            invalid("effective_period"),
        ),
    ];
    refuse_each!(client(&ctx), read_patient_record, cases).await
}

pub(super) async fn read_consent_denied(ctx: Ctx) -> TestResult {
    let s = seed(&ctx).await?;
    record_directive(
        &ctx,
        crate::consent::directive(
            &s.patient.patient_id,
            carerecord_contracts::consent::v1::ConsentDecision::Deny,
            vec![],
        ),
    )
    .await?;
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

pub(super) async fn disclosures(ctx: Ctx) -> TestResult {
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
    let listing = disclosure_log(&ctx, &pid).await?;
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

/// The first page of the patient's disclosure log, or a skip when the token may not list it.
pub(super) async fn disclosure_log(
    ctx: &Ctx,
    patient_id: &str,
) -> TestResult<ListDisclosuresResponse> {
    let request = ListDisclosuresRequest {
        patient: by_id(patient_id),
        ..Default::default()
    };
    match client(ctx).list_disclosures(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(st) if st.code() == Code::PermissionDenied => {
            has_reason(&st, "SCOPE_MISSING")?;
            Err(Fail::Skipped(
                "the token lacks user/AuditEvent.r or patient/AuditEvent.r (SCOPE_MISSING checked)"
                    .into(),
            ))
        }
        Err(st) => fail!("ListDisclosures: expected OK, got {}", describe(&st)),
    }
}
