//! Validation of the record fields a client supplies, and what a write stores.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::records::v1::Record;
use carerecord_platform::errors::Violations;
use prost_types::Timestamp;
use sha2::{Digest, Sha256};

use super::ids::required_id;
use super::payload::{self, PayloadRules};
use super::resource_types;
use super::terms::Terms;

/// The one media type v1 accepts.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The sensitivity labels a record may carry, sorted.
pub const DATA_CLASSES: &[&str] = &[
    "genomic",
    "hiv",
    "mental-health",
    "reproductive-health",
    "safeguarding",
    "sexual-health",
    "substance-misuse",
];

/// How far in the future a recorded_time may be, for clock skew: 5 minutes.
const RECORDED_TIME_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;
const MAX_TEXT: usize = 256;

/// Deployment rules for record validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRules {
    pub payload: PayloadRules,
    /// When set, only these resource types are accepted.
    pub allowed_resource_types: Option<Vec<String>>,
}

/// The content and metadata of one version, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields {
    pub patient_id: String,
    pub resource_type: String,
    pub payload: Vec<u8>,
    pub content_hash: String,
    /// Sorted, deduplicated labels encoded as `|a|b|` (empty for none): see [`encode_data_classes`].
    pub data_classes: String,
    pub authoring_org: String,
    pub author: String,
    pub source_system: String,
    pub effective_time: Option<i64>,
    /// None means "set it to the create time".
    pub recorded_time: Option<i64>,
    /// What ListRecords filters on in the payload; derived from it, so not in the fingerprint.
    pub terms: Terms,
}

impl RecordFields {
    /// Identifies the record a create asks for, for request_id reuse: equal inputs, equal
    /// fingerprints. The requester is not part of it: a retry is the same record whoever sends it.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut hash = Sha256::new();
        for part in [
            self.patient_id.as_bytes(),
            self.resource_type.as_bytes(),
            self.content_hash.as_bytes(),
            self.data_classes.as_bytes(),
            self.authoring_org.as_bytes(),
            self.author.as_bytes(),
            self.source_system.as_bytes(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        for time in [self.effective_time, self.recorded_time] {
            match time {
                Some(t) => {
                    hash.update([1]);
                    hash.update(t.to_be_bytes());
                }
                None => hash.update([0]),
            }
        }
        hash.finalize().to_vec()
    }
}

/// Who made a write, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub display_name: String,
}

impl From<&Actor> for Requester {
    fn from(actor: &Actor) -> Requester {
        Requester {
            user_id: actor.user_id.clone(),
            organisation_ods_code: actor.organisation_ods_code.clone(),
            role_code: actor.role_code.clone(),
            display_name: actor.display_name.clone(),
        }
    }
}

/// The requester of a mutation: required, with a user id.
pub fn actor(requester: Option<&Requester>, field: &str, violations: &mut Violations) -> Actor {
    match requester {
        None => {
            violations.add(field, "required: who is making the change");
            Actor::default()
        }
        Some(r) => {
            if r.user_id.trim().is_empty() {
                violations.add(format!("{field}.user_id"), "required");
            }
            Actor {
                user_id: r.user_id.clone(),
                organisation_ods_code: r.organisation_ods_code.clone(),
                role_code: r.role_code.clone(),
                display_name: r.display_name.clone(),
            }
        }
    }
}

/// Validates the input fields of a record to create. `prefix` is the path of the Record in the
/// request (`record`); `now` is the server time in microseconds.
pub fn validate_new(
    record: &Record,
    prefix: &str,
    rules: &RecordRules,
    now: i64,
    violations: &mut Violations,
) -> RecordFields {
    let field = |name: &str| format!("{prefix}.{name}");
    let patient_id = required_id(&record.patient_id, &field("patient_id"), violations);
    let type_ok = check_resource_type(
        &record.resource_type,
        &field("resource_type"),
        rules,
        violations,
    );
    check_content_type(&record.content_type, &field("content_type"), violations);
    // The payload is checked against the identity only once the identity itself is valid.
    let payload_result = if patient_id.is_empty() || !type_ok {
        payload::check_size(&record.payload, &rules.payload).map(|()| Terms::default())
    } else {
        payload::validate_indexed(
            &record.payload,
            &record.resource_type,
            &patient_id,
            &rules.payload,
        )
    };
    let terms = payload_result.unwrap_or_else(|description| {
        violations.add(field("payload"), description);
        Terms::default()
    });
    let recorded_time = optional_time(
        record.recorded_time.as_ref(),
        &field("recorded_time"),
        violations,
    );
    if let Some(t) = recorded_time
        && t > now + RECORDED_TIME_SKEW_MICROS
    {
        violations.add(
            field("recorded_time"),
            "more than 5 minutes after the server's current time",
        );
    }
    RecordFields {
        patient_id,
        resource_type: record.resource_type.clone(),
        content_hash: payload::content_hash(&record.payload),
        payload: record.payload.clone(),
        data_classes: data_classes(&record.data_classes, &field("data_classes"), violations),
        authoring_org: ods_code(
            &record.authoring_organisation_ods_code,
            &field("authoring_organisation_ods_code"),
            violations,
        ),
        author: author(&record.author, &field("author"), violations),
        source_system: source_system(&record.source_system, &field("source_system"), violations),
        effective_time: optional_time(
            record.effective_time.as_ref(),
            &field("effective_time"),
            violations,
        ),
        recorded_time,
        terms,
    }
}

