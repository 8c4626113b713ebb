//! ListRecords: snapshot pagination, filters, order, page tokens.

use carerecord_contracts::common::v1::Period;
use carerecord_contracts::records::v1::{
    ListRecordsRequest, Record, RecordOrder, RecordStatus, RecordView,
};

use super::support::{
    FORGED_TOKEN, client, create, day, get, ids, list_all, list_request, new_record, new_record_of,
    patient_with_record, patient_with_records, relabel, retract, tamper,
};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, ok};
use crate::refusal::{Refusal, refuse_each};

pub(super) async fn list_basics(ctx: Ctx) -> TestResult {
    let (pid, a) = patient_with_record(&ctx).await?;
    let b = create(&ctx, new_record_of(&pid, "Condition")).await?;
    let b2 = relabel(&ctx, &b, &["genomic"]).await?;
    let other = ctx.new_patient();
    create(&ctx, new_record(&other)).await?;
    let (records, cursor) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        records,
        vec![a, b2],
        "records (latest versions, creation order)"
    );
    ensure!(!cursor.is_empty(), "watch_cursor must be set");
    let unknown = uuid::Uuid::new_v4().to_string();
    let page = ok(
        client(&ctx).list_records(list_request(&unknown)).await,
        "ListRecords(unknown patient)",
    )?;
    ensure!(page.records.is_empty(), "an unknown patient has no records");
    ensure!(
        page.next_page_token.is_empty(),
        "an empty listing has no next page"
    );
    Ok(())
}

pub(super) async fn list_paging(ctx: Ctx) -> TestResult {
    let (pid, records) = patient_with_records(&ctx, 7).await?;
    let created = ids(&records);
    for page_size in [1, 2, 3, 0, 5000] {
        let (records, _) = list_all(
            &ctx,
            ListRecordsRequest {
                page_size,
                ..list_request(&pid)
            },
        )
        .await?;
        ensure_eq!(
            ids(&records),
            created,
            "record ids over every page with page_size {page_size}"
        );
    }
    let page = ok(
        client(&ctx)
            .list_records(ListRecordsRequest {
                page_size: 3,
                ..list_request(&pid)
            })
            .await,
        "ListRecords(page_size 3)",
    )?;
    ensure!(
        page.records.len() <= 3,
        "a page of size 3 held {} records",
        page.records.len()
    );
    ensure!(
        !page.next_page_token.is_empty(),
        "a next_page_token while records remain"
    );
    Ok(())
}

pub(super) async fn list_snapshot(ctx: Ctx) -> TestResult {
    let (pid, rs) = patient_with_records(&ctx, 5).await?;
    let first = ok(
        client(&ctx)
            .list_records(ListRecordsRequest {
                page_size: 2,
                ..list_request(&pid)
            })
            .await,
        "ListRecords(page 1)",
    )?;
    ensure_eq!(ids(&first.records), ids(&rs[..2]), "page 1");
    ensure!(
        !first.next_page_token.is_empty(),
        "a next_page_token while records remain"
    );
    // Writes after the snapshot.
    create(&ctx, new_record(&pid)).await?;
    relabel(&ctx, &rs[2], &["hiv"]).await?;
    retract(&ctx, &rs[0], "retract").await?;
    retract(&ctx, &rs[3], "retract").await?;
    let mut rest = Vec::new();
    let mut token = first.next_page_token.clone();
    while !token.is_empty() {
        let page = ok(
            client(&ctx)
                .list_records(ListRecordsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..list_request(&pid)
                })
                .await,
            "ListRecords(next page)",
        )?;
        ensure_eq!(
            page.watch_cursor,
            first.watch_cursor,
            "watch_cursor on a later page"
        );
        rest.extend(page.records);
        token = page.next_page_token;
        ensure!(rest.len() <= 10, "pagination does not end");
    }
    ensure_eq!(
        rest,
        rs[2..].to_vec(),
        "pages after the first show the records as of the snapshot"
    );
    // The same filter applied to the snapshot: a record labelled hiv after the snapshot does
    // not match an hiv filter of a listing started before.
    let (after, _) = list_all(&ctx, list_request(&pid)).await?;
    ensure_eq!(
        after.len(),
        4,
        "a new listing sees the writes (5 + 1 created, 2 retracted)"
    );
    Ok(())
}

