//! Keyed pseudonyms and de-identification of FHIR R4 JSON for research and planning extracts.
//!
//! FHIR JSON does not carry element types, so elements are recognised by their standard R4 element
//! names (e.g. `identifier`, `telecom`, `address`, `note`) and `value[x]` suffixes, and by shape
//! where a name is shared by several types (`name` is a HumanName when it is an object, a plain
//! string elsewhere; `text` is a Narrative when it is an object). When in doubt an element is
//! removed rather than kept.

use carerecord_platform::request::Id;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// HMAC-SHA256 pseudonyms under one project's key.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser { key: <redacted> }")
    }
}

impl Pseudonymiser {
    pub fn new(key: &[u8]) -> Self {
        Pseudonymiser {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// Lowercase hex HMAC-SHA256(key, UTF-8 of `id`).
    pub fn pseudonym(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// What a payload is being de-identified for.
pub struct Subject<'a> {
    pub pseudonymiser: &'a Pseudonymiser,
    /// Every patient_id that denotes the patient (the survivor and any merged into it), lower case.
    pub patient_ids: &'a [String],
    /// The patient's pseudonym (of the survivor's id).
    pub patient_pseudonym: &'a str,
    /// The record's pseudonym.
    pub record_pseudonym: &'a str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeidError {
    #[error("the payload is not a JSON object")]
    NotAnObject,
}

/// Elements removed wherever they occur (Identifier, HumanName, ContactPoint, Attachment,
/// Annotation and extension values of those types).
const REMOVED: &[&str] = &[
    "identifier",
    "telecom",
    "photo",
    "note",
    "attachment",
    "presentedForm",
    "valueIdentifier",
    "valueHumanName",
    "valueContactPoint",
    "valueAttachment",
    "valueAnnotation",
    "contentAttachment",
];

/// The de-identified payload.
pub fn deidentify(payload: &[u8], subject: &Subject<'_>) -> Result<Vec<u8>, DeidError> {
    let mut value: Value = serde_json::from_slice(payload).map_err(|_| DeidError::NotAnObject)?;
    let Value::Object(resource) = &mut value else {
        return Err(DeidError::NotAnObject);
    };
    let is_patient = resource.get("resourceType").and_then(Value::as_str) == Some("Patient");
    clean_object(resource, subject);
    let id = if is_patient {
        subject.patient_pseudonym
    } else {
        subject.record_pseudonym
    };
    resource.insert("id".into(), Value::String(id.to_owned()));
    Ok(serde_json::to_vec(&value).unwrap_or_default())
}

fn clean_value(value: &mut Value, subject: &Subject<'_>) {
    match value {
        Value::Object(map) => clean_object(map, subject),
        Value::Array(items) => items.iter_mut().for_each(|v| clean_value(v, subject)),
        _ => {}
    }
}

fn clean_object(map: &mut Map<String, Value>, subject: &Subject<'_>) {
    let is_patient = map.get("resourceType").and_then(Value::as_str) == Some("Patient");
    map.retain(|key, value| {
        if REMOVED.contains(&key.as_str()) {
            return false;
        }
        match key.as_str() {
            // HumanName objects; `name` strings (Organization.name and the like) are not names of people.
            "name" => !(value.is_object() || value.is_array()),
            // Narrative; `text` strings (CodeableConcept.text) are kept.
            "text" => !value.is_object(),
            "link" if is_patient => false,
            _ => true,
        }
    });
    if let Some(meta) = map.get_mut("meta")
        && let Value::Object(meta) = meta
    {
        meta.retain(|k, _| k == "profile" || k == "security");
    }
    if is_patient {
        for key in ["birthDate", "deceasedDateTime"] {
            if let Some(Value::String(date)) = map.get_mut(key) {
                date.truncate(if date.len() >= 7 {
                    7
                } else {
                    4.min(date.len())
                });
            }
        }
    }
    for key in ["address", "valueAddress"] {
        if let Some(address) = map.get_mut(key) {
            match address {
                Value::Array(items) => items.iter_mut().for_each(reduce_address),
                other => reduce_address(other),
            }
        }
    }
    if is_reference(map) {
        rewrite_reference(map, subject);
        return;
    }
    for (key, value) in map.iter_mut() {
        if key == "address" || key == "valueAddress" {
            continue;
        }
        clean_value(value, subject);
    }
}

/// Reduces an Address to its postcode district and country.
fn reduce_address(address: &mut Value) {
    let Value::Object(map) = address else {
        *address = Value::Object(Map::new());
        return;
    };
    let district = map
        .get("postalCode")
        .and_then(Value::as_str)
        .and_then(postcode_district);
    let country = map.get("country").cloned();
    map.clear();
    if let Some(district) = district {
        map.insert("postalCode".into(), Value::String(district));
    }
    if let Some(country) = country {
        map.insert("country".into(), country);
    }
}

/// The outward code (postcode district) of a UK postcode such as `LS1 4AP` -> `LS1`.
pub fn postcode_district(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !(5..=7).contains(&compact.len()) || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let inward = inward.as_bytes();
    let valid_inward = inward[0].is_ascii_digit()
        && inward[1].is_ascii_alphabetic()
        && inward[2].is_ascii_alphabetic();
    let valid_outward = outward.as_bytes()[0].is_ascii_alphabetic();
    (valid_inward && valid_outward).then(|| outward.to_owned())
}

/// A Reference: has `reference`, or is a `display`-bearing element that is not a Coding.
fn is_reference(map: &Map<String, Value>) -> bool {
    map.get("reference").is_some_and(Value::is_string)
        || (map.contains_key("display")
            && !map.contains_key("system")
            && !map.contains_key("code")
            && !map.contains_key("coding"))
}

fn rewrite_reference(map: &mut Map<String, Value>, subject: &Subject<'_>) {
    let reference = map
        .get("reference")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let declared_type = map.get("type").and_then(Value::as_str).map(str::to_owned);
    map.remove("display");
    map.remove("identifier");
    let Some(reference) = reference else {
        map.retain(|k, _| k == "type");
        return;
    };
    if reference.starts_with('#') {
        // A contained resource: local to this payload, identifies nothing outside it.
        map.retain(|k, _| k == "reference" || k == "type");
        return;
    }
    let (ref_type, ref_id) = parse_reference(&reference);
    let ref_id = ref_id.map(|id| id.to_ascii_lowercase());
    let is_patient_ref = ref_id
        .as_ref()
        .is_some_and(|id| subject.patient_ids.iter().any(|p| p == id))
        && matches!(ref_type.as_deref(), None | Some("Patient"));
    let rewritten = if is_patient_ref {
        Some(format!("Patient/{}", subject.patient_pseudonym))
    } else {
        match (&ref_type, &ref_id) {
            (Some(t), Some(id)) if t != "Patient" && Id::parse(id).is_some() => {
                Some(format!("{t}/{}", subject.pseudonymiser.pseudonym(id)))
            }
            _ => None,
        }
    };
    map.clear();
    match rewritten {
        Some(r) => {
            map.insert("reference".into(), Value::String(r));
            if let Some(t) = declared_type {
                map.insert("type".into(), Value::String(t));
            }
        }
        None => {
            if let Some(t) = declared_type.or(ref_type) {
                map.insert("type".into(), Value::String(t));
            }
        }
    }
}

/// `(type, id)` of a literal reference: `Type/id`, `<base>/Type/id[/_history/n]` or `urn:uuid:id`.
fn parse_reference(reference: &str) -> (Option<String>, Option<String>) {
    if let Some(id) = reference.strip_prefix("urn:uuid:") {
        return (None, Some(id.to_owned()));
    }
    let mut parts: Vec<&str> = reference.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    match parts.as_slice() {
        [.., t, id] if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
            (Some((*t).to_owned()), Some((*id).to_owned()))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATIENT: &str = "0b9d6c2e-1111-4222-8333-444455556666";
    const MERGED: &str = "1c8e7d3f-aaaa-4bbb-8ccc-dddd00001111";
    const OTHER_RECORD: &str = "2d7f8e4a-bbbb-4ccc-8ddd-eeee11112222";

    fn run(payload: serde_json::Value) -> serde_json::Value {
        let p = Pseudonymiser::new(b"project-key-0123456789abcdef0123");
        let ids = vec![PATIENT.to_owned(), MERGED.to_owned()];
        let pp = p.pseudonym(PATIENT);
        let rp = p.pseudonym("rec-1");
        let subject = Subject {
            pseudonymiser: &p,
            patient_ids: &ids,
            patient_pseudonym: &pp,
            record_pseudonym: &rp,
        };
        serde_json::from_slice(
            &deidentify(&serde_json::to_vec(&payload).unwrap(), &subject).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn pseudonyms_are_keyed() {
        let a = Pseudonymiser::new(b"key-a");
        let b = Pseudonymiser::new(b"key-b");
        assert_eq!(a.pseudonym(PATIENT), a.pseudonym(PATIENT));
        assert_ne!(a.pseudonym(PATIENT), b.pseudonym(PATIENT));
        assert_eq!(a.pseudonym(PATIENT).len(), 64);
        // RFC 4231 test case 2.
        assert_eq!(
            Pseudonymiser::new(b"Jefe").pseudonym("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn patient_direct_identifiers_are_removed_and_dates_cut() {
        let out = run(json!({
            "resourceType": "Patient",
            "id": PATIENT,
            "meta": {"versionId": "3", "lastUpdated": "2024-01-01", "profile": ["p"], "security": [{"code": "R"}]},
            "text": {"status": "generated", "div": "<div>Jane Smith</div>"},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
            "name": [{"family": "Smith", "given": ["Jane"]}],
            "telecom": [{"system": "phone", "value": "0113 000 0000"}],
            "gender": "female",
            "birthDate": "1970-05-17",
            "deceasedDateTime": "2020-02-03T04:05:06Z",
            "address": [{"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 4AP", "country": "GB"}],
            "photo": [{"contentType": "image/png", "data": "AAAA"}],
            "contact": [{"name": {"family": "Smith"}, "telecom": [{"value": "x"}], "relationship": [{"text": "spouse"}]}],
            "link": [{"other": {"reference": "Patient/x"}, "type": "seealso"}],
            "extension": [{"url": "u", "valueHumanName": {"family": "X"}}, {"url": "v", "valueString": "kept"}]
        }));
        let pp = Pseudonymiser::new(b"project-key-0123456789abcdef0123").pseudonym(PATIENT);
        assert_eq!(
            out,
            json!({
                "resourceType": "Patient",
                "id": pp,
                "meta": {"profile": ["p"], "security": [{"code": "R"}]},
                "gender": "female",
                "birthDate": "1970-05",
                "deceasedDateTime": "2020-02",
                "address": [{"postalCode": "LS1", "country": "GB"}],
                "contact": [{"relationship": [{"text": "spouse"}]}],
                "extension": [{"url": "u"}, {"url": "v", "valueString": "kept"}]
            })
        );
    }

    #[test]
    fn references_are_pseudonymised_or_reduced_to_their_type() {
        let p = Pseudonymiser::new(b"project-key-0123456789abcdef0123");
        let out = run(json!({
            "resourceType": "Observation",
            "id": "local-id",
            "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1234", "display": "Thing"}], "text": "thing"},
            "subject": {"reference": format!("urn:uuid:{MERGED}"), "display": "Jane Smith"},
            "encounter": {"reference": format!("https://fhir.example/R4/Encounter/{OTHER_RECORD}/_history/2")},
            "performer": [{"reference": "Practitioner/abc", "display": "Dr Who"}, {"display": "Nurse X", "type": "Practitioner"}],
            "hasMember": [{"reference": "#contained-1"}],
            "effectiveDateTime": "2024-03-04T05:06:07Z",
            "note": [{"text": "lives with daughter"}],
            "valueQuantity": {"value": 5, "unit": "mmol/L"}
        }));
        assert_eq!(
            out,
            json!({
                "resourceType": "Observation",
                "id": p.pseudonym("rec-1"),
                "status": "final",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1234", "display": "Thing"}], "text": "thing"},
                "subject": {"reference": format!("Patient/{}", p.pseudonym(PATIENT))},
                "encounter": {"reference": format!("Encounter/{}", p.pseudonym(OTHER_RECORD))},
                "performer": [{"type": "Practitioner"}, {"type": "Practitioner"}],
                "hasMember": [{"reference": "#contained-1"}],
                "effectiveDateTime": "2024-03-04T05:06:07Z",
                "valueQuantity": {"value": 5, "unit": "mmol/L"}
            })
        );
    }

    #[test]
    fn postcode_districts() {
        assert_eq!(postcode_district("LS1 4AP").as_deref(), Some("LS1"));
        assert_eq!(postcode_district("sw1a1aa").as_deref(), Some("SW1A"));
        assert_eq!(postcode_district("M1 1AE").as_deref(), Some("M1"));
        assert_eq!(postcode_district("not a postcode"), None);
        assert_eq!(postcode_district("12345"), None);
    }

    #[test]
    fn non_objects_are_refused() {
        let p = Pseudonymiser::new(b"k");
        let subject = Subject {
            pseudonymiser: &p,
            patient_ids: &[],
            patient_pseudonym: "",
            record_pseudonym: "",
        };
        assert_eq!(deidentify(b"[1]", &subject), Err(DeidError::NotAnObject));
        assert_eq!(deidentify(b"{", &subject), Err(DeidError::NotAnObject));
    }
}
