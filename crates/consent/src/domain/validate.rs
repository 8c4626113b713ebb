//! Validation of directives and requesters, with field-level violation paths. Pure: the caller
//! passes the current time.

use carerecord_contracts::common::v1::{Period, Requester};
use carerecord_contracts::consent::v1::{
    ConsentDecision, ConsentDirective, ConsentDirectiveStatus, GrantorRole, Provision,
};
use carerecord_platform::errors::Violations;
use carerecord_platform::request::Id;

use super::codes::{DataClass, DataClasses, Purpose, Purposes, is_role_code, normalise_ods_code};
use super::text::quoted;
use super::time::{Instant, instant};

pub const MAX_PROVISIONS: usize = 200;
pub const MAX_DEPTH: usize = 5;
pub const MAX_ACTORS: usize = 100;
pub const MAX_STUDY_IDS: usize = 100;
pub const MAX_STUDY_ID_CHARS: usize = 128;
pub const MAX_POLICY_BASIS_CHARS: usize = 2048;
pub const MAX_POLICY_TEXT_CHARS: usize = 10_000;
pub const MAX_GRANTOR_DISPLAY_CHARS: usize = 200;
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_USER_ID_CHARS: usize = 256;
/// How far in the future a directive's date_time may be (clock skew between systems).
pub const DATE_TIME_SKEW_NANOS: i128 = 5 * 60 * 1_000_000_000;

pub fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// Checks a requester in place (upper-casing its ODS code). `user_id` and `organisation_ods_code` are
/// always required; `role_code` when `require_role`, and must be well-formed whenever set.
pub fn validate_requester(
    requester: Option<&mut Requester>,
    path: &str,
    require_role: bool,
    v: &mut Violations,
) {
    let Some(requester) = requester else {
        v.add(path, "is required");
        return;
    };
    check_user_id(requester, path, v);
    if requester.organisation_ods_code.is_empty() {
        v.add(format!("{path}.organisation_ods_code"), "is required");
    } else {
        match normalise_ods_code(&requester.organisation_ods_code) {
            Some(code) => requester.organisation_ods_code = code,
            None => v.add(
                format!("{path}.organisation_ods_code"),
                "must be an ODS code: 3 to 10 letters and digits",
            ),
        }
    }
    if requester.role_code.is_empty() {
        if require_role {
            v.add(format!("{path}.role_code"), "is required");
        }
    } else if !is_role_code(&requester.role_code) {
        v.add(
            format!("{path}.role_code"),
            "must be a national RBAC role code such as R8000",
        );
    }
}

fn check_user_id(requester: &Requester, path: &str, v: &mut Violations) {
    if requester.user_id.trim().is_empty() {
        v.add(format!("{path}.user_id"), "is required");
    } else if char_count(&requester.user_id) > MAX_USER_ID_CHARS {
        v.add(
            format!("{path}.user_id"),
            format!("must be at most {MAX_USER_ID_CHARS} characters"),
        );
    }
}

/// Whether a decision's requester is the patient themselves: purpose PATRQT with neither an
/// organisation nor a role (a patient acts for no organisation).
pub fn is_patient_self(requester: &Requester, purpose: Option<Purpose>) -> bool {
    purpose == Some(Purpose::Patrqt)
        && requester.organisation_ods_code.is_empty()
        && requester.role_code.is_empty()
}

/// Checks the requester of a decision in place: user, organisation and role are all required,
/// except for the patient themselves ([`is_patient_self`]), who has only a user id. Returns
/// whether the requester is the patient.
pub fn validate_decision_requester(
    requester: Option<&mut Requester>,
    purpose: Option<Purpose>,
    v: &mut Violations,
) -> bool {
    match requester {
        Some(r) if is_patient_self(r, purpose) => {
            check_user_id(r, "requester", v);
            true
        }
        other => {
            validate_requester(other, "requester", true, v);
            false
        }
    }
}

/// Checks a timestamp field, if set.
pub fn check_timestamp(
    ts: Option<&prost_types::Timestamp>,
    path: &str,
    v: &mut Violations,
) -> Option<Instant> {
    let ts = ts?;
    let instant = instant(ts);
    if instant.is_none() {
        v.add(
            path,
            "must be a valid timestamp between years 1 and 9999 with nanos in 0..1e9",
        );
    }
    instant
}

fn validate_period(period: Option<&Period>, path: &str, v: &mut Violations) {
    let Some(period) = period else { return };
    let start = check_timestamp(period.start.as_ref(), &format!("{path}.start"), v);
    let end = check_timestamp(period.end.as_ref(), &format!("{path}.end"), v);
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        v.add(format!("{path}.end"), "must be after start");
    }
}

