//! Chunk indexes: the ordered chunk list of one image, as a versioned,
//! size-limited, canonical postcard document.
//!
//! Wire form: `b"MOTA"`, format version [`INDEX_VERSION`], kind byte
//! [`KIND_CHUNK_INDEX`], then the postcard encoding of
//! `(params, chunks, total_size, image_hash)`. Decoding accepts exactly the
//! bytes [`ChunkIndex::encode`] produces for some valid index, so an index's
//! content address ([`ChunkIndex::id`]) is unique.

use meshota_manifest::{ChunkingParams, Hash, frame};
use serde::{Deserialize, Serialize};

use crate::chunking::check_params;
use crate::error::{Error, Result};

/// The four bytes every meshota document starts with.
pub const MAGIC: [u8; 4] = frame::MAGIC;
/// The chunk-index format version this build writes and reads.
pub const INDEX_VERSION: u8 = frame::FORMAT_VERSION;
/// The document-kind byte of a chunk index.
pub const KIND_CHUNK_INDEX: u8 = frame::Kind::ChunkIndex as u8;
/// Header length: magic, version byte, kind byte.
pub const HEADER_LEN: usize = frame::HEADER_LEN;
/// Most chunks one index may list (64 GiB at the default 64 KiB average).
pub const MAX_INDEX_CHUNKS: usize = 1 << 20;
/// Longest encoded index accepted, checked before anything is decoded:
/// header, parameters and sizes, plus at most 37 bytes per chunk entry.
pub const MAX_INDEX_BYTES: usize = HEADER_LEN + 96 + MAX_INDEX_CHUNKS * 37;

/// One entry of a chunk index. Invariant (in a valid index):
/// `1 <= len <= params.max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub hash: Hash,
    /// The chunk's length in bytes.
    pub len: u32,
}

/// The ordered chunks of one image with the parameters that cut them.
///
/// Invariants (checked by [`ChunkIndex::new`] and [`ChunkIndex::decode`]):
/// the parameters are valid, there are at most [`MAX_INDEX_CHUNKS`] chunks,
/// each is 1..=`max_size` bytes long, and the lengths sum to `total_size`.
/// `image_hash` is the BLAKE3 of the whole image (checked at assembly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkIndex {
    params: ChunkingParams,
    chunks: Vec<ChunkRef>,
    total_size: u64,
    image_hash: Hash,
}

impl ChunkIndex {
    /// An index over `chunks`; `total_size` is their summed length.
    ///
    /// # Errors
    /// [`Error::InvalidChunkingParams`] or [`Error::IndexMalformed`] when an
    /// invariant does not hold.
    pub fn new(params: ChunkingParams, chunks: Vec<ChunkRef>, image_hash: Hash) -> Result<Self> {
        let total_size = chunks.iter().map(|c| u64::from(c.len)).sum();
        let index = Self {
            params,
            chunks,
            total_size,
            image_hash,
        };
        index.check()?;
        Ok(index)
    }

    /// The chunking parameters that cut this image.
    #[must_use]
    pub const fn params(&self) -> &ChunkingParams {
        &self.params
    }

    /// The chunks in image order (a chunk may repeat).
    #[must_use]
    pub fn chunks(&self) -> &[ChunkRef] {
        &self.chunks
    }

    /// The image length in bytes (the sum of chunk lengths).
    #[must_use]
    pub const fn total_size(&self) -> u64 {
        self.total_size
    }

    /// The BLAKE3 of the whole image.
    #[must_use]
    pub const fn image_hash(&self) -> Hash {
        self.image_hash
    }

