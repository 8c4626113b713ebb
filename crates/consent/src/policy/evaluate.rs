//! Evaluating a loaded policy set for a request context, once per cell class, with the verdicts
//! cached per context.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Context as CedarContext, Decision as CedarDecision, Entities, EntityId,
    EntityTypeName, EntityUid, PolicySet as CedarPolicySet, Request, RestrictedExpression,
};

use super::embedded::DEFAULT_POLICIES;
use super::error::{PolicyError, report};
use super::load::{PATIENT_ATTRIBUTES, RuleInfo, RuleSets};
use crate::domain::codes::{CLASS_COUNT, Class};
use crate::domain::decide::{ClassVerdicts, Context, PlatformVerdicts, RuleMatch};
use crate::domain::optout::PatientConsent;

/// Cached contexts before the cache is emptied (a bound on memory, not a correctness concern: the
/// verdicts depend only on the request context and this immutable policy set).
const CACHE_CAPACITY: usize = 16_384;

/// The cache key: every request attribute the policies can see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContextKey {
    role: String,
    purpose: &'static str,
    organisation: String,
    user: String,
    requester_is_patient: bool,
    legal_basis: &'static str,
    study_id: Option<String>,
    break_glass: bool,
}

/// A loaded, validated platform policy set.
pub struct PlatformPolicies {
    pub(super) sets: RuleSets,
    authorizer: Authorizer,
    cache: Mutex<HashMap<ContextKey, Arc<PlatformVerdicts>>>,
}

