//! ResolveIdentifier, MergePatients and UnmergePatient.

use carerecord_contracts::common::v1::Identifier;
use carerecord_contracts::identity::v1::{
    Patient, PatientState, ResolveIdentifierRequest, UnmergePatientRequest,
};
use tonic::Code;

use super::support::{
    LOCAL_SYSTEM, NHS_SYSTEM, bad_check_digit, client, create, create_request, get, held_by,
    local_id, merge, merge_request, merge_state, new_patient, nhs_number, refusal, regender,
    requester, resolve, resolve_request, spaced, unknown, update_request,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, fail, ok};
use crate::refusal::{Refusal, refuse_each, refused};

pub(super) async fn resolve_case(ctx: Ctx) -> TestResult {
    let p = create(&ctx, new_patient()).await?;
    let nhs = &p.nhs_number;
    let dashed = format!("{}-{}-{}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    for value in [nhs.clone(), spaced(nhs), dashed] {
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
    let table = vec![(
        "value in another case".to_owned(),
        resolve_request(&id.system, &id.value.to_lowercase()),
        Refusal::new(Code::NotFound),
    )];
    refuse_each!(client(&ctx), resolve_identifier, table).await
}

pub(super) async fn resolve_errors(ctx: Ctx) -> TestResult {
    let identifier = |system: &str, value: &str| {
        Refusal::not_found(
            "carerecord.common.v1.Identifier",
            &format!("{system}|{value}"),
        )
    };
    let unknown_nhs = nhs_number();
    let local = local_id();
    let mut table = vec![
        (
            "unknown NHS number".to_owned(),
            resolve_request(NHS_SYSTEM, &spaced(&unknown_nhs)),
            identifier(NHS_SYSTEM, &unknown_nhs),
        ),
        (
            "unknown local identifier".to_owned(),
            ResolveIdentifierRequest {
                identifier: Some(local.clone()),
            },
            identifier(&local.system, &local.value),
        ),
    ];
    for (system, value, field) in [
        (NHS_SYSTEM, bad_check_digit(), "identifier.value"),
        (NHS_SYSTEM, "12345".to_owned(), "identifier.value"),
        ("", "x".to_owned(), "identifier.system"),
        (LOCAL_SYSTEM, String::new(), "identifier.value"),
    ] {
        table.push((
            format!("{system:?}, {value:?}"),
            ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: system.into(),
                    value,
                }),
            },
            Refusal::invalid(field),
        ));
    }
    refuse_each!(client(&ctx), resolve_identifier, table).await
}

pub(super) async fn merge_basics(ctx: Ctx) -> TestResult {
    let source = create(&ctx, new_patient()).await?;
    let target = create(&ctx, new_patient()).await?;
    let (s, t) = merge(&ctx, &source, &target).await?;
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
    let same_nhs = Patient {
        nhs_number: source.nhs_number.clone(),
        ..new_patient()
    };
    refused(
        client(&ctx).create_patient(create_request(same_nhs)).await,
        &held_by(&source),
        "CreatePatient(a merged patient's NHS number)",
    )
    .map(|_| ())
}

pub(super) async fn merge_chain(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let c = create(&ctx, new_patient()).await?;
    let (_, b2) = merge(&ctx, &a, &b).await?;
    merge(&ctx, &b2, &c).await?;
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

pub(super) async fn merge_errors(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let c = create(&ctx, new_patient()).await?;
    let mut no_reason = merge_request(&a, &b);
    no_reason.reason.clear();
    let mut stale = merge_request(&a, &b);
    stale.source_etag = "stale".into();
    let nobody = Patient {
        patient_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let table = vec![
        (
            "source = target",
            merge_request(&a, &a),
            Refusal::invalid_request(),
        ),
        ("no reason", no_reason, Refusal::invalid("reason")),
        (
            "stale source_etag",
            stale,
            refusal(Code::Aborted, "ETAG_MISMATCH"),
        ),
        (
            "unknown target",
            merge_request(&a, &nobody),
            unknown(&nobody.patient_id),
        ),
    ];
    refuse_each!(client(&ctx), merge_patients, table).await?;
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
    let mut again_merge = merge_request(&a, &c);
    again_merge.source_etag.clear();
    let mut into_merged = merge_request(&c, &a);
    into_merged.target_etag.clear();
    let table = vec![
        (
            "reused request_id, another body",
            reused,
            refusal(Code::FailedPrecondition, "REQUEST_ID_REUSED"),
        ),
        (
            "source already merged",
            again_merge,
            merge_state("PATIENT_MERGED", &a.patient_id),
        ),
        (
            "target merged",
            into_merged,
            merge_state("PATIENT_MERGED", &a.patient_id),
        ),
    ];
    refuse_each!(client(&ctx), merge_patients, table).await
}

pub(super) async fn update_merged(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let (s, _) = merge(&ctx, &a, &b).await?;
    let change = Patient {
        patient_id: s.patient_id.clone(),
        gender: 1,
        ..Default::default()
    };
    refused(
        client(&ctx)
            .update_patient(update_request(change, &s.etag, &["gender"]))
            .await,
        &merge_state("PATIENT_MERGED", &s.patient_id),
        "UpdatePatient(merged patient)",
    )
    .map(|_| ())
}

pub(super) async fn unmerge(ctx: Ctx) -> TestResult {
    let a = create(&ctx, new_patient()).await?;
    let b = create(&ctx, new_patient()).await?;
    let (s, t) = merge(&ctx, &a, &b).await?;
    // The survivor changes after the merge; that change must survive the unmerge.
    let t2 = regender(&ctx, &t, 3).await?;
    let r = ok(
        client(&ctx)
            .unmerge_patient(unmerge_request(
                &s.patient_id,
                &s.etag,
                "not the same person",
            ))
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

fn unmerge_request(id: &str, etag: &str, reason: &str) -> UnmergePatientRequest {
    UnmergePatientRequest {
        patient_id: id.into(),
        reason: reason.into(),
        requester: Some(requester()),
        etag: etag.into(),
    }
}

pub(super) async fn unmerge_errors(ctx: Ctx) -> TestResult {
    let req = unmerge_request;
    let a = create(&ctx, new_patient()).await?;
    let table = vec![(
        "active patient".to_owned(),
        req(&a.patient_id, &a.etag, "why"),
        merge_state("PATIENT_NOT_MERGED", &a.patient_id),
    )];
    refuse_each!(client(&ctx), unmerge_patient, table).await?;
    let b = create(&ctx, new_patient()).await?;
    let (s, _) = merge(&ctx, &a, &b).await?;
    let mut table = vec![(
        "stale etag".to_owned(),
        req(&s.patient_id, &a.etag, "why"),
        refusal(Code::Aborted, "ETAG_MISMATCH"),
    )];
    for (r, field) in [
        (req(&s.patient_id, &s.etag, ""), "reason"),
        (req(&s.patient_id, &s.etag, &"r".repeat(1001)), "reason"),
        (req(&s.patient_id, "", "why"), "etag"),
        (req("x", &s.etag, "why"), "patient_id"),
    ] {
        table.push((format!("bad {field}"), r, Refusal::invalid(field)));
    }
    let unknown_id = uuid::Uuid::new_v4().to_string();
    table.push((
        "unknown".to_owned(),
        req(&unknown_id, "e", "why"),
        unknown(&unknown_id),
    ));
    refuse_each!(client(&ctx), unmerge_patient, table).await
}
