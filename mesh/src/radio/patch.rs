//! Patch pieces over radio: the sans-IO hand-off between the link, which
//! decodes pieces, and the driver, which can read the node's base image.
//!
//! # The shape
//! The link never reads the base itself (a slot read is the driver's I/O,
//! possibly slow, possibly on another thread). When a piece of the patch
//! from the node's base decodes (its bytes hash to the id the signed patch
//! index lists), the link emits [`super::LinkEvent::ApplyPiece`] with a
//! [`PieceJob`]: an owned, self-contained job holding the piece, the patch
//! index and the signed chunk index. The driver runs [`PieceJob::apply`]
//! against its base (anything `meshota_blobstore::patch::ReadAt`: the
//! confirmed slot, a file, bytes) wherever it likes, and hands the
//! [`PieceOutput`] back with [`super::RadioLink::piece_applied`]. The link
//! checks every produced chunk against the signed index **again** before it
//! keeps any (so a driver bug cannot insert a chunk), keeps all or none,
//! and fetches the chunks of a failed piece plainly.
//!
//! A driver that never calls [`super::RadioLink::set_base_image`] never
//! gets a job: its link fetches chunks only.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use meshota_blobstore::ChunkIndex;
use meshota_blobstore::patch::{PatchIndex, PieceRef, ReadAt, apply_piece};
use meshota_manifest::Hash;

/// A decoded patch piece to apply against the node's base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceJob {
    /// The release whose chunks the piece produces.
    pub release: Hash,
    /// The patch (id of its index blob).
    pub patch: Hash,
    /// The piece's position in the patch index.
    pub position: u32,
    /// The piece as the patch index lists it.
    pub piece: PieceRef,
    /// The piece's bytes (they hash to `piece.hash`).
    pub bytes: Arc<[u8]>,
    index: Arc<PatchIndex>,
    target: Arc<ChunkIndex>,
}

/// What applying a [`PieceJob`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceOutput {
    /// The release.
    pub release: Hash,
    /// The patch.
    pub patch: Hash,
    /// The piece's position in the patch index.
    pub position: u32,
    /// The chunks produced, in ordinal order, or why the piece failed.
    pub chunks: Result<Vec<Vec<u8>>, String>,
}

impl PieceJob {
    pub(super) const fn new(
        release: Hash,
        patch: Hash,
        position: u32,
        piece: PieceRef,
        bytes: Arc<[u8]>,
        index: Arc<PatchIndex>,
        target: Arc<ChunkIndex>,
    ) -> Self {
        Self {
            release,
            patch,
            position,
            piece,
            bytes,
            index,
            target,
        }
    }

    /// Applies the piece to `base` (the node's installed image; only its
    /// first `base_size` bytes are read, through one 64 KiB window), every
    /// produced chunk checked against the signed chunk index
    /// (`meshota_blobstore::patch::apply_piece`). Never panics; a failure
    /// is reported in [`PieceOutput::chunks`].
    #[must_use]
    pub fn apply<B: ReadAt + ?Sized>(&self, base: &B) -> PieceOutput {
        let chunks = apply_piece(base, &self.bytes, &self.piece, &self.index, &self.target)
            .map_err(|e| e.to_string());
        PieceOutput {
            release: self.release,
            patch: self.patch,
            position: self.position,
            chunks,
        }
    }

    /// The output of a job the driver could not run (no base, a read
    /// failed before applying): the piece counts as failed.
    #[must_use]
    pub fn failed(&self, why: impl Into<String>) -> PieceOutput {
        PieceOutput {
            release: self.release,
            patch: self.patch,
            position: self.position,
            chunks: Err(why.into()),
        }
    }
}
