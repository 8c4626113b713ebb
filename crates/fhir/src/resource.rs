//! FHIR resources and Bundles from what data access returns.
//!
//! Record hosting keeps each payload byte for byte; its record fields, not the JSON, are
//! authoritative for identity, version and times. The gateway overlays them as FHIR expects:
//! `id` is the record id, `meta.versionId` the version, `meta.lastUpdated` when the version was
//! written, `meta.source` the system that wrote it, and `meta.security` the record's sensitivity
//! labels (so a receiving system can keep them with the data).

use carerecord_contracts::access::v1::{DisclosedRecord, PatientSummary, RecordStatus};
use carerecord_contracts::common::v1::{AdministrativeGender, HumanName, NameUse};
use carerecord_platform::time::{micros, rfc3339};
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::Error;

/// The NHS number's identifier system (UK Core).
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Where the sensitivity labels of `meta.security` come from.
pub const DATA_CLASS_SYSTEM: &str = "https://carerecord.nhs.example/fhir/CodeSystem/data-class";

/// A disclosed record as the FHIR resource it holds, with the record's id and meta overlaid.
pub fn record_resource(record: &DisclosedRecord) -> Result<Value, Error> {
    serde_json::from_str(record_json(record)?.get()).map_err(|_| bad_payload())
}

/// [`record_resource`] as JSON text, for Bundles: the payload's members are kept as the bytes
/// stored (only `id` and `meta` are rewritten), so a page of records is never turned into a tree
/// of values and back.
pub fn record_json(record: &DisclosedRecord) -> Result<Box<RawValue>, Error> {
    let members: BTreeMap<String, &RawValue> =
        serde_json::from_slice(&record.payload).map_err(|e| {
            tracing::error!(error = %e, "a stored payload is not a JSON object");
            bad_payload()
        })?;
    let mut meta = match members.get("meta").map(|m| serde_json::from_str(m.get())) {
        Some(Ok(Value::Object(meta))) => meta,
        _ => Map::new(),
    };
    overlay_meta(&mut meta, record);
    let id = raw(&Value::String(record.record_id.clone()));
    let meta = raw(&Value::Object(meta));
    let mut resource: BTreeMap<&str, &RawValue> =
        members.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    resource.insert("id", &id);
    resource.insert("meta", &meta);
    serde_json::value::to_raw_value(&resource).map_err(|_| bad_payload())
}

fn bad_payload() -> Error {
    Error::Upstream(tonic::Status::internal("a stored record is not valid JSON"))
}

/// `value` as JSON text.
pub fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value always serialises")
}

/// The record's version, write time, source system and sensitivity labels in `meta`.
fn overlay_meta(meta: &mut Map<String, Value>, record: &DisclosedRecord) {
    meta.insert(
        "versionId".into(),
        Value::String(record.version.to_string()),
    );
    if let Some(updated) = record.last_updated.as_ref().and_then(micros) {
        meta.insert("lastUpdated".into(), Value::String(rfc3339(updated)));
    }
    if let Some(source) = record
        .provenance
        .as_ref()
        .map(|p| p.source_system.as_str())
        .filter(|s| !s.is_empty())
    {
        meta.insert("source".into(), Value::String(source.to_owned()));
    }
    if !record.data_classes.is_empty() {
        let mut security: Vec<Value> = match meta.remove("security") {
            Some(Value::Array(existing)) => existing,
            _ => Vec::new(),
        };
        // A client that sends back what it read (as FHIR clients do on update) already holds them.
        for class in &record.data_classes {
            let label = json!({"system": DATA_CLASS_SYSTEM, "code": class});
            if !security.contains(&label) {
                security.push(label);
            }
        }
        meta.insert("security".into(), Value::Array(security));
    }
}

/// `W/"<version>"`: the weak ETag FHIR uses for a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether a disclosed record is retracted (FHIR: deleted).
pub fn is_retracted(record: &DisclosedRecord) -> bool {
    record.status == RecordStatus::EnteredInError as i32
}

/// A Patient resource from the front door's summary: identity only, no address or contact details.
pub fn patient_resource(summary: &PatientSummary) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "id": summary.patient_id,
    });
    if !summary.nhs_number.is_empty() {
        patient["identifier"] = json!([{"system": NHS_NUMBER_SYSTEM, "value": summary.nhs_number}]);
    }
    let names: Vec<Value> = summary.names.iter().map(human_name).collect();
    if !names.is_empty() {
        patient["name"] = Value::Array(names);
    }
    if let Some(date) = &summary.birth_date {
        let text = match (date.month, date.day) {
            (0, _) => format!("{:04}", date.year),
            (m, 0) => format!("{:04}-{m:02}", date.year),
            (m, d) => format!("{:04}-{m:02}-{d:02}", date.year),
        };
        if date.year > 0 {
            patient["birthDate"] = Value::String(text);
        }
    }
    let gender = match AdministrativeGender::try_from(summary.gender) {
        Ok(AdministrativeGender::Male) => Some("male"),
        Ok(AdministrativeGender::Female) => Some("female"),
        Ok(AdministrativeGender::Other) => Some("other"),
        Ok(AdministrativeGender::Unknown) => Some("unknown"),
        _ => None,
    };
    if let Some(gender) = gender {
        patient["gender"] = Value::String(gender.into());
    }
    patient
}