pub(super) async fn list_filters(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let a = create(
        &ctx,
        Record {
            effective_time: Some(day(0)),
            ..new_record(&pid)
        },
    )
    .await?;
    let b = create(
        &ctx,
        Record {
            data_classes: vec!["mental-health".into()],
            effective_time: Some(day(400)),
            ..new_record_of(&pid, "Condition")
        },
    )
    .await?;
    let c = create(
        &ctx,
        Record {
            data_classes: vec!["sexual-health".into(), "hiv".into()],
            ..new_record(&pid)
        },
    )
    .await?;
    let d = create(
        &ctx,
        Record {
            effective_time: Some(day(10)),
            ..new_record(&pid)
        },
    )
    .await?;
    let d = retract(&ctx, &d, "retract").await?;
    let [a, b, c] = [a.record_id, b.record_id, c.record_id];
    let d_id = d.record_id.clone();
    let c_time = get(&ctx, &c, 0).await?.update_time;
    let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let base = list_request(&pid);
    let checks: Vec<(&str, ListRecordsRequest, Vec<&String>)> = vec![
        ("no filter", base.clone(), vec![&a, &b, &c]),
        (
            "include_retracted",
            ListRecordsRequest {
                include_retracted: true,
                ..base.clone()
            },
            vec![&a, &b, &c, &d_id],
        ),
        (
            "resource_types [Condition]",
            ListRecordsRequest {
                resource_types: strs(&["Condition"]),
                ..base.clone()
            },
            vec![&b],
        ),
        (
            "resource_types [Observation, Condition]",
            ListRecordsRequest {
                resource_types: strs(&["Observation", "Condition"]),
                ..base.clone()
            },
            vec![&a, &b, &c],
        ),
        (
            "resource_types [Immunization]",
            ListRecordsRequest {
                resource_types: strs(&["Immunization"]),
                ..base.clone()
            },
            vec![],
        ),
        (
            "data_classes [hiv]",
            ListRecordsRequest {
                data_classes: strs(&["hiv"]),
                ..base.clone()
            },
            vec![&c],
        ),
        (
            "data_classes [mental-health, hiv]",
            ListRecordsRequest {
                data_classes: strs(&["mental-health", "hiv"]),
                ..base.clone()
            },
            vec![&b, &c],
        ),
        (
            "excluded_data_classes [hiv]",
            ListRecordsRequest {
                excluded_data_classes: strs(&["hiv"]),
                ..base.clone()
            },
            vec![&a, &b],
        ),
        (
            "excluded_data_classes [hiv, mental-health]",
            ListRecordsRequest {
                excluded_data_classes: strs(&["hiv", "mental-health"]),
                ..base.clone()
            },
            vec![&a],
        ),
        (
            "resource_types [Observation] AND excluded [hiv]",
            ListRecordsRequest {
                resource_types: strs(&["Observation"]),
                excluded_data_classes: strs(&["hiv"]),
                ..base.clone()
            },
            vec![&a],
        ),
        (
            "effective_time from day 5",
            ListRecordsRequest {
                effective_time: Some(Period {
                    start: Some(day(5)),
                    end: None,
                }),
                ..base.clone()
            },
            vec![&b],
        ),
        (
            "effective_time before day 5",
            ListRecordsRequest {
                effective_time: Some(Period {
                    start: None,
                    end: Some(day(5)),
                }),
                ..base.clone()
            },
            vec![&a],
        ),
        (
            "effective_time end exclusive (before day 0)",
            ListRecordsRequest {
                effective_time: Some(Period {
                    start: None,
                    end: Some(day(0)),
                }),
                ..base.clone()
            },
            vec![],
        ),
        (
            "effective_time start inclusive (from day 0 to day 1)",
            ListRecordsRequest {
                effective_time: Some(Period {
                    start: Some(day(0)),
                    end: Some(day(1)),
                }),
                ..base.clone()
            },
            vec![&a],
        ),
        (
            "effective_time with neither bound",
            ListRecordsRequest {
                effective_time: Some(Period::default()),
                ..base.clone()
            },
            vec![&a, &b, &c],
        ),
        (
            "effective_time with retracted",
            ListRecordsRequest {
                effective_time: Some(Period {
                    start: Some(day(5)),
                    end: Some(day(20)),
                }),
                include_retracted: true,
                ..base.clone()
            },
            vec![&d_id],
        ),
        (
            "updated_since c's update_time",
            ListRecordsRequest {
                updated_since: c_time,
                ..base.clone()
            },
            vec![&c],
        ),
        (
            "updated_since c's update_time with retracted",
            ListRecordsRequest {
                updated_since: c_time,
                include_retracted: true,
                ..base.clone()
            },
            vec![&c, &d_id],
        ),
    ];
    for (what, request, expected) in checks {
        let (records, _) = list_all(&ctx, request).await?;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        ensure_eq!(ids(&records), expected, "ListRecords({what})");
        if what == "include_retracted" {
            let status = records.last().map(|r| r.status);
            ensure_eq!(
                status,
                Some(RecordStatus::EnteredInError as i32),
                "a retracted record is listed with its status"
            );
        }
    }
    Ok(())
}

