//! Registration, reads, updates, history, resolution, merges and the change feed.

use std::time::Duration;

use carerecord_contracts::common::v1::{ChangeType, ContactPoint, Date, HumanName, Identifier};
use carerecord_contracts::identity::v1::batch_create_patients_result::Outcome;
use carerecord_contracts::identity::v1::{
    BatchCreatePatientsRequest, CreatePatientRequest, GetPatientRequest,
    ListPatientVersionsRequest, MergePatientsRequest, Patient, PatientState,
    ResolveIdentifierRequest, ResolveIdentifierResponse, UnmergePatientRequest,
    UpdatePatientRequest, WatchPatientChangesRequest, WatchPatientChangesResponse,
};
use prost_types::FieldMask;
use tonic::Code;

use super::has_reason;
use super::{
    LOCAL_SYSTEM, NHS_SYSTEM, RESOURCE_TYPE, bad_check_digit, client, create, create_request,
    local_id, new_patient, nhs_number, requester,
};
use crate::harness::{
    Case, Ctx, TestResult, describe, ensure, ensure_eq, err, fail, has_precondition, has_resource,
    has_violation, has_violation_under, ok,
};

pub(super) fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case::new(
            "ID-CREATE-001",
            "CreatePatient returns version 1, ACTIVE, a lower-case patient_id, an etag, and normalised NHS number, identifiers and postcode",
            create_basics,
        ),
        Case::new(
            "ID-CREATE-002",
            "A create retried with the same request_id and body returns the first result; another body -> FAILED_PRECONDITION REQUEST_ID_REUSED with metadata patient_id",
            create_idempotent,
        ),
        Case::new(
            "ID-CREATE-003",
            "An NHS number or identifier held by another patient -> ALREADY_EXISTS with ResourceInfo naming the holder",
            create_conflicts,
        ),
        Case::new(
            "ID-BATCH-001",
            "BatchCreatePatients: one result per item in order, bad items fail alone, a duplicate within the batch names the earlier item's patient; retry safe",
            batch_create,
        ),
        Case::new(
            "ID-BATCH-002",
            "BatchCreatePatients with no items, over 1000 items, no requester or a repeated request_id -> INVALID_ARGUMENT, nothing written",
            batch_invalid,
        ),
        Case::new(
            "ID-GET-001",
            "GetPatient returns the current version; unknown id -> NOT_FOUND with ResourceInfo; malformed id -> INVALID_ARGUMENT",
            get_patient,
        ),
        Case::new(
            "ID-UPD-001",
            "UpdatePatient replaces masked fields in a new version; an update changing nothing writes nothing",
            update_basics,
        ),
        Case::new(
            "ID-UPD-002",
            "UpdatePatient with a stale etag -> ABORTED ETAG_MISMATCH with metadata current_version",
            update_stale,
        ),
        Case::new(
            "ID-UPD-003",
            "UpdatePatient update_mask missing, empty, unknown, output-only or a sub-path -> INVALID_ARGUMENT `update_mask`; unknown patient -> NOT_FOUND",
            update_invalid,
        ),
        Case::new(
            "ID-UPD-004",
            "UpdatePatient to an NHS number held by another patient -> ALREADY_EXISTS naming the holder",
            update_conflict,
        ),
        Case::new(
            "ID-VER-001",
            "ListPatientVersions lists every version oldest first with change type, changed fields, requester and reason, in pages",
            versions,
        ),
        Case::new(
            "ID-VER-002",
            "ListPatientVersions: token of another patient or forged -> INVALID_ARGUMENT; unknown patient -> NOT_FOUND",
            versions_invalid,
        ),
        Case::new(
            "ID-RES-001",
            "ResolveIdentifier finds the holder of an NHS number (spaces and dashes accepted) and of a local identifier (trimmed, case-sensitive)",
            resolve_case,
        ),
        Case::new(
            "ID-RES-002",
            "ResolveIdentifier of an unknown identifier -> NOT_FOUND with ResourceInfo(carerecord.common.v1.Identifier, system|value); invalid -> INVALID_ARGUMENT",
            resolve_errors,
        ),
        Case::new(
            "ID-MERGE-001",
            "MergePatients freezes the source as MERGED into the target, appends it to merged_from, and identifiers resolve through the merge",
            merge,
        ),
        Case::new(
            "ID-MERGE-002",
            "Merge chains resolve to the last survivor, listing the merged patients passed through",
            merge_chain,
        ),
        Case::new(
            "ID-MERGE-003",
            "Merge errors: same patient, already merged (PATIENT_MERGED), unknown patient, stale etag, reused request_id; a retry returns the first result",
            merge_errors,
        ),
        Case::new(
            "ID-MERGE-004",
            "UpdatePatient of a merged patient -> FAILED_PRECONDITION PATIENT_MERGED",
            update_merged,
        ),
        Case::new(
            "ID-UNMERGE-001",
            "UnmergePatient restores the duplicate exactly and removes it from the survivor's merged_from",
            unmerge,
        ),
        Case::new(
            "ID-UNMERGE-002",
            "UnmergePatient of an active patient -> FAILED_PRECONDITION PATIENT_NOT_MERGED; stale etag -> ABORTED; bad reason -> INVALID_ARGUMENT",
            unmerge_errors,
        ),
        Case::new(
            "ID-WATCH-001",
            "WatchPatientChanges replays events after a cursor in commit order: creates, updates and merges (source first, then target)",
            watch,
        ),
        Case::new(
            "ID-WATCH-002",
            "WatchPatientChanges with a malformed or foreign cursor -> INVALID_ARGUMENT",
            watch_invalid,
        ),
    ];
    cases.extend(validation_cases());
    cases
}