    fn check(&self) -> Result<()> {
        check_params(&self.params)?;
        let malformed = |reason: String| Err(Error::IndexMalformed { reason });
        if self.chunks.len() > MAX_INDEX_CHUNKS {
            return malformed(format!(
                "{} chunks, limit {MAX_INDEX_CHUNKS}",
                self.chunks.len()
            ));
        }
        let mut sum: u64 = 0;
        for (i, c) in self.chunks.iter().enumerate() {
            if c.len == 0 || c.len > self.params.max_size {
                return malformed(format!(
                    "chunk {i} has length {}, outside 1..={}",
                    c.len, self.params.max_size
                ));
            }
            sum += u64::from(c.len);
        }
        if sum != self.total_size {
            return malformed(format!(
                "chunk lengths sum to {sum}, total_size says {}",
                self.total_size
            ));
        }
        Ok(())
    }

    /// The canonical encoding: header then postcard body. Deterministic: equal
    /// indexes encode to equal bytes.
    ///
    /// # Errors
    /// [`Error::IndexMalformed`] if serialisation fails (not expected for a
    /// valid index).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64 + self.chunks.len() * 37);
        out.extend_from_slice(&MAGIC);
        out.push(INDEX_VERSION);
        out.push(KIND_CHUNK_INDEX);
        postcard::to_extend(self, out).map_err(|e| Error::IndexMalformed {
            reason: e.to_string(),
        })
    }

    /// The index's content address: BLAKE3 of [`ChunkIndex::encode`].
    ///
    /// # Errors
    /// As [`ChunkIndex::encode`].
    pub fn id(&self) -> Result<Hash> {
        Ok(Hash::of(&self.encode()?))
    }

    /// Decodes and checks an encoded index. The length limit is checked
    /// before anything else; only the canonical encoding of a valid index is
    /// accepted. Never panics on any input.
    ///
    /// # Errors
    /// [`Error::IndexTooLarge`], [`Error::IndexTruncated`], [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::WrongKind`],
    /// [`Error::IndexMalformed`], [`Error::InvalidChunkingParams`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(Error::IndexTooLarge {
                len: bytes.len(),
                max: MAX_INDEX_BYTES,
            });
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::IndexTruncated {
                len: bytes.len(),
                what: "header needs 6 bytes",
            });
        };
        let magic = [header[0], header[1], header[2], header[3]];
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        if header[4] != INDEX_VERSION {
            return Err(Error::UnsupportedVersion {
                found: header[4],
                supported: INDEX_VERSION,
            });
        }
        if header[5] != KIND_CHUNK_INDEX {
            return Err(Error::WrongKind {
                found: header[5],
                expected: KIND_CHUNK_INDEX,
            });
        }
        let (index, rest): (Self, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => Error::IndexTruncated {
                    len: bytes.len(),
                    what: "body ends early",
                },
                other => Error::IndexMalformed {
                    reason: other.to_string(),
                },
            })?;
        if !rest.is_empty() {
            return Err(Error::IndexMalformed {
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        index.check()?;
        if !is_canonical(&index, body) {
            return Err(Error::IndexMalformed {
                reason: "not in canonical encoding".into(),
            });
        }
        Ok(index)
    }
}

/// Whether `value` encodes (postcard) to exactly `bytes`, compared byte by
/// byte as it is serialised, without allocating the encoding (a 1 GiB
/// image's index is ~2 MiB; a patch install loads it on a small device).
pub(crate) fn is_canonical<T: Serialize + ?Sized>(value: &T, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(
        value,
        Compare {
            rest: bytes,
            equal: true,
        },
    )
    .unwrap_or(false)
}

/// A postcard output that compares instead of storing.
struct Compare<'a> {
    rest: &'a [u8],
    equal: bool,
}