fn human_name(name: &HumanName) -> Value {
    let mut out = json!({});
    let use_code = match NameUse::try_from(name.r#use) {
        Ok(NameUse::Usual) => Some("usual"),
        Ok(NameUse::Official) => Some("official"),
        Ok(NameUse::Temp) => Some("temp"),
        Ok(NameUse::Nickname) => Some("nickname"),
        Ok(NameUse::Anonymous) => Some("anonymous"),
        Ok(NameUse::Old) => Some("old"),
        Ok(NameUse::Maiden) => Some("maiden"),
        _ => None,
    };
    if let Some(code) = use_code {
        out["use"] = Value::String(code.into());
    }
    if !name.family.is_empty() {
        out["family"] = Value::String(name.family.clone());
    }
    if !name.given.is_empty() {
        out["given"] = json!(name.given);
    }
    if !name.prefixes.is_empty() {
        out["prefix"] = json!(name.prefixes);
    }
    out
}

/// A Bundle of `kind` (`searchset`, `history`) with these entries and links, as JSON text.
pub fn bundle(
    kind: &str,
    entries: Vec<Box<RawValue>>,
    links: Vec<(&str, String)>,
    total: Option<usize>,
) -> Vec<u8> {
    let mut head = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": rfc3339(carerecord_platform::db::now_micros())},
        "type": kind,
        "link": links
            .into_iter()
            .map(|(relation, url)| json!({"relation": relation, "url": url}))
            .collect::<Vec<_>>(),
    });
    if let Some(total) = total {
        head["total"] = json!(total);
    }
    let size: usize = entries.iter().map(|e| e.get().len() + 1).sum();
    let mut out = Vec::with_capacity(size + 512);
    serde_json::to_writer(&mut out, &head).expect("a JSON value always serialises");
    // FHIR JSON never holds an empty array: no matches is no `entry` at all.
    if !entries.is_empty() {
        out.pop(); // the head's closing brace
        out.extend_from_slice(b",\"entry\":[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(entry.get().as_bytes());
        }
        out.extend_from_slice(b"]}");
    }
    out
}

/// A search result entry.
pub fn match_entry(full_url: &str, resource: &RawValue) -> Box<RawValue> {
    let (url, search) = (
        raw(&Value::String(full_url.to_owned())),
        raw(&json!({"mode": "match"})),
    );
    let entry: BTreeMap<&str, &RawValue> = BTreeMap::from([
        ("fullUrl", &*url),
        ("resource", resource),
        ("search", &*search),
    ]);
    serde_json::value::to_raw_value(&entry).expect("JSON text always serialises")
}

/// A search entry carrying an OperationOutcome about the search itself.
pub fn outcome_entry(outcome: Value) -> Box<RawValue> {
    raw(&json!({"resource": outcome, "search": {"mode": "outcome"}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_contracts::access::v1::Provenance;
    use carerecord_contracts::common::v1::Date;
    use carerecord_platform::time::timestamp_from_micros;

    #[test]
    fn records_get_their_id_and_meta_overlaid() {
        let record = DisclosedRecord {
            record_id: "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e".into(),
            version: 3,
            payload: br#"{"resourceType":"Observation","id":"theirs","meta":{"profile":["p"]},"status":"final"}"#.to_vec(),
            data_classes: vec!["mental-health".into()],
            last_updated: Some(timestamp_from_micros(1_700_000_000_000_000)),
            provenance: Some(Provenance {
                source_system: "gp-system".into(),
                ..Provenance::default()
            }),
            ..DisclosedRecord::default()
        };
        let resource = record_resource(&record).unwrap();
        assert_eq!(resource["id"], "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e");
        assert_eq!(resource["meta"]["versionId"], "3");
        assert_eq!(resource["meta"]["profile"][0], "p");
        assert_eq!(resource["meta"]["lastUpdated"], "2023-11-14T22:13:20Z");
        assert_eq!(resource["meta"]["source"], "gp-system");
        assert_eq!(resource["meta"]["security"][0]["code"], "mental-health");
        let mut sent_back = record.clone();
        sent_back.payload = serde_json::to_vec(&resource).unwrap();
        let again = record_resource(&sent_back).unwrap();
        assert_eq!(again["meta"]["security"].as_array().unwrap().len(), 1);
        assert_eq!(resource["status"], "final");
        assert_eq!(etag(3), "W/\"3\"");
    }

    #[test]
    fn bundles_are_written_around_their_entries() {
        let resource = raw(&json!({"resourceType": "Observation", "id": "o"}));
        let text = bundle(
            "searchset",
            vec![match_entry("http://x/Observation/o", &resource)],
            vec![("self", "http://x/Observation".into())],
            None,
        );
        let parsed: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(parsed["type"], "searchset");
        assert_eq!(parsed["entry"][0]["resource"]["id"], "o");
        assert_eq!(parsed["entry"][0]["search"]["mode"], "match");
        assert_eq!(parsed["entry"][0]["fullUrl"], "http://x/Observation/o");
        let empty: Value =
            serde_json::from_slice(&bundle("searchset", Vec::new(), Vec::new(), Some(0))).unwrap();
        assert!(empty.get("entry").is_none());
        assert_eq!(empty["total"], 0);
    }

    #[test]
    fn patients_carry_identity_only() {
        let summary = PatientSummary {
            patient_id: "p".into(),
            nhs_number: "9434765919".into(),
            names: vec![HumanName {
                family: "Lovelace".into(),
                given: vec!["Ada".into()],
                r#use: NameUse::Official as i32,
                ..HumanName::default()
            }],
            birth_date: Some(Date {
                year: 1985,
                month: 12,
                day: 0,
            }),
            gender: AdministrativeGender::Female as i32,
        };
        let patient = patient_resource(&summary);
        assert_eq!(patient["identifier"][0]["value"], "9434765919");
        assert_eq!(patient["name"][0]["use"], "official");
        assert_eq!(patient["birthDate"], "1985-12");
        assert_eq!(patient["gender"], "female");
        assert!(patient.get("address").is_none());
    }
}
