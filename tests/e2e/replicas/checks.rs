//! What the replica tests check afterwards: the audit log verifies and has no gap, and every
//! acknowledged write is stored exactly once.

use std::collections::{HashMap, HashSet};

use carerecord_contracts::access::v1::{
    GetAuditPublicKeyRequest, GetSignedTreeHeadRequest, ListAuditEntriesRequest,
};
use carerecord_e2e::token_at;
use tonic::transport::Channel;

use super::load::{Caller, Shared};

/// The whole audit log, read through data access (as `carerecord audit verify` does) and verified
/// offline against the current signed tree head and its key; the ids of its entries.
pub(crate) async fn verified_audit_log(access: &[Channel], tally: &Shared) -> HashSet<String> {
    let access = Caller::new(access, 0, tally);
    let officer = token_at("RR8", "R0001", "user/*.rs", "e2e-replicas-audit");
    let request = GetSignedTreeHeadRequest { tree_size: 0 };
    let head = access
        .front_door(
            "GetSignedTreeHead",
            &request,
            &officer,
            |mut c, r| async move { c.get_signed_tree_head(r).await },
        )
        .await
        .tree_head
        .expect("a tree head");
    let request = GetAuditPublicKeyRequest {
        key_id: head.key_id.clone(),
    };
    let key = access
        .front_door(
            "GetAuditPublicKey",
            &request,
            &officer,
            |mut c, r| async move { c.get_audit_public_key(r).await },
        )
        .await
        .key
        .expect("the head's key");
    let public_key: [u8; 32] = key.public_key.as_slice().try_into().expect("Ed25519");
    let mut entries = Vec::new();
    while (entries.len() as i64) < head.tree_size {
        let request = ListAuditEntriesRequest {
            start_index: entries.len() as i64,
            tree_size: head.tree_size,
            page_size: 1000,
            page_token: String::new(),
        };
        let page = access
            .front_door(
                "ListAuditEntries",
                &request,
                &officer,
                |mut c, r| async move { c.list_audit_entries(r).await },
            )
            .await;
        assert!(
            !page.entries.is_empty(),
            "the log ends before its tree head"
        );
        entries.extend(page.entries);
    }
    let report = carerecord_access::audit::verify_entries(&entries, &public_key, Some(&head));
    assert!(
        report.ok,
        "the audit log does not verify: {}",
        report.message
    );
    assert_eq!(report.tree_size, head.tree_size as u64);
    entries
        .into_iter()
        .map(|e| e.leaf.expect("decoded leaf").entry_id)
        .collect()
}

/// The audit log in the database is one sequence of indexes from 0 with no gap or repeat.
pub(crate) async fn assert_gap_free(access_database: &str) {
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(access_database)
        .await
        .expect("the access database");
    let (count, next): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(MAX(idx) + 1, 0) AS BIGINT) FROM audit_entries",
    )
    .fetch_one(&mut db)
    .await
    .expect("count the audit entries");
    assert_eq!(count, next, "the audit log has gaps or repeated indexes");
}

/// Every acknowledged write of a module is stored once, under its request_id, and nothing else is:
/// `by_request` lists (request_id, the id acknowledged) as the module stores them, `total` counts
/// what was written.
pub(crate) async fn assert_stored_once(
    database: &str,
    by_request: &'static str,
    total: &'static str,
    acknowledged: &HashMap<String, String>,
) {
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(database)
        .await
        .expect("the module's database");
    let rows: Vec<(String, String)> = sqlx::query_as(by_request)
        .fetch_all(&mut db)
        .await
        .expect("request ids");
    let stored: HashMap<String, String> = rows.into_iter().collect();
    let (written,): (i64,) = sqlx::query_as(total)
        .fetch_one(&mut db)
        .await
        .expect("count what was written");
    for (request_id, id) in acknowledged {
        assert_eq!(
            stored.get(request_id),
            Some(id),
            "acknowledged write {request_id} is not stored as acknowledged"
        );
    }
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "writes nobody acknowledged"
    );
    assert_eq!(
        written as usize,
        acknowledged.len(),
        "a write is stored more than once"
    );
}

/// Record hosting's request ids and record versions, for [`assert_stored_once`].
pub(crate) const RECORDS_STORED: (&str, &str) = (
    "SELECT request_id, record_id FROM request_ids",
    "SELECT CAST(COUNT(*) AS BIGINT) FROM record_versions",
);