impl std::fmt::Debug for PlatformPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformPolicies")
            .field("version", &self.sets.version)
            .field("rules", &self.sets.by_id.len())
            .finish_non_exhaustive()
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let type_name =
        EntityTypeName::from_str(type_name).map_err(|e| PolicyError::Evaluation(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

impl PlatformPolicies {
    /// The policies shipped with the service.
    pub fn embedded() -> Result<Self, PolicyError> {
        PlatformPolicies::load(DEFAULT_POLICIES)
    }

    /// Parses, checks the conventions of, and type-checks a policy set.
    pub fn load(text: &str) -> Result<Self, PolicyError> {
        Ok(PlatformPolicies {
            sets: RuleSets::load(text)?,
            authorizer: Authorizer::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Identifies this policy set in decisions: a hash of its text.
    pub fn version(&self) -> &str {
        &self.sets.version
    }

    /// The ids of the opt-out exemption rules, in file order (none: the opt-out withholds everything,
    /// individual care included).
    pub fn exemption_ids(&self) -> Vec<&str> {
        let mut ids: Vec<(usize, &str)> = self
            .sets
            .exemptions
            .policies()
            .filter_map(|p| self.sets.by_id.get(p.id()))
            .map(|r| (r.order, &*r.rule.policy_id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The rules' verdicts for every cell class of `ctx`.
    pub fn evaluate(&self, ctx: &Context) -> Result<Arc<PlatformVerdicts>, PolicyError> {
        let key = ContextKey {
            role: ctx.role_code.clone(),
            purpose: ctx.purpose.code(),
            organisation: ctx.organisation_ods_code.clone(),
            user: ctx.user_id.clone(),
            requester_is_patient: ctx.requester_is_patient,
            legal_basis: ctx.legal_basis.policy_name(),
            study_id: ctx.study_id.clone(),
            break_glass: ctx.break_glass,
        };
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let verdicts = Arc::new(self.evaluate_uncached(&key)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, verdicts.clone());
        Ok(verdicts)
    }

    fn evaluate_uncached(&self, key: &ContextKey) -> Result<PlatformVerdicts, PolicyError> {
        // The rules that do not read the patient's consent see it as not given (load checks they do
        // not read it).
        let context = cedar_context(key, PatientConsent::NotGiven)?;
        let by_consent = PatientConsent::ALL
            .into_iter()
            .map(|consent| cedar_context(key, consent))
            .collect::<Result<Vec<_>, _>>()?;
        let principal = uid("Role", &key.role)?;
        let action = uid("Action", key.purpose)?;
        let entities = Entities::empty();
        let request = |resource: &EntityUid, context: &CedarContext| {
            Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context.clone(),
                None,
            )
            .map_err(|e| PolicyError::Evaluation(report(&e)))
        };
        let run = |request: &Request,
                   set: &CedarPolicySet|
         -> Result<(bool, Vec<&RuleInfo>), PolicyError> {
            let response = self.authorizer.is_authorized(request, set, &entities);
            // A rule that fails to evaluate must not silently drop out: no decision at all.
            if let Some(error) = response.diagnostics().errors().next() {
                return Err(PolicyError::Evaluation(report(error)));
            }
            let matched = response
                .diagnostics()
                .reason()
                .filter_map(|id| self.sets.by_id.get(id))
                .collect();
            Ok((response.decision() == CedarDecision::Allow, matched))
        };
        let by_id = |matched: Vec<&RuleInfo>| {
            let mut rules: Vec<RuleMatch> = matched.into_iter().map(|r| r.rule.clone()).collect();
            rules.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
            rules
        };
        let mut verdicts = PlatformVerdicts::default();
        for index in 0..CLASS_COUNT {
            let resource = uid("DataClass", Class::from_index(index).policy_name())?;
            let mut class = ClassVerdicts::default();
            if !self.sets.forbid.is_empty()
                || !self.sets.overrides.is_empty()
                || !self.sets.defaults.is_empty()
            {
                let request = request(&resource, &context)?;
                if !self.sets.forbid.is_empty() {
                    class.forbid = by_id(run(&request, &self.sets.forbid)?.1);
                }
                if !self.sets.overrides.is_empty() {
                    class.overrides = by_id(run(&request, &self.sets.overrides)?.1);
                }
                if !self.sets.defaults.is_empty() {
                    let (allowed, matched) = run(&request, &self.sets.defaults)?;
                    if !matched.is_empty() {
                        class.default = Some((allowed, by_id(matched)));
                    }
                }
            }
            if !self.sets.exemptions.is_empty() {
                for (consent, context) in PatientConsent::ALL.into_iter().zip(&by_consent) {
                    let (_, matched) = run(&request(&resource, context)?, &self.sets.exemptions)?;
                    class.exemptions[consent.index()] = matched
                        .into_iter()
                        .min_by_key(|r| r.order)
                        .map(|r| r.rule.clone());
                }
            }
            verdicts.classes[index] = class;
        }
        Ok(verdicts)
    }
}

/// The Cedar context of a request context, with the patient's consent as exemption rules see it.
fn cedar_context(key: &ContextKey, consent: PatientConsent) -> Result<CedarContext, PolicyError> {
    CedarContext::from_pairs([
        (
            "organisation".to_owned(),
            RestrictedExpression::new_string(key.organisation.clone()),
        ),
        (
            "user".to_owned(),
            RestrictedExpression::new_string(key.user.clone()),
        ),
        (
            "requester_is_patient".to_owned(),
            RestrictedExpression::new_bool(key.requester_is_patient),
        ),
        (
            "legal_basis".to_owned(),
            RestrictedExpression::new_string(key.legal_basis.to_owned()),
        ),
        (
            "study_id".to_owned(),
            RestrictedExpression::new_string(key.study_id.clone().unwrap_or_default()),
        ),
        (
            "has_study".to_owned(),
            RestrictedExpression::new_bool(key.study_id.is_some()),
        ),
        (
            "break_glass".to_owned(),
            RestrictedExpression::new_bool(key.break_glass),
        ),
        (
            PATIENT_ATTRIBUTES[0].to_owned(),
            RestrictedExpression::new_bool(consent.explicit()),
        ),
        (
            PATIENT_ATTRIBUTES[1].to_owned(),
            RestrictedExpression::new_bool(consent.study_specific()),
        ),
    ])
    .map_err(|e| PolicyError::Evaluation(report(&e)))
}
