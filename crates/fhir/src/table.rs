//! The one table of what the gateway serves. The router ([`crate::router`]) is built from it, and
//! so is the CapabilityStatement at `/metadata` ([`crate::capability`]), so the two can never
//! disagree.

use axum::routing::MethodFilter;

/// Which resources a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The Patient type.
    Patient,
    /// Every clinical type (any FHIR R4 type but Patient and Bundle).
    Clinical,
    /// The Group type (research projects, for Bulk Data export).
    Group,
    /// Not a resource: the server itself.
    System,
}

/// What a route does, in FHIR's words where FHIR has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Capabilities,
    SmartConfiguration,
    Read,
    Vread,
    HistoryInstance,
    SearchType,
    Create,
    Update,
    Delete,
    /// `$everything` on a Patient.
    Everything,
    /// Bulk Data `$export` kick-off on a Group.
    GroupExport,
    /// Bulk Data status polling (GET) and cancellation (DELETE) of an export job.
    ExportStatus,
    ExportCancel,
    /// An output file of a finished export.
    ExportFile,
}

impl Action {
    /// The CapabilityStatement interaction code, for the actions that are FHIR interactions.
    pub fn interaction(self) -> Option<&'static str> {
        Some(match self {
            Action::Read => "read",
            Action::Vread => "vread",
            Action::HistoryInstance => "history-instance",
            Action::SearchType => "search-type",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            _ => return None,
        })
    }
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: MethodFilter,
    pub path: &'static str,
    pub target: Target,
    pub action: Action,
}

const fn route(method: MethodFilter, path: &'static str, target: Target, action: Action) -> Route {
    Route {
        method,
        path,
        target,
        action,
    }
}

/// Everything served. Literal paths win over `{type}` in the router, so the Patient and Group routes
/// take precedence over the clinical ones for those types.
pub const ROUTES: &[Route] = &[
    route(
        MethodFilter::GET,
        "/metadata",
        Target::System,
        Action::Capabilities,
    ),
    route(
        MethodFilter::GET,
        "/.well-known/smart-configuration",
        Target::System,
        Action::SmartConfiguration,
    ),
    route(
        MethodFilter::GET,
        "/Patient",
        Target::Patient,
        Action::SearchType,
    ),
    route(
        MethodFilter::GET,
        "/Patient/{id}",
        Target::Patient,
        Action::Read,
    ),
    route(
        MethodFilter::GET,
        "/Patient/{id}/$everything",
        Target::Patient,
        Action::Everything,
    ),
    route(
        MethodFilter::GET,
        "/Group/{id}/$export",
        Target::Group,
        Action::GroupExport,
    ),
    route(
        MethodFilter::GET,
        "/$export-status/{job}",
        Target::System,
        Action::ExportStatus,
    ),
    route(
        MethodFilter::DELETE,
        "/$export-status/{job}",
        Target::System,
        Action::ExportCancel,
    ),
    route(
        MethodFilter::GET,
        "/$export-file/{job}/{file}",
        Target::System,
        Action::ExportFile,
    ),
    route(
        MethodFilter::GET,
        "/{type}",
        Target::Clinical,
        Action::SearchType,
    ),
    route(
        MethodFilter::POST,
        "/{type}",
        Target::Clinical,
        Action::Create,
    ),
    route(
        MethodFilter::GET,
        "/{type}/{id}",
        Target::Clinical,
        Action::Read,
    ),
    route(
        MethodFilter::PUT,
        "/{type}/{id}",
        Target::Clinical,
        Action::Update,
    ),
    route(
        MethodFilter::DELETE,
        "/{type}/{id}",
        Target::Clinical,
        Action::Delete,
    ),
    route(
        MethodFilter::GET,
        "/{type}/{id}/_history",
        Target::Clinical,
        Action::HistoryInstance,
    ),
    route(
        MethodFilter::GET,
        "/{type}/{id}/_history/{version}",
        Target::Clinical,
        Action::Vread,
    ),
];

/// A search parameter the gateway understands.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: &'static str,
    pub documentation: &'static str,
}

const fn param(name: &'static str, kind: &'static str, documentation: &'static str) -> SearchParam {
    SearchParam {
        name,
        kind,
        documentation,
    }
}

pub const PATIENT_SEARCH: &[SearchParam] = &[
    param("_id", "token", "The patient's carerecord id."),
    param(
        "identifier",
        "token",
        "An identifier as system|value; https://fhir.nhs.uk/Id/nhs-number|<n> finds by NHS number.",
    ),
    param(
        "family",
        "string",
        "Family name; with birthdate, a demographic match.",
    ),
    param("given", "string", "Given name."),
    param("birthdate", "date", "Date of birth (a full date)."),
    param("gender", "token", "male, female, other or unknown."),
    param("address-postalcode", "string", "Current postcode."),
];

pub const CLINICAL_SEARCH: &[SearchParam] = &[
    param(
        "patient",
        "reference",
        "The patient, as <id> or Patient/<id>. One of patient, subject or patient.identifier is required.",
    ),
    param("subject", "reference", "The patient, as Patient/<id>."),
    param(
        "patient.identifier",
        "token",
        "The patient by identifier, e.g. https://fhir.nhs.uk/Id/nhs-number|<n>.",
    ),
    param(
        "date",
        "date",
        "When the record is clinically effective, with eq, ge, gt, le or lt.",
    ),
    param(
        "_lastUpdated",
        "date",
        "When the record's latest version was written.",
    ),
    param(
        "code",
        "token",
        "A code of the resource's code element, as system|code; comma for any of several.",
    ),
    param(
        "category",
        "token",
        "A code of the resource's category element, as system|code.",
    ),
    param("status", "token", "The resource's status element."),
    param(
        "_sort",
        "special",
        "Only -date (newest first, the default order).",
    ),
    param(
        "_count",
        "number",
        "Results per page, 1 to 1000 (default 50).",
    ),
];

/// The clinical resource types served: every FHIR R4 type but Patient (identity's) and Bundle.
pub fn clinical_types() -> impl Iterator<Item = &'static str> {
    carerecord_platform::fhir::FHIR_R4_RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "Patient" && *t != "Bundle")
}

/// Whether `name` is a clinical type served.
pub fn is_clinical_type(name: &str) -> bool {
    name != "Patient" && name != "Bundle" && carerecord_platform::fhir::is_r4_resource_type(name)
}
