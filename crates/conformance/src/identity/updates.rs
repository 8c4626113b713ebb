//! UpdatePatient and ListPatientVersions.

use carerecord_contracts::common::v1::{ChangeType, Date, HumanName};
use carerecord_contracts::identity::v1::{ListPatientVersionsRequest, Patient};
use tonic::Code;

use super::support::{
    client, create, family_name, get, has_reason, held_by, new_patient, regender, requester,
    unknown, update, update_request,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, err, every_page, ok};
use crate::refusal::{Refusal, masks_refused, refuse_each, refused};

pub(super) async fn update_basics(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    let mut names = v1.names.clone();
    names.push(HumanName {
        family: family_name(),
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
    let died = Date {
        year: 2020,
        month: 5,
        day: 1,
    };
    let deceased = |deceased_date| Patient {
        patient_id: v1.patient_id.clone(),
        deceased_date,
        ..Default::default()
    };
    let v3 = update(&ctx, deceased(Some(died)), &v2.etag, &["deceased_date"]).await?;
    let v4 = update(&ctx, deceased(None), &v3.etag, &["deceased_date"]).await?;
    ensure_eq!(
        (v3.deceased_date.is_some(), v4.deceased_date),
        (true, None),
        "deceased_date set then cleared"
    );
    Ok(())
}

pub(super) async fn update_stale(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    // new_patient() is female: a change to male is a real write.
    let v2 = regender(&ctx, &v1, 1).await?;
    ensure_eq!(v2.version, 2, "version after a real change");
    let stale = Patient {
        patient_id: v1.patient_id.clone(),
        gender: 3,
        ..Default::default()
    };
    let status = err(
        client(&ctx)
            .update_patient(update_request(stale, &v1.etag, &["gender"]))
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

pub(super) async fn update_invalid(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    let masks: &[&[&str]] = &[
        &[],
        &["version"],
        &["state"],
        &["merged_into_patient_id"],
        &["names.family"],
        &["favourite_colour"],
    ];
    let mut table = masks_refused(
        masks,
        |paths| update_request(v1.clone(), &v1.etag, paths),
        || Refusal::invalid_under("update_mask"),
    );
    let mut no_mask = update_request(v1.clone(), &v1.etag, &["gender"]);
    no_mask.update_mask = None;
    let no_names = Patient {
        names: vec![],
        ..v1.clone()
    };
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let someone_unknown = Patient {
        patient_id: unknown_id.clone(),
        ..new_patient()
    };
    table.extend([
        (
            "no update_mask".to_owned(),
            no_mask,
            Refusal::invalid("update_mask"),
        ),
        (
            "no etag".to_owned(),
            update_request(v1.clone(), "", &["gender"]),
            Refusal::invalid("etag"),
        ),
        (
            "names cleared".to_owned(),
            update_request(no_names, &v1.etag, &["names"]),
            Refusal::invalid_under("patient.names"),
        ),
        (
            "unknown".to_owned(),
            update_request(someone_unknown, "etag", &["gender"]),
            unknown(&unknown_id),
        ),
    ]);
    refuse_each!(client(&ctx), update_patient, table,).await?;
    ensure_eq!(
        get(&ctx, &v1.patient_id).await?.version,
        1,
        "version after refused updates"
    );
    Ok(())
}

pub(super) async fn update_conflict(ctx: Ctx) -> TestResult {
    let holder = create(&ctx, new_patient()).await?;
    let other = create(&ctx, new_patient()).await?;
    let taken = Patient {
        patient_id: other.patient_id.clone(),
        nhs_number: holder.nhs_number.clone(),
        ..Default::default()
    };
    refused(
        client(&ctx)
            .update_patient(update_request(taken, &other.etag, &["nhs_number"]))
            .await,
        &held_by(&holder),
        "UpdatePatient(NHS number held by another)",
    )
    .map(|_| ())
}

fn versions_request(
    patient_id: &str,
    page_size: i32,
    page_token: &str,
) -> ListPatientVersionsRequest {
    ListPatientVersionsRequest {
        patient_id: patient_id.to_owned(),
        page_size,
        page_token: page_token.to_owned(),
    }
}

pub(super) async fn versions(ctx: Ctx) -> TestResult {
    let v1 = create(&ctx, new_patient()).await?;
    let v2 = regender(&ctx, &v1, 1).await?;
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
    let (all, _) = every_page!(
        client(&ctx),
        list_patient_versions,
        "ListPatientVersions",
        versions,
        10,
        versions_request(&v1.patient_id, 2, ""),
    )?;
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

pub(super) async fn versions_invalid(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    regender(&ctx, &a, 1).await?;
    let b = create(&ctx, new_patient()).await?;
    let first = ok(
        client(&ctx)
            .list_patient_versions(versions_request(&a.patient_id, 1, ""))
            .await,
        "ListPatientVersions(page_size 1)",
    )?;
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while versions remain"
    );
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let table = vec![
        (
            "a token of another patient",
            versions_request(&b.patient_id, 1, &first.next_page_token),
            Refusal::invalid("page_token"),
        ),
        (
            "a forged token",
            versions_request(&a.patient_id, 1, crate::records::FORGED_TOKEN),
            Refusal::invalid("page_token"),
        ),
        (
            "page_size -1",
            versions_request(&a.patient_id, -1, ""),
            Refusal::invalid("page_size"),
        ),
        (
            "unknown",
            versions_request(&unknown_id, 0, ""),
            unknown(&unknown_id),
        ),
    ];
    refuse_each!(client(&ctx), list_patient_versions, table).await
}
