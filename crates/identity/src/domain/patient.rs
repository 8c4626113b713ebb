//! The life of a patient record: what a new version sets, what an update may change, what a merge
//! and an unmerge do to the two patients, and which identifiers a patient reserves.

use carerecord_contracts::common::v1::Requester;
use carerecord_contracts::identity::v1::{
    ConfidentialityChange, Patient, PatientConfidentiality, PatientState,
};
use carerecord_platform::errors::Violations;

use super::validate::NHS_NUMBER_SYSTEM;

/// The fields an update mask may name (`*` names them all).
pub const UPDATABLE: [&str; 8] = [
    "nhs_number",
    "identifiers",
    "names",
    "birth_date",
    "gender",
    "addresses",
    "telecoms",
    "deceased_date",
];

/// The opaque etag of a patient version.
pub fn etag(patient_id: &str, version: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{patient_id}:{version}").as_bytes());
    hex::encode(&digest[..10])
}

/// A time stored as microseconds since the Unix epoch, as a protobuf timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// A protobuf timestamp as microseconds since the Unix epoch.
pub fn micros(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos) / 1000
}

/// Sets the output-only bookkeeping of a new version.
pub fn stamp(patient: &mut Patient, version: i64, time: i64) {
    patient.version = version;
    patient.etag = etag(&patient.patient_id, version);
    patient.update_time = Some(timestamp(time));
    if version == 1 {
        patient.create_time = Some(timestamp(time));
    }
}

pub fn is_merged(patient: &Patient) -> bool {
    patient.state == PatientState::Merged as i32
}

/// The identifier keys a patient reserves: its NHS number and local identifiers.
pub fn identifier_keys(patient: &Patient) -> Vec<(String, String)> {
    let mut keys = Vec::with_capacity(patient.identifiers.len() + 1);
    if !patient.nhs_number.is_empty() {
        keys.push((NHS_NUMBER_SYSTEM.to_owned(), patient.nhs_number.clone()));
    }
    for id in &patient.identifiers {
        keys.push((id.system.clone(), id.value.clone()));
    }
    keys
}

/// Only the writable fields of a patient (output-only fields are ignored on input).
pub fn writable(p: Patient) -> Patient {
    Patient {
        nhs_number: p.nhs_number,
        identifiers: p.identifiers,
        names: p.names,
        birth_date: p.birth_date,
        gender: p.gender,
        addresses: p.addresses,
        telecoms: p.telecoms,
        deceased_date: p.deceased_date,
        ..Patient::default()
    }
}

/// The fields an update mask names, each a violation on `update_mask.paths[i]` unless it is
/// [`UPDATABLE`] or `*`.
pub fn update_paths(paths: &[String], violations: &mut Violations) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        if path == "*" {
            out.extend(UPDATABLE);
        } else if let Some(known) = UPDATABLE.iter().find(|u| **u == path.as_str()) {
            out.push(*known);
        } else {
            violations.add(
                format!("update_mask.paths[{i}]"),
                format!(
                    "{path:?} is unknown or not updatable; allowed: {}, or *",
                    UPDATABLE.join(", ")
                ),
            );
        }
    }
    out
}

/// `current` with the fields `paths` names taken from `input`.
pub fn updated(current: &Patient, input: &Patient, paths: &[&str]) -> Patient {
    let mut new = current.clone();
    for path in paths {
        match *path {
            "nhs_number" => new.nhs_number = input.nhs_number.clone(),
            "identifiers" => new.identifiers = input.identifiers.clone(),
            "names" => new.names = input.names.clone(),
            "birth_date" => new.birth_date = input.birth_date,
            "gender" => new.gender = input.gender,
            "addresses" => new.addresses = input.addresses.clone(),
            "telecoms" => new.telecoms = input.telecoms.clone(),
            "deceased_date" => new.deceased_date = input.deceased_date,
            _ => {}
        }
    }
    new
}

/// The top-level fields that differ between two versions (bookkeeping fields excluded).
pub fn changed_fields(old: &Patient, new: &Patient) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_owned());
        }
    };
    check("nhs_number", old.nhs_number != new.nhs_number);
    check("identifiers", old.identifiers != new.identifiers);
    check("names", old.names != new.names);
    check("birth_date", old.birth_date != new.birth_date);
    check("gender", old.gender != new.gender);
    check("addresses", old.addresses != new.addresses);
    check("telecoms", old.telecoms != new.telecoms);
    check("deceased_date", old.deceased_date != new.deceased_date);
    check("state", old.state != new.state);
    check(
        "merged_into_patient_id",
        old.merged_into_patient_id != new.merged_into_patient_id,
    );
    check(
        "merged_from_patient_ids",
        old.merged_from_patient_ids != new.merged_from_patient_ids,
    );
    check(
        "confidentiality",
        old.confidentiality != new.confidentiality,
    );
    out
}

