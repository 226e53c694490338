//! The release a link carries: its verified bundle and its **objects**,
//! each either verified bytes or a RaptorQ decoder collecting symbols (with
//! the distinct symbol ids seen), plus encoders made on demand to serve it.
//!
//! The objects are the chunks of the signed index (positions
//! `0..chunks`), then, once the node holds a patch index the manifest
//! lists, that patch's pieces (positions `chunks..`). Two object sets, each
//! named on the air by a tag: the release tag for the chunks, the patch tag
//! (first 4 bytes of the patch id) for the pieces.
//!
//! Invariants: an object is `Held` only with bytes that hash to its id (the
//! decoder checks; `add_release`, `add_patch` and `add_chunks` check); a
//! patch's pieces are added only from a patch index that hashes to a patch
//! id the verified manifest lists, no longer than the size it signs, and
//! that names the carried release's chunk index as its target.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;

use meshota_blobstore::patch::PatchIndex;
use meshota_manifest::Hash;
use meshota_radios::{ObjectDecoder, ObjectEncoder, ObjectInfo};

use super::bundle::{Pieces, VerifiedBundle};
use super::error::RadioError;
use super::msg::{TAG_LEN, tag_of};
use super::report::PatchBlobs;

/// Largest patch index (bytes) a link fetches or serves over radio: like a
/// bundle, it crosses as fragments of one message.
pub const PATCH_INDEX_BYTES_MAX: usize = super::bundle::BUNDLE_BYTES_MAX;

/// Decodes of one piece that did not hash to its id before it is given up
/// (its chunks are then fetched plainly).
pub(super) const PIECE_MISMATCHES_MAX: u32 = 3;

#[derive(Debug)]
pub(super) enum ChunkSlot {
    /// Verified bytes, in memory: served.
    Held(Vec<u8>),
    /// Held in the node's store, which the driver vouched for (a chunk of
    /// its base image); not in memory, so never served. Only chunks, never
    /// pieces.
    Stored,
    /// Not held: the symbols heard so far, and their decoder once the
    /// first symbol came (a release of thousands of chunks, most of them
    /// stored, makes decoders only for the few it fetches).
    Missing {
        decoder: Option<ObjectDecoder>,
        symbols: BTreeSet<u32>,
    },
}

/// What became of one piece at a node that fetches by the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PieceOutcome {
    /// Not decoded yet (wanted while it produces a chunk not held).
    Pending,
    /// Decoded; handed to the driver to apply against the base.
    Applying,
    /// Applied: every chunk it produced matched the signed index.
    Applied,
    /// Failed (its output did not verify, or its symbols kept decoding to
    /// bytes that do not hash to its id): its chunks are fetched plainly.
    Failed,
}

/// A patch the manifest lists, as far as this node knows it.
#[derive(Debug)]
pub(super) struct PatchPart {
    /// The patch id (BLAKE3 of the patch index blob).
    pub(super) id: Hash,
    /// The patch index blob's size as the manifest signs it.
    pub(super) size: u64,
    /// The patch tag (the pieces' set tag on the air).
    pub(super) tag: [u8; TAG_LEN],
    /// Whether this node rebuilds the release from this patch (its base is
    /// the patch's); a source that only serves it does not.
    pub(super) fetching: bool,
    /// Fragments of the patch index being collected.
    pub(super) fragments: Pieces,
    /// Verification failures of assembled patch indexes.
    pub(super) index_failures: u32,
    /// The patch index and its encoding, once held.
    pub(super) index: Option<(Arc<PatchIndex>, Vec<u8>)>,
    /// Per piece, at a fetching node.
    pub(super) outcomes: Vec<PieceOutcome>,
    /// Per piece, decodes that did not hash to its id.
    pub(super) mismatches: Vec<u32>,
}

impl PatchPart {
    pub(super) fn new(id: Hash, size: u64, fetching: bool, fragment_len: usize) -> Self {
        Self {
            id,
            size,
            tag: tag_of(&id),
            fetching,
            fragments: Pieces::new(fragment_len),
            index_failures: 0,
            index: None,
            outcomes: Vec::new(),
            mismatches: Vec::new(),
        }
    }

    /// Pieces in the index (0 before it is held).
    pub(super) fn piece_count(&self) -> usize {
        self.index.as_ref().map_or(0, |(i, _)| i.pieces().len())
    }
}

