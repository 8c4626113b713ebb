//! The web console in a real browser, on both backends: `web/test/console.browser.mjs` drives
//! Debian's Chromium (headless, playwright-core) through the console in front of this sandbox's data
//! access, signing in with the development sign-in (authorization code with PKCE) as a clinician, a
//! privacy officer and patients, with an axe check of every page and screenshots under
//! `target/console-screenshots/<backend>/`. First it checks that the committed bundle
//! (`crates/console/assets/`) is what `web/` builds, and runs the front end's unit tests
//! (`web/test/unit.test.mjs`: PKCE, the authorization request, inclusion proofs). `scripts/browser-install.sh` installs Chromium
//! and the npm packages; the test fails (never skips) when it cannot.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use carerecord_access::dev_token::{DevToken, mint};
use carerecord_console::dev_sign_in::{CLIENT_ID, DevSignIn, DevUser};
use carerecord_e2e::{Overrides, Platform};
use carerecord_platform::app::ServiceConfiguration;
use carerecord_platform::env::Env;

use crate::{repo_root, run};

fn users(patient: &str, patient_name: &str, other: &str) -> Vec<DevUser> {
    let staff = |label: &str, subject: &str, role: &str, name: &str, scope: &str| DevUser {
        label: label.into(),
        subject: subject.into(),
        organisation_ods_code: "RR8".into(),
        role_code: role.into(),
        display_name: name.into(),
        scope: scope.into(),
        ..Default::default()
    };
    let patient_user = |label: String, id: &str| DevUser {
        label,
        subject: format!("e2e-patient-{id}"),
        display_name: patient_name.into(),
        scope: "patient/*.rs patient/AuditEvent.r patient/Consent.cru".into(),
        patient: id.into(),
        ..Default::default()
    };
    vec![
        staff(
            "Priya Shah, privacy officer",
            "e2e-privacy-officer",
            "R0001",
            "Priya Shah",
            "user/AuditEvent.ru",
        ),
        staff(
            "Sam Jones, privacy officer",
            "e2e-second-privacy-officer",
            "R0001",
            "Sam Jones",
            "user/AuditEvent.ru",
        ),
        staff(
            "Dr Alex Example, clinician",
            "e2e-clinician",
            "R8000",
            "Dr Alex Example",
            "user/*.rs",
        ),
        patient_user(format!("{patient_name}, patient"), patient),
        patient_user("Another patient".into(), other),
    ]
}

/// Starts the console in front of `access` offering `users`; its URL.
async fn start_console(platform: &Platform, users: Vec<DevUser>) -> String {
    let env = Env::from_pairs([
        ("CARERECORD_LISTEN_ADDR", "127.0.0.1:0"),
        ("CARERECORD_ACCESS_ENDPOINT", platform.access.as_str()),
    ]);
    let mut config = carerecord_console::Config::from_env(&env).expect("console config");
    config.console.dev_sign_in = Some(DevSignIn {
        users,
        mint: Arc::new(|user: &DevUser| {
            mint(&DevToken {
                subject: user.subject.clone(),
                organisation_ods_code: user.organisation_ods_code.clone(),
                role_code: user.role_code.clone(),
                display_name: user.display_name.clone(),
                client_id: CLIENT_ID.into(),
                scope: user.scope.clone(),
                patient: user.patient.clone(),
                audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
                ttl_seconds: 3600,
            })
        }),
        token_lifetime: Duration::from_secs(3600),
    });
    let running = carerecord_platform::app::start::<carerecord_console::Application>(config)
        .await
        .expect("the console starts");
    let url = format!("http://{}", running.local_addr());
    tokio::spawn(running.run(tokio_util::sync::CancellationToken::new()));
    url
}

/// `n` earlier lookups of the patient by a clinician, so their log runs to more than one page.
async fn earlier_lookups(platform: &Platform, nhs_number: &str, n: usize) {
    use carerecord_contracts::access::v1 as api;
    let token = carerecord_e2e::token("R8000", "user/*.rs");
    let mut access = platform.access_client().await;
    for _ in 0..n {
        let request = api::FindPatientRequest {
            patient: Some(api::PatientReference {
                reference: Some(api::patient_reference::Reference::NhsNumber(
                    nhs_number.into(),
                )),
            }),
            purpose_of_use: "TREAT".into(),
        };
        access
            .find_patient(carerecord_e2e::authed(request, &token))
            .await
            .expect("find the patient");
    }
}