pub fn is_restricted(patient: &Patient) -> bool {
    patient.confidentiality == PatientConfidentiality::Restricted as i32
}

/// The next version of `current` with its confidentiality marker set to `level`, recording who
/// changed it, when and why; `None` when the marker already has that level.
pub fn with_confidentiality(
    current: &Patient,
    level: PatientConfidentiality,
    requester: &Requester,
    reason: &str,
    now: i64,
) -> Option<Patient> {
    if current.confidentiality == level as i32 {
        return None;
    }
    let mut new = current.clone();
    new.confidentiality = level as i32;
    stamp(&mut new, current.version + 1, now);
    new.confidentiality_change = Some(ConfidentialityChange {
        requester: Some(requester.clone()),
        change_time: new.update_time,
        reason: reason.to_owned(),
        version: new.version,
    });
    Some(new)
}

/// The next versions of a merge: `source` merged into `target`, and `target` naming `source`.
pub fn merged(source: &Patient, target: &Patient, now: i64) -> (Patient, Patient) {
    let mut new_source = source.clone();
    new_source.state = PatientState::Merged as i32;
    new_source.merged_into_patient_id = target.patient_id.clone();
    stamp(&mut new_source, source.version + 1, now);
    let mut new_target = target.clone();
    new_target
        .merged_from_patient_ids
        .push(source.patient_id.clone());
    stamp(&mut new_target, target.version + 1, now);
    (new_source, new_target)
}

/// The next versions of an unmerge: `duplicate` active again, and `former` (its survivor) no
/// longer naming it.
pub fn unmerged(duplicate: &Patient, former: &Patient, now: i64) -> (Patient, Patient) {
    let mut restored = duplicate.clone();
    restored.state = PatientState::Active as i32;
    restored.merged_into_patient_id.clear();
    stamp(&mut restored, duplicate.version + 1, now);
    let mut new_former = former.clone();
    new_former
        .merged_from_patient_ids
        .retain(|m| *m != duplicate.patient_id);
    stamp(&mut new_former, former.version + 1, now);
    (restored, new_former)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 of the active, unrestricted patient `id`, written at time 10.
    fn first_version(id: &str) -> Patient {
        let mut patient = Patient {
            patient_id: id.into(),
            state: PatientState::Active as i32,
            confidentiality: PatientConfidentiality::Unrestricted as i32,
            ..Patient::default()
        };
        stamp(&mut patient, 1, 10);
        patient
    }

    #[test]
    fn update_masks_name_updatable_fields_or_all() {
        let mut v = Violations::new();
        let paths = update_paths(&["names".into(), "version".into(), "*".into()], &mut v);
        assert_eq!(paths.len(), 1 + UPDATABLE.len());
        assert_eq!(v.iter().next().unwrap().0, "update_mask.paths[1]");
    }

    #[test]
    fn a_confidentiality_change_is_a_new_version_recording_who_and_why() {
        let current = first_version("p");
        let officer = Requester {
            user_id: "po".into(),
            role_code: "R0001".into(),
            ..Requester::default()
        };
        let restricted = with_confidentiality(
            &current,
            PatientConfidentiality::Restricted,
            &officer,
            "fleeing violence",
            20,
        )
        .unwrap();
        assert!(is_restricted(&restricted));
        assert_eq!(changed_fields(&current, &restricted), ["confidentiality"]);
        let change = restricted.confidentiality_change.clone().unwrap();
        assert_eq!(
            (change.version, change.reason.as_str()),
            (2, "fleeing violence")
        );
        assert_eq!(change.change_time, restricted.update_time);
        assert_eq!(change.requester, Some(officer.clone()));
        // The same level again changes nothing.
        assert!(
            with_confidentiality(
                &restricted,
                PatientConfidentiality::Restricted,
                &officer,
                "again",
                30
            )
            .is_none()
        );
    }

    #[test]
    fn a_merge_then_an_unmerge_restores_the_fields() {
        let (source, target) = (first_version("s"), first_version("t"));
        let (merged_source, merged_target) = merged(&source, &target, 20);
        assert!(is_merged(&merged_source));
        assert_eq!(merged_target.merged_from_patient_ids, ["s"]);
        assert_eq!(
            changed_fields(&source, &merged_source),
            ["state", "merged_into_patient_id"]
        );
        let (restored, former) = unmerged(&merged_source, &merged_target, 30);
        assert!(changed_fields(&source, &restored).is_empty());
        assert!(changed_fields(&target, &former).is_empty());
        assert_eq!((restored.version, former.version), (3, 3));
        assert_eq!(micros(restored.update_time.as_ref().unwrap()), 30);
    }
}
