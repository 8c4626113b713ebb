//! A directive's lifecycle: create (idempotent on its request id), get, update, revoke. Every change
//! writes a new version, compared-and-set on the etag the client read.

use carerecord_contracts::consent::v1 as pb;
use carerecord_contracts::consent::v1::{
    ConsentDirective, ConsentDirectiveStatus as DirectiveStatus,
};
use carerecord_platform::db::now_micros;
use carerecord_platform::request::Id;
use prost::Message;
use sha2::{Digest, Sha256};

use super::{ConsentService, new_etag, now, parse};
use crate::domain::lifecycle;
use crate::domain::time::timestamp_from_micros;
use crate::domain::validate::{
    MAX_REASON_CHARS, char_count, validate_directive, validate_requester,
};
use crate::error::{DIRECTIVE_RESOURCE, Error};
use crate::store::directives::CreateOutcome;

impl ConsentService {
    pub(super) async fn create_directive(
        &self,
        req: pb::CreateConsentDirectiveRequest,
    ) -> Result<pb::CreateConsentDirectiveResponse, Error> {
        let (now_us, now) = now();
        let mut requester = req.requester;
        let (request_id, mut directive) = parse(|v| {
            let request_id = v.required_id("request_id", &req.request_id);
            validate_requester(requester.as_mut(), "requester", false, v);
            let Some(mut directive) = req.directive else {
                v.add("directive", "is required");
                return None;
            };
            lifecycle::clear_output_only(&mut directive);
            validate_directive(&mut directive, "directive", now, v);
            lifecycle::check_create_status(&directive, v);
            Some((request_id?.into_string(), directive))
        })?;
        let requester = requester.unwrap_or_default();
        // The request as normalised: a retry that differs only in letter case is the same request.
        let normalised = pb::CreateConsentDirectiveRequest {
            request_id: request_id.clone(),
            directive: Some(directive.clone()),
            requester: Some(requester.clone()),
        };
        let body_hash = hex::encode(Sha256::digest(normalised.encode_to_vec()));

        directive.directive_id = Id::time_ordered().into_string();
        directive.version = 1;
        directive.etag = new_etag();
        directive.create_time = Some(timestamp_from_micros(now_us));
        directive.update_time = directive.create_time;
        directive.recorded_by = Some(requester.clone());
        directive.updated_by = Some(requester);
        let directive = match self
            .store
            .create(&request_id, &body_hash, &directive)
            .await?
        {
            CreateOutcome::Created => {
                tracing::info!(directive_id = %directive.directive_id, patient_id = %directive.patient_id, "directive created");
                directive
            }
            CreateOutcome::Replayed(id) => self.store.get(&id).await?.ok_or_else(|| {
                Error::Corrupt(format!("request {request_id} names missing directive {id}"))
            })?,
            CreateOutcome::Reused => return Err(Error::RequestIdReused(request_id)),
        };
        Ok(pb::CreateConsentDirectiveResponse {
            directive: Some(directive),
        })
    }

    pub(super) async fn get_directive(
        &self,
        req: pb::GetConsentDirectiveRequest,
    ) -> Result<pb::GetConsentDirectiveResponse, Error> {
        let id = parse(|v| {
            let id = v.required_id("directive_id", &req.directive_id);
            v.check(req.version >= 0, "version", "must not be negative");
            id
        })?;
        let found = if req.version == 0 {
            self.store.get(id.as_str()).await?
        } else {
            self.store.get_version(id.as_str(), req.version).await?
        };
        let directive = found.ok_or_else(|| Error::NotFound(id.into_string()))?;
        Ok(pb::GetConsentDirectiveResponse {
            directive: Some(directive),
        })
    }

    pub(super) async fn update_directive(
        &self,
        req: pb::UpdateConsentDirectiveRequest,
    ) -> Result<pb::UpdateConsentDirectiveResponse, Error> {
        let (now_us, now) = now();
        let mut requester = req.requester;
        let (id, input, fields) = parse(|v| {
            let Some(input) = req.directive else {
                v.add("directive", "is required");
                return None;
            };
            let id = v.required_id("directive.directive_id", &input.directive_id);
            v.check(!req.etag.is_empty(), "etag", "is required");
            validate_requester(requester.as_mut(), "requester", false, v);
            let fields = lifecycle::masked_fields(req.update_mask.as_ref(), v);
            Some((id?, input, fields))
        })?;
        let current = self.current(&id, &req.etag).await?;
        let mut candidate = parse(|v| {
            let mut candidate = lifecycle::apply_update(&current, &input, &fields, v);
            validate_directive(&mut candidate, "directive", now, v);
            Some(candidate)
        })?;
        if let Some(refusal) = lifecycle::update_refusal(&current, &candidate) {
            return Err(Error::directive_status(&id, refusal));
        }
        if candidate == current {
            return Ok(pb::UpdateConsentDirectiveResponse {
                directive: Some(current),
            });
        }
        candidate.version = current.version + 1;
        candidate.etag = new_etag();
        candidate.update_time = Some(timestamp_from_micros(now_us));
        candidate.updated_by = requester;
        self.write_version(&candidate, current.version).await?;
        tracing::info!(directive_id = %id, version = candidate.version, status = candidate.status, "directive updated");
        Ok(pb::UpdateConsentDirectiveResponse {
            directive: Some(candidate),
        })
    }

    pub(super) async fn revoke_directive(
        &self,
        req: pb::RevokeConsentDirectiveRequest,
    ) -> Result<pb::RevokeConsentDirectiveResponse, Error> {
        let now_us = now_micros();
        let mut requester = req.requester;
        let id = parse(|v| {
            let id = v.required_id("directive_id", &req.directive_id);
            v.check(!req.etag.is_empty(), "etag", "is required");
            if req.reason.trim().is_empty() {
                v.add("reason", "is required");
            } else if char_count(&req.reason) > MAX_REASON_CHARS {
                v.add(
                    "reason",
                    format!("must be at most {MAX_REASON_CHARS} characters"),
                );
            }
            validate_requester(requester.as_mut(), "requester", false, v);
            id
        })?;
        let current = self.current(&id, &req.etag).await?;
        if let Some(refusal) = lifecycle::revoke_refusal(&current) {
            return Err(Error::directive_status(&id, refusal));
        }
        let mut revoked = current.clone();
        revoked.status = DirectiveStatus::Inactive as i32;
        revoked.revocation_reason = req.reason;
        revoked.revoke_time = Some(timestamp_from_micros(now_us));
        revoked.version = current.version + 1;
        revoked.etag = new_etag();
        revoked.update_time = revoked.revoke_time;
        revoked.updated_by = requester;
        self.write_version(&revoked, current.version).await?;
        tracing::info!(directive_id = %id, version = revoked.version, "directive revoked");
        Ok(pb::RevokeConsentDirectiveResponse {
            directive: Some(revoked),
        })
    }

    /// The latest version of a directive, if `etag` is still its etag.
    async fn current(&self, id: &Id, etag: &str) -> Result<ConsentDirective, Error> {
        let current = self
            .store
            .get(id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        if current.etag != etag {
            return Err(Error::stale(DIRECTIVE_RESOURCE, id.as_str()));
        }
        Ok(current)
    }

    /// Writes `next` over the version `expected`, unless someone else wrote first.
    async fn write_version(&self, next: &ConsentDirective, expected: i64) -> Result<(), Error> {
        if self.store.write_version(next, expected).await? {
            Ok(())
        } else {
            Err(Error::stale(DIRECTIVE_RESOURCE, next.directive_id.as_str()))
        }
    }
}
