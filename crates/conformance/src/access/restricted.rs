//! Restricted patients: a test patient registered through identity and restricted there (as a
//! privacy officer, R0001), then looked up and read through data access.

use carerecord_contracts::access::v1::patient_reference::Reference;
use carerecord_contracts::access::v1::{
    AuditAction, BreakGlassEvent, BreakGlassReviewOutcome, Demographics, FindPatientResponse,
    ListBreakGlassEventsRequest, PatientReference, ReadPatientRecordRequest,
    ReviewBreakGlassEventRequest, ReviewEventKind,
};
use carerecord_contracts::identity::v1::{Patient, PatientConfidentiality};
use tonic::Code;

use super::support::{DOMAIN, auditor, by_id, client, find, has_reason, refusal, register};
use crate::harness::{Ctx, Fail, TestResult, describe, ensure, ensure_eq, fail, ok, present};
use crate::refusal::{Refusal, refuse_each, refused};

/// A test patient registered and restricted through the deployment's identity.
async fn restricted_patient(ctx: &Ctx) -> TestResult<Patient> {
    let patient = register(ctx).await?;
    restrict(ctx, &patient).await
}

async fn restrict(ctx: &Ctx, patient: &Patient) -> TestResult<Patient> {
    let Some(endpoint) = ctx.options.identity_endpoint.as_ref() else {
        return Err(Fail::Skipped(
            "needs the deployment's identity endpoint (--identity-endpoint)".into(),
        ));
    };
    let identity = ctx.for_endpoint(endpoint).await?;
    let restricted = crate::identity::set_confidentiality(
        &identity,
        patient,
        PatientConfidentiality::Restricted,
    )
    .await?;
    ctx.absorb(&identity);
    Ok(restricted)
}

/// A test patient whose given name, birth date and postcode no other kit patient shares, so its
/// own demographics match it alone.
async fn register_unlike_others(ctx: &Ctx) -> TestResult<Patient> {
    let Some(endpoint) = ctx.options.identity_endpoint.as_ref() else {
        return Err(Fail::Skipped(
            "needs the deployment's identity endpoint (--identity-endpoint)".into(),
        ));
    };
    let identity = ctx.for_endpoint(endpoint).await?;
    let n = uuid::Uuid::new_v4().as_u128();
    let mut patient = crate::identity::new_patient();
    let family = patient.names[0].family.clone();
    patient.names[0].given = vec![format!("Rowan{}", &family[3..])];
    patient.birth_date = Some(carerecord_contracts::common::v1::Date {
        year: 1930 + (n % 60) as i32,
        month: 1 + ((n >> 8) % 12) as i32,
        day: 1 + ((n >> 16) % 28) as i32,
    });
    patient.addresses[0].postal_code = format!("LS{} {}AB", 1 + (n >> 24) % 29, (n >> 32) % 10);
    patient.addresses[0].lines = vec![format!("{} Kit Lane", 1 + (n >> 40) % 500)];
    let created = crate::identity::create(&identity, patient).await?;
    ctx.absorb(&identity);
    Ok(created)
}