impl postcard::ser_flavors::Flavor for Compare<'_> {
    type Output = bool;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        match self.rest.split_first() {
            Some((&b, rest)) if self.equal && b == data => self.rest = rest,
            _ => self.equal = false,
        }
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.split_at_checked(data.len()) {
            Some((head, rest)) if self.equal && head == data => self.rest = rest,
            _ => self.equal = false,
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.equal && self.rest.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::DEFAULT_PARAMS;
    use proptest::prelude::*;

    fn sample() -> ChunkIndex {
        let chunks = vec![
            ChunkRef {
                hash: Hash::of(b"a"),
                len: 20_000,
            },
            ChunkRef {
                hash: Hash::of(b"b"),
                len: 60_000,
            },
            ChunkRef {
                hash: Hash::of(b"a"),
                len: 20_000,
            },
        ];
        ChunkIndex::new(DEFAULT_PARAMS, chunks, Hash::of(b"image")).unwrap()
    }

    #[test]
    fn index_round_trips_and_encoding_is_deterministic() {
        let i = sample();
        let a = i.encode().unwrap();
        assert_eq!(&a[..6], b"MOTA\x01\x20");
        assert_eq!(ChunkIndex::decode(&a).unwrap(), i);
        assert_eq!(sample().encode().unwrap(), a);
        assert_eq!(i.id().unwrap(), Hash::of(&a));
        assert_eq!(i.total_size(), 100_000);
    }

    #[test]
    fn decode_rejects_every_truncation_with_a_typed_error() {
        let a = sample().encode().unwrap();
        for n in 0..a.len() {
            match ChunkIndex::decode(&a[..n]) {
                Err(Error::IndexTruncated { .. }) => {}
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_rejects_oversize_input_before_parsing() {
        let big = vec![0u8; MAX_INDEX_BYTES + 1];
        assert!(matches!(
            ChunkIndex::decode(&big),
            Err(Error::IndexTooLarge { .. })
        ));
    }

    #[test]
    fn decode_rejects_wrong_magic_version_kind_and_trailing_bytes() {
        let a = sample().encode().unwrap();
        let mut m = a.clone();
        m[0] = b'X';
        assert!(matches!(
            ChunkIndex::decode(&m),
            Err(Error::BadMagic { .. })
        ));
        let mut v = a.clone();
        v[4] = 2;
        assert!(matches!(
            ChunkIndex::decode(&v),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
        let mut k = a.clone();
        k[5] = 33;
        assert!(matches!(
            ChunkIndex::decode(&k),
            Err(Error::WrongKind { found: 33, .. })
        ));
        let mut t = a;
        t.push(0);
        assert!(matches!(
            ChunkIndex::decode(&t),
            Err(Error::IndexMalformed { .. })
        ));
    }

    #[test]
    fn decode_rejects_lengths_that_do_not_sum_to_total_size() {
        let mut i = sample();
        i.total_size += 1;
        let bytes = i.encode().unwrap();
        assert!(matches!(
            ChunkIndex::decode(&bytes),
            Err(Error::IndexMalformed { .. })
        ));
    }

    #[test]
    fn canonical_check_compares_without_allocating_and_rejects_padding() {
        let i = sample();
        let body = &i.encode().unwrap()[HEADER_LEN..];
        assert!(is_canonical(&i, body));
        assert!(!is_canonical(&i, &body[..body.len() - 1]));
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(!is_canonical(&i, &longer));
        let mut changed = body.to_vec();
        changed[0] ^= 1;
        assert!(!is_canonical(&i, &changed));
    }

    #[test]
    fn new_rejects_chunk_longer_than_max_size() {
        let chunks = vec![ChunkRef {
            hash: Hash::of(b"x"),
            len: DEFAULT_PARAMS.max_size + 1,
        }];
        assert!(ChunkIndex::new(DEFAULT_PARAMS, chunks, Hash::of(b"")).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoding_random_bytes_as_a_chunk_index_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ChunkIndex::decode(&bytes);
        }

        #[test]
        fn decoding_random_bodies_after_a_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"MOTA\x01\x20".to_vec();
            bytes.extend_from_slice(&body);
            let _ = ChunkIndex::decode(&bytes);
        }

        #[test]
        fn mutating_one_byte_of_a_valid_index_never_panics(pos in 0usize..200, val in any::<u8>()) {
            let mut a = sample().encode().unwrap();
            let p = pos % a.len();
            a[p] = val;
            let _ = ChunkIndex::decode(&a);
        }
    }
}
