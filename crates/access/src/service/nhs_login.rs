//! The patient an NHS login token acts for: its NHS number resolved through identity (following
//! merges), only at identity proofing level P9. Resolutions are shared with every other call's
//! (`resolutions.rs`): a patient app's calls do not each ask identity again, and none acts on a
//! resolution older than an acknowledged identity write.

use super::AccessService;
use super::parse::Reference;
use crate::domain::auth::NhsLogin;
use crate::domain::claims::REQUIRED_PROOFING_LEVEL;
use crate::error::Error;

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
        match self.resolve(&Reference::Nhs(nhs_number)).await {
            Ok(resolved) => Ok(resolved.id().to_ascii_lowercase()),
            Err(Error::PatientNotFound { .. }) => Err(Error::PatientContextUnresolved {
                cause: "not_registered",
            }),
            Err(Error::PatientMatchAmbiguous) => {
                Err(Error::PatientContextUnresolved { cause: "ambiguous" })
            }
            Err(other) => Err(other),
        }
    }
}
