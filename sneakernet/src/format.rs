//! The bundle file format, byte by byte (ARCHITECTURE.md repeats it).
//!
//! ```text
//! header
//!   0..6    "MOTA" 0x01 0x40             frame header, kind 64 = bundle
//!   6       0x01                         bundle format version
//!   7       flags                        bit 0: encrypted; other bits 0
//!   8..12   u32 LE R                     recipients: 0 if plain, 1..=64 if encrypted
//!   12..    R stanzas of 1,168 bytes     (encrypted only)
//!             32    recipient id = BLAKE3(the recipient's ML-KEM-768 encapsulation key)
//!             1088  ML-KEM-768 ciphertext
//!             48    content key sealed with ChaCha20-Poly1305 (32 + 16 tag)
//! records, each (plain bundle)
//!   u8 kind | u32 LE length L | 32-byte id | L payload bytes
//! records, each (encrypted bundle)
//!   u32 LE length C | C bytes: ChaCha20-Poly1305 of (kind | id | payload)
//!   under the content key, nonce = u64 LE record number ‖ 4 zero bytes,
//!   associated data = BLAKE3(header bytes)
//! ```
//!
//! Record kinds, in this order (kinds never decrease; ids never repeat within
//! a kind): 1 trust root, 2 release manifest, 3 chunk index, 4 chunk, and
//! last 255 end. Payloads: the signed documents and the encoded index as
//! they are stored; a chunk as `u8 flags (bit 0: zstd) | u32 LE raw length |
//! bytes`, its id the BLAKE3 of the raw content (patch indexes and patch
//! pieces are chunks of the store and travel as chunks). Every other id is
//! the BLAKE3 of the payload. The end record's id is the BLAKE3 of every
//! file byte before it and its payload is the u64 LE count of records before
//! it: a file that does not end right after a matching end record is
//! truncated or corrupt.

use meshota_blobstore::{MAX_CHUNK_BYTES, index::MAX_INDEX_BYTES};
use meshota_manifest::frame;
use meshota_manifest::limits::{MAX_MANIFEST_BYTES, MAX_TRUST_ROOT_BYTES};

/// Bundle format version this build writes and reads.
pub const BUNDLE_VERSION: u8 = 1;
/// Fixed part of the header, before the stanzas.
pub const FIXED_HEADER_LEN: usize = 12;
/// Header flag: the records are encrypted.
pub const FLAG_ENCRYPTED: u8 = 1;
/// Most recipients one bundle may name.
pub const MAX_RECIPIENTS: usize = 64;
/// ML-KEM-768 ciphertext length.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// ML-KEM-768 encapsulation key length.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// One recipient stanza: id, KEM ciphertext, sealed content key.
pub const STANZA_LEN: usize = 32 + KEM_CIPHERTEXT_LEN + 32 + TAG_LEN;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes before a plain record's payload: kind, length, id.
pub const RECORD_HEAD_LEN: usize = 1 + 4 + 32;
/// Chunk payload prefix: flags and raw length.
pub const CHUNK_PREFIX_LEN: usize = 5;

/// What a record holds. The discriminants are the bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// A signed trust root.
    TrustRoot = 1,
    /// A signed release manifest.
    Manifest = 2,
    /// An encoded chunk index.
    ChunkIndex = 3,
    /// A chunk (or a patch index or patch piece, which are stored as chunks).
    Chunk = 4,
    /// The end record.
    End = 255,
}

impl RecordKind {
    /// The kind a byte names, if any.
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::TrustRoot,
            2 => Self::Manifest,
            3 => Self::ChunkIndex,
            4 => Self::Chunk,
            255 => Self::End,
            _ => return None,
        })
    }

    /// Largest payload a record of this kind may have.
    #[must_use]
    pub const fn max_payload(self) -> usize {
        match self {
            Self::TrustRoot => MAX_TRUST_ROOT_BYTES,
            Self::Manifest => MAX_MANIFEST_BYTES,
            Self::ChunkIndex => MAX_INDEX_BYTES,
            // zstd's worst case adds well under 1 KiB per 4 MiB frame.
            Self::Chunk => CHUNK_PREFIX_LEN + MAX_CHUNK_BYTES + 64 * 1024,
            Self::End => 8,
        }
    }

    /// Its name in messages and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TrustRoot => "trust root",
            Self::Manifest => "release manifest",
            Self::ChunkIndex => "chunk index",
            Self::Chunk => "chunk",
            Self::End => "end record",
        }
    }
}

