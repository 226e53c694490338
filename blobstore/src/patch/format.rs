//! The patch index: which pieces rebuild which chunks of one target index
//! from one base image.
//!
//! Wire form: `b"MOTA"`, format version 1, kind [`KIND_PATCH_INDEX`] (33),
//! then the postcard encoding of
//! `(base_image_hash, base_size, target_index, pieces: [(hash, size, first, count)])`.
//! Decoding checks the length limit before parsing, accepts only the
//! canonical encoding of a valid index (so its content address, the
//! manifest's `PatchRef.patch`, is unique), and never panics.

use meshota_manifest::{Hash, frame};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{MAX_PATCH_PIECES, MAX_PIECE_BYTES, MAX_PIECE_OUTPUT};
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, MAX_INDEX_CHUNKS};

/// The document-kind byte of a patch index.
pub const KIND_PATCH_INDEX: u8 = frame::Kind::PatchIndex as u8;
/// Longest encoded patch index accepted, checked before decoding: header,
/// three fixed fields, and at most 52 bytes per piece entry. Below the
/// store's chunk limit, so an index is stored and sent like a chunk.
pub const MAX_PATCH_INDEX_BYTES: usize = frame::HEADER_LEN + 96 + MAX_PATCH_PIECES * 52;

const WHAT: &str = "patch index";

/// One piece of a patch. Invariant (in a valid index): `1 <= size <=`
/// [`MAX_PIECE_BYTES`], `count >= 1`, and `first + count` does not pass the
/// target index's chunk count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PieceRef {
    /// BLAKE3 of the encoded piece blob (its content address).
    pub hash: Hash,
    /// Encoded piece size in bytes (what crosses the network).
    pub size: u32,
    /// Ordinal of the first target chunk the piece produces.
    pub first: u32,
    /// How many consecutive target chunks it produces.
    pub count: u32,
}

impl PieceRef {
    /// The ordinals this piece produces, `first..first + count`.
    #[must_use]
    pub fn ordinals(&self) -> std::ops::Range<usize> {
        let first = self.first as usize;
        first..first.saturating_add(self.count as usize)
    }
}

/// A patch from one base image to one target chunk index.
///
/// Invariants (checked by [`PatchIndex::new`] and [`PatchIndex::decode`]):
/// at most [`MAX_PATCH_PIECES`] pieces, each valid as [`PieceRef`] says,
/// sorted by `first` with no two ranges overlapping. [`PatchIndex::check_target`]
/// adds the checks that need the target index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchIndex {
    base_image_hash: Hash,
    base_size: u64,
    target_index: Hash,
    pub(crate) pieces: Vec<PieceRef>,
}

impl PatchIndex {
    /// A patch index over `pieces`.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] when an invariant does not hold.
    pub fn new(
        base_image_hash: Hash,
        base_size: u64,
        target_index: Hash,
        pieces: Vec<PieceRef>,
    ) -> Result<Self> {
        let p = Self {
            base_image_hash,
            base_size,
            target_index,
            pieces,
        };
        p.check()?;
        Ok(p)
    }

    /// BLAKE3 of the base image the pieces apply to.
    #[must_use]
    pub const fn base_image_hash(&self) -> Hash {
        self.base_image_hash
    }

    /// Length of the base image in bytes.
    #[must_use]
    pub const fn base_size(&self) -> u64 {
        self.base_size
    }

    /// Id of the chunk index the pieces rebuild.
    #[must_use]
    pub const fn target_index(&self) -> Hash {
        self.target_index
    }

    /// The pieces, sorted by their first ordinal, ranges disjoint.
    #[must_use]
    pub fn pieces(&self) -> &[PieceRef] {
        &self.pieces
    }