fn check_resource_type(
    name: &str,
    field: &str,
    rules: &RecordRules,
    violations: &mut Violations,
) -> bool {
    if let Some(reason) = resource_types::refusal(name) {
        violations.add(field, reason);
        return false;
    }
    if let Some(allowed) = &rules.allowed_resource_types
        && !allowed.iter().any(|a| a == name)
    {
        violations.add(
            field,
            format!("{name} records are not accepted by this deployment"),
        );
        return false;
    }
    true
}

/// Whether `name` is well formed as a resource type filter (an R4 type name).
pub fn check_type_filter(names: &[String], field: &str, max: usize, violations: &mut Violations) {
    if names.len() > max {
        violations.add(
            field,
            format!("at most {max} resource types, got {}", names.len()),
        );
        return;
    }
    for (i, name) in names.iter().enumerate() {
        if !resource_types::is_fhir_r4_type(name) {
            violations.add(
                format!("{field}[{i}]"),
                format!("{name:?} is not a FHIR R4 resource type (names are case-sensitive)"),
            );
        }
    }
}

fn check_content_type(content_type: &str, field: &str, violations: &mut Violations) {
    if content_type.is_empty() {
        violations.add(field, format!("required: {FHIR_JSON}"));
    } else if content_type != FHIR_JSON {
        violations.add(
            field,
            format!("only {FHIR_JSON} is accepted, without parameters"),
        );
    }
}

/// Validates data class labels; returns them encoded for storage.
pub fn data_classes(labels: &[String], field: &str, violations: &mut Violations) -> String {
    let mut known = Vec::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        match DATA_CLASSES.iter().find(|c| **c == label) {
            Some(c) => known.push(*c),
            None => violations.add(
                format!("{field}[{i}]"),
                format!(
                    "unknown data class {label:?}; expected one of {}",
                    DATA_CLASSES.join(", ")
                ),
            ),
        }
    }
    encode_data_classes(known)
}

/// `|a|b|` from labels, sorted and deduplicated; empty for none.
pub fn encode_data_classes<'a>(labels: impl IntoIterator<Item = &'a str>) -> String {
    let mut labels: Vec<&str> = labels.into_iter().collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.is_empty() {
        String::new()
    } else {
        format!("|{}|", labels.join("|"))
    }
}

/// The labels of an encoded set.
pub fn decode_data_classes(encoded: &str) -> Vec<String> {
    encoded
        .split('|')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn ods_code(raw: &str, field: &str, violations: &mut Violations) -> String {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() {
        violations.add(
            field,
            "required: the ODS code of the authoring organisation",
        );
    } else if !(3..=10).contains(&code.len())
        || !code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        violations.add(field, "expected an ODS code: 3 to 10 letters and digits");
    }
    code
}

fn author(raw: &str, field: &str, violations: &mut Violations) -> String {
    if raw.chars().count() > MAX_TEXT {
        violations.add(field, format!("at most {MAX_TEXT} characters"));
    }
    raw.to_owned()
}

fn source_system(raw: &str, field: &str, violations: &mut Violations) -> String {
    if raw.trim().is_empty() {
        violations.add(field, "required: the system that submitted the record");
    } else if raw.chars().count() > MAX_TEXT {
        violations.add(field, format!("at most {MAX_TEXT} characters"));
    }
    raw.to_owned()
}

/// Microseconds since the epoch of a Timestamp within years 1 to 9999.
pub fn timestamp_micros(ts: &Timestamp) -> Result<i64, &'static str> {
    const MIN_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(
            "not a valid timestamp: seconds must be within years 1 to 9999 and nanos within 0 to 999999999",
        );
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000))
}

/// The Timestamp of stored microseconds.
pub fn micros_timestamp(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub fn optional_time(
    ts: Option<&Timestamp>,
    field: &str,
    violations: &mut Violations,
) -> Option<i64> {
    let ts = ts?;
    match timestamp_micros(ts) {
        Ok(t) => Some(t),
        Err(reason) => {
            violations.add(field, reason);
            None
        }
    }
}

/// The fields UpdateRecord may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdatePaths {
    pub payload: bool,
    pub data_classes: bool,
    pub effective_time: bool,
    pub author: bool,
    pub authoring_org: bool,
    pub source_system: bool,
}