fn validate_purposes(purposes: &[String], path: &str, v: &mut Violations) {
    let mut seen = Purposes::default();
    for (i, code) in purposes.iter().enumerate() {
        match Purpose::parse(code) {
            None => v.add(
                format!("{path}[{i}]"),
                format!("unknown purpose of use {}; expected one of TREAT, ETREAT, HRESCH, HOPERAT, HPAYMT, PUBHLTH, HMARKT, PATRQT", quoted(code)),
            ),
            Some(p) if !seen.insert(p) => v.add(format!("{path}[{i}]"), "is a duplicate"),
            Some(_) => {}
        }
    }
}

fn validate_data_classes(classes: &[String], path: &str, v: &mut Violations) {
    let mut seen = DataClasses::default();
    for (i, code) in classes.iter().enumerate() {
        match DataClass::parse(code) {
            None => v.add(format!("{path}[{i}]"), unknown_data_class(code)),
            Some(c) if !seen.insert(c) => v.add(format!("{path}[{i}]"), "is a duplicate"),
            Some(_) => {}
        }
    }
}

pub fn unknown_data_class(code: &str) -> String {
    format!(
        "unknown data class {}; expected one of genomic, hiv, mental-health, reproductive-health, safeguarding, sexual-health, substance-misuse",
        quoted(code)
    )
}

fn validate_provision(
    provision: &mut Provision,
    path: &str,
    depth: usize,
    total: &mut usize,
    v: &mut Violations,
) {
    *total += 1;
    if depth > MAX_DEPTH {
        v.add(
            path,
            format!("provisions may be nested at most {MAX_DEPTH} deep"),
        );
        return;
    }
    let has_criteria = provision.period.is_some()
        || !provision.actors.is_empty()
        || !provision.purposes.is_empty()
        || !provision.data_classes.is_empty()
        || !provision.study_ids.is_empty()
        || provision.data_period.is_some();
    if !has_criteria {
        v.add(
            path,
            "must set at least one of period, actors, purposes, data_classes, study_ids, data_period",
        );
    }
    validate_period(provision.period.as_ref(), &format!("{path}.period"), v);
    validate_period(
        provision.data_period.as_ref(),
        &format!("{path}.data_period"),
        v,
    );
    if provision.actors.len() > MAX_ACTORS {
        v.add(
            format!("{path}.actors"),
            format!("at most {MAX_ACTORS} actors"),
        );
    }
    for (i, actor) in provision.actors.iter_mut().enumerate() {
        let actor_path = format!("{path}.actors[{i}]");
        if actor.organisation_ods_code.is_empty()
            && actor.role_code.is_empty()
            && actor.user_id.is_empty()
        {
            v.add(
                &actor_path,
                "must set at least one of organisation_ods_code, role_code, user_id",
            );
        }
        if !actor.organisation_ods_code.is_empty() {
            match normalise_ods_code(&actor.organisation_ods_code) {
                Some(code) => actor.organisation_ods_code = code,
                None => v.add(
                    format!("{actor_path}.organisation_ods_code"),
                    "must be an ODS code: 3 to 10 letters and digits",
                ),
            }
        }
        if !actor.role_code.is_empty() && !is_role_code(&actor.role_code) {
            v.add(
                format!("{actor_path}.role_code"),
                "must be a national RBAC role code such as R8000",
            );
        }
        if char_count(&actor.user_id) > MAX_USER_ID_CHARS {
            v.add(
                format!("{actor_path}.user_id"),
                format!("must be at most {MAX_USER_ID_CHARS} characters"),
            );
        }
    }
    validate_purposes(&provision.purposes, &format!("{path}.purposes"), v);
    validate_data_classes(&provision.data_classes, &format!("{path}.data_classes"), v);
    if provision.study_ids.len() > MAX_STUDY_IDS {
        v.add(
            format!("{path}.study_ids"),
            format!("at most {MAX_STUDY_IDS} study ids"),
        );
    }
    for (i, study) in provision.study_ids.iter().enumerate() {
        if study.is_empty() || char_count(study) > MAX_STUDY_ID_CHARS {
            v.add(
                format!("{path}.study_ids[{i}]"),
                format!("must be 1 to {MAX_STUDY_ID_CHARS} characters"),
            );
        }
    }
    for (i, child) in provision.provisions.iter_mut().enumerate() {
        validate_provision(
            child,
            &format!("{path}.provisions[{i}]"),
            depth + 1,
            total,
            v,
        );
    }
}

/// Why a `policy_basis` is refused: it is a link readers follow, so only schemes that are safe to
/// follow are accepted (never `javascript:`, `data:`, `file:` or plain `http:`).
pub const POLICY_BASIS_EXPECTED: &str = "must be an https URL (https://host/...) or a URN (urn:<namespace>:<name>, e.g. urn:oid:2.16.840.1.113883.2.1), at most 2048 characters, without spaces";

