//! The national data opt-out: GetNationalDataOptOut and SetNationalDataOptOut.

use carerecord_contracts::consent::v1::{
    GetNationalDataOptOutRequest, NationalDataOptOut, SetNationalDataOptOutRequest,
};
use tonic::Code;

use super::support::{client, opt_out_of, opt_out_request, recorder, set_opt_out};
use crate::harness::{Ctx, TestResult, ensure, ensure_eq, err, present};
use crate::records::ts_key;
use crate::refusal::{Refusal, refuse_each, refused};

pub(super) async fn get_opt_out(ctx: &Ctx, pid: &str) -> TestResult<NationalDataOptOut> {
    present(
        opt_out_of(ctx, pid).await?,
        "GetNationalDataOptOut: no national_data_opt_out",
    )
}

pub(super) async fn opt_out_default(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let o = get_opt_out(&ctx, &pid).await?;
    ensure!(!o.opted_out, "a never-recorded patient is not opted out");
    ensure_eq!(o.version, 0, "version");
    ensure!(o.etag.is_empty(), "etag must be empty");
    ensure!(o.update_time.is_none(), "update_time must be unset");
    ensure!(o.check_time.is_none(), "check_time must be unset");
    ensure!(o.check_source.is_empty(), "check_source must be empty");
    ensure!(
        o.check_expire_time.is_none(),
        "check_expire_time must be unset"
    );
    Ok(())
}

pub(super) async fn opt_out_set(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    let v1 = set_opt_out(&ctx, &pid, true, "").await?;
    ensure!(v1.opted_out, "opted_out after opting out");
    ensure_eq!(v1.version, 1, "version of the first write");
    ensure!(
        !v1.etag.is_empty() && v1.update_time.is_some(),
        "etag and update_time are set"
    );
    ensure_eq!(v1.updated_by, Some(recorder()), "updated_by");
    ensure_eq!(
        v1.check_time,
        v1.update_time,
        "check_time of a manual check is its update_time"
    );
    ensure_eq!(
        v1.check_source,
        "manual",
        "check_source of a manual check without source"
    );
    ensure!(
        ts_key(&v1.check_expire_time) > ts_key(&v1.check_time),
        "check_expire_time must be after check_time: {:?} vs {:?}",
        v1.check_expire_time,
        v1.check_time
    );
    let same = set_opt_out(&ctx, &pid, true, "").await?;
    ensure_eq!(
        same,
        v1.clone(),
        "a write not changing opted_out writes nothing"
    );
    let v2 = set_opt_out(&ctx, &pid, false, &v1.etag).await?;
    ensure!(!v2.opted_out, "opted back in");
    ensure_eq!(v2.version, 2, "version");
    ensure!(v2.etag != v1.etag, "the etag changes");
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?,
        v2,
        "GetNationalDataOptOut after the writes"
    );
    Ok(())
}

pub(super) async fn opt_out_etag(ctx: Ctx) -> TestResult {
    let pid = ctx.new_patient();
    err(
        client(&ctx)
            .set_national_data_opt_out(opt_out_request(&pid, true, "any"))
            .await,
        Code::Aborted,
        "SetNationalDataOptOut(an etag for a never-recorded patient)",
    )?;
    let v1 = set_opt_out(&ctx, &pid, true, "").await?;
    let v2 = set_opt_out(&ctx, &pid, false, &v1.etag).await?;
    err(
        client(&ctx)
            .set_national_data_opt_out(opt_out_request(&pid, true, &v1.etag))
            .await,
        Code::Aborted,
        "SetNationalDataOptOut(stale etag)",
    )?;
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?,
        v2.clone(),
        "the status after a refused write"
    );
    let v3 = set_opt_out(&ctx, &pid, true, "").await?;
    ensure_eq!(v3.version, 3, "an unconditional write");
    Ok(())
}

pub(super) async fn opt_out_invalid(ctx: Ctx) -> TestResult {
    refused(
        client(&ctx)
            .get_national_data_opt_out(GetNationalDataOptOutRequest {
                patient_id: "x".into(),
            })
            .await,
        &Refusal::invalid("patient_id"),
        "GetNationalDataOptOut(bad id)",
    )?;
    let pid = ctx.new_patient();
    let table = vec![
        (
            "bad id",
            opt_out_request("x", true, ""),
            Refusal::invalid("patient_id"),
        ),
        (
            "no requester",
            SetNationalDataOptOutRequest {
                requester: None,
                ..opt_out_request(&pid, true, "")
            },
            Refusal::invalid_under("requester"),
        ),
    ];
    refuse_each!(client(&ctx), set_national_data_opt_out, table).await?;
    ensure_eq!(
        get_opt_out(&ctx, &pid).await?.version,
        0,
        "nothing written by a refused write"
    );
    Ok(())
}
