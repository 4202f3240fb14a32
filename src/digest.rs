//! Content digests: `sha256:<64 lowercase hex>`, the one algorithm the tool verifies.
//!
//! A [`Digest`] is validated once, where it enters the program (a rule, a manifest, a header,
//! a layout's `index.json`); everything downstream holds the type and never checks again. It
//! shares its text (`Arc<str>`), so the many copies a large run keeps cost a pointer each.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// Text that is no digest we can verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDigest(pub String);

impl fmt::Display for InvalidDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid digest {:?} (expected sha256:<64 lowercase hex>)", self.0)
    }
}

impl std::error::Error for InvalidDigest {}

/// A content digest, `sha256:<64 lowercase hex>`: the only algorithm we can verify. Validated
/// once, where it enters the program (a rule, a manifest, a header); everything downstream
/// holds a `Digest` and never checks again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Arc<str>);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, InvalidDigest> {
        if is_digest(s) {
            Ok(Digest(s.into()))
        } else {
            Err(InvalidDigest(s.to_string()))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(&Sha256::digest(bytes))
    }

    /// The digest whose sha256 hash is `hash` (32 bytes, e.g. a finished running hasher).
    pub fn from_sha256(hash: &[u8]) -> Digest {
        use std::fmt::Write;
        let mut s = String::with_capacity(7 + hash.len() * 2);
        s.push_str("sha256:");
        for b in hash {
            let _ = write!(s, "{b:02x}");
        }
        Digest(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, e.g. for `sha256-<hex>` tags and layout paths.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, as `docker` shows them: enough to tell blobs apart on screen.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Digest, InvalidDigest> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(|_| serde::de::Error::custom(format!("unsupported or invalid digest {s:?}")))
    }
}

/// `true` for `algorithm:hex` digests we can verify (sha256 only).
fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_validated_once() {
        assert_eq!(Digest::of(b"").as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Digest::of(b"").hex().len(), 64);
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_err());
        let d: Result<Digest, _> = serde_json::from_str("\"md5:x\"");
        assert!(d.unwrap_err().to_string().contains("md5:x"));
    }
}
