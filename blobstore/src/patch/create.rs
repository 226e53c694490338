//! Creating a patch: cut the target into pieces of whole chunks, match each
//! against a window of the base, keep only pieces that beat fetching their
//! chunks, and put the pieces and the patch index into a store.

use std::collections::HashSet;

use meshota_manifest::{ChunkingAlgorithm, ChunkingParams, Hash};

use super::apply::apply_piece;
use super::format::{PatchIndex, PieceRef};
use super::matcher::Window;
use super::piece::{DiffCodec, Piece, code_diff, deflate};
use super::source::{ReadAt, hash_prefix, read_err};
use super::{MAX_PATCH_PIECES, MAX_PIECE_BYTES, MAX_PIECE_OUTPUT};
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef};
use crate::store::ChunkStore;

/// How patches are made. Defaults by measurement (BENCHMARKS.md,
/// "Patches"): on esbuild 0.23.0→0.23.1, zstd level 22 made the patch 2%
/// smaller than level 19 for 30% more creation time (pieces are sent to
/// every node, made once); 2 MiB pieces saved 0.7% over 1 MiB and 4 MiB
/// 1.2%, against twice and four times the memory when applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchOptions {
    /// Target bytes one piece produces, at most (whole chunks; a piece has
    /// at least one chunk). At most [`MAX_PIECE_OUTPUT`]; applying holds
    /// about this much.
    pub piece_output_bytes: usize,
    /// Largest base window matched against at once; creation holds the
    /// window plus 4 bytes per window byte for its suffix array. A base no
    /// larger is matched whole.
    pub window_bytes: usize,
    /// zstd level of the control and extra streams (and of a diff stream
    /// coded with zstd).
    pub zstd_level: i32,
    /// How each piece's diff stream is coded: `None` (the default) tries
    /// both codecs and keeps the smaller, so a piece is never larger than
    /// with zstd alone; `Some` forces one.
    pub diff_codec: Option<DiffCodec>,
}

impl Default for PatchOptions {
    fn default() -> Self {
        Self {
            piece_output_bytes: 1 << 20,
            window_bytes: 64 << 20,
            zstd_level: 22,
            diff_codec: None,
        }
    }
}

/// Chunking parameters of a patch's pin index (see [`PatchBuild::pin`]):
/// valid FastCDC bounds that admit every blob up to the store's limit.
pub const PIN_PARAMS: ChunkingParams = ChunkingParams {
    algorithm: ChunkingAlgorithm::FastCdc2020,
    min_size: 64,
    avg_size: 256,
    max_size: ChunkingParams::MAX_CHUNK_CEILING,
};

/// A patch that was worth recording. Invariants: `encoded` is
/// `index.encode()`, `id == Hash::of(encoded)`, the index blob and every
/// piece are in the store, and `patch_bytes < replaced_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchBuild {
    /// The patch index.
    pub index: PatchIndex,
    /// Its encoding (what `PatchRef.patch` hashes, `PatchRef.size` counts).
    pub encoded: Vec<u8>,
    /// Its content address, `PatchRef.patch`.
    pub id: Hash,
    /// Bytes a node on the base fetches for the whole patch: the index
    /// blob and every piece.
    pub patch_bytes: u64,
    /// Bytes (as sent) of the chunks the pieces produce that the base does
    /// not hold: what fetching them plainly would cost.
    pub replaced_bytes: u64,
    /// Pieces cut and then dropped because they were not smaller than the
    /// chunks they produce (or over the size limit).
    pub pieces_dropped: u64,
    /// A chunk index listing the patch index blob and the pieces (not an
    /// image: `PIN_PARAMS` describe no chunking). Store and pin it under the
    /// release so GC keeps the patch: `store.put_index(&pin)`,
    /// `store.pin(release, pin_id)`.
    pub pin: ChunkIndex,
}

