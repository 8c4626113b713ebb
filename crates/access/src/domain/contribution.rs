//! What a contribution's payload says about its patient and its time, and the one edit data access
//! makes to a payload: a Reference that names the patient by NHS number alone gets
//! `"reference": "Patient/<patient_id>"` inserted as its first member, every other byte unchanged.
//!
//! The scanner here reads only the top level of the JSON object and the `subject` and `patient`
//! elements; record hosting checks the whole payload (strict JSON, depth, size) when it is written.

use std::borrow::Cow;
use std::ops::Range;

use carerecord_platform::nhs_number;
use serde_json::Value;

/// The identifier system of the NHS number (UK Core).
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// How a payload names its patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientNaming {
    /// The NHS number the payload names by identifier alone (every such Reference names the same
    /// one), and where to insert the reference in each of them.
    pub nhs_number: Option<String>,
    pub insert_at: Vec<usize>,
    /// Whether any `subject`/`patient` Reference carries a `reference` of its own.
    pub has_reference: bool,
}

/// Why a payload's patient naming was refused, phrased for a field violation on the payload.
pub type Refusal = String;

/// Reads how `payload` names its patient (its top-level `subject` and `patient` elements, each a
/// Reference or a list of them). A payload that is not a JSON object yields no naming: record
/// hosting refuses it with the precise reason.
pub fn patient_naming(payload: &[u8]) -> Result<PatientNaming, Refusal> {
    let mut naming = PatientNaming::default();
    let Some(members) = top_level_members(payload) else {
        return Ok(naming);
    };
    for (name, span) in members {
        if name != "subject" && name != "patient" {
            continue;
        }
        let Ok(element) = serde_json::from_slice::<Value>(&payload[span.clone()]) else {
            return Ok(naming);
        };
        let items: Vec<(&Value, usize)> = match &element {
            Value::Array(items) => {
                let starts = array_item_starts(payload, span.clone());
                items.iter().zip(starts).collect()
            }
            other => vec![(other, span.start)],
        };
        for (item, start) in items {
            let Some(object) = item.as_object() else {
                continue;
            };
            if object.contains_key("reference") {
                naming.has_reference = true;
                continue;
            }
            let Some(identifier) = object.get("identifier").and_then(Value::as_object) else {
                continue;
            };
            if identifier.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
                continue;
            }
            let value = identifier
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let number = nhs_number::normalise(value).map_err(|e| {
                format!(
                    "/{name}/identifier/value: the NHS number {}",
                    e.description()
                )
            })?;
            match &naming.nhs_number {
                Some(existing) if *existing != number => {
                    return Err(format!(
                        "/{name}/identifier: the payload names two different NHS numbers"
                    ));
                }
                _ => naming.nhs_number = Some(number),
            }
            naming.insert_at.push(start + 1);
        }
    }
    Ok(naming)
}

/// `payload` with `"reference":"Patient/<patient_id>",` inserted after each `{` at `insert_at`.
pub fn with_patient_reference(payload: &[u8], insert_at: &[usize], patient_id: &str) -> Vec<u8> {
    let member = format!("\"reference\":\"Patient/{patient_id}\",");
    let mut out = Vec::with_capacity(payload.len() + insert_at.len() * member.len());
    let mut from = 0;
    let mut at: Vec<usize> = insert_at.to_vec();
    at.sort_unstable();
    for offset in at {
        out.extend_from_slice(&payload[from..offset]);
        out.extend_from_slice(member.as_bytes());
        from = offset;
    }
    out.extend_from_slice(&payload[from..]);
    out
}

/// The elements a resource's clinically effective time is taken from, in order of preference.
const EFFECTIVE_ELEMENTS: &[&[&str]] = &[
    &["effectiveDateTime"],
    &["effectivePeriod", "start"],
    &["effectiveInstant"],
    &["onsetDateTime"],
    &["period", "start"],
    &["performedDateTime"],
    &["performedPeriod", "start"],
    &["authoredOn"],
    &["issued"],
    &["recordedDate"],
    &["date"],
    &["created"],
];

/// The clinically effective time of a resource, in microseconds: the start of the first present
/// element of [`EFFECTIVE_ELEMENTS`] that holds a FHIR date or date-time.
pub fn effective_micros(payload: &[u8]) -> Option<i64> {
    // Only the member holding the time is parsed into a tree, not the whole resource: imports
    // run this for every item.
    let members = top_level_members(payload)?;
    EFFECTIVE_ELEMENTS.iter().find_map(|path| {
        let (first, rest) = path.split_first()?;
        // The last of repeated members, as a full parse would keep.
        let (_, span) = members.iter().rfind(|(name, _)| name == first)?;
        let member: Value = serde_json::from_slice(&payload[span.clone()]).ok()?;
        let mut value = &member;
        for step in rest {
            value = value.get(step)?;
        }
        carerecord_platform::time::fhir_range(value.as_str()?).map(|(start, _)| start)
    })
}

