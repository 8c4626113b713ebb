//! A patient's own choices through the front door: their consent directives (list, create,
//! withdraw) and their national data opt-out status, each asked of the consent module and audited.
//! A patient-facing token acts only for its own patient; staff act at the patient's request.

use carerecord_contracts::access::v1 as api;
use carerecord_contracts::common::v1 as common;
use carerecord_contracts::consent::v1 as consent;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::Position;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use super::AccessService;
use super::parse::{Reference, page_query, relayed_token, resume, validate_reference};
use super::patients::acting_as_patient;
use crate::domain::auth::Caller;
use crate::error::{Dependency, Error};
use crate::upstream::{Failed, unavailable};

/// The longest withdrawal reason (as consent accepts it).
const MAX_REASON_CHARS: usize = 1000;

/// The error for consent's answer to a directive call: what the caller can act on keeps its
/// meaning (violations of the directive they sent, a stale etag, an unknown directive), anything
/// else is a dependency failure.
fn consent_error(status: &Status, directive_id: &str) -> Error {
    match status.code() {
        Code::InvalidArgument => {
            let mut v = Violations::new();
            if let Some(bad) = status.get_details_bad_request() {
                for f in bad.field_violations {
                    if f.field.starts_with("directive") || f.field == "reason" {
                        v.add(f.field, f.description);
                    }
                }
            }
            if v.is_empty() {
                unavailable(Dependency::Consent, status)
            } else {
                Error::Invalid(v)
            }
        }
        Code::NotFound => Error::DirectiveNotFound(directive_id.to_owned()),
        Code::Aborted => Error::EtagMismatch,
        Code::FailedPrecondition => match status.get_details_error_info() {
            Some(info) if info.reason == "REQUEST_ID_REUSED" => Error::RequestIdReused,
            _ => Error::DirectiveNotActive(directive_id.to_owned()),
        },
        _ => unavailable(Dependency::Consent, status),
    }
}

fn actor_to_consent(a: &api::ConsentActor) -> consent::ProvisionActor {
    consent::ProvisionActor {
        organisation_ods_code: a.organisation_ods_code.clone(),
        role_code: a.role_code.clone(),
        user_id: a.user_id.clone(),
    }
}

fn provision_to_consent(p: &api::ConsentProvision) -> consent::Provision {
    consent::Provision {
        period: p.period,
        actors: p.actors.iter().map(actor_to_consent).collect(),
        purposes: p.purposes.clone(),
        data_classes: p.data_classes.clone(),
        study_ids: p.study_ids.clone(),
        data_period: p.data_period,
        provisions: p.provisions.iter().map(provision_to_consent).collect(),
    }
}

fn provision_from_consent(p: consent::Provision) -> api::ConsentProvision {
    api::ConsentProvision {
        period: p.period,
        actors: p
            .actors
            .into_iter()
            .map(|a| api::ConsentActor {
                organisation_ods_code: a.organisation_ods_code,
                role_code: a.role_code,
                user_id: a.user_id,
            })
            .collect(),
        purposes: p.purposes,
        data_classes: p.data_classes,
        study_ids: p.study_ids,
        data_period: p.data_period,
        provisions: p
            .provisions
            .into_iter()
            .map(provision_from_consent)
            .collect(),
    }
}

/// A directive as the front door shows it (the enums share their numbers with consent's).
fn directive_from_consent(d: consent::ConsentDirective) -> api::ConsentDirective {
    api::ConsentDirective {
        directive_id: d.directive_id,
        patient_id: d.patient_id,
        status: d.status,
        decision: d.decision,
        scope_purposes: d.scope_purposes,
        period: d.period,
        provisions: d
            .provisions
            .into_iter()
            .map(provision_from_consent)
            .collect(),
        date_time: d.date_time,
        grantor_role: d.grantor_role,
        grantor_display: d.grantor_display,
        policy_text: d.policy_text,
        recorded_by: d.recorded_by,
        updated_by: d.updated_by,
        revocation_reason: d.revocation_reason,
        revoke_time: d.revoke_time,
        version: d.version,
        etag: d.etag,
        create_time: d.create_time,
        update_time: d.update_time,
    }
}

impl AccessService {
    /// The requester consent records for a change: staff with their organisation, a patient with
    /// the deployment's organisation for patients' own changes and no role.
    fn consent_writer(
        &self,
        caller: &Caller,
        patient_facing: bool,
    ) -> Result<common::Requester, Error> {
        let mut requester = caller.requester();
        if patient_facing {
            requester.organisation_ods_code = self.inner.config.patient_service_ods_code.clone();
            requester.role_code.clear();
        } else if requester.organisation_ods_code.is_empty() {
            return Err(Error::OrganisationMissing);
        }
        Ok(requester)
    }

