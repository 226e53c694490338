//! BLAKE3 digests as content addresses.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 digest: the address of a chunk, a blob, an image or an
/// encoded document. Two values are equal exactly when their digests are.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The BLAKE3 digest of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The digest's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The full 64-character lowercase hex form.
    #[must_use]
    pub fn to_hex(&self) -> alloc::string::String {
        hex::encode(self.0)
    }

    /// The 16-character hex prefix that humans read in logs and listings.
    #[must_use]
    pub fn short(&self) -> alloc::string::String {
        hex::encode(&self.0[..8])
    }

    /// Parses the full 64-character hex form.
    ///
    /// # Errors
    /// [`ParseHashError`] when `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ParseHashError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseHashError)?;
        Ok(Self(out))
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

/// A string was not the 64-hex-digit form of a [`Hash`](struct@Hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a BLAKE3 hash: expected 64 hex digits")]
pub struct ParseHashError;

/// Content-defined chunking parameters, recorded wherever chunk boundaries
/// matter (chunk indexes, manifest components) so that any node can
/// reproduce the same boundaries from the same bytes.
///
/// Invariant when valid (see [`ChunkingParams::validate`]):
/// `MIN_CHUNK_FLOOR <= min_size <= avg_size <= max_size <= MAX_CHUNK_CEILING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkingParams {
    /// The chunking algorithm.
    pub algorithm: ChunkingAlgorithm,
    /// Smallest chunk the chunker emits (except the image's last chunk).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk the chunker emits.
    pub max_size: u32,
}

/// Which content-defined chunker produced a set of boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChunkingAlgorithm {
    /// FastCDC as published in 2020 (`fastcdc::v2020`), normalisation level 1.
    FastCdc2020,
}

impl ChunkingParams {
    /// The smallest `min_size` accepted (FastCDC's own floor is 64 bytes).
    pub const MIN_CHUNK_FLOOR: u32 = 64;
    /// The largest `max_size` accepted: one chunk must fit in memory and in
    /// one mesh message.
    pub const MAX_CHUNK_CEILING: u32 = 1 << 20;

    /// Whether the sizes are ordered and inside the accepted bounds.
    #[must_use]
    pub fn validate(&self) -> bool {
        Self::MIN_CHUNK_FLOOR <= self.min_size
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.max_size <= Self::MAX_CHUNK_CEILING
    }
}
