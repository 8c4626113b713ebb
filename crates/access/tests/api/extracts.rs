//! Pseudonymised extracts and suppressed aggregates.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use carerecord_contracts::access::v1 as api;
use carerecord_platform::testing::{TestDatabase, violations};
use tonic::Code;

use crate::support::*;

fn extract(project: &str, ids: &[String]) -> api::ExtractPseudonymisedRequest {
    api::ExtractPseudonymisedRequest {
        project_id: project.into(),
        purpose_of_use: "HRESCH".into(),
        cohort: Some(api::Cohort {
            selection: Some(api::cohort::Selection::PatientList(api::PatientIdList {
                patient_ids: ids.to_vec(),
            })),
        }),
        ..Default::default()
    }
}

async fn run(
    app: &mut TestApp,
    request: api::ExtractPseudonymisedRequest,
    token: &str,
) -> (Vec<api::PseudonymisedRow>, api::ExtractSummary) {
    let mut stream = app.extract(request, token).await.unwrap();
    let mut rows = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.item.unwrap() {
            api::extract_pseudonymised_response::Item::Row(row) => rows.push(row),
            api::extract_pseudonymised_response::Item::Summary(summary) => {
                assert!(
                    stream.message().await.unwrap().is_none(),
                    "the summary is last"
                );
                return (rows, summary);
            }
        }
    }
    panic!("stream ended without a summary");
}

#[tokio::test]
async fn extracts_exclude_opted_out_patients_and_pseudonymise_stably_per_project() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let a = app.fakes.add_patient("9434765919", "Smith");
        let b = app.fakes.add_patient("", "Jones");
        let opted_out = app.fakes.add_patient("", "Brown");
        for p in [&a, &b, &opted_out] {
            app.fakes
                .add_record(p, "Observation", &[], Some(1_600_000_000));
            app.fakes
                .add_record(p, "Condition", &[], Some(1_700_000_000));
        }
        app.fakes
            .world
            .lock()
            .unwrap()
            .opted_out
            .insert(opted_out.clone());
        let unknown = uuid();
        let researcher = token(&Claims::system("system/*.rs"));
        let ids = vec![
            a.clone(),
            b.clone(),
            opted_out.clone(),
            unknown,
            a.to_uppercase(),
        ];

        let (rows, summary) = run(&mut app, extract(PROJECT_A, &ids), &researcher).await;
        let counts = summary.cohort_counts.unwrap();
        assert_eq!(
            (
                counts.patients_considered,
                counts.patients_not_found,
                counts.patients_excluded_opt_out,
                counts.patients_included
            ),
            (4, 1, 1, 2)
        );
        assert_eq!(rows.len(), 4);
        assert_eq!(summary.rows, 4);
        let pseudonyms: HashSet<&str> = rows.iter().map(|r| r.pseudonym.as_str()).collect();
        assert_eq!(pseudonyms.len(), 2);
        for row in &rows {
            assert_eq!(row.pseudonym.len(), 64);
            let text = String::from_utf8(row.payload.clone()).unwrap();
            for leaked in [
                a.as_str(),
                b.as_str(),
                opted_out.as_str(),
                "Alex Smith",
                "OBS-1",
                "private remark",
            ] {
                assert!(!text.contains(leaked), "{leaked} leaked: {text}");
            }
            let json: serde_json::Value = serde_json::from_slice(&row.payload).unwrap();
            assert_eq!(json["id"], row.record_pseudonym.as_str());
            assert_eq!(
                json["subject"]["reference"],
                format!("Patient/{}", row.pseudonym)
            );
        }

        // The extract is audited with its project, counts and rows.
        let leaf = audit_leaf(&mut app, summary.audit_index).await;
        assert_eq!(leaf.action, api::AuditAction::Extract as i32);
        assert_eq!(leaf.project_id, PROJECT_A);
        assert_eq!(leaf.row_count, 4);
        assert_eq!(leaf.cohort_counts.unwrap().patients_excluded_opt_out, 1);

        // Same project: the same pseudonyms; another project: unlinkable ones.
        let (again, _) = run(&mut app, extract(PROJECT_A, &ids), &researcher).await;
        let again_set: HashSet<&str> = again.iter().map(|r| r.pseudonym.as_str()).collect();
        assert_eq!(again_set, pseudonyms);
        let records_a: HashSet<&str> = rows.iter().map(|r| r.record_pseudonym.as_str()).collect();
        let records_again: HashSet<&str> =
            again.iter().map(|r| r.record_pseudonym.as_str()).collect();
        assert_eq!(records_a, records_again);
        let (other, _) = run(&mut app, extract(PROJECT_B, &ids), &researcher).await;
        let other_set: HashSet<&str> = other.iter().map(|r| r.pseudonym.as_str()).collect();
        assert_eq!(other_set.len(), 2);
        assert!(other_set.is_disjoint(&pseudonyms));

        // Project B is approved for organisation X26 only.
        let clinician = token(&Claims::clinician("user/*.rs"));
        let status = app
            .extract(extract(PROJECT_B, &ids), &clinician)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(error_info(&status).reason, "PROJECT_NOT_PERMITTED");
        let status = app
            .extract(extract("nope", &ids), &researcher)
            .await
            .unwrap_err();
        assert_eq!(error_info(&status).reason, "PROJECT_NOT_FOUND");
        let mut bad = extract(PROJECT_A, &["x".into()]);
        bad.purpose_of_use = "TREAT".into();
        let status = app.extract(bad, &researcher).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            violations(&status),
            ["purpose_of_use", "cohort.patient_list.patient_ids[0]"]
        );

        // Consent unreachable: nothing extracted, the attempt audited.
        app.fakes.consent_down.store(true, Ordering::SeqCst);
        let status = app
            .extract(extract(PROJECT_A, &ids), &researcher)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        let leaf = audit_leaf(&mut app, audit_index(&status)).await;
        assert_eq!(leaf.outcome, api::AuditOutcome::Failed as i32);
    }
}

