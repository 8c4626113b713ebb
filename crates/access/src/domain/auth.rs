//! The verified caller and SMART App Launch v2 scopes. Tokens are verified in
//! [`super::tokens`] (re-exported here) and their claims mapped to a caller in [`super::claims`].

use std::collections::HashSet;
use std::sync::Arc;

pub use super::claims::NhsLogin;
pub use super::tokens::{
    Issuer, KeySource, LEEWAY_SECONDS, TokenVerifier, TrustedKey, keys_from_jwks,
};
use crate::error::Error;

/// A SMART scope context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    User,
    System,
    Patient,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::User => "user",
            Context::System => "system",
            Context::Patient => "patient",
        }
    }
}

/// One granted scope: context, resource type (`*` for any) and permission letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    pub resource_type: String,
    pub permissions: HashSet<char>,
}

impl Scope {
    /// Parses `user/Observation.rs`, `system/*.read` and the like; `None` for anything else
    /// (non-SMART scopes such as `openid` are simply not resource scopes).
    pub fn parse(raw: &str) -> Option<Scope> {
        let (context, rest) = raw.split_once('/')?;
        let context = match context {
            "user" => Context::User,
            "system" => Context::System,
            "patient" => Context::Patient,
            _ => return None,
        };
        // SMART v2 allows a `?query` suffix narrowing the scope; such scopes are not honoured here.
        if rest.contains('?') {
            return None;
        }
        let (resource_type, permissions) = rest.split_once('.')?;
        if resource_type.is_empty() {
            return None;
        }
        let permissions: HashSet<char> = match permissions {
            "read" => "rs".chars().collect(),
            "write" => "cud".chars().collect(),
            "*" => "cruds".chars().collect(),
            letters if !letters.is_empty() && letters.chars().all(|c| "cruds".contains(c)) => {
                letters.chars().collect()
            }
            _ => return None,
        };
        Some(Scope {
            context,
            resource_type: resource_type.to_owned(),
            permissions,
        })
    }

    pub fn covers(&self, context: Context, resource_type: &str, permission: char) -> bool {
        self.context == context
            && (self.resource_type == "*" || self.resource_type == resource_type)
            && self.permissions.contains(&permission)
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
    pub client_id: String,
    /// The `patient` claim: the patient a patient-facing token acts for (for an NHS login token,
    /// the patient its NHS number resolves to, set by the service).
    pub patient: String,
    pub scopes: Vec<Scope>,
    /// For an NHS login token, its person's NHS number and identity proofing level.
    pub nhs_login: Option<NhsLogin>,
    /// The client's concurrent-call slot this call holds, when the client's calls in flight are
    /// limited (set by the service once the call is admitted).
    pub slot: Slot,
}

/// One of a client's concurrent-call slots, held while a call runs: every clone of the call's
/// caller holds it, and the last one dropped frees it. Callers compare equal whatever slot they
/// hold.
#[derive(Clone, Default)]
pub struct Slot(Option<Arc<dyn std::any::Any + Send + Sync>>);

impl Slot {
    /// A slot held as long as `guard` lives.
    pub fn holding<T: Send + Sync + 'static>(guard: T) -> Self {
        Slot(Some(Arc::new(guard)))
    }
}

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Slot {}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Slot(held)"
        } else {
            "Slot(none)"
        })
    }
}

impl Caller {
    /// Whose limits the call counts against: the token's client_id, else its user (a system
    /// token's `sub` is the client's own id).
    pub fn client_key(&self) -> &str {
        if self.client_id.is_empty() {
            &self.user_id
        } else {
            &self.client_id
        }
    }
}

impl Caller {
    pub fn requester(&self) -> carerecord_contracts::common::v1::Requester {
        carerecord_contracts::common::v1::Requester {
            user_id: self.user_id.clone(),
            organisation_ods_code: self.organisation_ods_code.clone(),
            role_code: self.role_code.clone(),
            display_name: self.display_name.clone(),
        }
    }

    pub fn has(&self, context: Context, resource_type: &str, permission: char) -> bool {
        self.scopes
            .iter()
            .any(|s| s.covers(context, resource_type, permission))
    }

    /// Ok when one of `contexts` grants `permission` on `resource_type`; else SCOPE_MISSING naming
    /// the first context's scope.
    pub fn require(
        &self,
        contexts: &[Context],
        resource_type: &str,
        permission: char,
    ) -> Result<Context, Error> {
        contexts
            .iter()
            .copied()
            .find(|c| self.has(*c, resource_type, permission))
            .ok_or_else(|| Error::ScopeMissing {
                required_scope: format!(
                    "{}/{resource_type}.{permission}",
                    contexts.first().map_or("user", |c| c.as_str())
                ),
            })
    }

    /// Whether any of `contexts` grants `permission` on every resource type (`*`).
    pub fn covers_all_types(&self, contexts: &[Context], permission: char) -> bool {
        self.scopes.iter().any(|s| {
            contexts.contains(&s.context)
                && s.resource_type == "*"
                && s.permissions.contains(&permission)
        })
    }

    /// The specific resource types `contexts` grant `permission` on (excluding `*`), sorted.
    pub fn covered_types(&self, contexts: &[Context], permission: char) -> Vec<String> {
        let mut types: Vec<String> = self
            .scopes
            .iter()
            .filter(|s| {
                contexts.contains(&s.context)
                    && s.resource_type != "*"
                    && s.permissions.contains(&permission)
            })
            .map(|s| s.resource_type.clone())
            .collect();
        types.sort();
        types.dedup();
        types
    }

    /// The context a token's scopes are in, by preference user > system > patient.
    pub fn has_context(&self, context: Context) -> bool {
        self.scopes.iter().any(|s| s.context == context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_v1_and_v2_forms() {
        let s = Scope::parse("user/Observation.rs").unwrap();
        assert!(s.covers(Context::User, "Observation", 'r'));
        assert!(!s.covers(Context::User, "Condition", 'r'));
        assert!(!s.covers(Context::System, "Observation", 'r'));
        assert!(!s.covers(Context::User, "Observation", 'u'));
        let s = Scope::parse("system/*.read").unwrap();
        assert!(s.covers(Context::System, "Condition", 'r'));
        assert!(!s.covers(Context::System, "Condition", 'u'));
        assert!(
            Scope::parse("user/*.write")
                .unwrap()
                .covers(Context::User, "AuditEvent", 'u')
        );
        assert!(
            Scope::parse("patient/*.*")
                .unwrap()
                .covers(Context::Patient, "X", 's')
        );
        for bad in [
            "openid",
            "user/Observation",
            "user/.rs",
            "group/*.rs",
            "user/*.rx",
            "user/*.",
            "user/Observation.rs?code=x",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }
}