/// The patient's own demographics, with or without its postcode.
fn demographics(patient: &Patient, with_postcode: bool) -> Option<PatientReference> {
    let name = patient.names.first().cloned().unwrap_or_default();
    Some(PatientReference {
        reference: Some(Reference::Demographics(Demographics {
            given: name.given.join(" "),
            family: name.family,
            birth_date: patient.birth_date,
            gender: patient.gender,
            postal_code: if with_postcode {
                patient
                    .addresses
                    .first()
                    .map(|a| a.postal_code.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            },
        })),
    })
}

/// The review queue's events for `patient_id` of `kind`, as the auditor lists them; a skip when
/// the auditor token may not list them.
async fn queue(
    ctx: &Ctx,
    patient_id: &str,
    kind: ReviewEventKind,
) -> TestResult<Vec<BreakGlassEvent>> {
    let request = ListBreakGlassEventsRequest {
        patient_id: patient_id.to_owned(),
        kind: kind as i32,
        page_size: 1000,
        ..Default::default()
    };
    match auditor(ctx)?.list_break_glass_events(request).await {
        Ok(r) => Ok(r.into_inner().events),
        Err(st) if st.code() == Code::PermissionDenied => Err(Fail::Skipped(format!(
            "the token may not list review events; give a privacy officer's token ({})",
            describe(&st)
        ))),
        Err(st) => fail!("ListBreakGlassEvents: expected OK, got {}", describe(&st)),
    }
}

/// FindPatient by patient id, for care, requiring success; `what` names the patient in a failure.
async fn find_by_id(ctx: &Ctx, patient_id: &str, what: &str) -> TestResult<FindPatientResponse> {
    let found = client(ctx)
        .find_patient(find(by_id(patient_id), "TREAT"))
        .await;
    ok(found, &format!("FindPatient({what})"))
}

pub(super) async fn summary(ctx: Ctx) -> TestResult {
    let patient = restricted_patient(&ctx).await?;
    let found = find_by_id(&ctx, &patient.patient_id, "a restricted patient").await?;
    ensure!(
        found.restricted,
        "FindPatient of a restricted patient says restricted"
    );
    let summary = present(found.patient, "FindPatient: no patient")?;
    ensure_eq!(summary.patient_id, patient.patient_id, "patient_id");
    let open = register(&ctx).await?;
    let found = find_by_id(&ctx, &open.patient_id, "an unrestricted patient").await?;
    ensure!(
        !found.restricted,
        "FindPatient of an unrestricted patient does not say restricted"
    );
    Ok(())
}

pub(super) async fn postcode_search(ctx: Ctx) -> TestResult {
    let patient = register_unlike_others(&ctx).await?;
    // The control: before the restriction the same search finds the patient.
    match client(&ctx)
        .find_patient(find(demographics(&patient, true), "TREAT"))
        .await
    {
        Ok(r)
            if r.get_ref().patient.as_ref().map(|p| p.patient_id.as_str())
                == Some(patient.patient_id.as_str()) => {}
        other => {
            return Err(Fail::Skipped(format!(
                "the deployment does not find the kit's patient confidently by its own demographics ({})",
                match other {
                    Ok(_) => "another patient".to_owned(),
                    Err(st) => describe(&st),
                }
            )));
        }
    }
    let patient = restrict(&ctx, &patient).await?;
    refused(
        client(&ctx)
            .find_patient(find(demographics(&patient, true), "TREAT"))
            .await,
        &refusal(Code::NotFound, "PATIENT_NOT_FOUND"),
        "FindPatient(a restricted patient's demographics with their postcode)",
    )?;
    let found = ok(
        client(&ctx)
            .find_patient(find(demographics(&patient, false), "TREAT"))
            .await,
        "FindPatient(a restricted patient's demographics without a postcode)",
    )?;
    ensure!(
        found.restricted
            && found
                .patient
                .is_some_and(|s| s.patient_id == patient.patient_id),
        "without a postcode the restricted patient is found, restricted"
    );
    Ok(())
}

pub(super) async fn reads_reviewed(ctx: Ctx) -> TestResult {
    let patient = restricted_patient(&ctx).await?;
    let found = find_by_id(&ctx, &patient.patient_id, "a restricted patient").await?;
    let read = ok(
        client(&ctx)
            .read_patient_record(ReadPatientRecordRequest {
                patient: by_id(&patient.patient_id),
                purpose_of_use: "TREAT".into(),
                ..Default::default()
            })
            .await,
        "ReadPatientRecord",
    )?;
    let events = queue(
        &ctx,
        &patient.patient_id,
        ReviewEventKind::RestrictedPatient,
    )
    .await?;
    for (call, entry_id, action) in [
        (
            "FindPatient",
            &found.audit_entry_id,
            AuditAction::FindPatient,
        ),
        ("ReadPatientRecord", &read.audit_entry_id, AuditAction::Read),
    ] {
        let Some(event) = events.iter().find(|e| e.event_id == *entry_id) else {
            fail!(
                "the {call} of a restricted patient is not in the review queue (event_id {entry_id})"
            )
        };
        ensure_eq!(
            (event.kind, event.action, event.restricted_patient),
            (
                ReviewEventKind::RestrictedPatient as i32,
                action as i32,
                true
            ),
            "the {call} event's kind, action and restricted_patient"
        );
        ensure_eq!(
            event.patient_id,
            patient.patient_id,
            "the {call} event's patient"
        );
        ensure!(!event.reviewed, "a new event is unreviewed");
    }
    ensure!(
        queue(&ctx, &patient.patient_id, ReviewEventKind::BreakGlass)
            .await?
            .is_empty(),
        "listing kind BREAK_GLASS leaves restricted patients' events out"
    );
    Ok(())
}

pub(super) async fn review(ctx: Ctx) -> TestResult {
    let patient = restricted_patient(&ctx).await?;
    let found = find_by_id(&ctx, &patient.patient_id, "a restricted patient").await?;
    let events = queue(&ctx, &patient.patient_id, ReviewEventKind::Unspecified).await?;
    let Some(event) = events
        .into_iter()
        .find(|e| e.event_id == found.audit_entry_id)
    else {
        fail!("the FindPatient of a restricted patient is not in the review queue")
    };
    let result = auditor(&ctx)?
        .review_break_glass_event(ReviewBreakGlassEventRequest {
            event_id: event.event_id.clone(),
            etag: event.etag.clone(),
            outcome: BreakGlassReviewOutcome::Appropriate as i32,
            notes: "lookup for a booked appointment".into(),
        })
        .await;
    let reviewed = match result {
        Ok(r) => present(r.into_inner().event, "ReviewBreakGlassEvent: no event")?,
        // The auditor token is the reader's own user (a self review, which the contract refuses),
        // or may only read the queue.
        Err(st)
            if has_reason(&st, "SELF_REVIEW").is_ok()
                || has_reason(&st, "SCOPE_MISSING").is_ok() =>
        {
            return Err(Fail::Skipped(format!(
                "give another user's privacy officer token with user/AuditEvent.u ({})",
                describe(&st)
            )));
        }
        Err(st) => fail!(
            "ReviewBreakGlassEvent(a restricted patient's event): expected OK, got {}",
            describe(&st)
        ),
    };
    ensure_eq!(
        (reviewed.reviewed, reviewed.version, reviewed.kind),
        (
            true,
            event.version + 1,
            ReviewEventKind::RestrictedPatient as i32
        ),
        "the reviewed event"
    );
    let table: Vec<(&str, ListBreakGlassEventsRequest, Refusal)> = vec![(
        "an unknown kind",
        ListBreakGlassEventsRequest {
            kind: 99,
            ..Default::default()
        },
        Refusal::new(Code::InvalidArgument)
            .reason_in(DOMAIN, "INVALID_REQUEST")
            .field("kind"),
    )];
    refuse_each!(auditor(&ctx)?, list_break_glass_events, table).await
}