#[derive(Debug)]
pub(super) struct Carried {
    /// The verified bundle; its chunk index is the one pieces are applied
    /// against.
    pub(super) bundle: VerifiedBundle,
    pub(super) tag: [u8; TAG_LEN],
    /// Chunks in the index: objects `0..chunks` are chunks.
    pub(super) chunks: usize,
    /// Per object (chunks, then pieces): tag, coding parameters, state,
    /// encoder.
    pub(super) chunk_tags: Vec<[u8; TAG_LEN]>,
    pub(super) infos: Vec<ObjectInfo>,
    pub(super) slots: Vec<ChunkSlot>,
    pub(super) encoders: Vec<Option<ObjectEncoder>>,
    /// Chunks held.
    pub(super) held: usize,
    /// The patch this node fetches or serves, if any.
    pub(super) patch: Option<PatchPart>,
}

impl Carried {
    pub(super) fn new(bundle: VerifiedBundle, symbol_size: u16) -> Result<Self, RadioError> {
        let n = bundle.chunks().len();
        let mut c = Self {
            tag: tag_of(&bundle.id),
            chunks: n,
            chunk_tags: Vec::with_capacity(n),
            infos: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            encoders: Vec::with_capacity(n),
            held: 0,
            patch: None,
            bundle,
        };
        let objects: Vec<(Hash, u32)> = c.bundle.chunks().iter().map(|r| (r.hash, r.len)).collect();
        for (hash, len) in objects {
            c.push_object(hash, len, symbol_size)?;
        }
        Ok(c)
    }

    fn push_object(&mut self, hash: Hash, len: u32, symbol_size: u16) -> Result<(), RadioError> {
        let info = ObjectInfo {
            id: *hash.as_bytes(),
            len,
            symbol_size,
        };
        info.validate()?;
        self.chunk_tags.push(tag_of(&hash));
        self.infos.push(info);
        self.slots.push(ChunkSlot::Missing {
            decoder: None,
            symbols: BTreeSet::new(),
        });
        self.encoders.push(None);
        Ok(())
    }

    /// Checks a patch index blob against the patch the manifest lists and
    /// the carried release, and adds its pieces as objects (all missing).
    /// Returns the number of pieces.
    pub(super) fn set_patch_index(
        &mut self,
        bytes: Vec<u8>,
        symbol_size: u16,
    ) -> Result<usize, RadioError> {
        let bad = |why: &str| RadioError::Index(alloc::format!("patch index: {why}"));
        let p = self.patch.as_ref().ok_or_else(|| bad("no patch"))?;
        if p.index.is_some() {
            return Ok(p.piece_count());
        }
        if bytes.len() as u64 > p.size || bytes.len() > PATCH_INDEX_BYTES_MAX {
            return Err(bad("longer than the manifest's size"));
        }
        if Hash::of(&bytes) != p.id {
            return Err(bad("does not hash to the manifest's patch id"));
        }
        let index = PatchIndex::decode(&bytes).map_err(|e| bad(&alloc::format!("{e}")))?;
        let listed = self
            .bundle
            .manifest
            .body()
            .patches
            .iter()
            .find(|r| r.patch == p.id)
            .ok_or_else(|| bad("not listed"))?;
        if index.base_image_hash() != listed.base_image_hash {
            return Err(bad("names another base than the manifest lists"));
        }
        let target_id = self
            .bundle
            .manifest
            .body()
            .components
            .first()
            .map(|c| c.chunk_index)
            .ok_or_else(|| bad("release has no component"))?;
        index
            .check_target(self.bundle.index(), &target_id)
            .map_err(|e| bad(&alloc::format!("{e}")))?;
        let pieces: Vec<(Hash, u32)> = index.pieces().iter().map(|r| (r.hash, r.size)).collect();
        let n = pieces.len();
        for (hash, len) in pieces {
            self.push_object(hash, len, symbol_size)?;
        }
        if let Some(p) = self.patch.as_mut() {
            p.index = Some((Arc::new(index), bytes));
            p.outcomes = alloc::vec![PieceOutcome::Pending; n];
            p.mismatches = alloc::vec![0; n];
        }
        Ok(n)
    }

    pub(super) fn complete(&self) -> bool {
        self.held == self.chunks
    }

    /// Whether object `j` (a chunk or a piece) is held, in memory or in
    /// the node's store.
    pub(super) fn is_held(&self, j: usize) -> bool {
        matches!(
            self.slots.get(j),
            Some(ChunkSlot::Held(_) | ChunkSlot::Stored)
        )
    }

    /// Whether some chunk is held in the node's store only (so the image
    /// cannot be assembled from the link's memory).
    pub(super) fn any_stored(&self) -> bool {
        self.slots[..self.chunks]
            .iter()
            .any(|s| matches!(s, ChunkSlot::Stored))
    }

