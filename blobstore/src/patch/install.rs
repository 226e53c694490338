//! The install path of a patch: rebuild a target's chunks into a store from
//! the base image and the pieces the store holds, and say what is left to
//! fetch plainly.

use std::collections::HashSet;

use meshota_manifest::Hash;

use super::apply::apply_piece;
use super::format::{PatchIndex, PieceRef};
use super::source::{ReadAt, hash_prefix, read_err};
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef};
use crate::store::ChunkStore;

/// A piece that produced nothing: why, so the caller can log it (and
/// penalise whoever sent it, when the piece itself was wrong).
#[derive(Debug)]
pub struct PieceFailure {
    /// The piece as the patch index lists it.
    pub piece: PieceRef,
    /// What went wrong (a store read, decoding, the base, a chunk hash).
    pub error: Error,
}

/// What a rebuild did. Invariant: `still_missing` is exactly the distinct
/// target chunks the store cannot provide afterwards, in first-appearance
/// order; fetch them plainly, then assemble.
#[derive(Debug, Default)]
pub struct RebuildReport {
    /// Pieces applied whose output all verified.
    pub pieces_applied: u64,
    /// Pieces skipped because the store already held all their chunks.
    pub pieces_not_needed: u64,
    /// Pieces the store does not hold (not fetched yet): their chunks stay
    /// missing.
    pub pieces_absent: Vec<PieceRef>,
    /// Pieces that failed: nothing of theirs was stored.
    pub failed: Vec<PieceFailure>,
    /// Chunks stored from verified piece output (new to the store).
    pub chunks_produced: u64,
    /// Their raw bytes.
    pub bytes_produced: u64,
    /// The target chunks still to fetch plainly.
    pub still_missing: Vec<ChunkRef>,
}

/// Rebuilds the chunks of `target` that `store` lacks from `base` (e.g. the
/// active slot; only its first `patch.base_size()` bytes are read) and the
/// pieces of `patch` that `store` holds.
///
/// Order of checks: the patch must be for `target` (its id), and the base
/// must hash to the patch's base image hash. A wrong base is refused here,
/// before any piece is read. Then each needed piece is read from the store,
/// applied ([`apply_piece`]: every produced chunk must hash to `target`'s
/// entry), and its chunks are stored in one durable batch; a piece that
/// fails in any way stores nothing and is reported in
/// [`RebuildReport::failed`]. Memory is one piece and its output, whatever
/// the image size.
///
/// # Errors
/// [`Error::PatchTargetMismatch`], [`Error::PatchMalformed`] (ranges outside
/// `target`), [`Error::WrongBase`], [`Error::Read`] (base shorter than
/// `base_size` or unreadable), store errors while listing what is missing.
pub fn rebuild_from_patch<S, B>(
    store: &S,
    target: &ChunkIndex,
    patch: &PatchIndex,
    base: &B,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RebuildReport>
where
    S: ChunkStore + ?Sized,
    B: ReadAt + ?Sized,
{
    let target_id = target.id()?;
    patch.check_target(target, &target_id)?;
    let len = base.image_len().map_err(read_err)?;
    if len < patch.base_size() {
        return Err(Error::Read {
            detail: format!(
                "base has {len} bytes, the patch's base image has {}",
                patch.base_size()
            ),
        });
    }
    let actual = hash_prefix(base, patch.base_size())?;
    if actual != patch.base_image_hash() {
        return Err(Error::WrongBase {
            expected: patch.base_image_hash(),
            actual,
        });
    }
    let mut report = RebuildReport::default();
    let total = patch.pieces().len() as u64;
    for (i, piece) in patch.pieces().iter().enumerate() {
        progress(i as u64, total);
        // In range: check_target checked every piece against the target.
        let Some(refs) = target.chunks().get(piece.ordinals()) else {
            continue;
        };
        if all_held(store, refs)? {
            report.pieces_not_needed += 1;
            continue;
        }
        let bytes = match store.get(&piece.hash) {
            Ok(b) => b,
            Err(Error::ChunkNotFound { .. }) => {
                report.pieces_absent.push(*piece);
                continue;
            }
            Err(error) => {
                report.failed.push(PieceFailure {
                    piece: *piece,
                    error,
                });
                continue;
            }
        };
        match apply_piece(base, &bytes, piece, patch, target)
            .and_then(|chunks| store_new(store, refs, &chunks))
        {
            Ok((n, b)) => {
                report.pieces_applied += 1;
                report.chunks_produced += n;
                report.bytes_produced += b;
            }
            Err(error) => report.failed.push(PieceFailure {
                piece: *piece,
                error,
            }),
        }
    }
    progress(total, total);
    report.still_missing = still_missing(store, target)?;
    Ok(report)
}

/// As [`ChunkStore::missing`], but remembering only the missing hashes
/// (a set of every distinct hash of a 1 GiB index is ~2 MiB).
fn still_missing<S: ChunkStore + ?Sized>(store: &S, target: &ChunkIndex) -> Result<Vec<ChunkRef>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in target.chunks() {
        if !seen.contains(&c.hash) && !store.has(&c.hash)? {
            seen.insert(c.hash);
            out.push(*c);
        }
    }
    Ok(out)
}

fn all_held<S: ChunkStore + ?Sized>(store: &S, refs: &[ChunkRef]) -> Result<bool> {
    for c in refs {
        if !store.has(&c.hash)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stores the produced chunks the store lacks, in one batch (each is
/// hash-checked again by the store). Returns (new chunks, their bytes).
fn store_new<S: ChunkStore + ?Sized>(
    store: &S,
    refs: &[ChunkRef],
    chunks: &[Vec<u8>],
) -> Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut batch: Vec<(Hash, &[u8])> = Vec::new();
    for (c, bytes) in refs.iter().zip(chunks) {
        if seen.insert(c.hash) && !store.has(&c.hash)? {
            batch.push((c.hash, bytes));
        }
    }
    let r = store.put_batch(&batch)?;
    let bytes = batch.iter().map(|(_, b)| b.len() as u64).sum();
    Ok((r.new_chunks, bytes))
}

impl PatchIndex {
    /// The pieces a node should fetch before [`rebuild_from_patch`]: those
    /// it does not hold that produce at least one chunk `store` lacks, in
    /// index order. (Creation kept only pieces smaller than the chunks they
    /// produce as sent, so fetching these beats fetching their chunks.) Call
    /// [`PatchIndex::check_target`] first.
    ///
    /// # Errors
    /// Store metadata I/O.
    pub fn needed_pieces<S: ChunkStore + ?Sized>(
        &self,
        store: &S,
        target: &ChunkIndex,
    ) -> Result<Vec<PieceRef>> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            let refs = target.chunks().get(piece.ordinals()).unwrap_or_default();
            if !store.has(&piece.hash)? && !all_held(store, refs)? {
                out.push(*piece);
            }
        }
        Ok(out)
    }

    /// Reads and decodes the patch index blob `id` from `store` (stored like
    /// a chunk, hash-checked on read), refusing one longer than
    /// `max_size` (the manifest's `PatchRef.size`).
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::PatchTooLarge`], decode errors.
    pub fn load<S: ChunkStore + ?Sized>(store: &S, id: &Hash, max_size: u64) -> Result<Self> {
        if let Some(info) = store.info(id)?
            && u64::from(info.raw_len) > max_size
        {
            return Err(Error::PatchTooLarge {
                what: "patch index",
                len: info.raw_len as usize,
                max: usize::try_from(max_size).unwrap_or(usize::MAX),
            });
        }
        Self::decode(&store.get(id)?)
    }
}
