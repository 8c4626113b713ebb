//! The tamper-evident audit log: signed tree heads, keys, RFC 6962 inclusion and consistency
//! proofs (verified by the kit with RFC 9162's algorithms), leaf contents, VerifyAuditLog.

use carerecord_contracts::access::v1::{
    AuditAction, AuditLeaf, AuditOutcome, GetAuditPublicKeyRequest, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetInclusionProofRequest, GetSignedTreeHeadRequest,
    SignedTreeHead, TreeHeadToSign, VerifyAuditLogRequest,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Code;

use super::merkle::{Hash, leaf_hash, to_hash, verify_consistency, verify_inclusion};
use super::support::{audit_entry, audited, auditor, by_id, client, find, has_reason, refusal};
use crate::harness::{
    Ctx, Fail, TestResult, describe, ensure, ensure_eq, err, fail, has_violation_under, ok,
};
use crate::refusal::refuse_each;

/// Makes one audited call (a lookup of an unknown patient) and returns its audit index and entry id.
async fn audited_call(ctx: &Ctx) -> TestResult<(i64, String)> {
    let id = uuid::Uuid::new_v4().to_string();
    let status = err(
        client(ctx).find_patient(find(by_id(&id), "TREAT")).await,
        Code::NotFound,
        "FindPatient(unknown patient)",
    )?;
    let metadata = has_reason(&status, "PATIENT_NOT_FOUND")?;
    let index = audited(&metadata)?;
    Ok((
        index,
        metadata.get("audit_entry_id").cloned().unwrap_or_default(),
    ))
}

async fn head(ctx: &Ctx, size: i64) -> TestResult<SignedTreeHead> {
    match ok(
        client(ctx)
            .get_signed_tree_head(GetSignedTreeHeadRequest { tree_size: size })
            .await,
        "GetSignedTreeHead",
    )?
    .tree_head
    {
        Some(h) => Ok(h),
        None => fail!("GetSignedTreeHead: no tree_head"),
    }
}

fn root(h: &SignedTreeHead) -> TestResult<Hash> {
    match to_hash(&h.root_hash) {
        Some(r) => Ok(r),
        None => fail!("root_hash must be 32 bytes, got {}", h.root_hash.len()),
    }
}

/// Verifies a head's signature with the key its key_id names (fetched by key_id).
async fn verify_head(ctx: &Ctx, h: &SignedTreeHead) -> TestResult {
    root(h)?;
    let key = ok(
        client(ctx)
            .get_audit_public_key(GetAuditPublicKeyRequest {
                key_id: h.key_id.clone(),
            })
            .await,
        "GetAuditPublicKey",
    )?
    .key;
    let Some(key) = key else {
        fail!("GetAuditPublicKey: no key")
    };
    ensure_eq!(key.algorithm, "Ed25519", "algorithm");
    ensure_eq!(
        hex::encode(Sha256::digest(&key.public_key)),
        h.key_id,
        "key_id is the SHA-256 of the public key"
    );
    let Ok(bytes) = <[u8; 32]>::try_from(key.public_key.as_slice()) else {
        fail!("the public key must be 32 bytes")
    };
    let Ok(verifying) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
        fail!("the public key is not a valid Ed25519 point")
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&h.signature) else {
        fail!("the signature must be 64 bytes, got {}", h.signature.len())
    };
    let message = TreeHeadToSign {
        log_id: h.log_id.clone(),
        tree_size: h.tree_size,
        root_hash: h.root_hash.clone(),
        timestamp: h.timestamp,
        key_id: h.key_id.clone(),
    }
    .encode_to_vec();
    ensure!(
        verifying.verify_strict(&message, &sig).is_ok(),
        "the tree head's signature does not verify over the canonical TreeHeadToSign (tree_size {})",
        h.tree_size
    );
    Ok(())
}

pub(super) async fn tree_head(ctx: Ctx) -> TestResult {
    let (index, _) = audited_call(&ctx).await?;
    let h = head(&ctx, 0).await?;
    ensure!(
        h.tree_size > index,
        "the latest head (size {}) must cover entry {index}, appended before the call",
        h.tree_size
    );
    ensure!(!h.log_id.is_empty(), "log_id must be set");
    ensure!(h.timestamp.is_some(), "timestamp must be set");
    verify_head(&ctx, &h).await?;
    let current = ok(
        client(&ctx)
            .get_audit_public_key(GetAuditPublicKeyRequest {
                key_id: String::new(),
            })
            .await,
        "GetAuditPublicKey(current)",
    )?
    .key;
    ensure!(
        current.is_some_and(|k| k.valid_until.is_none() && k.public_key.len() == 32),
        "the current key has no valid_until and 32 bytes"
    );
    Ok(())
}