    pub(super) async fn list_consent_directives(
        &self,
        request: Request<api::ListConsentDirectivesRequest>,
    ) -> Result<api::ListConsentDirectivesResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        let limit = v.page_size(req.page_size);
        let query = page_query("consent-directives", &caller, &req);
        let tokens = &self.inner.config.page_tokens;
        let consent_token =
            resume(tokens, &query, &req.page_token, Position::read_text)?.unwrap_or_default();
        let Some(reference) = reference.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let action = api::AuditAction::ListConsentDirectives;
        self.patient_request(
            &caller,
            &trace,
            action,
            &reference,
            "Consent",
            async |resolved, leaf| {
                let listed = self
                    .inner
                    .upstream
                    .list_consent_directives(consent::ListConsentDirectivesRequest {
                        patient_id: resolved.id().to_owned(),
                        statuses: Vec::new(),
                        page_size: i32::try_from(limit.get()).unwrap_or(i32::MAX),
                        page_token: consent_token.clone(),
                    })
                    .await?;
                let directives: Vec<api::ConsentDirective> = listed
                    .directives
                    .into_iter()
                    .map(directive_from_consent)
                    .collect();
                leaf.returned_count = directives.len() as i64;
                let next_page_token = relayed_token(tokens, &query, &listed.next_page_token);
                Ok(api::ListConsentDirectivesResponse {
                    patient_id: resolved.id().to_owned(),
                    directives,
                    next_page_token,
                    ..Default::default()
                })
            },
        )
        .await
    }

    pub(super) async fn create_consent_directive(
        &self,
        request: Request<api::CreateConsentDirectiveRequest>,
    ) -> Result<api::CreateConsentDirectiveResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let request_id = v.required_id("request_id", &req.request_id);
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        if matches!(reference, Some(Reference::Demographics(_))) {
            v.add(
                "patient.demographics",
                "a consent directive must name the patient by id, NHS number or identifier",
            );
        }
        match &req.directive {
            None => v.add("directive", "is required"),
            Some(d) => v.check(d.date_time.is_some(), "directive.date_time", "is required"),
        }
        let (Some(request_id), Some(reference), Some(directive)) = (
            request_id.filter(|_| v.is_empty()),
            reference,
            req.directive.as_ref(),
        ) else {
            return Err(v.into());
        };
        let action = api::AuditAction::CreateConsentDirective;
        let mut leaf = self.patient_request_leaf(&caller, &trace, action, Some(&reference));
        leaf.request_id = request_id.to_string();
        self.audited(leaf, async |leaf| {
            let patient_facing = acting_as_patient(&caller, "Consent", 'c')?;
            let writer = self.consent_writer(&caller, patient_facing)?;
            let resolved = self
                .resolve_for(&caller, patient_facing, &reference, leaf)
                .await?;
            let grantor_role = if patient_facing {
                consent::GrantorRole::Patient as i32
            } else {
                directive.grantor_role
            };
            let created = self
                .inner
                .upstream
                .create_consent_directive(consent::CreateConsentDirectiveRequest {
                    request_id: request_id.to_string(),
                    directive: Some(consent::ConsentDirective {
                        patient_id: resolved.id().to_owned(),
                        status: consent::ConsentDirectiveStatus::Active as i32,
                        decision: directive.decision,
                        scope_purposes: directive.scope_purposes.clone(),
                        period: directive.period,
                        provisions: directive
                            .provisions
                            .iter()
                            .map(provision_to_consent)
                            .collect(),
                        date_time: directive.date_time,
                        grantor_role,
                        grantor_display: directive.grantor_display.clone(),
                        policy_text: directive.policy_text.clone(),
                        ..Default::default()
                    }),
                    requester: Some(writer),
                })
                .await
                .map_err(|f| consent_error(&f.status, ""))?;
            let directive = created
                .directive
                .map(directive_from_consent)
                .ok_or_else(|| Error::Internal("consent answered no directive".into()))?;
            leaf.returned_count = 1;
            Ok(api::CreateConsentDirectiveResponse {
                directive: Some(directive),
                ..Default::default()
            })
        })
        .await
    }

    pub(super) async fn revoke_consent_directive(
        &self,
        request: Request<api::RevokeConsentDirectiveRequest>,
    ) -> Result<api::RevokeConsentDirectiveResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let request_id = v.required_id("request_id", &req.request_id);
        let directive_id = v.required_id("directive_id", &req.directive_id);
        v.check(
            !req.etag.is_empty(),
            "etag",
            "is required: the directive's current etag",
        );
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            v.add("reason", "is required");
        } else if reason.chars().count() > MAX_REASON_CHARS {
            v.add(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
        }
        let (Some(request_id), Some(directive_id)) =
            (request_id.filter(|_| v.is_empty()), directive_id)
        else {
            return Err(v.into());
        };
        let (request_id, directive_id) = (request_id.into_string(), directive_id.into_string());
        let action = api::AuditAction::RevokeConsentDirective;
        let mut leaf = self.patient_request_leaf(&caller, &trace, action, None);
        leaf.request_id = request_id.clone();
        self.audited(leaf, async |leaf| {
            // An inner block, so that its early answer to a retry (`return Ok`) still reaches the
            // count below.
            let directive = async {
                let patient_facing = acting_as_patient(&caller, "Consent", 'u')?;
                let writer = self.consent_writer(&caller, patient_facing)?;
                let current = self.directive(&directive_id).await?;
                leaf.reference_kind = api::PatientReferenceKind::PatientId as i32;
                let reference = Reference::PatientId(current.patient_id.clone());
                self.resolve_for(&caller, patient_facing, &reference, leaf)
                    .await
                    .map_err(|e| match e {
                        // The directive names a patient identity no longer knows.
                        Error::PatientNotFound { .. } => {
                            Error::DirectiveNotFound(directive_id.clone())
                        }
                        other => other,
                    })?;
                let fingerprint = Sha256::new()
                    .chain_update(b"revoke-consent-directive\0")
                    .chain_update(caller.user_id.as_bytes())
                    .chain_update(b"\0")
                    .chain_update(directive_id.as_bytes())
                    .chain_update(b"\0")
                    .chain_update(req.etag.as_bytes())
                    .chain_update(b"\0")
                    .chain_update(reason.as_bytes())
                    .finalize()
                    .to_vec();
                // A retry of a withdrawal that went through answers the directive as it stands.
                if let Some(done) = self.inner.store.contribution(&request_id).await? {
                    if done.fingerprint != fingerprint {
                        return Err(Error::RequestIdReused);
                    }
                    if done.version != 0 {
                        return Ok(directive_from_consent(current));
                    }
                }
                self.inner
                    .store
                    .begin_contribution(&request_id, &fingerprint, &directive_id, current.version)
                    .await?;
                let revoked = self
                    .inner
                    .upstream
                    .revoke_consent_directive(consent::RevokeConsentDirectiveRequest {
                        directive_id: directive_id.clone(),
                        etag: req.etag.clone(),
                        reason: reason.clone(),
                        requester: Some(writer),
                    })
                    .await;
                let revoked = match revoked {
                    Ok(answer) => answer
                        .directive
                        .ok_or_else(|| Error::Internal("consent answered no directive".into()))?,
                    // The answer to an earlier attempt was lost: the withdrawal it made is this one.
                    Err(Failed { status, .. })
                        if status.code() == Code::Aborted
                            && self
                                .directive(&directive_id)
                                .await
                                .is_ok_and(|d| withdrawn_by(&d, &caller.user_id, &reason)) =>
                    {
                        self.directive(&directive_id).await?
                    }
                    Err(Failed { status, .. }) => {
                        return Err(consent_error(&status, &directive_id));
                    }
                };
                self.inner
                    .store
                    .complete_contribution(&request_id, revoked.version)
                    .await?;
                Ok(directive_from_consent(revoked))
            }
            .await?;
            leaf.returned_count = 1;
            Ok(api::RevokeConsentDirectiveResponse {
                directive: Some(directive),
                ..Default::default()
            })
        })
        .await
    }

    /// The latest version of a directive, from consent.
    async fn directive(&self, directive_id: &str) -> Result<consent::ConsentDirective, Error> {
        self.inner
            .upstream
            .get_consent_directive(consent::GetConsentDirectiveRequest {
                directive_id: directive_id.to_owned(),
                version: 0,
            })
            .await
            .map_err(|f| consent_error(&f.status, directive_id))?
            .directive
            .ok_or_else(|| Error::Internal("consent answered no directive".into()))
    }

    pub(super) async fn national_data_opt_out(
        &self,
        request: Request<api::GetNationalDataOptOutRequest>,
    ) -> Result<api::GetNationalDataOptOutResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        let reference = validate_reference(&mut v, "patient", req.patient.as_ref());
        let Some(reference) = reference.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let action = api::AuditAction::GetNationalDataOptOut;
        self.patient_request(
            &caller,
            &trace,
            action,
            &reference,
            "Consent",
            async |resolved, leaf| {
                let answer = self
                    .inner
                    .upstream
                    .get_national_data_opt_out(consent::GetNationalDataOptOutRequest {
                        patient_id: resolved.id().to_owned(),
                    })
                    .await?;
                let opt_out = answer.national_data_opt_out.unwrap_or_default();
                let now = carerecord_platform::db::now_micros();
                leaf.returned_count = 1;
                Ok(api::GetNationalDataOptOutResponse {
                    patient_id: resolved.id().to_owned(),
                    status: opt_out_status(&opt_out, now) as i32,
                    check_time: opt_out.check_time,
                    check_expire_time: opt_out.check_expire_time,
                    ..Default::default()
                })
            },
        )
        .await
    }
}

