//! How a trusted issuer's verified claims name the caller: carerecord's own claim names (or a
//! deployment's renaming of them), NHS CIS2 user tokens and NHS login tokens.
//!
//! - CIS2: the user's national RBAC role is the one they selected at sign-in (`selected_roleid`),
//!   looked up by `person_roleid` in `nhsid_nrbac_roles`; it gives the role code (the job role,
//!   the `R` code after the last `:` of its `role_code`) and the organisation (`org_code`).
//! - NHS login: the token names a person by `nhs_number`, with an identity proofing level
//!   (`identity_proofing_level`: P0, P5 or P9); the service resolves the number to a patient
//!   through identity, and only at P9 ([`NhsLogin`]).
//!
//! Scopes come from the token's `scope` claim, else from the issuer's configured defaults; CIS2
//! tokens keep only `user/` scopes and NHS login tokens only `patient/` ones, whatever either says.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{Caller, Context, Scope};
use crate::error::Error;

/// A token's claims, once its signature, issuer, audience and times are verified.
pub type Claims = Map<String, Value>;

/// The identity proofing level NHS login tokens need to act for a patient.
pub const REQUIRED_PROOFING_LEVEL: &str = "P9";

/// The claim names of carerecord's own mapping (the contract's defaults), each renameable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    pub user_id: String,
    pub organisation: String,
    pub role: String,
    pub name: String,
    pub client_id: String,
    pub scope: String,
    pub patient: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            user_id: "sub".into(),
            organisation: "organisation_ods_code".into(),
            role: "role_code".into(),
            name: "name".into(),
            client_id: "client_id".into(),
            scope: "scope".into(),
            patient: "patient".into(),
        }
    }
}

/// How an issuer's claims name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimMapping {
    /// carerecord's claim names, or a deployment's renaming of them.
    Names(ClaimNames),
    /// NHS CIS2 Authentication user tokens (staff).
    Cis2,
    /// NHS login tokens (patients).
    NhsLogin,
}

/// What an NHS login token says about its person; the patient context comes from resolving the
/// NHS number through identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhsLogin {
    /// The `nhs_number` claim as given (empty when absent).
    pub nhs_number: String,
    /// `identity_proofing_level`, e.g. `P9` (empty when absent).
    pub proofing_level: String,
}

impl NhsLogin {
    /// Whether the person's identity is proven well enough to act for a patient.
    pub fn proven(&self) -> bool {
        self.proofing_level == REQUIRED_PROOFING_LEVEL
    }
}