/// Makes a patch from `base` (whose chunk index is `base_index`) to the
/// image `target` (indexed by `target_index`, whose chunks `store` holds:
/// their sizes as sent are what a piece must beat), and puts its pieces and
/// index into `store`. Returns `None` when no piece, or the patch as a whole
/// (index included), is smaller than fetching the chunks it replaces: the
/// release then records no patch for this base.
///
/// Every kept piece is applied to the base once and checked against the
/// target index before it is kept. Pieces put before a `None` are loose
/// blobs that the next GC removes.
///
/// # Errors
/// [`Error::WrongBase`] when `base` does not hash to `base_index`'s image
/// hash, [`Error::Read`], store errors.
pub fn create_patch<S, B, N>(
    store: &S,
    base: &B,
    base_index: &ChunkIndex,
    target: &N,
    target_index: &ChunkIndex,
    opts: &PatchOptions,
) -> Result<Option<PatchBuild>>
where
    S: ChunkStore + ?Sized,
    B: ReadAt + ?Sized,
    N: ReadAt + ?Sized,
{
    let base_len = base_index.total_size();
    let actual = hash_prefix(base, base_len)?;
    if actual != base_index.image_hash() {
        return Err(Error::WrongBase {
            expected: base_index.image_hash(),
            actual,
        });
    }
    let target_id = target_index.id()?;
    let in_base: HashSet<Hash> = base_index.chunks().iter().map(|c| c.hash).collect();
    let spans = cut_spans(target_index, &in_base, opts.piece_output_bytes);
    // An index with no pieces yet, to check each piece against.
    let check_index = PatchIndex::new(base_index.image_hash(), base_len, target_id, vec![])?;
    let mut windows = WindowCache::new(base, base_len, opts.window_bytes);
    let mut counted: HashSet<Hash> = in_base.clone();
    let (mut pieces, mut blobs) = (Vec::new(), Vec::new());
    let (mut replaced_bytes, mut pieces_dropped) = (0u64, 0u64);
    let target_len = target_index.total_size();
    for span in spans {
        if pieces.len() == MAX_PATCH_PIECES {
            pieces_dropped += 1;
            continue;
        }
        let refs = &target_index.chunks()[span.first..span.first + span.count];
        let mut new = vec![0u8; span.len];
        target
            .read_exact_at(&mut new, span.offset)
            .map_err(read_err)?;
        let window = windows.for_span(span.offset, target_len)?;
        let bytes = encode_piece(&window.0, window.1, &new, &span, base_index, opts)?;
        let mut plain = 0u64;
        let mut fresh = Vec::new();
        for c in refs {
            if !counted.contains(&c.hash) && !fresh.contains(&c.hash) {
                fresh.push(c.hash);
                plain += sent_len(store, c)?;
            }
        }
        let piece = PieceRef {
            hash: Hash::of(&bytes),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            first: u32::try_from(span.first).unwrap_or(u32::MAX),
            count: u32::try_from(span.count).unwrap_or(u32::MAX),
        };
        if bytes.len() > MAX_PIECE_BYTES || bytes.len() as u64 >= plain {
            pieces_dropped += 1;
            continue;
        }
        apply_piece(base, &bytes, &piece, &check_index, target_index)?;
        store.put(piece.hash, &bytes)?;
        counted.extend(fresh);
        replaced_bytes += plain;
        blobs.push(ChunkRef {
            hash: piece.hash,
            len: piece.size,
        });
        pieces.push(piece);
    }
    if pieces.is_empty() {
        return Ok(None);
    }
    let index = PatchIndex::new(base_index.image_hash(), base_len, target_id, pieces)?;
    let encoded = index.encode()?;
    let id = Hash::of(&encoded);
    let patch_bytes = encoded.len() as u64 + blobs.iter().map(|b| u64::from(b.len)).sum::<u64>();
    if patch_bytes >= replaced_bytes {
        return Ok(None);
    }
    store.put(id, &encoded)?;
    let pin = pin_index(store, &encoded, id, blobs)?;
    Ok(Some(PatchBuild {
        index,
        encoded,
        id,
        patch_bytes,
        replaced_bytes,
        pieces_dropped,
        pin,
    }))
}

