//! Verification of the audit log, online (VerifyAuditLog) and offline (`carerecord audit verify`).
//!
//! The offline verifier needs only the entries (from ListAuditEntries), the Ed25519 public key
//! pinned out of band, and optionally a tree head kept from earlier: it rehashes every leaf_data,
//! rebuilds the tree and checks roots and signatures. It never re-encodes leaves.

use std::collections::HashSet;

use carerecord_contracts::access::v1::{AuditEntry, AuditLeaf, SignedTreeHead};
use prost::Message;

use super::merkle::{self, Hash};
use super::tree_head;

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ok: bool,
    /// Entries checked.
    pub tree_size: u64,
    /// Root recomputed over them.
    pub root: Hash,
    /// The lowest index found bad, when one was identified.
    pub first_bad_index: Option<u64>,
    /// What was checked, or what failed (English).
    pub message: String,
}

/// One entry as the verifier sees it.
pub struct Leaf<'a> {
    pub index: i64,
    pub leaf_data: &'a [u8],
    /// The hash the log stored when appending (server side); `None` offline.
    pub stored_hash: Option<&'a [u8]>,
    /// The entry id the log stored beside the leaf (server side), or the decoded `leaf` offline.
    pub entry_id: Option<&'a str>,
    /// The decoded convenience copy sent beside leaf_data, to compare with it.
    pub decoded: Option<&'a AuditLeaf>,
}

/// Checks the leaves themselves: consecutive from 0, parsable, unique ids, hashes as stored.
/// Returns the recomputed leaf hashes and, on failure, the first bad index and why.
pub fn check_leaves<'a>(
    leaves: impl IntoIterator<Item = Leaf<'a>>,
) -> (Vec<Hash>, Option<(u64, String)>) {
    let mut hashes = Vec::new();
    let mut seen = HashSet::new();
    let mut first_bad: Option<(u64, String)> = None;
    let note = |index: u64, why: String, first_bad: &mut Option<(u64, String)>| {
        if first_bad.is_none() {
            *first_bad = Some((index, why));
        }
    };
    for leaf in leaves {
        let expected = hashes.len() as u64;
        if leaf.index != expected as i64 {
            note(
                expected,
                format!(
                    "entry {expected} is missing (found index {} in its place)",
                    leaf.index
                ),
                &mut first_bad,
            );
            break;
        }
        let hash = merkle::leaf_hash(leaf.leaf_data);
        hashes.push(hash);
        let parsed = match AuditLeaf::decode(leaf.leaf_data) {
            Ok(parsed) => parsed,
            Err(_) => {
                note(
                    expected,
                    format!("entry {expected}: leaf_data does not parse as an AuditLeaf"),
                    &mut first_bad,
                );
                continue;
            }
        };
        if !seen.insert(parsed.entry_id.clone()) || parsed.entry_id.is_empty() {
            note(
                expected,
                format!("entry {expected}: entry id is empty or duplicated"),
                &mut first_bad,
            );
        }
        if let Some(entry_id) = leaf.entry_id
            && entry_id != parsed.entry_id
        {
            note(
                expected,
                format!("entry {expected}: the stored entry id differs from the leaf's"),
                &mut first_bad,
            );
        }
        if let Some(decoded) = leaf.decoded
            && decoded != &parsed
        {
            note(
                expected,
                format!("entry {expected}: the decoded leaf differs from leaf_data"),
                &mut first_bad,
            );
        }
        if let Some(stored) = leaf.stored_hash
            && stored != hash.as_slice()
        {
            note(
                expected,
                format!("entry {expected}: leaf hash does not match the hash stored at append"),
                &mut first_bad,
            );
        }
    }
    (hashes, first_bad)
}

/// Checks that `head` is signed by `public_key` and commits to the first `head.tree_size` of `hashes`.
pub fn check_head(
    head: &SignedTreeHead,
    public_key: &[u8; 32],
    hashes: &[Hash],
    what: &str,
) -> Result<(), String> {
    tree_head::verify_head(head, public_key).map_err(|e| format!("{what}: {e}"))?;
    let size =
        usize::try_from(head.tree_size).map_err(|_| format!("{what}: negative tree size"))?;
    if size > hashes.len() {
        return Err(format!(
            "{what} covers {size} entries but the log holds only {}: entries were removed",
            hashes.len()
        ));
    }
    if merkle::root(&hashes[..size]).as_slice() != head.root_hash.as_slice() {
        return Err(format!(
            "{what} (size {size}) does not match the recomputed root: entries before index {size} were altered"
        ));
    }
    Ok(())
}

