//! Starting the service in-process, and request builders.

use carerecord_consent::{Application, ConsentService, PlatformPolicies};
use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::consent::v1::consent_service_client::ConsentServiceClient;
use carerecord_contracts::consent::v1::*;
use carerecord_platform::db::{Database, DatabaseConfig};
use carerecord_platform::page_token::PageTokens;
use carerecord_platform::testing::{TestDatabase, spawn_on};
use prost_types::Timestamp;
use tonic::Status;
use tonic::transport::Channel;

pub type Client = ConsentServiceClient<Channel>;

/// A running service; stopped when dropped.
pub struct TestApp {
    pub client: Client,
    _app: carerecord_platform::testing::TestApp,
}

/// Runs `test` against a service of its own on each backend.
pub async fn on_each_backend(test: impl AsyncFn(&mut Client)) {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        test(&mut app.client).await;
    }
}

pub async fn spawn_app(db_url: &str) -> TestApp {
    spawn_app_with(db_url, &[]).await
}

pub async fn spawn_app_with(db_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let settings = [("CARERECORD_TOKEN_SECRET", "test-secret-0123456789")];
    let app = spawn_on::<Application>(db_url, &settings, extra).await;
    TestApp {
        client: ConsentServiceClient::new(app.channel.clone()),
        _app: app,
    }
}

/// The service itself, called without a server: its own statuses, before the platform's layer
/// bounds every status on the wire.
pub async fn direct_service(db_url: &str) -> ConsentService {
    use carerecord_platform::app::Service;
    let config = DatabaseConfig::new(db_url).expect("database url");
    let database = Database::connect(&config, Application::migrations())
        .await
        .expect("database");
    let policies = PlatformPolicies::embedded().expect("embedded policies");
    ConsentService::new(
        database,
        std::sync::Arc::new(policies),
        PageTokens::new(b"test-secret-0123456789"),
    )
}

pub fn requester() -> Requester {
    Requester {
        user_id: "555000111222".into(),
        organisation_ods_code: "A81001".into(),
        role_code: "R8000".into(),
        display_name: "Dr Test".into(),
    }
}

