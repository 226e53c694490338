//! The framing shared by every meshota file and message.
//!
//! ```text
//! offset 0  magic          4 bytes  "MOTA"
//! offset 4  format version 1 byte   FORMAT_VERSION
//! offset 5  kind           1 byte   see [`Kind`]
//! offset 6  payload        postcard, exactly to the end of the input
//! ```
//!
//! For a signed document the payload is an [`Envelope`]: the body bytes and
//! the signatures over them. See `ARCHITECTURE.md`, "Signed bytes".

use alloc::{string::ToString, vec::Vec};
use core::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, KeyId};

/// The four bytes every meshota file starts with.
pub const MAGIC: [u8; 4] = *b"MOTA";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the header before the payload.
pub const HEADER_LEN: usize = 6;

/// The header of a file of `kind`: magic, format version, kind byte.
#[must_use]
pub const fn header(kind: Kind) -> [u8; HEADER_LEN] {
    [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        FORMAT_VERSION,
        kind as u8,
    ]
}

/// What a meshota file holds; the sixth byte of every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A signed trust root.
    TrustRoot = 1,
    /// A signed release manifest.
    ReleaseManifest = 2,
    /// A signed rollout command.
    RolloutCommand = 3,
    /// A signed node report.
    NodeReport = 4,
    /// A signed origin catalog: the releases an HTTP origin offers
    /// (defined in [`crate::catalog`]).
    Catalog = 5,
    /// A public key file.
    PublicKey = 16,
    /// A secret key file.
    SecretKey = 17,
    /// A chunk index (defined by the blobstore crate).
    ChunkIndex = 32,
    /// A patch index: the pieces rebuilding one target from one base image
    /// (defined by the blobstore crate, `blobstore/src/patch/format.rs`).
    PatchIndex = 33,
    /// One patch piece: compressed bsdiff-class streams producing a run of
    /// whole chunks (defined by the blobstore crate, `blobstore/src/patch/piece.rs`).
    PatchPiece = 34,
    /// A chunk index written against a base chunk index (defined by the
    /// blobstore crate, `blobstore/src/index_delta.rs`).
    ChunkIndexDelta = 35,
    /// A QUIC channel-binding hello (defined by the mesh crate).
    ChannelBindingHello = 48,
    /// A sneakernet bundle (`sneakernet/src/format.rs`).
    Bundle = 64,
    /// A sneakernet want list (`sneakernet/src/want.rs`).
    WantList = 65,
    /// The signed trailer of a provisioning image (defined by the
    /// provision crate, `provision/src/image/signed.rs`).
    ProvisioningImage = 66,
}

impl Kind {
    /// The name used in messages and in signature context strings.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TrustRoot => "trust-root",
            Self::ReleaseManifest => "release-manifest",
            Self::RolloutCommand => "rollout-command",
            Self::NodeReport => "node-report",
            Self::Catalog => "catalog",
            Self::PublicKey => "public-key",
            Self::SecretKey => "secret-key",
            Self::ChunkIndex => "chunk-index",
            Self::PatchIndex => "patch-index",
            Self::PatchPiece => "patch-piece",
            Self::ChunkIndexDelta => "chunk-index-delta",
            Self::ChannelBindingHello => "channel-binding-hello",
            Self::Bundle => "bundle",
            Self::WantList => "want-list",
            Self::ProvisioningImage => "provisioning-image",
        }
    }

    /// The kind for a header byte, if known.
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::TrustRoot,
            2 => Self::ReleaseManifest,
            3 => Self::RolloutCommand,
            4 => Self::NodeReport,
            5 => Self::Catalog,
            16 => Self::PublicKey,
            17 => Self::SecretKey,
            32 => Self::ChunkIndex,
            33 => Self::PatchIndex,
            34 => Self::PatchPiece,
            35 => Self::ChunkIndexDelta,
            48 => Self::ChannelBindingHello,
            64 => Self::Bundle,
            65 => Self::WantList,
            66 => Self::ProvisioningImage,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the kind byte of `bytes` after checking magic and version, without
/// decoding further: lets a tool tell which file it was handed. A short
/// input is reported as a truncated release manifest.
///
/// # Errors
/// [`Error::Truncated`], [`Error::BadMagic`], [`Error::UnsupportedFormatVersion`].
pub fn peek_kind(bytes: &[u8]) -> Result<u8, Error> {
    read_header(bytes, Kind::ReleaseManifest)
}