/// Whether `s` is an absolute `https` URL with a host, or a URN (RFC 8141: `urn:`, a namespace of
/// 2 to 32 letters, digits and hyphens, a colon, a non-empty name); schemes in any letter case, no
/// whitespace or control characters anywhere.
fn is_followable_uri(s: &str) -> bool {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("https") {
        let Some(after) = rest.strip_prefix("//") else {
            return false;
        };
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':')
    } else if scheme.eq_ignore_ascii_case("urn") {
        let Some((namespace, name)) = rest.split_once(':') else {
            return false;
        };
        (2..=32).contains(&namespace.len())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !namespace.starts_with('-')
            && !name.is_empty()
    } else {
        false
    }
}

/// Checks a directive as a whole (create, and the result of an update), normalising codes in place.
/// Output-only fields are not looked at. `path` is the directive's field path, e.g. `directive`.
pub fn validate_directive(
    directive: &mut ConsentDirective,
    path: &str,
    now: Instant,
    v: &mut Violations,
) {
    if directive.patient_id.is_empty() {
        v.add(format!("{path}.patient_id"), "is required");
    } else {
        match Id::parse(&directive.patient_id) {
            Some(id) => directive.patient_id = id.into_string(),
            None => v.add(format!("{path}.patient_id"), Id::EXPECTED),
        }
    }
    match ConsentDirectiveStatus::try_from(directive.status) {
        Ok(ConsentDirectiveStatus::Unspecified) => v.add(format!("{path}.status"), "is required"),
        Ok(_) => {}
        Err(_) => v.add(format!("{path}.status"), "is not a known status"),
    }
    match ConsentDecision::try_from(directive.decision) {
        Ok(ConsentDecision::Unspecified) => {
            v.add(format!("{path}.decision"), "is required: PERMIT or DENY")
        }
        Ok(_) => {}
        Err(_) => v.add(format!("{path}.decision"), "is not a known decision"),
    }
    validate_purposes(
        &directive.scope_purposes,
        &format!("{path}.scope_purposes"),
        v,
    );
    validate_period(directive.period.as_ref(), &format!("{path}.period"), v);
    match &directive.date_time {
        None => v.add(format!("{path}.date_time"), "is required"),
        Some(ts) => {
            if let Some(t) = check_timestamp(Some(ts), &format!("{path}.date_time"), v)
                && t > now + DATE_TIME_SKEW_NANOS
            {
                v.add(
                    format!("{path}.date_time"),
                    "must not be more than 5 minutes in the future",
                );
            }
        }
    }
    if GrantorRole::try_from(directive.grantor_role).is_err() {
        v.add(
            format!("{path}.grantor_role"),
            "is not a known grantor role",
        );
    }
    if char_count(&directive.grantor_display) > MAX_GRANTOR_DISPLAY_CHARS {
        v.add(
            format!("{path}.grantor_display"),
            format!("must be at most {MAX_GRANTOR_DISPLAY_CHARS} characters"),
        );
    }
    if !directive.policy_basis.is_empty()
        && (char_count(&directive.policy_basis) > MAX_POLICY_BASIS_CHARS
            || !is_followable_uri(&directive.policy_basis))
    {
        v.add(format!("{path}.policy_basis"), POLICY_BASIS_EXPECTED);
    }
    if char_count(&directive.policy_text) > MAX_POLICY_TEXT_CHARS {
        v.add(
            format!("{path}.policy_text"),
            format!("must be at most {MAX_POLICY_TEXT_CHARS} characters"),
        );
    }
    let mut total = 0;
    for (i, provision) in directive.provisions.iter_mut().enumerate() {
        validate_provision(
            provision,
            &format!("{path}.provisions[{i}]"),
            1,
            &mut total,
            v,
        );
    }
    if total > MAX_PROVISIONS {
        v.add(
            format!("{path}.provisions"),
            format!("at most {MAX_PROVISIONS} provisions in total at all depths, got {total}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_contracts::consent::v1::ProvisionActor;
    use prost_types::Timestamp;

    const NOW: Instant = 1_700_000_000 * 1_000_000_000;

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn valid() -> ConsentDirective {
        ConsentDirective {
            patient_id: "0B9D6F3A-1C2D-4E5F-8A9B-0C1D2E3F4A5B".into(),
            status: ConsentDirectiveStatus::Active as i32,
            decision: ConsentDecision::Permit as i32,
            date_time: ts(1_600_000_000),
            provisions: vec![Provision {
                data_classes: vec!["mental-health".into()],
                provisions: vec![Provision {
                    actors: vec![ProvisionActor {
                        organisation_ods_code: "rxa".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn fields(d: &mut ConsentDirective) -> Vec<String> {
        let mut v = Violations::new();
        validate_directive(d, "directive", NOW, &mut v);
        v.iter().map(|(f, _)| f.to_owned()).collect()
    }

    #[test]
    fn a_valid_directive_is_normalised() {
        let mut d = valid();
        assert_eq!(fields(&mut d), Vec::<String>::new());
        assert_eq!(d.patient_id, "0b9d6f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
        let mut simple = valid();
        simple.patient_id = "0b9d6f3a1c2d4e5f8a9b0c1d2e3f4a5b".into();
        assert_eq!(fields(&mut simple), ["directive.patient_id"]);
        assert_eq!(
            d.provisions[0].provisions[0].actors[0].organisation_ods_code,
            "RXA"
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut d = valid();
        d.patient_id.clear();
        d.status = 0;
        d.decision = 9;
        d.scope_purposes = vec!["HRESCH".into(), "research".into(), "HRESCH".into()];
        d.period = Some(Period {
            start: ts(100),
            end: ts(100),
        });
        d.date_time = ts(1_700_000_000 + 301);
        d.policy_basis = "not a uri".into();
        d.provisions[0].data_classes.push("cardiology".into());
        d.provisions[0].provisions[0]
            .actors
            .push(ProvisionActor::default());
        d.provisions[0].provisions.push(Provision::default());
        d.provisions[0].provisions[0].data_period = Some(Period {
            start: ts(5),
            end: ts(1),
        });
        assert_eq!(
            fields(&mut d),
            [
                "directive.patient_id",
                "directive.status",
                "directive.decision",
                "directive.scope_purposes[1]",
                "directive.scope_purposes[2]",
                "directive.period.end",
                "directive.date_time",
                "directive.policy_basis",
                "directive.provisions[0].data_classes[1]",
                "directive.provisions[0].provisions[0].data_period.end",
                "directive.provisions[0].provisions[0].actors[1]",
                "directive.provisions[0].provisions[1]",
            ]
        );
    }

    #[test]
    fn policy_basis_is_an_https_url_or_a_urn() {
        let accepted = [
            "https://example.org/protocols/iras-123",
            "HTTPS://EXAMPLE.ORG",
            "https://host:8443/p?q=1#s",
            "urn:oid:2.16.840.1.113883.2.1",
            "URN:uuid:0b9d6f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        ];
        let refused = [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<b>x</b>",
            "http://example.org/protocol",
            "file:///etc/passwd",
            "https:example.org",
            "https://",
            "https:///path",
            "https://:443/x",
            "https://example.org/a b",
            "urn:x:thing",
            "urn:oid:",
            "urn:-x:y",
            "protocol.pdf",
            "not a uri",
        ];
        for (basis, ok) in accepted
            .iter()
            .map(|b| (*b, true))
            .chain(refused.iter().map(|b| (*b, false)))
        {
            let mut d = valid();
            d.policy_basis = basis.to_owned();
            let expected: &[&str] = if ok { &[] } else { &["directive.policy_basis"] };
            assert_eq!(fields(&mut d), expected, "{basis}");
        }
        let mut long = valid();
        long.policy_basis = format!("https://example.org/{}", "a".repeat(2048));
        assert_eq!(fields(&mut long), ["directive.policy_basis"]);
    }

    #[test]
    fn depth_and_size_limits() {
        let mut d = valid();
        let mut deep = Provision {
            purposes: vec!["TREAT".into()],
            ..Default::default()
        };
        for _ in 0..5 {
            deep = Provision {
                purposes: vec!["TREAT".into()],
                provisions: vec![deep],
                ..Default::default()
            };
        }
        d.provisions = vec![deep];
        assert_eq!(
            fields(&mut d),
            [
                "directive.provisions[0].provisions[0].provisions[0].provisions[0].provisions[0].provisions[0]"
            ]
        );
        let mut d = valid();
        d.provisions = vec![
            Provision {
                purposes: vec!["TREAT".into()],
                ..Default::default()
            };
            201
        ];
        assert_eq!(fields(&mut d), ["directive.provisions"]);
        let mut d = valid();
        d.provisions[0].study_ids = vec![String::new(), "x".repeat(129)];
        assert_eq!(
            fields(&mut d),
            [
                "directive.provisions[0].study_ids[0]",
                "directive.provisions[0].study_ids[1]"
            ]
        );
    }

    #[test]
    fn requesters() {
        let mut v = Violations::new();
        validate_requester(None, "requester", false, &mut v);
        let mut r = Requester {
            user_id: "u".into(),
            organisation_ods_code: "a81001".into(),
            ..Default::default()
        };
        validate_requester(Some(&mut r), "requester", true, &mut v);
        r.role_code = "8000".into();
        validate_requester(Some(&mut r), "requester", false, &mut v);
        let f: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(
            f,
            ["requester", "requester.role_code", "requester.role_code"]
        );
        assert_eq!(r.organisation_ods_code, "A81001");
    }
}