impl core::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The fixed header bytes for a bundle with `recipients` stanzas to follow.
#[must_use]
pub fn fixed_header(encrypted: bool, recipients: u32) -> [u8; FIXED_HEADER_LEN] {
    let mut h = [0u8; FIXED_HEADER_LEN];
    h[..frame::HEADER_LEN].copy_from_slice(&frame::header(frame::Kind::Bundle));
    h[6] = BUNDLE_VERSION;
    h[7] = if encrypted { FLAG_ENCRYPTED } else { 0 };
    h[8..12].copy_from_slice(&recipients.to_le_bytes());
    h
}

/// What a fixed header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Whether records are encrypted.
    pub encrypted: bool,
    /// Number of recipient stanzas that follow.
    pub recipients: usize,
}

/// Parses the fixed header; the reason string names what is wrong.
///
/// # Errors
/// A description of the first problem found.
pub fn parse_fixed_header(h: &[u8; FIXED_HEADER_LEN]) -> Result<FixedHeader, String> {
    let kind = frame::peek_kind(h).map_err(|e| e.to_string())?;
    if kind != frame::Kind::Bundle as u8 {
        return Err(match frame::Kind::from_byte(kind) {
            Some(k) => format!("this is a meshota {k} file, not a bundle"),
            None => format!("unknown file kind {kind}"),
        });
    }
    if h[6] != BUNDLE_VERSION {
        return Err(format!(
            "bundle format version {} (this build reads {BUNDLE_VERSION})",
            h[6]
        ));
    }
    let flags = h[7];
    if flags & !FLAG_ENCRYPTED != 0 {
        return Err(format!("unknown header flags {flags:#04x}"));
    }
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    let recipients = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    if encrypted && !(1..=MAX_RECIPIENTS).contains(&recipients) {
        return Err(format!(
            "an encrypted bundle names 1 to {MAX_RECIPIENTS} recipients, not {recipients}"
        ));
    }
    if !encrypted && recipients != 0 {
        return Err(format!(
            "a plain bundle names no recipients, not {recipients}"
        ));
    }
    Ok(FixedHeader {
        encrypted,
        recipients,
    })
}

/// The AEAD nonce of record number `n`.
#[must_use]
pub fn record_nonce(n: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header_round_trips_and_refuses_other_kinds_and_flags() {
        let h = fixed_header(true, 2);
        assert_eq!(
            parse_fixed_header(&h).unwrap(),
            FixedHeader {
                encrypted: true,
                recipients: 2
            }
        );
        let mut bad = h;
        bad[7] = 0x03;
        assert!(parse_fixed_header(&bad).unwrap_err().contains("flags"));
        let mut plain_with_recipients = fixed_header(false, 0);
        plain_with_recipients[8] = 1;
        assert!(parse_fixed_header(&plain_with_recipients).is_err());
        let mut manifest = h;
        manifest[5] = frame::Kind::ReleaseManifest as u8;
        assert!(
            parse_fixed_header(&manifest)
                .unwrap_err()
                .contains("release-manifest")
        );
    }

    #[test]
    fn record_kinds_round_trip_through_their_bytes() {
        for k in [
            RecordKind::TrustRoot,
            RecordKind::Manifest,
            RecordKind::ChunkIndex,
            RecordKind::Chunk,
            RecordKind::End,
        ] {
            assert_eq!(RecordKind::from_byte(k as u8), Some(k));
        }
        assert_eq!(RecordKind::from_byte(5), None);
    }
}
