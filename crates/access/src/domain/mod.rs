//! Pure domain logic: no I/O, unit-tested next to the code.

pub mod audit_verify;
pub mod auth;
pub mod claims;
pub mod contribution;
pub mod decision;
pub mod deid;
pub mod limits;
pub mod merkle;
pub mod suppression;
pub mod tokens;
pub mod tree_head;

/// HL7 v3 ActReason purposes of use the contract knows.
pub const PURPOSES: [&str; 8] = [
    "TREAT", "ETREAT", "HRESCH", "HOPERAT", "HPAYMT", "PUBHLTH", "HMARKT", "PATRQT",
];

pub fn is_known_purpose(code: &str) -> bool {
    PURPOSES.contains(&code)
}

/// Protobuf timestamps and microseconds since the Unix epoch, as the platform converts them.
pub use carerecord_platform::time::{micros, timestamp_from_micros as timestamp};

pub use carerecord_platform::fhir::FHIR_R4_RESOURCE_TYPES;

pub fn is_resource_type(name: &str) -> bool {
    carerecord_platform::fhir::is_r4_resource_type(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_sorted_for_binary_search() {
        assert!(FHIR_R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_resource_type("Observation"));
        assert!(!is_resource_type("observation"));
        assert!(!is_resource_type("Widget"));
    }

    #[test]
    fn uuids_and_timestamps() {
        // Ids are parsed by the platform's `Id` everywhere in this service.
        use carerecord_platform::request::Id;
        assert_eq!(
            Id::parse("0B9D6C2E-1111-4222-8333-444455556666")
                .unwrap()
                .as_str(),
            "0b9d6c2e-1111-4222-8333-444455556666"
        );
        assert!(Id::parse("0b9d6c2e11114222833344445555666600000").is_none());
        assert!(Id::parse("0b9d6c2e-1111-4222-8333-44445555666g").is_none());
        let ts = timestamp(-1);
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_999_000));
        assert_eq!(micros(&ts), Some(-1));
    }
}
