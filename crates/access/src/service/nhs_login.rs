//! The patient an NHS login token acts for: its NHS number resolved through identity (following
//! merges), only at identity proofing level P9. Answers are remembered for a minute, so a patient
//! app's calls do not each ask identity again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use carerecord_contracts::common::v1 as common;
use carerecord_contracts::identity::v1 as identity;
use tonic::Code;

use super::AccessService;
use super::parse::NHS_NUMBER_SYSTEM;
use crate::domain::auth::NhsLogin;
use crate::domain::claims::REQUIRED_PROOFING_LEVEL;
use crate::error::Error;

/// How long a resolved NHS number is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(60);
/// Most NHS numbers remembered; the memory is cleared when full.
const MAX_REMEMBERED: usize = 10_000;

/// NHS numbers resolved recently: the patient and when they were resolved.
#[derive(Debug, Default)]
pub(super) struct PatientContexts {
    resolved: Mutex<HashMap<String, (String, Instant)>>,
}

impl PatientContexts {
    fn get(&self, nhs_number: &str) -> Option<String> {
        let memory = self.resolved.lock().ok()?;
        let (patient_id, at) = memory.get(nhs_number)?;
        (at.elapsed() < REMEMBER_FOR).then(|| patient_id.clone())
    }

    fn put(&self, nhs_number: String, patient_id: String) {
        if let Ok(mut memory) = self.resolved.lock() {
            if memory.len() >= MAX_REMEMBERED {
                memory.clear();
            }
            memory.insert(nhs_number, (patient_id, Instant::now()));
        }
    }
}

impl AccessService {
    /// The patient_id an NHS login token acts for, or PERMISSION_DENIED: below P9
    /// (IDENTITY_PROOFING_INSUFFICIENT), or an NHS number missing, invalid, or naming no single
    /// patient (PATIENT_CONTEXT_UNRESOLVED).
    pub(super) async fn nhs_login_patient(&self, login: &NhsLogin) -> Result<String, Error> {
        if !login.proven() {
            return Err(Error::IdentityProofingInsufficient {
                level: login.proofing_level.clone(),
                required: REQUIRED_PROOFING_LEVEL,
            });
        }
        if login.nhs_number.trim().is_empty() {
            return Err(Error::PatientContextUnresolved {
                cause: "nhs_number_missing",
            });
        }
        let nhs_number =
            carerecord_platform::nhs_number::normalise(&login.nhs_number).map_err(|_| {
                Error::PatientContextUnresolved {
                    cause: "nhs_number_invalid",
                }
            })?;
        let contexts = &self.inner.patient_contexts;
        if let Some(patient_id) = contexts.get(&nhs_number) {
            return Ok(patient_id);
        }
        let request = identity::ResolveIdentifierRequest {
            identifier: Some(common::Identifier {
                system: NHS_NUMBER_SYSTEM.to_owned(),
                value: nhs_number.clone(),
            }),
        };
        let response = self
            .inner
            .upstream
            .resolve_identifier(request)
            .await
            .map_err(|failed| match failed.status.code() {
                Code::NotFound => Error::PatientContextUnresolved {
                    cause: "not_registered",
                },
                Code::FailedPrecondition => Error::PatientContextUnresolved { cause: "ambiguous" },
                _ => failed.into(),
            })?;
        let patient_id = response.patient_id.to_ascii_lowercase();
        contexts.put(nhs_number, patient_id.clone());
        Ok(patient_id)
    }
}