type Mutate = fn(&mut CreatePatientRequest);

fn p(r: &mut CreatePatientRequest) -> &mut Patient {
    r.patient.get_or_insert_with(Default::default)
}

const RULES: &[(&str, &str, Mutate, &str, bool)] = &[
    (
        "ID-VAL-001",
        "request_id missing",
        |r| r.request_id.clear(),
        "request_id",
        true,
    ),
    (
        "ID-VAL-002",
        "request_id not a UUID",
        |r| r.request_id = "1".into(),
        "request_id",
        true,
    ),
    (
        "ID-VAL-003",
        "requester missing",
        |r| r.requester = None,
        "requester",
        false,
    ),
    (
        "ID-VAL-004",
        "requester without user_id",
        |r| {
            if let Some(q) = r.requester.as_mut() {
                q.user_id.clear()
            }
        },
        "requester",
        false,
    ),
    (
        "ID-VAL-005",
        "an NHS number failing the modulus-11 check",
        |r| p(r).nhs_number = bad_check_digit(),
        "patient.nhs_number",
        true,
    ),
    (
        "ID-VAL-006",
        "an NHS number of nine digits",
        |r| p(r).nhs_number = "999123456".into(),
        "patient.nhs_number",
        true,
    ),
    (
        "ID-VAL-007",
        "an NHS number with a letter",
        |r| p(r).nhs_number = "99912345A7".into(),
        "patient.nhs_number",
        true,
    ),
    (
        "ID-VAL-008",
        "no name",
        |r| p(r).names.clear(),
        "patient.names",
        false,
    ),
    (
        "ID-VAL-009",
        "no name with a family name",
        |r| {
            p(r).names = vec![HumanName {
                given: vec!["Only".into()],
                ..Default::default()
            }]
        },
        "patient.names",
        false,
    ),
    (
        "ID-VAL-010",
        "an identifier of the NHS number system",
        |r| {
            p(r).identifiers = vec![Identifier {
                system: NHS_SYSTEM.into(),
                value: nhs_number(),
            }]
        },
        "patient.identifiers[0].system",
        true,
    ),
    (
        "ID-VAL-011",
        "an identifier system that is not an absolute URI",
        |r| {
            p(r).identifiers = vec![Identifier {
                system: "mrn".into(),
                value: "1".into(),
            }]
        },
        "patient.identifiers[0].system",
        true,
    ),
    (
        "ID-VAL-012",
        "an identifier value that is only white space",
        |r| {
            p(r).identifiers = vec![Identifier {
                system: LOCAL_SYSTEM.into(),
                value: "  ".into(),
            }]
        },
        "patient.identifiers[0].value",
        true,
    ),
    (
        "ID-VAL-013",
        "the same identifier twice",
        |r| {
            let id = local_id();
            p(r).identifiers = vec![id.clone(), id];
        },
        "patient.identifiers",
        false,
    ),
    (
        "ID-VAL-014",
        "a partial birth date",
        |r| {
            p(r).birth_date = Some(Date {
                year: 1984,
                month: 3,
                day: 0,
            })
        },
        "patient.birth_date",
        false,
    ),
    (
        "ID-VAL-015",
        "a birth date that is not a calendar date (30 February)",
        |r| {
            p(r).birth_date = Some(Date {
                year: 1984,
                month: 2,
                day: 30,
            })
        },
        "patient.birth_date",
        false,
    ),
    (
        "ID-VAL-016",
        "a birth date in the future",
        |r| {
            p(r).birth_date = Some(Date {
                year: 9999,
                month: 1,
                day: 1,
            })
        },
        "patient.birth_date",
        false,
    ),
    (
        "ID-VAL-017",
        "a death date before the birth date",
        |r| {
            p(r).deceased_date = Some(Date {
                year: 1980,
                month: 1,
                day: 1,
            })
        },
        "patient.deceased_date",
        false,
    ),
    (
        "ID-VAL-018",
        "a telecom without a value",
        |r| p(r).telecoms = vec![ContactPoint::default()],
        "patient.telecoms[0]",
        false,
    ),
    (
        "ID-VAL-019",
        "more than 50 identifiers",
        |r| p(r).identifiers = (0..51).map(|_| local_id()).collect(),
        "patient.identifiers",
        false,
    ),
    (
        "ID-VAL-020",
        "a string over 256 characters",
        |r| {
            if let Some(n) = p(r).names.first_mut() {
                n.family = "F".repeat(257)
            }
        },
        "patient.names[0].family",
        true,
    ),
    (
        "ID-VAL-021",
        "more than 20 names",
        |r| {
            let n = p(r).names[0].clone();
            p(r).names = vec![n; 21];
        },
        "patient.names",
        false,
    ),
];