/// The at-rest (as sent) size of a target chunk, its raw length when the
/// store does not hold it.
fn sent_len<S: ChunkStore + ?Sized>(store: &S, c: &ChunkRef) -> Result<u64> {
    Ok(u64::from(
        store.info(&c.hash)?.map_or(c.len, |i| i.stored_len),
    ))
}

/// The pin index of a patch whose blobs `store` holds: the index blob
/// (`encoded`, id `id`) then the `pieces`, with the BLAKE3 of their
/// concatenation as its image hash. Pinned under a release (after
/// `put_index`), it keeps the patch through GC like the release's chunks.
///
/// # Errors
/// A piece the store does not hold, or an index that cannot be built.
pub fn pin_index<S: ChunkStore + ?Sized>(
    store: &S,
    encoded: &[u8],
    id: Hash,
    pieces: Vec<ChunkRef>,
) -> Result<ChunkIndex> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(encoded);
    for p in &pieces {
        hasher.update(&store.get(&p.hash)?);
    }
    let mut chunks = Vec::with_capacity(pieces.len() + 1);
    chunks.push(ChunkRef {
        hash: id,
        len: u32::try_from(encoded.len()).unwrap_or(u32::MAX),
    });
    chunks.extend(pieces);
    ChunkIndex::new(PIN_PARAMS, chunks, Hash::from(hasher.finalize()))
}

/// A run of whole target chunks one piece produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: usize,
    count: usize,
    offset: u64,
    len: usize,
}

/// Cuts the target into spans of at most `max_bytes` (at least one chunk
/// each) that start and end at chunks the base lacks; stretches of chunks
/// the base holds are skipped when no span needs them.
fn cut_spans(target: &ChunkIndex, in_base: &HashSet<Hash>, max_bytes: usize) -> Vec<Span> {
    let max_bytes = max_bytes.clamp(1, MAX_PIECE_OUTPUT);
    let chunks = target.chunks();
    let mut offsets = Vec::with_capacity(chunks.len() + 1);
    let mut off = 0u64;
    for c in chunks {
        offsets.push(off);
        off += u64::from(c.len);
    }
    offsets.push(off);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        if in_base.contains(&chunks[i].hash) {
            i += 1;
            continue;
        }
        let first = i;
        let mut last_new = i;
        let mut len = chunks[i].len as usize;
        i += 1;
        while i < chunks.len() && len + chunks[i].len as usize <= max_bytes {
            len += chunks[i].len as usize;
            if !in_base.contains(&chunks[i].hash) {
                last_new = i;
            }
            i += 1;
        }
        i = last_new + 1;
        let count = last_new + 1 - first;
        spans.push(Span {
            first,
            count,
            offset: offsets[first],
            len: usize::try_from(offsets[first + count] - offsets[first]).unwrap_or(usize::MAX),
        });
    }
    spans
}

/// Diffs one span against the window and encodes the piece.
fn encode_piece(
    window: &Window,
    window_start: u64,
    new: &[u8],
    span: &Span,
    base_index: &ChunkIndex,
    opts: &PatchOptions,
) -> Result<Vec<u8>> {
    let streams = window.diff(new);
    let mut control = Vec::with_capacity(streams.controls.len() * 6);
    for c in &streams.controls {
        control = postcard::to_extend(c, control).map_err(|e| Error::PatchMalformed {
            what: "patch piece",
            reason: e.to_string(),
        })?;
    }
    let mut under = Vec::with_capacity(streams.diff.len());
    let mut at = 0i64;
    for c in &streams.controls {
        let from = usize::try_from(at).unwrap_or(0);
        under.extend_from_slice(window.old.get(from..from + c.add as usize).unwrap_or(&[]));
        at += i64::from(c.add) + c.seek;
    }
    let (diff_codec, d) = code_diff(opts.diff_codec, &streams.diff, &under, opts.zstd_level)?;
    let (c, x) = (
        deflate(&control, opts.zstd_level)?,
        deflate(&streams.extra, opts.zstd_level)?,
    );
    let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Piece {
        base_image_hash: base_index.image_hash(),
        base_cursor: window_start,
        first: as_u32(span.first),
        count: as_u32(span.count),
        output_len: as_u32(new.len()),
        control_len: as_u32(control.len()),
        diff_len: as_u32(streams.diff.len()),
        diff_codec: diff_codec as u8,
        control: &c,
        diff: &d,
        extra: &x,
    }
    .encode()
}