    /// Marks chunk `j` held in the node's store. Returns whether it was
    /// new.
    pub(super) fn hold_stored(&mut self, j: usize) -> bool {
        if j >= self.chunks || self.is_held(j) {
            return false;
        }
        self.slots[j] = ChunkSlot::Stored;
        self.held += 1;
        true
    }

    /// Whether every piece of the patch (and its index) is held: this node
    /// can serve the patch.
    pub(super) fn holds_patch(&self) -> bool {
        self.patch.as_ref().is_some_and(|p| p.index.is_some())
            && (self.chunks..self.slots.len()).all(|j| self.is_held(j))
    }

    /// The patch's id, index blob and pieces in index order, when every
    /// one is held (each was checked against its signed hash when taken).
    pub(super) fn patch_blobs(&self) -> Option<PatchBlobs<'_>> {
        let p = self.patch.as_ref()?;
        let (index, bytes) = p.index.as_ref()?;
        let pieces = index
            .pieces()
            .iter()
            .zip(&self.slots[self.chunks..])
            .map(|(piece, s)| match s {
                ChunkSlot::Held(b) => Some((piece.hash, b.as_slice())),
                ChunkSlot::Stored | ChunkSlot::Missing { .. } => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(PatchBlobs {
            id: p.id,
            index: bytes.as_slice(),
            pieces,
        })
    }

    /// The object positions of the set named by `tag`: `Some(0..chunks)`
    /// for the release tag, the pieces' positions for the patch tag (once
    /// its index is held).
    pub(super) fn set_of(&self, tag: &[u8]) -> Option<core::ops::Range<usize>> {
        if tag == self.tag {
            return Some(0..self.chunks);
        }
        let p = self.patch.as_ref().filter(|p| p.index.is_some())?;
        (tag == p.tag).then_some(self.chunks..self.slots.len())
    }

    /// Each chunk id of the index with its positions (a chunk may repeat
    /// in an image): for [`Carried::hold_bytes`].
    pub(super) fn positions_by_hash(&self) -> BTreeMap<Hash, Vec<usize>> {
        let mut by_hash: BTreeMap<Hash, Vec<usize>> = BTreeMap::new();
        for (j, r) in self.bundle.chunks().iter().enumerate() {
            by_hash.entry(r.hash).or_default().push(j);
        }
        by_hash
    }

    /// Holds `bytes` at every position of the chunk they hash to (hashed
    /// once; `by_hash` from [`Carried::positions_by_hash`]). `None` when
    /// they are no chunk of the index, else how many positions were new.
    pub(super) fn hold_bytes(
        &mut self,
        by_hash: &BTreeMap<Hash, Vec<usize>>,
        bytes: &[u8],
    ) -> Option<usize> {
        let js = by_hash.get(&Hash::of(bytes))?;
        let mut new = 0;
        for &j in js {
            if j < self.chunks && !self.is_held(j) {
                self.slots[j] = ChunkSlot::Held(bytes.to_vec());
                self.held += 1;
                new += 1;
            }
        }
        Some(new)
    }

    /// Stores verified bytes of chunk `j` (hash checked here). Returns
    /// whether it was new.
    pub(super) fn hold_chunk(&mut self, j: usize, bytes: Vec<u8>) -> bool {
        if j >= self.chunks || self.is_held(j) {
            return false;
        }
        if Hash::of(&bytes) != self.bundle.chunks()[j].hash {
            return false;
        }
        self.slots[j] = ChunkSlot::Held(bytes);
        self.held += 1;
        true
    }

    /// Pieces a fetching node still wants: pending, not held, producing a
    /// chunk not held. Their positions in the patch index.
    pub(super) fn wanted_pieces(&self) -> Vec<usize> {
        let Some(p) = self.patch.as_ref().filter(|p| p.fetching) else {
            return Vec::new();
        };
        let Some((index, _)) = &p.index else {
            return Vec::new();
        };
        index
            .pieces()
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                p.outcomes.get(*i) == Some(&PieceOutcome::Pending)
                    && !self.is_held(self.chunks + i)
                    && r.ordinals().any(|o| !self.is_held(o))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether chunk `j` waits for a piece being applied (or, with
    /// `pending`, for one not decoded yet) instead of being fetched plainly.
    pub(super) fn awaits_piece(&self, j: usize, pending: bool) -> bool {
        let Some(p) = self.patch.as_ref().filter(|p| p.fetching) else {
            return false;
        };
        let Some((index, _)) = &p.index else {
            return false;
        };
        index.pieces().iter().enumerate().any(|(i, r)| {
            r.ordinals().contains(&j)
                && match p.outcomes.get(i) {
                    Some(PieceOutcome::Applying) => true,
                    Some(PieceOutcome::Pending) => pending,
                    _ => false,
                }
        })
    }
}
