//! Decide and BatchDecide: the platform rules' verdicts for the request context, then each
//! patient's directives and opt-out.

use std::collections::HashMap;
use std::sync::Arc;

use carerecord_contracts::consent::v1 as pb;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;

use super::context::{ContextFields, parse_context};
use super::{ConsentService, now, parse};
use crate::domain::decide::{self, Context, Obligation, PlatformVerdicts, Source};
use crate::domain::optout::OptOutStatus;
use crate::domain::time::{timestamp_from_instant, timestamp_from_micros};
use crate::error::Error;
use crate::store::decisions::PatientState;

/// The most patients one BatchDecide may ask about.
const MAX_BATCH: usize = 10_000;
/// Patients per statement in BatchDecide. The chunks are read and decided concurrently on separate
/// connections: the database works on more than one core, and rows are decided while other chunks
/// are still being read (one statement for a whole batch took longer, end to end).
const BATCH_CHUNK: usize = 1_000;

impl ConsentService {
    pub(super) async fn decide_patient(
        &self,
        req: pb::DecideRequest,
    ) -> Result<pb::DecideResponse, Error> {
        let (now_us, now) = now();
        let (patient_id, ctx) = parse(|v| {
            let patient_id = v.required_id("patient_id", &req.patient_id);
            let ctx = parse_context(ContextFields::of_decide(&req), now, v);
            patient_id.zip(ctx)
        })?;
        let platform = self.platform(&ctx)?;
        let state = self.store.patient_state(patient_id.as_str()).await?;
        let opt_out = OptOutStatus::at(state.opt_out, now_us, self.opt_out_validity);
        let decision = decide::decide(&ctx, &platform, &state.directives, opt_out, true);
        let valid_until = decide::valid_until(
            &state.directives,
            state.opt_out,
            self.opt_out_validity,
            ctx.time,
            now_us,
        );
        let mut decision = to_proto(
            patient_id.as_str(),
            &decision,
            self.policies.version(),
            &timestamp_from_micros(now_us),
        );
        decision.valid_until = valid_until.map(timestamp_from_instant);
        Ok(pb::DecideResponse {
            decision: Some(decision),
        })
    }

    pub(super) async fn decide_batch(
        &self,
        req: pb::BatchDecideRequest,
    ) -> Result<pb::BatchDecideResponse, Error> {
        let (now_us, now) = now();
        let (ids, ctx) = parse(|v| {
            let ids = patient_ids(&req.patient_ids, v);
            let ctx = parse_context(ContextFields::of_batch(&req), now, v);
            Some((ids, ctx?))
        })?;
        let platform = self.platform(&ctx)?;
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        let duplicates = unique.len() != ids.len();
        let decided_at = timestamp_from_micros(now_us);
        let version: Arc<str> = Arc::from(self.policies.version());
        let ctx = Arc::new(ctx);
        let explain = req.include_explanations;
        let validity = self.opt_out_validity;
        let mut chunks = tokio::task::JoinSet::new();
        for chunk in unique.chunks(BATCH_CHUNK) {
            let (store, chunk) = (self.store.clone(), chunk.to_vec());
            let (ctx, platform, version) = (ctx.clone(), platform.clone(), version.clone());
            chunks.spawn(async move {
                let states = store.patient_states(&chunk).await?;
                // Patients with no active directive are decided by their opt-out status alone: one
                // decision per status at most.
                let mut without_directives: HashMap<OptOutStatus, decide::Decision> =
                    HashMap::new();
                let none = PatientState::default();
                let decisions: Vec<(String, pb::Decision)> = chunk
                    .into_iter()
                    .map(|id| {
                        let state = states.get(&id).unwrap_or(&none);
                        let opt_out = OptOutStatus::at(state.opt_out, now_us, validity);
                        let own;
                        let decision = if state.directives.is_empty() {
                            without_directives.entry(opt_out).or_insert_with(|| {
                                decide::decide(&ctx, &platform, &[], opt_out, explain)
                            })
                        } else {
                            own = decide::decide(
                                &ctx,
                                &platform,
                                &state.directives,
                                opt_out,
                                explain,
                            );
                            &own
                        };
                        let mut proto = to_proto(&id, decision, &version, &decided_at);
                        proto.valid_until = decide::valid_until(
                            &state.directives,
                            state.opt_out,
                            validity,
                            ctx.time,
                            now_us,
                        )
                        .map(timestamp_from_instant);
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
        let mut decisions = Vec::with_capacity(ids.len());
        for id in &ids {
            // A duplicate gets a copy of its patient's decision.
            let decision = if duplicates {
                decided.get(id).cloned()
            } else {
                decided.remove(id)
            };
            decisions
                .push(decision.ok_or(Error::Internal("a patient of the batch was not decided"))?);
        }
        Ok(pb::BatchDecideResponse { decisions })
    }

    fn platform(&self, ctx: &Context) -> Result<Arc<PlatformVerdicts>, Error> {
        Ok(self.policies.evaluate(ctx)?)
    }
}

/// BatchDecide's patients, in the order asked (duplicates kept), as ids.
fn patient_ids(raw: &[String], v: &mut Violations) -> Vec<String> {
    if raw.is_empty() {
        v.add("patient_ids", "must name at least one patient");
        return Vec::new();
    }
    if raw.len() > MAX_BATCH {
        v.add(
            "patient_ids",
            format!("at most {MAX_BATCH} patients per call"),
        );
        return Vec::new();
    }
    let mut ids = Vec::with_capacity(raw.len());
    for (i, raw) in raw.iter().enumerate() {
        match Id::parse(raw) {
            Some(id) => ids.push(id.into_string()),
            None => v.add(format!("patient_ids[{i}]"), Id::EXPECTED),
        }
    }
    ids
}

fn outcome(permit: bool) -> i32 {
    if permit {
        pb::DecisionOutcome::Permit as i32
    } else {
        pb::DecisionOutcome::Deny as i32
    }
}

fn to_proto(
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
                Source::NationalDataOptOut | Source::OptOutStatusUnknown => {
                    pb::DecisionSource::NationalDataOptOut
                }
                Source::PatientDirective => pb::DecisionSource::PatientDirective,
                Source::Default => pb::DecisionSource::Default,
            } as i32,
            effect: outcome(r.permit),
            directive_id: r.directive_id.clone(),
            directive_version: r.directive_version,
            provision_path: r.path_string(),
            policy_id: r.policy_id.clone(),
            explanation: r.explanation.clone(),
            reason_code: r.source.reason_code().to_owned(),
        })
        .collect();
    pb::Decision {
        patient_id: patient_id.to_owned(),
        outcome: outcome(decision.permit),
        obligations,
        reasons,
        policy_set_version: policy_set_version.to_owned(),
        decided_at: Some(*decided_at),
        valid_until: None,
    }
}
