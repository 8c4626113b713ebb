//! ListRecords' filters on the payload (codes, categories, statuses) and on update_time
//! (updated_before): matching, combination, the snapshot, validation and page tokens.

use std::time::Duration;

use carerecord_contracts::records::v1::{ListRecordsRequest, Record};
use serde_json::{Value, json};

use super::support::{
    FHIR_JSON, client, create, ids, list_all, list_request, record_with, relabel, retract, ts_key,
    update,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok};
use crate::refusal::{Refusal, refuse_each};

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// A `code` CodeableConcept holding these codings.
fn code(codings: Value) -> Value {
    json!({ "coding": codings })
}

/// An Observation about `patient_id` with these payload members.
fn observation(patient_id: &str, fields: Value) -> Record {
    record_with(patient_id, "Observation", fields)
}

/// An Observation about `patient_id` coded with these codings.
fn coded(patient_id: &str, codings: Value) -> Record {
    observation(patient_id, json!({ "code": code(codings) }))
}

/// A listing of the patient's records filtered by codes, categories and statuses.
fn by_terms(
    patient_id: &str,
    codes: &[&str],
    categories: &[&str],
    statuses: &[&str],
) -> ListRecordsRequest {
    ListRecordsRequest {
        codes: strings(codes),
        categories: strings(categories),
        statuses: strings(statuses),
        ..list_request(patient_id)
    }
}

/// Lists every page of each request and requires exactly the expected records, in creation order.
async fn expect_listings(
    ctx: &Ctx,
    checks: Vec<(&str, ListRecordsRequest, Vec<&Record>)>,
) -> TestResult {
    for (what, request, expected) in checks {
        let (records, _) = list_all(ctx, request).await?;
        let expected: Vec<String> = expected.iter().map(|r| r.record_id.clone()).collect();
        ensure_eq!(ids(&records), expected, "ListRecords({what})");
    }
    Ok(())
}

pub(super) async fn codes_match(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let r1 = create(
        &ctx,
        coded(
            &pid,
            json!([{"system": LOINC, "code": "8867-4"}, {"code": "hr"}]),
        ),
    )
    .await?;
    let r2 = create(
        &ctx,
        coded(&pid, json!([{"system": LOINC, "code": "2339-0"}])),
    )
    .await?;
    let r3 = create(
        &ctx,
        coded(&pid, json!([{"system": SNOMED, "code": "8867-4"}])),
    )
    .await?;
    // Codings that never match: no code, and a system or code with a tab or a line break.
    create(
        &ctx,
        coded(
            &pid,
            json!([
                {"system": LOINC},
                {"system": format!("{LOINC}\n"), "code": "8867-4"},
                {"system": LOINC, "code": "x\ty"},
            ]),
        ),
    )
    .await?;
    let other = ctx.new_patient();
    create(
        &ctx,
        coded(&other, json!([{"system": LOINC, "code": "8867-4"}])),
    )
    .await?;
    let codes = |values: &[&str]| by_terms(&pid, values, &[], &[]);
    expect_listings(
        &ctx,
        vec![
            (
                "codes [loinc|8867-4]",
                codes(&["http://loinc.org|8867-4"]),
                vec![&r1],
            ),
            (
                "codes [8867-4]: any system",
                codes(&["8867-4"]),
                vec![&r1, &r3],
            ),
            ("codes [|hr]: no system", codes(&["|hr"]), vec![&r1]),
            ("codes [|8867-4]: no system", codes(&["|8867-4"]), vec![]),
            (
                "codes [loinc|]: any code of the system",
                codes(&["http://loinc.org|"]),
                vec![&r1, &r2],
            ),
            (
                "codes [2339-0, snomed|8867-4]",
                codes(&["2339-0", "http://snomed.info/sct|8867-4"]),
                vec![&r2, &r3],
            ),
            ("codes [8867]: whole codes only", codes(&["8867"]), vec![]),
            (
                "codes [LOINC|8867-4]: case-sensitive",
                codes(&["HTTP://LOINC.ORG|8867-4"]),
                vec![],
            ),
        ],
    )
    .await
}

