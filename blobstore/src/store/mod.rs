//! The [`ChunkStore`] trait, its value types, and what both backends share:
//! the at-rest codec (zstd when it saves space, hash checked on every read)
//! and reading chunks in place from seeded files.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use meshota_manifest::{ChunkingParams, Hash};

use crate::chunking::Chunker;
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef};

pub mod fs;
pub mod mem;
#[cfg(test)]
mod suite;

pub use fs::FsStore;
pub use mem::MemStore;

/// Largest chunk any store accepts (the chunking ceiling, 1 MiB).
pub const MAX_CHUNK_BYTES: usize = ChunkingParams::MAX_CHUNK_CEILING as usize;

/// zstd level used for chunks at rest; the compressed form is what a peer is
/// sent, so it is also the "bytes as sent" of delta planning.
pub const ZSTD_LEVEL: i32 = 3;

/// Where a chunk's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSource {
    /// Stored in the store (pack file or memory).
    Stored,
    /// Indexed in place in a seeded file; re-hashed on every read.
    Seeded,
}

/// What the store knows about one chunk without reading it.
/// Invariant: `stored_len <= raw_len` when `compressed`, else equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Length of the chunk's content.
    pub raw_len: u32,
    /// Length at rest, which is also the length sent to a peer.
    pub stored_len: u32,
    /// Whether the at-rest form is zstd-compressed.
    pub compressed: bool,
    /// Stored or seeded.
    pub source: ChunkSource,
}

/// Result of a batch put. Invariant: counts only chunks not already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Chunks newly stored.
    pub new_chunks: u64,
    /// Their at-rest bytes.
    pub new_stored_bytes: u64,
}

/// Result of garbage collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Chunks no pinned release referenced, now removed.
    pub chunks_removed: u64,
    /// Their at-rest bytes.
    pub bytes_removed: u64,
    /// Chunk indexes no pin referenced, now removed.
    pub indexes_removed: u64,
    /// Pack files rewritten or deleted to reclaim space (0 in memory).
    pub packs_compacted: u64,
}

/// Counts and sizes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Stored chunks.
    pub chunks: u64,
    /// Sum of their content lengths.
    pub raw_bytes: u64,
    /// Sum of their at-rest lengths.
    pub stored_bytes: u64,
    /// Bytes the chunk data occupies on disk (pack files; equals
    /// `stored_bytes` in memory).
    pub disk_bytes: u64,
    /// Chunks available in place from seeded files.
    pub seeded_chunks: u64,
    /// Chunk indexes stored.
    pub indexes: u64,
    /// (release, index) pins.
    pub pins: u64,
}

/// Result of [`ChunkStore::verify`]. Invariant: every hash listed was removed
/// from the store (bad chunks were quarantined first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Stored chunks re-hashed.
    pub chunks_checked: u64,
    /// Stored chunks that failed to read, decode or hash: quarantined.
    pub bad_chunks: Vec<Hash>,
    /// Seed entries whose file no longer matches: dropped.
    pub stale_seeds: Vec<Hash>,
    /// Stored indexes that no longer decode: removed.
    pub bad_indexes: Vec<Hash>,
}

impl VerifyReport {
    /// Whether nothing bad was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.bad_chunks.is_empty() && self.stale_seeds.is_empty() && self.bad_indexes.is_empty()
    }
}

/// Result of seeding a file in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// The seeded file's chunk index (also stored in the store).
    pub index: ChunkIndex,
    /// Its id.
    pub index_id: Hash,
    /// Distinct chunks now available from the file.
    pub chunks: u64,
}

/// A content-addressed chunk store. Every chunk returned by [`get`] hashes to
/// the id it was asked for; every put that returned `Ok` is durable (for the
/// filesystem backend: survives SIGKILL and power loss) until a [`gc`] that
/// finds it unpinned.
///
/// [`get`]: ChunkStore::get
/// [`gc`]: ChunkStore::gc
pub trait ChunkStore: Send + Sync {
    /// Stores `bytes` under `hash` after checking `Hash::of(bytes) == hash`;
    /// returns whether it was new. Durable on return.
    ///
    /// # Errors
    /// [`Error::HashMismatch`] (nothing stored), [`Error::ChunkTooLarge`], I/O.
    fn put(&self, hash: Hash, bytes: &[u8]) -> Result<bool> {
        Ok(self.put_batch(&[(hash, bytes)])?.new_chunks == 1)
    }

    /// Stores several chunks in one commit, each checked as by [`ChunkStore::put`].
    /// All are checked before any is stored; durable on return.
    ///
    /// # Errors
    /// As [`ChunkStore::put`]; on error none of the batch is acknowledged.
    fn put_batch(&self, chunks: &[(Hash, &[u8])]) -> Result<PutReport>;

