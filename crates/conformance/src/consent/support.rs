//! What the consent tests share: the client, requesters, directives, and the calls that set up a
//! test (each must succeed).

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    DecideRequest, Decision, DecisionSource, GetConsentDirectiveRequest,
    GetNationalDataOptOutRequest, ListConsentDirectivesRequest, NationalDataOptOut, Provision,
    ProvisionActor, RecordNationalDataOptOutCheckRequest, RevokeConsentDirectiveRequest,
    SetNationalDataOptOutRequest, UpdateConsentDirectiveRequest,
};
use prost_types::{FieldMask, Timestamp};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Auth, Ctx, TestResult, ok, present};
use crate::refusal::Refusal;

pub(crate) type Client = ConsentServiceClient<InterceptedService<Channel, Auth>>;

/// The protobuf type named in ResourceInfo for directives.
pub(crate) const RESOURCE_TYPE: &str = "carerecord.consent.v1.ConsentDirective";
/// Every data class the contract defines, sorted.
pub(crate) const ALL_CLASSES: [&str; 7] = [
    "genomic",
    "hiv",
    "mental-health",
    "reproductive-health",
    "safeguarding",
    "sexual-health",
    "substance-misuse",
];

pub(crate) fn client(ctx: &Ctx) -> Client {
    ConsentServiceClient::with_interceptor(ctx.channel.clone(), ctx.auth.clone())
        .max_decoding_message_size(16 << 20)
}

/// The requester recording directives (user_id and organisation_ods_code set, as required).
pub(crate) fn recorder() -> Requester {
    Requester {
        user_id: "conformance-kit-recorder".into(),
        organisation_ods_code: "X26".into(),
        role_code: "R8000".into(),
        display_name: "carerecord conformance kit".into(),
    }
}

/// A requester asking for a decision.
pub(crate) fn reader(ods: &str, role: &str) -> Requester {
    Requester {
        user_id: "conformance-kit-reader".into(),
        organisation_ods_code: ods.into(),
        role_code: role.into(),
        display_name: "carerecord conformance kit".into(),
    }
}

/// The patient themselves as requester: a user id, no organisation and no role.
pub(crate) fn the_patient() -> Requester {
    Requester {
        user_id: "conformance-kit-patient".into(),
        ..Default::default()
    }
}

pub(crate) fn now_minus_days(days: i64) -> Timestamp {
    crate::records::seconds_from_now(-days * 86_400)
}

/// Midnight UTC on 1 January of `year`.
pub(crate) fn year(y: i64) -> Timestamp {
    // Days from 1970 to 1 January of y (proleptic Gregorian).
    let days_before =
        |y: i64| 365 * (y - 1970) + ((y - 1969) / 4) - ((y - 1901) / 100) + ((y - 1601) / 400);
    Timestamp {
        seconds: days_before(y) * 86_400,
        nanos: 0,
    }
}