pub fn requester_at(ods: &str, role: &str) -> Requester {
    Requester {
        organisation_ods_code: ods.into(),
        role_code: role.into(),
        ..requester()
    }
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

pub fn period(start: Option<i64>, end: Option<i64>) -> Option<Period> {
    Some(Period {
        start: start.and_then(ts),
        end: end.and_then(ts),
    })
}

/// 2020-01-01T00:00:00Z.
pub const Y2020: i64 = 1_577_836_800;

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub fn actor(ods: &str) -> ProvisionActor {
    ProvisionActor {
        organisation_ods_code: ods.into(),
        ..Default::default()
    }
}

/// An ACTIVE directive for `patient_id`.
pub fn directive(
    patient_id: &str,
    decision: ConsentDecision,
    provisions: Vec<Provision>,
) -> ConsentDirective {
    ConsentDirective {
        patient_id: patient_id.into(),
        status: ConsentDirectiveStatus::Active as i32,
        decision: decision as i32,
        provisions,
        date_time: ts(1_700_000_000),
        grantor_role: GrantorRole::Patient as i32,
        policy_text: "Patient asked at the surgery".into(),
        ..Default::default()
    }
}

/// The contract's worked example.
pub fn worked_example(patient_id: &str) -> ConsentDirective {
    directive(
        patient_id,
        ConsentDecision::Permit,
        vec![
            Provision {
                data_classes: strings(&["mental-health"]),
                provisions: vec![Provision {
                    actors: vec![actor("RXA")],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Provision {
                actors: vec![actor("X26")],
                data_period: period(None, Some(Y2020)),
                ..Default::default()
            },
        ],
    )
}

/// A directive: its latest version when `version` is 0.
pub async fn get_directive(
    client: &mut Client,
    directive_id: &str,
    version: i64,
) -> Result<ConsentDirective, Status> {
    let response = client
        .get_consent_directive(GetConsentDirectiveRequest {
            directive_id: directive_id.into(),
            version,
        })
        .await?;
    Ok(response.into_inner().directive.expect("directive"))
}

/// The first page of a patient's directives.
pub async fn list_directives(client: &mut Client, patient_id: &str) -> Vec<ConsentDirective> {
    client
        .list_consent_directives(ListConsentDirectivesRequest {
            patient_id: patient_id.into(),
            ..Default::default()
        })
        .await
        .expect("list directives")
        .into_inner()
        .directives
}

pub async fn update(
    client: &mut Client,
    request: UpdateConsentDirectiveRequest,
) -> Result<ConsentDirective, Status> {
    let response = client.update_consent_directive(request).await?;
    Ok(response.into_inner().directive.expect("directive"))
}

pub async fn revoke(
    client: &mut Client,
    request: RevokeConsentDirectiveRequest,
) -> Result<ConsentDirective, Status> {
    let response = client.revoke_consent_directive(request).await?;
    Ok(response.into_inner().directive.expect("directive"))
}

pub async fn get_opt_out(
    client: &mut Client,
    patient_id: &str,
) -> Result<NationalDataOptOut, Status> {
    let response = client
        .get_national_data_opt_out(GetNationalDataOptOutRequest {
            patient_id: patient_id.into(),
        })
        .await?;
    Ok(response
        .into_inner()
        .national_data_opt_out
        .expect("opt-out"))
}

pub async fn set_opt_out(
    client: &mut Client,
    request: SetNationalDataOptOutRequest,
) -> Result<NationalDataOptOut, Status> {
    let response = client.set_national_data_opt_out(request).await?;
    Ok(response
        .into_inner()
        .national_data_opt_out
        .expect("opt-out"))
}

/// The national service's answer, checked just now: `checked` patients were sent, all but
/// `opted_out` came back.
pub fn check_answer<S: AsRef<str>>(
    checked: &[S],
    opted_out: &[S],
) -> RecordNationalDataOptOutCheckRequest {
    let out: Vec<&str> = opted_out.iter().map(AsRef::as_ref).collect();
    RecordNationalDataOptOutCheckRequest {
        checked_patient_ids: checked.iter().map(|p| p.as_ref().to_owned()).collect(),
        not_opted_out_patient_ids: checked
            .iter()
            .map(AsRef::as_ref)
            .filter(|id| !out.contains(id))
            .map(str::to_owned)
            .collect(),
        check_time: Some(std::time::SystemTime::now().into()),
        source: "NDOP answer test-0001".into(),
        requester: Some(requester()),
    }
}

/// Records that a check just now found none of `patients` opted out, so research and planning may
/// use their data.
pub async fn checked(client: &mut Client, patients: &[&str]) {
    client
        .record_national_data_opt_out_check(check_answer(patients, &[]))
        .await
        .expect("record a check");
}

pub async fn create(client: &mut Client, directive: ConsentDirective) -> ConsentDirective {
    client
        .create_consent_directive(CreateConsentDirectiveRequest {
            request_id: new_id(),
            directive: Some(directive),
            requester: Some(requester()),
        })
        .await
        .expect("create")
        .into_inner()
        .directive
        .expect("directive")
}

pub fn decide_request(patient_id: &str, requester: Requester, purpose: &str) -> DecideRequest {
    DecideRequest {
        patient_id: patient_id.into(),
        requester: Some(requester),
        purpose_of_use: purpose.into(),
        ..Default::default()
    }
}

pub async fn decide(client: &mut Client, request: DecideRequest) -> Decision {
    client
        .decide(request)
        .await
        .expect("decide")
        .into_inner()
        .decision
        .expect("decision")
}

/// The decisions of a BatchDecide, in the order of its patients.
pub async fn batch_decide(client: &mut Client, request: BatchDecideRequest) -> Vec<Decision> {
    client
        .batch_decide(request)
        .await
        .expect("batch decide")
        .into_inner()
        .decisions
}

pub use carerecord_platform::testing::{assert_invalid, reason, resource_info, violations};

/// (source, effect, directive_id, provision_path, policy_id) of each reason.
pub fn reasons(
    decision: &Decision,
) -> Vec<(DecisionSource, DecisionOutcome, String, String, String)> {
    decision
        .reasons
        .iter()
        .map(|r| {
            (
                r.source(),
                r.effect(),
                r.directive_id.clone(),
                r.provision_path.clone(),
                r.policy_id.clone(),
            )
        })
        .collect()
}

pub fn obligation_types(decision: &Decision) -> Vec<ObligationType> {
    decision.obligations.iter().map(|o| o.r#type()).collect()
}