    /// The chunk's content, hash-checked (stored chunks first, then seeded).
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::CorruptChunk`] (never returns bad
    /// bytes), [`Error::SeedStale`] (entry dropped), I/O.
    fn get(&self, hash: &Hash) -> Result<Vec<u8>>;

    /// Whether the chunk is stored or seeded (seeded entries are not
    /// re-hashed here; [`ChunkStore::get`] does).
    ///
    /// # Errors
    /// Metadata I/O.
    fn has(&self, hash: &Hash) -> Result<bool> {
        Ok(self.info(hash)?.is_some())
    }

    /// The chunk in the form it is sent to a peer (its at-rest form; seeded
    /// chunks are compressed on the fly), checked before it is returned:
    /// a corrupt chunk is never served.
    ///
    /// # Errors
    /// As [`ChunkStore::get`].
    fn get_sent(&self, hash: &Hash) -> Result<SentChunk>;

    /// Sizes and source of a chunk, `None` when absent.
    ///
    /// # Errors
    /// Metadata I/O.
    fn info(&self, hash: &Hash) -> Result<Option<ChunkInfo>>;

    /// The distinct chunks of `index` this store cannot provide, in first
    /// appearance order.
    ///
    /// # Errors
    /// Metadata I/O.
    fn missing(&self, index: &ChunkIndex) -> Result<Vec<ChunkRef>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in index.chunks() {
            if seen.insert(c.hash) && !self.has(&c.hash)? {
                out.push(*c);
            }
        }
        Ok(out)
    }

    /// Stores an encoded chunk index; returns its id. Durable on return.
    ///
    /// # Errors
    /// I/O.
    fn put_index(&self, index: &ChunkIndex) -> Result<Hash>;

    /// A stored chunk index, decoded and checked.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`], decode errors, I/O.
    fn get_index(&self, id: &Hash) -> Result<ChunkIndex>;

    /// Pins the index `index_id` (which must be stored) and all its chunks
    /// for `release`, so [`ChunkStore::gc`] keeps them. A release may pin
    /// several indexes. Durable on return.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`], I/O.
    fn pin(&self, release: Hash, index_id: Hash) -> Result<()>;

    /// Removes every pin of `release`; returns whether there was one.
    ///
    /// # Errors
    /// I/O.
    fn unpin(&self, release: Hash) -> Result<bool>;

    /// All (release, index id) pins, sorted.
    ///
    /// # Errors
    /// I/O.
    fn pins(&self) -> Result<Vec<(Hash, Hash)>>;

    /// Removes every stored chunk and index that no pin references, and
    /// reclaims their space. Crash-safe at every step.
    ///
    /// # Errors
    /// [`Error::PinnedIndexMissing`] (nothing deleted), I/O.
    fn gc(&self) -> Result<GcReport>;

    /// Counts and sizes.
    ///
    /// # Errors
    /// I/O.
    fn stats(&self) -> Result<StoreStats>;

    /// Re-hashes every stored chunk, seed entry and index; quarantines bad
    /// chunks (kept aside, removed from the store) and drops stale seeds.
    ///
    /// # Errors
    /// I/O on the metadata itself (per-chunk failures are reported, not errors).
    fn verify(&self) -> Result<VerifyReport>;

    /// Indexes `path` in place (without copying it) so its chunks count as
    /// present and are served from it, re-hashed on each read. Replaces any
    /// earlier seeding of the same path. The file's index is stored too.
    ///
    /// # Errors
    /// [`Error::InvalidChunkingParams`], I/O on the file.
    fn seed_file(&self, path: &Path, params: &ChunkingParams) -> Result<SeedReport>;

    /// Seeds the image that `index` describes, found at byte `offset` of
    /// `path` (an installed A/B slot: a region of a file or block device,
    /// usually followed by bytes that are not the image). Every chunk is
    /// read and re-hashed now, one at a time; those that match count as
    /// present and are served from the file (re-hashed on each read, like
    /// any seed), the others are skipped. The index is stored too.
    /// Replaces any earlier seeding of the same path, so seeding the newly
    /// active slot of a file that holds both slots drops the old one.
    ///
    /// # Errors
    /// I/O opening the file (a short file is not an error: the chunks past
    /// its end are skipped).
    fn seed_region(&self, path: &Path, offset: u64, index: &ChunkIndex) -> Result<SeedReport>;

    /// Forgets every seeding of `path`: its chunks are no longer served
    /// from it. Call before overwriting a seeded file (an A/B slot about to
    /// receive an install). A path never seeded is not an error.
    ///
    /// # Errors
    /// I/O on the store's metadata.
    fn unseed(&self, path: &Path) -> Result<()>;

    /// Every stored chunk with its info, sorted by hash.
    ///
    /// # Errors
    /// I/O.
    fn list(&self) -> Result<Vec<(Hash, ChunkInfo)>>;
}

