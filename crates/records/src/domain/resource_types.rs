//! The resource type names of FHIR R4 (4.0.1), for `Record.resource_type`.

/// Every concrete resource type of FHIR R4 (the `resource-types` value set less `Resource` and
/// `DomainResource`), sorted, for binary search.
const FHIR_R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Types that are FHIR resources but never records: one clinical resource per record, and
/// demographics belong to the identity module.
const REFUSED: &[&str] = &["Bundle", "Patient"];

/// Whether `name` is an R4 resource type name (case-sensitive).
pub fn is_fhir_r4_type(name: &str) -> bool {
    FHIR_R4_RESOURCE_TYPES.binary_search(&name).is_ok()
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
