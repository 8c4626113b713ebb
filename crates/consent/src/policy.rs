//! The platform policy set: deployment-managed Cedar policies, evaluated once per request context
//! and cell class (they do not depend on the patient), with the verdicts cached per context.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Context as CedarContext, Decision as CedarDecision, Effect, Entities, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet as CedarPolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

use crate::domain::codes::{CLASS_COUNT, Class};
use crate::domain::decide::{ClassVerdicts, Context, PlatformVerdicts, RuleMatch};

/// The rules shipped with the service; `CARERECORD_CONSENT_POLICY_FILE` replaces them.
pub const DEFAULT_POLICIES: &str = include_str!("../policy/default.cedar");
/// The schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../policy/schema.cedarschema");

/// Cached contexts before the cache is emptied (a bound on memory, not a correctness concern: the
/// verdicts depend only on the request context and this immutable policy set).
const CACHE_CAPACITY: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("does not parse: {0}")]
    Parse(String),
    #[error("templates are not supported (policy {0})")]
    Template(String),
    #[error("a policy has no @id annotation (source policy {0})")]
    MissingId(String),
    #[error("@id {0:?} is used by more than one policy")]
    DuplicateId(String),
    #[error("policy {id}: {reason}")]
    Convention { id: String, reason: String },
    #[error("does not type-check against the policy schema: {0}")]
    Validation(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("evaluating {0}")]
    Evaluation(String),
}

/// Obligations and description of a loaded rule.
#[derive(Debug, Clone)]
struct RuleInfo {
    rule: RuleMatch,
}

/// The cache key: every request attribute the policies can see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContextKey {
    role: String,
    purpose: &'static str,
    organisation: String,
    user: String,
    legal_basis: &'static str,
    study_id: Option<String>,
    break_glass: bool,
}

/// A loaded, validated platform policy set.
pub struct PlatformPolicies {
    version: String,
    forbid: CedarPolicySet,
    overrides: CedarPolicySet,
    defaults: CedarPolicySet,
    rules: HashMap<PolicyId, RuleInfo>,
    authorizer: Authorizer,
    cache: Mutex<HashMap<ContextKey, Arc<PlatformVerdicts>>>,
}

