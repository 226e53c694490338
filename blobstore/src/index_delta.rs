//! Chunk index deltas: a target [`ChunkIndex`] written as runs of a base
//! chunk index plus the entries the base does not have.
//!
//! **Purpose.** A large image's chunk index (36 bytes an entry, ~150 KB for
//! 4,096 chunks) is too much for a slow link such as LoRa, but a node
//! updating from a base release already holds the base's chunk index, and a
//! release changes few chunks. An [`IndexDelta`] sends only the difference:
//! with one chunk changed in 4,096 it encodes to about a hundred bytes.
//!
//! **Trust.** A delta is *not* trusted. The receiver rebuilds the target
//! index with [`IndexDelta::apply`] and accepts it only if the rebuilt
//! index's [`ChunkIndex::id`] equals the id signed in the release manifest;
//! that check is the caller's. Everything here only ensures that hostile
//! bytes are refused cheaply and without panics or unbounded allocation.
//!
//! **Wire form.** `b"MOTA"`, format version 1, kind [`KIND_CHUNK_INDEX_DELTA`]
//! (35), then the postcard encoding of
//! `(base_index, params, image_hash, ops)`: `base_index` and `image_hash`
//! are 32 raw bytes, `params` is the target's [`ChunkingParams`], and `ops`
//! is a varint count followed by each [`DeltaOp`]: varint tag 0 for
//! `Base { first, count }` (two varints), tag 1 for `New(entries)` (a varint
//! count, then per entry 32 hash bytes and a varint length).
//!
//! **Determinism.** Every sender must produce byte-identical deltas for the
//! same (base, target) pair, so [`IndexDelta::between`] follows one fixed
//! greedy rule (documented there) and the encoding is canonical postcard.

use std::collections::HashMap;
use std::fmt;

use meshota_manifest::{ChunkingParams, Hash, frame};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::chunking::check_params;
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef, MAX_INDEX_BYTES, MAX_INDEX_CHUNKS};
use crate::patch::format::{decode_canonical, open_frame};

/// The document-kind byte of a chunk index delta.
pub const KIND_CHUNK_INDEX_DELTA: u8 = frame::Kind::ChunkIndexDelta as u8;

/// Longest encoded delta accepted, checked before anything is decoded: the
/// chunk index limit. Every delta [`IndexDelta::between`] produces fits:
/// besides the 6-byte header and at most 77 bytes of fixed fields and op
/// count, a `New` entry costs at most 35 bytes (32 + a 3-byte varint
/// length, since lengths are at most 1 MiB), a `New` op at most 4 bytes
/// more, and a `Base` op at most 7 bytes for at least one chunk; `New` ops
/// are never adjacent, so a delta costs under `87 + 37 * chunks` bytes,
/// below [`MAX_INDEX_BYTES`]. [`IndexDelta::encode`] checks it anyway.
pub const MAX_INDEX_DELTA_BYTES: usize = MAX_INDEX_BYTES;

/// Most ops one delta may carry. Every valid op yields at least one chunk,
/// so a valid delta never needs more than [`MAX_INDEX_CHUNKS`]; the bound
/// is enforced while decoding, before the op list grows past it.
pub const MAX_INDEX_DELTA_OPS: usize = MAX_INDEX_CHUNKS;

const WHAT: &str = "chunk index delta";

/// One run of target chunks.
///
/// Invariants (in a valid delta): a `Base` op has `count >= 1`, and
/// `first + count` does not pass the base index's chunk count (checked by
/// [`IndexDelta::apply`], which knows the base); a `New` op carries at least
/// one entry, each 1..=`params.max_size` bytes long, and never directly
/// follows another `New` op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaOp {
    /// Copy base chunks `first..first + count`, in order.
    Base {
        /// Ordinal of the first base chunk copied.
        first: u32,
        /// How many consecutive base chunks are copied.
        count: u32,
    },
    /// These entries, which the base does not have (at least not with this
    /// length), in order.
    New(Vec<ChunkRef>),
}

impl DeltaOp {
    /// How many target chunks this op yields.
    #[must_use]
    pub fn chunks(&self) -> usize {
        match self {
            Self::Base { count, .. } => *count as usize,
            Self::New(refs) => refs.len(),
        }
    }
}

