//! Loading a policy set: parse, type-check against the schema, check carerecord's conventions
//! (`@id`, `@kind`, `@obligations`, which rules may read the patient's consent), and sort the rules
//! by kind.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Effect, Policy, PolicyId, PolicySet as CedarPolicySet, Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

use super::embedded::SCHEMA;
use super::error::{PolicyError, report};
use crate::domain::decide::RuleMatch;

/// The context attributes describing the patient, which only opt-out exemptions may read (the other
/// kinds are evaluated once for all patients).
pub(super) const PATIENT_ATTRIBUTES: [&str; 2] =
    ["patient_explicit_consent", "patient_study_consent"];

/// Obligations and description of a loaded rule.
#[derive(Debug, Clone)]
pub(super) struct RuleInfo {
    pub(super) rule: RuleMatch,
    /// Position in the policy file: among matching opt-out exemptions, the first is cited.
    pub(super) order: usize,
}

/// A checked policy set, its rules sorted by kind.
pub(super) struct RuleSets {
    /// Identifies the set in decisions: a hash of its text.
    pub(super) version: String,
    pub(super) forbid: CedarPolicySet,
    pub(super) overrides: CedarPolicySet,
    pub(super) defaults: CedarPolicySet,
    pub(super) exemptions: CedarPolicySet,
    pub(super) by_id: HashMap<PolicyId, RuleInfo>,
}

impl RuleSets {
    /// Parses, checks the conventions of, and type-checks a policy set.
    pub(super) fn load(text: &str) -> Result<RuleSets, PolicyError> {
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
        let mut by_id = HashMap::new();
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
            let (pseudonymise, flag_for_review) = obligations(policy).map_err(convention)?;
            let kind = Kind::of(policy, pseudonymise || flag_for_review).map_err(convention)?;
            if kind != Kind::OptOutExemption
                && let Some(attribute) = reads_patient_attribute(policy)?
            {
                return Err(convention(&format!(
                    "only @kind(\"optout-exemption\") rules may read context.{attribute} (the others are evaluated once for every patient)"
                )));
            }
            let target = match kind {
                Kind::Forbid => &mut forbid,
                Kind::Override => &mut overrides,
                Kind::Default => &mut defaults,
                Kind::OptOutExemption => &mut exemptions,
            };
            let policy_id = PolicyId::new(&id);
            target
                .add(policy.new_id(policy_id.clone()))
                .map_err(|e| PolicyError::Parse(report(&e)))?;
            by_id.insert(
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
        Ok(RuleSets {
            version: format!("sha256:{}", hex::encode(&digest[..8])),
            forbid,
            overrides,
            defaults,
            exemptions,
            by_id,
        })
    }
}

/// A rule's `@kind`: the step of the decision it takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forbid,
    Override,
    Default,
    OptOutExemption,
}

impl Kind {
    /// The kind `policy` names, checked against its effect and whether it has obligations; else
    /// the convention it breaks.
    fn of(policy: &Policy, has_obligations: bool) -> Result<Kind, &'static str> {
        match (policy.annotation("kind"), policy.effect()) {
            (Some("forbid"), Effect::Forbid) => Ok(Kind::Forbid),
            (Some("forbid"), Effect::Permit) => Err("@kind(\"forbid\") must be a forbid policy"),
            (Some("override"), Effect::Permit) => Ok(Kind::Override),
            (Some("override"), Effect::Forbid) => {
                Err("@kind(\"override\") must be a permit policy")
            }
            (Some("default"), _) => Ok(Kind::Default),
            (Some("optout-exemption"), Effect::Permit) if has_obligations => {
                Err("an opt-out exemption permits nothing itself, so it takes no @obligations")
            }
            (Some("optout-exemption"), Effect::Permit) => Ok(Kind::OptOutExemption),
            (Some("optout-exemption"), Effect::Forbid) => {
                Err("@kind(\"optout-exemption\") must be a permit policy")
            }
            _ => Err(
                "needs @kind(\"forbid\"), @kind(\"override\"), @kind(\"default\") or @kind(\"optout-exemption\")",
            ),
        }
    }
}

/// The `@obligations` of a rule, (pseudonymise, flag_for_review); else the convention it breaks.
fn obligations(policy: &Policy) -> Result<(bool, bool), &'static str> {
    let mut pseudonymise = false;
    let mut flag_for_review = false;
    if let Some(obligations) = policy.annotation("obligations") {
        if policy.effect() != Effect::Permit {
            return Err("@obligations may only be attached to a permit");
        }
        for token in obligations.split_whitespace() {
            match token {
                "pseudonymise" => pseudonymise = true,
                "flag_for_review" => flag_for_review = true,
                _ => return Err("@obligations takes pseudonymise and/or flag_for_review"),
            }
        }
    }
    Ok((pseudonymise, flag_for_review))
}

/// The first patient attribute a policy's conditions read, if any. Cedar attribute names are always
/// literal, so a walk over the policy's JSON form finds every `.attr` and `has attr`.
fn reads_patient_attribute(policy: &Policy) -> Result<Option<&'static str>, PolicyError> {
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