    /// The distinct ids of the chunks of `target` the pieces make (the
    /// chunks a node applying this patch gets from it), in id order.
    /// Ordinals past `target`'s end are skipped.
    #[must_use]
    pub fn chunks_made(&self, target: &ChunkIndex) -> std::collections::BTreeSet<Hash> {
        self.pieces
            .iter()
            .flat_map(|p| target.chunks().get(p.ordinals()).unwrap_or_default())
            .map(|c| c.hash)
            .collect()
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(malformed(reason));
        if self.pieces.len() > MAX_PATCH_PIECES {
            return bad(format!(
                "{} pieces, limit {MAX_PATCH_PIECES}",
                self.pieces.len()
            ));
        }
        let mut next_free = 0u64;
        for (i, p) in self.pieces.iter().enumerate() {
            if p.size == 0 || p.size as usize > MAX_PIECE_BYTES {
                return bad(format!(
                    "piece {i} has size {}, outside 1..={MAX_PIECE_BYTES}",
                    p.size
                ));
            }
            if p.count == 0 || p.count as usize > MAX_PIECE_OUTPUT {
                return bad(format!("piece {i} produces {} chunks", p.count));
            }
            let end = u64::from(p.first) + u64::from(p.count);
            if u64::from(p.first) < next_free || end > MAX_INDEX_CHUNKS as u64 {
                return bad(format!(
                    "piece {i} covers chunks {}..{end}, overlapping or out of order",
                    p.first
                ));
            }
            next_free = end;
        }
        Ok(())
    }

    /// Checks the index against the target it claims to rebuild: the id
    /// matches, every piece's range lies inside the index, and no piece
    /// produces more than [`MAX_PIECE_OUTPUT`] bytes.
    ///
    /// # Errors
    /// [`Error::PatchTargetMismatch`], [`Error::PatchMalformed`].
    pub fn check_target(&self, target: &ChunkIndex, target_id: &Hash) -> Result<()> {
        if self.target_index != *target_id {
            return Err(Error::PatchTargetMismatch {
                expected: self.target_index,
                actual: *target_id,
            });
        }
        for (i, p) in self.pieces.iter().enumerate() {
            let Some(chunks) = target.chunks().get(p.ordinals()) else {
                return Err(malformed(format!(
                    "piece {i} covers chunks {:?}, the target has {}",
                    p.ordinals(),
                    target.chunks().len()
                )));
            };
            let out: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
            if out > MAX_PIECE_OUTPUT as u64 {
                return Err(malformed(format!(
                    "piece {i} would produce {out} bytes, limit {MAX_PIECE_OUTPUT}"
                )));
            }
        }
        Ok(())
    }

    /// The canonical encoding: header then postcard body.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] if serialisation fails (not expected).
    pub fn encode(&self) -> Result<Vec<u8>> {
        frame::seal(frame::Kind::PatchIndex, self).map_err(|e| malformed(e.to_string()))
    }

    /// Decodes and checks an encoded patch index: the length limit first,
    /// then header, exact postcard body, canonical form, invariants. Never
    /// panics on any input.
    ///
    /// # Errors
    /// [`Error::PatchTooLarge`], [`Error::PatchTruncated`], [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::WrongKind`], [`Error::PatchMalformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let body = open_frame(bytes, frame::Kind::PatchIndex, MAX_PATCH_INDEX_BYTES, WHAT)?;
        let index: Self = decode_canonical(body, bytes.len(), WHAT)?;
        index.check()?;
        Ok(index)
    }
}

fn malformed(reason: String) -> Error {
    Error::PatchMalformed { what: WHAT, reason }
}

/// Checks size (first), magic, version and kind of a framed blob; returns
/// the payload.
pub(crate) fn open_frame<'a>(
    bytes: &'a [u8],
    kind: frame::Kind,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8]> {
    if bytes.len() > max {
        return Err(Error::PatchTooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let Some((header, body)) = bytes.split_first_chunk::<{ frame::HEADER_LEN }>() else {
        return Err(Error::PatchTruncated {
            what,
            len: bytes.len(),
        });
    };
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != frame::MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    if header[4] != frame::FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: header[4],
            supported: frame::FORMAT_VERSION,
        });
    }
    if header[5] != kind as u8 {
        return Err(Error::WrongKind {
            found: header[5],
            expected: kind as u8,
        });
    }
    Ok(body)
}

