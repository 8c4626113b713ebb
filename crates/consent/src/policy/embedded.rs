//! The policy set and schema shipped with the service.

/// The rules shipped with the service; `CARERECORD_CONSENT_POLICY_FILE` replaces them.
pub const DEFAULT_POLICIES: &str = include_str!("../../policy/default.cedar");
/// The schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../../policy/schema.cedarschema");
