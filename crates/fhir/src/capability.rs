//! The CapabilityStatement: what the route table serves, with the SMART security service.

use serde_json::{Value, json};

use crate::table::{
    Action, CLINICAL_SEARCH, PATIENT_SEARCH, ROUTES, SearchParam, Target, clinical_types,
};

fn interactions(target: Target) -> Vec<Value> {
    ROUTES
        .iter()
        .filter(|r| r.target == target)
        .filter_map(|r| r.action.interaction())
        .map(|code| json!({"code": code}))
        .collect()
}

fn search_params(params: &[SearchParam]) -> Vec<Value> {
    params
        .iter()
        .map(|p| json!({"name": p.name, "type": p.kind, "documentation": p.documentation}))
        .collect()
}

/// The CapabilityStatement: what [`ROUTES`] serves, with the SMART security service.
pub fn capability_statement(base_url: &str, smart: Option<&crate::config::Smart>) -> Value {
    let has = |target: Target, action: Action| {
        ROUTES
            .iter()
            .any(|r| r.target == target && r.action == action)
    };
    let mut patient = json!({
        "type": "Patient",
        "interaction": interactions(Target::Patient),
        "searchParam": search_params(PATIENT_SEARCH),
    });
    if has(Target::Patient, Action::Everything) {
        patient["operation"] = json!([{
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }]);
    }
    let mut resources = vec![patient];
    let clinical_interactions = interactions(Target::Clinical);
    let clinical_params = search_params(CLINICAL_SEARCH);
    for name in clinical_types() {
        resources.push(json!({
            "type": name,
            "versioning": "versioned",
            "readHistory": true,
            "updateCreate": false,
            "conditionalCreate": false,
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported",
            "interaction": clinical_interactions,
            "searchParam": clinical_params,
        }));
    }
    if has(Target::Group, Action::GroupExport) {
        resources.push(json!({
            "type": "Group",
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
            }],
        }));
    }
    let mut security = json!({
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "description": "OAuth 2.0 bearer tokens (JWT) verified by data access; SMART v2 scopes.",
    });
    if let Some(smart) = smart {
        security["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": smart.token_endpoint},
                {"url": "authorize", "valueUri": smart.authorization_endpoint},
            ],
        }]);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": carerecord_platform::time::rfc3339(carerecord_platform::db::now_micros()),
        "kind": "instance",
        "software": {"name": "carerecord-fhir", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "carerecord FHIR R4 gateway: consent-decided and audited by data access", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "rest": [{
            "mode": "server",
            "security": security,
            "resource": resources,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_lists_what_the_routes_serve() {
        let statement = capability_statement("http://localhost", None);
        let resources = statement["rest"][0]["resource"].as_array().unwrap();
        let patient = &resources[0];
        assert_eq!(patient["type"], "Patient");
        let codes: Vec<&str> = patient["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["search-type", "read"]);
        let observation = resources
            .iter()
            .find(|r| r["type"] == "Observation")
            .unwrap();
        let codes: Vec<&str> = observation["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        for code in [
            "search-type",
            "create",
            "read",
            "update",
            "delete",
            "history-instance",
            "vread",
        ] {
            assert!(codes.contains(&code), "{code} in {codes:?}");
        }
        assert!(!resources.iter().any(|r| r["type"] == "Bundle"));
        assert!(resources.iter().any(|r| r["type"] == "Group"));
        assert_eq!(
            resources.iter().filter(|r| r["type"] == "Patient").count(),
            1
        );
    }
}