/// A target chunk index written against a base chunk index.
///
/// Invariants (checked by [`IndexDelta::decode`], and true of every value
/// [`IndexDelta::between`] returns): `params` are valid chunking
/// parameters; there are at most [`MAX_INDEX_DELTA_OPS`] ops, each valid as
/// [`DeltaOp`] says; the ops yield at most [`MAX_INDEX_CHUNKS`] chunks and
/// no `Base` range reaches past [`MAX_INDEX_CHUNKS`]. Whether the `Base`
/// ranges lie inside the base, and whether the result is the index the
/// manifest signed, are checked when applying (the first by
/// [`IndexDelta::apply`], the second by its caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDelta {
    base_index: Hash,
    params: ChunkingParams,
    image_hash: Hash,
    #[serde(deserialize_with = "bounded_ops")]
    ops: Vec<DeltaOp>,
}

impl IndexDelta {
    /// The delta turning `base` into `target`; `base_index` is `base.id()`,
    /// `params` and `image_hash` are the target's.
    ///
    /// Deterministic (every sender produces the same ops, hence the same
    /// bytes): each distinct base entry (hash and length) is mapped to its
    /// **lowest** base ordinal; then the target's chunks are walked in order,
    /// and for each chunk `r`:
    /// 1. if the last op is `Base { first, count }` and base chunk
    ///    `first + count` exists and equals `r` (same hash and length), the
    ///    run is extended (`count += 1`);
    /// 2. else if `r` is in the base map, `Base { first: lowest ordinal,
    ///    count: 1 }` is pushed;
    /// 3. else `r` is appended to the last op if it is `New`, or
    ///    `New(vec![r])` is pushed.
    ///
    /// The greedy rule is not always the shortest delta (a run starting at a
    /// repeated chunk starts at its first occurrence even when a later one
    /// would extend further), but it is one pass, and its result is fixed.
    ///
    /// # Errors
    /// [`Error::IndexMalformed`] if `base` cannot be encoded to take its id
    /// (not expected for a valid index).
    pub fn between(base: &ChunkIndex, target: &ChunkIndex) -> Result<Self> {
        let base_index = base.id()?;
        let base_chunks = base.chunks();
        let mut lowest: HashMap<ChunkRef, u32> = HashMap::with_capacity(base_chunks.len());
        for (i, c) in base_chunks.iter().enumerate() {
            let ordinal = u32::try_from(i).map_err(|_| malformed(format!("base ordinal {i}")))?;
            lowest.entry(*c).or_insert(ordinal);
        }
        let mut ops: Vec<DeltaOp> = Vec::new();
        for r in target.chunks() {
            if let Some(DeltaOp::Base { first, count }) = ops.last_mut() {
                let next = *first as usize + *count as usize;
                if base_chunks.get(next) == Some(r) {
                    *count += 1;
                    continue;
                }
            }
            if let Some(&first) = lowest.get(r) {
                ops.push(DeltaOp::Base { first, count: 1 });
            } else if let Some(DeltaOp::New(refs)) = ops.last_mut() {
                refs.push(*r);
            } else {
                ops.push(DeltaOp::New(vec![*r]));
            }
        }
        Ok(Self {
            base_index,
            params: *target.params(),
            image_hash: target.image_hash(),
            ops,
        })
    }

    /// Id ([`ChunkIndex::id`]) of the base chunk index the ops refer to.
    #[must_use]
    pub const fn base_index(&self) -> Hash {
        self.base_index
    }

    /// The target's chunking parameters.
    #[must_use]
    pub const fn params(&self) -> &ChunkingParams {
        &self.params
    }

    /// The BLAKE3 of the whole target image.
    #[must_use]
    pub const fn image_hash(&self) -> Hash {
        self.image_hash
    }

    /// The ops, in target order; see [`DeltaOp`] for their invariants.
    #[must_use]
    pub fn ops(&self) -> &[DeltaOp] {
        &self.ops
    }

