//! CreatePatient, BatchCreatePatients and GetPatient.

use carerecord_contracts::identity::v1::batch_create_patients_result::Outcome;
use carerecord_contracts::identity::v1::{
    BatchCreatePatientsRequest, GetPatientRequest, Patient, PatientState,
};
use tonic::Code;

use super::support::{
    bad_check_digit, client, create, create_request, ensure_unheld, get, has_reason, held_by,
    local_id, new_patient, nhs_number, regender, requester, unknown,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ensure_new_id, err, fail, ok};
use crate::refusal::{Refusal, refuse_each};

pub(super) async fn create_basics(ctx: Ctx) -> TestResult {
    let mut input = new_patient();
    let nhs = input.nhs_number.clone();
    input.nhs_number = format!("{}-{}-{}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    let id = input.identifiers[0].clone();
    input.identifiers[0].value = format!("  {}  ", id.value);
    input.addresses[0].postal_code = "ls14ap".into();
    let created = create(&ctx, input.clone()).await?;
    ensure_new_id("patient_id", &created.patient_id)?;
    ensure_eq!(created.version, 1, "version");
    ensure_eq!(created.state, PatientState::Active as i32, "state");
    ensure!(!created.etag.is_empty(), "etag must be set");
    ensure_eq!(
        created.update_time,
        created.create_time,
        "update_time of version 1"
    );
    ensure!(created.create_time.is_some(), "create_time must be set");
    ensure_eq!(created.nhs_number, nhs, "NHS number stored as ten digits");
    ensure_eq!(created.identifiers, vec![id], "identifier value trimmed");
    ensure_eq!(
        created.addresses.first().map(|a| a.postal_code.clone()),
        Some("LS1 4AP".to_owned()),
        "postcode normalised"
    );
    ensure_eq!(created.names, input.names, "names kept as given");
    ensure_eq!(created.birth_date, input.birth_date, "birth_date");
    ensure!(
        created.merged_into_patient_id.is_empty() && created.merged_from_patient_ids.is_empty(),
        "a new patient has no merges"
    );
    ensure_eq!(
        get(&ctx, &created.patient_id.to_uppercase()).await?,
        created,
        "GetPatient by an upper-case id"
    );
    Ok(())
}

pub(super) async fn create_idempotent(ctx: Ctx) -> TestResult {
    let request = create_request(new_patient());
    let first = ok(
        client(&ctx).create_patient(request.clone()).await,
        "CreatePatient",
    )?
    .patient;
    let Some(first) = first else {
        fail!("CreatePatient: no patient")
    };
    ctx.created("patient", &first.patient_id);
    // Changed since: the retry still returns the patient as created.
    regender(&ctx, &first, 1).await?;
    let again = ok(
        client(&ctx).create_patient(request.clone()).await,
        "CreatePatient(retry)",
    )?
    .patient;
    ensure_eq!(
        again,
        Some(first.clone()),
        "a retry returns the first result as created"
    );
    let mut other = request.clone();
    if let Some(p) = other.patient.as_mut() {
        p.nhs_number = nhs_number();
        p.identifiers = vec![local_id()];
    }
    let status = err(
        client(&ctx).create_patient(other).await,
        Code::FailedPrecondition,
        "CreatePatient(same request_id, another body)",
    )?;
    let info = has_reason(&status, "REQUEST_ID_REUSED")?;
    ensure_eq!(
        info.metadata.get("patient_id").cloned(),
        Some(first.patient_id),
        "ErrorInfo metadata patient_id"
    );
    Ok(())
}

pub(super) async fn create_conflicts(ctx: Ctx) -> TestResult {
    let holder = create(&ctx, new_patient()).await?;
    let same_nhs = Patient {
        nhs_number: holder.nhs_number.clone(),
        ..new_patient()
    };
    let same_id = Patient {
        identifiers: holder.identifiers.clone(),
        ..new_patient()
    };
    let table = vec![
        (
            "NHS number held by another",
            create_request(same_nhs),
            held_by(&holder),
        ),
        (
            "identifier held by another",
            create_request(same_id),
            held_by(&holder),
        ),
    ];
    refuse_each!(client(&ctx), create_patient, table).await?;
    // Case-sensitive values: an identifier differing only in case is another identifier.
    let mut lower = holder.identifiers[0].clone();
    lower.value = lower.value.to_lowercase();
    create(
        &ctx,
        Patient {
            identifiers: vec![lower],
            ..new_patient()
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn batch_create(ctx: Ctx) -> TestResult {
    let good = create_request(new_patient());
    let bad = create_request(Patient {
        nhs_number: bad_check_digit(),
        ..new_patient()
    });
    let dup_nhs = good
        .patient
        .as_ref()
        .map(|p| p.nhs_number.clone())
        .unwrap_or_default();
    let dup = create_request(Patient {
        nhs_number: dup_nhs,
        ..new_patient()
    });
    let mut items = vec![good, bad, dup];
    for item in &mut items {
        item.requester = None;
    }
    let request = BatchCreatePatientsRequest {
        requests: items,
        requester: Some(requester()),
    };
    let response = ok(
        client(&ctx).batch_create_patients(request.clone()).await,
        "BatchCreatePatients",
    )?;
    ensure_eq!(
        (response.succeeded_count, response.failed_count),
        (1, 2),
        "(succeeded_count, failed_count)"
    );
    ensure_eq!(
        response
            .results
            .iter()
            .map(|r| r.position)
            .collect::<Vec<_>>(),
        vec![0, 1, 2],
        "positions"
    );
    let Some(Outcome::Patient(first)) = response.results[0].outcome.clone() else {
        fail!("item 0 must succeed, got {:?}", response.results[0].outcome)
    };
    ctx.created("patient", &first.patient_id);
    match &response.results[1].outcome {
        Some(Outcome::Error(e)) => {
            ensure_eq!(e.code, Code::InvalidArgument as i32, "item 1's error code");
            ensure!(
                e.field_violations
                    .iter()
                    .any(|v| v.field == "patient.nhs_number"),
                "item 1 must name `patient.nhs_number`, got {:?}",
                e.field_violations
            );
        }
        other => fail!("item 1 must fail, got {other:?}"),
    }
    match &response.results[2].outcome {
        Some(Outcome::Error(e)) => {
            ensure_eq!(e.code, Code::AlreadyExists as i32, "item 2's error code");
            ensure_eq!(
                e.conflicting_patient_ids,
                vec![first.patient_id.clone()],
                "item 2's conflicting_patient_ids"
            );
        }
        other => fail!("item 2 must fail, got {other:?}"),
    }
    let again = ok(
        client(&ctx).batch_create_patients(request).await,
        "BatchCreatePatients(retry)",
    )?;
    match &again.results[0].outcome {
        Some(Outcome::Patient(p)) => ensure_eq!(
            p.patient_id,
            first.patient_id,
            "a retried item returns its first result"
        ),
        other => fail!("a retried item must succeed, got {other:?}"),
    }
    Ok(())
}

pub(super) async fn batch_invalid(ctx: Ctx) -> TestResult {
    let item = create_request(new_patient());
    let nhs = item
        .patient
        .as_ref()
        .map(|p| p.nhs_number.clone())
        .unwrap_or_default();
    let mut second = create_request(new_patient());
    second.request_id = item.request_id.clone();
    let batch = |requests, requester| BatchCreatePatientsRequest {
        requests,
        requester,
    };
    let too_many = (0..1001).map(|_| create_request(new_patient())).collect();
    let table = vec![
        (
            "no items",
            batch(vec![], Some(requester())),
            Refusal::invalid_under("requests"),
        ),
        (
            "1001 items",
            batch(too_many, Some(requester())),
            Refusal::invalid_under("requests"),
        ),
        (
            "no requester",
            batch(vec![item.clone()], None),
            Refusal::invalid_under("requester"),
        ),
        (
            "a repeated request_id",
            batch(vec![item, second], Some(requester())),
            Refusal::invalid_under("requests"),
        ),
    ];
    refuse_each!(client(&ctx), batch_create_patients, table).await?;
    ensure_unheld(&ctx, &nhs, "a refused batch wrote a patient").await
}

pub(super) async fn get_patient(ctx: Ctx) -> TestResult {
    let created = create(&ctx, new_patient()).await?;
    ensure_eq!(get(&ctx, &created.patient_id).await?, created, "GetPatient");
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let get = |patient_id: &str| GetPatientRequest {
        patient_id: patient_id.to_owned(),
    };
    let mut table = vec![("unknown".to_owned(), get(&unknown_id), unknown(&unknown_id))];
    for bad in ["", "not-a-uuid"] {
        table.push((format!("{bad:?}"), get(bad), Refusal::invalid("patient_id")));
    }
    refuse_each!(client(&ctx), get_patient, table).await
}