pub(super) async fn consistency(ctx: Ctx) -> TestResult {
    audited_call(&ctx).await?;
    let first = head(&ctx, 0).await?;
    audited_call(&ctx).await?;
    audited_call(&ctx).await?;
    let second = head(&ctx, 0).await?;
    ensure!(
        second.tree_size > first.tree_size,
        "two audited calls must grow the log"
    );
    let proof = proof_between(
        &ctx,
        first.tree_size,
        second.tree_size,
        "GetConsistencyProof",
    )
    .await?;
    ensure_eq!(
        (proof.first_tree_size, proof.second_tree_size),
        (first.tree_size, second.tree_size),
        "sizes"
    );
    let Some(h2) = proof.second_tree_head else {
        fail!("no second_tree_head")
    };
    ensure_eq!(
        (h2.tree_size, h2.root_hash.clone()),
        (second.tree_size, second.root_hash.clone()),
        "second_tree_head commits to the same tree as the latest head"
    );
    verify_head(&ctx, &h2).await?;
    let message = format!(
        "the consistency proof from {} to {} does not verify",
        first.tree_size, second.tree_size
    );
    ensure_consistent(&proof.proof, &first, &second, &message)?;
    // Same sizes: empty proof.
    let call = "GetConsistencyProof(equal sizes)";
    let same = proof_between(&ctx, first.tree_size, first.tree_size, call).await?;
    ensure!(
        same.proof.is_empty(),
        "a proof between equal sizes is empty"
    );
    Ok(())
}

async fn proof_between(
    ctx: &Ctx,
    first_tree_size: i64,
    second_tree_size: i64,
    call: &str,
) -> TestResult<GetConsistencyProofResponse> {
    let request = GetConsistencyProofRequest {
        first_tree_size,
        second_tree_size,
    };
    ok(client(ctx).get_consistency_proof(request).await, call)
}

/// Requires a consistency proof (RFC 9162 §2.1.4.2) between two heads to verify.
fn ensure_consistent(
    proof: &[Vec<u8>],
    first: &SignedTreeHead,
    second: &SignedTreeHead,
    inconsistent: &str,
) -> TestResult {
    let path: Option<Vec<Hash>> = proof.iter().map(|p| to_hash(p)).collect();
    let Some(path) = path else {
        fail!("proof hashes must be 32 bytes")
    };
    ensure!(
        verify_consistency(
            first.tree_size as u64,
            second.tree_size as u64,
            &root(first)?,
            &root(second)?,
            &path
        ),
        "{inconsistent}"
    );
    Ok(())
}

pub(super) async fn inclusion(ctx: Ctx) -> TestResult {
    let (index, _) = audited_call(&ctx).await?;
    let proof = ok(
        client(&ctx)
            .get_inclusion_proof(GetInclusionProofRequest {
                leaf_index: index,
                tree_size: 0,
            })
            .await,
        "GetInclusionProof",
    )?;
    ensure_eq!(proof.leaf_index, index, "leaf_index");
    let Some(h) = proof.tree_head else {
        fail!("no tree_head")
    };
    ensure_eq!(
        h.tree_size,
        proof.tree_size,
        "the head's size is the proof's"
    );
    verify_head(&ctx, &h).await?;
    let path: Option<Vec<Hash>> = proof.audit_path.iter().map(|p| to_hash(p)).collect();
    let Some(path) = path else {
        fail!("audit path hashes must be 32 bytes")
    };
    let entry = audit_entry(&ctx, index).await?;
    ensure_eq!(entry.index, index, "entry index");
    ensure!(
        verify_inclusion(
            index as u64,
            proof.tree_size as u64,
            leaf_hash(&entry.leaf_data),
            &path,
            &root(&h)?
        ),
        "the inclusion proof of entry {index} in a tree of {} does not verify",
        proof.tree_size
    );
    Ok(())
}

pub(super) async fn leaf_contents(ctx: Ctx) -> TestResult {
    let (index, entry_id) = audited_call(&ctx).await?;
    let entry = audit_entry(&ctx, index).await?;
    let Ok(leaf) = AuditLeaf::decode(entry.leaf_data.as_slice()) else {
        fail!("leaf_data does not decode as an AuditLeaf")
    };
    ensure_eq!(
        entry.leaf.as_ref(),
        Some(&leaf),
        "AuditEntry.leaf is leaf_data decoded"
    );
    ensure_eq!(leaf.entry_id, entry_id, "entry_id");
    ensure_eq!(leaf.action, AuditAction::FindPatient as i32, "action");
    ensure_eq!(leaf.outcome, AuditOutcome::Failed as i32, "outcome");
    ensure_eq!(leaf.status_code, Code::NotFound as i32, "status_code");
    ensure_eq!(leaf.error_reason, "PATIENT_NOT_FOUND", "error_reason");
    ensure_eq!(leaf.purpose_of_use, "TREAT", "purpose_of_use");
    ensure!(
        leaf.time.is_some() && leaf.requester.is_some(),
        "time and requester are recorded"
    );
    ensure!(
        leaf.trace_id.len() == 32
            && leaf
                .trace_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "trace_id is 32 lower-case hex characters, got {:?}",
        leaf.trace_id
    );
    Ok(())
}

