//! Unit tests of record validation.

use super::*;

const PATIENT: &str = "0b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";

fn rules() -> RecordRules {
    RecordRules {
        payload: PayloadRules {
            max_bytes: 1 << 20,
            fhir_base_urls: vec![],
        },
        allowed_resource_types: None,
    }
}

fn record() -> Record {
    Record {
        patient_id: PATIENT.to_uppercase(),
        resource_type: "Observation".into(),
        content_type: FHIR_JSON.into(),
        payload: format!(
            r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{PATIENT}"}}}}"#
        )
        .into_bytes(),
        data_classes: vec!["mental-health".into(), "hiv".into(), "hiv".into()],
        authoring_organisation_ods_code: "rr8".into(),
        source_system: "EPR".into(),
        ..Default::default()
    }
}

fn fields(violations: &Violations) -> Vec<&str> {
    violations.iter().map(|(f, _)| f).collect()
}

/// The fields of a record that must be valid.
fn validated(record: &Record) -> RecordFields {
    let mut violations = Violations::new();
    let fields = validate_new(record, "record", &rules(), 0, &mut violations);
    assert!(violations.is_empty(), "{violations:?}");
    fields
}

#[test]
fn a_valid_record_is_normalised() {
    let fields = validated(&record());
    assert_eq!(fields.patient_id, PATIENT);
    assert_eq!(fields.data_classes, "|hiv|mental-health|");
    assert_eq!(
        decode_data_classes(&fields.data_classes),
        ["hiv", "mental-health"]
    );
    assert_eq!(fields.authoring_org, "RR8");
    assert_eq!(fields.recorded_time, None);
}

#[test]
fn every_bad_field_is_reported_with_its_path() {
    let bad = Record {
        patient_id: "nope".into(),
        resource_type: "Patient".into(),
        content_type: "application/json".into(),
        payload: vec![],
        data_classes: vec!["hiv".into(), "cardiology".into()],
        authoring_organisation_ods_code: "R!".into(),
        author: "x".repeat(257),
        source_system: " ".into(),
        effective_time: Some(Timestamp {
            seconds: 0,
            nanos: -1,
        }),
        recorded_time: Some(micros_timestamp(10 * 60 * 1_000_000)),
        ..Default::default()
    };
    let mut violations = Violations::new();
    validate_new(&bad, "record", &rules(), 0, &mut violations);
    assert_eq!(
        fields(&violations),
        [
            "record.patient_id",
            "record.resource_type",
            "record.content_type",
            "record.payload",
            "record.recorded_time",
            "record.data_classes[1]",
            "record.authoring_organisation_ods_code",
            "record.author",
            "record.source_system",
            "record.effective_time",
        ]
    );
}

#[test]
fn allow_list_restricts_types() {
    let mut rules = rules();
    rules.allowed_resource_types = Some(vec!["Condition".into()]);
    let mut violations = Violations::new();
    validate_new(&record(), "record", &rules, 0, &mut violations);
    assert_eq!(fields(&violations), ["record.resource_type"]);
}

#[test]
fn fingerprint_changes_with_any_field() {
    let a = validated(&record());
    let mut changed = record();
    changed.author = "someone".into();
    let b = validated(&changed);
    assert_eq!(a.fingerprint(), a.clone().fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[test]
fn update_mask_paths() {
    let mut violations = Violations::new();
    assert_eq!(
        UpdatePaths::from_mask(&[], &mut violations),
        UpdatePaths::ALL
    );
    assert_eq!(
        UpdatePaths::from_mask(&["*".into()], &mut violations),
        UpdatePaths::ALL
    );
    let only = UpdatePaths::from_mask(&["author".into()], &mut violations);
    assert!(only.author && !only.payload);
    assert!(violations.is_empty());
    UpdatePaths::from_mask(&["patient_id".into()], &mut violations);
    assert_eq!(fields(&violations), ["update_mask"]);
}

#[test]
fn updates_keep_identity_and_check_the_payload_against_it() {
    let mut violations = Violations::new();
    let stored = validated(&record());
    let mut change = record();
    change.patient_id = String::new();
    change.author = "dr who".into();
    change.payload = br#"{"resourceType":"Observation","subject":{"reference":"Patient/1b9d5c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"}}"#.to_vec();
    let values = validate_update(
        &change,
        UpdatePaths {
            author: true,
            ..Default::default()
        },
        &rules(),
        &mut violations,
    );
    let next = apply_update(&stored, &change, values, &rules()).unwrap();
    assert_eq!(next.author, "dr who");
    assert_eq!(next.payload, stored.payload);
    let values = validate_update(&change, UpdatePaths::ALL, &rules(), &mut violations);
    let err = apply_update(&stored, &change, values, &rules()).unwrap_err();
    assert_eq!(fields(&err), ["record.payload"]);
    change.resource_type = "Condition".into();
    let values = validate_update(&change, UpdatePaths::ALL, &rules(), &mut violations);
    assert_eq!(
        fields(&apply_update(&stored, &change, values, &rules()).unwrap_err()),
        ["record.resource_type", "record.payload"]
    );
}

#[test]
fn timestamps_round_trip_in_microseconds() {
    let ts = Timestamp {
        seconds: -5,
        nanos: 123_456_789,
    };
    let micros = timestamp_micros(&ts).unwrap();
    assert_eq!(
        micros_timestamp(micros),
        Timestamp {
            seconds: -5,
            nanos: 123_456_000
        }
    );
    assert!(
        timestamp_micros(&Timestamp {
            seconds: 253_402_300_800,
            nanos: 0
        })
        .is_err()
    );
}
