//! The payload rules of `Record.payload`: size, strict JSON, `resourceType`, patient reference.
//!
//! Structural rules beyond these are deliberately absent: the contract says the server checks only
//! these rules and must accept any payload that passes them (no profile or terminology validation
//! in v1). The typed R4 model we measured (fhirbolt 0.4) costs 74 s of cold debug build and 183 s
//! of release build here, for a check that still accepts bad codes and dates (README, "What record
//! hosting checks in a payload").

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::terms::{Codings, Terms};

/// The deepest nesting accepted (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// Deployment settings the payload rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRules {
    /// Largest payload accepted, in bytes.
    pub max_bytes: usize,
    /// FHIR base URLs under which `<base>/Patient/<id>` references are accepted.
    pub fhir_base_urls: Vec<String>,
}

/// SHA-256 of the payload bytes as 64 lower-case hexadecimal digits.
pub fn content_hash(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

/// Checks only the size: it needs no stored value, so updates check it before anything else.
pub fn check_size(payload: &[u8], rules: &PayloadRules) -> Result<(), String> {
    if payload.is_empty() {
        return Err("required: a FHIR R4 resource as JSON".to_owned());
    }
    if payload.len() > rules.max_bytes {
        return Err(format!(
            "the payload is {} bytes, over the limit of {} bytes",
            payload.len(),
            rules.max_bytes
        ));
    }
    Ok(())
}

/// Checks every payload rule for a record of `patient_id` (lower case) and `resource_type`.
/// The error is the description of a `record.payload` violation.
pub fn validate(
    payload: &[u8],
    resource_type: &str,
    patient_id: &str,
    rules: &PayloadRules,
) -> Result<(), String> {
    validate_indexed(payload, resource_type, patient_id, rules).map(|_| ())
}

/// [`validate`], also returning the payload's clinical terms, read in the same parse.
pub fn validate_indexed(
    payload: &[u8],
    resource_type: &str,
    patient_id: &str,
    rules: &PayloadRules,
) -> Result<Terms, String> {
    check_size(payload, rules)?;
    if payload.starts_with(b"\xEF\xBB\xBF") {
        return Err("must not start with a byte order mark".to_owned());
    }
    let members = parse_object(payload)?;
    match members.get("resourceType") {
        Some(Json::String(declared)) if declared == resource_type => {}
        Some(Json::String(declared)) => {
            return Err(format!(
                "/resourceType: {declared:?} does not match the record's resource_type {resource_type:?}"
            ));
        }
        Some(_) => return Err("/resourceType: expected a string".to_owned()),
        None => {
            return Err(format!(
                "/resourceType: required, expected {resource_type:?}"
            ));
        }
    }
    check_patient_references(&members, patient_id, rules)?;
    Ok(terms(&members))
}

/// The clinical terms of a stored payload (valid when it was stored); none if it does not parse.
pub fn index(payload: &[u8]) -> Terms {
    parse_object(payload)
        .map(|members| terms(&members))
        .unwrap_or_default()
}

/// The payload's top-level members, strictly parsed.
fn parse_object(payload: &[u8]) -> Result<BTreeMap<String, Json>, String> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| format!("not UTF-8: invalid byte at offset {}", e.valid_up_to()))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Node::TOP
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| format!("not valid JSON: {e}"))?;
    match value {
        Json::Object(members) => Ok(members),
        _ => Err("the top-level JSON value must be an object".to_owned()),
    }
}

/// The terms of the top-level `code`, `category` and `status`.
fn terms(members: &BTreeMap<String, Json>) -> Terms {
    let mut codes = Codings::default();
    if let Some(concept) = members.get("code") {
        add_concept(&mut codes, concept);
    }
    let mut categories = Codings::default();
    match members.get("category") {
        Some(Json::Array(items)) => {
            for item in items {
                add_concept(&mut categories, item);
            }
        }
        Some(concept) => add_concept(&mut categories, concept),
        None => {}
    }
    let status = match members.get("status") {
        Some(Json::String(status)) => status.clone(),
        _ => String::new(),
    };
    Terms {
        codes: codes.encode(),
        categories: categories.encode(),
        status,
    }
}

/// The codings of a CodeableConcept; a plain string counts as a code without system (the form
/// of, for example, AllergyIntolerance.category).
fn add_concept(codings: &mut Codings, concept: &Json) {
    match concept {
        Json::String(code) => codings.add(None, code),
        Json::Object(members) => {
            let Some(Json::Array(items)) = members.get("coding") else {
                return;
            };
            for item in items {
                let Json::Object(coding) = item else {
                    continue;
                };
                let text = |name: &str| match coding.get(name) {
                    Some(Json::String(s)) => Some(s.as_str()),
                    _ => None,
                };
                if let Some(code) = text("code") {
                    codings.add(text("system"), code);
                }
            }
        }
        _ => {}
    }
}

