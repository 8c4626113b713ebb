//! UpdateRecord and RetractRecord: the latest etag or version, the contributing organisation only,
//! idempotency by request_id, retracted records closed to change, and their refusals.

use carerecord_contracts::access::v1::{
    DisclosedRecord, RecordContent, RecordStatus, RetractRecordRequest, UpdateRecordRequest,
};
use tonic::Code;

use super::support::{
    Client, by_demographics, by_nhs, contribute, contributor, create_request, current_ids, invalid,
    observation, observation_by_nhs, other_org, read_record, refusal, refused_audited, register,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok, present};
use crate::refusal::{Refusal, altered, refuse_each};

/// An update of `record_id` guarded by `etag`, with a fresh request_id.
pub(super) fn update_request(
    record_id: &str,
    etag: &str,
    content: Option<RecordContent>,
) -> UpdateRecordRequest {
    UpdateRecordRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        record_id: record_id.to_owned(),
        etag: etag.to_owned(),
        purpose_of_use: "TREAT".into(),
        content,
        ..Default::default()
    }
}

/// An update of `record_id` guarded by the version number instead of the etag.
fn update_at_version(
    record_id: &str,
    expected_version: i64,
    content: Option<RecordContent>,
) -> UpdateRecordRequest {
    UpdateRecordRequest {
        expected_version,
        ..update_request(record_id, "", content)
    }
}

/// A retraction of `record_id` guarded by `etag`, with a fresh request_id.
pub(super) fn retract_request(record_id: &str, etag: &str) -> RetractRecordRequest {
    RetractRecordRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        record_id: record_id.to_owned(),
        etag: etag.to_owned(),
        reason: "carerecord conformance kit: entered against the wrong patient".into(),
        purpose_of_use: "TREAT".into(),
        ..Default::default()
    }
}

/// A patient registered for the test and the contributor's first record about them.
pub(super) async fn contributed(
    ctx: &Ctx,
    c: &Client,
) -> TestResult<(carerecord_contracts::identity::v1::Patient, DisclosedRecord)> {
    let patient = register(ctx).await?;
    let request = create_request(
        by_nhs(&patient.nhs_number),
        observation(observation_by_nhs(&patient.nhs_number)),
    );
    let (_, record) = contribute(ctx, c.clone(), request).await?;
    Ok((patient, record))
}

/// A version a change wrote, and the audit entry recording the change.
pub(super) struct Written {
    pub(super) record: DisclosedRecord,
    pub(super) entry_id: String,
    pub(super) index: i64,
}

impl Written {
    fn of(
        call: &str,
        record: Option<DisclosedRecord>,
        entry_id: String,
        index: i64,
    ) -> TestResult<Self> {
        let record = present(record, &format!("{call}: the response has no record"))?;
        Ok(Written {
            record,
            entry_id,
            index,
        })
    }
}

/// Updates with `c`, requiring success.
pub(super) async fn updated(
    c: &Client,
    request: UpdateRecordRequest,
    call: &str,
) -> TestResult<Written> {
    let r = ok(c.clone().update_record(request).await, call)?;
    Written::of(call, r.record, r.audit_entry_id, r.audit_index)
}

/// Retracts with `c`, requiring success.
pub(super) async fn retracted(
    c: &Client,
    request: RetractRecordRequest,
    call: &str,
) -> TestResult<Written> {
    let r = ok(c.clone().retract_record(request).await, call)?;
    Written::of(call, r.record, r.audit_entry_id, r.audit_index)
}

fn etag_mismatch() -> Refusal {
    refusal(Code::Aborted, "ETAG_MISMATCH")
}