/// A chunk as it crosses the network: the id, the content length, and the
/// bytes, zstd-compressed when `compressed`. Invariant when produced by a
/// store: [`SentChunk::open`] succeeds. A receiver must call `open` (which
/// bounds decompression by `raw_len` and checks the hash) before using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentChunk {
    /// The chunk id (BLAKE3 of the content).
    pub hash: Hash,
    /// Length of the content.
    pub raw_len: u32,
    /// Whether `bytes` is a zstd frame.
    pub compressed: bool,
    /// The bytes as sent.
    pub bytes: Vec<u8>,
}

impl SentChunk {
    /// Raw content in the form a store sends it (zstd when that is
    /// smaller). The receiver's [`SentChunk::open`] checks that `raw`
    /// hashes to `hash`; nothing here does.
    #[must_use]
    pub fn encode(hash: Hash, raw: &[u8]) -> Self {
        encode_one(hash, raw)
    }

    /// The content, after checking its length and hash; decompression is
    /// bounded by `raw_len` (at most [`MAX_CHUNK_BYTES`]).
    ///
    /// # Errors
    /// [`Error::CorruptChunk`] when it does not decode to bytes hashing to `hash`.
    pub fn open(&self) -> Result<Vec<u8>> {
        decode_at_rest(&self.hash, self.compressed, &self.bytes, self.raw_len)
    }
}

/// Encodes raw content (already checked to hash to `hash`) as sent.
pub(crate) fn encode_one(hash: Hash, raw: &[u8]) -> SentChunk {
    let at_rest = Codec::new().encode(raw);
    SentChunk {
        hash,
        raw_len: u32::try_from(raw.len()).unwrap_or(u32::MAX),
        compressed: at_rest.compressed,
        bytes: at_rest.bytes,
    }
}

/// Checks a chunk about to be stored: size limit, then hash.
pub(crate) fn check_put(hash: &Hash, bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_CHUNK_BYTES {
        return Err(Error::ChunkTooLarge {
            len: bytes.len(),
            max: MAX_CHUNK_BYTES,
        });
    }
    let actual = Hash::of(bytes);
    if actual != *hash {
        return Err(Error::HashMismatch {
            expected: *hash,
            actual,
        });
    }
    Ok(())
}

/// The at-rest form of a chunk: zstd when that is smaller, else raw.
pub(crate) struct AtRest {
    pub(crate) compressed: bool,
    pub(crate) bytes: Vec<u8>,
}

/// A reusable zstd compressor for the at-rest form.
pub(crate) struct Codec {
    comp: Option<zstd::bulk::Compressor<'static>>,
}

impl Codec {
    pub(crate) fn new() -> Self {
        Self {
            comp: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
        }
    }

    pub(crate) fn encode(&mut self, raw: &[u8]) -> AtRest {
        if let Some(c) = self.comp.as_mut()
            && let Ok(z) = c.compress(raw)
            && z.len() < raw.len()
        {
            return AtRest {
                compressed: true,
                bytes: z,
            };
        }
        AtRest {
            compressed: false,
            bytes: raw.to_vec(),
        }
    }
}

/// Most threads one batch is checked and compressed on.
pub const MAX_ENCODE_THREADS: usize = 4;

/// Smallest batch checked and compressed on several threads. Smaller
/// batches (a patch piece's chunks, ~1 MiB) run on the caller's thread:
/// spawning costs more than it saves there, and each worker thread leaves a
/// malloc arena behind (measured: +4 MiB peak RSS over a 1 GiB patch
/// install in 1 MiB batches).
pub const MIN_PARALLEL_BATCH_BYTES: usize = 4 << 20;

/// Checks every chunk of a batch (size, then hash) and encodes for rest the
/// ones flagged in `fresh`, on up to [`MAX_ENCODE_THREADS`] threads, keeping
/// order. Returns an error, and nothing else, unless every chunk checks.
pub(crate) fn check_and_encode(
    chunks: &[(Hash, &[u8])],
    fresh: &[bool],
) -> Result<Vec<Option<AtRest>>> {
    fn work(part: &[(Hash, &[u8])], fresh: &[bool]) -> Result<Vec<Option<AtRest>>> {
        let mut c = Codec::new();
        part.iter()
            .zip(fresh)
            .map(|((h, b), f)| {
                check_put(h, b)?;
                Ok(f.then(|| c.encode(b)))
            })
            .collect()
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_ENCODE_THREADS);
    let bytes: usize = chunks.iter().map(|(_, b)| b.len()).sum();
    if threads <= 1 || chunks.len() < 8 || bytes < MIN_PARALLEL_BATCH_BYTES {
        return work(chunks, fresh);
    }
    let per = chunks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .zip(fresh.chunks(per))
            .map(|(part, f)| (part, f, s.spawn(move || work(part, f))))
            .collect();
        let mut out = Vec::with_capacity(chunks.len());
        for (part, f, h) in handles {
            // A worker cannot panic in practice; redo its part here if one did.
            let r = h.join().unwrap_or_else(|_| work(part, f));
            out.extend(r?);
        }
        Ok(out)
    })
}

