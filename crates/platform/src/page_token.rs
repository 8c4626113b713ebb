//! Opaque page tokens and stream cursors that cannot be forged or moved to another query.
//!
//! A token is `base64url(tag || position)`, where `tag` is an HMAC-SHA256 (truncated to 16 bytes)
//! over the query's canonical bytes and the position. Reusing a token with different filters, or
//! editing it, fails verification and the caller gets INVALID_ARGUMENT.
//!
//! The key comes from `CARERECORD_TOKEN_SECRET`; replicas of one service must share it. When unset,
//! each process draws a random key, so tokens do not survive a restart.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::env::{ConfigError, Env};

const TAG_LEN: usize = 16;

/// The field violation's description for a token that fails verification.
pub const REFUSED: &str =
    "malformed, tampered with, or issued for a different query: start again without it";

/// The canonical bytes of a query, to bind a token to it: every value length-prefixed, so no two
/// queries share bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryKey(Vec<u8>);

impl QueryKey {
    /// A query of `kind` (the list or stream it pages), with no parameters yet.
    pub fn new(kind: &str) -> QueryKey {
        let mut key = QueryKey::default();
        key.text(kind);
        key
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.0
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn flag(&mut self, value: bool) -> &mut Self {
        self.int(i64::from(value))
    }

    pub fn optional(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(1).int(v),
            None => self.int(0),
        }
    }

    /// A list whose order does not matter: sorted and deduplicated first.
    pub fn set<S: AsRef<str>>(&mut self, values: &[S]) -> &mut Self {
        let mut sorted: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.int(sorted.len() as i64);
        for value in sorted {
            self.text(value);
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where a page or stream resumes: integers and texts written in order, and read back in the same
/// order from a verified token.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Position {
    bytes: Vec<u8>,
    read: usize,
}

impl Position {
    pub fn new() -> Position {
        Position::default()
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The next integer, if one was written here.
    pub fn read_int(&mut self) -> Option<i64> {
        let bytes: [u8; 8] = self.bytes.get(self.read..self.read + 8)?.try_into().ok()?;
        self.read += 8;
        Some(i64::from_be_bytes(bytes))
    }

    /// The next text, if one was written here.
    pub fn read_text(&mut self) -> Option<String> {
        let len: [u8; 4] = self.bytes.get(self.read..self.read + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len) as usize;
        let start = self.read + 4;
        let text = std::str::from_utf8(self.bytes.get(start..start.checked_add(len)?)?).ok()?;
        self.read = start + len;
        Some(text.to_owned())
    }

    /// Whether everything written has been read: a position with bytes left over is not one this
    /// service issued for the query.
    pub fn is_done(&self) -> bool {
        self.read == self.bytes.len()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not valid base64url")]
    Encoding,
    #[error("the token was altered, or was issued for a different query")]
    Mismatch,
}

/// Issues and verifies tokens with one key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <redacted> }")
    }
}

impl PageTokens {
    pub fn new(key: &[u8]) -> Self {
        PageTokens { key: key.to_vec() }
    }

    /// The key from `CARERECORD_TOKEN_SECRET` (at least 16 bytes), or a random one when unset.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("CARERECORD_TOKEN_SECRET") {
            Some(secret) if secret.len() >= 16 => Ok(PageTokens::new(secret.as_bytes())),
            Some(secret) => Err(ConfigError::invalid(
                "CARERECORD_TOKEN_SECRET",
                "<redacted>",
                format!("must be at least 16 bytes, got {}", secret.len()),
            )),
            None => Ok(PageTokens::new(uuid::Uuid::new_v4().as_bytes())),
        }
    }

    fn tag(&self, query: &[u8], position: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts any key length");
        mac.update(&(query.len() as u64).to_be_bytes());
        mac.update(query);
        mac.update(position);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// A token for resuming `query` at `position` (any bytes the store understands).
    pub fn issue(&self, query: &[u8], position: &[u8]) -> String {
        let mut raw = Vec::with_capacity(TAG_LEN + position.len());
        raw.extend_from_slice(&self.tag(query, position));
        raw.extend_from_slice(position);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A token for resuming the query `query` at `position`.
    pub fn issue_at(&self, query: &QueryKey, position: &Position) -> String {
        self.issue(query.as_bytes(), position.as_bytes())
    }

    /// The position in `token`, if this key issued it for this very `query`.
    pub fn resume(&self, query: &QueryKey, token: &str) -> Result<Position, TokenError> {
        Ok(Position {
            bytes: self.verify(query.as_bytes(), token)?,
            read: 0,
        })
    }

    /// The position in `token`, if it was issued by this key for this very `query`.
    pub fn verify(&self, query: &[u8], token: &str) -> Result<Vec<u8>, TokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| TokenError::Encoding)?;
        if raw.len() < TAG_LEN {
            return Err(TokenError::Mismatch);
        }
        let (tag, position) = raw.split_at(TAG_LEN);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts any key length");
        mac.update(&(query.len() as u64).to_be_bytes());
        mac.update(query);
        mac.update(position);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag)
            .map_err(|_| TokenError::Mismatch)?;
        Ok(position.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_for_the_same_query() {
        let tokens = PageTokens::new(b"0123456789abcdef");
        let token = tokens.issue(b"patient=p1;types=Observation", b"\x00\x00\x00\x2a");
        assert_eq!(
            tokens
                .verify(b"patient=p1;types=Observation", &token)
                .unwrap(),
            b"\x00\x00\x00\x2a"
        );
    }

    #[test]
    fn another_query_or_an_edit_or_another_key_is_refused() {
        let tokens = PageTokens::new(b"0123456789abcdef");
        let token = tokens.issue(b"patient=p1", b"42");
        assert_eq!(
            tokens.verify(b"patient=p2", &token),
            Err(TokenError::Mismatch)
        );

        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        assert_eq!(
            tokens.verify(b"patient=p1", &URL_SAFE_NO_PAD.encode(raw)),
            Err(TokenError::Mismatch)
        );

        assert_eq!(
            tokens.verify(b"patient=p1", "not base64!"),
            Err(TokenError::Encoding)
        );
        assert_eq!(
            tokens.verify(b"patient=p1", "AAAA"),
            Err(TokenError::Mismatch)
        );
        let other = PageTokens::new(b"fedcba9876543210");
        assert_eq!(
            other.verify(b"patient=p1", &token),
            Err(TokenError::Mismatch)
        );
    }

    #[test]
    fn short_secrets_are_rejected() {
        let env = Env::from_pairs([("CARERECORD_TOKEN_SECRET", "short")]);
        let err = PageTokens::from_env(&env).unwrap_err().to_string();
        assert!(
            err.contains("CARERECORD_TOKEN_SECRET") && !err.contains("short\""),
            "{err}"
        );
    }
}
