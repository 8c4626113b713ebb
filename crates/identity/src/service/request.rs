//! What several requests share: ids, the requester, the reason for a change, and the hash that
//! tells a retry from another request with the same request id.

use carerecord_contracts::common::v1::Requester;
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;

use crate::error::Error;

/// The longest reason a change may give, in characters.
const MAX_REASON: usize = 1000;

/// A required id; blanks around it are ignored.
pub(super) fn required_id(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    v.required_id(field, raw.trim()).map(Id::into_string)
}

/// `value` once the request is known valid: a parse that yields nothing always records a
/// violation, so a valid request has every value.
pub(super) fn valid<T>(v: Violations, value: Option<T>) -> Result<T, Error> {
    v.into_result()?;
    value.ok_or_else(|| Error::Corrupt("a request parsed to no value and no violation".into()))
}

pub(super) fn check_requester(requester: Option<&Requester>, v: &mut Violations) {
    match requester {
        None => v.add("requester", "is required"),
        Some(r) if r.user_id.trim().is_empty() => v.add("requester.user_id", "is required"),
        Some(_) => {}
    }
}

pub(super) fn check_reason(reason: &str, required: bool, v: &mut Violations) {
    if required && reason.trim().is_empty() {
        v.add("reason", "is required");
    }
    if reason.chars().count() > MAX_REASON {
        v.add("reason", format!("must be at most {MAX_REASON} characters"));
    }
}

/// The hash of a request's body, recorded with its request id.
pub(super) fn body_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