pub(super) async fn update_guarded(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (patient, v1) = contributed(&ctx, &c).await?;
    let nhs = patient.nhs_number.as_str();
    let new_content = || observation(observation_by_nhs(nhs));
    let call = "UpdateRecord(the latest etag)";
    let v2 = updated(
        &c,
        update_request(&v1.record_id, &v1.etag, new_content()),
        call,
    )
    .await?
    .record;
    ensure_eq!(
        (v2.record_id.as_str(), v2.version, v2.status),
        (v1.record_id.as_str(), 2, RecordStatus::Current as i32),
        "UpdateRecord writes version 2 of the record"
    );
    ensure!(
        !v2.etag.is_empty() && v2.etag != v1.etag,
        "a new version has a new etag"
    );
    let call = "UpdateRecord(expected_version 2)";
    let v3 = updated(&c, update_at_version(&v1.record_id, 2, new_content()), call)
        .await?
        .record;
    ensure_eq!(v3.version, 3, "UpdateRecord by expected_version");
    let stale = vec![
        (
            "version 1's etag",
            update_request(&v1.record_id, &v1.etag, new_content()),
            etag_mismatch(),
        ),
        (
            "expected_version 2 of 3",
            update_at_version(&v1.record_id, 2, new_content()),
            etag_mismatch(),
        ),
    ];
    refuse_each!(c, update_record, stale).await?;
    let retraction = retract_request(&v1.record_id, &v2.etag);
    let result = c.clone().retract_record(retraction).await;
    refused_audited(result, &etag_mismatch(), "RetractRecord(version 2's etag)")?;
    let latest = read_record(&ctx, &v1.record_id, 0).await?;
    ensure_eq!(
        (latest.version, latest.etag),
        (3, v3.etag),
        "the stale changes wrote nothing"
    );
    Ok(())
}

pub(super) async fn update_idempotent(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (patient, v1) = contributed(&ctx, &c).await?;
    let nhs = patient.nhs_number.as_str();
    let update = update_request(
        &v1.record_id,
        &v1.etag,
        observation(observation_by_nhs(nhs)),
    );
    let first = updated(&c, update.clone(), "UpdateRecord").await?.record;
    let again = updated(&c, update.clone(), "UpdateRecord(retried)")
        .await?
        .record;
    ensure_eq!(
        (again.version, &again.etag, &again.payload),
        (first.version, &first.etag, &first.payload),
        "a retry returns the version the first call wrote, though its etag was no longer the latest"
    );
    let reused = UpdateRecordRequest {
        etag: first.etag.clone(),
        content: observation(observation_by_nhs(nhs)),
        ..update
    };
    let call = "UpdateRecord(request_id reused with other content)";
    let reuse = refusal(Code::FailedPrecondition, "REQUEST_ID_REUSED");
    refused_audited(c.clone().update_record(reused).await, &reuse, call)?;
    ensure_eq!(
        read_record(&ctx, &v1.record_id, 0).await?.version,
        2,
        "the retry and the reuse wrote nothing"
    );
    Ok(())
}

pub(super) async fn not_owned(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let other = other_org(&ctx)?;
    let (patient, v1) = contributed(&ctx, &c).await?;
    let content = observation(observation_by_nhs(&patient.nhs_number));
    let not_owned = || refusal(Code::PermissionDenied, "RECORD_NOT_OWNED");
    let update = update_request(&v1.record_id, &v1.etag, content);
    let result = other.clone().update_record(update).await;
    let call = "UpdateRecord(by another organisation)";
    refused_audited(result, &not_owned(), call)?;
    let retraction = retract_request(&v1.record_id, &v1.etag);
    let result = other.clone().retract_record(retraction).await;
    let call = "RetractRecord(by another organisation)";
    refused_audited(result, &not_owned(), call)?;
    let latest = read_record(&ctx, &v1.record_id, 0).await?;
    ensure_eq!(
        (latest.version, latest.status),
        (1, RecordStatus::Current as i32),
        "the record is unchanged"
    );
    Ok(())
}

pub(super) async fn retract(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let (patient, v1) = contributed(&ctx, &c).await?;
    let retraction = retract_request(&v1.record_id, &v1.etag);
    let v2 = retracted(&c, retraction.clone(), "RetractRecord")
        .await?
        .record;
    ensure_eq!(
        (
            v2.version,
            v2.status,
            v2.retraction_reason.as_str(),
            &v2.payload
        ),
        (
            2,
            RecordStatus::EnteredInError as i32,
            retraction.reason.as_str(),
            &v1.payload
        ),
        "RetractRecord writes version 2, ENTERED_IN_ERROR with the reason, content kept"
    );
    let again = retracted(&c, retraction, "RetractRecord(retried)")
        .await?
        .record;
    ensure_eq!(
        (again.version, again.etag),
        (2, v2.etag.clone()),
        "a retried retraction returns the version the first call wrote"
    );
    ensure!(
        !current_ids(&ctx, &patient.patient_id)
            .await?
            .contains(&v1.record_id),
        "a retracted record is not among the patient's current records"
    );
    let latest = read_record(&ctx, &v1.record_id, 0).await?;
    ensure_eq!(
        (latest.version, latest.status, latest.retraction_reason),
        (2, v2.status, v2.retraction_reason.clone()),
        "ReadRecord returns the retracted version"
    );
    let first = read_record(&ctx, &v1.record_id, 1).await?;
    ensure_eq!(
        (first.status, first.retraction_reason.as_str()),
        (RecordStatus::Current as i32, ""),
        "version 1 stays in force in the history"
    );
    let closed = || refusal(Code::FailedPrecondition, "RECORD_STATUS");
    let content = observation(observation_by_nhs(&patient.nhs_number));
    let update = update_request(&v1.record_id, &v2.etag, content);
    let call = "UpdateRecord(a retracted record)";
    refused_audited(c.clone().update_record(update).await, &closed(), call)?;
    let call = "RetractRecord(a retracted record, its latest etag)";
    let retraction = retract_request(&v1.record_id, &v2.etag);
    refused_audited(c.clone().retract_record(retraction).await, &closed(), call).map(drop)
}