/// Decodes a postcard body that must fill `body` exactly and be in its
/// canonical encoding.
pub(crate) fn decode_canonical<T: Serialize + DeserializeOwned>(
    body: &[u8],
    total: usize,
    what: &'static str,
) -> Result<T> {
    let (value, rest): (T, &[u8]) = postcard::take_from_bytes(body).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::PatchTruncated { what, len: total },
        other => Error::PatchMalformed {
            what,
            reason: other.to_string(),
        },
    })?;
    if !rest.is_empty() {
        return Err(Error::PatchMalformed {
            what,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    if !crate::index::is_canonical(&value, body) {
        return Err(Error::PatchMalformed {
            what,
            reason: "not in canonical encoding".into(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PatchIndex {
        let piece = |n: u8, first, count| PieceRef {
            hash: Hash::of(&[n]),
            size: 1000 + u32::from(n),
            first,
            count,
        };
        PatchIndex::new(
            Hash::of(b"base"),
            123_456,
            Hash::of(b"target"),
            vec![piece(1, 0, 3), piece(2, 5, 1), piece(3, 6, 40)],
        )
        .unwrap()
    }

    #[test]
    fn patch_index_round_trips_with_kind_33_header() {
        let p = sample();
        let bytes = p.encode().unwrap();
        assert_eq!(&bytes[..6], b"MOTA\x01\x21");
        assert_eq!(PatchIndex::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn decode_rejects_every_truncation_with_a_typed_error() {
        let bytes = sample().encode().unwrap();
        for n in 0..bytes.len() {
            match PatchIndex::decode(&bytes[..n]) {
                Err(Error::PatchTruncated { .. }) => {}
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_rejects_oversize_input_before_parsing() {
        let big = vec![0u8; MAX_PATCH_INDEX_BYTES + 1];
        assert!(matches!(
            PatchIndex::decode(&big),
            Err(Error::PatchTooLarge { .. })
        ));
    }

    #[test]
    fn decode_rejects_a_chunk_index_and_trailing_bytes() {
        let mut k = sample().encode().unwrap();
        k[5] = 32;
        assert!(matches!(
            PatchIndex::decode(&k),
            Err(Error::WrongKind { found: 32, .. })
        ));
        let mut t = sample().encode().unwrap();
        t.push(0);
        assert!(matches!(
            PatchIndex::decode(&t),
            Err(Error::PatchMalformed { .. })
        ));
    }

    #[test]
    fn rejects_overlapping_or_unordered_pieces() {
        let p = sample();
        let mut pieces = p.pieces().to_vec();
        pieces[1].first = 2;
        assert!(PatchIndex::new(p.base_image_hash, p.base_size, p.target_index, pieces).is_err());
        let mut pieces = p.pieces().to_vec();
        pieces.swap(0, 2);
        assert!(PatchIndex::new(p.base_image_hash, p.base_size, p.target_index, pieces).is_err());
    }

    #[test]
    fn rejects_empty_or_oversize_pieces() {
        let p = sample();
        for (size, count) in [(0, 1), (MAX_PIECE_BYTES as u32 + 1, 1), (10, 0)] {
            let mut pieces = p.pieces().to_vec();
            pieces[0].size = size;
            pieces[0].count = count;
            assert!(
                PatchIndex::new(p.base_image_hash, p.base_size, p.target_index, pieces).is_err()
            );
        }
    }

    #[test]
    fn rejects_a_non_canonical_varint() {
        // Re-encode the base size (123456 = 0xC0 0xC4 0x07) with a padded
        // varint: same value, other bytes, so another content address.
        let bytes = sample().encode().unwrap();
        let at = 6 + 32;
        assert_eq!(&bytes[at..at + 3], &[0xC0, 0xC4, 0x07]);
        let mut padded = bytes[..at].to_vec();
        padded.extend_from_slice(&[0xC0, 0xC4, 0x87, 0x00]);
        padded.extend_from_slice(&bytes[at + 3..]);
        assert!(PatchIndex::decode(&padded).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoding_random_bytes_as_a_patch_index_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PatchIndex::decode(&bytes);
        }

        #[test]
        fn decoding_random_bodies_after_a_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"MOTA\x01\x21".to_vec();
            bytes.extend_from_slice(&body);
            let _ = PatchIndex::decode(&bytes);
        }

        #[test]
        fn mutating_one_byte_of_a_valid_patch_index_never_panics(pos in 0usize..400, val in any::<u8>()) {
            let mut a = sample().encode().unwrap();
            let p = pos % a.len();
            a[p] = val;
            let _ = PatchIndex::decode(&a);
        }
    }
}
