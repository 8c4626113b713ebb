//! The FHIR R4 gateway in front of the sandbox's data access, as a REST client sees it:
//! discovery, Patient search and read, clinical search with every filter and paging through `next`
//! links, read, vread and history, and `$everything`. Writes, errors and Bulk Data are in
//! `fhir_writes.rs`, `fhir_errors.rs` and `fhir_bulk.rs`; the independent FHIR clients in
//! `fhir_peers.rs`.

use std::collections::BTreeSet;

use carerecord_e2e::{Fhir, Overrides, Platform, Reply, SMART_ISSUER, patient_token, token};
use http::{Method, StatusCode};
use serde_json::{Value, json};

pub const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const LOINC: &str = "http://loinc.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A clinician at RR8 who may read and write every type.
pub fn clinician() -> String {
    token("R8000", "user/*.cruds")
}

/// An Observation of `patient_id` with this code, category, status and effective date.
pub fn observation(
    patient_id: &str,
    code: &str,
    category: &str,
    status: &str,
    date: &str,
) -> Value {
    json!({
        "resourceType": "Observation",
        "status": status,
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": date,
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
}

/// POSTs `resource` and returns the created resource (panicking with the outcome otherwise).
pub async fn create(fhir: &Fhir, resource: &Value) -> Value {
    let reply = fhir
        .send(
            Method::POST,
            &format!("/{}", resource["resourceType"].as_str().expect("a type")),
            &[],
            Some(resource),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()
}

/// Every resource of a search, following `next` links; also returns how many pages it took.
pub async fn search_all(fhir: &Fhir, first: &str) -> (Vec<Value>, usize) {
    let mut resources = Vec::new();
    let mut pages = 0;
    let mut url = first.to_owned();
    loop {
        let reply = fhir.get(&url).await;
        let bundle = searchset(&reply);
        pages += 1;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                resources.push(entry["resource"].clone());
            }
        }
        match next_link(&bundle) {
            Some(next) => url = next,
            None => return (resources, pages),
        }
        assert!(pages < 1000, "paging never ends");
    }
}

/// The body of a reply with `status` and FHIR JSON.
fn fhir_json(reply: &Reply, status: StatusCode) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/fhir+json")),
        "{status}: {:?}",
        reply.headers
    );
    reply.json()
}

/// A newly registered patient (id, NHS number), and the gateway as a clinician.
pub async fn fhir_and_patient(
    platform: &Platform,
    given: &str,
    family: &str,
) -> (Fhir, String, String) {
    let (patient_id, nhs_number) = platform.register_patient(given, family).await;
    (
        platform.fhir().with_token(&clinician()),
        patient_id,
        nhs_number,
    )
}

/// The reason code of an OperationOutcome's first issue (empty when it names none).
pub fn reason(outcome: &Value) -> &str {
    outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

/// The reply as a searchset Bundle (a 200 with FHIR JSON).
pub fn searchset(reply: &Reply) -> Value {
    let bundle = fhir_json(reply, StatusCode::OK);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    bundle
}

pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().expect("a link url").to_owned())
}

