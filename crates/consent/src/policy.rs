//! The platform policy set: deployment-managed Cedar policies, evaluated once per request context
//! and cell class (they do not depend on the patient), with the verdicts cached per context. The
//! national data opt-out's exemptions see one fact about the patient, whether they consented
//! explicitly (and to the study): they are evaluated for each of its three values, so that deciding
//! for a patient stays a lookup.

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
use crate::domain::optout::PatientConsent;

/// The rules shipped with the service; `CARERECORD_CONSENT_POLICY_FILE` replaces them.
pub const DEFAULT_POLICIES: &str = include_str!("../policy/default.cedar");
/// The schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../policy/schema.cedarschema");

/// Cached contexts before the cache is emptied (a bound on memory, not a correctness concern: the
/// verdicts depend only on the request context and this immutable policy set).
const CACHE_CAPACITY: usize = 16_384;

/// The context attributes describing the patient, which only opt-out exemptions may read (the other
/// kinds are evaluated once for all patients).
const PATIENT_ATTRIBUTES: [&str; 2] = ["patient_explicit_consent", "patient_study_consent"];

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
    /// Position in the policy file: among matching opt-out exemptions, the first is cited.
    order: usize,
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
    exemptions: CedarPolicySet,
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
        let mut exemptions = CedarPolicySet::new();
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
        for (order, policy) in policies.into_iter().enumerate() {
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
                (Some("optout-exemption"), Effect::Permit) => {
                    if pseudonymise || flag_for_review {
                        return Err(convention(
                            "an opt-out exemption permits nothing itself, so it takes no @obligations",
                        ));
                    }
                    &mut exemptions
                }
                (Some("optout-exemption"), Effect::Forbid) => {
                    return Err(convention(
                        "@kind(\"optout-exemption\") must be a permit policy",
                    ));
                }
                _ => {
                    return Err(convention(
                        "needs @kind(\"forbid\"), @kind(\"override\"), @kind(\"default\") or @kind(\"optout-exemption\")",
                    ));
                }
            };
            if policy.annotation("kind") != Some("optout-exemption")
                && let Some(attribute) = reads_patient_attribute(policy)?
            {
                return Err(convention(&format!(
                    "only @kind(\"optout-exemption\") rules may read context.{attribute} (the others are evaluated once for every patient)"
                )));
            }
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
                    order,
                },
            );
        }
        let digest = Sha256::digest(text.as_bytes());
        Ok(PlatformPolicies {
            version: format!("sha256:{}", hex::encode(&digest[..8])),
            forbid,
            overrides,
            defaults,
            exemptions,
            rules,
            authorizer: Authorizer::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Identifies this policy set in decisions: a hash of its text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The ids of the opt-out exemption rules, in file order (none: the opt-out withholds everything,
    /// individual care included).
    pub fn exemption_ids(&self) -> Vec<&str> {
        let mut ids: Vec<(usize, &str)> = self
            .exemptions
            .policies()
            .filter_map(|p| self.rules.get(p.id()))
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
                .filter_map(|id| self.rules.get(id))
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
            if !self.forbid.is_empty() || !self.overrides.is_empty() || !self.defaults.is_empty() {
                let request = request(&resource, &context)?;
                if !self.forbid.is_empty() {
                    class.forbid = by_id(run(&request, &self.forbid)?.1);
                }
                if !self.overrides.is_empty() {
                    class.overrides = by_id(run(&request, &self.overrides)?.1);
                }
                if !self.defaults.is_empty() {
                    let (allowed, matched) = run(&request, &self.defaults)?;
                    if !matched.is_empty() {
                        class.default = Some((allowed, by_id(matched)));
                    }
                }
            }
            if !self.exemptions.is_empty() {
                for (consent, context) in PatientConsent::ALL.into_iter().zip(&by_consent) {
                    let (_, matched) = run(&request(&resource, context)?, &self.exemptions)?;
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

/// The first patient attribute a policy's conditions read, if any. Cedar attribute names are always
/// literal, so a walk over the policy's JSON form finds every `.attr` and `has attr`.
fn reads_patient_attribute(
    policy: &cedar_policy::Policy,
) -> Result<Option<&'static str>, PolicyError> {
    fn find(value: &serde_json::Value) -> Option<&'static str> {
        match value {
            serde_json::Value::Object(map) => map
                .get("attr")
                .and_then(serde_json::Value::as_str)
                .and_then(|a| PATIENT_ATTRIBUTES.into_iter().find(|p| *p == a))
                .or_else(|| map.values().find_map(find)),
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    let json = policy
        .to_json()
        .map_err(|e| PolicyError::Parse(report(&e)))?;
    Ok(json.get("conditions").and_then(find))
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
    use crate::domain::decide::{CompiledDirective, Source, decide};
    use carerecord_contracts::consent::v1::{ConsentDecision, ConsentDirective, Provision};

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
        assert_eq!(p.rules.len(), 13);
        assert_eq!(
            p.exemption_ids(),
            [
                "opt-out-individual-care",
                "opt-out-legal-obligation",
                "opt-out-public-health",
                "opt-out-explicit-consent"
            ]
        );
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

    /// The exemption each patient-consent value gets for general data.
    fn exemptions(p: &PlatformPolicies, c: &Context) -> [Option<String>; 3] {
        let v = p.evaluate(c).unwrap();
        v.classes[Class::General.index()]
            .exemptions
            .clone()
            .map(|e| e.map(|r| r.policy_id.to_string()))
    }

    fn with_basis(purpose: Purpose, basis: LegalBasis) -> Context {
        Context {
            legal_basis: basis,
            ..ctx("R8000", purpose)
        }
    }

    /// A decision for an opted-out patient with these directives.
    fn decide_opted_out(
        p: &PlatformPolicies,
        c: &Context,
        directives: &[ConsentDirective],
    ) -> crate::domain::decide::Decision {
        let compiled: Vec<CompiledDirective> = directives
            .iter()
            .enumerate()
            .map(|(i, d)| CompiledDirective::compile(format!("d{i}"), 1, d))
            .collect();
        decide(c, &p.evaluate(c).unwrap(), &compiled, true, true)
    }

    fn research_consent(study: Option<&str>) -> ConsentDirective {
        ConsentDirective {
            decision: ConsentDecision::Deny as i32,
            scope_purposes: vec!["HRESCH".into()],
            provisions: study
                .map(|s| Provision {
                    study_ids: vec![s.into()],
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn all(id: &str) -> [Option<String>; 3] {
        [Some(id.into()), Some(id.into()), Some(id.into())]
    }

    #[test]
    fn individual_care_is_exempt_from_the_opt_out() {
        let p = PlatformPolicies::embedded().unwrap();
        for purpose in [Purpose::Treat, Purpose::Etreat, Purpose::Patrqt] {
            let mut c = ctx("R8000", purpose);
            c.break_glass = purpose == Purpose::Etreat;
            assert_eq!(
                exemptions(&p, &c),
                all("opt-out-individual-care"),
                "{purpose:?}"
            );
        }
        let d = decide_opted_out(&p, &ctx("R8000", Purpose::Treat), &[]);
        assert!(d.permit);
        let reason = &d.reasons[0];
        assert_eq!(
            (reason.source, reason.permit, reason.policy_id.as_str()),
            (Source::NationalDataOptOut, true, "opt-out-individual-care")
        );
        assert!(
            reason.explanation.contains("opt-out-individual-care")
                && reason.explanation.contains("own care"),
            "{}",
            reason.explanation
        );
        for purpose in [
            Purpose::Hresch,
            Purpose::Hoperat,
            Purpose::Hpaymt,
            Purpose::Hmarkt,
            Purpose::Pubhlth,
        ] {
            let c = with_basis(purpose, LegalBasis::Unspecified);
            assert_eq!(exemptions(&p, &c), [None, None, None], "{purpose:?}");
            let d = decide_opted_out(&p, &c, &[]);
            assert!(!d.permit, "{purpose:?}");
        }
    }

    #[test]
    fn legal_requirements_and_court_orders_are_exempt_from_the_opt_out() {
        let p = PlatformPolicies::embedded().unwrap();
        for basis in [
            LegalBasis::LegalRequirement,
            LegalBasis::CourtOrder,
            LegalBasis::OverridingPublicInterest,
        ] {
            let c = with_basis(Purpose::Hoperat, basis);
            assert_eq!(
                exemptions(&p, &c),
                all("opt-out-legal-obligation"),
                "{basis:?}"
            );
            let d = decide_opted_out(&p, &c, &[]);
            let ndoo: Vec<_> = d
                .reasons
                .iter()
                .filter(|r| r.source == Source::NationalDataOptOut)
                .map(|r| (r.permit, r.policy_id.as_str()))
                .collect();
            assert_eq!(ndoo, [(true, "opt-out-legal-obligation")], "{basis:?}");
        }
    }

    #[test]
    fn public_health_is_exempt_from_the_opt_out() {
        let p = PlatformPolicies::embedded().unwrap();
        let copi = with_basis(Purpose::Pubhlth, LegalBasis::PublicHealth);
        assert_eq!(exemptions(&p, &copi), all("opt-out-public-health"));
        let d = decide_opted_out(&p, &copi, &[]);
        assert!(
            d.permit,
            "exempt, then the public-health DEFAULT rule permits"
        );
        assert_eq!(
            d.reasons
                .iter()
                .map(|r| (r.source, r.policy_id.as_str()))
                .collect::<Vec<_>>(),
            [
                (Source::PlatformPolicy, "public-health"),
                (Source::NationalDataOptOut, "opt-out-public-health")
            ]
        );
        let no_basis = with_basis(Purpose::Pubhlth, LegalBasis::Unspecified);
        assert_eq!(exemptions(&p, &no_basis), [None, None, None]);
    }

    #[test]
    fn explicit_consent_is_exempt_only_when_the_directives_record_it() {
        let p = PlatformPolicies::embedded().unwrap();
        let mut research = with_basis(Purpose::Hresch, LegalBasis::ExplicitConsent);
        research.study_id = Some("IRAS-1".into());
        let id = Some("opt-out-explicit-consent".to_owned());
        // Research needs the study named; other purposes any explicit permit.
        assert_eq!(exemptions(&p, &research), [None, None, id.clone()]);
        let planning = with_basis(Purpose::Hoperat, LegalBasis::ExplicitConsent);
        assert_eq!(exemptions(&p, &planning), [None, id.clone(), id.clone()]);
        // Without the EXPLICIT_CONSENT basis, consent in the directives exempts nothing.
        let mut unstated = with_basis(Purpose::Hresch, LegalBasis::Unspecified);
        unstated.study_id = Some("IRAS-1".into());
        assert_eq!(exemptions(&p, &unstated), [None, None, None]);

        // Through the decision: the directive's verdict picks the exemption.
        let d = decide_opted_out(&p, &research, &[research_consent(Some("IRAS-1"))]);
        assert!(d.permit);
        assert_eq!(
            (d.reasons[0].source, d.reasons[0].policy_id.as_str()),
            (Source::NationalDataOptOut, "opt-out-explicit-consent")
        );
        assert_eq!(d.reasons[1].source, Source::PatientDirective);
        let other_study = decide_opted_out(&p, &research, &[research_consent(Some("IRAS-2"))]);
        assert!(!other_study.permit);
        let general = ConsentDirective {
            decision: ConsentDecision::Permit as i32,
            ..research_consent(None)
        };
        let d = decide_opted_out(&p, &research, &[general]);
        assert!(!d.permit, "a general research consent names no study");
        assert_eq!(
            (d.reasons[0].source, d.reasons[0].permit),
            (Source::NationalDataOptOut, false)
        );
        assert!(!decide_opted_out(&p, &unstated, &[research_consent(Some("IRAS-1"))]).permit);
    }

    #[test]
    fn an_ics_policy_file_changes_the_exemptions() {
        let embedded = PlatformPolicies::embedded().unwrap();
        // An ICS that does not accept an overriding public interest as an exemption.
        let narrowed = DEFAULT_POLICIES.replace(
            " ||\n  context.legal_basis == \"OVERRIDING_PUBLIC_INTEREST\"",
            "",
        );
        assert_ne!(narrowed, DEFAULT_POLICIES);
        let p = PlatformPolicies::load(&narrowed).unwrap();
        assert_ne!(p.version(), embedded.version());
        let interest = with_basis(Purpose::Hoperat, LegalBasis::OverridingPublicInterest);
        assert_eq!(
            exemptions(&embedded, &interest),
            all("opt-out-legal-obligation")
        );
        assert_eq!(exemptions(&p, &interest), [None, None, None]);
        assert!(!decide_opted_out(&p, &interest, &[]).permit);
        let court = with_basis(Purpose::Hoperat, LegalBasis::CourtOrder);
        assert_eq!(exemptions(&p, &court), all("opt-out-legal-obligation"));

        // And one that exempts payment audits by its own rule, cited by its id.
        let extended = format!(
            "{DEFAULT_POLICIES}\n@id(\"ics-payment-audit\") @kind(\"optout-exemption\")\n\
             permit (principal == Role::\"R8008\", action == Action::\"HPAYMT\", resource);"
        );
        let p = PlatformPolicies::load(&extended).unwrap();
        let audit = ctx("R8008", Purpose::Hpaymt);
        assert_eq!(exemptions(&p, &audit), all("ics-payment-audit"));
        assert_eq!(
            exemptions(&p, &ctx("R8000", Purpose::Hpaymt)),
            [None, None, None]
        );
        let d = decide_opted_out(&p, &audit, &[]);
        assert_eq!(
            (d.reasons[0].source, d.reasons[0].policy_id.as_str()),
            (Source::NationalDataOptOut, "ics-payment-audit")
        );
        assert!(
            !d.permit,
            "exempt from the opt-out; the built-in default still denies HPAYMT"
        );

        // Without exemptions, the opt-out withholds individual care too.
        let p = PlatformPolicies::load("").unwrap();
        assert!(p.exemption_ids().is_empty());
        assert!(!decide_opted_out(&p, &ctx("R8000", Purpose::Treat), &[]).permit);
    }

    #[test]
    fn only_exemptions_read_the_patients_consent() {
        let p = PlatformPolicies::load(
            "@id(\"e\") @kind(\"optout-exemption\") permit (principal, action, resource) \
             when { context has patient_study_consent && context.patient_study_consent };",
        )
        .unwrap();
        assert_eq!(
            exemptions(&p, &ctx("R8000", Purpose::Hoperat)),
            [None, None, Some("e".into())]
        );
        for kind in ["forbid", "default"] {
            let effect = if kind == "forbid" { "forbid" } else { "permit" };
            let message = load_error(&format!(
                "@id(\"k\") @kind(\"{kind}\") {effect} (principal, action, resource) \
                 when {{ context.patient_explicit_consent }};"
            ));
            assert!(
                message.contains("patient_explicit_consent")
                    && message.contains("optout-exemption"),
                "{message}"
            );
        }
        assert!(
            load_error(
                "@id(\"o\") @kind(\"override\") permit (principal, action, resource) \
                 when { context has patient_study_consent };"
            )
            .contains("patient_study_consent")
        );
        // Naming the attribute in a string is not reading it.
        assert!(
            PlatformPolicies::load(
                "@id(\"s\") @kind(\"forbid\") @description(\"patient_study_consent\") \
                 forbid (principal, action, resource) when { context.study_id == \"patient_study_consent\" };"
            )
            .is_ok()
        );
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
        assert!(
            load_error(
                "@id(\"a\") @kind(\"optout-exemption\") forbid (principal, action, resource);"
            )
            .contains("must be a permit")
        );
        assert!(load_error("@id(\"a\") @kind(\"optout-exemption\") @obligations(\"pseudonymise\") permit (principal, action, resource);").contains("no @obligations"));
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