    /// How many target entries the delta carries itself (in `New` ops):
    /// the chunks the base index does not list.
    #[must_use]
    pub fn new_chunks(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                DeltaOp::New(refs) => refs.len(),
                DeltaOp::Base { .. } => 0,
            })
            .sum()
    }

    /// The canonical encoding: `MOTA` header of kind 35, then the postcard
    /// body. Deterministic: equal deltas encode to equal bytes.
    ///
    /// # Errors
    /// [`Error::IndexDeltaMalformed`] if serialisation fails or the result
    /// would exceed [`MAX_INDEX_DELTA_BYTES`] (neither expected for a delta
    /// from [`IndexDelta::between`]).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let bytes = frame::seal(frame::Kind::ChunkIndexDelta, self)
            .map_err(|e| malformed(e.to_string()))?;
        if bytes.len() > MAX_INDEX_DELTA_BYTES {
            return Err(malformed(format!(
                "encodes to {} bytes, limit {MAX_INDEX_DELTA_BYTES}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Decodes and checks an encoded delta: the length limit first
    /// ([`MAX_INDEX_DELTA_BYTES`]), then the header, a postcard body that
    /// fills the input exactly and is in canonical encoding (the op count
    /// bounded while reading), then the invariants. Never panics on any
    /// input. Does not need the base: ranges are checked by
    /// [`IndexDelta::apply`].
    ///
    /// # Errors
    /// [`Error::IndexDeltaTooLarge`], [`Error::IndexDeltaTruncated`],
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`],
    /// [`Error::WrongKind`], [`Error::IndexDeltaMalformed`],
    /// [`Error::InvalidChunkingParams`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let body = open_frame(
            bytes,
            frame::Kind::ChunkIndexDelta,
            MAX_INDEX_DELTA_BYTES,
            WHAT,
        )
        .map_err(as_delta_error)?;
        let delta: Self = decode_canonical(body, bytes.len(), WHAT).map_err(as_delta_error)?;
        delta.check()?;
        Ok(delta)
    }

    /// Rebuilds the target index from `base`.
    ///
    /// Checks, in order and before allocating the chunk list: `base.id()`
    /// equals [`IndexDelta::base_index`]; the ops yield at most
    /// [`MAX_INDEX_CHUNKS`] chunks; every `Base` range lies inside `base`.
    /// Then builds `ChunkIndex::new(params, chunks, image_hash)`, which
    /// checks the index invariants. The result is not yet trusted: the
    /// caller compares its `id()` with the signed one.
    ///
    /// # Errors
    /// [`Error::IndexDeltaBase`] for another base, [`Error::IndexDeltaMalformed`]
    /// for a range or total out of bounds, and [`ChunkIndex::new`]'s errors.
    pub fn apply(&self, base: &ChunkIndex) -> Result<ChunkIndex> {
        let actual = base.id()?;
        if actual != self.base_index {
            return Err(Error::IndexDeltaBase {
                expected: self.base_index,
                actual,
            });
        }
        let total: u64 = self.ops.iter().map(|op| op.chunks() as u64).sum();
        if total > MAX_INDEX_CHUNKS as u64 {
            return Err(malformed(format!(
                "ops yield {total} chunks, limit {MAX_INDEX_CHUNKS}"
            )));
        }
        let base_chunks = base.chunks();
        for (i, op) in self.ops.iter().enumerate() {
            if let DeltaOp::Base { first, count } = op {
                let end = u64::from(*first) + u64::from(*count);
                if end > base_chunks.len() as u64 {
                    return Err(malformed(format!(
                        "op {i} takes base chunks {first}..{end}, the base has {}",
                        base_chunks.len()
                    )));
                }
            }
        }
        let mut chunks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for op in &self.ops {
            match op {
                DeltaOp::Base { first, count } => {
                    let first = *first as usize;
                    let range = first..first + *count as usize;
                    let Some(run) = base_chunks.get(range) else {
                        return Err(malformed("base range out of bounds".into()));
                    };
                    chunks.extend_from_slice(run);
                }
                DeltaOp::New(refs) => chunks.extend_from_slice(refs),
            }
        }
        ChunkIndex::new(self.params, chunks, self.image_hash)
    }

    /// Whether `bytes` start with a `MOTA` header (current format version)
    /// of kind 35: a cheap peek that decodes nothing, for telling a delta
    /// from a whole chunk index (kind 32) on receipt.
    #[must_use]
    pub fn is_delta_frame(bytes: &[u8]) -> bool {
        bytes.starts_with(&frame::header(frame::Kind::ChunkIndexDelta))
    }

    fn check(&self) -> Result<()> {
        check_params(&self.params)?;
        if self.ops.len() > MAX_INDEX_DELTA_OPS {
            return Err(malformed(format!(
                "{} ops, limit {MAX_INDEX_DELTA_OPS}",
                self.ops.len()
            )));
        }
        let mut total = 0usize;
        let mut after_new = false;
        for (i, op) in self.ops.iter().enumerate() {
            match op {
                DeltaOp::Base { first, count } => {
                    let end = u64::from(*first) + u64::from(*count);
                    if *count == 0 {
                        return Err(malformed(format!("op {i} copies 0 base chunks")));
                    }
                    if end > MAX_INDEX_CHUNKS as u64 {
                        return Err(malformed(format!(
                            "op {i} takes base chunks {first}..{end}, past any index (limit {MAX_INDEX_CHUNKS})"
                        )));
                    }
                    after_new = false;
                }
                DeltaOp::New(refs) => {
                    if refs.is_empty() {
                        return Err(malformed(format!("op {i} carries no entries")));
                    }
                    if after_new {
                        return Err(malformed(format!(
                            "ops {} and {i} are adjacent New ops (one op in canonical form)",
                            i - 1
                        )));
                    }
                    if let Some((j, r)) = refs
                        .iter()
                        .enumerate()
                        .find(|(_, r)| r.len == 0 || r.len > self.params.max_size)
                    {
                        return Err(malformed(format!(
                            "op {i} entry {j} has length {}, outside 1..={}",
                            r.len, self.params.max_size
                        )));
                    }
                    after_new = true;
                }
            }
            total = total.saturating_add(op.chunks());
            if total > MAX_INDEX_CHUNKS {
                return Err(malformed(format!(
                    "ops yield more than {MAX_INDEX_CHUNKS} chunks"
                )));
            }
        }
        Ok(())
    }
}

fn malformed(reason: String) -> Error {
    Error::IndexDeltaMalformed { reason }
}

/// The shared frame helpers report in patch terms; a delta has its own.
fn as_delta_error(e: Error) -> Error {
    match e {
        Error::PatchTooLarge { len, max, .. } => Error::IndexDeltaTooLarge { len, max },
        Error::PatchTruncated { len, .. } => Error::IndexDeltaTruncated { len },
        Error::PatchMalformed { reason, .. } => Error::IndexDeltaMalformed { reason },
        other => other,
    }
}

/// Deserialises the op list, refusing more than [`MAX_INDEX_DELTA_OPS`]
/// ops before storing them (a 38 MB input of 3-byte ops would otherwise
/// grow a list of ~13 M ops, 32 bytes each).
fn bounded_ops<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<DeltaOp>, D::Error> {
    struct Ops;
    impl<'de> Visitor<'de> for Ops {
        type Value = Vec<DeltaOp>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_INDEX_DELTA_OPS} delta ops")
        }

        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let announced = seq.size_hint().unwrap_or(0);
            if announced > MAX_INDEX_DELTA_OPS {
                return Err(de::Error::invalid_length(announced, &self));
            }
            let mut ops = Vec::with_capacity(announced.min(4096));
            while let Some(op) = seq.next_element()? {
                if ops.len() == MAX_INDEX_DELTA_OPS {
                    return Err(de::Error::invalid_length(ops.len() + 1, &self));
                }
                ops.push(op);
            }
            Ok(ops)
        }
    }
    d.deserialize_seq(Ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::DEFAULT_PARAMS;
    use crate::index::HEADER_LEN;
    use proptest::prelude::*;

    /// A synthetic chunk entry: hash and length derived from `n`.
    fn r(n: u32) -> ChunkRef {
        ChunkRef {
            hash: Hash::of(&n.to_le_bytes()),
            len: 4096 + (n % 13) * 1000,
        }
    }

    /// An index over the entries `r(n)` for each `n`, with an image hash
    /// that differs with the list.
    fn index(ns: &[u32]) -> ChunkIndex {
        let bytes: Vec<u8> = ns.iter().flat_map(|n| n.to_le_bytes()).collect();
        ChunkIndex::new(
            DEFAULT_PARAMS,
            ns.iter().copied().map(r).collect(),
            Hash::of(&bytes),
        )
        .unwrap()
    }

    fn range(a: u32, b: u32) -> Vec<u32> {
        (a..b).collect()
    }

    /// `between`, encode, decode, `apply`: the rebuilt index has the
    /// target's id. Returns the delta.
    fn round_trip(base: &ChunkIndex, target: &ChunkIndex) -> IndexDelta {
        let delta = IndexDelta::between(base, target).unwrap();
        assert_eq!(delta.base_index(), base.id().unwrap());
        let bytes = delta.encode().unwrap();
        assert!(IndexDelta::is_delta_frame(&bytes));
        let decoded = IndexDelta::decode(&bytes).unwrap();
        assert_eq!(decoded, delta);
        let rebuilt = decoded.apply(base).unwrap();
        assert_eq!(rebuilt.id().unwrap(), target.id().unwrap());
        assert_eq!(&rebuilt, target);
        let carried: usize = delta.ops().iter().map(DeltaOp::chunks).sum();
        assert_eq!(carried, target.chunks().len());
        delta
    }

    fn base(first: u32, count: u32) -> DeltaOp {
        DeltaOp::Base { first, count }
    }

    fn new(ns: &[u32]) -> DeltaOp {
        DeltaOp::New(ns.iter().copied().map(r).collect())
    }

    fn small_pair() -> (ChunkIndex, ChunkIndex) {
        (index(&[1, 2, 3, 4]), index(&[1, 9, 3, 4, 10]))
    }

    fn malformed_reason<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::IndexDeltaMalformed { reason }) => reason,
            other => panic!("expected IndexDeltaMalformed, got {other:?}"),
        }
    }

    #[test]
    fn identical_indexes_give_one_base_run_and_no_new_entries() {
        let i = index(&range(0, 50));
        let d = round_trip(&i, &i);
        assert_eq!(d.ops(), &[base(0, 50)]);
        assert_eq!(d.new_chunks(), 0);
    }

    #[test]
    fn a_chunk_changed_in_the_middle_splits_the_run_around_one_new_entry() {
        let b = index(&range(0, 20));
        let mut t = range(0, 20);
        t[10] = 100;
        let d = round_trip(&b, &index(&t));
        assert_eq!(d.ops(), &[base(0, 10), new(&[100]), base(11, 9)]);
        assert_eq!(d.new_chunks(), 1);
    }

    #[test]
    fn inserted_chunks_are_carried_between_two_base_runs() {
        let b = index(&range(0, 10));
        let t = [range(0, 5), vec![100, 101], range(5, 10)].concat();
        let d = round_trip(&b, &index(&t));
        assert_eq!(d.ops(), &[base(0, 5), new(&[100, 101]), base(5, 5)]);
    }

    #[test]
    fn deleted_chunks_leave_two_base_runs_and_nothing_new() {
        let b = index(&range(0, 10));
        let t = [range(0, 3), range(6, 10)].concat();
        let d = round_trip(&b, &index(&t));
        assert_eq!(d.ops(), &[base(0, 3), base(6, 4)]);
        assert_eq!(d.new_chunks(), 0);
    }

    #[test]
    fn a_reordered_run_is_copied_from_where_the_base_has_it() {
        let b = index(&range(0, 10));
        let t = [range(0, 2), range(5, 8), range(2, 5), range(8, 10)].concat();
        let d = round_trip(&b, &index(&t));
        assert_eq!(d.ops(), &[base(0, 2), base(5, 3), base(2, 3), base(8, 2)]);
    }

    #[test]
    fn a_target_sharing_nothing_with_the_base_is_one_new_op() {
        let b = index(&range(0, 10));
        let d = round_trip(&b, &index(&range(100, 110)));
        assert_eq!(d.ops(), &[new(&range(100, 110))]);
        assert_eq!(d.new_chunks(), 10);
    }

    #[test]
    fn duplicate_hashes_extend_the_current_run_or_start_at_the_lowest_ordinal() {
        // Base: 1 2 1 2 3 1 (ordinals 0..6). Lowest ordinals: 1→0, 2→1, 3→4.
        let b = index(&[1, 2, 1, 2, 3, 1]);
        let t = index(&[1, 2, 3, 1, 1, 4, 2]);
        let d = round_trip(&b, &t);
        assert_eq!(
            d.ops(),
            &[base(0, 2), base(4, 2), base(0, 1), new(&[4]), base(1, 1)]
        );
    }

    #[test]
    fn a_base_entry_with_the_same_hash_but_another_length_is_not_reused() {
        let h = Hash::of(b"same");
        let mk = |len| {
            ChunkIndex::new(
                DEFAULT_PARAMS,
                vec![ChunkRef { hash: h, len }],
                Hash::of(&len.to_le_bytes()),
            )
            .unwrap()
        };
        let d = round_trip(&mk(100), &mk(200));
        assert_eq!(d.new_chunks(), 1);
    }

    #[test]
    fn empty_base_and_empty_target_round_trip() {
        let empty = index(&[]);
        assert_eq!(round_trip(&empty, &empty).ops(), &[]);
        let some = index(&range(0, 3));
        assert_eq!(round_trip(&empty, &some).ops(), &[new(&range(0, 3))]);
        assert_eq!(round_trip(&some, &empty).ops(), &[]);
    }

    #[test]
    fn between_is_deterministic_byte_for_byte() {
        let b = index(&[5, 1, 2, 1, 2, 3, 7, 7, 8]);
        let t = index(&[1, 2, 3, 9, 7, 7, 7, 5, 1, 10, 11, 8]);
        let first = IndexDelta::between(&b, &t).unwrap().encode().unwrap();
        for _ in 0..10 {
            // Each call builds a fresh HashMap with its own random seed.
            let again = IndexDelta::between(&b.clone(), &t.clone()).unwrap();
            assert_eq!(again.encode().unwrap(), first);
        }
    }

    #[test]
    fn the_wire_form_is_header_base_id_params_image_hash_then_ops() {
        let (b, t) = small_pair();
        let bytes = IndexDelta::between(&b, &t).unwrap().encode().unwrap();
        let mut want = b"MOTA\x01\x23".to_vec();
        want.extend_from_slice(b.id().unwrap().as_bytes());
        // FastCdc2020 = 0, then min 4096, avg 16384, max 65536 as varints.
        want.extend_from_slice(&[0, 0x80, 0x20, 0x80, 0x80, 0x01, 0x80, 0x80, 0x04]);
        want.extend_from_slice(t.image_hash().as_bytes());
        // 4 ops: Base{0,1}, New[r(9)], Base{2,2}, New[r(10)].
        want.extend_from_slice(&[4, 0, 0, 1, 1, 1]);
        want.extend_from_slice(r(9).hash.as_bytes());
        want.extend_from_slice(&[0xA8, 0x66]); // 13_096
        want.extend_from_slice(&[0, 2, 2, 1, 1]);
        want.extend_from_slice(r(10).hash.as_bytes());
        want.extend_from_slice(&[0x90, 0x6E]); // 14_096
        assert_eq!(bytes, want);
    }

    #[test]
    fn one_changed_chunk_in_4096_encodes_under_300_bytes() {
        let b = index(&range(0, 4096));
        let mut t = range(0, 4096);
        t[2000] = 1_000_000;
        let t = index(&t);
        let d = round_trip(&b, &t);
        assert_eq!(
            d.ops(),
            &[base(0, 2000), new(&[1_000_000]), base(2001, 2095)]
        );
        let delta_bytes = d.encode().unwrap().len();
        let index_bytes = t.encode().unwrap().len();
        eprintln!(
            "4096 chunks, 1 changed: delta {delta_bytes} bytes, full index {index_bytes} bytes"
        );
        assert!(delta_bytes < 300, "delta is {delta_bytes} bytes");
        assert!(
            index_bytes > 100 * delta_bytes,
            "index is {index_bytes} bytes"
        );
    }

    #[test]
    fn apply_refuses_another_base_with_the_typed_base_error() {
        let (b, t) = small_pair();
        let d = IndexDelta::between(&b, &t).unwrap();
        let other = index(&[1, 2, 3, 5]);
        match d.apply(&other) {
            Err(Error::IndexDeltaBase { expected, actual }) => {
                assert_eq!(expected, b.id().unwrap());
                assert_eq!(actual, other.id().unwrap());
            }
            other => panic!("expected IndexDeltaBase, got {other:?}"),
        }
    }

    #[test]
    fn apply_refuses_a_base_range_past_the_end_of_the_base() {
        let b = index(&range(0, 4));
        let d = IndexDelta {
            base_index: b.id().unwrap(),
            params: DEFAULT_PARAMS,
            image_hash: Hash::of(b"t"),
            ops: vec![base(2, 3)],
        };
        // Decoding cannot know the base, so it accepts the range...
        let decoded = IndexDelta::decode(&d.encode().unwrap()).unwrap();
        // ...and applying refuses it.
        let reason = malformed_reason(decoded.apply(&b));
        assert!(reason.contains("2..5"), "{reason}");
    }

    #[test]
    fn apply_checks_the_total_before_allocating() {
        let b = index(&range(0, 4));
        let d = IndexDelta {
            base_index: b.id().unwrap(),
            params: DEFAULT_PARAMS,
            image_hash: Hash::of(b"t"),
            ops: vec![base(0, u32::MAX), base(0, u32::MAX)],
        };
        let reason = malformed_reason(d.apply(&b));
        assert!(reason.contains("limit"), "{reason}");
    }

    #[test]
    fn decode_rejects_every_truncation_with_a_typed_error() {
        let (b, t) = small_pair();
        let bytes = IndexDelta::between(&b, &t).unwrap().encode().unwrap();
        for n in 0..bytes.len() {
            match IndexDelta::decode(&bytes[..n]) {
                Err(Error::IndexDeltaTruncated { len }) => assert_eq!(len, n),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn no_single_byte_change_yields_an_index_with_the_target_id() {
        let (b, t) = small_pair();
        let target_id = t.id().unwrap();
        let bytes = IndexDelta::between(&b, &t).unwrap().encode().unwrap();
        let (mut refused, mut wrong_id) = (0, 0);
        for pos in 0..bytes.len() {
            for x in 1..=u8::MAX {
                let mut m = bytes.clone();
                m[pos] ^= x;
                match IndexDelta::decode(&m).and_then(|d| d.apply(&b)) {
                    Err(_) => refused += 1,
                    Ok(i) => {
                        assert_ne!(i.id().unwrap(), target_id, "byte {pos} ^ {x:#x}");
                        wrong_id += 1;
                    }
                }
            }
        }
        // Some changes decode (a changed hash is another valid delta) but
        // then rebuild another index, which the caller's id check refuses;
        // a changed header byte is refused by decode itself.
        assert!(refused > 0 && wrong_id > 0, "{refused} {wrong_id}");
        for pos in 0..HEADER_LEN {
            let mut m = bytes.clone();
            m[pos] ^= 0x40;
            assert!(IndexDelta::decode(&m).is_err());
        }
    }

    #[test]
    fn decode_rejects_oversize_input_before_parsing() {
        let big = vec![0u8; MAX_INDEX_DELTA_BYTES + 1];
        assert!(matches!(
            IndexDelta::decode(&big),
            Err(Error::IndexDeltaTooLarge { len, max: MAX_INDEX_DELTA_BYTES }) if len == big.len()
        ));
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_a_chunk_index() {
        let (b, t) = small_pair();
        let mut bytes = IndexDelta::between(&b, &t).unwrap().encode().unwrap();
        bytes.push(0);
        let reason = malformed_reason(IndexDelta::decode(&bytes));
        assert!(reason.contains("trailing"), "{reason}");
        let whole = t.encode().unwrap();
        assert!(!IndexDelta::is_delta_frame(&whole));
        assert!(matches!(
            IndexDelta::decode(&whole),
            Err(Error::WrongKind {
                found: 32,
                expected: 35
            })
        ));
    }

    fn with_ops(ops: Vec<DeltaOp>) -> Result<IndexDelta> {
        let d = IndexDelta {
            base_index: Hash::of(b"base"),
            params: DEFAULT_PARAMS,
            image_hash: Hash::of(b"image"),
            ops,
        };
        IndexDelta::decode(&d.encode()?)
    }

    #[test]
    fn decode_rejects_adjacent_new_ops() {
        let reason = malformed_reason(with_ops(vec![base(0, 1), new(&[1]), new(&[2])]));
        assert!(reason.contains("adjacent"), "{reason}");
        assert!(with_ops(vec![new(&[1]), base(0, 1), new(&[2])]).is_ok());
    }

    #[test]
    fn decode_rejects_empty_ops_and_impossible_ranges_and_lengths() {
        malformed_reason(with_ops(vec![base(0, 0)]));
        malformed_reason(with_ops(vec![DeltaOp::New(vec![])]));
        malformed_reason(with_ops(vec![base(MAX_INDEX_CHUNKS as u32, 1)]));
        let too_many = MAX_INDEX_CHUNKS as u32 / 2 + 1;
        malformed_reason(with_ops(vec![base(0, too_many), base(0, too_many)]));
        for len in [0, DEFAULT_PARAMS.max_size + 1] {
            let bad = ChunkRef {
                hash: Hash::of(b"x"),
                len,
            };
            malformed_reason(with_ops(vec![DeltaOp::New(vec![bad])]));
        }
    }

    #[test]
    fn decode_refuses_more_ops_than_the_limit_and_accepts_the_limit() {
        let head = with_ops(vec![]).unwrap().encode().unwrap();
        let ops_of = |count: &[u8], n: usize| {
            let mut bytes = head[..head.len() - 1].to_vec(); // minus the op count
            bytes.extend_from_slice(count);
            for _ in 0..n {
                bytes.extend_from_slice(&[0, 0, 1]); // Base { first: 0, count: 1 }
            }
            bytes
        };
        // 2^20 + 1 ops announced and present: refused while reading.
        let over = ops_of(&[0x81, 0x80, 0x40], MAX_INDEX_DELTA_OPS + 1);
        let reason = malformed_reason(IndexDelta::decode(&over));
        // Refused by the bounded reader, before `check` saw a list.
        assert!(!reason.contains("ops, limit"), "{reason}");
        // Announced but absent: refused as truncated, nothing allocated.
        assert!(matches!(
            IndexDelta::decode(&ops_of(&[0x81, 0x80, 0x40], 0)),
            Err(Error::IndexDeltaTruncated { .. })
        ));
        // Exactly the limit (2^20 ops, 2^20 chunks) decodes.
        let at = IndexDelta::decode(&ops_of(&[0x80, 0x80, 0x40], MAX_INDEX_DELTA_OPS)).unwrap();
        assert_eq!(at.ops().len(), MAX_INDEX_DELTA_OPS);
    }

    #[test]
    fn decode_rejects_invalid_chunking_params() {
        let mut d = with_ops(vec![]).unwrap();
        d.params.min_size = 1;
        assert!(matches!(
            IndexDelta::decode(&d.encode().unwrap()),
            Err(Error::InvalidChunkingParams { .. })
        ));
    }

    #[test]
    fn is_delta_frame_peeks_at_the_header_only() {
        assert!(IndexDelta::is_delta_frame(b"MOTA\x01\x23"));
        assert!(IndexDelta::is_delta_frame(b"MOTA\x01\x23garbage"));
        assert!(!IndexDelta::is_delta_frame(b"MOTA\x01"));
        assert!(!IndexDelta::is_delta_frame(b"MOTA\x02\x23"));
        assert!(!IndexDelta::is_delta_frame(b"MOTA\x01\x20"));
        assert!(!IndexDelta::is_delta_frame(b""));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoding_random_bytes_as_a_delta_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = IndexDelta::decode(&bytes);
        }

        #[test]
        fn decoding_random_bodies_after_a_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"MOTA\x01\x23".to_vec();
            bytes.extend_from_slice(&body);
            let _ = IndexDelta::decode(&bytes);
        }

        #[test]
        fn between_then_apply_rebuilds_any_target(
            b in proptest::collection::vec(0u32..40, 0..60),
            t in proptest::collection::vec(0u32..60, 0..60),
        ) {
            round_trip(&index(&b), &index(&t));
        }
    }
}