/// Whether `directive` was withdrawn by `user_id` for `reason` (a lost answer's withdrawal).
fn withdrawn_by(directive: &consent::ConsentDirective, user_id: &str, reason: &str) -> bool {
    directive.status == consent::ConsentDirectiveStatus::Inactive as i32
        && directive.revocation_reason == reason
        && directive
            .updated_by
            .as_ref()
            .is_some_and(|u| u.user_id == user_id)
}

/// The status decisions see at `now_micros`: a check's answer while it is valid, else unknown.
fn opt_out_status(
    opt_out: &consent::NationalDataOptOut,
    now_micros: i64,
) -> api::NationalDataOptOutStatus {
    let valid = opt_out
        .check_expire_time
        .as_ref()
        .and_then(crate::domain::micros)
        .is_some_and(|expires| now_micros < expires);
    match (valid, opt_out.opted_out) {
        (false, _) => api::NationalDataOptOutStatus::Unknown,
        (true, true) => api::NationalDataOptOutStatus::OptedOut,
        (true, false) => api::NationalDataOptOutStatus::NotOptedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_status_is_unknown_without_a_valid_check() {
        let never = consent::NationalDataOptOut::default();
        assert_eq!(
            opt_out_status(&never, 1_000),
            api::NationalDataOptOutStatus::Unknown
        );
        let checked = |opted_out, expires| consent::NationalDataOptOut {
            opted_out,
            check_expire_time: Some(crate::domain::timestamp(expires)),
            ..Default::default()
        };
        assert_eq!(
            opt_out_status(&checked(true, 2_000), 1_000),
            api::NationalDataOptOutStatus::OptedOut
        );
        assert_eq!(
            opt_out_status(&checked(false, 2_000), 1_000),
            api::NationalDataOptOutStatus::NotOptedOut
        );
        assert_eq!(
            opt_out_status(&checked(false, 2_000), 2_000),
            api::NationalDataOptOutStatus::Unknown
        );
    }

    #[test]
    fn directives_keep_every_field_both_ways() {
        let provision = api::ConsentProvision {
            actors: vec![api::ConsentActor {
                organisation_ods_code: "RR8".into(),
                ..Default::default()
            }],
            data_classes: vec!["mental-health".into()],
            provisions: vec![api::ConsentProvision {
                purposes: vec!["TREAT".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let there = provision_to_consent(&provision);
        assert_eq!(provision_from_consent(there), provision);
    }

    #[test]
    fn consent_refusals_keep_their_meaning() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("directive.provisions[0].data_classes[0]", "unknown");
        let status = Status::with_error_details(Code::InvalidArgument, "invalid", details);
        match consent_error(&status, "d") {
            Error::Invalid(v) => assert_eq!(
                v.iter().next().map(|(f, _)| f.to_owned()),
                Some("directive.provisions[0].data_classes[0]".to_owned())
            ),
            other => panic!("{other:?}"),
        }
        let mut ours = tonic_types::ErrorDetails::new();
        ours.add_bad_request_violation("requester.user_id", "is required");
        let status = Status::with_error_details(Code::InvalidArgument, "invalid", ours);
        assert!(matches!(consent_error(&status, "d"), Error::Internal(_)));
        assert!(matches!(
            consent_error(&Status::aborted("stale"), "d"),
            Error::EtagMismatch
        ));
        assert!(matches!(
            consent_error(&Status::not_found("no"), "d"),
            Error::DirectiveNotFound(id) if id == "d"
        ));
        assert!(matches!(
            consent_error(&Status::unavailable("down"), "d"),
            Error::DependencyUnavailable(Dependency::Consent)
        ));
    }
}
