//! Content digests: `sha256:<64 hex>` and `sha512:<128 hex>`, the algorithms the OCI image spec
//! registers (<https://github.com/opencontainers/image-spec/blob/main/descriptor.md#registered-algorithms>),
//! each verified with its own hash.
//!
//! A [`Digest`] is validated once, where it enters the program (a rule, a manifest, a header,
//! a layout's `index.json`); everything downstream holds the type and never checks again. It
//! shares its text (`Arc<str>`), so the many copies a large run keeps cost a pointer each.
//! sha256 stays the default: what we compute for bytes that arrive without a digest (a manifest
//! fetched by tag) is sha256, as registries do.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest as _, Sha256, Sha512};

/// Text that is no digest we can verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDigest(pub String);

impl fmt::Display for InvalidDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match unsupported_algorithm(&self.0) {
            Some(alg) => write!(
                f,
                "unsupported digest {:?}: its algorithm {alg} cannot be verified (sha256 and sha512 can)",
                self.0
            ),
            None => write!(
                f,
                "invalid digest {:?} (expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>)",
                self.0
            ),
        }
    }
}

impl std::error::Error for InvalidDigest {}

/// A digest algorithm we can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Its name in a digest (`sha256`), and in a layout's `blobs/<name>/` directory.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The digest of `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.digest()
    }

    /// A running hash with this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }
}

/// A running hash of one of the [`Algorithm`]s (an enum, so sha256 blobs pay no indirection).
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of what went in so far (the hasher itself goes on).
    pub fn digest(&self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.clone().finalize()),
            Hasher::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &(**h).clone().finalize()),
        }
    }
}

/// A content digest, `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`: the
/// algorithms we can verify. Validated once, where it enters the program (a rule, a manifest, a
/// header); everything downstream holds a `Digest` and never checks again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Arc<str>);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, InvalidDigest> {
        if algorithm_of(s).is_some() {
            Ok(Digest(s.into()))
        } else {
            Err(InvalidDigest(s.to_string()))
        }
    }

    /// The sha256 digest of `bytes` (the algorithm registries compute).
    pub fn of(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    /// The digest whose `algorithm` hash is `hash` (e.g. a finished running hasher).
    pub fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Digest {
        use std::fmt::Write;
        let name = algorithm.name();
        let mut s = String::with_capacity(name.len() + 1 + hash.len() * 2);
        s.push_str(name);
        s.push(':');
        for b in hash {
            let _ = write!(s, "{b:02x}");
        }
        Digest(s.into())
    }

    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// Whether `bytes` are the content this digest names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.algorithm().digest(bytes) == *self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, e.g. for `sha256-<hex>` tags and layout paths.
    pub fn hex(&self) -> &str {
        &self.0[self.algorithm().name().len() + 1..]
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

/// The algorithm of `s` when it is a digest we can verify: a registered algorithm and exactly
/// its number of lowercase hex digits.
fn algorithm_of(s: &str) -> Option<Algorithm> {
    let (name, hex) = s.split_once(':')?;
    let algorithm = [Algorithm::Sha256, Algorithm::Sha512].into_iter().find(|a| a.name() == name)?;
    let hex_ok =
        hex.len() == algorithm.hex_len() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex_ok.then_some(algorithm)
}

/// The algorithm of `s` when `s` is well-formed by the OCI digest grammar
/// (`algorithm ":" encoded`, see the descriptor spec above) but names an algorithm we cannot
/// verify (`blake3:…`, `sha384:…`); `None` for a digest we verify and for text that is no digest.
pub fn unsupported_algorithm(s: &str) -> Option<&str> {
    let (alg, encoded) = s.split_once(':')?;
    let component = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let alg_ok = alg.split(['+', '.', '_', '-']).all(component);
    let encoded_ok = !encoded.is_empty() && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    let known = ["sha256", "sha512"].contains(&alg);
    (alg_ok && encoded_ok && !known).then_some(alg)
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
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_err(), "sha512 has 128 hex digits");
        let d: Result<Digest, _> = serde_json::from_str("\"md5:x\"");
        assert!(d.unwrap_err().to_string().contains("md5:x"));
    }

    #[test]
    fn sha512_is_verified_with_sha512() {
        let d = Algorithm::Sha512.digest(b"");
        assert_eq!(
            d.as_str(),
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!((d.algorithm(), d.hex().len(), d.short()), (Algorithm::Sha512, 128, "cf83e1357eef"));
        assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
        assert!(d.matches(b"") && !d.matches(b"x"));
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"");
        assert_eq!(h.digest(), d);
        assert_eq!(Digest::of(b"").algorithm(), Algorithm::Sha256);
    }

    #[test]
    fn unsupported_algorithms_are_told_from_invalid_text() {
        assert_eq!(unsupported_algorithm("blake3:abcd"), Some("blake3"));
        assert_eq!(
            unsupported_algorithm("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HV6awa3"),
            Some("multihash+base58")
        );
        assert_eq!(unsupported_algorithm("../../etc/passwd"), None);
        assert_eq!(unsupported_algorithm("sha256:../x"), None);
        assert_eq!(unsupported_algorithm(&format!("sha256:{}", "a".repeat(64))), None);
        assert!(InvalidDigest("blake3:ab".into()).to_string().contains("cannot be verified"));
        assert!(InvalidDigest("sha256:../x".into()).to_string().starts_with("invalid digest"));
    }
}
