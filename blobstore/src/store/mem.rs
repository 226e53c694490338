//! In-memory backend: same semantics as [`super::FsStore`] (at-rest codec,
//! pins, seeds, quarantine), nothing persisted. For tests, simulations and
//! one-shot planning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use meshota_manifest::{ChunkingParams, Hash};

use super::{
    AtRest, ChunkInfo, ChunkSource, ChunkStore, GcReport, PutReport, SeedEntry, SeedReport,
    SentChunk, StoreStats, VerifyReport, chunk_for_seed, decode_at_rest, encode_one, live_set,
    read_seed, scan_region,
};
use crate::error::{Error, Result};
use crate::index::ChunkIndex;

struct Stored {
    at_rest: AtRest,
    raw_len: u32,
}

#[derive(Default)]
struct Inner {
    chunks: BTreeMap<Hash, Stored>,
    indexes: BTreeMap<Hash, Vec<u8>>,
    pins: BTreeSet<(Hash, Hash)>,
    seeds: HashMap<Hash, SeedEntry>,
    quarantine: Vec<(Hash, Vec<u8>)>,
}

/// A [`ChunkStore`] held in memory. Invariant: as for every store, a chunk is
/// only returned after its hash is checked.
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Per chunk of a batch: whether it is neither stored nor earlier in it.
    fn fresh(&self, hashes: impl Iterator<Item = Hash>) -> Vec<bool> {
        let inner = self.lock();
        let mut seen = std::collections::HashSet::new();
        hashes
            .map(|h| !inner.chunks.contains_key(&h) && seen.insert(h))
            .collect()
    }

    /// Keeps the checked at-rest forms (`None`: not fresh, skipped).
    fn store_encoded(
        &self,
        chunks: impl Iterator<Item = ((Hash, u32), Option<AtRest>)>,
    ) -> PutReport {
        let mut report = PutReport::default();
        let mut inner = self.lock();
        for ((hash, raw_len), at_rest) in chunks {
            let Some(at_rest) = at_rest else { continue };
            if inner.chunks.contains_key(&hash) {
                continue;
            }
            report.new_chunks += 1;
            report.new_stored_bytes += at_rest.bytes.len() as u64;
            inner.chunks.insert(hash, Stored { at_rest, raw_len });
        }
        report
    }

    /// Forgets every earlier seeding of `abs` and records `entries`
    /// (chunk, offset, length) as read from it.
    fn replace_seeds(&self, abs: &Path, entries: &[(Hash, u64, u32)]) {
        let mut inner = self.lock();
        inner.seeds.retain(|_, e| e.path != abs);
        for (h, offset, len) in entries {
            inner.seeds.insert(
                *h,
                SeedEntry {
                    path: abs.to_path_buf(),
                    offset: *offset,
                    len: *len,
                },
            );
        }
    }

    /// Test hook: flips a byte of a stored chunk's at-rest form.
    #[cfg(test)]
    pub(crate) fn corrupt_for_test(&self, hash: &Hash) {
        if let Some(s) = self.lock().chunks.get_mut(hash) {
            let n = s.at_rest.bytes.len();
            if n > 0 {
                s.at_rest.bytes[n / 2] ^= 0x5a;
            }
        }
    }

    /// Test hook: replaces a stored index's bytes with garbage.
    #[cfg(test)]
    pub(crate) fn break_index_for_test(&self, id: &Hash) {
        if let Some(b) = self.lock().indexes.get_mut(id) {
            b.truncate(3);
        }
    }

    /// Number of quarantined chunks kept aside by [`ChunkStore::verify`].
    #[must_use]
    pub fn quarantined(&self) -> usize {
        self.lock().quarantine.len()
    }
}

impl ChunkStore for MemStore {
    fn put_batch(&self, chunks: &[(Hash, &[u8])]) -> Result<PutReport> {
        let fresh = self.fresh(chunks.iter().map(|(h, _)| *h));
        let encoded = super::check_and_encode(chunks, &fresh)?;
        let sizes = chunks
            .iter()
            .map(|(h, b)| (*h, u32::try_from(b.len()).unwrap_or(u32::MAX)));
        Ok(self.store_encoded(sizes.zip(encoded)))
    }

    fn put_sent_batch(&self, chunks: &[SentChunk]) -> Result<PutReport> {
        let fresh = self.fresh(chunks.iter().map(|c| c.hash));
        let encoded = super::check_sent(chunks, &fresh)?;
        Ok(self.store_encoded(chunks.iter().map(|c| (c.hash, c.raw_len)).zip(encoded)))
    }

    fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        let seed = {
            let inner = self.lock();
            if let Some(s) = inner.chunks.get(hash) {
                return decode_at_rest(hash, s.at_rest.compressed, &s.at_rest.bytes, s.raw_len);
            }
            inner.seeds.get(hash).cloned()
        };
        let Some(entry) = seed else {
            return Err(Error::ChunkNotFound { hash: *hash });
        };
        match read_seed(hash, &entry) {
            Some(bytes) => Ok(bytes),
            None => {
                self.lock().seeds.remove(hash);
                Err(Error::SeedStale {
                    hash: *hash,
                    path: entry.path,
                })
            }
        }
    }

    fn get_sent(&self, hash: &Hash) -> Result<SentChunk> {
        {
            let inner = self.lock();
            if let Some(s) = inner.chunks.get(hash) {
                decode_at_rest(hash, s.at_rest.compressed, &s.at_rest.bytes, s.raw_len)?;
                return Ok(SentChunk {
                    hash: *hash,
                    raw_len: s.raw_len,
                    compressed: s.at_rest.compressed,
                    bytes: s.at_rest.bytes.clone(),
                });
            }
        }
        Ok(encode_one(*hash, &self.get(hash)?))
    }

    fn info(&self, hash: &Hash) -> Result<Option<ChunkInfo>> {
        let inner = self.lock();
        if let Some(s) = inner.chunks.get(hash) {
            return Ok(Some(ChunkInfo {
                raw_len: s.raw_len,
                stored_len: u32::try_from(s.at_rest.bytes.len()).unwrap_or(u32::MAX),
                compressed: s.at_rest.compressed,
                source: ChunkSource::Stored,
            }));
        }
        Ok(inner.seeds.get(hash).map(|e| ChunkInfo {
            raw_len: e.len,
            stored_len: e.len,
            compressed: false,
            source: ChunkSource::Seeded,
        }))
    }

    fn put_index(&self, index: &ChunkIndex) -> Result<Hash> {
        let bytes = index.encode()?;
        let id = Hash::of(&bytes);
        self.lock().indexes.insert(id, bytes);
        Ok(id)
    }

    fn get_index(&self, id: &Hash) -> Result<ChunkIndex> {
        let inner = self.lock();
        let bytes = inner
            .indexes
            .get(id)
            .ok_or(Error::IndexNotFound { hash: *id })?;
        ChunkIndex::decode(bytes)
    }

    fn pin(&self, release: Hash, index_id: Hash) -> Result<()> {
        let mut inner = self.lock();
        if !inner.indexes.contains_key(&index_id) {
            return Err(Error::IndexNotFound { hash: index_id });
        }
        inner.pins.insert((release, index_id));
        Ok(())
    }

    fn unpin(&self, release: Hash) -> Result<bool> {
        let mut inner = self.lock();
        let before = inner.pins.len();
        inner.pins.retain(|(r, _)| *r != release);
        Ok(inner.pins.len() != before)
    }

    fn pins(&self) -> Result<Vec<(Hash, Hash)>> {
        Ok(self.lock().pins.iter().copied().collect())
    }

    fn gc(&self) -> Result<GcReport> {
        let (live_chunks, live_indexes) = live_set(self)?;
        let mut inner = self.lock();
        let mut report = GcReport::default();
        inner.chunks.retain(|h, s| {
            let keep = live_chunks.contains(h);
            if !keep {
                report.chunks_removed += 1;
                report.bytes_removed += s.at_rest.bytes.len() as u64;
            }
            keep
        });
        let before = inner.indexes.len();
        inner.indexes.retain(|h, _| live_indexes.contains(h));
        report.indexes_removed = (before - inner.indexes.len()) as u64;
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats> {
        let inner = self.lock();
        let stored: u64 = inner
            .chunks
            .values()
            .map(|s| s.at_rest.bytes.len() as u64)
            .sum();
        Ok(StoreStats {
            chunks: inner.chunks.len() as u64,
            raw_bytes: inner.chunks.values().map(|s| u64::from(s.raw_len)).sum(),
            stored_bytes: stored,
            disk_bytes: stored,
            seeded_chunks: inner.seeds.len() as u64,
            indexes: inner.indexes.len() as u64,
            pins: inner.pins.len() as u64,
        })
    }

    fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let seeds: Vec<(Hash, SeedEntry)> = {
            let mut inner = self.lock();
            let hashes: Vec<Hash> = inner.chunks.keys().copied().collect();
            for h in hashes {
                report.chunks_checked += 1;
                let bad = inner.chunks.get(&h).is_some_and(|s| {
                    decode_at_rest(&h, s.at_rest.compressed, &s.at_rest.bytes, s.raw_len).is_err()
                });
                if bad && let Some(s) = inner.chunks.remove(&h) {
                    inner.quarantine.push((h, s.at_rest.bytes));
                    report.bad_chunks.push(h);
                }
            }
            let ids: Vec<Hash> = inner.indexes.keys().copied().collect();
            for id in ids {
                let ok = inner
                    .indexes
                    .get(&id)
                    .is_some_and(|b| ChunkIndex::decode(b).is_ok());
                if !ok {
                    inner.indexes.remove(&id);
                    report.bad_indexes.push(id);
                }
            }
            inner.seeds.iter().map(|(h, e)| (*h, e.clone())).collect()
        };
        for (h, e) in seeds {
            if read_seed(&h, &e).is_none() {
                self.lock().seeds.remove(&h);
                report.stale_seeds.push(h);
            }
        }
        report.stale_seeds.sort();
        Ok(report)
    }

    fn seed_file(&self, path: &Path, params: &ChunkingParams) -> Result<SeedReport> {
        let (abs, index, entries) = chunk_for_seed(path, params)?;
        let index_id = self.put_index(&index)?;
        self.replace_seeds(&abs, &entries);
        Ok(SeedReport {
            index,
            index_id,
            chunks: entries.len() as u64,
        })
    }

    fn unseed(&self, path: &Path) -> Result<()> {
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.replace_seeds(&abs, &[]);
        Ok(())
    }

    fn seed_region(&self, path: &Path, offset: u64, index: &ChunkIndex) -> Result<SeedReport> {
        let (abs, entries) = scan_region(path, offset, index)?;
        let index_id = self.put_index(index)?;
        self.replace_seeds(&abs, &entries);
        Ok(SeedReport {
            index: index.clone(),
            index_id,
            chunks: entries.len() as u64,
        })
    }

    fn list(&self) -> Result<Vec<(Hash, ChunkInfo)>> {
        let hashes: Vec<Hash> = self.lock().chunks.keys().copied().collect();
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(i) = self.info(&h)? {
                out.push((h, i));
            }
        }
        Ok(out)
    }
}
