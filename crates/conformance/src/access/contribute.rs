//! CreateRecord: a patient named by NHS number in the payload alone, provenance from the token,
//! idempotency by request_id, and the refusals that write nothing.

use carerecord_contracts::access::v1::{
    CreateRecordRequest, ImportOutcome, PatientReference, RecordContent, RecordStatus,
};
use carerecord_contracts::consent::v1::ConsentDecision;
use serde_json::Value;
use tonic::Code;

use super::import::{first_message, import_ok, item};
use super::support::{
    by_demographics, by_id, by_nhs, claims, content, contribute, contributor, create_request,
    current_ids, current_records, ensure_audit_named, ensure_reference_inserted, invalid,
    naming_by_nhs, observation, observation_by_nhs, observation_of, read_record, record_directive,
    record_hosting, record_versions, refusal, refused_audited, register, versions_request,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, fail, present};
use crate::refusal::{altered, refuse_each};

pub(super) async fn create_by_nhs(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let submitted = observation_by_nhs(&patient.nhs_number);
    let request = create_request(None, observation(submitted.clone()));
    let (response, record) = contribute(&ctx, c, request).await?;
    ensure_eq!(response.patient_id, patient.patient_id, "patient_id");
    ensure_eq!(
        (record.version, record.status, record.resource_type.as_str()),
        (1, RecordStatus::Current as i32, "Observation"),
        "version, status and resource_type"
    );
    ensure!(
        !record.etag.is_empty(),
        "the record as stored carries an etag"
    );
    ensure_audit_named(
        "CreateRecord",
        &response.audit_entry_id,
        response.audit_index,
    )?;
    ensure_reference_inserted(&submitted, &record.payload, &patient.patient_id)?;
    let read = read_record(&ctx, &record.record_id, 0).await?;
    ensure_eq!(
        read.payload,
        record.payload,
        "ReadRecord returns the payload as CreateRecord stored it"
    );
    Ok(())
}

pub(super) async fn provenance_from_token(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let author = format!(
        "https://fhir.nhs.uk/Id/sds-user-id|kit-author-{}",
        uuid::Uuid::new_v4().simple()
    );
    let mut request = create_request(
        by_nhs(&patient.nhs_number),
        observation(observation_of(&patient.patient_id)),
    );
    if let Some(content) = request.content.as_mut() {
        content.author = author.clone();
    }
    let (_, record) = contribute(&ctx, c, request).await?;
    let provenance = present(record.provenance.clone(), "CreateRecord: no provenance")?;
    let agent = present(
        provenance.agent.clone(),
        "CreateRecord: no provenance.agent",
    )?;
    ensure!(
        !record.source_organisation_ods_code.is_empty(),
        "source_organisation_ods_code must be the token's organisation"
    );
    ensure_eq!(
        agent.organisation_ods_code,
        record.source_organisation_ods_code,
        "provenance.agent.organisation_ods_code (the record's authoring organisation)"
    );
    ensure!(
        !provenance.source_system.is_empty() && provenance.recorded_time.is_some(),
        "provenance.source_system and recorded_time must be set"
    );
    ensure!(
        agent.user_id != author && provenance.source_system != author,
        "provenance comes from the token, never from content.author"
    );
    let token = ctx.options.contributor_token.as_deref().unwrap_or_default();
    let claimed = claims(token).unwrap_or_default();
    for (claim, got, field) in [
        (
            "organisation_ods_code",
            &record.source_organisation_ods_code,
            "source_organisation_ods_code",
        ),
        (
            "client_id",
            &provenance.source_system,
            "provenance.source_system",
        ),
        ("sub", &agent.user_id, "provenance.agent.user_id"),
    ] {
        if let Some(Value::String(value)) = claimed.get(claim) {
            ensure_eq!(got, value, "{field} is the token's `{claim}` claim");
        }
    }
    // Another requester reads the record back with the contributor's provenance, however read.
    let read = read_record(&ctx, &record.record_id, 0).await?;
    let listed = current_records(&ctx, &patient.patient_id).await?;
    let Some(listed) = listed.into_iter().find(|r| r.record_id == record.record_id) else {
        fail!("ReadPatientRecord: the contributed record is not among the patient's records")
    };
    let request = versions_request(&record.record_id);
    let history = record_versions(&ctx, request, "ListRecordVersions").await?;
    let Some(version) = history.versions.into_iter().next() else {
        fail!("ListRecordVersions: no version of a record just written")
    };
    for (call, got) in [
        ("ReadRecord", read),
        ("ReadPatientRecord", listed),
        ("ListRecordVersions", version),
    ] {
        let got_provenance = got.provenance.unwrap_or_default();
        ensure_eq!(
            (
                got.source_organisation_ods_code.as_str(),
                got_provenance.source_system.as_str(),
                got_provenance.agent.as_ref()
            ),
            (
                record.source_organisation_ods_code.as_str(),
                provenance.source_system.as_str(),
                Some(&agent)
            ),
            "{call}: source_organisation_ods_code, provenance.source_system and provenance.agent"
        );
    }
    Ok(())
}

