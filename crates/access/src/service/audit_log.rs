//! The audit log's read side: entries, signed tree heads, keys, proofs and verification.

use carerecord_contracts::access::v1 as api;
use carerecord_platform::errors::Violations;
use carerecord_platform::page_token::Position;
use prost::Message;
use tonic::Request;

use super::AccessService;
use super::parse::{page_query, resume};
use crate::domain::audit_verify::{Leaf, check_head, check_leaves};
use crate::domain::auth::{Caller, Context};
use crate::domain::merkle;
use crate::error::Error;

/// How many entries VerifyAuditLog reads per query.
const VERIFY_BATCH: i64 = 5000;
pub const PRIVACY_OFFICER: &str = "R0001";

impl AccessService {
    /// `user/AuditEvent.<p>` with role R0001, or (when `system_allowed`) `system/AuditEvent.<p>`.
    pub(super) fn require_auditor(
        &self,
        caller: &Caller,
        permission: char,
        system_allowed: bool,
    ) -> Result<(), Error> {
        if system_allowed && caller.has(Context::System, "AuditEvent", permission) {
            return Ok(());
        }
        if caller.role_code != PRIVACY_OFFICER || !caller.has_context(Context::User) {
            return Err(Error::RoleNotPermitted {
                required_roles: PRIVACY_OFFICER.into(),
            });
        }
        caller
            .require(&[Context::User], "AuditEvent", permission)
            .map(|_| ())
    }

    /// The current size, or OUT_OF_RANGE for a requested size beyond it; 0 means the current size.
    async fn size_at(&self, requested: i64) -> Result<i64, Error> {
        let current = self.inner.store.size().await?;
        if requested > current {
            return Err(Error::TreeSizeOutOfRange { requested, current });
        }
        Ok(if requested == 0 { current } else { requested })
    }

    /// A freshly signed head for `size`, remembered for tamper detection.
    async fn head(&self, size: i64) -> Result<api::SignedTreeHead, Error> {
        let root = self.inner.store.root(size).await?;
        let head = self.inner.config.signer.sign(
            u64::try_from(size).unwrap_or(0),
            &root,
            carerecord_platform::db::now_micros(),
        );
        self.inner.store.store_head(&head).await?;
        Ok(head)
    }

    pub(super) async fn audit_entries(
        &self,
        request: Request<api::ListAuditEntriesRequest>,
    ) -> Result<api::ListAuditEntriesResponse, Error> {
        let (caller, trace, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        v.check(req.start_index >= 0, "start_index", "must not be negative");
        v.check(req.tree_size >= 0, "tree_size", "must not be negative");
        let limit = v.page_size(req.page_size);
        let query = page_query("audit-entries", &caller, &req);
        let tokens = &self.inner.config.page_tokens;
        // A page resumes at its next index, up to the tree size of the first page.
        let resumed = resume(tokens, &query, &req.page_token, |position| {
            Some((position.read_int()?, position.read_int()?))
        })?;
        v.into_result()?;
        let leaf = self.leaf(&caller, &trace, api::AuditAction::ListAuditEntries);
        self.audited(leaf, async |leaf| {
            self.require_auditor(&caller, 'r', true)?;
            let log_size = self.inner.store.size().await?;
            let (start, end) = match resumed {
                Some(pair) => pair,
                None => (req.start_index, self.size_at(req.tree_size).await?),
            };
            let stop = end.min(start.saturating_add(limit.as_i64()));
            let rows = if start < stop {
                self.inner.store.entries(start, stop).await?
            } else {
                Vec::new()
            };
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                let decoded = api::AuditLeaf::decode(row.leaf_data.as_slice()).ok();
                entries.push(api::AuditEntry {
                    index: row.index,
                    leaf_data: row.leaf_data,
                    leaf: decoded,
                });
            }
            leaf.row_count = entries.len() as i64;
            leaf.returned_count = entries.len() as i64;
            let next_page_token = if stop < end {
                tokens.issue_at(&query, Position::new().int(stop).int(end))
            } else {
                String::new()
            };
            Ok(api::ListAuditEntriesResponse {
                entries,
                log_size,
                next_page_token,
            })
        })
        .await
    }