/// The first privacy officer, also a clinician, breaks glass on `patient_id`: not theirs to review.
async fn own_emergency_access(platform: &Platform, patient_id: &str) {
    use carerecord_contracts::access::v1 as api;
    let token = mint(&DevToken {
        subject: "e2e-privacy-officer".into(),
        organisation_ods_code: "RR8".into(),
        role_code: "R8000".into(),
        display_name: "Priya Shah".into(),
        client_id: "e2e".into(),
        scope: "user/*.rs".into(),
        audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
        ttl_seconds: 600,
        ..Default::default()
    })
    .expect("mint");
    let request = api::BreakGlassReadPatientRecordRequest {
        patient: Some(api::PatientReference {
            reference: Some(api::patient_reference::Reference::PatientId(
                patient_id.into(),
            )),
        }),
        reason: "Covering the ED shift: needs the allergy list".into(),
        ..Default::default()
    };
    platform
        .access_client()
        .await
        .break_glass_read_patient_record(carerecord_e2e::authed(request, &token))
        .await
        .expect("break glass");
}

/// Marks a patient restricted in identity, as a privacy officer would: every access to their record
/// then joins the review queue.
async fn restrict(platform: &Platform, patient_id: &str) {
    use carerecord_contracts::identity::v1 as identity;
    let mut ids = platform.identity_client().await;
    let patient = ids
        .get_patient(identity::GetPatientRequest {
            patient_id: patient_id.into(),
        })
        .await
        .expect("the patient")
        .into_inner()
        .patient
        .expect("patient");
    ids.set_patient_confidentiality(identity::SetPatientConfidentialityRequest {
        patient_id: patient_id.into(),
        confidentiality: identity::PatientConfidentiality::Restricted as i32,
        etag: patient.etag,
        reason: "e2e: a restricted patient".into(),
        requester: Some(carerecord_contracts::common::v1::Requester {
            user_id: "e2e-privacy-officer".into(),
            organisation_ods_code: "RR8".into(),
            role_code: "R0001".into(),
            display_name: "Priya Shah".into(),
        }),
    })
    .await
    .expect("restrict the patient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    run(
        Path::new("scripts/browser-install.sh"),
        &[],
        &[],
        Duration::from_secs(900),
    )
    .await;
    let built = run(
        Path::new("scripts/console-build.sh"),
        &["--check"],
        &[],
        Duration::from_secs(300),
    )
    .await;
    println!("{built}");
    let unit = run(
        Path::new("node"),
        &["--test", "web/test/unit.test.mjs"],
        &[],
        Duration::from_secs(120),
    )
    .await;
    println!("{unit}");
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient, nhs_number) = platform.register_patient("Ada", "Browser").await;
        let (other, _) = platform.register_patient("Other", "Browser").await;
        platform.add_record(&patient, &[]).await;
        platform.add_record(&patient, &["mental-health"]).await;
        let (restricted, restricted_nhs) = platform.register_patient("Rowan", "Restricted").await;
        restrict(&platform, &restricted).await;
        own_emergency_access(&platform, &other).await;
        earlier_lookups(&platform, &nhs_number, 55).await;
        let console = start_console(&platform, users(&patient, "Ada Browser", &other)).await;
        let out = repo_root().join(format!(
            "target/console-screenshots/{}",
            format!("{backend:?}").to_lowercase()
        ));
        let report = run(
            Path::new("node"),
            &["web/test/console.browser.mjs"],
            &[
                ("CONSOLE_URL", console),
                ("PATIENT_NHS", nhs_number),
                ("PATIENT_LABEL", "Ada Browser, patient".into()),
                ("OTHER_PATIENT_ID", other),
                ("RESTRICTED_NHS", restricted_nhs),
                ("OUT_DIR", out.display().to_string()),
            ],
            Duration::from_secs(300),
        )
        .await;
        println!("{backend:?}:\n{report}");
    }
}