pub(super) async fn categories_match(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let vital = create(
        &ctx,
        observation(
            &pid,
            json!({"category": [code(json!([
                {"system": OBSERVATION_CATEGORY, "code": "vital-signs"}
            ]))]}),
        ),
    )
    .await?;
    let survey = create(
        &ctx,
        observation(&pid, json!({"category": code(json!([{"code": "survey"}]))})),
    )
    .await?;
    // AllergyIntolerance.category is a list of plain codes.
    let allergy = create(
        &ctx,
        record_with(
            &pid,
            "AllergyIntolerance",
            json!({"category": ["food"], "status": null}),
        ),
    )
    .await?;
    let categories = |values: &[&str]| by_terms(&pid, &[], values, &[]);
    let system_vital = format!("{OBSERVATION_CATEGORY}|vital-signs");
    let system_food = format!("{OBSERVATION_CATEGORY}|food");
    expect_listings(
        &ctx,
        vec![
            (
                "categories [vital-signs]",
                categories(&["vital-signs"]),
                vec![&vital],
            ),
            (
                "categories [<system>|vital-signs]",
                categories(&[&system_vital]),
                vec![&vital],
            ),
            (
                "categories [|vital-signs]: no system",
                categories(&["|vital-signs"]),
                vec![],
            ),
            (
                "categories [|survey]: a single CodeableConcept",
                categories(&["|survey"]),
                vec![&survey],
            ),
            (
                "categories [survey]",
                categories(&["survey"]),
                vec![&survey],
            ),
            (
                "categories [|food]: a plain string",
                categories(&["|food"]),
                vec![&allergy],
            ),
            ("categories [food]", categories(&["food"]), vec![&allergy]),
            (
                "categories [<system>|food]",
                categories(&[&system_food]),
                vec![],
            ),
            (
                "categories [survey, food]",
                categories(&["survey", "food"]),
                vec![&survey, &allergy],
            ),
        ],
    )
    .await
}

pub(super) async fn statuses_match(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let mut made = Vec::new();
    for status in [
        json!("final"),
        json!("preliminary"),
        json!("amended"),
        json!("final"),
        json!(["final"]),
        json!({"value": "final"}),
        Value::Null,
    ] {
        made.push(create(&ctx, observation(&pid, json!({ "status": status }))).await?);
    }
    let statuses = |values: &[&str]| by_terms(&pid, &[], &[], values);
    expect_listings(
        &ctx,
        vec![
            (
                "statuses [final]",
                statuses(&["final"]),
                vec![&made[0], &made[3]],
            ),
            (
                "statuses [preliminary, amended]",
                statuses(&["preliminary", "amended"]),
                vec![&made[1], &made[2]],
            ),
            (
                "statuses [Final]: case-sensitive",
                statuses(&["Final"]),
                vec![],
            ),
            (
                "statuses [final, preliminary, amended]",
                statuses(&["final", "preliminary", "amended"]),
                vec![&made[0], &made[1], &made[2], &made[3]],
            ),
        ],
    )
    .await
}

pub(super) async fn filters_combine(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let heart_rate = json!([{"system": LOINC, "code": "8867-4"}]);
    let vital = json!([code(
        json!([{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}])
    )]);
    let make = |code_value: &Value, category: Value, status: &str| {
        observation(
            &pid,
            json!({"code": code(code_value.clone()), "category": category, "status": status}),
        )
    };
    let a = create(&ctx, make(&heart_rate, vital.clone(), "final")).await?;
    let b = create(
        &ctx,
        make(&heart_rate, code(json!([{"code": "survey"}])), "final"),
    )
    .await?;
    create(&ctx, make(&heart_rate, vital.clone(), "preliminary")).await?;
    let other_code = json!([{"system": LOINC, "code": "2339-0"}]);
    create(&ctx, make(&other_code, vital.clone(), "final")).await?;
    create(
        &ctx,
        make(
            &heart_rate,
            json!([code(
                json!([{"system": OBSERVATION_CATEGORY, "code": "laboratory"}])
            )]),
            "final",
        ),
    )
    .await?;
    let hiv = create(
        &ctx,
        Record {
            data_classes: strings(&["hiv"]),
            ..make(&heart_rate, vital.clone(), "final")
        },
    )
    .await?;
    let retracted = create(&ctx, make(&heart_rate, vital, "final")).await?;
    retract(&ctx, &retracted, "retract").await?;
    let terms = by_terms(&pid, &["8867-4"], &["vital-signs", "survey"], &["final"]);
    let with = |change: fn(&mut ListRecordsRequest)| {
        let mut request = terms.clone();
        change(&mut request);
        request
    };
    expect_listings(
        &ctx,
        vec![
            (
                "codes, categories and statuses",
                terms.clone(),
                vec![&a, &b, &hiv],
            ),
            (
                "and excluded_data_classes [hiv]",
                with(|r| r.excluded_data_classes = strings(&["hiv"])),
                vec![&a, &b],
            ),
            (
                "and include_retracted",
                with(|r| r.include_retracted = true),
                vec![&a, &b, &hiv, &retracted],
            ),
            (
                "and resource_types [Observation]",
                with(|r| r.resource_types = strings(&["Observation"])),
                vec![&a, &b, &hiv],
            ),
            (
                "and resource_types [Condition]",
                with(|r| r.resource_types = strings(&["Condition"])),
                vec![],
            ),
        ],
    )
    .await
}