fn validation_cases() -> Vec<Case> {
    RULES
        .iter()
        .map(|&(id, what, mutate, field, exact)| {
            Case::new(id, format!("CreatePatient refuses {what}: INVALID_ARGUMENT naming `{field}`, nothing written"), move |ctx| async move {
                let mut request = create_request(new_patient());
                mutate(&mut request);
                let nhs = request.patient.as_ref().map(|p| p.nhs_number.clone()).unwrap_or_default();
                let status = err(client(&ctx).create_patient(request).await, Code::InvalidArgument, &format!("CreatePatient({what})"))?;
                if exact { has_violation(&status, field).map(|_| ()) } else { has_violation_under(&status, field) }?;
                if nhs.len() == 10 && nhs.bytes().all(|b| b.is_ascii_digit()) && super::check_digit(&nhs.bytes().take(9).map(|b| b - b'0').collect::<Vec<_>>()) == Some(nhs.as_bytes()[9] - b'0') {
                    let r = client(&ctx).resolve_identifier(ResolveIdentifierRequest { identifier: Some(Identifier { system: NHS_SYSTEM.into(), value: nhs.clone() }) }).await;
                    ensure!(r.as_ref().err().map(|s| s.code()) == Some(Code::NotFound), "a refused create wrote a patient holding NHS number {nhs}");
                }
                Ok(())
            })
        })
        .collect()
}

async fn get(ctx: &Ctx, id: &str) -> TestResult<Patient> {
    match ok(
        client(ctx)
            .get_patient(GetPatientRequest {
                patient_id: id.into(),
            })
            .await,
        "GetPatient",
    )?
    .patient
    {
        Some(p) => Ok(p),
        None => fail!("GetPatient: no patient"),
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn update_request(patient: Patient, etag: &str, paths: &[&str]) -> UpdatePatientRequest {
    UpdatePatientRequest {
        patient: Some(patient),
        update_mask: mask(paths),
        etag: etag.into(),
        requester: Some(requester()),
        reason: "conformance kit".into(),
    }
}

async fn update(ctx: &Ctx, patient: Patient, etag: &str, paths: &[&str]) -> TestResult<Patient> {
    match ok(
        client(ctx)
            .update_patient(update_request(patient, etag, paths))
            .await,
        "UpdatePatient",
    )?
    .patient
    {
        Some(p) => Ok(p),
        None => fail!("UpdatePatient: no patient"),
    }
}

async fn resolve(ctx: &Ctx, system: &str, value: &str) -> TestResult<ResolveIdentifierResponse> {
    ok(
        client(ctx)
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: system.into(),
                    value: value.into(),
                }),
            })
            .await,
        "ResolveIdentifier",
    )
}

fn spaced(nhs: &str) -> String {
    format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..])
}