/// The names and value spans of a top-level JSON object's members, or `None` if `payload` is not
/// a well-formed object at the top level.
fn top_level_members(payload: &[u8]) -> Option<Vec<(Cow<'_, str>, Range<usize>)>> {
    let mut i = skip_ws(payload, 0);
    if payload.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(payload, i + 1);
    let mut members = Vec::new();
    if payload.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let key_end = string_end(payload, i)?;
        // A name without escapes is its bytes (no allocation: imports scan every item).
        let raw = &payload[i + 1..key_end - 1];
        let name: Cow<'_, str> = match std::str::from_utf8(raw) {
            Ok(plain) if !raw.contains(&b'\\') => Cow::Borrowed(plain),
            _ => Cow::Owned(serde_json::from_slice(&payload[i..key_end]).ok()?),
        };
        i = skip_ws(payload, key_end);
        if payload.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(payload, i + 1);
        let end = value_end(payload, start)?;
        members.push((name, start..end));
        i = skip_ws(payload, end);
        match payload.get(i) {
            Some(b',') => i = skip_ws(payload, i + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

/// Where each item of the array at `span` starts.
fn array_item_starts(payload: &[u8], span: Range<usize>) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut i = skip_ws(payload, span.start + 1);
    while i < span.end && payload.get(i) != Some(&b']') {
        starts.push(i);
        let Some(end) = value_end(payload, i) else {
            break;
        };
        i = skip_ws(payload, end);
        if payload.get(i) == Some(&b',') {
            i = skip_ws(payload, i + 1);
        }
    }
    starts
}

fn skip_ws(payload: &[u8], mut i: usize) -> usize {
    while matches!(payload.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `i`.
fn string_end(payload: &[u8], i: usize) -> Option<usize> {
    if payload.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match payload.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `i`.
fn value_end(payload: &[u8], i: usize) -> Option<usize> {
    match payload.get(i)? {
        b'"' => string_end(payload, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match payload.get(j)? {
                    b'"' => {
                        j = string_end(payload, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(b) = payload.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY_NHS_NUMBER: &str = r#"{"resourceType":"Observation","status":"final",
  "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "943 476 5919"}},
  "effectiveDateTime": "2024-03-05T10:30:00Z"}"#;

    #[test]
    fn an_nhs_number_identifier_gets_a_reference_and_nothing_else_changes() {
        let naming = patient_naming(BY_NHS_NUMBER.as_bytes()).unwrap();
        assert_eq!(naming.nhs_number.as_deref(), Some("9434765919"));
        assert!(!naming.has_reference);
        let written = with_patient_reference(
            BY_NHS_NUMBER.as_bytes(),
            &naming.insert_at,
            "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
        );
        let text = String::from_utf8(written).unwrap();
        assert_eq!(
            text,
            BY_NHS_NUMBER.replace(
                "\"subject\": {\"identifier\"",
                "\"subject\": {\"reference\":\"Patient/0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e\",\"identifier\""
            )
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed["subject"]["identifier"]["value"], "943 476 5919",
            "the identifier stays as sent"
        );
    }

    #[test]
    fn lists_references_and_bad_numbers() {
        let list = r#"{"patient":[{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}]}"#;
        let naming = patient_naming(list.as_bytes()).unwrap();
        assert_eq!(naming.insert_at.len(), 2);
        let written = with_patient_reference(list.as_bytes(), &naming.insert_at, "p");
        let parsed: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(parsed["patient"][1]["reference"], "Patient/p");

        let by_reference = r#"{"subject":{"reference":"Patient/p","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}}"#;
        let naming = patient_naming(by_reference.as_bytes()).unwrap();
        assert!(naming.has_reference && naming.nhs_number.is_none());

        let two = r#"{"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"4010232137"}}}"#;
        assert!(patient_naming(two.as_bytes()).is_err());
        let bad = r#"{"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765918"}}}"#;
        assert!(
            patient_naming(bad.as_bytes())
                .unwrap_err()
                .contains("modulus-11")
        );
        for not_an_object in ["", "[]", "{", "{\"subject\":", "null"] {
            assert_eq!(
                patient_naming(not_an_object.as_bytes()).unwrap(),
                PatientNaming::default()
            );
        }
    }

    #[test]
    fn member_names_with_escapes_are_read_as_json_reads_them() {
        // "\u0073ubject" is "subject", "effectiveDate\u0054ime" is "effectiveDateTime".
        let payload = br#"{"resourceType":"Observation","\u0073ubject":{"reference":"Patient/x"},"effectiveDate\u0054ime":"2024-03-05"}"#;
        assert!(patient_naming(payload).unwrap().has_reference);
        assert_eq!(
            effective_micros(payload),
            carerecord_platform::time::fhir_range("2024-03-05").map(|r| r.0)
        );
    }

    #[test]
    fn effective_times_come_from_the_first_element_present() {
        assert_eq!(
            effective_micros(BY_NHS_NUMBER.as_bytes()),
            carerecord_platform::time::fhir_range("2024-03-05T10:30:00Z").map(|r| r.0)
        );
        let care_plan =
            br#"{"resourceType":"CarePlan","period":{"start":"2024-01"},"created":"2023-12-01"}"#;
        assert_eq!(
            effective_micros(care_plan),
            carerecord_platform::time::fhir_range("2024-01").map(|r| r.0)
        );
        assert_eq!(
            effective_micros(br#"{"resourceType":"Flag","date":"soon"}"#),
            None
        );
        // A repeated member counts as a full parse would take it: the last one.
        let repeated =
            br#"{"issued":"2020-01-01","resourceType":"Observation","issued":"2021-06-01"}"#;
        assert_eq!(
            effective_micros(repeated),
            carerecord_platform::time::fhir_range("2021-06-01").map(|r| r.0)
        );
        // Not a JSON object: no time, as before.
        assert_eq!(effective_micros(b"[\"2024-01-01\"]"), None);
        assert_eq!(effective_micros(b"{\"date\":"), None);
    }
}
