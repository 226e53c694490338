//! Binary patches between releases: bsdiff-class matching, zstd-compressed
//! streams, split into **pieces** that each rebuild a run of whole chunks of
//! the new image's [`ChunkIndex`](crate::ChunkIndex).
//!
//! **Formats.** A patch is a small [`PatchIndex`] blob (`MOTA` kind 33,
//! [`format`](mod@format)) naming the base image hash, the target chunk index id and a
//! list of [`PieceRef`]s; each piece is its own content-addressed blob
//! (`MOTA` kind 34, [`piece`]) that a store keeps, and a peer serves, exactly
//! like a chunk (both are at most [`MAX_PIECE_BYTES`], the store's chunk
//! limit). The release manifest's `PatchRef.patch` is the BLAKE3 of the
//! encoded patch index.
//!
//! **Trust.** Nothing in a patch is trusted: a piece's output is accepted
//! only chunk by chunk, each chunk hashing to its entry in the signed chunk
//! index ([`apply`]). A piece whose output fails is discarded whole; its
//! chunks stay missing and are fetched plainly ([`install`]). A wrong base is
//! refused before anything is applied (the base is hashed first).
//!
//! **Bounds.** Creation matches against a window of the base of at most
//! [`PatchOptions::window_bytes`] (suffix array: 4 bytes per window byte), so
//! its memory does not grow with the image. Applying holds one piece, its
//! decoded streams (at most [`MAX_PIECE_OUTPUT`] plus [`MAX_PIECE_CONTROL`])
//! and a 64 KiB read window of the base, whatever the image size.
//!
//! **Where to start reading.** [`create`] (how pieces are cut and when a
//! patch is not worth recording), [`apply`], [`install`].

pub mod apply;
pub mod create;
mod diffcode;
pub mod format;
pub mod install;
mod matcher;
pub mod piece;
mod source;

pub use apply::apply_piece;
pub use create::{PatchBuild, PatchOptions, create_patch, pin_index};
pub use format::{PatchIndex, PieceRef};
pub use install::{PieceFailure, RebuildReport, rebuild_from_patch};
pub use piece::{DiffCodec, Piece};
pub use source::{ReadAt, hash_image, hash_prefix};

use crate::store::MAX_CHUNK_BYTES;

/// Largest encoded piece: a piece is stored and sent like a chunk, so it
/// obeys the store's chunk limit (1 MiB).
pub const MAX_PIECE_BYTES: usize = MAX_CHUNK_BYTES;
/// Most bytes of new image one piece may produce. Bounds the decoded diff
/// and extra streams, which applying holds in memory.
pub const MAX_PIECE_OUTPUT: usize = 4 << 20;
/// Longest decoded control stream of one piece.
pub const MAX_PIECE_CONTROL: usize = 1 << 20;
/// Most pieces one patch index lists (16 GiB of new image at 1 MiB pieces).
pub const MAX_PATCH_PIECES: usize = 16 * 1024;

#[cfg(test)]
mod tests;