impl std::fmt::Debug for PlatformPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformPolicies")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
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
        let parsed = CedarPolicySet::from_str(text).map_err(|e| PolicyError::Parse(report(&e)))?;
        if let Some(template) = parsed.templates().next() {
            return Err(PolicyError::Template(template.id().to_string()));
        }
        let (schema, _) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(report(&e)))?;
        let validation = Validator::new(schema).validate(&parsed, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation.validation_errors().map(|e| report(e)).collect();
            return Err(PolicyError::Validation(errors.join("; ")));
        }

        let mut forbid = CedarPolicySet::new();
        let mut overrides = CedarPolicySet::new();
        let mut defaults = CedarPolicySet::new();
        let mut rules = HashMap::new();
        let mut seen = HashSet::new();
        // Source order, so that error messages and ids are stable.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        for policy in policies {
            let id = policy
                .annotation("id")
                .filter(|id| !id.trim().is_empty())
                .ok_or_else(|| PolicyError::MissingId(policy.id().to_string()))?
                .to_owned();
            if !seen.insert(id.clone()) {
                return Err(PolicyError::DuplicateId(id));
            }
            let convention = |reason: &str| PolicyError::Convention {
                id: id.clone(),
                reason: reason.to_owned(),
            };
            let effect = policy.effect();
            let mut pseudonymise = false;
            let mut flag_for_review = false;
            if let Some(obligations) = policy.annotation("obligations") {
                if effect != Effect::Permit {
                    return Err(convention("@obligations may only be attached to a permit"));
                }
                for token in obligations.split_whitespace() {
                    match token {
                        "pseudonymise" => pseudonymise = true,
                        "flag_for_review" => flag_for_review = true,
                        _ => {
                            return Err(convention(
                                "@obligations takes pseudonymise and/or flag_for_review",
                            ));
                        }
                    }
                }
            }
            let target = match (policy.annotation("kind"), effect) {
                (Some("forbid"), Effect::Forbid) => &mut forbid,
                (Some("forbid"), Effect::Permit) => {
                    return Err(convention("@kind(\"forbid\") must be a forbid policy"));
                }
                (Some("override"), Effect::Permit) => &mut overrides,
                (Some("override"), Effect::Forbid) => {
                    return Err(convention("@kind(\"override\") must be a permit policy"));
                }
                (Some("default"), _) => &mut defaults,
                _ => {
                    return Err(convention(
                        "needs @kind(\"forbid\"), @kind(\"override\") or @kind(\"default\")",
                    ));
                }
            };
            let policy_id = PolicyId::new(&id);
            target
                .add(policy.new_id(policy_id.clone()))
                .map_err(|e| PolicyError::Parse(report(&e)))?;
            rules.insert(
                policy_id,
                RuleInfo {
                    rule: RuleMatch {
                        policy_id: Arc::from(id.as_str()),
                        pseudonymise,
                        flag_for_review,
                        description: policy.annotation("description").map(Arc::from),
                    },
                },
            );
        }
        let digest = Sha256::digest(text.as_bytes());
        Ok(PlatformPolicies {
            version: format!("sha256:{}", hex::encode(&digest[..8])),
            forbid,
            overrides,
            defaults,
            rules,
            authorizer: Authorizer::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Identifies this policy set in decisions: a hash of its text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rules' verdicts for every cell class of `ctx`.
    pub fn evaluate(&self, ctx: &Context) -> Result<Arc<PlatformVerdicts>, PolicyError> {
        let key = ContextKey {
            role: ctx.role_code.clone(),
            purpose: ctx.purpose.code(),
            organisation: ctx.organisation_ods_code.clone(),
            user: ctx.user_id.clone(),
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
        let context = CedarContext::from_pairs([
            (
                "organisation".to_owned(),
                RestrictedExpression::new_string(key.organisation.clone()),
            ),
            (
                "user".to_owned(),
                RestrictedExpression::new_string(key.user.clone()),
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
        ])
        .map_err(|e| PolicyError::Evaluation(report(&e)))?;
        let principal = uid("Role", &key.role)?;
        let action = uid("Action", key.purpose)?;
        let entities = Entities::empty();
        let mut verdicts = PlatformVerdicts::default();
        for index in 0..CLASS_COUNT {
            let resource = uid("DataClass", Class::from_index(index).policy_name())?;
            let request = Request::new(
                principal.clone(),
                action.clone(),
                resource,
                context.clone(),
                None,
            )
            .map_err(|e| PolicyError::Evaluation(report(&e)))?;
            let run = |set: &CedarPolicySet| -> Result<(bool, Vec<RuleMatch>), PolicyError> {
                let response = self.authorizer.is_authorized(&request, set, &entities);
                // A rule that fails to evaluate must not silently drop out: no decision at all.
                if let Some(error) = response.diagnostics().errors().next() {
                    return Err(PolicyError::Evaluation(report(error)));
                }
                let mut matched: Vec<RuleMatch> = response
                    .diagnostics()
                    .reason()
                    .filter_map(|id| self.rules.get(id).map(|r| r.rule.clone()))
                    .collect();
                matched.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
                Ok((response.decision() == CedarDecision::Allow, matched))
            };
            let mut class = ClassVerdicts::default();
            if !self.forbid.is_empty() {
                class.forbid = run(&self.forbid)?.1;
            }
            if !self.overrides.is_empty() {
                class.overrides = run(&self.overrides)?.1;
            }
            if !self.defaults.is_empty() {
                let (allowed, matched) = run(&self.defaults)?;
                if !matched.is_empty() {
                    class.default = Some((allowed, matched));
                }
            }
            verdicts.classes[index] = class;
        }
        Ok(verdicts)
    }
}

/// An error's message with its causes, on one line.
fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::codes::{DataClass, LegalBasis, Purpose};

    fn ctx(role: &str, purpose: Purpose) -> Context {
        Context {
            time: 0,
            user_id: "u1".into(),
            organisation_ods_code: "RXA".into(),
            role_code: role.into(),
            purpose,
            classes: DataClass::ALL.to_vec(),
            legal_basis: LegalBasis::Unspecified,
            study_id: None,
            break_glass: false,
        }
    }

    fn ids(rules: &[RuleMatch]) -> Vec<&str> {
        rules.iter().map(|r| &*r.policy_id).collect()
    }

    fn forbids(p: &PlatformPolicies, c: &Context, class: Class) -> Vec<String> {
        let v = p.evaluate(c).unwrap();
        ids(&v.classes[class.index()].forbid)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn embedded_rules_load_and_have_a_version() {
        let p = PlatformPolicies::embedded().unwrap();
        assert!(p.version().starts_with("sha256:"));
        assert_eq!(p.rules.len(), 9);
    }

    #[test]
    fn roles_are_checked_for_purposes() {
        let p = PlatformPolicies::embedded().unwrap();
        let general = Class::General;
        assert!(forbids(&p, &ctx("R8000", Purpose::Treat), general).is_empty());
        assert_eq!(
            forbids(&p, &ctx("R8010", Purpose::Treat), general),
            ["care-roles-only"]
        );
        assert_eq!(
            forbids(&p, &ctx("R8008", Purpose::Etreat), general),
            ["break-glass-clinicians-only"]
        );
        assert_eq!(
            forbids(&p, &ctx("R8010", Purpose::Etreat), general),
            ["break-glass-clinicians-only", "care-roles-only"],
            "every matching rule is cited, by id"
        );
        let student = ctx("R8004", Purpose::Treat);
        assert_eq!(
            forbids(&p, &student, Class::Labelled(DataClass::Safeguarding)),
            ["students-no-safeguarding"]
        );
        assert!(forbids(&p, &student, Class::Labelled(DataClass::MentalHealth)).is_empty());
        assert_eq!(
            forbids(&p, &ctx("R8000", Purpose::Hmarkt), general),
            ["no-marketing"]
        );
        let mut research = ctx("R8000", Purpose::Hresch);
        assert_eq!(forbids(&p, &research, general), ["research-names-study"]);
        research.study_id = Some("IRAS-1".into());
        assert!(forbids(&p, &research, general).is_empty());
    }

    #[test]
    fn overrides_and_defaults() {
        let p = PlatformPolicies::embedded().unwrap();
        let mut court = ctx("R8000", Purpose::Hoperat);
        court.legal_basis = LegalBasis::CourtOrder;
        let v = p.evaluate(&court).unwrap();
        let general = &v.classes[Class::General.index()];
        assert_eq!(ids(&general.overrides), ["court-order"]);
        assert!(general.overrides[0].flag_for_review);

        let v = p.evaluate(&ctx("R8000", Purpose::Hoperat)).unwrap();
        let (permit, rules) = v.classes[Class::General.index()].default.clone().unwrap();
        assert!(permit);
        assert_eq!(ids(&rules), ["planning-pseudonymised"]);
        assert!(rules[0].pseudonymise);
        let (permit, rules) = v.classes[DataClass::Genomic as usize]
            .default
            .clone()
            .unwrap();
        assert!(!permit, "deny wins among DEFAULT rules");
        assert_eq!(ids(&rules), ["planning-no-genomic"]);

        let mut copi = ctx("R8000", Purpose::Pubhlth);
        assert!(p.evaluate(&copi).unwrap().classes[0].default.is_none());
        copi.legal_basis = LegalBasis::PublicHealth;
        let v = p.evaluate(&copi).unwrap();
        assert_eq!(
            ids(&v.classes[0].default.as_ref().unwrap().1),
            ["public-health"]
        );
        assert!(
            p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap().classes[0]
                .default
                .is_none()
        );
    }

    #[test]
    fn verdicts_are_cached_per_context() {
        let p = PlatformPolicies::embedded().unwrap();
        let a = p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap();
        let b = p.evaluate(&ctx("R8000", Purpose::Treat)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = p.evaluate(&ctx("R8001", Purpose::Treat)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    fn load_error(text: &str) -> String {
        PlatformPolicies::load(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_policy_files_are_refused_with_a_reason() {
        assert!(load_error("permit (principal,").starts_with("does not parse"));
        assert!(
            load_error("@kind(\"forbid\") forbid (principal, action, resource);").contains("@id")
        );
        assert!(
            load_error(
                "@id(\"a\") @kind(\"forbid\") forbid (principal, action, resource);\n\
             @id(\"a\") @kind(\"forbid\") forbid (principal, action, resource);"
            )
            .contains("\"a\" is used by more than one policy")
        );
        assert!(
            load_error("@id(\"a\") @kind(\"override\") forbid (principal, action, resource);")
                .contains("must be a permit")
        );
        assert!(
            load_error("@id(\"a\") @kind(\"forbid\") permit (principal, action, resource);")
                .contains("must be a forbid")
        );
        assert!(load_error("@id(\"a\") permit (principal, action, resource);").contains("@kind"));
        assert!(load_error("@id(\"a\") @kind(\"default\") @obligations(\"shred\") permit (principal, action, resource);").contains("@obligations"));
        assert!(load_error("@id(\"a\") @kind(\"default\") @obligations(\"pseudonymise\") forbid (principal, action, resource);").contains("only be attached to a permit"));
        let typo = load_error(
            "@id(\"a\") @kind(\"forbid\") forbid (principal, action, resource) when { context.purpose == \"HRESCH\" };",
        );
        assert!(typo.starts_with("does not type-check"), "{typo}");
        assert!(
            load_error(
                "@id(\"t\") @kind(\"forbid\") forbid (principal == ?principal, action, resource);"
            )
            .contains("templates")
        );
        assert!(
            PlatformPolicies::load("").is_ok(),
            "an empty set leaves the built-in default"
        );
    }
}