fn check_patient_references(
    members: &BTreeMap<String, Json>,
    patient_id: &str,
    rules: &PayloadRules,
) -> Result<(), String> {
    let mut present = false;
    for element in ["subject", "patient"] {
        let Some(value) = members.get(element) else {
            continue;
        };
        present = true;
        match value {
            Json::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    check_reference(item, &format!("/{element}/{i}"), patient_id, rules)?;
                }
            }
            Json::Array(_) => {
                return Err(format!(
                    "/{element}: expected a Reference to Patient/{patient_id}, found an empty array"
                ));
            }
            item => check_reference(item, &format!("/{element}"), patient_id, rules)?,
        }
    }
    if present {
        Ok(())
    } else {
        Err(format!(
            "/subject: the resource must refer to its patient in subject or patient, as Patient/{patient_id}"
        ))
    }
}

fn check_reference(
    value: &Json,
    pointer: &str,
    patient_id: &str,
    rules: &PayloadRules,
) -> Result<(), String> {
    let Json::Object(reference) = value else {
        return Err(format!("{pointer}: expected a Reference object"));
    };
    match reference.get("type") {
        None => {}
        Some(Json::String(t)) if t == "Patient" => {}
        Some(_) => return Err(format!("{pointer}/type: expected \"Patient\"")),
    }
    let expected = || format!("{pointer}/reference: expected Patient/{patient_id}");
    let Some(Json::String(target)) = reference.get("reference") else {
        return Err(expected());
    };
    if refers_to(target, patient_id, rules) {
        Ok(())
    } else {
        Err(expected())
    }
}

/// Whether `reference` is `Patient/<id>`, `urn:uuid:<id>` or `<configured base>/Patient/<id>`.
fn refers_to(reference: &str, patient_id: &str, rules: &PayloadRules) -> bool {
    let id = if let Some(id) = reference.strip_prefix("urn:uuid:") {
        id
    } else if let Some(id) = reference.strip_prefix("Patient/") {
        id
    } else {
        let Some((base, id)) = reference.rsplit_once("/Patient/") else {
            return false;
        };
        if !rules.fhir_base_urls.iter().any(|b| b == base) {
            return false;
        }
        id
    };
    id.eq_ignore_ascii_case(patient_id)
}

/// The parsed payload: enough to check the rules. Objects are maps so duplicates are caught.
enum Json {
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
    Other,
}

/// Deserialises one value at `depth`, refusing deeper nesting and duplicate member names.
#[derive(Clone, Copy)]
struct Node {
    depth: usize,
    /// On the way from a top-level `code` or `category` to its codings' systems and codes,
    /// whose strings are kept at any depth.
    terms: bool,
}

impl Node {
    const TOP: Node = Node {
        depth: 0,
        terms: false,
    };

    fn keeps_strings(&self) -> bool {
        self.depth <= 3 || self.terms
    }

