//! ExtractPseudonymised and AggregateExtract.

use std::time::Duration;

use carerecord_contracts::access::v1::cohort::Selection;
use carerecord_contracts::access::v1::{
    AggregateDimension, AggregateExtractRequest, Cohort, CohortFilter, ExtractPseudonymisedRequest,
    ExtractPseudonymisedResponse, PatientIdList,
};
use tonic::{Code, Status};

use super::support::{client, has_reason, seed};
use crate::harness::{Ctx, Fail, TestResult, describe, ensure, ensure_eq, err, fail, has_resource};

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

/// Reads a server stream to its end, requiring it to end OK.
async fn drained_ok<T>(
    result: Result<tonic::Response<tonic::Streaming<T>>, Status>,
    call: &str,
) -> TestResult<Vec<T>> {
    match drain(result).await? {
        (messages, Ok(())) => Ok(messages),
        (_, Err(st)) => fail!(
            "{call}: expected the stream to end OK, got {}",
            describe(&st)
        ),
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

pub(super) async fn extract_invalid(ctx: Ctx) -> TestResult {
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

pub(super) async fn extract_unknown_project(ctx: Ctx) -> TestResult {
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

pub(super) async fn extract_shape(ctx: Ctx) -> TestResult {
    let project = project(&ctx)?;
    let s = seed(&ctx).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let request = extract(
        &project,
        "HRESCH",
        cohort(vec![s.patient.patient_id.clone(), unknown]),
    );
    let messages = drained_ok(
        client(&ctx).extract_pseudonymised(request).await,
        "ExtractPseudonymised",
    )
    .await?;
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

pub(super) async fn aggregate_shape(ctx: Ctx) -> TestResult {
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
    let messages = drained_ok(
        client(&ctx).aggregate_extract(request).await,
        "AggregateExtract",
    )
    .await?;
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