/// The base window matched against: the whole base when it fits, else one
/// of the tiles `[k * size/2, k * size/2 + size)` (the last one ending at
/// the base's end), the one whose centre is nearest the span's proportional
/// position, so that position lies at least a quarter window from either
/// edge. Spans come in order, so each tile's suffix array is built once:
/// the suffix-sorting work is twice the base, whatever the window size.
struct WindowCache<'a, B: ReadAt + ?Sized> {
    base: &'a B,
    base_len: u64,
    size: u64,
    current: Option<(Window, u64)>,
}

impl<'a, B: ReadAt + ?Sized> WindowCache<'a, B> {
    fn new(base: &'a B, base_len: u64, window_bytes: usize) -> Self {
        let cap = u64::try_from(i32::MAX).unwrap_or(u64::MAX);
        Self {
            base,
            base_len,
            size: (window_bytes.max(2) as u64).min(cap),
            current: None,
        }
    }

    /// The start of the tile for a span at target `offset`.
    fn tile_start(&self, offset: u64, target_len: u64) -> u64 {
        if self.base_len <= self.size {
            return 0;
        }
        let p = u64::try_from(
            u128::from(offset) * u128::from(self.base_len) / u128::from(target_len.max(1)),
        )
        .unwrap_or(u64::MAX);
        let step = self.size / 2;
        let k = (p.saturating_sub(self.size / 2) + step / 2) / step;
        k.saturating_mul(step).min(self.base_len - self.size)
    }

    fn for_span(&mut self, offset: u64, target_len: u64) -> Result<&(Window, u64)> {
        let want = self.tile_start(offset, target_len);
        if self
            .current
            .as_ref()
            .is_none_or(|(_, start)| *start != want)
        {
            self.current = None;
            let n = usize::try_from(self.size.min(self.base_len)).unwrap_or(0);
            let mut old = vec![0u8; n];
            self.base.read_exact_at(&mut old, want).map_err(read_err)?;
            self.current = Some((Window::new(old), want));
        }
        match &self.current {
            Some(w) => Ok(w),
            None => Err(Error::Read {
                detail: "base window".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::DEFAULT_PARAMS;

    fn index_of(bytes: &[u8]) -> ChunkIndex {
        crate::ingest::index_reader(bytes, &DEFAULT_PARAMS).unwrap()
    }

    #[test]
    fn window_tiles_keep_the_span_a_quarter_window_from_either_edge() {
        let base = vec![0u8; 10];
        let w = WindowCache {
            base: base.as_slice(),
            base_len: 1000,
            size: 200,
            current: None,
        };
        let mut starts = std::collections::BTreeSet::new();
        for p in (0..1000).step_by(7) {
            let start = w.tile_start(p, 1000);
            assert_eq!(start % 100, 0);
            assert!(start + 200 <= 1000);
            if (50..=950).contains(&p) {
                assert!(p >= start + 50 && p <= start + 150, "p {p} start {start}");
            }
            starts.insert(start);
        }
        assert_eq!(starts.len(), 9);
    }

    #[test]
    fn spans_are_whole_chunks_within_the_limit_and_skip_chunks_the_base_holds() {
        let data: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let idx = index_of(&data);
        let in_base: HashSet<Hash> = idx.chunks()[..3].iter().map(|c| c.hash).collect();
        let spans = cut_spans(&idx, &in_base, 100_000);
        assert_eq!(spans[0].first, 3);
        let mut next = 0;
        for s in &spans {
            assert!(s.first >= next && s.count >= 1);
            let len: usize = idx.chunks()[s.first..s.first + s.count]
                .iter()
                .map(|c| c.len as usize)
                .sum();
            assert_eq!(len, s.len);
            assert!(s.len <= 100_000 || s.count == 1);
            next = s.first + s.count;
        }
        assert_eq!(next, idx.chunks().len());
    }
}