pub(super) async fn create_idempotent(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let request = create_request(None, observation(observation_by_nhs(&patient.nhs_number)));
    let (_, first) = contribute(&ctx, c.clone(), request.clone()).await?;
    let (_, again) = contribute(&ctx, c.clone(), request.clone()).await?;
    ensure_eq!(
        (&again.record_id, again.version, &again.payload),
        (&first.record_id, first.version, &first.payload),
        "a retry with the same request_id and content returns the first result"
    );
    let reused = CreateRecordRequest {
        content: observation(observation_by_nhs(&patient.nhs_number)),
        ..request
    };
    let reuse = refusal(Code::FailedPrecondition, "REQUEST_ID_REUSED");
    let call = "CreateRecord(request_id reused with other content)";
    refused_audited(c.clone().create_record(reused).await, &reuse, call)?;
    ensure_eq!(
        current_ids(&ctx, &patient.patient_id).await?,
        vec![first.record_id.clone()],
        "one record written, whatever was retried or reused"
    );
    let request = versions_request(&first.record_id);
    let history = record_versions(&ctx, request, "ListRecordVersions").await?;
    ensure_eq!(
        history.versions.len(),
        1,
        "versions of a record created once and retried"
    );
    Ok(())
}

pub(super) async fn create_invalid(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    // Every row names an unregistered patient: a row wrongly accepted fails without writing.
    let pid = uuid::Uuid::new_v4().to_string();
    let base = create_request(by_id(&pid), observation(observation_of(&pid)));
    let with = |f: fn(&mut CreateRecordRequest)| altered(&base, f);
    let with_content = |f: fn(&mut RecordContent)| {
        altered(&base, |r| {
            if let Some(content) = r.content.as_mut() {
                f(content);
            }
        })
    };
    let table = vec![
        (
            "no request_id",
            with(|r| r.request_id.clear()),
            invalid("request_id"),
        ),
        (
            "a malformed request_id",
            with(|r| r.request_id = "not-a-uuid".into()),
            invalid("request_id"),
        ),
        ("no content", with(|r| r.content = None), invalid("content")),
        (
            "a patient named by demographics",
            with(|r| r.patient = by_demographics()),
            invalid("patient.demographics"),
        ),
        (
            "resource type Patient",
            with_content(|c| c.resource_type = "Patient".into()),
            invalid("content.resource_type"),
        ),
        (
            "an empty payload",
            with_content(|c| c.payload.clear()),
            invalid("content.payload"),
        ),
        (
            "no purpose",
            with(|r| r.purpose_of_use.clear()),
            invalid("purpose_of_use"),
        ),
        (
            "purpose HRESCH",
            with(|r| r.purpose_of_use = "HRESCH".into()),
            invalid("purpose_of_use"),
        ),
        (
            "no patient, and a payload referencing one by id",
            with(|r| r.patient = None),
            invalid("patient"),
        ),
    ];
    refuse_each!(c, create_record, table).await
}