/// An Observation with LOINC code `1` and this status.
fn coded_one(patient_id: &str, status: &str) -> Record {
    observation(
        patient_id,
        json!({"code": code(json!([{"system": LOINC, "code": "1"}])), "status": status}),
    )
}

pub(super) async fn filters_use_the_snapshot(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let r1 = create(&ctx, coded_one(&pid, "preliminary")).await?;
    let r2 = create(&ctx, coded_one(&pid, "preliminary")).await?;
    let preliminary = ListRecordsRequest {
        page_size: 1,
        ..by_terms(&pid, &["1"], &[], &["preliminary"])
    };
    let first = ok(
        client(&ctx).list_records(preliminary.clone()).await,
        "ListRecords(statuses [preliminary], codes [1], page 1)",
    )?;
    ensure_eq!(first.records, vec![r1.clone()], "page 1");
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while records remain"
    );
    // After the snapshot: R2 becomes final, R3 is created preliminary.
    let r2_final = update(
        &ctx,
        Record {
            record_id: r2.record_id.clone(),
            content_type: FHIR_JSON.to_owned(),
            payload: coded_one(&pid, "final").payload,
            ..Default::default()
        },
        &r2.etag,
        &["payload"],
        "final",
    )
    .await?;
    let r3 = create(&ctx, coded_one(&pid, "preliminary")).await?;
    let (rest, _) = list_all(
        &ctx,
        ListRecordsRequest {
            page_token: first.next_page_token,
            ..preliminary
        },
    )
    .await?;
    ensure_eq!(
        rest,
        vec![r2.clone()],
        "later pages: R2 as of the snapshot (version 1, preliminary), not R3"
    );
    let finals = by_terms(&pid, &[], &[], &["final"]);
    let (now_final, _) = list_all(&ctx, finals.clone()).await?;
    ensure_eq!(
        now_final,
        vec![r2_final.clone()],
        "a new listing of statuses [final]"
    );
    let r2_retracted = retract(&ctx, &r2_final, "retract").await?;
    let (retracted, _) = list_all(
        &ctx,
        ListRecordsRequest {
            include_retracted: true,
            ..finals.clone()
        },
    )
    .await?;
    ensure_eq!(
        retracted,
        vec![r2_retracted],
        "statuses [final] with include_retracted after the retraction (same payload)"
    );
    let (current, _) = list_all(&ctx, finals).await?;
    ensure!(
        current.is_empty(),
        "statuses [final] without include_retracted after the retraction: got {:?}",
        ids(&current)
    );
    let r1_relabelled = relabel(&ctx, &r1, &["genomic"]).await?;
    let (coded, _) = list_all(&ctx, by_terms(&pid, &["http://loinc.org|1"], &[], &[])).await?;
    ensure_eq!(
        coded,
        vec![r1_relabelled, r3],
        "codes [loinc|1] after a metadata-only update of R1 (its payload kept)"
    );
    Ok(())
}

pub(super) async fn updated_before(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let early = create(&ctx, observation(&pid, json!({}))).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late = create(&ctx, observation(&pid, json!({}))).await?;
    ensure!(
        ts_key(&early.update_time) < ts_key(&late.update_time),
        "a record created later has a later update_time"
    );
    let plus_a_minute = late.update_time.map(|t| prost_types::Timestamp {
        seconds: t.seconds + 60,
        nanos: t.nanos,
    });
    let base = list_request(&pid);
    expect_listings(
        &ctx,
        vec![
            (
                "updated_before the later update_time",
                ListRecordsRequest {
                    updated_before: late.update_time,
                    ..base.clone()
                },
                vec![&early],
            ),
            (
                "updated_before the earlier update_time (exclusive)",
                ListRecordsRequest {
                    updated_before: early.update_time,
                    ..base.clone()
                },
                vec![],
            ),
            (
                "updated_since the later update_time, updated_before a minute after",
                ListRecordsRequest {
                    updated_since: late.update_time,
                    updated_before: plus_a_minute,
                    ..base
                },
                vec![&late],
            ),
        ],
    )
    .await
}