    pub(super) async fn signed_tree_head(
        &self,
        request: Request<api::GetSignedTreeHeadRequest>,
    ) -> Result<api::GetSignedTreeHeadResponse, Error> {
        let (_, _, req) = self.authenticated(request).await?;
        if req.tree_size < 0 {
            return Err(Error::invalid("tree_size", "must not be negative"));
        }
        let size = self.size_at(req.tree_size).await?;
        Ok(api::GetSignedTreeHeadResponse {
            tree_head: Some(self.head(size).await?),
        })
    }

    pub(super) async fn audit_public_key(
        &self,
        request: Request<api::GetAuditPublicKeyRequest>,
    ) -> Result<api::GetAuditPublicKeyResponse, Error> {
        let (_, _, req) = self.authenticated(request).await?;
        let key_id = if req.key_id.is_empty() {
            self.inner.config.signer.key_id().to_owned()
        } else {
            let valid = req.key_id.len() == 64
                && req
                    .key_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !valid {
                return Err(Error::invalid(
                    "key_id",
                    "must be 64 lowercase hexadecimal characters",
                ));
            }
            req.key_id
        };
        let (public_key, from, until) = self
            .inner
            .store
            .key(&key_id)
            .await?
            .ok_or(Error::KeyNotFound(key_id.clone()))?;
        Ok(api::GetAuditPublicKeyResponse {
            key: Some(api::AuditPublicKey {
                key_id,
                public_key,
                algorithm: "Ed25519".into(),
                valid_from: Some(crate::domain::timestamp(from)),
                valid_until: until.map(crate::domain::timestamp),
            }),
        })
    }