pub(crate) fn period(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<Period> {
    Some(Period { start, end })
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn actor(ods: &str, role: &str) -> ProvisionActor {
    ProvisionActor {
        organisation_ods_code: ods.into(),
        role_code: role.into(),
        user_id: String::new(),
    }
}

/// A provision covering the given data classes.
pub(crate) fn classes(v: &[&str]) -> Provision {
    Provision {
        data_classes: strings(v),
        ..Default::default()
    }
}

/// An ACTIVE directive for `patient_id` with the given base decision and provisions.
pub(crate) fn directive(
    patient_id: &str,
    decision: ConsentDecision,
    provisions: Vec<Provision>,
) -> ConsentDirective {
    ConsentDirective {
        patient_id: patient_id.to_owned(),
        status: ConsentDirectiveStatus::Active as i32,
        decision: decision as i32,
        provisions,
        date_time: Some(now_minus_days(1)),
        ..Default::default()
    }
}

pub(crate) fn create_request(d: ConsentDirective) -> CreateConsentDirectiveRequest {
    CreateConsentDirectiveRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        directive: Some(d),
        requester: Some(recorder()),
    }
}

/// Creates a directive, requiring success.
pub(crate) async fn create(ctx: &Ctx, d: ConsentDirective) -> TestResult<ConsentDirective> {
    let response = ok(
        client(ctx)
            .create_consent_directive(create_request(d))
            .await,
        "CreateConsentDirective",
    )?;
    let d = present(
        response.directive,
        "CreateConsentDirective: the response has no directive",
    )?;
    ctx.created("consent directive", &d.directive_id);
    Ok(d)
}

/// The worked example of the contract (Provision's comment).
pub(crate) fn worked_example(patient_id: &str) -> ConsentDirective {
    directive(
        patient_id,
        ConsentDecision::Permit,
        vec![
            Provision {
                data_classes: strings(&["mental-health"]),
                provisions: vec![Provision {
                    actors: vec![actor("RXA", "")],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Provision {
                actors: vec![actor("X11", "")],
                data_period: period(None, Some(year(2020))),
                ..Default::default()
            },
        ],
    )
}

/// A DRAFT directive for `patient_id` with a DENY base and no provisions.
pub(crate) fn draft(patient_id: &str) -> ConsentDirective {
    ConsentDirective {
        status: ConsentDirectiveStatus::Draft as i32,
        ..directive(patient_id, ConsentDecision::Deny, vec![])
    }
}

pub(crate) fn with_status(
    dir: &ConsentDirective,
    status: ConsentDirectiveStatus,
) -> ConsentDirective {
    ConsentDirective {
        status: status as i32,
        ..dir.clone()
    }
}

/// Moves a directive to `status` (a new version), requiring success.
pub(crate) async fn set_status(
    ctx: &Ctx,
    dir: &ConsentDirective,
    status: ConsentDirectiveStatus,
) -> TestResult<ConsentDirective> {
    update(ctx, with_status(dir, status), &dir.etag, &["status"]).await
}

/// NOT_FOUND with ResourceInfo naming the directive.
pub(crate) fn unknown(directive_id: &str) -> Refusal {
    Refusal::not_found(RESOURCE_TYPE, directive_id)
}

pub(crate) async fn get(ctx: &Ctx, id: &str, version: i64) -> TestResult<ConsentDirective> {
    let r = ok(
        client(ctx)
            .get_consent_directive(GetConsentDirectiveRequest {
                directive_id: id.into(),
                version,
            })
            .await,
        "GetConsentDirective",
    )?;
    present(r.directive, "GetConsentDirective: no directive")
}

/// A change of a directive's provisions to one covering `data_classes` (with mask `provisions`).
pub(crate) fn provisions_of(directive_id: &str, data_classes: &[&str]) -> ConsentDirective {
    ConsentDirective {
        directive_id: directive_id.to_owned(),
        provisions: vec![classes(data_classes)],
        ..Default::default()
    }
}

/// Every directive of a patient on the first page of a default listing.
pub(crate) async fn directives_of(
    ctx: &Ctx,
    patient_id: &str,
) -> TestResult<Vec<ConsentDirective>> {
    let listed = ok(
        client(ctx)
            .list_consent_directives(list_request(patient_id))
            .await,
        "ListConsentDirectives",
    )?;
    Ok(listed.directives)
}

/// A listing of one patient's directives, all statuses, default page size.
pub(crate) fn list_request(patient_id: &str) -> ListConsentDirectivesRequest {
    ListConsentDirectivesRequest {
        patient_id: patient_id.to_owned(),
        ..Default::default()
    }
}

pub(crate) fn update_request(
    dir: ConsentDirective,
    etag: &str,
    paths: &[&str],
) -> UpdateConsentDirectiveRequest {
    UpdateConsentDirectiveRequest {
        directive: Some(dir),
        update_mask: Some(FieldMask {
            paths: strings(paths),
        }),
        etag: etag.into(),
        requester: Some(recorder()),
    }
}

pub(crate) async fn update(
    ctx: &Ctx,
    dir: ConsentDirective,
    etag: &str,
    paths: &[&str],
) -> TestResult<ConsentDirective> {
    let r = ok(
        client(ctx)
            .update_consent_directive(update_request(dir, etag, paths))
            .await,
        "UpdateConsentDirective",
    )?;
    present(r.directive, "UpdateConsentDirective: no directive")
}

/// A revocation of `directive_id` at `etag`, recorded by the kit's recorder.
pub(crate) fn revoke_request(
    directive_id: &str,
    etag: &str,
    reason: &str,
) -> RevokeConsentDirectiveRequest {
    RevokeConsentDirectiveRequest {
        directive_id: directive_id.into(),
        etag: etag.into(),
        reason: reason.into(),
        requester: Some(recorder()),
    }
}

/// The patient's national data opt-out as GetNationalDataOptOut returns it, requiring success.
pub(crate) async fn opt_out_of(ctx: &Ctx, pid: &str) -> TestResult<Option<NationalDataOptOut>> {
    let request = GetNationalDataOptOutRequest {
        patient_id: pid.to_owned(),
    };
    let response = ok(
        client(ctx).get_national_data_opt_out(request).await,
        "GetNationalDataOptOut",
    )?;
    Ok(response.national_data_opt_out)
}

pub(crate) fn opt_out_request(
    patient_id: &str,
    opted_out: bool,
    etag: &str,
) -> SetNationalDataOptOutRequest {
    SetNationalDataOptOutRequest {
        patient_id: patient_id.into(),
        opted_out,
        etag: etag.into(),
        requester: Some(recorder()),
        ..SetNationalDataOptOutRequest::default()
    }
}

pub(crate) async fn set_opt_out(
    ctx: &Ctx,
    pid: &str,
    opted_out: bool,
    etag: &str,
) -> TestResult<NationalDataOptOut> {
    let r = ok(
        client(ctx)
            .set_national_data_opt_out(opt_out_request(pid, opted_out, etag))
            .await,
        "SetNationalDataOptOut",
    )?;
    ctx.created("national data opt-out", pid);
    present(
        r.national_data_opt_out,
        "SetNationalDataOptOut: no national_data_opt_out",
    )
}

/// Records, as the national service's answer of a moment ago, that the patient has not opted out.
pub(crate) async fn checked_not_opted_out(ctx: &Ctx, pid: &str) -> TestResult {
    let request = RecordNationalDataOptOutCheckRequest {
        checked_patient_ids: vec![pid.to_owned()],
        not_opted_out_patient_ids: vec![pid.to_owned()],
        check_time: Some(crate::records::seconds_from_now(-1)),
        source: "carerecord conformance kit".into(),
        requester: Some(recorder()),
    };
    ok(
        client(ctx)
            .record_national_data_opt_out_check(request)
            .await,
        "RecordNationalDataOptOutCheck",
    )?;
    ctx.created("national data opt-out", pid);
    Ok(())
}

pub(crate) fn ask(pid: &str, purpose: &str) -> DecideRequest {
    DecideRequest {
        patient_id: pid.into(),
        requester: Some(reader("A81001", "R8000")),
        purpose_of_use: purpose.into(),
        ..Default::default()
    }
}

pub(crate) fn ask_as(pid: &str, purpose: &str, ods: &str, role: &str) -> DecideRequest {
    DecideRequest {
        requester: Some(reader(ods, role)),
        ..ask(pid, purpose)
    }
}

/// The patient asking for their own record (PATRQT), for the given data classes.
pub(crate) fn own_request(pid: &str, data_classes: &[&str]) -> DecideRequest {
    DecideRequest {
        requester: Some(the_patient()),
        data_classes: strings(data_classes),
        ..ask(pid, "PATRQT")
    }
}

/// The request as if asked at midnight UTC on 1 January of `y`.
pub(crate) fn at(mut r: DecideRequest, y: i64) -> DecideRequest {
    r.time = Some(year(y));
    r
}

/// The id of the platform rule that decided part of a decision, if one did.
pub(crate) fn platform_rule(decision: &Decision) -> Option<String> {
    decision
        .reasons
        .iter()
        .find(|r| r.source == DecisionSource::PlatformPolicy as i32)
        .map(|r| r.policy_id.clone())
}

pub(crate) async fn decide(ctx: &Ctx, request: DecideRequest) -> TestResult<Decision> {
    let response = ok(client(ctx).decide(request).await, "Decide")?;
    present(response.decision, "Decide: the response has no decision")
}