    fn nested<E: de::Error>(&self) -> Result<Node, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Node {
            depth: self.depth + 1,
            terms: self.terms,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = Json;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Other)
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Other)
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        // Only strings near the top or within the terms are ever read; others need not be kept.
        Ok(if self.keeps_strings() {
            Json::String(v.to_owned())
        } else {
            Json::Other
        })
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(if self.keeps_strings() {
            Json::String(v)
        } else {
            Json::Other
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let child = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let child = self.nested()?;
        let mut members = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {key:?}"
                )));
            }
            // Within the terms, only what leads to a coding's system and code.
            let terms = if child.terms {
                matches!(key.as_str(), "coding" | "system" | "code")
            } else {
                self.depth == 0 && (key == "code" || key == "category")
            };
            let value = map.next_value_seed(Node { terms, ..child })?;
            members.insert(key, value);
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &str = "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";

    fn rules() -> PayloadRules {
        PayloadRules {
            max_bytes: 4096,
            fhir_base_urls: vec!["https://fhir.example.nhs.uk/R4".to_owned()],
        }
    }

    fn check(json: &str) -> Result<(), String> {
        validate(json.as_bytes(), "Observation", PATIENT, &rules())
    }

    #[test]
    fn accepts_each_reference_form() {
        for reference in [
            format!("Patient/{PATIENT}"),
            format!("Patient/{}", PATIENT.to_uppercase()),
            format!("urn:uuid:{PATIENT}"),
            format!("https://fhir.example.nhs.uk/R4/Patient/{PATIENT}"),
        ] {
            let json = format!(
                r#"{{"resourceType":"Observation","subject":{{"reference":"{reference}","type":"Patient","display":"x"}}}}"#
            );
            assert_eq!(check(&json), Ok(()), "{reference}");
        }
        let json = format!(
            r#"{{"resourceType":"Observation","patient":[{{"reference":"Patient/{PATIENT}"}}],"id":"x","meta":{{}}}}"#
        );
        assert_eq!(check(&json), Ok(()));
    }

    #[test]
    fn refuses_malformed_json_with_a_reason() {
        for (json, expected) in [
            ("", "required"),
            ("{", "not valid JSON"),
            ("[1]", "must be an object"),
            ("\u{feff}{}", "byte order mark"),
            (r#"{"a":1,"a":2}"#, "duplicate member name \"a\""),
            (r#"{"resourceType":"Observation"} x"#, "not valid JSON"),
        ] {
            let err = check(json).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let invalid_utf8 = b"{\"a\":\"\xff\"}";
        assert!(
            validate(invalid_utf8, "Observation", PATIENT, &rules())
                .unwrap_err()
                .starts_with("not UTF-8")
        );
    }

    #[test]
    fn depth_limit_is_64() {
        let ok = format!("{}{}", "[".repeat(63), "]".repeat(63));
        let json = format!(
            r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{PATIENT}"}},"x":{ok}}}"#
        );
        assert_eq!(check(&json), Ok(()));
        let deep = format!("{}{}", "[".repeat(64), "]".repeat(64));
        let json = format!(r#"{{"resourceType":"Observation","x":{deep}}}"#);
        assert!(check(&json).unwrap_err().contains("nesting deeper than 64"));
        // Far deeper than serde_json's own limit: still our error, no stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let roomy = PayloadRules {
            max_bytes: 1 << 20,
            ..rules()
        };
        assert!(
            validate(deep.as_bytes(), "Observation", PATIENT, &roomy)
                .unwrap_err()
                .contains("nesting deeper than 64")
        );
    }

    #[test]
    fn resource_type_must_match() {
        assert_eq!(
            check(r#"{"subject":{}}"#).unwrap_err(),
            "/resourceType: required, expected \"Observation\""
        );
        assert!(
            check(r#"{"resourceType":"Condition"}"#)
                .unwrap_err()
                .starts_with("/resourceType: \"Condition\" does not match")
        );
        assert_eq!(
            check(r#"{"resourceType":7}"#).unwrap_err(),
            "/resourceType: expected a string"
        );
    }

    #[test]
    fn patient_reference_must_be_this_patient() {
        let other = "1b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
        let expected = format!("/subject/reference: expected Patient/{PATIENT}");
        for subject in [
            format!(r#"{{"reference":"Patient/{other}"}}"#),
            format!(r#"{{"reference":"Patient/{PATIENT}/_history/2"}}"#),
            format!(r#"{{"reference":"Group/{PATIENT}"}}"#),
            format!(r#"{{"reference":"https://elsewhere.example/R4/Patient/{PATIENT}"}}"#),
            r#"{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}}"#
                .to_owned(),
        ] {
            let json = format!(r#"{{"resourceType":"Observation","subject":{subject}}}"#);
            assert_eq!(check(&json).unwrap_err(), expected, "{subject}");
        }
        let json = format!(
            r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{PATIENT}","type":"Group"}}}}"#
        );
        assert_eq!(
            check(&json).unwrap_err(),
            "/subject/type: expected \"Patient\""
        );
        let json = format!(
            r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{PATIENT}"}},"patient":[{{"reference":"Patient/{PATIENT}"}},{{"reference":"Patient/{other}"}}]}}"#
        );
        assert_eq!(
            check(&json).unwrap_err(),
            format!("/patient/1/reference: expected Patient/{PATIENT}")
        );
        assert!(
            check(r#"{"resourceType":"Observation"}"#)
                .unwrap_err()
                .starts_with("/subject: the resource must refer")
        );
        assert!(
            check(r#"{"resourceType":"Observation","subject":"Patient/x"}"#)
                .unwrap_err()
                .starts_with("/subject: expected a Reference object")
        );
    }

    #[test]
    fn size_limit_names_size_and_limit() {
        let big = vec![b' '; 4097];
        assert_eq!(
            validate(&big, "Observation", PATIENT, &rules()).unwrap_err(),
            "the payload is 4097 bytes, over the limit of 4096 bytes"
        );
    }

    #[test]
    fn terms_are_read_from_code_category_and_status() {
        let json = format!(
            r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/{PATIENT}"}},
            "category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}},"laboratory",{{"text":"x"}}],
            "code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}},{{"code":"hr"}},{{"system":"s"}}],"text":"HR"}},
            "component":[{{"code":{{"coding":[{{"system":"http://loinc.org","code":"x"}}]}}}}]}}"#
        );
        let terms = validate_indexed(json.as_bytes(), "Observation", PATIENT, &rules()).unwrap();
        assert_eq!(terms.codes, "\nhttp://loinc.org\t8867-4\n\thr\n");
        assert_eq!(
            terms.categories,
            "\nhttp://terminology.hl7.org/CodeSystem/observation-category\tvital-signs\n\tlaboratory\n"
        );
        assert_eq!(terms.status, "final");
        assert_eq!(index(json.as_bytes()), terms);
        // A single CodeableConcept as category; no terms at all; a payload that does not parse.
        let single = r#"{"category":{"coding":[{"system":"s","code":"c"}]},"status":7}"#;
        assert_eq!(index(single.as_bytes()).categories, "\ns\tc\n");
        assert_eq!(index(single.as_bytes()).status, "");
        assert_eq!(index(b"{}"), Terms::default());
        assert_eq!(index(b"not json"), Terms::default());
    }

    #[test]
    fn hash_is_lower_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