async fn create_basics(ctx: Ctx) -> TestResult {
    let mut input = new_patient();
    let nhs = input.nhs_number.clone();
    input.nhs_number = format!("{}-{}-{}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    let id = input.identifiers[0].clone();
    input.identifiers[0].value = format!("  {}  ", id.value);
    input.addresses[0].postal_code = "ls14ap".into();
    let created = create(&ctx, input.clone()).await?;
    ensure!(
        uuid::Uuid::parse_str(&created.patient_id).is_ok()
            && created.patient_id.len() == 36
            && created.patient_id == created.patient_id.to_lowercase(),
        "patient_id must be a lower-case UUID, got {:?}",
        created.patient_id
    );
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

async fn create_idempotent(ctx: Ctx) -> TestResult {
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
    update(
        &ctx,
        Patient {
            patient_id: first.patient_id.clone(),
            gender: 1,
            ..Default::default()
        },
        &first.etag,
        &["gender"],
    )
    .await?;
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

async fn create_conflicts(ctx: Ctx) -> TestResult {
    let holder = create(&ctx, new_patient()).await?;
    let same_nhs = Patient {
        nhs_number: holder.nhs_number.clone(),
        ..new_patient()
    };
    let status = err(
        client(&ctx).create_patient(create_request(same_nhs)).await,
        Code::AlreadyExists,
        "CreatePatient(NHS number held by another)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &holder.patient_id)?;
    let same_id = Patient {
        identifiers: holder.identifiers.clone(),
        ..new_patient()
    };
    let status = err(
        client(&ctx).create_patient(create_request(same_id)).await,
        Code::AlreadyExists,
        "CreatePatient(identifier held by another)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &holder.patient_id)?;
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

async fn batch_create(ctx: Ctx) -> TestResult {
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

async fn batch_invalid(ctx: Ctx) -> TestResult {
    let item = create_request(new_patient());
    let nhs = item
        .patient
        .as_ref()
        .map(|p| p.nhs_number.clone())
        .unwrap_or_default();
    let mut second = create_request(new_patient());
    second.request_id = item.request_id.clone();
    let cases = vec![
        (
            "no items",
            BatchCreatePatientsRequest {
                requests: vec![],
                requester: Some(requester()),
            },
            "requests",
        ),
        (
            "1001 items",
            BatchCreatePatientsRequest {
                requests: (0..1001).map(|_| create_request(new_patient())).collect(),
                requester: Some(requester()),
            },
            "requests",
        ),
        (
            "no requester",
            BatchCreatePatientsRequest {
                requests: vec![item.clone()],
                requester: None,
            },
            "requester",
        ),
        (
            "a repeated request_id",
            BatchCreatePatientsRequest {
                requests: vec![item.clone(), second],
                requester: Some(requester()),
            },
            "requests",
        ),
    ];
    for (what, request, field) in cases {
        let status = err(
            client(&ctx).batch_create_patients(request).await,
            Code::InvalidArgument,
            &format!("BatchCreatePatients({what})"),
        )?;
        has_violation_under(&status, field)?;
    }
    let r = client(&ctx)
        .resolve_identifier(ResolveIdentifierRequest {
            identifier: Some(Identifier {
                system: NHS_SYSTEM.into(),
                value: nhs,
            }),
        })
        .await;
    ensure!(
        r.err().map(|s| s.code()) == Some(Code::NotFound),
        "a refused batch wrote a patient"
    );
    Ok(())
}

async fn get_patient(ctx: Ctx) -> TestResult {
    let created = create(&ctx, new_patient()).await?;
    ensure_eq!(get(&ctx, &created.patient_id).await?, created, "GetPatient");
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .get_patient(GetPatientRequest {
                patient_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "GetPatient(unknown)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    for bad in ["", "not-a-uuid"] {
        let status = err(
            client(&ctx)
                .get_patient(GetPatientRequest {
                    patient_id: bad.into(),
                })
                .await,
            Code::InvalidArgument,
            &format!("GetPatient({bad:?})"),
        )?;
        has_violation(&status, "patient_id")?;
    }
    Ok(())
}

async fn update_basics(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    let mut names = v1.names.clone();
    names.push(HumanName {
        family: super::family_name(),
        given: vec!["Alex".into()],
        ..Default::default()
    });
    let v2 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            names: names.clone(),
            gender: 3,
            etag: "ignored".into(),
            ..Default::default()
        },
        &v1.etag,
        &["names"],
    )
    .await?;
    ensure_eq!(v2.version, 2, "version");
    ensure!(v2.etag != v1.etag, "the etag changes");
    ensure_eq!(v2.names, names, "names");
    ensure_eq!(v2.gender, v1.gender, "gender (not in the mask)");
    ensure_eq!(v2.nhs_number, v1.nhs_number, "nhs_number (not in the mask)");
    ensure_eq!(v2.create_time, v1.create_time, "create_time");
    let same = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            names,
            ..Default::default()
        },
        &v2.etag,
        &["names"],
    )
    .await?;
    ensure_eq!(
        same,
        v2.clone(),
        "an update changing nothing returns the current patient"
    );
    ensure_eq!(
        get(&ctx, &v1.patient_id).await?.version,
        2,
        "version after a no-op update"
    );
    // Clearing a cleared-allowed field: deceased_date set then cleared.
    let v3 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            deceased_date: Some(Date {
                year: 2020,
                month: 5,
                day: 1,
            }),
            ..Default::default()
        },
        &v2.etag,
        &["deceased_date"],
    )
    .await?;
    let v4 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            ..Default::default()
        },
        &v3.etag,
        &["deceased_date"],
    )
    .await?;
    ensure_eq!(
        (v3.deceased_date.is_some(), v4.deceased_date),
        (true, None),
        "deceased_date set then cleared"
    );
    Ok(())
}

async fn update_stale(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    // new_patient() is female: a change to male is a real write.
    let v2 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            gender: 1,
            ..Default::default()
        },
        &v1.etag,
        &["gender"],
    )
    .await?;
    ensure_eq!(v2.version, 2, "version after a real change");
    let status = err(
        client(&ctx)
            .update_patient(update_request(
                Patient {
                    patient_id: v1.patient_id.clone(),
                    gender: 3,
                    ..Default::default()
                },
                &v1.etag,
                &["gender"],
            ))
            .await,
        Code::Aborted,
        "UpdatePatient(stale etag)",
    )?;
    let info = has_reason(&status, "ETAG_MISMATCH")?;
    ensure_eq!(
        info.metadata.get("current_version").cloned(),
        Some(v2.version.to_string()),
        "ErrorInfo metadata current_version"
    );
    ensure_eq!(
        get(&ctx, &v1.patient_id).await?,
        v2,
        "the patient after a refused update"
    );
    Ok(())
}