pub(super) async fn payload_names_another(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (a, b) = (register(&ctx).await?, register(&ctx).await?);
    let request = create_request(
        by_nhs(&a.nhs_number),
        observation(observation_by_nhs(&b.nhs_number)),
    );
    let names_b = invalid("content.payload");
    let call = "CreateRecord(patient A, payload naming B)";
    refused_audited(c.clone().create_record(request).await, &names_b, call)?;
    for (who, patient) in [("A", &a), ("B", &b)] {
        ensure!(
            current_ids(&ctx, &patient.patient_id).await?.is_empty(),
            "a refused contribution writes nothing, but patient {who} now has records"
        );
    }
    // An update must still name the record's patient.
    let request = create_request(None, observation(observation_by_nhs(&a.nhs_number)));
    let (_, record) = contribute(&ctx, c.clone(), request).await?;
    let update = super::change::update_request(
        &record.record_id,
        &record.etag,
        observation(observation_by_nhs(&b.nhs_number)),
    );
    let call = "UpdateRecord(A's record, payload naming B)";
    refused_audited(c.clone().update_record(update).await, &names_b, call)?;
    ensure_eq!(
        read_record(&ctx, &record.record_id, 0).await?.version,
        1,
        "the refused update wrote nothing"
    );
    Ok(())
}

pub(super) async fn scope_missing(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let patient = register(&ctx).await?;
    let condition = naming_by_nhs("Condition", &patient.nhs_number);
    let reference: Option<PatientReference> = by_nhs(&patient.nhs_number);
    let request = create_request(reference, content("Condition", condition));
    let call = "CreateRecord(a Condition, which the token cannot create)";
    let missing = refusal(Code::PermissionDenied, "SCOPE_MISSING");
    let metadata = refused_audited(c.clone().create_record(request).await, &missing, call)?;
    ensure!(
        metadata
            .get("required_scope")
            .is_some_and(|s| creates(s, "Condition")),
        "ErrorInfo metadata required_scope must name a scope that creates Conditions, got {metadata:?}"
    );
    ensure!(
        current_ids(&ctx, &patient.patient_id).await?.is_empty(),
        "a refused contribution writes nothing"
    );
    Ok(())
}

pub(super) async fn patient_dissent(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let records = record_hosting(&ctx).await?;
    let patient = register(&ctx).await?;
    let (pid, nhs) = (patient.patient_id.as_str(), patient.nhs_number.as_str());
    record_directive(
        &ctx,
        crate::consent::directive(pid, ConsentDecision::Deny, vec![]),
    )
    .await?;
    let request = create_request(None, observation(observation_by_nhs(nhs)));
    let call = "CreateRecord(for a patient who refuses all sharing)";
    let denied = refusal(Code::PermissionDenied, "CONSENT_DENIED");
    refused_audited(c.clone().create_record(request).await, &denied, call)?;
    let items = vec![item(None, observation_by_nhs(nhs))];
    let answers = import_ok(&ctx, &c, vec![first_message(items)]).await?;
    let results: Vec<(i32, &str)> = answers
        .iter()
        .flat_map(|a| &a.results)
        .map(|r| (r.outcome, r.reason.as_str()))
        .collect();
    ensure_eq!(
        results,
        vec![(ImportOutcome::Rejected as i32, "CONSENT_DENIED")],
        "ImportRecords: the item for a patient who refuses all sharing (outcome, reason)"
    );
    crate::records::ensure_nothing_written(&records, pid).await
}

/// Whether a SMART scope (`<context>/<type>.<permissions>`, v1 suffixes too) lets its holder
/// create `resource_type`.
fn creates(scope: &str, resource_type: &str) -> bool {
    let Some((context_type, permissions)) = scope.rsplit_once('.') else {
        return false;
    };
    let Some((_, scoped_type)) = context_type.split_once('/') else {
        return false;
    };
    (scoped_type == resource_type || scoped_type == "*")
        && (permissions.contains('c') || permissions == "write" || permissions == "*")
}
