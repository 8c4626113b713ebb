//! Conformance tests of `carerecord.consent.v1.ConsentService`.
//!
//! Test ids: `CON-<AREA>-<NNN>`; the decision table is `CON-DT-<NN>`. Every test works on freshly
//! invented patient ids, so directives and opt-outs it records affect no one else.

mod decisions;
mod directives;

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, CreateConsentDirectiveRequest,
    Provision, ProvisionActor,
};
use prost_types::Timestamp;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Auth, Case, Ctx, TestResult, fail, ok};

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

pub(crate) fn cases() -> Vec<Case> {
    let mut cases = directives::cases();
    cases.extend(decisions::cases());
    cases
}

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
    match response.directive {
        Some(d) => {
            ctx.created("consent directive", &d.directive_id);
            Ok(d)
        }
        None => fail!("CreateConsentDirective: the response has no directive"),
    }
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