fn ids(resources: &[Value]) -> BTreeSet<String> {
    resources
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// An OperationOutcome error with `status`, and its first issue's code.
pub fn outcome(reply: &Reply, status: StatusCode) -> Value {
    let outcome = fhir_json(reply, status);
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
    outcome
}

#[tokio::test]
async fn capability_statement_and_smart_discovery_describe_the_gateway() {
    let platform = Platform::start(
        carerecord_platform::db::Backend::Sqlite,
        Overrides::default(),
    )
    .await;
    let anonymous = platform.fhir();
    let reply = anonymous.get("/metadata").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let statement = reply.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    let resources = statement["rest"][0]["resource"]
        .as_array()
        .expect("resources");
    let observation = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .expect("Observation is served");
    let params: BTreeSet<&str> = observation["searchParam"]
        .as_array()
        .expect("search parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("a name"))
        .collect();
    for name in [
        "patient",
        "date",
        "code",
        "category",
        "status",
        "_lastUpdated",
        "_count",
    ] {
        assert!(params.contains(name), "{name} missing from {params:?}");
    }
    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient");
    assert_eq!(patient["operation"][0]["name"], "everything");
    let security = &statement["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert_eq!(
        security["extension"][0]["extension"][0]["valueUri"],
        format!("{SMART_ISSUER}/token")
    );

    let reply = anonymous.get("/.well-known/smart-configuration").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let smart = reply.json();
    assert_eq!(smart["issuer"], SMART_ISSUER);
    assert_eq!(smart["token_endpoint"], format!("{SMART_ISSUER}/token"));
    assert!(
        smart["capabilities"]
            .as_array()
            .expect("capabilities")
            .contains(&json!("permission-v2"))
    );
}

#[tokio::test]
async fn patients_are_found_by_nhs_number_and_demographics_and_read_by_id() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (fhir, patient_id, nhs_number) =
            fhir_and_patient(&platform, "Imogen", "Fairweather").await;

        let by_nhs = searchset(
            &fhir
                .get(&format!("/Patient?identifier={NHS_SYSTEM}|{nhs_number}"))
                .await,
        );
        assert_eq!(by_nhs["total"], 1, "{backend:?}: {by_nhs}");
        let patient = &by_nhs["entry"][0]["resource"];
        assert_eq!(patient["id"], patient_id.as_str());
        assert_eq!(patient["identifier"][0]["system"], NHS_SYSTEM);
        assert_eq!(patient["identifier"][0]["value"], nhs_number.as_str());
        assert_eq!(patient["name"][0]["family"], "Fairweather");
        assert_eq!(patient["birthDate"], "1961-04-12");
        assert_eq!(patient["gender"], "female");
        assert_eq!(
            by_nhs["entry"][0]["fullUrl"],
            format!("{}/Patient/{patient_id}", fhir.base)
        );

        // The registered demographics find the same patient; a percent-encoded query works too.
        let by_demographics = searchset(
            &fhir
                .get("/Patient?family=Fairweather&given=Imogen&birthdate=1961-04-12&gender=female")
                .await,
        );
        assert_eq!(
            by_demographics["total"], 1,
            "{backend:?}: {by_demographics}"
        );
        assert_eq!(
            by_demographics["entry"][0]["resource"]["id"],
            patient_id.as_str()
        );
        let encoded = searchset(
            &fhir
                .get(&format!(
                    "/Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{nhs_number}"
                ))
                .await,
        );
        assert_eq!(encoded["total"], 1);

        // Nobody matches: an empty searchset, not an error.
        let nobody = searchset(
            &fhir
                .get(&format!(
                    "/Patient?identifier={NHS_SYSTEM}|{}",
                    carerecord_e2e::fresh_nhs_number()
                ))
                .await,
        );
        assert_eq!(nobody["total"], 0);
        assert!(nobody["entry"].as_array().is_none_or(Vec::is_empty));
        let nobody = searchset(
            &fhir
                .get("/Patient?family=Nobody-Such&birthdate=1901-01-01")
                .await,
        );
        assert_eq!(nobody["total"], 0);

        let read = fhir.get(&format!("/Patient/{patient_id}")).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
        assert_eq!(read.json()["identifier"][0]["value"], nhs_number.as_str());
        assert!(read.json().get("address").is_none());
        let missing = fhir
            .get(&format!("/Patient/{}", carerecord_e2e::uuid()))
            .await;
        outcome(&missing, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn clinical_search_filters_in_the_front_door_and_pages_through_next_links() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (patient_id, nhs_number) = platform.register_patient("Cecily", "Ashdown").await;
        let (other_id, _) = platform.register_patient("Other", "Person").await;
        let fhir = platform.fhir().with_token(&clinician());

        let mut made = Vec::new();
        for (i, (code, category, status)) in [
            ("8867-4", "vital-signs", "final"),
            ("8867-4", "vital-signs", "preliminary"),
            ("2339-0", "laboratory", "final"),
            ("8867-4", "vital-signs", "final"),
            ("2339-0", "laboratory", "amended"),
            ("8867-4", "vital-signs", "final"),
            ("4548-4", "laboratory", "final"),
        ]
        .into_iter()
        .enumerate()
        {
            let date = format!("2025-0{}-15T09:00:00Z", i + 1);
            let created = create(
                &fhir,
                &observation(&patient_id, code, category, status, &date),
            )
            .await;
            made.push((created, code, category, status, i + 1));
        }
        let checkpoint = made[3].0["meta"]["lastUpdated"]
            .as_str()
            .expect("lastUpdated")
            .to_owned();
        create(
            &fhir,
            &observation(&other_id, "8867-4", "vital-signs", "final", "2025-03-01"),
        )
        .await;
        let expect = |keep: &dyn Fn(&str, &str, &str, usize) -> bool| -> BTreeSet<String> {
            made.iter()
                .filter(|(_, code, category, status, month)| keep(code, category, status, *month))
                .map(|(r, ..)| r["id"].as_str().expect("id").to_owned())
                .collect()
        };

        // Every record of the patient, two per page, through next links.
        let (all, pages) = search_all(
            &fhir,
            &format!("/Observation?patient={patient_id}&_count=2"),
        )
        .await;
        assert_eq!(ids(&all), expect(&|_, _, _, _| true), "{backend:?}");
        assert_eq!(all.len(), 7, "{backend:?}: no duplicates across pages");
        assert_eq!(pages, 4, "{backend:?}");
        // Newest effective date first.
        let dates: Vec<&str> = all
            .iter()
            .map(|r| r["effectiveDateTime"].as_str().expect("a date"))
            .collect();
        let mut sorted = dates.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(dates, sorted, "{backend:?}: _sort=-date is the order");

        for (query, wanted) in [
            (
                format!("subject=Patient/{patient_id}&code={LOINC}|8867-4"),
                expect(&|code, _, _, _| code == "8867-4"),
            ),
            (
                format!("patient.identifier={NHS_SYSTEM}|{nhs_number}&code=2339-0,4548-4"),
                expect(&|code, _, _, _| code != "8867-4"),
            ),
            (
                format!("patient=Patient/{patient_id}&category={CATEGORY}|laboratory&status=final"),
                expect(&|_, category, status, _| category == "laboratory" && status == "final"),
            ),
            (
                format!("patient={patient_id}&status=preliminary,amended"),
                expect(&|_, _, status, _| status != "final"),
            ),
            (
                format!("patient={patient_id}&date=ge2025-03-01&date=lt2025-06"),
                expect(&|_, _, _, month| (3..6).contains(&month)),
            ),
            (
                format!("patient={patient_id}&date=2025-02"),
                expect(&|_, _, _, month| month == 2),
            ),
            (
                format!("patient={patient_id}&date=gt2025-06-15T09:00:00Z"),
                expect(&|_, _, _, month| month > 6),
            ),
            (
                format!("patient={patient_id}&date=le2025-01-15"),
                expect(&|_, _, _, month| month == 1),
            ),
            (
                format!("patient={patient_id}&_lastUpdated=gt{checkpoint}"),
                expect(&|_, _, _, month| month > 4),
            ),
            (
                format!("patient={patient_id}&_lastUpdated=lt2000-01-01"),
                BTreeSet::new(),
            ),
            (
                format!("patient={patient_id}&code=8867-4&_sort=-date&_count=1"),
                expect(&|code, _, _, _| code == "8867-4"),
            ),
        ] {
            let url = format!("/Observation?{}", query.replace('+', "%2B"));
            let (found, _) = search_all(&fhir, &url).await;
            assert_eq!(ids(&found), wanted, "{backend:?}: {query}");
        }

        // Another type of the same patient holds none of these.
        let (conditions, _) = search_all(&fhir, &format!("/Condition?patient={patient_id}")).await;
        assert!(conditions.is_empty());

        // Each entry is the stored resource with the record's id and meta overlaid.
        let first = &all[0];
        assert_eq!(first["resourceType"], "Observation");
        assert!(first["meta"]["versionId"].is_string());
        assert!(first["meta"]["lastUpdated"].is_string());
    }
}

#[tokio::test]
async fn read_vread_history_and_everything() {
    for platform in Platform::each_backend(Overrides::default()).await {
        let backend = platform.backend;
        let (fhir, patient_id, _) = fhir_and_patient(&platform, "Ottoline", "Brackenbury").await;
        let created = create(
            &fhir,
            &observation(&patient_id, "8867-4", "vital-signs", "final", "2025-05-05"),
        )
        .await;
        let id = created["id"].as_str().expect("id").to_owned();
        let mut changed = created.clone();
        changed["status"] = json!("amended");
        let updated = fhir
            .put_if_match(&format!("/Observation/{id}"), 1, &changed)
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());

        let read = fhir.get(&format!("/Observation/{id}")).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
        assert_eq!(read.header("etag"), Some("W/\"2\""));
        assert!(
            read.header("last-modified")
                .is_some_and(|d| d.ends_with(" GMT"))
        );
        assert_eq!(read.json()["status"], "amended");
        assert_eq!(read.json()["meta"]["versionId"], "2");

        let first = fhir.get(&format!("/Observation/{id}/_history/1")).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        assert_eq!(first.json()["status"], "final");
        assert_eq!(first.header("etag"), Some("W/\"1\""));
        outcome(
            &fhir.get(&format!("/Observation/{id}/_history/9")).await,
            StatusCode::NOT_FOUND,
        );
        // The id names an Observation, not a Condition.
        outcome(
            &fhir.get(&format!("/Condition/{id}")).await,
            StatusCode::NOT_FOUND,
        );

        let history = fhir.get(&format!("/Observation/{id}/_history")).await;
        assert_eq!(history.status, StatusCode::OK, "{}", history.text());
        let history = history.json();
        assert_eq!(history["type"], "history", "{backend:?}");
        let versions: Vec<&str> = history["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .expect("version")
            })
            .collect();
        assert_eq!(versions, ["2", "1"], "newest first");
        assert_eq!(history["entry"][1]["request"]["method"], "POST");
        assert_eq!(history["entry"][0]["request"]["method"], "PUT");

        // $everything: the Patient first, then the records, paged.
        platform.add_record(&patient_id, &[]).await;
        let (everything, pages) = search_all(
            &fhir,
            &format!("/Patient/{patient_id}/$everything?_count=1"),
        )
        .await;
        let types: Vec<&str> = everything
            .iter()
            .map(|r| r["resourceType"].as_str().expect("a type"))
            .collect();
        assert_eq!(
            types,
            ["Patient", "Observation", "Observation"],
            "{backend:?}"
        );
        assert_eq!(everything[0]["id"], patient_id.as_str());
        assert!(pages >= 2, "{backend:?}: paged ({pages})");

        // The patient's own app (purpose PATRQT by default for patient/ scopes): their records,
        // and their $everything without the Patient resource, which FindPatient does not give to
        // patient/ scopes.
        let own = platform
            .fhir()
            .with_token(&patient_token(&patient_id, "patient/*.rs"));
        let (mine, _) = search_all(&own, &format!("/Observation?patient={patient_id}")).await;
        assert_eq!(mine.len(), 2, "{backend:?}");
        let (everything, _) = search_all(&own, &format!("/Patient/{patient_id}/$everything")).await;
        assert_eq!(everything.len(), 2, "{backend:?}: {everything:?}");
        let (other, _) = platform.register_patient("Some", "Oneelse").await;
        let refused = own.get(&format!("/Observation?patient={other}")).await;
        let refused = outcome(&refused, StatusCode::FORBIDDEN);
        assert_eq!(reason(&refused), "PATIENT_CONTEXT_MISMATCH");
    }
}