#[tokio::test]
async fn aggregates_suppress_small_numbers() {
    for db in TestDatabase::each_backend().await {
        let mut app = spawn_app(&db.url).await;
        let mut ids = Vec::new();
        for i in 0..13 {
            let p = app.fakes.add_patient("", &format!("P{i}"));
            app.fakes
                .add_record(&p, "Observation", &[], Some(1_700_000_000));
            if i < 3 {
                app.fakes
                    .add_record(&p, "Condition", &[], Some(1_700_000_000));
            }
            ids.push(p);
        }
        // One more opted-out patient, not counted.
        let out = app.fakes.add_patient("", "Out");
        app.fakes
            .add_record(&out, "Observation", &[], Some(1_700_000_000));
        app.fakes
            .world
            .lock()
            .unwrap()
            .opted_out
            .insert(out.clone());
        let researcher = token(&Claims::system("system/*.rs"));
        let request = api::AggregateExtractRequest {
            project_id: PROJECT_A.into(),
            purpose_of_use: "HOPERAT".into(),
            cohort: Some(api::Cohort {
                selection: Some(api::cohort::Selection::Filter(api::CohortFilter::default())),
            }),
            group_by: vec![api::AggregateDimension::ResourceType as i32],
            ..Default::default()
        };
        let mut stream = app.aggregate(request.clone(), &researcher).await.unwrap();
        let mut rows = Vec::new();
        let mut summary = None;
        while let Some(message) = stream.message().await.unwrap() {
            match message.item.unwrap() {
                api::aggregate_extract_response::Item::Row(row) => rows.push(row),
                api::aggregate_extract_response::Item::Summary(s) => summary = Some(s),
            }
        }
        let summary = summary.expect("a summary");
        assert_eq!(summary.rows, 2);
        assert_eq!(rows[0].resource_type, "Condition");
        assert_eq!((rows[0].count, rows[0].suppressed), (0, true));
        assert_eq!(rows[1].resource_type, "Observation");
        assert_eq!(
            (rows[1].count, rows[1].suppressed),
            (15, false),
            "13 rounds to 15"
        );
        let leaf = audit_leaf(&mut app, summary.audit_index).await;
        assert_eq!(leaf.action, api::AuditAction::Aggregate as i32);
        let counts = leaf.cohort_counts.unwrap();
        assert_eq!(
            (
                counts.patients_considered,
                counts.patients_excluded_opt_out,
                counts.patients_included
            ),
            (14, 1, 13)
        );

        let mut repeated = request;
        repeated.group_by = vec![
            api::AggregateDimension::Code as i32,
            api::AggregateDimension::Code as i32,
        ];
        let status = app.aggregate(repeated, &researcher).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
