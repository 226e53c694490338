//! The mesh protocol's messages: one enum, one encoding.
//!
//! ```text
//! byte 0   protocol version (PROTOCOL_VERSION)
//! byte 1.. postcard(Message), exactly to the end
//! ```
//!
//! A message is at most [`MAX_MESSAGE_BYTES`] long (checked before
//! decoding); lists inside it have their own limits, checked right after.
//! Signed documents (manifests, reports, rollout commands) and chunk
//! indexes travel as their own encoded bytes and are decoded by their own
//! crates: one format, one place.

use alloc::vec::Vec;

use meshota_manifest::Hash;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest encoded message accepted: a chunk (at most 1 MiB) with room, or
/// the chunk index of a multi-GiB image.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most releases listed in one summary.
pub const MAX_SUMMARY_RELEASES: usize = 256;
/// Most chunk ordinals in one availability update.
pub const MAX_HAVE_ORDINALS: usize = 4096;
/// Largest availability bitmap (one bit per chunk of an index).
pub const MAX_BITMAP_BYTES: usize = (1 << 20) / 8;

/// Every message of the mesh protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Anti-entropy: the ids of every verified release manifest the sender
    /// holds, sorted, and its installed release. Sent on Trickle timing.
    Summary {
        /// Manifest ids, ascending.
        releases: Vec<Hash>,
        /// The sender's running release, if any.
        installed: Option<Hash>,
    },
    /// Asks for a signed manifest by id.
    GetManifest {
        /// The manifest id.
        id: Hash,
    },
    /// A signed release manifest (its file bytes).
    Manifest {
        /// Encoded signed manifest.
        #[serde(with = "byte_string")]
        bytes: Vec<u8>,
    },
    /// Asks for a chunk index blob, or a patch index blob, by its hash.
    GetIndex {
        /// The index id.
        id: Hash,
    },
    /// A chunk index blob or a patch index blob (the receiver tells them
    /// apart by hash: a manifest it holds names either).
    Index {
        /// Encoded chunk index.
        #[serde(with = "byte_string")]
        bytes: Vec<u8>,
    },
    /// Asks for the sender's full availability bitmap of a release (or of
    /// a patch: the field then holds the patch id, and only a node holding
    /// the patch index answers), and to be told of new chunks (pieces) of
    /// it from now on.
    GetHave {
        /// The release (manifest id) or patch (patch index id).
        release: Hash,
    },
    /// The full availability bitmap of a release: bit i set = the sender
    /// holds chunk i of the release's index (LSB first in each byte); for
    /// a patch, piece i of its patch index.
    Have {
        /// The release or patch.
        release: Hash,
        /// The bitmap.
        #[serde(with = "byte_string")]
        bitmap: Vec<u8>,
    },
    /// Chunks of a release (pieces of a patch) the sender gained since its
    /// last update.
    HaveMore {
        /// The release or patch.
        release: Hash,
        /// Chunk ordinals in the release's index (piece positions in a patch index).
        ordinals: Vec<u32>,
    },
    /// Asks for one chunk, or one patch piece, by hash.
    GetChunk {
        /// Request id, echoed in the answer.
        request: u32,
        /// The chunk.
        hash: Hash,
    },
    /// A chunk's bytes.
    Chunk {
        /// The request answered.
        request: u32,
        /// The chunk's id (the receiver re-hashes the bytes).
        hash: Hash,
        /// The bytes.
        #[serde(with = "byte_string")]
        data: Vec<u8>,
    },
    /// The sender cannot serve the chunk (no longer has it, or is busy).
    NoChunk {
        /// The request answered.
        request: u32,
        /// The chunk.
        hash: Hash,
    },
    /// The sender holds the chunk but will not send it now: its upload is
    /// the bottleneck and the chunk recently went to another peer, which
    /// can pass it on. Unlike [`Message::NoChunk`] the sender still
    /// advertises the chunk: ask again later, or ask someone else.
    Busy {
        /// The request answered.
        request: u32,
        /// The chunk.
        hash: Hash,
    },
    /// A signed node report, relayed toward gateways.
    Report {
        /// Encoded signed node report.
        #[serde(with = "byte_string")]
        bytes: Vec<u8>,
    },
    /// A signed rollout command.
    Rollout {
        /// Encoded signed rollout command.
        #[serde(with = "byte_string")]
        bytes: Vec<u8>,
    },
}

impl Message {
    /// Encodes the message with its version byte.
    ///
    /// # Errors
    /// [`Error::Encode`] (not expected for valid values).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(64);
        out.push(PROTOCOL_VERSION);
        postcard::to_extend(self, out).map_err(|_| Error::Encode)
    }

    /// Decodes a message: size limit first, then version, then the body
    /// (which must end exactly at the end of the input), then list limits.
    ///
    /// # Errors
    /// [`Error::Oversize`], [`Error::Truncated`], [`Error::UnsupportedProtocol`],
    /// [`Error::Malformed`], [`Error::LimitExceeded`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Error::Oversize {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let Some((&version, body)) = bytes.split_first() else {
            return Err(Error::Truncated);
        };
        if version != PROTOCOL_VERSION {
            return Err(Error::UnsupportedProtocol { found: version });
        }
        let (msg, rest): (Self, &[u8]) = postcard::take_from_bytes(body).map_err(|e| match e {
            postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
            _ => Error::Malformed,
        })?;
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        msg.check_limits()?;
        Ok(msg)
    }

    fn check_limits(&self) -> Result<(), Error> {
        let check = |what: &'static str, count: usize, max: usize| {
            if count > max {
                Err(Error::LimitExceeded { what, count, max })
            } else {
                Ok(())
            }
        };
        match self {
            Self::Summary { releases, .. } => {
                check("summary releases", releases.len(), MAX_SUMMARY_RELEASES)
            }
            Self::Have { bitmap, .. } => check("bitmap bytes", bitmap.len(), MAX_BITMAP_BYTES),
            Self::HaveMore { ordinals, .. } => {
                check("have ordinals", ordinals.len(), MAX_HAVE_ORDINALS)
            }
            _ => Ok(()),
        }
    }

    /// A short name for logs and metrics.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Summary { .. } => "summary",
            Self::GetManifest { .. } => "get-manifest",
            Self::Manifest { .. } => "manifest",
            Self::GetIndex { .. } => "get-index",
            Self::Index { .. } => "index",
            Self::GetHave { .. } => "get-have",
            Self::Have { .. } => "have",
            Self::HaveMore { .. } => "have-more",
            Self::GetChunk { .. } => "get-chunk",
            Self::Chunk { .. } => "chunk",
            Self::NoChunk { .. } => "no-chunk",
            Self::Busy { .. } => "busy",
            Self::Report { .. } => "report",
            Self::Rollout { .. } => "rollout",
        }
    }
}

/// Encodes the answer to a [`Message::GetChunk`]: drivers call this after
/// reading the chunk the core told them to serve.
///
/// # Errors
/// [`Error::Encode`].
pub fn chunk_response(request: u32, hash: Hash, data: Vec<u8>) -> Result<Vec<u8>, Error> {
    Message::Chunk {
        request,
        hash,
        data,
    }
    .encode()
}

/// Serialises `Vec<u8>` fields as one byte string. In postcard this is the
/// same wire form as a sequence of `u8` (a varint length, then the raw
/// bytes), decoded in one copy instead of one visit per byte.
mod byte_string {
    use alloc::vec::Vec;
    use core::fmt;

    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}