/// Verifies a whole log offline: every entry from index 0, in order, against `public_key` and an
/// optional earlier `trusted_head` (signed by the same key).
pub fn verify_entries(
    entries: &[AuditEntry],
    public_key: &[u8; 32],
    trusted_head: Option<&SignedTreeHead>,
) -> Report {
    let (hashes, first_bad) = check_leaves(entries.iter().map(|e| Leaf {
        index: e.index,
        leaf_data: &e.leaf_data,
        stored_hash: None,
        entry_id: None,
        decoded: e.leaf.as_ref(),
    }));
    let root = merkle::root(&hashes);
    let tree_size = hashes.len() as u64;
    if let Some((index, message)) = first_bad {
        return Report {
            ok: false,
            tree_size,
            root,
            first_bad_index: Some(index),
            message,
        };
    }
    if let Some(head) = trusted_head
        && let Err(message) = check_head(head, public_key, &hashes, "the trusted tree head")
    {
        return Report {
            ok: false,
            tree_size,
            root,
            first_bad_index: None,
            message,
        };
    }
    Report {
        ok: true,
        tree_size,
        root,
        first_bad_index: None,
        message: format!(
            "{tree_size} entries verified{}",
            if trusted_head.is_some() {
                "; consistent with the trusted tree head"
            } else {
                ""
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tree_head::TreeHeadSigner;

    fn log(n: usize) -> Vec<AuditEntry> {
        (0..n)
            .map(|i| {
                let leaf = AuditLeaf {
                    entry_id: format!("00000000-0000-4000-8000-{i:012}"),
                    action: 2,
                    outcome: 1,
                    ..Default::default()
                };
                AuditEntry {
                    index: i as i64,
                    leaf_data: leaf.encode_to_vec(),
                    leaf: Some(leaf),
                }
            })
            .collect()
    }

    fn leaf_hashes(entries: &[AuditEntry]) -> Vec<Hash> {
        entries
            .iter()
            .map(|e| merkle::leaf_hash(&e.leaf_data))
            .collect()
    }

    #[test]
    fn a_good_log_verifies_with_and_without_a_trusted_head() {
        let signer = TreeHeadSigner::generate("log").unwrap();
        let entries = log(11);
        let hashes = leaf_hashes(&entries);
        let head = signer.sign(7, &merkle::root(&hashes[..7]), 1);
        let report = verify_entries(&entries, &signer.public_key(), Some(&head));
        assert!(report.ok, "{}", report.message);
        assert_eq!(report.tree_size, 11);
        assert_eq!(report.root, merkle::root(&hashes));
    }

    #[test]
    fn altered_removed_or_reordered_entries_are_found() {
        let signer = TreeHeadSigner::generate("log").unwrap();
        let entries = log(9);
        let hashes = leaf_hashes(&entries);
        let head = signer.sign(9, &merkle::root(&hashes), 1);

        // Altered leaf_data, decoded copy left alone: the copy disagrees.
        let mut altered = entries.clone();
        altered[4].leaf_data = AuditLeaf {
            entry_id: "x".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let report = verify_entries(&altered, &signer.public_key(), Some(&head));
        assert!(!report.ok);
        assert_eq!(report.first_bad_index, Some(4));

        // Altered consistently (leaf and copy): only the trusted head catches it.
        let mut rewritten = entries.clone();
        let leaf = AuditLeaf {
            entry_id: "rewritten".into(),
            ..Default::default()
        };
        rewritten[4].leaf_data = leaf.encode_to_vec();
        rewritten[4].leaf = Some(leaf);
        let report = verify_entries(&rewritten, &signer.public_key(), Some(&head));
        assert!(!report.ok);
        assert_eq!(report.first_bad_index, None);
        assert!(report.message.contains("altered"), "{}", report.message);

        // A removed entry.
        let mut removed = entries.clone();
        removed.remove(3);
        let report = verify_entries(&removed, &signer.public_key(), Some(&head));
        assert_eq!(report.first_bad_index, Some(3));

        // Truncated log.
        let report = verify_entries(&entries[..5], &signer.public_key(), Some(&head));
        assert!(!report.ok);
        assert!(report.message.contains("removed"), "{}", report.message);

        // A head signed by another key.
        let stranger = TreeHeadSigner::generate("log").unwrap();
        let report = verify_entries(&entries, &stranger.public_key(), Some(&head));
        assert!(!report.ok);
    }
}