/// A string claim, or empty; numbers are taken as their decimal text.
fn text(claims: &Claims, name: &str) -> String {
    match claims.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The calling application: `client_id`, else `azp`.
fn client(claims: &Claims) -> String {
    let client_id = text(claims, "client_id");
    if client_id.is_empty() {
        text(claims, "azp")
    } else {
        client_id
    }
}

/// The SMART scopes of a scope string, in `contexts` only (all when `None`).
fn scopes_in(raw: &str, contexts: Option<&[Context]>) -> Vec<Scope> {
    raw.split_whitespace()
        .filter_map(Scope::parse)
        .filter(|s| contexts.is_none_or(|c| c.contains(&s.context)))
        .collect()
}

/// The token's SMART scopes, else the issuer's defaults, in `contexts` only.
fn scopes(token: &str, defaults: &str, contexts: Option<&[Context]>) -> Vec<Scope> {
    let from_token = scopes_in(token, contexts);
    if from_token.is_empty() {
        scopes_in(defaults, contexts)
    } else {
        from_token
    }
}

fn required_user(user_id: String) -> Result<String, Error> {
    if user_id.trim().is_empty() {
        return Err(Error::TokenInvalid("empty user id".into()));
    }
    Ok(user_id)
}

impl ClaimMapping {
    /// The caller the claims name; `default_scopes` apply when the token carries none.
    pub fn caller(&self, claims: &Claims, default_scopes: &str) -> Result<Caller, Error> {
        match self {
            ClaimMapping::Names(names) => {
                let scope = text(claims, &names.scope);
                Ok(Caller {
                    user_id: required_user(text(claims, &names.user_id))?,
                    organisation_ods_code: text(claims, &names.organisation),
                    role_code: text(claims, &names.role),
                    display_name: text(claims, &names.name),
                    client_id: text(claims, &names.client_id),
                    patient: text(claims, &names.patient).to_ascii_lowercase(),
                    scopes: scopes(&scope, default_scopes, None),
                    nhs_login: None,
                    slot: Default::default(),
                })
            }
            ClaimMapping::Cis2 => cis2(claims, default_scopes),
            ClaimMapping::NhsLogin => {
                let given = text(claims, "given_name");
                let family = text(claims, "family_name");
                Ok(Caller {
                    user_id: required_user(text(claims, "sub"))?,
                    organisation_ods_code: String::new(),
                    role_code: String::new(),
                    display_name: format!("{given} {family}").trim().to_owned(),
                    client_id: client(claims),
                    patient: String::new(),
                    scopes: scopes(
                        &text(claims, "scope"),
                        default_scopes,
                        Some(&[Context::Patient]),
                    ),
                    nhs_login: Some(NhsLogin {
                        nhs_number: text(claims, "nhs_number"),
                        proofing_level: text(claims, "identity_proofing_level"),
                    }),
                    slot: Default::default(),
                })
            }
        }
    }
}

/// A CIS2 user: the selected role among the token's national RBAC roles.
fn cis2(claims: &Claims, default_scopes: &str) -> Result<Caller, Error> {
    let selected = text(claims, "selected_roleid");
    if selected.is_empty() {
        return Err(Error::RoleNotSelected(
            "the token names no selected role (selected_roleid): sign in again and select a role"
                .into(),
        ));
    }
    let roles = match claims.get("nhsid_nrbac_roles") {
        Some(Value::Array(roles)) => roles.as_slice(),
        _ => &[],
    };
    let role = roles
        .iter()
        .filter_map(Value::as_object)
        .find(|r| text(r, "person_roleid") == selected)
        .ok_or_else(|| {
            Error::RoleNotSelected(
                "the selected role (selected_roleid) is not among the token's roles (nhsid_nrbac_roles)"
                    .into(),
            )
        })?;
    // `S8000:G8000:R8000`: the job role is the last part.
    let role_code = text(role, "role_code")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let organisation = text(role, "org_code");
    if role_code.is_empty() || organisation.is_empty() {
        return Err(Error::RoleNotSelected(
            "the selected role has no role_code or org_code".into(),
        ));
    }
    let uid = text(claims, "uid");
    Ok(Caller {
        user_id: required_user(if uid.is_empty() {
            text(claims, "sub")
        } else {
            uid
        })?,
        organisation_ods_code: organisation,
        role_code,
        display_name: text(claims, "name"),
        client_id: client(claims),
        patient: String::new(),
        scopes: scopes(
            &text(claims, "scope"),
            default_scopes,
            Some(&[Context::User]),
        ),
        nhs_login: None,
        slot: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn cis2_claims() -> Value {
        json!({
            "sub": "910000000001", "uid": "555021935107", "name": "Dr Ada Clinician",
            "azp": "cis2-app", "scope": "openid profile nationalrbacaccess",
            "selected_roleid": "555254240100",
            "nhsid_nrbac_roles": [
                {"person_orgid": "555254239107", "person_roleid": "555254239108",
                 "org_code": "RBA", "role_name": "\"Admin\"", "role_code": "S0080:G0450:R5080"},
                {"person_orgid": "555254239107", "person_roleid": "555254240100",
                 "org_code": "RR8", "role_name": "\"Clinical\":\"Clinical Provision\":\"Clinical Practitioner Access Role\"",
                 "role_code": "S8000:G8000:R8000"}
            ]
        })
    }

    #[test]
    fn cis2_users_act_in_their_selected_role() {
        let caller = ClaimMapping::Cis2
            .caller(&claims(cis2_claims()), "user/*.rs patient/*.rs")
            .unwrap();
        assert_eq!(
            (
                caller.user_id.as_str(),
                caller.role_code.as_str(),
                caller.organisation_ods_code.as_str(),
                caller.client_id.as_str(),
            ),
            ("555021935107", "R8000", "RR8", "cis2-app")
        );
        // The token's scopes are OIDC ones: the defaults apply, user/ ones only.
        assert!(caller.has(Context::User, "Observation", 'r'));
        assert!(!caller.has_context(Context::Patient));

        let mut none = cis2_claims();
        none.as_object_mut().unwrap().remove("selected_roleid");
        let mut other = cis2_claims();
        other["selected_roleid"] = json!("999");
        let mut blank = cis2_claims();
        blank["nhsid_nrbac_roles"][1]["role_code"] = json!("");
        for bad in [none, other, blank] {
            assert!(matches!(
                ClaimMapping::Cis2.caller(&claims(bad), "user/*.rs"),
                Err(Error::RoleNotSelected(_))
            ));
        }
    }

    #[test]
    fn nhs_login_tokens_carry_the_person_and_patient_scopes_only() {
        let token = json!({
            "sub": "49f470a1-cc52-49b7-beba-0f9cec937c46", "nhs_number": "9912003888",
            "identity_proofing_level": "P9", "given_name": "Mona", "family_name": "Millar",
            "aud": "nhs-app", "scope": "openid profile nhs_number user/*.rs patient/Observation.rs",
        });
        let caller = ClaimMapping::NhsLogin
            .caller(&claims(token), "patient/*.rs")
            .unwrap();
        assert_eq!(caller.display_name, "Mona Millar");
        assert!(caller.patient.is_empty());
        assert!(caller.has(Context::Patient, "Observation", 'r'));
        assert!(!caller.has(Context::Patient, "Condition", 'r'));
        assert!(!caller.has_context(Context::User));
        let login = caller.nhs_login.unwrap();
        assert!(login.proven());
        let low = NhsLogin {
            nhs_number: login.nhs_number,
            proofing_level: "P5".into(),
        };
        assert!(!low.proven());
    }

    #[test]
    fn carerecord_names_can_be_renamed() {
        let names = ClaimNames {
            organisation: "ods".into(),
            role: "rbac_role".into(),
            ..ClaimNames::default()
        };
        let token = json!({"sub": "svc", "ods": "X26", "rbac_role": "R8000",
            "client_id": "c1", "scope": "system/*.rs", "patient": "ABC"});
        let caller = ClaimMapping::Names(names)
            .caller(&claims(token), "")
            .unwrap();
        assert_eq!(
            (
                caller.organisation_ods_code.as_str(),
                caller.role_code.as_str(),
                caller.patient.as_str()
            ),
            ("X26", "R8000", "abc")
        );
        assert!(caller.has(Context::System, "Condition", 'r'));
        assert!(matches!(
            ClaimMapping::Names(ClaimNames::default()).caller(&claims(json!({"sub": " "})), ""),
            Err(Error::TokenInvalid(_))
        ));
    }
}
