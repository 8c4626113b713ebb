//! gRPC handlers for `carerecord.consent.v1.ConsentService`: validate, call the domain and the store,
//! map errors.

use std::collections::HashMap;
use std::sync::Arc;

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::consent::v1 as pb;
use carerecord_contracts::consent::v1::consent_service_server::ConsentService;
use carerecord_contracts::consent::v1::{
    ConsentDirective, ConsentDirectiveStatus as DirectiveStatus,
};
use carerecord_platform::db::{Database, now_micros};
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::PageTokens;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::domain::codes::{DataClass, LegalBasis, Purpose, canonical_uuid};
use crate::domain::decide::{self, Context, Obligation, PlatformVerdicts, Source};
use crate::domain::time::{Instant, instant_from_micros, timestamp_from_micros};
use crate::domain::validate::{
    self, MAX_REASON_CHARS, MAX_STUDY_ID_CHARS, char_count, check_timestamp, validate_directive,
    validate_requester,
};
use crate::error::{Error, OPT_OUT_RESOURCE};
use crate::policy::PlatformPolicies;
use crate::store::Store;
use crate::store::decisions::PatientState;
use crate::store::directives::CreateOutcome;
use crate::store::opt_outs::OptOutRecord;

/// The most patients one BatchDecide may ask about.
pub const MAX_BATCH: usize = 10_000;
/// Patients per statement in BatchDecide. The chunks are read and decided concurrently on separate
/// connections: the database works on more than one core, and rows are decided while other chunks
/// are still being read (one statement for 10,000 patients took 1.5 times as long, end to end).
const BATCH_CHUNK: usize = 1_000;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// The consent API.
#[derive(Debug, Clone)]
pub struct ConsentDecider {
    store: Store,
    policies: Arc<PlatformPolicies>,
    tokens: PageTokens,
}

