//! The web console under `carerecord up`: served on its own port in front of data access, with the
//! development sign-in offering the demo's users (a privacy officer, a clinician and the first two
//! demo patients) with development tokens.

use std::sync::Arc;
use std::time::Duration;

use carerecord_access::dev_token::{DevToken, mint};
use carerecord_console::dev_sign_in::{DevSignIn, DevUser};

use crate::demo::DemoPatient;

/// How long a development sign-in lasts.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The demo's users: staff at the demo trust (RR8), and the first two demo patients.
pub fn demo_users(patients: &[DemoPatient]) -> Vec<DevUser> {
    let mut users = vec![
        DevUser {
            label: "Priya Shah, privacy officer at Leeds Teaching Hospitals (RR8)".into(),
            subject: "demo-privacy-officer".into(),
            organisation_ods_code: "RR8".into(),
            role_code: "R0001".into(),
            display_name: "Priya Shah".into(),
            scope: "user/AuditEvent.ru".into(),
            ..Default::default()
        },
        DevUser {
            label: "Dr Alex Example, clinician at Leeds Teaching Hospitals (RR8)".into(),
            subject: "demo-clinician".into(),
            organisation_ods_code: "RR8".into(),
            role_code: "R8000".into(),
            display_name: "Dr Alex Example".into(),
            scope: "user/*.rs".into(),
            ..Default::default()
        },
    ];
    for patient in patients.iter().take(2) {
        users.push(DevUser {
            label: format!(
                "{}, patient (NHS number {})",
                patient.name, patient.nhs_number
            ),
            subject: format!("demo-patient-{}", patient.patient_id),
            display_name: patient.name.clone(),
            scope: "patient/*.rs patient/AuditEvent.r patient/Consent.cru".into(),
            patient: patient.patient_id.clone(),
            ..Default::default()
        });
    }
    users
}

/// The development sign-in for `users`, minting with the development key for data access's default
/// audience.
pub fn dev_sign_in(users: Vec<DevUser>) -> DevSignIn {
    DevSignIn {
        users,
        mint: Arc::new(|user: &DevUser| {
            mint(&DevToken {
                subject: user.subject.clone(),
                organisation_ods_code: user.organisation_ods_code.clone(),
                role_code: user.role_code.clone(),
                display_name: user.display_name.clone(),
                client_id: carerecord_console::dev_sign_in::CLIENT_ID.into(),
                scope: user.scope.clone(),
                patient: user.patient.clone(),
                audience: carerecord_access::config::DEFAULT_AUDIENCE.into(),
                ttl_seconds: TOKEN_LIFETIME.as_secs(),
            })
        }),
        token_lifetime: TOKEN_LIFETIME,
    }
}
