//! Asking the consent module: one decision, or a batch for many patients, with the requester and
//! legal basis as consent knows them.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::consent::v1 as consent;
use tonic::Status;

use super::AccessService;
use crate::cache::Checked;
use crate::domain::auth::Caller;
use crate::error::{Dependency, Error};
use crate::upstream::unavailable;

/// The access legal basis as the consent module knows it (bases consent has no code for, vital
/// interests and subject access, are recorded in the audit log and passed as unspecified).
pub fn consent_legal_basis(basis: i32) -> consent::LegalBasis {
    match api::LegalBasis::try_from(basis) {
        Ok(api::LegalBasis::DirectCare) => consent::LegalBasis::DirectCare,
        Ok(api::LegalBasis::ExplicitConsent) => consent::LegalBasis::ExplicitConsent,
        Ok(api::LegalBasis::LegalObligation) => consent::LegalBasis::LegalRequirement,
        Ok(api::LegalBasis::Section251Support) => consent::LegalBasis::Section251Support,
        _ => consent::LegalBasis::Unspecified,
    }
}

/// The most patients one BatchDecide carries.
pub const DECIDE_BATCH: usize = 10_000;

/// What a batch of decisions is asked for.
pub struct Question<'a> {
    pub caller: &'a Caller,
    pub purpose: &'a str,
    pub legal_basis: i32,
    pub study_id: &'a str,
}

impl AccessService {
    /// The requester sent to consent. A patient acting for themselves (a patient-facing token) is
    /// sent with no organisation or role, as consent's contract defines for PATRQT; a system token
    /// without a role gets the deployment's system role, since consent requires one.
    /// Consent decides for staff and systems acting for an organisation, or for a patient acting
    /// for themselves; a user or system token without an organisation cannot be decided for.
    fn check_decidable(caller: &Caller) -> Result<(), Error> {
        if !super::read::is_patient_facing(caller) && caller.organisation_ods_code.is_empty() {
            return Err(Error::OrganisationMissing);
        }
        Ok(())
    }

    pub(super) fn consent_requester(&self, caller: &Caller) -> common::Requester {
        let mut requester = caller.requester();
        if super::read::is_patient_facing(caller) {
            requester.organisation_ods_code.clear();
            requester.role_code.clear();
        } else if requester.role_code.is_empty() {
            requester.role_code = self.inner.config.system_role_code.clone();
        }
        requester
    }

    /// Consent's decision for `caller` on the patient. `checked`: a check of the kept decisions
    /// begun after the call arrived, if the caller ran one alongside other work; else one is run.
    pub(super) async fn decide(
        &self,
        caller: &Caller,
        patient_id: &str,
        purpose: &str,
        legal_basis: i32,
        break_glass_reason: &str,
        checked: Option<Checked>,
    ) -> Result<consent::Decision, Error> {
        Self::check_decidable(caller)?;
        let request = consent::DecideRequest {
            patient_id: patient_id.to_owned(),
            requester: Some(self.consent_requester(caller)),
            purpose_of_use: purpose.to_owned(),
            legal_basis: consent_legal_basis(legal_basis) as i32,
            break_glass_reason: break_glass_reason.to_owned(),
            ..Default::default()
        };
        let response = self.decide_reusing(request, checked).await?;
        response
            .decision
            .ok_or_else(|| unavailable(Dependency::Consent, &Status::internal("decision missing")))
    }

    /// One decision per patient of `patients` (in chunks), paired with the patient.
    pub(super) async fn decide_each(
        &self,
        question: &Question<'_>,
        patients: &[String],
    ) -> Result<Vec<(String, consent::Decision)>, Error> {
        Self::check_decidable(question.caller)?;
        let mut decided = Vec::with_capacity(patients.len());
        for chunk in patients.chunks(DECIDE_BATCH) {
            let request = consent::BatchDecideRequest {
                patient_ids: chunk.to_vec(),
                requester: Some(self.consent_requester(question.caller)),
                purpose_of_use: question.purpose.to_owned(),
                legal_basis: consent_legal_basis(question.legal_basis) as i32,
                study_id: question.study_id.to_owned(),
                ..Default::default()
            };
            let response = self.inner.upstream.batch_decide(request).await?;
            if response.decisions.len() != chunk.len() {
                return Err(unavailable(
                    Dependency::Consent,
                    &Status::internal("decision count differs from the batch"),
                ));
            }
            decided.extend(chunk.iter().cloned().zip(response.decisions));
        }
        Ok(decided)
    }
}