pub(super) async fn list_effective_order(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let mut made = Vec::new();
    for eff in [Some(10), Some(30), None, Some(20), Some(30), None] {
        let r = create(
            &ctx,
            Record {
                effective_time: eff.map(day),
                ..new_record(&pid)
            },
        )
        .await?;
        made.push(r.record_id);
    }
    // 30 (second, newer creation), 30 (first), 20, 10, then none (newer creation first).
    let expected = vec![
        made[4].clone(),
        made[1].clone(),
        made[3].clone(),
        made[0].clone(),
        made[5].clone(),
        made[2].clone(),
    ];
    for page_size in [0, 2] {
        let (records, _) = list_all(
            &ctx,
            ListRecordsRequest {
                order: RecordOrder::EffectiveTimeDescending as i32,
                page_size,
                ..list_request(&pid)
            },
        )
        .await?;
        ensure_eq!(
            ids(&records),
            expected,
            "effective_time descending order with page_size {page_size}"
        );
    }
    let (records, _) = list_all(
        &ctx,
        ListRecordsRequest {
            order: RecordOrder::Creation as i32,
            ..list_request(&pid)
        },
    )
    .await?;
    ensure_eq!(ids(&records), made, "RECORD_ORDER_CREATION");
    Ok(())
}

pub(super) async fn list_bad_token(ctx: Ctx) -> TestResult {
    let (pid, _) = patient_with_records(&ctx, 3).await?;
    let first = ok(
        client(&ctx)
            .list_records(ListRecordsRequest {
                page_size: 1,
                ..list_request(&pid)
            })
            .await,
        "ListRecords(page_size 1)",
    )?;
    let token = first.next_page_token.clone();
    ensure!(!token.is_empty(), "a next_page_token while records remain");
    let other = ctx.new_patient();
    let with_token = |patient_id: &str, page_token: String| ListRecordsRequest {
        page_token,
        ..list_request(patient_id)
    };
    let page_token = || Refusal::invalid("page_token");
    let table = vec![
        (
            "page token with another patient",
            with_token(&other, token.clone()),
            page_token(),
        ),
        (
            "page token with another filter",
            ListRecordsRequest {
                include_retracted: true,
                ..with_token(&pid, token.clone())
            },
            page_token(),
        ),
        (
            "page token with another order",
            ListRecordsRequest {
                order: RecordOrder::EffectiveTimeDescending as i32,
                ..with_token(&pid, token.clone())
            },
            page_token(),
        ),
        (
            "page token with a forged token",
            with_token(&pid, FORGED_TOKEN.into()),
            page_token(),
        ),
        (
            "page token with a tampered token",
            with_token(&pid, tamper(&token)),
            page_token(),
        ),
    ];
    refuse_each!(client(&ctx), list_records, table).await?;
    // page_size and view are not bound.
    let next = ok(
        client(&ctx)
            .list_records(ListRecordsRequest {
                page_token: token,
                page_size: 10,
                view: RecordView::Metadata as i32,
                ..list_request(&pid)
            })
            .await,
        "ListRecords(same token, another page_size and view)",
    )?;
    ensure_eq!(next.records.len(), 2, "records after the first page");
    Ok(())
}

pub(super) async fn list_invalid(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let with = |change: fn(&mut ListRecordsRequest)| {
        let mut request = list_request(&pid);
        change(&mut request);
        request
    };
    let period = |start, end| {
        Some(Period {
            start: Some(day(start)),
            end: Some(day(end)),
        })
    };
    let one_day = period(1, 1);
    let backwards = period(2, 1);
    let table = vec![
        (
            "no patient_id",
            list_request(""),
            Refusal::invalid("patient_id"),
        ),
        (
            "malformed patient_id",
            list_request("abc"),
            Refusal::invalid("patient_id"),
        ),
        (
            "unknown data class",
            with(|r| r.data_classes = vec!["secret".into()]),
            Refusal::invalid_under("data_classes"),
        ),
        (
            "unknown excluded data class",
            with(|r| r.excluded_data_classes = vec!["secret".into()]),
            Refusal::invalid_under("excluded_data_classes"),
        ),
        (
            "malformed resource type",
            with(|r| r.resource_types = vec!["Observation; DROP".into()]),
            Refusal::invalid_under("resource_types"),
        ),
        (
            "51 resource types",
            with(|r| r.resource_types = vec!["Observation".to_owned(); 51]),
            Refusal::invalid_under("resource_types"),
        ),
        (
            "effective_time.start equal to end",
            ListRecordsRequest {
                effective_time: one_day,
                ..list_request(&pid)
            },
            Refusal::invalid_under("effective_time"),
        ),
        (
            "effective_time.start after end",
            ListRecordsRequest {
                effective_time: backwards,
                ..list_request(&pid)
            },
            Refusal::invalid_under("effective_time"),
        ),
    ];
    refuse_each!(client(&ctx), list_records, table).await
}

pub(super) async fn list_metadata_view(ctx: Ctx) -> TestResult {
    let (pid, r) = patient_with_record(&ctx).await?;
    let (records, _) = list_all(
        &ctx,
        ListRecordsRequest {
            view: RecordView::Metadata as i32,
            ..list_request(&pid)
        },
    )
    .await?;
    ensure_eq!(records.len(), 1, "records");
    ensure!(
        records[0].payload.is_empty(),
        "payload must be empty in METADATA view"
    );
    ensure_eq!(records[0].content_hash, r.content_hash, "content_hash");
    ensure_eq!(records[0].payload_size, r.payload_size, "payload_size");
    Ok(())
}
