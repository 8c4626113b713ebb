//! Signed tree heads: Ed25519 (RFC 8032, pure) over the canonical encoding of a TreeHeadToSign.

use carerecord_contracts::access::v1::{SignedTreeHead, TreeHeadToSign};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Lowercase hex SHA-256 of a raw 32-byte Ed25519 public key.
pub fn key_id(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// The bytes a head's signature covers.
pub fn to_sign(head: &SignedTreeHead) -> Vec<u8> {
    TreeHeadToSign {
        log_id: head.log_id.clone(),
        tree_size: head.tree_size,
        root_hash: head.root_hash.clone(),
        timestamp: head.timestamp,
        key_id: head.key_id.clone(),
    }
    .encode_to_vec()
}

/// The audit log's signing key.
#[derive(Clone)]
pub struct TreeHeadSigner {
    key: SigningKey,
    key_id: String,
    log_id: String,
}

impl std::fmt::Debug for TreeHeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeHeadSigner")
            .field("key_id", &self.key_id)
            .field("log_id", &self.log_id)
            .finish_non_exhaustive()
    }
}

impl TreeHeadSigner {
    pub fn new(key: SigningKey, log_id: &str) -> Self {
        let key_id = key_id(&key.verifying_key().to_bytes());
        TreeHeadSigner {
            key,
            key_id,
            log_id: log_id.to_owned(),
        }
    }

    /// A key from a PKCS#8 PEM file's contents.
    pub fn from_pkcs8_pem(pem: &str, log_id: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
        Ok(Self::new(key, log_id))
    }

    /// A fresh random key (development only: heads it signs cannot be verified after a restart
    /// unless its public key was kept).
    pub fn generate(log_id: &str) -> Result<Self, String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
        Ok(Self::new(SigningKey::from_bytes(&secret), log_id))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, tree_size: u64, root: &Hash, timestamp_micros: i64) -> SignedTreeHead {
        let mut head = SignedTreeHead {
            log_id: self.log_id.clone(),
            tree_size: i64::try_from(tree_size).unwrap_or(i64::MAX),
            root_hash: root.to_vec(),
            timestamp: Some(super::timestamp(timestamp_micros)),
            key_id: self.key_id.clone(),
            signature: Vec::new(),
        };
        head.signature = self.key.sign(&to_sign(&head)).to_bytes().to_vec();
        head
    }
}

/// Why a signed tree head is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the head's key_id does not name the given public key")]
    KeyMismatch,
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    #[error("the root hash is not 32 bytes")]
    BadRoot,
    #[error("the signature is not 64 bytes")]
    BadSignatureLength,
    #[error("the signature does not verify")]
    BadSignature,
}

/// Verifies a head's signature with `public_key` (raw 32 bytes).
pub fn verify_head(head: &SignedTreeHead, public_key: &[u8; 32]) -> Result<(), HeadError> {
    if head.key_id != key_id(public_key) {
        return Err(HeadError::KeyMismatch);
    }
    if head.root_hash.len() != 32 {
        return Err(HeadError::BadRoot);
    }
    let signature: [u8; 64] = head
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| HeadError::BadSignatureLength)?;
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| HeadError::BadKey)?;
    key.verify_strict(&to_sign(head), &Signature::from_bytes(&signature))
        .map_err(|_| HeadError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_heads_verify_and_any_change_breaks_them() {
        let signer = TreeHeadSigner::generate("https://access.test/audit").unwrap();
        let head = signer.sign(5, &[7u8; 32], 1_700_000_000_000_000);
        assert_eq!(head.key_id.len(), 64);
        verify_head(&head, &signer.public_key()).unwrap();

        let mut other = head.clone();
        other.tree_size = 6;
        assert_eq!(
            verify_head(&other, &signer.public_key()),
            Err(HeadError::BadSignature)
        );
        let mut other = head.clone();
        other.log_id = "https://elsewhere/audit".into();
        assert_eq!(
            verify_head(&other, &signer.public_key()),
            Err(HeadError::BadSignature)
        );
        let mut other = head.clone();
        other.root_hash[0] ^= 1;
        assert_eq!(
            verify_head(&other, &signer.public_key()),
            Err(HeadError::BadSignature)
        );

        let stranger = TreeHeadSigner::generate("https://access.test/audit").unwrap();
        assert_eq!(
            verify_head(&head, &stranger.public_key()),
            Err(HeadError::KeyMismatch)
        );
    }

    #[test]
    fn pkcs8_keys_load() {
        // RFC 8410 §10.3 example private key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let signer = TreeHeadSigner::from_pkcs8_pem(pem, "log").unwrap();
        assert_eq!(
            hex::encode(signer.public_key()),
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
        assert!(TreeHeadSigner::from_pkcs8_pem("not a key", "log").is_err());
    }
}
