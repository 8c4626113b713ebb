//! A directive's lifecycle: what a client may set, what an update may replace, and which status
//! changes are allowed (DRAFT -> ACTIVE; ACTIVE -> INACTIVE only by revocation; any but
//! ENTERED_IN_ERROR -> ENTERED_IN_ERROR).

use carerecord_contracts::consent::v1::{
    ConsentDirective, ConsentDirectiveStatus as DirectiveStatus,
};
use carerecord_platform::errors::Violations;
use prost_types::FieldMask;

use super::text::quoted;

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

/// Fields a client cannot replace: the directive's identity and what the service records.
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

const STATUS_EXPECTED: &str = "must be DRAFT, ACTIVE, INACTIVE or ENTERED_IN_ERROR";

/// A directive's status; unknown numbers read as UNSPECIFIED.
pub fn status_of(d: &ConsentDirective) -> DirectiveStatus {
    DirectiveStatus::try_from(d.status).unwrap_or(DirectiveStatus::Unspecified)
}

/// A status a client names in a list filter; a violation on `field` for UNSPECIFIED or unknown.
pub fn parse_status(raw: i32, field: &str, v: &mut Violations) -> Option<DirectiveStatus> {
    match DirectiveStatus::try_from(raw) {
        Ok(DirectiveStatus::Unspecified) | Err(_) => {
            v.add(field, STATUS_EXPECTED);
            None
        }
        Ok(status) => Some(status),
    }
}

/// Forgets what a client sent in output-only fields.
pub fn clear_output_only(d: &mut ConsentDirective) {
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

/// A new directive starts as DRAFT or ACTIVE.
pub fn check_create_status(d: &ConsentDirective, v: &mut Violations) {
    if matches!(
        status_of(d),
        DirectiveStatus::Inactive | DirectiveStatus::EnteredInError
    ) {
        v.add("directive.status", "must be DRAFT or ACTIVE on create");
    }
}

/// The fields an update mask names, sorted and each once (`*` names every updatable field); a
/// violation for a missing or empty mask and for each path that names no updatable field.
pub fn masked_fields(mask: Option<&FieldMask>, v: &mut Violations) -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = Vec::new();
    match mask {
        None => v.add("update_mask", "is required"),
        Some(mask) if mask.paths.is_empty() => v.add("update_mask", "must name at least one field"),
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
                        format!(
                            "{} is not an updatable field of ConsentDirective",
                            quoted(path)
                        ),
                    );
                }
            }
        }
    }
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// `current` with the masked `fields` taken from `input`; a violation when the status asked for is
/// not one an update may set.
pub fn apply_update(
    current: &ConsentDirective,
    input: &ConsentDirective,
    fields: &[&str],
    v: &mut Violations,
) -> ConsentDirective {
    let from = status_of(current);
    let mut candidate = current.clone();
    for field in fields {
        match *field {
            "status" => match DirectiveStatus::try_from(input.status) {
                Ok(DirectiveStatus::Unspecified) | Err(_) => {
                    v.add("directive.status", STATUS_EXPECTED)
                }
                Ok(DirectiveStatus::Inactive) if from == DirectiveStatus::Active => v.add(
                    "directive.status",
                    "an ACTIVE directive is made INACTIVE with RevokeConsentDirective",
                ),
                Ok(status) => candidate.status = status as i32,
            },
            "decision" => candidate.decision = input.decision,
            "scope_purposes" => candidate.scope_purposes = input.scope_purposes.clone(),
            "period" => candidate.period = input.period,
            "provisions" => candidate.provisions = input.provisions.clone(),
            "date_time" => candidate.date_time = input.date_time,
            "grantor_role" => candidate.grantor_role = input.grantor_role,
            "grantor_display" => candidate.grantor_display = input.grantor_display.clone(),
            "policy_basis" => candidate.policy_basis = input.policy_basis.clone(),
            "policy_text" => candidate.policy_text = input.policy_text.clone(),
            _ => {}
        }
    }
    candidate
}

/// Why `current` cannot become `candidate`, if it cannot: a status change that is not allowed, or
/// an edit of a directive that is no longer in force.
pub fn update_refusal(current: &ConsentDirective, candidate: &ConsentDirective) -> Option<String> {
    use DirectiveStatus::*;
    let (from, to) = (status_of(current), status_of(candidate));
    let allowed = from == to
        || matches!(
            (from, to),
            (Draft, Active) | (Draft | Active | Inactive, EnteredInError)
        );
    if !allowed {
        return Some(format!(
            "a {} directive cannot become {}",
            from.as_str_name(),
            to.as_str_name()
        ));
    }
    let fields_changed = ConsentDirective {
        status: current.status,
        ..candidate.clone()
    } != *current;
    (fields_changed && matches!(from, Inactive | EnteredInError))
        .then(|| format!("a {} directive cannot be edited", from.as_str_name()))
}

/// Why `current` cannot be revoked, if it cannot: only an ACTIVE directive can.
pub fn revoke_refusal(current: &ConsentDirective) -> Option<String> {
    let status = status_of(current);
    (status != DirectiveStatus::Active).then(|| {
        format!(
            "only an ACTIVE directive can be revoked; this one is {} (withdraw a DRAFT by updating it to ENTERED_IN_ERROR)",
            status.as_str_name()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(status: DirectiveStatus) -> ConsentDirective {
        ConsentDirective {
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn status_changes_follow_the_lifecycle() {
        use DirectiveStatus::*;
        // (from, to, allowed)
        let cases = [
            (Draft, Active, true),
            (Draft, EnteredInError, true),
            (Active, EnteredInError, true),
            (Inactive, EnteredInError, true),
            (Active, Draft, false),
            (Inactive, Active, false),
            (EnteredInError, Active, false),
            (EnteredInError, Draft, false),
        ];
        for (from, to, allowed) in cases {
            let refusal = update_refusal(&with_status(from), &with_status(to));
            assert_eq!(
                refusal.is_none(),
                allowed,
                "{from:?} -> {to:?}: {refusal:?}"
            );
        }
        let mut edited = with_status(Inactive);
        edited.policy_text = "late".into();
        assert_eq!(
            update_refusal(&with_status(Inactive), &edited).as_deref(),
            Some("a CONSENT_DIRECTIVE_STATUS_INACTIVE directive cannot be edited")
        );
        assert!(revoke_refusal(&with_status(Active)).is_none());
        assert!(revoke_refusal(&with_status(Draft)).is_some());
    }

    #[test]
    fn masks_name_updatable_fields_only() {
        let mut v = Violations::new();
        let mask = FieldMask {
            paths: vec![
                "policy_text".into(),
                "*".into(),
                "etag".into(),
                "colour".into(),
            ],
        };
        let fields = masked_fields(Some(&mask), &mut v);
        assert_eq!(fields.len(), UPDATABLE.len());
        let paths: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(paths, ["update_mask.paths[2]", "update_mask.paths[3]"]);
    }
}