pub(super) async fn change_invalid(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    // A record that does not exist: a row wrongly accepted fails without changing anything.
    let id = uuid::Uuid::new_v4().to_string();
    let nhs = crate::identity::nhs_number();
    let base = update_request(&id, "\"1\"", observation(observation_by_nhs(&nhs)));
    let update = |f: fn(&mut UpdateRecordRequest)| altered(&base, f);
    let one_of = || invalid_request().field_among(&["etag", "expected_version"]);
    let table = vec![
        (
            "neither etag nor expected_version",
            update(|r| r.etag.clear()),
            one_of(),
        ),
        (
            "both etag and expected_version",
            update(|r| r.expected_version = 1),
            one_of(),
        ),
        (
            "a negative expected_version",
            update(|r| {
                r.etag.clear();
                r.expected_version = -1;
            }),
            invalid("expected_version"),
        ),
        (
            "no request_id",
            update(|r| r.request_id.clear()),
            invalid("request_id"),
        ),
        (
            "a malformed record_id",
            update(|r| r.record_id = "not-a-uuid".into()),
            invalid("record_id"),
        ),
        (
            "no content",
            update(|r| r.content = None),
            invalid("content"),
        ),
        (
            "a patient named by demographics",
            update(|r| r.patient = by_demographics()),
            invalid("patient.demographics"),
        ),
        (
            "purpose HRESCH",
            update(|r| r.purpose_of_use = "HRESCH".into()),
            invalid("purpose_of_use"),
        ),
    ];
    refuse_each!(c, update_record, table).await?;
    let base = retract_request(&id, "\"1\"");
    let retraction = |f: fn(&mut RetractRecordRequest)| altered(&base, f);
    let table = vec![
        (
            "no reason",
            retraction(|r| r.reason.clear()),
            invalid("reason"),
        ),
        (
            "a reason of 1001 characters",
            retraction(|r| r.reason = "r".repeat(1001)),
            invalid("reason"),
        ),
        (
            "neither etag nor expected_version",
            retraction(|r| r.etag.clear()),
            one_of(),
        ),
        (
            "both etag and expected_version",
            retraction(|r| r.expected_version = 1),
            one_of(),
        ),
        (
            "a malformed record_id",
            retraction(|r| r.record_id = "not-a-uuid".into()),
            invalid("record_id"),
        ),
        (
            "no request_id",
            retraction(|r| r.request_id.clear()),
            invalid("request_id"),
        ),
    ];
    refuse_each!(c, retract_record, table).await
}

fn invalid_request() -> Refusal {
    refusal(Code::InvalidArgument, "INVALID_REQUEST")
}

pub(super) async fn change_unknown(ctx: Ctx) -> TestResult {
    let c = contributor(&ctx)?;
    let id = uuid::Uuid::new_v4().to_string();
    let nhs = crate::identity::nhs_number();
    let unknown = || refusal(Code::NotFound, "RECORD_NOT_FOUND").resource("Record", &id);
    let update = update_at_version(&id, 1, observation(observation_by_nhs(&nhs)));
    let call = "UpdateRecord(an unknown record)";
    refused_audited(c.clone().update_record(update).await, &unknown(), call)?;
    let retraction = RetractRecordRequest {
        etag: String::new(),
        expected_version: 1,
        ..retract_request(&id, "")
    };
    let call = "RetractRecord(an unknown record)";
    refused_audited(c.clone().retract_record(retraction).await, &unknown(), call).map(drop)
}