    pub(super) async fn inclusion_proof(
        &self,
        request: Request<api::GetInclusionProofRequest>,
    ) -> Result<api::GetInclusionProofResponse, Error> {
        let (_, _, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        v.check(req.leaf_index >= 0, "leaf_index", "must not be negative");
        v.check(req.tree_size >= 0, "tree_size", "must not be negative");
        v.into_result()?;
        let size = self.size_at(req.tree_size).await?;
        if req.leaf_index >= size {
            return Err(Error::invalid(
                "leaf_index",
                format!("must be below the tree size {size}"),
            ));
        }
        let hashes = self.inner.store.leaf_hashes(size).await?;
        let proof = merkle::inclusion_proof(
            &hashes,
            usize::try_from(req.leaf_index).unwrap_or(usize::MAX),
        )
        .ok_or_else(|| Error::invalid("leaf_index", "must be below the tree size"))?;
        Ok(api::GetInclusionProofResponse {
            leaf_index: req.leaf_index,
            tree_size: size,
            audit_path: proof.into_iter().map(|h| h.to_vec()).collect(),
            tree_head: Some(self.head(size).await?),
        })
    }

    pub(super) async fn consistency_proof(
        &self,
        request: Request<api::GetConsistencyProofRequest>,
    ) -> Result<api::GetConsistencyProofResponse, Error> {
        let (_, _, req) = self.authenticated(request).await?;
        let mut v = Violations::new();
        v.check(
            req.first_tree_size >= 1,
            "first_tree_size",
            "must be at least 1",
        );
        v.check(
            req.second_tree_size >= 0,
            "second_tree_size",
            "must not be negative",
        );
        v.into_result()?;
        let second = self.size_at(req.second_tree_size).await?;
        if req.first_tree_size > second {
            return Err(Error::invalid(
                "first_tree_size",
                format!("must not exceed the second tree size {second}"),
            ));
        }
        let hashes = self.inner.store.leaf_hashes(second).await?;
        let proof =
            merkle::consistency_proof(&hashes, usize::try_from(req.first_tree_size).unwrap_or(0))
                .ok_or_else(|| {
                Error::invalid(
                    "first_tree_size",
                    "must be between 1 and the second tree size",
                )
            })?;
        Ok(api::GetConsistencyProofResponse {
            first_tree_size: req.first_tree_size,
            second_tree_size: second,
            proof: proof.into_iter().map(|h| h.to_vec()).collect(),
            second_tree_head: Some(self.head(second).await?),
        })
    }

    pub(super) async fn verify_log(
        &self,
        request: Request<api::VerifyAuditLogRequest>,
    ) -> Result<api::VerifyAuditLogResponse, Error> {
        let (caller, _, req) = self.authenticated(request).await?;
        if let Some(head) = &req.trusted_tree_head {
            let mut v = Violations::new();
            v.check(
                head.root_hash.len() == 32,
                "trusted_tree_head.root_hash",
                "must be 32 bytes",
            );
            v.check(
                head.signature.len() == 64,
                "trusted_tree_head.signature",
                "must be 64 bytes",
            );
            v.check(
                head.tree_size >= 0,
                "trusted_tree_head.tree_size",
                "must not be negative",
            );
            v.into_result()?;
        }
        self.require_auditor(&caller, 'r', true)?;
        let store = &self.inner.store;
        let size = store.size().await?;
        let mut rows = Vec::new();
        let mut start = 0;
        while start < size {
            let batch = store
                .entries(start, (start + VERIFY_BATCH).min(size))
                .await?;
            if batch.is_empty() {
                break;
            }
            start = batch.last().map_or(size, |r| r.index + 1);
            rows.extend(batch);
        }
        let (hashes, mut failure) = check_leaves(rows.iter().map(|r| Leaf {
            index: r.index,
            leaf_data: &r.leaf_data,
            stored_hash: Some(&r.leaf_hash),
            entry_id: Some(&r.entry_id),
            decoded: None,
        }));
        if failure.is_none() && (hashes.len() as i64) < size {
            failure = Some((
                hashes.len() as u64,
                format!("entry {} is missing", hashes.len()),
            ));
        }
        let root = merkle::root(&hashes);
        let signer = &self.inner.config.signer;
        let head = signer.sign(
            hashes.len() as u64,
            &root,
            carerecord_platform::db::now_micros(),
        );
        let mut problems: Vec<String> = Vec::new();
        if let Err(e) = check_head(&head, &signer.public_key(), &hashes, "the fresh tree head") {
            problems.push(e);
        }
        for (tree_size, stored_root) in store.stored_heads(hashes.len() as i64).await? {
            let n = usize::try_from(tree_size).unwrap_or(0);
            if merkle::root(&hashes[..n]).as_slice() != stored_root.as_slice() {
                problems.push(format!(
                    "a tree head handed out for size {tree_size} does not match the recomputed root: entries before index {tree_size} were altered"
                ));
                break;
            }
        }
        if let Some(trusted) = &req.trusted_tree_head {
            match store.key(&trusted.key_id).await? {
                None => {
                    problems.push("the trusted tree head's key_id names no key of this log".into())
                }
                Some((key, _, _)) => match <[u8; 32]>::try_from(key.as_slice()) {
                    Ok(key) => {
                        if let Err(e) = check_head(trusted, &key, &hashes, "the trusted tree head")
                        {
                            problems.push(e);
                        }
                    }
                    Err(_) => problems.push("the trusted tree head's key is malformed".into()),
                },
            }
        }
        let ok = failure.is_none() && problems.is_empty();
        let message = match (&failure, problems.first()) {
            (Some((_, why)), _) => why.clone(),
            (None, Some(problem)) => problem.clone(),
            (None, None) => format!(
                "{} entries verified: all present, hashes as stored, root matches every head handed out{}",
                hashes.len(),
                if req.trusted_tree_head.is_some() {
                    " and the trusted head"
                } else {
                    ""
                }
            ),
        };
        if !ok {
            tracing::error!(tree_size = hashes.len(), "audit log verification failed");
        }
        Ok(api::VerifyAuditLogResponse {
            ok,
            tree_size: hashes.len() as i64,
            root_hash: root.to_vec(),
            tree_head: Some(head),
            first_bad_index: failure.map(|(i, _)| i as i64),
            message,
        })
    }
}