/// Checks magic and version and returns the kind byte; a short input is a
/// truncated `kind` (unless what is there already is not the magic).
fn read_header(bytes: &[u8], kind: Kind) -> Result<u8, Error> {
    let mut found = [0u8; 4];
    if let Some(m) = bytes.get(..4) {
        found.copy_from_slice(m);
        if found != MAGIC {
            return Err(Error::BadMagic { found });
        }
    }
    let (Some(&version), Some(&kind_byte)) = (bytes.get(4), bytes.get(5)) else {
        return Err(Error::Truncated { kind });
    };
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormatVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(kind_byte)
}

/// Checks size, magic, version and kind; returns the payload.
///
/// # Errors
/// [`Error::Oversize`] before anything else is read, then the header errors.
pub fn open(bytes: &[u8], kind: Kind, max: usize) -> Result<&[u8], Error> {
    if bytes.len() > max {
        return Err(Error::Oversize {
            kind,
            len: bytes.len(),
            max,
        });
    }
    let found = read_header(bytes, kind)?;
    if found != kind as u8 {
        return Err(Error::WrongKind {
            expected: kind,
            found,
        });
    }
    Ok(&bytes[HEADER_LEN..])
}

/// Prefixes the header for `kind` to a postcard payload.
///
/// # Errors
/// [`Error::Encoding`] if the payload cannot be serialised (no meshota type
/// does that; the error exists so that no encoder panics).
pub fn seal<T: Serialize + ?Sized>(kind: Kind, payload: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&header(kind));
    postcard::to_extend(payload, out).map_err(|e| Error::Encoding {
        kind,
        reason: e.to_string(),
    })
}

/// Decodes a postcard value that must fill `bytes` exactly and be in its
/// one canonical encoding (re-encoding yields the same bytes).
///
/// # Errors
/// [`Error::Truncated`], [`Error::Malformed`], [`Error::TrailingBytes`].
pub fn decode_exact<T: Serialize + DeserializeOwned>(bytes: &[u8], kind: Kind) -> Result<T, Error> {
    let (value, rest): (T, &[u8]) = postcard::take_from_bytes(bytes).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::Truncated { kind },
        other => Error::Malformed {
            kind,
            reason: other.to_string(),
        },
    })?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes {
            kind,
            count: rest.len(),
        });
    }
    let again = postcard::to_allocvec(&value).map_err(|e| Error::Malformed {
        kind,
        reason: e.to_string(),
    })?;
    if again != bytes {
        return Err(Error::Malformed {
            kind,
            reason: "not in canonical encoding".to_string(),
        });
    }
    Ok(value)
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    /// The signing key's id.
    pub key_id: KeyId,
    /// The ML-DSA-65 signature (3,309 bytes) over the body bytes, with the
    /// document kind's context string.
    #[serde(with = "serde_bytes_vec")]
    pub signature: Vec<u8>,
}

/// A signed document's payload: the body exactly as signed, and the
/// signatures over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The postcard encoding of the document body: the signed bytes.
    #[serde(with = "serde_bytes_vec")]
    pub body: Vec<u8>,
    /// Signatures over `body`.
    pub signatures: Vec<SignatureEntry>,
}

/// Serialises `Vec<u8>` as postcard bytes (length + raw bytes), the same
/// wire form as a sequence of u8 but without a per-element visit.
pub(crate) mod serde_bytes_vec {
    use alloc::vec::Vec;
    use core::fmt;

    use serde::{Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, in byte order. A new kind must be added here too.
    const ALL: [Kind; 15] = [
        Kind::TrustRoot,
        Kind::ReleaseManifest,
        Kind::RolloutCommand,
        Kind::NodeReport,
        Kind::Catalog,
        Kind::PublicKey,
        Kind::SecretKey,
        Kind::ChunkIndex,
        Kind::PatchIndex,
        Kind::PatchPiece,
        Kind::ChunkIndexDelta,
        Kind::ChannelBindingHello,
        Kind::Bundle,
        Kind::WantList,
        Kind::ProvisioningImage,
    ];

    #[test]
    fn every_kind_maps_back_from_its_byte_and_no_other_byte_is_a_kind() {
        for kind in ALL {
            assert_eq!(Kind::from_byte(kind as u8), Some(kind), "{kind}");
        }
        let known = (0..=u8::MAX)
            .filter(|&b| Kind::from_byte(b).is_some())
            .count();
        assert_eq!(known, ALL.len());
    }

    #[test]
    fn kind_names_are_distinct() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn chunk_index_delta_is_kind_35() {
        assert_eq!(Kind::ChunkIndexDelta as u8, 35);
        assert_eq!(Kind::from_byte(35), Some(Kind::ChunkIndexDelta));
        assert_eq!(header(Kind::ChunkIndexDelta), *b"MOTA\x01\x23");
    }
}