/// Decodes an at-rest chunk and checks its length and hash.
pub(crate) fn decode_at_rest(
    hash: &Hash,
    compressed: bool,
    bytes: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::CorruptChunk {
        hash: *hash,
        detail,
    };
    if raw_len as usize > MAX_CHUNK_BYTES {
        return Err(corrupt(format!("recorded length {raw_len} over the limit")));
    }
    let raw = if compressed {
        zstd::bulk::decompress(bytes, raw_len as usize)
            .map_err(|e| corrupt(format!("zstd: {e}")))?
    } else {
        bytes.to_vec()
    };
    if raw.len() != raw_len as usize {
        return Err(corrupt(format!("{} bytes, expected {raw_len}", raw.len())));
    }
    let actual = Hash::of(&raw);
    if actual != *hash {
        return Err(corrupt(format!("content hashes to {}", actual.short())));
    }
    Ok(raw)
}

/// A chunk available in place in a seeded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedEntry {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// Reads a seeded chunk and checks it still hashes to `hash`; `None` when
/// the file is gone, shorter, or changed (the entry is stale).
pub(crate) fn read_seed(hash: &Hash, e: &SeedEntry) -> Option<Vec<u8>> {
    if e.len as usize > MAX_CHUNK_BYTES {
        return None;
    }
    let f = File::open(&e.path).ok()?;
    let mut buf = vec![0u8; e.len as usize];
    f.read_exact_at(&mut buf, e.offset).ok()?;
    (Hash::of(&buf) == *hash).then_some(buf)
}

/// Per distinct chunk of a seeded file: (id, first offset, length).
pub(crate) type SeedEntries = Vec<(Hash, u64, u32)>;

/// A seeded file's absolute path, its index, and its entries.
pub(crate) type SeedScan = (PathBuf, ChunkIndex, SeedEntries);

/// Chunks a file for seeding: its index and, per distinct chunk, the first
/// offset it appears at.
pub(crate) fn chunk_for_seed(path: &Path, params: &ChunkingParams) -> Result<SeedScan> {
    let abs = std::fs::canonicalize(path).map_err(Error::io("open", path))?;
    let f = File::open(&abs).map_err(Error::io("open", &abs))?;
    let mut chunker = Chunker::new(BufReader::with_capacity(1 << 20, f), params)?;
    let mut refs = Vec::new();
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    while let Some(c) = chunker.next_chunk()? {
        let len = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
        refs.push(ChunkRef { hash: c.hash, len });
        if seen.insert(c.hash) {
            entries.push((c.hash, c.offset, len));
        }
    }
    let (image_hash, _) = chunker.image_hash();
    let index = ChunkIndex::new(*params, refs, image_hash)?;
    Ok((abs, index, entries))
}

/// Reads the image `index` describes at `offset` of `path`, one chunk at a
/// time, and keeps, per distinct chunk, the first position whose bytes hash
/// to it.
pub(crate) fn scan_region(
    path: &Path,
    offset: u64,
    index: &ChunkIndex,
) -> Result<(PathBuf, SeedEntries)> {
    let abs = std::fs::canonicalize(path).map_err(Error::io("open", path))?;
    let f = File::open(&abs).map_err(Error::io("open", &abs))?;
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    let mut buf = Vec::new();
    let mut at = offset;
    for c in index.chunks() {
        let here = at;
        at = at.saturating_add(u64::from(c.len));
        if c.len as usize > MAX_CHUNK_BYTES || seen.contains(&c.hash) {
            continue;
        }
        buf.resize(c.len as usize, 0);
        if f.read_exact_at(&mut buf, here).is_err() {
            break; // past the end of the file
        }
        if Hash::of(&buf) == c.hash {
            seen.insert(c.hash);
            entries.push((c.hash, here, c.len));
        }
    }
    Ok((abs, entries))
}

/// The chunks and indexes that pins keep alive.
pub(crate) fn live_set<S: ChunkStore + ?Sized>(
    store: &S,
) -> Result<(HashSet<Hash>, HashSet<Hash>)> {
    let mut chunks = HashSet::new();
    let mut indexes = HashSet::new();
    for (release, id) in store.pins()? {
        if indexes.insert(id) {
            let index = store
                .get_index(&id)
                .map_err(|e| Error::PinnedIndexMissing {
                    release,
                    index: id,
                    detail: e.to_string(),
                })?;
            chunks.extend(index.chunks().iter().map(|c| c.hash));
        }
    }
    Ok((chunks, indexes))
}
