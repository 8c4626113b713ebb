//! The resource type names of FHIR R4 (4.0.1), for `Record.resource_type`.

use carerecord_platform::fhir::is_r4_resource_type;

/// Types that are FHIR resources but never records: one clinical resource per record, and
/// demographics belong to the identity module.
const REFUSED: &[&str] = &["Bundle", "Patient"];

/// Whether `name` is an R4 resource type name (case-sensitive).
pub fn is_fhir_r4_type(name: &str) -> bool {
    is_r4_resource_type(name)
}

/// Why `name` cannot be a record's resource type, if it cannot (ignoring deployment allow-lists).
pub fn refusal(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("required".to_owned())
    } else if !is_fhir_r4_type(name) {
        Some(format!(
            "{name:?} is not a FHIR R4 resource type (names are case-sensitive, for example Observation)"
        ))
    } else if REFUSED.contains(&name) {
        Some(format!(
            "{name} resources cannot be records: store one clinical resource per record; demographics belong to the identity service"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_platform::fhir::FHIR_R4_RESOURCE_TYPES;

    #[test]
    fn the_list_is_sorted_and_complete_enough() {
        assert!(FHIR_R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(FHIR_R4_RESOURCE_TYPES.len(), 146);
        for name in [
            "Observation",
            "Condition",
            "CarePlan",
            "QuestionnaireResponse",
            "MedicationStatement",
        ] {
            assert!(refusal(name).is_none(), "{name}");
        }
    }

    #[test]
    fn unknown_wrong_case_patient_and_bundle_are_refused() {
        for name in [
            "",
            "observation",
            "Foo",
            "Patient",
            "Bundle",
            "Resource",
            "DomainResource",
        ] {
            assert!(refusal(name).is_some(), "{name}");
        }
    }
}