impl UpdatePaths {
    const ALL: UpdatePaths = UpdatePaths {
        payload: true,
        data_classes: true,
        effective_time: true,
        author: true,
        authoring_org: true,
        source_system: true,
    };

    /// The paths of an update mask: unset, empty or `*` means all of them.
    pub fn from_mask(paths: &[String], violations: &mut Violations) -> UpdatePaths {
        if paths.is_empty() || paths.iter().any(|p| p == "*") && paths.len() == 1 {
            return UpdatePaths::ALL;
        }
        let mut selected = UpdatePaths::default();
        for path in paths {
            match path.as_str() {
                "payload" => selected.payload = true,
                "data_classes" => selected.data_classes = true,
                "effective_time" => selected.effective_time = true,
                "author" => selected.author = true,
                "authoring_organisation_ods_code" => selected.authoring_org = true,
                "source_system" => selected.source_system = true,
                other => violations.add(
                    "update_mask",
                    format!("{other:?} cannot be updated; allowed paths: payload, data_classes, effective_time, author, authoring_organisation_ods_code, source_system, or * for all"),
                ),
            }
        }
        selected
    }
}

/// The new values of an update, validated on their own (the payload against the stored identity
/// comes later, once the record is read); `None` for a field the update leaves as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateValues {
    pub payload: Option<Vec<u8>>,
    pub data_classes: Option<String>,
    /// The new effective time, which may be none.
    pub effective_time: Option<Option<i64>>,
    pub author: Option<String>,
    pub authoring_org: Option<String>,
    pub source_system: Option<String>,
}

pub fn validate_update(
    record: &Record,
    paths: UpdatePaths,
    rules: &RecordRules,
    violations: &mut Violations,
) -> UpdateValues {
    if paths.payload {
        check_content_type(&record.content_type, "record.content_type", violations);
        if let Err(description) = payload::check_size(&record.payload, &rules.payload) {
            violations.add("record.payload", description);
        }
    }
    UpdateValues {
        payload: paths.payload.then(|| record.payload.clone()),
        data_classes: paths
            .data_classes
            .then(|| data_classes(&record.data_classes, "record.data_classes", violations)),
        effective_time: paths.effective_time.then(|| {
            optional_time(
                record.effective_time.as_ref(),
                "record.effective_time",
                violations,
            )
        }),
        author: paths
            .author
            .then(|| author(&record.author, "record.author", violations)),
        authoring_org: paths.authoring_org.then(|| {
            ods_code(
                &record.authoring_organisation_ods_code,
                "record.authoring_organisation_ods_code",
                violations,
            )
        }),
        source_system: paths
            .source_system
            .then(|| source_system(&record.source_system, "record.source_system", violations)),
    }
}

/// Applies an update to the latest stored fields, checking what depends on them: the immutable
/// identity given in the request, and the new payload against the stored patient and type.
pub fn apply_update(
    stored: &RecordFields,
    record: &Record,
    values: UpdateValues,
    rules: &RecordRules,
) -> Result<RecordFields, Violations> {
    let mut violations = Violations::new();
    if !record.patient_id.is_empty() && !record.patient_id.eq_ignore_ascii_case(&stored.patient_id)
    {
        violations.add(
            "record.patient_id",
            "patient_id is immutable: retract the record and create it anew for another patient",
        );
    }
    if !record.resource_type.is_empty() && record.resource_type != stored.resource_type {
        violations.add(
            "record.resource_type",
            format!(
                "resource_type is immutable (the record is {})",
                stored.resource_type
            ),
        );
    }
    let mut next = stored.clone();
    if let Some(payload) = values.payload {
        match payload::validate_indexed(
            &payload,
            &stored.resource_type,
            &stored.patient_id,
            &rules.payload,
        ) {
            Ok(terms) => next.terms = terms,
            Err(description) => violations.add("record.payload", description),
        }
        next.content_hash = payload::content_hash(&payload);
        next.payload = payload;
    }
    next.data_classes = values.data_classes.unwrap_or(next.data_classes);
    next.effective_time = values.effective_time.unwrap_or(next.effective_time);
    next.author = values.author.unwrap_or(next.author);
    next.authoring_org = values.authoring_org.unwrap_or(next.authoring_org);
    next.source_system = values.source_system.unwrap_or(next.source_system);
    if violations.is_empty() {
        Ok(next)
    } else {
        Err(violations)
    }
}

/// Validates a retraction reason: 1 to 1024 characters, not only white space.
pub fn retraction_reason(reason: &str, violations: &mut Violations) {
    if reason.trim().is_empty() {
        violations.add("reason", "required: why the record is entered in error");
    } else if reason.chars().count() > 1024 {
        violations.add("reason", "at most 1024 characters");
    }
}

#[cfg(test)]
mod tests;