async fn update_invalid(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    for paths in [
        &[][..],
        &["version"][..],
        &["state"][..],
        &["merged_into_patient_id"][..],
        &["names.family"][..],
        &["favourite_colour"][..],
    ] {
        let status = err(
            client(&ctx)
                .update_patient(update_request(v1.clone(), &v1.etag, paths))
                .await,
            Code::InvalidArgument,
            &format!("UpdatePatient(update_mask {paths:?})"),
        )?;
        has_violation_under(&status, "update_mask")?;
    }
    let mut no_mask = update_request(v1.clone(), &v1.etag, &["gender"]);
    no_mask.update_mask = None;
    let status = err(
        client(&ctx).update_patient(no_mask).await,
        Code::InvalidArgument,
        "UpdatePatient(no update_mask)",
    )?;
    has_violation(&status, "update_mask")?;
    let status = err(
        client(&ctx)
            .update_patient(update_request(v1.clone(), "", &["gender"]))
            .await,
        Code::InvalidArgument,
        "UpdatePatient(no etag)",
    )?;
    has_violation(&status, "etag")?;
    let status = err(
        client(&ctx)
            .update_patient(update_request(
                Patient {
                    names: vec![],
                    ..v1.clone()
                },
                &v1.etag,
                &["names"],
            ))
            .await,
        Code::InvalidArgument,
        "UpdatePatient(names cleared)",
    )?;
    has_violation_under(&status, "patient.names")?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .update_patient(update_request(
                Patient {
                    patient_id: unknown.clone(),
                    ..new_patient()
                },
                "etag",
                &["gender"],
            ))
            .await,
        Code::NotFound,
        "UpdatePatient(unknown)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)?;
    ensure_eq!(
        get(&ctx, &v1.patient_id).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

async fn update_conflict(ctx: Ctx) -> TestResult {
    let holder = create(&ctx, new_patient()).await?;
    let other = create(&ctx, new_patient()).await?;
    let status = err(
        client(&ctx)
            .update_patient(update_request(
                Patient {
                    patient_id: other.patient_id.clone(),
                    nhs_number: holder.nhs_number.clone(),
                    ..Default::default()
                },
                &other.etag,
                &["nhs_number"],
            ))
            .await,
        Code::AlreadyExists,
        "UpdatePatient(NHS number held by another)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &holder.patient_id)
}

async fn versions(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    let v2 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            gender: 1,
            ..Default::default()
        },
        &v1.etag,
        &["gender"],
    )
    .await?;
    let v3 = update(
        &ctx,
        Patient {
            patient_id: v1.patient_id.clone(),
            telecoms: vec![],
            ..Default::default()
        },
        &v2.etag,
        &["telecoms"],
    )
    .await?;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(
            client(&ctx)
                .list_patient_versions(ListPatientVersionsRequest {
                    patient_id: v1.patient_id.clone(),
                    page_size: 2,
                    page_token: token.clone(),
                })
                .await,
            "ListPatientVersions",
        )?;
        all.extend(page.versions);
        if page.next_page_token.is_empty() {
            break;
        }
        ensure!(all.len() <= 10, "pagination does not end");
        token = page.next_page_token;
    }
    ensure_eq!(
        all.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "versions, oldest first"
    );
    ensure_eq!(
        all.iter().map(|v| v.patient.clone()).collect::<Vec<_>>(),
        vec![Some(v1), Some(v2), Some(v3)],
        "each version's patient as it was"
    );
    ensure_eq!(
        all.iter().map(|v| v.change_type).collect::<Vec<_>>(),
        vec![
            ChangeType::Created as i32,
            ChangeType::Updated as i32,
            ChangeType::Updated as i32
        ],
        "change types"
    );
    let changed: Vec<Vec<String>> = all
        .iter()
        .map(|v| {
            v.changed_fields
                .clone()
                .map(|m| m.paths)
                .unwrap_or_default()
        })
        .collect();
    ensure_eq!(
        changed,
        vec![
            vec![],
            vec!["gender".to_owned()],
            vec!["telecoms".to_owned()]
        ],
        "changed_fields"
    );
    ensure!(
        all.iter().all(|v| v.requester == Some(requester())),
        "every version records its requester"
    );
    ensure_eq!(all[1].reason, "conformance kit", "reason of an update");
    Ok(())
}

async fn versions_invalid(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    update(
        &ctx,
        Patient {
            patient_id: a.patient_id.clone(),
            gender: 1,
            ..Default::default()
        },
        &a.etag,
        &["gender"],
    )
    .await?;
    let b = create(&ctx, new_patient()).await?;
    let first = ok(
        client(&ctx)
            .list_patient_versions(ListPatientVersionsRequest {
                patient_id: a.patient_id.clone(),
                page_size: 1,
                page_token: String::new(),
            })
            .await,
        "ListPatientVersions(page_size 1)",
    )?;
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while versions remain"
    );
    for (id, token, what) in [
        (
            b.patient_id.clone(),
            first.next_page_token.clone(),
            "a token of another patient",
        ),
        (
            a.patient_id.clone(),
            crate::records::FORGED_TOKEN.to_owned(),
            "a forged token",
        ),
    ] {
        let status = err(
            client(&ctx)
                .list_patient_versions(ListPatientVersionsRequest {
                    patient_id: id,
                    page_size: 1,
                    page_token: token,
                })
                .await,
            Code::InvalidArgument,
            &format!("ListPatientVersions({what})"),
        )?;
        has_violation(&status, "page_token")?;
    }
    let status = err(
        client(&ctx)
            .list_patient_versions(ListPatientVersionsRequest {
                patient_id: a.patient_id.clone(),
                page_size: -1,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "ListPatientVersions(page_size -1)",
    )?;
    has_violation(&status, "page_size")?;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .list_patient_versions(ListPatientVersionsRequest {
                patient_id: unknown.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "ListPatientVersions(unknown)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)
}

async fn resolve_case(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    for value in [
        p.nhs_number.clone(),
        spaced(&p.nhs_number),
        format!(
            "{}-{}-{}",
            &p.nhs_number[..3],
            &p.nhs_number[3..6],
            &p.nhs_number[6..]
        ),
    ] {
        let r = resolve(&ctx, NHS_SYSTEM, &value).await?;
        ensure_eq!(
            r.patient_id,
            p.patient_id,
            "ResolveIdentifier(NHS number {value:?})"
        );
        ensure!(
            !r.followed_merge && r.merged_patient_ids.is_empty(),
            "no merge followed"
        );
        ensure_eq!(r.patient, Some(p.clone()), "the current patient");
    }
    let id = &p.identifiers[0];
    let r = resolve(&ctx, &id.system, &format!(" {} ", id.value)).await?;
    ensure_eq!(
        r.patient_id,
        p.patient_id,
        "ResolveIdentifier(local identifier, padded)"
    );
    err(
        client(&ctx)
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: id.system.clone(),
                    value: id.value.to_lowercase(),
                }),
            })
            .await,
        Code::NotFound,
        "ResolveIdentifier(value in another case)",
    )?;
    Ok(())
}