pub(super) async fn earlier_head(ctx: Ctx) -> TestResult {
    audited_call(&ctx).await?;
    audited_call(&ctx).await?;
    let latest = head(&ctx, 0).await?;
    let earlier = head(&ctx, latest.tree_size - 1).await?;
    ensure_eq!(
        earlier.tree_size,
        latest.tree_size - 1,
        "tree_size of the earlier head"
    );
    verify_head(&ctx, &earlier).await?;
    let proof = proof_between(
        &ctx,
        earlier.tree_size,
        latest.tree_size,
        "GetConsistencyProof",
    )
    .await?;
    let message = "the earlier head is not consistent with the latest";
    ensure_consistent(&proof.proof, &earlier, &latest, message)
}

pub(super) async fn audit_errors(ctx: Ctx) -> TestResult {
    audited_call(&ctx).await?;
    let size = head(&ctx, 0).await?.tree_size;
    let beyond = size + 1_000_000;
    let out_of_range = || refusal(Code::OutOfRange, "TREE_SIZE_OUT_OF_RANGE");
    let invalid = || refusal(Code::InvalidArgument, "INVALID_REQUEST");
    let signed_head = |tree_size| GetSignedTreeHeadRequest { tree_size };
    let inclusion = |leaf_index, tree_size| GetInclusionProofRequest {
        leaf_index,
        tree_size,
    };
    let consistency = |first_tree_size, second_tree_size| GetConsistencyProofRequest {
        first_tree_size,
        second_tree_size,
    };
    let key = |key_id: String| GetAuditPublicKeyRequest { key_id };
    let table = vec![
        ("beyond the log", signed_head(beyond), out_of_range()),
        ("-1", signed_head(-1), invalid()),
    ];
    refuse_each!(client(&ctx), get_signed_tree_head, table).await?;
    let table = vec![
        ("tree beyond the log", inclusion(0, beyond), out_of_range()),
        ("leaf not below the size", inclusion(size, size), invalid()),
        ("negative leaf", inclusion(-1, 0), invalid()),
    ];
    refuse_each!(client(&ctx), get_inclusion_proof, table).await?;
    let table = vec![
        (
            "second beyond the log",
            consistency(1, beyond),
            out_of_range(),
        ),
        ("first 0", consistency(0, size), invalid()),
        ("first above second", consistency(size, size - 1), invalid()),
    ];
    refuse_each!(client(&ctx), get_consistency_proof, table).await?;
    let unknown = hex::encode(Sha256::digest(uuid::Uuid::new_v4().as_bytes()));
    let not_found = refusal(Code::NotFound, "KEY_NOT_FOUND").resource("AuditPublicKey", &unknown);
    let table = vec![
        ("upper-case key_id", key("AB".repeat(32)), invalid()),
        ("short key_id", key("abc".into()), invalid()),
        ("unknown key", key(unknown.clone()), not_found),
    ];
    refuse_each!(client(&ctx), get_audit_public_key, table).await
}

pub(super) async fn verify_log(ctx: Ctx) -> TestResult {
    audited_call(&ctx).await?;
    let trusted = head(&ctx, 0).await?;
    let good = match auditor(&ctx)?
        .verify_audit_log(VerifyAuditLogRequest {
            trusted_tree_head: Some(trusted.clone()),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(st) if st.code() == Code::PermissionDenied => {
            return Err(Fail::Skipped(format!(
                "the token may not verify the audit log; give an auditor token ({})",
                describe(&st)
            )));
        }
        Err(st) => fail!("VerifyAuditLog: expected OK, got {}", describe(&st)),
    };
    ensure!(
        good.ok,
        "VerifyAuditLog with a genuine trusted head must be ok: {}",
        good.message
    );
    ensure!(
        good.tree_size >= trusted.tree_size && good.root_hash.len() == 32,
        "tree_size and root_hash of the check"
    );
    if let Some(h) = &good.tree_head {
        verify_head(&ctx, h).await?;
    }
    let mut altered = trusted.clone();
    if let Some(b) = altered.root_hash.first_mut() {
        *b ^= 0xff;
    }
    let bad = ok(
        auditor(&ctx)?
            .verify_audit_log(VerifyAuditLogRequest {
                trusted_tree_head: Some(altered),
            })
            .await,
        "VerifyAuditLog(altered head)",
    )?;
    ensure!(
        !bad.ok,
        "VerifyAuditLog must not be ok with an altered trusted head"
    );
    let mut malformed = trusted;
    malformed.root_hash.truncate(31);
    let status = err(
        auditor(&ctx)?
            .verify_audit_log(VerifyAuditLogRequest {
                trusted_tree_head: Some(malformed),
            })
            .await,
        Code::InvalidArgument,
        "VerifyAuditLog(root_hash of 31 bytes)",
    )?;
    has_violation_under(&status, "trusted_tree_head")
}
