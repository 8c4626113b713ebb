//! SetPatientConfidentiality: the confidentiality marker (PDS "restricted"), changed only by
//! requesters in the deployment's confidentiality roles, each change a patient version.

use carerecord_contracts::identity::v1::{
    PatientConfidentiality, SetPatientConfidentialityRequest, SetPatientConfidentialityResponse,
};
use carerecord_platform::errors::Violations;

use super::IdentityService;
use super::request::{check_reason, check_requester, required_id, valid};
use crate::domain::patient::with_confidentiality;
use crate::error::Error;

/// The marker a request asks for, or a violation of `confidentiality`.
fn level(raw: i32, v: &mut Violations) -> Option<PatientConfidentiality> {
    match PatientConfidentiality::try_from(raw) {
        Ok(level @ (PatientConfidentiality::Restricted | PatientConfidentiality::Unrestricted)) => {
            Some(level)
        }
        Ok(PatientConfidentiality::Unspecified) => {
            v.add(
                "confidentiality",
                "is required: PATIENT_CONFIDENTIALITY_RESTRICTED or PATIENT_CONFIDENTIALITY_UNRESTRICTED",
            );
            None
        }
        Err(_) => {
            v.add("confidentiality", format!("{raw} is not a known value"));
            None
        }
    }
}

impl IdentityService {
    pub(super) async fn set_confidentiality(
        &self,
        request: SetPatientConfidentialityRequest,
    ) -> Result<SetPatientConfidentialityResponse, Error> {
        let mut v = Violations::new();
        let id = required_id(&mut v, "patient_id", &request.patient_id);
        let level = level(request.confidentiality, &mut v);
        if request.etag.trim().is_empty() {
            v.add("etag", "is required");
        }
        check_reason(&request.reason, true, &mut v);
        check_requester(request.requester.as_ref(), &mut v);
        let (id, level) = valid(v, id.zip(level))?;
        let requester = request.requester.unwrap_or_default();
        let roles = &self.settings.confidentiality_roles;
        if !roles.contains(&requester.role_code) {
            return Err(Error::RoleNotPermitted {
                required_roles: roles.join(","),
            });
        }
        let current = self.changeable(&id, &request.etag).await?;
        let reason = request.reason.trim();
        let now = carerecord_platform::db::now_micros();
        let Some(new) = with_confidentiality(&current.patient, level, &requester, reason, now)
        else {
            return Ok(SetPatientConfidentialityResponse {
                patient: Some(current.patient),
            });
        };
        self.store
            .update(
                &current,
                &new,
                &["confidentiality".to_owned()],
                &requester,
                reason,
            )
            .await?;
        self.written();
        tracing::info!(patient = %new.patient_id, restricted = level == PatientConfidentiality::Restricted, "confidentiality marker changed");
        Ok(SetPatientConfidentialityResponse { patient: Some(new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_required_and_known() {
        let mut v = Violations::new();
        assert_eq!(level(2, &mut v), Some(PatientConfidentiality::Restricted));
        assert_eq!(level(1, &mut v), Some(PatientConfidentiality::Unrestricted));
        assert!(v.is_empty());
        assert_eq!(level(0, &mut v), None);
        assert_eq!(level(9, &mut v), None);
        assert_eq!(v.iter().count(), 2);
    }
}