async fn resolve_errors(ctx: Ctx) -> TestResult {
    let unknown = nhs_number();
    let status = err(
        client(&ctx)
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: NHS_SYSTEM.into(),
                    value: spaced(&unknown),
                }),
            })
            .await,
        Code::NotFound,
        "ResolveIdentifier(unknown NHS number)",
    )?;
    has_resource(
        &status,
        "carerecord.common.v1.Identifier",
        &format!("{NHS_SYSTEM}|{unknown}"),
    )?;
    let local = local_id();
    let status = err(
        client(&ctx)
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(local.clone()),
            })
            .await,
        Code::NotFound,
        "ResolveIdentifier(unknown local identifier)",
    )?;
    has_resource(
        &status,
        "carerecord.common.v1.Identifier",
        &format!("{}|{}", local.system, local.value),
    )?;
    for (system, value, field) in [
        (NHS_SYSTEM, bad_check_digit(), "identifier.value"),
        (NHS_SYSTEM, "12345".to_owned(), "identifier.value"),
        ("", "x".to_owned(), "identifier.system"),
        (LOCAL_SYSTEM, String::new(), "identifier.value"),
    ] {
        let status = err(
            client(&ctx)
                .resolve_identifier(ResolveIdentifierRequest {
                    identifier: Some(Identifier {
                        system: system.into(),
                        value: value.clone(),
                    }),
                })
                .await,
            Code::InvalidArgument,
            &format!("ResolveIdentifier({system:?}, {value:?})"),
        )?;
        has_violation(&status, field)?;
    }
    Ok(())
}

fn merge_request(source: &Patient, target: &Patient) -> MergePatientsRequest {
    MergePatientsRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        source_patient_id: source.patient_id.clone(),
        target_patient_id: target.patient_id.clone(),
        reason: "duplicate registration, confirmed by the conformance kit".into(),
        requester: Some(requester()),
        source_etag: source.etag.clone(),
        target_etag: target.etag.clone(),
    }
}

async fn do_merge(ctx: &Ctx, source: &Patient, target: &Patient) -> TestResult<(Patient, Patient)> {
    let r = ok(
        client(ctx)
            .merge_patients(merge_request(source, target))
            .await,
        "MergePatients",
    )?;
    match (r.source_patient, r.target_patient) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => fail!("MergePatients: the response lacks a patient"),
    }
}