pub(super) async fn filters_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let with = |change: &dyn Fn(&mut ListRecordsRequest)| {
        let mut request = list_request(&pid);
        change(&mut request);
        request
    };
    let many = |n: usize| vec!["x".to_owned(); n];
    let now = Some(super::support::seconds_from_now(0));
    let exactly = Refusal::invalid_exactly;
    let table = vec![
        (
            "codes with an empty value and a tab",
            with(&|r| r.codes = strings(&["ok", "", "a\tb"])),
            exactly(&["codes[1]", "codes[2]"]),
        ),
        (
            "a code over 512 characters",
            with(&|r| r.codes = vec!["c".repeat(513)]),
            exactly(&["codes[0]"]),
        ),
        (
            "51 codes",
            with(&|r| r.codes = many(51)),
            exactly(&["codes"]),
        ),
        (
            "a category over 512 characters",
            with(&|r| r.categories = vec!["ok".to_owned(), "x".repeat(513)]),
            exactly(&["categories[1]"]),
        ),
        (
            "a category with a line break",
            with(&|r| r.categories = strings(&["vital\nsigns"])),
            exactly(&["categories[0]"]),
        ),
        (
            "51 categories",
            with(&|r| r.categories = many(51)),
            exactly(&["categories"]),
        ),
        (
            "a status with a line break, an empty status",
            with(&|r| r.statuses = strings(&["final", "\n", ""])),
            exactly(&["statuses[1]", "statuses[2]"]),
        ),
        (
            "21 statuses",
            with(&|r| r.statuses = many(21)),
            exactly(&["statuses"]),
        ),
        (
            "updated_since equal to updated_before",
            with(&|r| {
                r.updated_since = now;
                r.updated_before = now;
            }),
            exactly(&["updated_before"]),
        ),
        (
            "updated_since after updated_before",
            with(&|r| {
                r.updated_since = Some(super::support::seconds_from_now(60));
                r.updated_before = now;
            }),
            exactly(&["updated_before"]),
        ),
    ];
    refuse_each!(client(&ctx), list_records, table).await?;
    let at_limits = with(&|r| {
        r.codes = many(50);
        r.categories = vec!["x".repeat(512)];
        r.statuses = many(20);
    });
    ok(
        client(&ctx).list_records(at_limits).await,
        "ListRecords(50 codes, a 512-character category, 20 statuses)",
    )?;
    Ok(())
}

pub(super) async fn token_binds_new_filters(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    for _ in 0..2 {
        create(&ctx, coded_one(&pid, "preliminary")).await?;
    }
    let preliminary = ListRecordsRequest {
        page_size: 1,
        ..by_terms(&pid, &[], &[], &["preliminary"])
    };
    let first = ok(
        client(&ctx).list_records(preliminary.clone()).await,
        "ListRecords(statuses [preliminary], page_size 1)",
    )?;
    let token = first.next_page_token;
    ensure!(!token.is_empty(), "a next_page_token while records remain");
    let reuse = |change: fn(&mut ListRecordsRequest)| {
        let mut request = ListRecordsRequest {
            page_token: token.clone(),
            ..preliminary.clone()
        };
        change(&mut request);
        request
    };
    let page_token = || Refusal::invalid("page_token");
    let table = vec![
        (
            "the token with statuses [final]",
            reuse(|r| r.statuses = strings(&["final"])),
            page_token(),
        ),
        (
            "the token with codes added",
            reuse(|r| r.codes = strings(&["1"])),
            page_token(),
        ),
        (
            "the token with categories added",
            reuse(|r| r.categories = strings(&["vital-signs"])),
            page_token(),
        ),
        (
            "the token with updated_before added",
            reuse(|r| r.updated_before = Some(super::support::seconds_from_now(60))),
            page_token(),
        ),
    ];
    refuse_each!(client(&ctx), list_records, table).await
}
