//! What the core knows about the patches a release lists, and the patch
//! fetch of the release it wants.
//!
//! **Addressing.** A patch is its own availability set, named by its id
//! (the BLAKE3 of its patch index blob, which the signed manifest lists
//! under the base's image hash). Bit `i` of a patch's bitmap is the `i`-th
//! piece of its index. The same messages that carry chunk availability
//! carry it: `GetHave`/`Have`/`HaveMore` with the patch id in the
//! `release` field, `GetIndex`/`Index` for the patch index blob, and
//! `GetChunk`/`Chunk` for a piece by its hash. Only a node holding the
//! patch index answers `GetHave` for it (it alone knows the bitmap's
//! length); an answer is also how a node learns whom to ask for the index.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use meshota_blobstore::patch::{PatchIndex, PieceRef};
use meshota_manifest::Hash;

use crate::bitmap::Bitmap;
use crate::event::PeerId;
use crate::time::Timestamp;

/// A patch a release's manifest lists. Invariant: `index`, once set, hashes
/// to the patch id it is filed under and is no longer than `size`.
#[derive(Debug)]
pub(crate) struct PatchState {
    /// The base image the manifest says it applies to.
    pub(crate) base_image_hash: Hash,
    /// The patch index blob's size, as the manifest signs it.
    pub(crate) size: u64,
    /// The patch index, once held.
    pub(crate) index: Option<PatchIndexed>,
    /// Peers that asked to hear about new pieces of this patch.
    pub(crate) subscribers: BTreeSet<PeerId>,
    /// Piece positions gained since the last announcement.
    pub(crate) unannounced: Vec<u32>,
}

/// A held patch index with lookups.
#[derive(Debug)]
pub(crate) struct PatchIndexed {
    pub(crate) index: PatchIndex,
    pub(crate) bytes: Vec<u8>,
    /// Piece hash -> its positions in the index.
    pub(crate) positions: BTreeMap<Hash, Vec<u32>>,
    /// Pieces held.
    pub(crate) have: Bitmap,
}

impl PatchIndexed {
    pub(crate) fn new(index: PatchIndex, bytes: Vec<u8>, held: &BTreeSet<Hash>) -> Self {
        let mut positions: BTreeMap<Hash, Vec<u32>> = BTreeMap::new();
        let mut have = Bitmap::new(index.pieces().len());
        for (i, p) in index.pieces().iter().enumerate() {
            positions
                .entry(p.hash)
                .or_default()
                .push(u32::try_from(i).unwrap_or(u32::MAX));
            if held.contains(&p.hash) {
                have.set(i);
            }
        }
        Self {
            index,
            bytes,
            positions,
            have,
        }
    }

    /// The encoded size of piece `hash`, if the index lists it.
    pub(crate) fn piece_len(&self, hash: &Hash) -> Option<u32> {
        let i = *self.positions.get(hash)?.first()? as usize;
        self.index.pieces().get(i).map(|p| p.size)
    }
}

impl PatchState {
    pub(crate) const fn new(base_image_hash: Hash, size: u64) -> Self {
        Self {
            base_image_hash,
            size,
            index: None,
            subscribers: BTreeSet::new(),
            unannounced: Vec::new(),
        }
    }
}

/// Where the patch fetch of the wanted release stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Asking peers for the patch index.
    Index,
    /// Fetching the chosen pieces; the chunks they produce are not fetched
    /// plainly meanwhile.
    Pieces {
        /// The pieces chosen by the planner, in index order, with their
        /// positions in the index.
        chosen: Vec<(u32, PieceRef)>,
        /// Chunks the chosen pieces produce (deferred from plain fetch).
        covered: BTreeSet<Hash>,
        /// Pieces given up (failed too often, or nobody served them).
        abandoned: BTreeSet<Hash>,
    },
    /// The driver is applying the pieces ([`crate::Action::ApplyPatch`]);
    /// the covered chunks stay deferred until it reports.
    Applying {
        /// Chunks the pieces should produce.
        covered: BTreeSet<Hash>,
    },
    /// Finished or given up: every chunk still missing is fetched plainly.
    Off,
}

/// The patch fetch of one wanted release. Invariant: `release` is the
/// wanted release when it was made; a different wanted release replaces it.
#[derive(Debug, Clone)]
pub(crate) struct PatchFetch {
    pub(crate) release: Hash,
    /// The patch id, or `None` when no listed patch is from this node's base.
    pub(crate) patch: Option<Hash>,
    pub(crate) phase: Phase,
    /// Last time the fetch moved forward (phase change, a piece or the
    /// index arrived); a fetch stalled for two request timeouts gives up
    /// what it is waiting for.
    pub(crate) progress_at: Timestamp,
}

impl PatchFetch {
    /// Whether chunk `hash` waits instead of being fetched plainly now:
    /// every chunk while the patch index is awaited (bounded by the stall
    /// rule), the chunks of chosen pieces while they are fetched and
    /// applied.
    pub(crate) fn defers(&self, hash: &Hash) -> bool {
        match &self.phase {
            Phase::Index => self.patch.is_some(),
            Phase::Pieces { covered, .. } | Phase::Applying { covered } => covered.contains(hash),
            Phase::Off => false,
        }
    }
}

/// Attempts at one piece (corrupt, refused or timed out) before its chunks
/// are fetched plainly instead.
pub(crate) const PIECE_ATTEMPTS: u32 = 3;