async fn merge(ctx: Ctx) -> TestResult {
    let source = create(&ctx, new_patient()).await?;
    let target = create(&ctx, new_patient()).await?;
    let (s, t) = do_merge(&ctx, &source, &target).await?;
    ensure_eq!(s.state, PatientState::Merged as i32, "source state");
    ensure_eq!(
        s.merged_into_patient_id,
        target.patient_id,
        "source merged_into_patient_id"
    );
    ensure_eq!(s.version, 2, "source version");
    ensure_eq!(
        (s.names.clone(), s.nhs_number.clone(), s.identifiers.clone()),
        (
            source.names.clone(),
            source.nhs_number.clone(),
            source.identifiers.clone()
        ),
        "the source keeps its data"
    );
    ensure_eq!(
        t.merged_from_patient_ids,
        vec![source.patient_id.clone()],
        "target merged_from_patient_ids"
    );
    ensure_eq!(t.version, 2, "target version");
    ensure_eq!(
        (t.names.clone(), t.nhs_number.clone()),
        (target.names.clone(), target.nhs_number.clone()),
        "the target's demographics are unchanged"
    );
    ensure_eq!(
        get(&ctx, &source.patient_id).await?,
        s,
        "GetPatient does not follow merges"
    );
    let r = resolve(&ctx, NHS_SYSTEM, &source.nhs_number).await?;
    ensure_eq!(
        (
            r.patient_id.clone(),
            r.followed_merge,
            r.merged_patient_ids.clone()
        ),
        (
            target.patient_id.clone(),
            true,
            vec![source.patient_id.clone()]
        ),
        "ResolveIdentifier(source's NHS number)"
    );
    let r = resolve(
        &ctx,
        &source.identifiers[0].system,
        &source.identifiers[0].value,
    )
    .await?;
    ensure_eq!(
        r.patient_id,
        target.patient_id,
        "ResolveIdentifier(source's local identifier)"
    );
    // The merged source keeps reserving its identifiers.
    let status = err(
        client(&ctx)
            .create_patient(create_request(Patient {
                nhs_number: source.nhs_number.clone(),
                ..new_patient()
            }))
            .await,
        Code::AlreadyExists,
        "CreatePatient(a merged patient's NHS number)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &source.patient_id)
}

async fn merge_chain(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let c = create(&ctx, new_patient()).await?;
    let (_, b2) = do_merge(&ctx, &a, &b).await?;
    do_merge(&ctx, &b2, &c).await?;
    let r = resolve(&ctx, NHS_SYSTEM, &a.nhs_number).await?;
    ensure_eq!(
        (r.patient_id, r.followed_merge, r.merged_patient_ids),
        (
            c.patient_id.clone(),
            true,
            vec![a.patient_id.clone(), b.patient_id.clone()]
        ),
        "ResolveIdentifier through two merges"
    );
    Ok(())
}

async fn merge_errors(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let c = create(&ctx, new_patient()).await?;
    let status = err(
        client(&ctx).merge_patients(merge_request(&a, &a)).await,
        Code::InvalidArgument,
        "MergePatients(source = target)",
    )?;
    crate::harness::has_bad_request(&status)?;
    let mut no_reason = merge_request(&a, &b);
    no_reason.reason.clear();
    let status = err(
        client(&ctx).merge_patients(no_reason).await,
        Code::InvalidArgument,
        "MergePatients(no reason)",
    )?;
    has_violation(&status, "reason")?;
    let mut stale = merge_request(&a, &b);
    stale.source_etag = "stale".into();
    let status = err(
        client(&ctx).merge_patients(stale).await,
        Code::Aborted,
        "MergePatients(stale source_etag)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;
    let unknown = Patient {
        patient_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let status = err(
        client(&ctx)
            .merge_patients(merge_request(&a, &unknown))
            .await,
        Code::NotFound,
        "MergePatients(unknown target)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown.patient_id)?;
    let request = merge_request(&a, &b);
    let first = ok(
        client(&ctx).merge_patients(request.clone()).await,
        "MergePatients",
    )?;
    let again = ok(
        client(&ctx).merge_patients(request.clone()).await,
        "MergePatients(retry)",
    )?;
    ensure_eq!(
        (again.source_patient, again.target_patient),
        (first.source_patient, first.target_patient),
        "a retried merge returns the first result"
    );
    let mut reused = request.clone();
    reused.target_patient_id = c.patient_id.clone();
    reused.target_etag.clear();
    let status = err(
        client(&ctx).merge_patients(reused).await,
        Code::FailedPrecondition,
        "MergePatients(reused request_id, another body)",
    )?;
    has_reason(&status, "REQUEST_ID_REUSED")?;
    let mut again_merge = merge_request(&a, &c);
    again_merge.source_etag.clear();
    let status = err(
        client(&ctx).merge_patients(again_merge).await,
        Code::FailedPrecondition,
        "MergePatients(source already merged)",
    )?;
    has_precondition(&status, "PATIENT_MERGED", Some(&a.patient_id))?;
    let mut into_merged = merge_request(&c, &a);
    into_merged.target_etag.clear();
    let status = err(
        client(&ctx).merge_patients(into_merged).await,
        Code::FailedPrecondition,
        "MergePatients(target merged)",
    )?;
    has_precondition(&status, "PATIENT_MERGED", Some(&a.patient_id))
}

async fn update_merged(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let (s, _) = do_merge(&ctx, &a, &b).await?;
    let status = err(
        client(&ctx)
            .update_patient(update_request(
                Patient {
                    patient_id: s.patient_id.clone(),
                    gender: 1,
                    ..Default::default()
                },
                &s.etag,
                &["gender"],
            ))
            .await,
        Code::FailedPrecondition,
        "UpdatePatient(merged patient)",
    )?;
    has_precondition(&status, "PATIENT_MERGED", Some(&s.patient_id))
}

async fn unmerge(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let (s, t) = do_merge(&ctx, &a, &b).await?;
    // The survivor changes after the merge; that change must survive the unmerge.
    let t2 = update(
        &ctx,
        Patient {
            patient_id: t.patient_id.clone(),
            gender: 3,
            ..Default::default()
        },
        &t.etag,
        &["gender"],
    )
    .await?;
    let r = ok(
        client(&ctx)
            .unmerge_patient(UnmergePatientRequest {
                patient_id: s.patient_id.clone(),
                reason: "not the same person".into(),
                requester: Some(requester()),
                etag: s.etag.clone(),
            })
            .await,
        "UnmergePatient",
    )?;
    let (Some(restored), Some(former)) = (r.patient, r.former_target_patient) else {
        fail!("UnmergePatient: the response lacks a patient")
    };
    ensure_eq!(
        restored.state,
        PatientState::Active as i32,
        "state of the restored duplicate"
    );
    ensure!(
        restored.merged_into_patient_id.is_empty(),
        "merged_into_patient_id must be empty"
    );
    ensure_eq!(
        (
            restored.names.clone(),
            restored.nhs_number.clone(),
            restored.identifiers.clone(),
            restored.birth_date,
            restored.gender
        ),
        (
            a.names.clone(),
            a.nhs_number.clone(),
            a.identifiers.clone(),
            a.birth_date,
            a.gender
        ),
        "the duplicate's data as before the merge"
    );
    ensure_eq!(restored.version, 3, "version of the restored duplicate");
    ensure!(
        former.merged_from_patient_ids.is_empty(),
        "the former survivor's merged_from_patient_ids must be empty"
    );
    ensure_eq!(
        former.gender,
        t2.gender,
        "the survivor's own update is kept"
    );
    let r = resolve(&ctx, NHS_SYSTEM, &a.nhs_number).await?;
    ensure_eq!(
        (r.patient_id, r.followed_merge),
        (a.patient_id.clone(), false),
        "the restored patient's NHS number resolves to it again"
    );
    Ok(())
}

async fn unmerge_errors(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let req = |id: &str, etag: &str, reason: &str| UnmergePatientRequest {
        patient_id: id.into(),
        reason: reason.into(),
        requester: Some(requester()),
        etag: etag.into(),
    };
    let status = err(
        client(&ctx)
            .unmerge_patient(req(&a.patient_id, &a.etag, "why"))
            .await,
        Code::FailedPrecondition,
        "UnmergePatient(active patient)",
    )?;
    has_precondition(&status, "PATIENT_NOT_MERGED", Some(&a.patient_id))?;
    let b = create(&ctx, new_patient()).await?;
    let (s, _) = do_merge(&ctx, &a, &b).await?;
    let status = err(
        client(&ctx)
            .unmerge_patient(req(&s.patient_id, &a.etag, "why"))
            .await,
        Code::Aborted,
        "UnmergePatient(stale etag)",
    )?;
    has_reason(&status, "ETAG_MISMATCH")?;
    for (r, field) in [
        (req(&s.patient_id, &s.etag, ""), "reason"),
        (req(&s.patient_id, &s.etag, &"r".repeat(1001)), "reason"),
        (req(&s.patient_id, "", "why"), "etag"),
        (req("x", &s.etag, "why"), "patient_id"),
    ] {
        let status = err(
            client(&ctx).unmerge_patient(r).await,
            Code::InvalidArgument,
            &format!("UnmergePatient(bad {field})"),
        )?;
        has_violation(&status, field)?;
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(&ctx)
            .unmerge_patient(req(&unknown, "e", "why"))
            .await,
        Code::NotFound,
        "UnmergePatient(unknown)",
    )?;
    has_resource(&status, RESOURCE_TYPE, &unknown)
}

async fn next_event(
    stream: &mut tonic::codec::Streaming<WatchPatientChangesResponse>,
) -> TestResult<WatchPatientChangesResponse> {
    match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
        Err(_) => fail!("WatchPatientChanges: no event within 30 s"),
        Ok(Ok(Some(e))) => Ok(e),
        Ok(Ok(None)) => fail!("WatchPatientChanges: the stream ended"),
        Ok(Err(s)) => fail!("WatchPatientChanges: the stream failed: {}", describe(&s)),
    }
}

async fn watch(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    // Find a's creation event from the start of the feed to get a cursor.
    let mut stream = ok(
        client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: String::new(),
            })
            .await,
        "WatchPatientChanges(from the start)",
    )?;
    let cursor = loop {
        let e = next_event(&mut stream).await?;
        if e.patient_id == a.patient_id {
            ensure_eq!(
                (e.change_type, e.version),
                (ChangeType::Created as i32, 1),
                "a's first event"
            );
            break e.cursor;
        }
    };
    drop(stream);
    let b = create(&ctx, new_patient()).await?;
    let a2 = update(
        &ctx,
        Patient {
            patient_id: a.patient_id.clone(),
            gender: 1,
            ..Default::default()
        },
        &a.etag,
        &["gender"],
    )
    .await?;
    do_merge(&ctx, &b, &a2).await?;
    let mut stream = ok(
        client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: cursor,
            })
            .await,
        "WatchPatientChanges(after a's creation)",
    )?;
    let mut ours = Vec::new();
    let mut last = i64::MIN;
    while ours.len() < 4 {
        let e = next_event(&mut stream).await?;
        ensure!(
            e.sequence > last,
            "sequences must strictly increase: {} then {}",
            last,
            e.sequence
        );
        last = e.sequence;
        ensure!(!e.cursor.is_empty(), "every event carries a cursor");
        if e.patient_id == a.patient_id || e.patient_id == b.patient_id {
            ensure_eq!(
                e.patient.as_ref().map(|p| p.version),
                Some(e.version),
                "the event's patient is the version written"
            );
            ours.push((
                e.patient_id.clone(),
                e.change_type,
                e.version,
                e.related_patient_id.clone(),
            ));
        }
    }
    ensure_eq!(
        ours,
        vec![
            (
                b.patient_id.clone(),
                ChangeType::Created as i32,
                1,
                String::new()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Updated as i32,
                2,
                String::new()
            ),
            (
                b.patient_id.clone(),
                ChangeType::Merged as i32,
                2,
                a.patient_id.clone()
            ),
            (
                a.patient_id.clone(),
                ChangeType::Merged as i32,
                3,
                b.patient_id.clone()
            ),
        ],
        "events after the cursor (patient, type, version, related patient)"
    );
    Ok(())
}

async fn watch_invalid(ctx: Ctx) -> TestResult {
    for cursor in [crate::records::FORGED_TOKEN, "not a cursor"] {
        let result = match client(&ctx)
            .watch_patient_changes(WatchPatientChangesRequest {
                after_cursor: cursor.into(),
            })
            .await
        {
            Err(s) => Err(s),
            Ok(s) => {
                let mut s = s.into_inner();
                match tokio::time::timeout(Duration::from_secs(20), s.message()).await {
                    Ok(Err(status)) => Err(status),
                    Ok(Ok(_)) => Ok(()),
                    Err(_) => fail!(
                        "WatchPatientChanges({cursor:?}): neither an error nor an event within 20 s"
                    ),
                }
            }
        };
        let status = err(
            result,
            Code::InvalidArgument,
            &format!("WatchPatientChanges(after_cursor {cursor:?})"),
        )?;
        has_violation(&status, "after_cursor")?;
    }
    Ok(())
}