impl ConsentDecider {
    pub fn new(database: Database, policies: Arc<PlatformPolicies>, tokens: PageTokens) -> Self {
        ConsentDecider {
            store: Store::new(database),
            policies,
            tokens,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn now_instant() -> (i64, Instant) {
    let micros = now_micros();
    (micros, instant_from_micros(micros))
}

fn new_etag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_owned()
}

/// A required UUID field, canonicalised, or a violation.
fn uuid_field(raw: &str, field: &str, v: &mut Violations) -> String {
    if raw.is_empty() {
        v.add(field, "is required");
        return String::new();
    }
    canonical_uuid(raw).unwrap_or_else(|| {
        v.add(field, "must be a UUID (8-4-4-4-12 hexadecimal)");
        String::new()
    })
}

fn page_size(raw: i32, v: &mut Violations) -> usize {
    match usize::try_from(raw) {
        Err(_) => {
            v.add("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(MAX_PAGE_SIZE),
    }
}

fn clear_output_only(d: &mut ConsentDirective) {
    d.directive_id.clear();
    d.recorded_by = None;
    d.updated_by = None;
    d.revocation_reason.clear();
    d.revoke_time = None;
    d.version = 0;
    d.etag.clear();
    d.create_time = None;
    d.update_time = None;
}

fn status_of(d: &ConsentDirective) -> DirectiveStatus {
    DirectiveStatus::try_from(d.status).unwrap_or(DirectiveStatus::Unspecified)
}

/// Fields UpdateConsentDirective may replace.
const UPDATABLE: [&str; 10] = [
    "status",
    "decision",
    "scope_purposes",
    "period",
    "provisions",
    "date_time",
    "grantor_role",
    "grantor_display",
    "policy_basis",
    "policy_text",
];
const NOT_UPDATABLE: [&str; 10] = [
    "directive_id",
    "patient_id",
    "recorded_by",
    "updated_by",
    "revocation_reason",
    "revoke_time",
    "version",
    "etag",
    "create_time",
    "update_time",
];

/// Copies the masked, non-status field `field` from `from` into `to`.
fn copy_field(field: &str, from: &ConsentDirective, to: &mut ConsentDirective) {
    match field {
        "decision" => to.decision = from.decision,
        "scope_purposes" => to.scope_purposes = from.scope_purposes.clone(),
        "period" => to.period = from.period,
        "provisions" => to.provisions = from.provisions.clone(),
        "date_time" => to.date_time = from.date_time,
        "grantor_role" => to.grantor_role = from.grantor_role,
        "grantor_display" => to.grantor_display = from.grantor_display.clone(),
        "policy_basis" => to.policy_basis = from.policy_basis.clone(),
        "policy_text" => to.policy_text = from.policy_text.clone(),
        _ => {}
    }
}

fn check_status_transition(
    from: DirectiveStatus,
    to: DirectiveStatus,
    id: &str,
) -> Result<(), Error> {
    use DirectiveStatus::*;
    let allowed = matches!(
        (from, to),
        (Draft, Active) | (Draft | Active | Inactive, EnteredInError)
    );
    if allowed {
        Ok(())
    } else {
        Err(Error::Status {
            subject: format!("directive/{id}"),
            description: format!(
                "a {} directive cannot become {}",
                from.as_str_name(),
                to.as_str_name()
            ),
        })
    }
}

/// The request context of Decide and BatchDecide, validated.
struct ContextFields<'a> {
    requester: Option<Requester>,
    purpose_of_use: &'a str,
    data_classes: &'a [String],
    time: Option<&'a prost_types::Timestamp>,
    legal_basis: i32,
    study_id: &'a str,
    break_glass_reason: Option<&'a str>,
    batch: bool,
}

fn validate_context(
    fields: ContextFields<'_>,
    now: Instant,
    v: &mut Violations,
) -> Option<Context> {
    let mut requester = fields.requester;
    validate_requester(requester.as_mut(), "requester", true, v);
    let purpose = if fields.purpose_of_use.is_empty() {
        v.add("purpose_of_use", "is required");
        None
    } else {
        let p = Purpose::parse(fields.purpose_of_use);
        match p {
            None => v.add(
                "purpose_of_use",
                format!("unknown purpose of use {:?}", fields.purpose_of_use),
            ),
            Some(Purpose::Etreat) if fields.batch => v.add(
                "purpose_of_use",
                "ETREAT (break-glass) is decided per patient with Decide, never in a batch",
            ),
            Some(_) => {}
        }
        p
    };
    let mut classes = Vec::new();
    for (i, code) in fields.data_classes.iter().enumerate() {
        match DataClass::parse(code) {
            Some(c) => classes.push(c),
            None => v.add(
                format!("data_classes[{i}]"),
                validate::unknown_data_class(code),
            ),
        }
    }
    if classes.is_empty() {
        classes = DataClass::ALL.to_vec();
    }
    classes.sort_unstable();
    classes.dedup();
    let time = check_timestamp(fields.time, "time", v).unwrap_or(now);
    let legal_basis = LegalBasis::from_proto(fields.legal_basis);
    match (legal_basis, purpose) {
        (None, _) => v.add("legal_basis", "is not a known legal basis"),
        (Some(LegalBasis::DirectCare), Some(p))
            if !matches!(p, Purpose::Treat | Purpose::Etreat) =>
        {
            v.add(
                "legal_basis",
                "DIRECT_CARE is only valid with purpose TREAT or ETREAT",
            )
        }
        (Some(LegalBasis::PublicHealth), Some(p)) if p != Purpose::Pubhlth => v.add(
            "legal_basis",
            "PUBLIC_HEALTH is only valid with purpose PUBHLTH",
        ),
        (Some(LegalBasis::ExplicitConsent), Some(Purpose::Hresch))
            if fields.study_id.is_empty() =>
        {
            v.add(
                "study_id",
                "is required for research (HRESCH) under EXPLICIT_CONSENT",
            )
        }
        _ => {}
    }
    if char_count(fields.study_id) > MAX_STUDY_ID_CHARS {
        v.add(
            "study_id",
            format!("must be at most {MAX_STUDY_ID_CHARS} characters"),
        );
    }
    let break_glass = if let Some(reason) = fields.break_glass_reason {
        let etreat = purpose == Some(Purpose::Etreat);
        if etreat && reason.trim().is_empty() {
            v.add("break_glass_reason", "is required with purpose ETREAT");
        } else if !etreat && !reason.is_empty() {
            v.add("break_glass_reason", "is only allowed with purpose ETREAT");
        } else if char_count(reason) > MAX_REASON_CHARS {
            v.add(
                "break_glass_reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
        }
        etreat
    } else {
        false
    };
    let requester = requester?;
    Some(Context {
        time,
        user_id: requester.user_id,
        organisation_ods_code: requester.organisation_ods_code,
        role_code: requester.role_code,
        purpose: purpose?,
        classes,
        legal_basis: legal_basis?,
        study_id: (!fields.study_id.is_empty()).then(|| fields.study_id.to_owned()),
        break_glass,
    })
    .filter(|_| v.is_empty())
}

fn outcome(permit: bool) -> i32 {
    if permit {
        pb::DecisionOutcome::Permit as i32
    } else {
        pb::DecisionOutcome::Deny as i32
    }
}

fn to_proto_decision(
    patient_id: &str,
    decision: &decide::Decision,
    policy_set_version: &str,
    decided_at: &prost_types::Timestamp,
) -> pb::Decision {
    let obligations = decision
        .obligations
        .iter()
        .map(|o| match o {
            Obligation::Withhold {
                classes,
                general,
                data_period,
            } => pb::Obligation {
                r#type: pb::ObligationType::WithholdDataClasses as i32,
                data_classes: classes.iter().map(|c| c.code().to_owned()).collect(),
                include_general_data: *general,
                data_period: (!data_period.is_always()).then(|| data_period.to_proto()),
            },
            Obligation::Pseudonymise => pb::Obligation {
                r#type: pb::ObligationType::Pseudonymise as i32,
                ..Default::default()
            },
            Obligation::FlagForReview => pb::Obligation {
                r#type: pb::ObligationType::FlagForReview as i32,
                ..Default::default()
            },
        })
        .collect();
    let reasons = decision
        .reasons
        .iter()
        .map(|r| pb::DecisionReason {
            source: match r.source {
                Source::PlatformPolicy => pb::DecisionSource::PlatformPolicy,
                Source::NationalDataOptOut => pb::DecisionSource::NationalDataOptOut,
                Source::PatientDirective => pb::DecisionSource::PatientDirective,
                Source::Default => pb::DecisionSource::Default,
            } as i32,
            effect: outcome(r.permit),
            directive_id: r.directive_id.clone(),
            directive_version: r.directive_version,
            provision_path: r.path_string(),
            policy_id: r.policy_id.clone(),
            explanation: r.explanation.clone(),
        })
        .collect();
    pb::Decision {
        patient_id: patient_id.to_owned(),
        outcome: outcome(decision.permit),
        obligations,
        reasons,
        policy_set_version: policy_set_version.to_owned(),
        decided_at: Some(*decided_at),
    }
}

fn opt_out_to_proto(patient_id: &str, record: Option<&OptOutRecord>) -> pb::NationalDataOptOut {
    match record {
        None => pb::NationalDataOptOut {
            patient_id: patient_id.to_owned(),
            ..Default::default()
        },
        Some(r) => pb::NationalDataOptOut {
            patient_id: r.patient_id.clone(),
            opted_out: r.opted_out,
            update_time: Some(timestamp_from_micros(r.update_time)),
            etag: r.etag.clone(),
            version: r.version,
            updated_by: Some(r.updated_by.clone()),
        },
    }
}

impl ConsentDecider {
    async fn create(
        &self,
        req: pb::CreateConsentDirectiveRequest,
    ) -> Result<ConsentDirective, Error> {
        let (now_us, now) = now_instant();
        let mut v = Violations::new();
        let request_id = uuid_field(&req.request_id, "request_id", &mut v);
        let mut requester = req.requester;
        validate_requester(requester.as_mut(), "requester", false, &mut v);
        let Some(mut directive) = req.directive else {
            v.add("directive", "is required");
            return Err(v.into());
        };
        clear_output_only(&mut directive);
        validate_directive(&mut directive, "directive", now, &mut v);
        if matches!(
            status_of(&directive),
            DirectiveStatus::Inactive | DirectiveStatus::EnteredInError
        ) {
            v.add("directive.status", "must be DRAFT or ACTIVE on create");
        }
        if !v.is_empty() {
            return Err(v.into());
        }
        let requester = requester.unwrap_or_default();
        let normalised = pb::CreateConsentDirectiveRequest {
            request_id: request_id.clone(),
            directive: Some(directive.clone()),
            requester: Some(requester.clone()),
        };
        let body_hash = hex::encode(Sha256::digest(normalised.encode_to_vec()));

        directive.directive_id = uuid::Uuid::now_v7().hyphenated().to_string();
        directive.version = 1;
        directive.etag = new_etag();
        directive.create_time = Some(timestamp_from_micros(now_us));
        directive.update_time = directive.create_time;
        directive.recorded_by = Some(requester.clone());
        directive.updated_by = Some(requester);
        match self
            .store
            .create(&request_id, &body_hash, &directive)
            .await?
        {
            CreateOutcome::Created => {
                tracing::info!(directive_id = %directive.directive_id, patient_id = %directive.patient_id, "directive created");
                Ok(directive)
            }
            CreateOutcome::Replayed(id) => self.store.get(&id).await?.ok_or_else(|| {
                Error::Corrupt(format!("request {request_id} names missing directive {id}"))
            }),
            CreateOutcome::Reused => Err(Error::RequestIdReused(request_id)),
        }
    }

    async fn update(
        &self,
        req: pb::UpdateConsentDirectiveRequest,
    ) -> Result<ConsentDirective, Error> {
        let (now_us, now) = now_instant();
        let mut v = Violations::new();
        let Some(input) = req.directive else {
            v.add("directive", "is required");
            return Err(v.into());
        };
        let id = uuid_field(&input.directive_id, "directive.directive_id", &mut v);
        if req.etag.is_empty() {
            v.add("etag", "is required");
        }
        let mut requester = req.requester;
        validate_requester(requester.as_mut(), "requester", false, &mut v);
        let mut fields: Vec<&str> = Vec::new();
        match &req.update_mask {
            None => v.add("update_mask", "is required"),
            Some(mask) if mask.paths.is_empty() => {
                v.add("update_mask", "must name at least one field")
            }
            Some(mask) => {
                for (i, path) in mask.paths.iter().enumerate() {
                    let path = path.as_str();
                    if path == "*" {
                        fields.extend(UPDATABLE);
                    } else if let Some(f) = UPDATABLE.iter().find(|f| **f == path) {
                        fields.push(f);
                    } else if NOT_UPDATABLE.contains(&path) {
                        v.add(
                            format!("update_mask.paths[{i}]"),
                            format!("{path} is immutable or output only"),
                        );
                    } else {
                        v.add(
                            format!("update_mask.paths[{i}]"),
                            format!("{path:?} is not an updatable field of ConsentDirective"),
                        );
                    }
                }
            }
        }
        fields.sort_unstable();
        fields.dedup();
        if !v.is_empty() {
            return Err(v.into());
        }
        let current = self
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))?;
        if current.etag != req.etag {
            return Err(Error::StaleEtag {
                resource_type: crate::error::DIRECTIVE_RESOURCE,
                name: id,
            });
        }
        let from = status_of(&current);
        let mut candidate = current.clone();
        let mut to = from;
        for field in &fields {
            if *field == "status" {
                match DirectiveStatus::try_from(input.status) {
                    Ok(DirectiveStatus::Unspecified) | Err(_) => v.add(
                        "directive.status",
                        "must be DRAFT, ACTIVE, INACTIVE or ENTERED_IN_ERROR",
                    ),
                    Ok(DirectiveStatus::Inactive) if from == DirectiveStatus::Active => v.add(
                        "directive.status",
                        "an ACTIVE directive is made INACTIVE with RevokeConsentDirective",
                    ),
                    Ok(s) => to = s,
                }
            } else {
                copy_field(field, &input, &mut candidate);
            }
        }
        candidate.status = to as i32;
        validate_directive(&mut candidate, "directive", now, &mut v);
        if !v.is_empty() {
            return Err(v.into());
        }
        if to != from {
            check_status_transition(from, to, &id)?;
        }
        let mut edited = candidate.clone();
        edited.status = current.status;
        let fields_changed = edited != current;
        if fields_changed
            && matches!(
                from,
                DirectiveStatus::Inactive | DirectiveStatus::EnteredInError
            )
        {
            return Err(Error::Status {
                subject: format!("directive/{id}"),
                description: format!("a {} directive cannot be edited", from.as_str_name()),
            });
        }
        if candidate == current {
            return Ok(current);
        }
        candidate.version = current.version + 1;
        candidate.etag = new_etag();
        candidate.update_time = Some(timestamp_from_micros(now_us));
        candidate.updated_by = requester;
        if !self
            .store
            .write_version(&candidate, current.version)
            .await?
        {
            return Err(Error::StaleEtag {
                resource_type: crate::error::DIRECTIVE_RESOURCE,
                name: id,
            });
        }
        tracing::info!(directive_id = %id, version = candidate.version, status = candidate.status, "directive updated");
        Ok(candidate)
    }

    async fn revoke(
        &self,
        req: pb::RevokeConsentDirectiveRequest,
    ) -> Result<ConsentDirective, Error> {
        let now_us = now_micros();
        let mut v = Violations::new();
        let id = uuid_field(&req.directive_id, "directive_id", &mut v);
        if req.etag.is_empty() {
            v.add("etag", "is required");
        }
        if req.reason.trim().is_empty() {
            v.add("reason", "is required");
        } else if char_count(&req.reason) > MAX_REASON_CHARS {
            v.add(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
        }
        let mut requester = req.requester;
        validate_requester(requester.as_mut(), "requester", false, &mut v);
        if !v.is_empty() {
            return Err(v.into());
        }
        let current = self
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))?;
        if current.etag != req.etag {
            return Err(Error::StaleEtag {
                resource_type: crate::error::DIRECTIVE_RESOURCE,
                name: id,
            });
        }
        if status_of(&current) != DirectiveStatus::Active {
            return Err(Error::Status {
                subject: format!("directive/{id}"),
                description: format!(
                    "only an ACTIVE directive can be revoked; this one is {} (withdraw a DRAFT by updating it to ENTERED_IN_ERROR)",
                    status_of(&current).as_str_name()
                ),
            });
        }
        let mut revoked = current.clone();
        revoked.status = DirectiveStatus::Inactive as i32;
        revoked.revocation_reason = req.reason;
        revoked.revoke_time = Some(timestamp_from_micros(now_us));
        revoked.version = current.version + 1;
        revoked.etag = new_etag();
        revoked.update_time = revoked.revoke_time;
        revoked.updated_by = requester;
        if !self.store.write_version(&revoked, current.version).await? {
            return Err(Error::StaleEtag {
                resource_type: crate::error::DIRECTIVE_RESOURCE,
                name: id,
            });
        }
        tracing::info!(directive_id = %id, version = revoked.version, "directive revoked");
        Ok(revoked)
    }

    async fn set_opt_out(
        &self,
        req: pb::SetNationalDataOptOutRequest,
    ) -> Result<pb::NationalDataOptOut, Error> {
        let mut v = Violations::new();
        let patient_id = uuid_field(&req.patient_id, "patient_id", &mut v);
        let mut requester = req.requester;
        validate_requester(requester.as_mut(), "requester", false, &mut v);
        if !v.is_empty() {
            return Err(v.into());
        }
        let current = self.store.opt_out(&patient_id).await?;
        let current_etag = current.as_ref().map_or("", |r| r.etag.as_str());
        if !req.etag.is_empty() && req.etag != current_etag {
            return Err(Error::StaleEtag {
                resource_type: OPT_OUT_RESOURCE,
                name: patient_id,
            });
        }
        let current_opted_out = current.as_ref().is_some_and(|r| r.opted_out);
        if current_opted_out == req.opted_out {
            return Ok(opt_out_to_proto(&patient_id, current.as_ref()));
        }
        let expected = current.as_ref().map_or(0, |r| r.version);
        let record = OptOutRecord {
            patient_id: patient_id.clone(),
            opted_out: req.opted_out,
            version: expected + 1,
            etag: new_etag(),
            update_time: now_micros(),
            updated_by: requester.unwrap_or_default(),
        };
        if !self.store.write_opt_out(&record, expected).await? {
            return Err(Error::StaleEtag {
                resource_type: OPT_OUT_RESOURCE,
                name: patient_id,
            });
        }
        tracing::info!(patient_id = %patient_id, opted_out = record.opted_out, version = record.version, "national data opt-out recorded");
        Ok(opt_out_to_proto(&patient_id, Some(&record)))
    }

    fn platform(&self, ctx: &Context) -> Result<Arc<PlatformVerdicts>, Error> {
        Ok(self.policies.evaluate(ctx)?)
    }

    async fn decide(&self, req: pb::DecideRequest) -> Result<pb::Decision, Error> {
        let (now_us, now) = now_instant();
        let mut v = Violations::new();
        let patient_id = uuid_field(&req.patient_id, "patient_id", &mut v);
        let ctx = validate_context(
            ContextFields {
                requester: req.requester,
                purpose_of_use: &req.purpose_of_use,
                data_classes: &req.data_classes,
                time: req.time.as_ref(),
                legal_basis: req.legal_basis,
                study_id: &req.study_id,
                break_glass_reason: Some(&req.break_glass_reason),
                batch: false,
            },
            now,
            &mut v,
        );
        let Some(ctx) = ctx.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let platform = self.platform(&ctx)?;
        let state = self.store.patient_state(&patient_id).await?;
        let decision = decide::decide(&ctx, &platform, &state.directives, state.opted_out, true);
        Ok(to_proto_decision(
            &patient_id,
            &decision,
            self.policies.version(),
            &timestamp_from_micros(now_us),
        ))
    }

    async fn batch_decide(&self, req: pb::BatchDecideRequest) -> Result<Vec<pb::Decision>, Error> {
        let (now_us, now) = now_instant();
        let mut v = Violations::new();
        if req.patient_ids.is_empty() {
            v.add("patient_ids", "must name at least one patient");
        } else if req.patient_ids.len() > MAX_BATCH {
            v.add(
                "patient_ids",
                format!("at most {MAX_BATCH} patients per call"),
            );
        }
        let mut ids = Vec::with_capacity(req.patient_ids.len().min(MAX_BATCH));
        if req.patient_ids.len() <= MAX_BATCH {
            for (i, raw) in req.patient_ids.iter().enumerate() {
                match canonical_uuid(raw) {
                    Some(id) => ids.push(id),
                    None => v.add(
                        format!("patient_ids[{i}]"),
                        "must be a UUID (8-4-4-4-12 hexadecimal)",
                    ),
                }
            }
        }
        let ctx = validate_context(
            ContextFields {
                requester: req.requester,
                purpose_of_use: &req.purpose_of_use,
                data_classes: &req.data_classes,
                time: req.time.as_ref(),
                legal_basis: req.legal_basis,
                study_id: &req.study_id,
                break_glass_reason: None,
                batch: true,
            },
            now,
            &mut v,
        );
        let Some(ctx) = ctx.filter(|_| v.is_empty()) else {
            return Err(v.into());
        };
        let platform = self.platform(&ctx)?;
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        let duplicates = unique.len() != ids.len();
        let decided_at = timestamp_from_micros(now_us);
        let version: Arc<str> = Arc::from(self.policies.version());
        let ctx = Arc::new(ctx);
        let explain = req.include_explanations;
        let mut chunks = tokio::task::JoinSet::new();
        for chunk in unique.chunks(BATCH_CHUNK) {
            let (store, chunk) = (self.store.clone(), chunk.to_vec());
            let (ctx, platform, version) = (ctx.clone(), platform.clone(), version.clone());
            chunks.spawn(async move {
                let states = store.patient_states(&chunk).await?;
                // Patients with no active directive are decided by the opt-out flag alone: two
                // decisions at most.
                let mut without_directives: HashMap<bool, decide::Decision> = HashMap::new();
                let none = PatientState::default();
                let decisions: Vec<(String, pb::Decision)> = chunk
                    .into_iter()
                    .map(|id| {
                        let state = states.get(&id).unwrap_or(&none);
                        let own;
                        let decision = if state.directives.is_empty() {
                            without_directives
                                .entry(state.opted_out)
                                .or_insert_with(|| {
                                    decide::decide(&ctx, &platform, &[], state.opted_out, explain)
                                })
                        } else {
                            own = decide::decide(
                                &ctx,
                                &platform,
                                &state.directives,
                                state.opted_out,
                                explain,
                            );
                            &own
                        };
                        let proto = to_proto_decision(&id, decision, &version, &decided_at);
                        (id, proto)
                    })
                    .collect();
                Ok::<_, Error>(decisions)
            });
        }
        let mut decided: HashMap<String, pb::Decision> = HashMap::with_capacity(unique.len());
        while let Some(chunk) = chunks.join_next().await {
            decided.extend(chunk??);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            // A duplicate gets a copy of its patient's decision.
            let decision = if duplicates {
                decided.get(id).cloned()
            } else {
                decided.remove(id)
            };
            out.push(decision.ok_or(Error::Internal("a patient of the batch was not decided"))?);
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl ConsentService for ConsentDecider {
    async fn create_consent_directive(
        &self,
        request: Request<pb::CreateConsentDirectiveRequest>,
    ) -> Reply<pb::CreateConsentDirectiveResponse> {
        let directive = self.create(request.into_inner()).await?;
        Ok(Response::new(pb::CreateConsentDirectiveResponse {
            directive: Some(directive),
        }))
    }

    async fn get_consent_directive(
        &self,
        request: Request<pb::GetConsentDirectiveRequest>,
    ) -> Reply<pb::GetConsentDirectiveResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = uuid_field(&req.directive_id, "directive_id", &mut v);
        v.check(req.version >= 0, "version", "must not be negative");
        if !v.is_empty() {
            return Err(Error::from(v).into());
        }
        let found = if req.version == 0 {
            self.store.get(&id).await?
        } else {
            self.store.get_version(&id, req.version).await?
        };
        let directive = found.ok_or(Error::NotFound(id))?;
        Ok(Response::new(pb::GetConsentDirectiveResponse {
            directive: Some(directive),
        }))
    }

    async fn list_consent_directives(
        &self,
        request: Request<pb::ListConsentDirectivesRequest>,
    ) -> Reply<pb::ListConsentDirectivesResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let patient_id = uuid_field(&req.patient_id, "patient_id", &mut v);
        let size = page_size(req.page_size, &mut v);
        let mut statuses = Vec::new();
        for (i, s) in req.statuses.iter().enumerate() {
            match DirectiveStatus::try_from(*s) {
                Ok(DirectiveStatus::Unspecified) | Err(_) => v.add(
                    format!("statuses[{i}]"),
                    "must be DRAFT, ACTIVE, INACTIVE or ENTERED_IN_ERROR",
                ),
                Ok(status) => statuses.push(status),
            }
        }
        statuses.sort_unstable();
        statuses.dedup();
        let query = format!(
            "directives;{patient_id};{}",
            statuses
                .iter()
                .map(|s| (*s as i32).to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut after = None;
        if !req.page_token.is_empty() && v.is_empty() {
            match self.tokens.verify(query.as_bytes(), &req.page_token) {
                Ok(position) if position.len() > 8 => {
                    let (time, id) = position.split_at(8);
                    let time = i64::from_be_bytes(time.try_into().unwrap_or_default());
                    after = Some((time, String::from_utf8_lossy(id).into_owned()));
                }
                _ => v.add(
                    "page_token",
                    "is malformed, or was issued for a different patient_id or statuses",
                ),
            }
        }
        if !v.is_empty() {
            return Err(Error::from(v).into());
        }
        let mut directives = self
            .store
            .list(&patient_id, &statuses, after, size as i64 + 1)
            .await?;
        let mut next_page_token = String::new();
        if directives.len() > size {
            directives.truncate(size);
            if let Some(last) = directives.last() {
                let create = last.create_time.as_ref().map_or(0, |t| {
                    t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1000)
                });
                let mut position = create.to_be_bytes().to_vec();
                position.extend_from_slice(last.directive_id.as_bytes());
                next_page_token = self.tokens.issue(query.as_bytes(), &position);
            }
        }
        Ok(Response::new(pb::ListConsentDirectivesResponse {
            directives,
            next_page_token,
        }))
    }

    async fn update_consent_directive(
        &self,
        request: Request<pb::UpdateConsentDirectiveRequest>,
    ) -> Reply<pb::UpdateConsentDirectiveResponse> {
        let directive = self.update(request.into_inner()).await?;
        Ok(Response::new(pb::UpdateConsentDirectiveResponse {
            directive: Some(directive),
        }))
    }

    async fn revoke_consent_directive(
        &self,
        request: Request<pb::RevokeConsentDirectiveRequest>,
    ) -> Reply<pb::RevokeConsentDirectiveResponse> {
        let directive = self.revoke(request.into_inner()).await?;
        Ok(Response::new(pb::RevokeConsentDirectiveResponse {
            directive: Some(directive),
        }))
    }

    async fn list_consent_directive_versions(
        &self,
        request: Request<pb::ListConsentDirectiveVersionsRequest>,
    ) -> Reply<pb::ListConsentDirectiveVersionsResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = uuid_field(&req.directive_id, "directive_id", &mut v);
        let size = page_size(req.page_size, &mut v);
        let query = format!("versions;{id}");
        let mut before = None;
        if !req.page_token.is_empty() && v.is_empty() {
            match self.tokens.verify(query.as_bytes(), &req.page_token) {
                Ok(position) if position.len() == 8 => {
                    before = Some(i64::from_be_bytes(
                        position.as_slice().try_into().unwrap_or_default(),
                    ));
                }
                _ => v.add(
                    "page_token",
                    "is malformed, or was issued for a different directive_id",
                ),
            }
        }
        if !v.is_empty() {
            return Err(Error::from(v).into());
        }
        let mut versions = self.store.versions(&id, before, size as i64 + 1).await?;
        if versions.is_empty() && before.is_none() {
            return Err(Error::NotFound(id).into());
        }
        let mut next_page_token = String::new();
        if versions.len() > size {
            versions.truncate(size);
            if let Some(last) = versions.last() {
                next_page_token = self
                    .tokens
                    .issue(query.as_bytes(), &last.version.to_be_bytes());
            }
        }
        Ok(Response::new(pb::ListConsentDirectiveVersionsResponse {
            versions,
            next_page_token,
        }))
    }

    async fn get_national_data_opt_out(
        &self,
        request: Request<pb::GetNationalDataOptOutRequest>,
    ) -> Reply<pb::GetNationalDataOptOutResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let patient_id = uuid_field(&req.patient_id, "patient_id", &mut v);
        if !v.is_empty() {
            return Err(Error::from(v).into());
        }
        let record = self.store.opt_out(&patient_id).await?;
        Ok(Response::new(pb::GetNationalDataOptOutResponse {
            national_data_opt_out: Some(opt_out_to_proto(&patient_id, record.as_ref())),
        }))
    }

    async fn set_national_data_opt_out(
        &self,
        request: Request<pb::SetNationalDataOptOutRequest>,
    ) -> Reply<pb::SetNationalDataOptOutResponse> {
        let record = self.set_opt_out(request.into_inner()).await?;
        Ok(Response::new(pb::SetNationalDataOptOutResponse {
            national_data_opt_out: Some(record),
        }))
    }

    async fn decide(&self, request: Request<pb::DecideRequest>) -> Reply<pb::DecideResponse> {
        let decision = ConsentDecider::decide(self, request.into_inner()).await?;
        Ok(Response::new(pb::DecideResponse {
            decision: Some(decision),
        }))
    }

    async fn batch_decide(
        &self,
        request: Request<pb::BatchDecideRequest>,
    ) -> Reply<pb::BatchDecideResponse> {
        let decisions = ConsentDecider::batch_decide(self, request.into_inner()).await?;
        Ok(Response::new(pb::BatchDecideResponse { decisions }))
    }
}
