use std::collections::HashMap;

use carerecord_contracts::access::v1::{
    Cohort, ExtractPseudonymisedRequest, PatientIdList, cohort::Selection,
    extract_pseudonymised_response::Item,
};
use carerecord_e2e::{OTHER_PROJECT, Overrides, PROJECT, Platform, authed, token};

/// Runs a planning extract (the default rules permit planning on pseudonymised data of patients who
/// have not opted out; research needs explicit consent or an approved legal basis); returns the
/// pseudonym per row and the count of patients excluded.
async fn extract(
    platform: &Platform,
    project: &str,
    cohort: &[String],
) -> (Vec<(String, String)>, i64) {
    let researcher = token("R8000", "system/*.rs");
    let request = ExtractPseudonymisedRequest {
        project_id: project.into(),
        purpose_of_use: "HOPERAT".into(),
        cohort: Some(Cohort {
            selection: Some(Selection::PatientList(PatientIdList {
                patient_ids: cohort.to_vec(),
            })),
        }),
        ..Default::default()
    };
    let mut stream = platform
        .access_client()
        .await
        .extract_pseudonymised(authed(request, &researcher))
        .await
        .unwrap_or_else(|s| panic!("{:?}: extract refused: {s:?}", platform.backend))
        .into_inner();
    let mut rows = Vec::new();
    let mut excluded = None;
    while let Some(message) = stream.message().await.expect("extract stream") {
        match message.item {
            Some(Item::Row(row)) => rows.push((
                row.pseudonym,
                String::from_utf8_lossy(&row.payload).into_owned(),
            )),
            Some(Item::Summary(summary)) => {
                excluded = Some(
                    summary
                        .cohort_counts
                        .unwrap_or_default()
                        .patients_excluded_opt_out,
                )
            }
            None => {}
        }
    }
    (rows, excluded.expect("the extract ends with a summary"))
}

#[tokio::test]
async fn extracts_exclude_opted_out_patients_and_pseudonyms_are_per_project() {
    for platform in Platform::each_backend(Overrides::default()).await {
        // The national service's answer for the cohort: only `included` may be used.
        let (included, opted_out) = platform
            .opt_out_cohort(("Rosalind", "Franklin"), ("Dorothy", "Hodgkin"))
            .await;
        let cohort = vec![included.clone(), opted_out.clone()];

        let (rows, excluded) = extract(&platform, PROJECT, &cohort).await;
        assert_eq!(excluded, 1, "{:?}", platform.backend);
        assert_eq!(
            rows.len(),
            1,
            "only the patient who did not opt out: {rows:?}"
        );
        let (pseudonym, payload) = &rows[0];
        assert!(
            !payload.contains(&included),
            "the patient id is pseudonymised in the payload"
        );
        assert!(!payload.contains("Rosalind") && !payload.contains("Franklin"));

        let (again, _) = extract(&platform, PROJECT, &cohort).await;
        assert_eq!(&again[0].0, pseudonym, "stable within a project");
        let (other, _) = extract(&platform, OTHER_PROJECT, &cohort).await;
        assert_ne!(&other[0].0, pseudonym, "unlinkable across projects");
        let distinct: HashMap<&str, ()> = [(pseudonym.as_str(), ()), (other[0].0.as_str(), ())]
            .into_iter()
            .collect();
        assert_eq!(distinct.len(), 2);
    }
}
