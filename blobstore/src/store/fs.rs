//! Filesystem backend: redb for metadata, chunk bytes appended to pack files.
//!
//! Layout of a store directory:
//! ```text
//! MESHOTA-STORE        marker: "meshota-blobstore 1"
//! meta.redb            chunk locations, indexes, pins, seeds (redb, ACID)
//! packs/NNNNNNNNNNNN.pack   append-only chunk bytes (zstd when smaller)
//! quarantine/          bad chunks moved aside by verify
//! ```
//! Commit protocol (crash safety): chunk bytes are appended to a pack and
//! the pack fsynced *before* the redb transaction that references them
//! commits; a pack is only ever deleted *after* the commit that stops
//! referencing it. Anything a crash leaves behind (unreferenced packs, a torn
//! pack tail) is unreferenced, never read, and removed at the next open.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use meshota_manifest::{ChunkingParams, Hash};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use super::{
    ChunkInfo, ChunkSource, ChunkStore, GcReport, MAX_CHUNK_BYTES, PutReport, SeedEntry,
    SeedReport, SentChunk, StoreStats, VerifyReport, chunk_for_seed, decode_at_rest, encode_one,
    live_set, read_seed, scan_region,
};
use crate::error::{Error, Result};
use crate::index::ChunkIndex;

/// Name of the marker file that makes a directory a store.
pub const MARKER_FILE: &str = "MESHOTA-STORE";
/// Contents of the marker file this build writes and accepts.
pub const MARKER: &str = "meshota-blobstore 1\n";
/// A pack file is closed and a new one started past this size.
pub const PACK_TARGET_BYTES: u64 = 64 << 20;
/// GC rewrites a pack whose live bytes fall under this fraction (percent).
pub const COMPACT_LIVE_PERCENT: u64 = 50;

/// (pack id, offset, stored length, raw length, compressed)
type Loc = (u64, u64, u32, u32, bool);
/// redb's page cache for `meta.redb` (redb's default grows to 1 GiB).
/// Pages beyond it are re-read from the file (the OS page cache). Measured
/// on a 1 GiB image (53,687 chunks): ingest time unchanged within noise,
/// peak RSS of a patch install 12.6 MiB instead of 17.3 MiB, of assembly
/// 9.9 MiB instead of 13 MiB.
pub const META_CACHE_BYTES: usize = 2 << 20;

const CHUNKS: TableDefinition<&[u8; 32], Loc> = TableDefinition::new("chunks");
const INDEXES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("indexes");
const PINS: MultimapTableDefinition<&[u8; 32], &[u8; 32]> = MultimapTableDefinition::new("pins");
const SEED_FILES: TableDefinition<u64, &str> = TableDefinition::new("seed_files");
/// chunk -> (seed file id, offset, length)
const SEEDED: TableDefinition<&[u8; 32], (u64, u64, u32)> = TableDefinition::new("seeded");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

struct OpenPack {
    id: u64,
    file: File,
    len: u64,
}

struct Writer {
    pack: Option<OpenPack>,
}

/// A [`ChunkStore`] in a directory. Opening takes redb's exclusive lock, so
/// one process uses a store at a time; within it the store is `Sync`.
pub struct FsStore {
    root: PathBuf,
    db: Database,
    writer: Mutex<Writer>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    /// Readers hold it shared from looking a chunk up to reading its bytes;
    /// pack deletion holds it exclusively, so a read never finds its pack gone.
    gate: RwLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync", dir))
}

impl FsStore {
    /// Opens the store at `dir`, creating it when `dir` is missing or empty.
    ///
    /// # Errors
    /// [`Error::NotAStore`] when `dir` holds other files, as [`FsStore::open`].
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        let empty = match fs::read_dir(dir) {
            Ok(mut it) => it.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io("read directory", dir)(e)),
        };
        if empty {
            fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
            let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
            let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
            f.write_all(MARKER.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(Error::io("write", &tmp))?;
            fs::rename(&tmp, dir.join(MARKER_FILE)).map_err(Error::io("rename", &tmp))?;
            fsync_dir(dir)?;
        }
        Self::open(dir)
    }

    /// Opens an existing store and removes what an interrupted operation
    /// left behind (unreferenced packs, temp files).
    ///
    /// # Errors
    /// [`Error::NotAStore`] without the marker, [`Error::UnsupportedStore`]
    /// with another marker, [`Error::StoreInUse`] when another process has it
    /// open, [`Error::Db`] when its metadata is damaged.
    pub fn open(dir: &Path) -> Result<Self> {
        let marker = dir.join(MARKER_FILE);
        let text = match fs::read(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAStore {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io("read", &marker)(e)),
        };
        if text != MARKER.as_bytes() {
            let found = String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect();
            return Err(Error::UnsupportedStore {
                path: marker,
                found,
            });
        }
        for sub in ["packs", "quarantine"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(Error::io("create directory", &p))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(META_CACHE_BYTES)
            .create(dir.join("meta.redb"))
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse {
                    path: dir.to_path_buf(),
                },
                other => other.into(),
            })?;
        {
            let tx = db.begin_write()?;
            tx.open_table(CHUNKS)?;
            tx.open_table(INDEXES)?;
            tx.open_multimap_table(PINS)?;
            tx.open_table(SEED_FILES)?;
            tx.open_table(SEEDED)?;
            tx.open_table(META)?;
            tx.commit()?;
        }
        let store = Self {
            root: dir.to_path_buf(),
            db,
            writer: Mutex::new(Writer { pack: None }),
            files: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
        };
        store.remove_unreferenced_packs()?;
        Ok(store)
    }

    /// The store directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }

    fn pack_path(&self, id: u64) -> PathBuf {
        self.packs_dir().join(format!("{id:012}.pack"))
    }

    /// Live at-rest bytes per pack id.
    fn live_per_pack(&self) -> Result<HashMap<u64, u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHUNKS)?;
        let mut live = HashMap::new();
        for row in t.iter()? {
            let (_, v) = row?;
            let (pack, _, stored, _, _) = v.value();
            *live.entry(pack).or_insert(0) += u64::from(stored);
        }
        Ok(live)
    }

    fn pack_files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.packs_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let e = e.map_err(Error::io("read directory", &dir))?;
            let p = e.path();
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u64>().ok());
            match id {
                Some(id) => out.push((id, p)),
                None => {
                    // temp or foreign file in packs/: left by a crash, never referenced
                    let _ = fs::remove_file(&p);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_unreferenced_packs(&self) -> Result<()> {
        let live = self.live_per_pack()?;
        let current = lock(&self.writer).pack.as_ref().map(|p| p.id);
        let mut removed = false;
        for (id, p) in self.pack_files()? {
            if !live.contains_key(&id) && Some(id) != current {
                fs::remove_file(&p).map_err(Error::io("remove", &p))?;
                lock(&self.files).remove(&id);
                removed = true;
            }
        }
        if removed {
            fsync_dir(&self.packs_dir())?;
        }
        Ok(())
    }

    fn next_counter(&self, key: &str) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let id = {
            let mut t = tx.open_table(META)?;
            let id = t.get(key)?.map_or(1, |v| v.value());
            t.insert(key, id + 1)?;
            id
        };
        tx.commit()?;
        Ok(id)
    }

    /// Appends at-rest bytes to the current pack (starting a new one when
    /// needed); returns (pack, offset). Not durable until [`Self::sync`].
    fn append(&self, w: &mut Writer, bytes: &[u8], synced: &mut Vec<u64>) -> Result<(u64, u64)> {
        if w.pack.as_ref().is_some_and(|p| p.len >= PACK_TARGET_BYTES)
            && let Some(old) = w.pack.take()
        {
            old.file
                .sync_data()
                .map_err(Error::io("fsync", self.pack_path(old.id)))?;
        }
        if w.pack.is_none() {
            let id = self.next_counter("next_pack")?;
            let path = self.pack_path(id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(Error::io("create", &path))?;
            fsync_dir(&self.packs_dir())?;
            w.pack = Some(OpenPack { id, file, len: 0 });
        }
        let Some(p) = w.pack.as_mut() else {
            return Err(Error::io("open", self.packs_dir())(std::io::Error::other(
                "no open pack",
            )));
        };
        let offset = p.len;
        p.file
            .write_all(bytes)
            .map_err(Error::io("write", self.pack_path(p.id)))?;
        p.len += bytes.len() as u64;
        if !synced.contains(&p.id) {
            synced.push(p.id);
        }
        Ok((p.id, offset))
    }

    /// Per chunk of a batch: whether it is neither stored nor earlier in
    /// the batch.
    fn fresh(&self, hashes: impl Iterator<Item = Hash>) -> Result<Vec<bool>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHUNKS)?;
        let mut batch_seen = HashSet::new();
        let mut v = Vec::new();
        for hash in hashes {
            v.push(t.get(hash.as_bytes())?.is_none() && batch_seen.insert(hash));
        }
        Ok(v)
    }

    /// Appends the checked at-rest forms (`None`: not fresh, skipped),
    /// fsyncs the pack, then commits their locations in one transaction:
    /// the commit protocol of every put.
    fn store_encoded(
        &self,
        w: &mut Writer,
        chunks: impl Iterator<Item = ((Hash, u32), Option<super::AtRest>)>,
    ) -> Result<PutReport> {
        let mut report = PutReport::default();
        let mut synced = Vec::new();
        let mut locs: Vec<(Hash, Loc)> = Vec::new();
        for ((hash, raw), at_rest) in chunks {
            let Some(at_rest) = at_rest else { continue };
            let (pack, offset) = self.append(w, &at_rest.bytes, &mut synced)?;
            let stored = u32::try_from(at_rest.bytes.len()).unwrap_or(u32::MAX);
            locs.push((hash, (pack, offset, stored, raw, at_rest.compressed)));
            report.new_chunks += 1;
            report.new_stored_bytes += u64::from(stored);
        }
        if locs.is_empty() {
            return Ok(report);
        }
        self.sync(w)?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(CHUNKS)?;
            for (h, loc) in &locs {
                t.insert(h.as_bytes(), *loc)?;
            }
        }
        tx.commit()?;
        Ok(report)
    }

    fn sync(&self, w: &Writer) -> Result<()> {
        if let Some(p) = &w.pack {
            p.file
                .sync_data()
                .map_err(Error::io("fsync", self.pack_path(p.id)))?;
        }
        Ok(())
    }

    fn pack_file(&self, id: u64) -> Result<Arc<File>> {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(&id) {
            return Ok(Arc::clone(f));
        }
        let path = self.pack_path(id);
        let f = Arc::new(File::open(&path).map_err(Error::io("open", &path))?);
        if files.len() >= 64 {
            files.clear();
        }
        files.insert(id, Arc::clone(&f));
        Ok(f)
    }

    fn read_at_rest(&self, loc: Loc) -> Result<Vec<u8>> {
        let (pack, offset, stored, _, _) = loc;
        if stored as usize > MAX_CHUNK_BYTES {
            return Err(Error::io("read", self.pack_path(pack))(
                std::io::Error::other(format!(
                    "recorded chunk length {stored} exceeds the {MAX_CHUNK_BYTES}-byte limit"
                )),
            ));
        }
        let f = self.pack_file(pack)?;
        let mut buf = vec![0u8; stored as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(Error::io("read", self.pack_path(pack)))?;
        Ok(buf)
    }

    /// The chunk's current location and its at-rest bytes (or why they could
    /// not be read), looked up and read under the shared gate.
    fn read_stored(&self, hash: &Hash) -> Result<Option<(Loc, Result<Vec<u8>>)>> {
        let _g = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        Ok(self
            .location(hash)?
            .map(|loc| (loc, self.read_at_rest(loc))))
    }

    /// Deletes pack files under the exclusive gate.
    fn delete_packs(&self, ids: &[u64]) -> Result<()> {
        let _g = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            let path = self.pack_path(*id);
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            lock(&self.files).remove(id);
        }
        Ok(())
    }

    fn location(&self, hash: &Hash) -> Result<Option<Loc>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHUNKS)?;
        Ok(t.get(hash.as_bytes())?.map(|v| v.value()))
    }

    fn seed_entry(&self, hash: &Hash) -> Result<Option<SeedEntry>> {
        let tx = self.db.begin_read()?;
        let seeded = tx.open_table(SEEDED)?;
        let Some((file, offset, len)) = seeded.get(hash.as_bytes())?.map(|v| v.value()) else {
            return Ok(None);
        };
        let files = tx.open_table(SEED_FILES)?;
        Ok(files.get(file)?.map(|p| SeedEntry {
            path: PathBuf::from(p.value()),
            offset,
            len,
        }))
    }

    /// In one commit: forgets every earlier seeding of `abs` and records
    /// `entries` (chunk, offset, length) as read from it.
    fn replace_seeds(&self, abs: &Path, entries: &[(Hash, u64, u32)]) -> Result<()> {
        let abs_str = abs.to_string_lossy().into_owned();
        let tx = self.db.begin_write()?;
        {
            let mut files = tx.open_table(SEED_FILES)?;
            let old: Vec<u64> = files
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, p)| p.value() == abs_str)
                .map(|(k, _)| k.value())
                .collect();
            let mut seeded = tx.open_table(SEEDED)?;
            if !old.is_empty() {
                seeded.retain(|_, (f, _, _)| !old.contains(&f))?;
                for id in &old {
                    files.remove(id)?;
                }
            }
            // With no entries the file is simply no longer seeded.
            if !entries.is_empty() {
                let mut meta = tx.open_table(META)?;
                let id = meta.get("next_seed")?.map_or(1, |v| v.value());
                meta.insert("next_seed", id + 1)?;
                files.insert(id, abs_str.as_str())?;
                for (h, offset, len) in entries {
                    seeded.insert(h.as_bytes(), (id, *offset, *len))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn drop_seed(&self, hash: &Hash) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(SEEDED)?.remove(hash.as_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// Test hook: replaces a stored index's bytes with garbage.
    #[cfg(test)]
    pub(crate) fn break_index_for_test(&self, id: &Hash) {
        if let Ok(tx) = self.db.begin_write() {
            if let Ok(mut t) = tx.open_table(INDEXES) {
                let _ = t.insert(id.as_bytes(), &b"MOT"[..]);
            }
            let _ = tx.commit();
        }
    }

    /// Test hook: flips a byte of a stored chunk in its pack file.
    #[cfg(test)]
    pub(crate) fn corrupt_for_test(&self, hash: &Hash) {
        if let Ok(Some((pack, offset, stored, _, _))) = self.location(hash) {
            let path = self.pack_path(pack);
            let f = OpenOptions::new().read(true).write(true).open(path).ok();
            if let Some(f) = f {
                let pos = offset + u64::from(stored / 2);
                let mut b = [0u8; 1];
                let _ = f.read_exact_at(&mut b, pos);
                b[0] ^= 0x5a;
                let _ = f.write_all_at(&b, pos);
            }
        }
    }

    fn compact(&self, report: &mut GcReport) -> Result<()> {
        let mut w = lock(&self.writer);
        if let Some(p) = w.pack.take() {
            p.file
                .sync_data()
                .map_err(Error::io("fsync", self.pack_path(p.id)))?;
        }
        let live = self.live_per_pack()?;
        let mut rewrite = HashSet::new();
        let mut empty = Vec::new();
        for (id, path) in self.pack_files()? {
            let size = fs::metadata(&path).map_err(Error::io("stat", &path))?.len();
            let l = live.get(&id).copied().unwrap_or(0);
            if l == 0 {
                empty.push(id);
            } else if l * 100 < size * COMPACT_LIVE_PERCENT {
                rewrite.insert(id);
            }
        }
        self.delete_packs(&empty)?;
        report.packs_compacted += empty.len() as u64;
        if rewrite.is_empty() {
            return fsync_dir(&self.packs_dir());
        }
        let moving: Vec<(Hash, Loc)> = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(CHUNKS)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                let (k, loc) = row?;
                let loc = loc.value();
                if rewrite.contains(&loc.0) {
                    v.push((Hash(*k.value()), loc));
                }
            }
            v
        };
        let mut synced = Vec::new();
        let mut moved = Vec::with_capacity(moving.len());
        for (h, loc) in moving {
            let bytes = self.read_at_rest(loc)?;
            let (pack, offset) = self.append(&mut w, &bytes, &mut synced)?;
            moved.push((h, (pack, offset, loc.2, loc.3, loc.4)));
        }
        self.sync(&w)?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(CHUNKS)?;
            for (h, loc) in &moved {
                t.insert(h.as_bytes(), *loc)?;
            }
        }
        tx.commit()?;
        let ids: Vec<u64> = rewrite.into_iter().collect();
        self.delete_packs(&ids)?;
        report.packs_compacted += ids.len() as u64;
        fsync_dir(&self.packs_dir())
    }

    fn quarantine(&self, hash: &Hash, loc: Loc) {
        let dir = self.root.join("quarantine");
        if let Ok(bytes) = self.read_at_rest(loc) {
            let p = dir.join(format!("{}.chunk", hash.to_hex()));
            let _ = fs::write(p, bytes);
        }
    }
}

impl ChunkStore for FsStore {
    fn put_batch(&self, chunks: &[(Hash, &[u8])]) -> Result<PutReport> {
        let mut w = lock(&self.writer);
        let fresh = self.fresh(chunks.iter().map(|(h, _)| *h))?;
        let encoded = super::check_and_encode(chunks, &fresh)?;
        let sizes = chunks
            .iter()
            .map(|(h, b)| (*h, u32::try_from(b.len()).unwrap_or(u32::MAX)));
        self.store_encoded(&mut w, sizes.zip(encoded))
    }

    fn put_sent_batch(&self, chunks: &[SentChunk]) -> Result<PutReport> {
        let mut w = lock(&self.writer);
        let fresh = self.fresh(chunks.iter().map(|c| c.hash))?;
        let encoded = super::check_sent(chunks, &fresh)?;
        let sizes = chunks.iter().map(|c| (c.hash, c.raw_len));
        self.store_encoded(&mut w, sizes.zip(encoded))
    }

    fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        if let Some((loc, bytes)) = self.read_stored(hash)? {
            let bytes = bytes.map_err(|e| Error::CorruptChunk {
                hash: *hash,
                detail: e.to_string(),
            })?;
            return decode_at_rest(hash, loc.4, &bytes, loc.3);
        }
        let Some(entry) = self.seed_entry(hash)? else {
            return Err(Error::ChunkNotFound { hash: *hash });
        };
        match read_seed(hash, &entry) {
            Some(bytes) => Ok(bytes),
            None => {
                self.drop_seed(hash)?;
                Err(Error::SeedStale {
                    hash: *hash,
                    path: entry.path,
                })
            }
        }
    }

    fn get_sent(&self, hash: &Hash) -> Result<SentChunk> {
        if let Some((loc, bytes)) = self.read_stored(hash)? {
            let bytes = bytes.map_err(|e| Error::CorruptChunk {
                hash: *hash,
                detail: e.to_string(),
            })?;
            decode_at_rest(hash, loc.4, &bytes, loc.3)?;
            return Ok(SentChunk {
                hash: *hash,
                raw_len: loc.3,
                compressed: loc.4,
                bytes,
            });
        }
        Ok(encode_one(*hash, &self.get(hash)?))
    }

    fn info(&self, hash: &Hash) -> Result<Option<ChunkInfo>> {
        if let Some((_, _, stored, raw, compressed)) = self.location(hash)? {
            return Ok(Some(ChunkInfo {
                raw_len: raw,
                stored_len: stored,
                compressed,
                source: ChunkSource::Stored,
            }));
        }
        let tx = self.db.begin_read()?;
        let seeded = tx.open_table(SEEDED)?;
        Ok(seeded.get(hash.as_bytes())?.map(|v| {
            let (_, _, len) = v.value();
            ChunkInfo {
                raw_len: len,
                stored_len: len,
                compressed: false,
                source: ChunkSource::Seeded,
            }
        }))
    }

    fn put_index(&self, index: &ChunkIndex) -> Result<Hash> {
        let bytes = index.encode()?;
        let id = Hash::of(&bytes);
        let tx = self.db.begin_write()?;
        tx.open_table(INDEXES)?
            .insert(id.as_bytes(), bytes.as_slice())?;
        tx.commit()?;
        Ok(id)
    }

    fn get_index(&self, id: &Hash) -> Result<ChunkIndex> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INDEXES)?;
        let v = t
            .get(id.as_bytes())?
            .ok_or(Error::IndexNotFound { hash: *id })?;
        ChunkIndex::decode(v.value())
    }

    fn pin(&self, release: Hash, index_id: Hash) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            if tx.open_table(INDEXES)?.get(index_id.as_bytes())?.is_none() {
                return Err(Error::IndexNotFound { hash: index_id });
            }
            tx.open_multimap_table(PINS)?
                .insert(release.as_bytes(), index_id.as_bytes())?;
        }
        tx.commit()?;
        Ok(())
    }

    fn unpin(&self, release: Hash) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let had = {
            let mut t = tx.open_multimap_table(PINS)?;
            let had = !t.get(release.as_bytes())?.is_empty();
            t.remove_all(release.as_bytes())?;
            had
        };
        tx.commit()?;
        Ok(had)
    }

    fn pins(&self) -> Result<Vec<(Hash, Hash)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(PINS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, vs) = row?;
            let r = Hash(*k.value());
            for v in vs {
                out.push((r, Hash(*v?.value())));
            }
        }
        out.sort();
        Ok(out)
    }

    fn gc(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        // Hold the writer so no put lands between computing the live set and
        // deleting: a chunk put during GC is kept by the next GC's pins only.
        {
            let _w = lock(&self.writer);
            let (live_chunks, live_indexes) = live_set(self)?;
            let tx = self.db.begin_write()?;
            {
                let mut t = tx.open_table(CHUNKS)?;
                let dead: Vec<([u8; 32], u32)> = t
                    .iter()?
                    .filter_map(|row| row.ok())
                    .map(|(k, v)| (*k.value(), v.value().2))
                    .filter(|(k, _)| !live_chunks.contains(&Hash(*k)))
                    .collect();
                for (k, stored) in dead {
                    t.remove(&k)?;
                    report.chunks_removed += 1;
                    report.bytes_removed += u64::from(stored);
                }
                let mut ix = tx.open_table(INDEXES)?;
                let dead: Vec<[u8; 32]> = ix
                    .iter()?
                    .filter_map(|row| row.ok())
                    .map(|(k, _)| *k.value())
                    .filter(|k| !live_indexes.contains(&Hash(*k)))
                    .collect();
                for k in dead {
                    ix.remove(&k)?;
                    report.indexes_removed += 1;
                }
            }
            tx.commit()?;
        }
        self.compact(&mut report)?;
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats> {
        let mut s = StoreStats::default();
        {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(CHUNKS)?;
            for row in t.iter()? {
                let (_, v) = row?;
                let (_, _, stored, raw, _) = v.value();
                s.chunks += 1;
                s.raw_bytes += u64::from(raw);
                s.stored_bytes += u64::from(stored);
            }
            s.seeded_chunks = tx.open_table(SEEDED)?.len()?;
            s.indexes = tx.open_table(INDEXES)?.len()?;
            s.pins = tx.open_multimap_table(PINS)?.len()?;
        }
        for (_, p) in self.pack_files()? {
            s.disk_bytes += fs::metadata(&p).map_err(Error::io("stat", &p))?.len();
        }
        Ok(s)
    }

    fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let all: Vec<(Hash, Loc)> = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(CHUNKS)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                let (k, loc) = row?;
                v.push((Hash(*k.value()), loc.value()));
            }
            v
        };
        // Re-read each location at check time (a concurrent GC may have
        // moved or removed the chunk since the listing) and remember it, so
        // only a row still pointing at the bad bytes is removed below.
        let mut bad_locs: Vec<(Hash, Loc)> = Vec::new();
        for (h, _) in &all {
            let Some((loc, bytes)) = self.read_stored(h)? else {
                continue;
            };
            report.chunks_checked += 1;
            if bytes
                .and_then(|b| decode_at_rest(h, loc.4, &b, loc.3))
                .is_err()
            {
                self.quarantine(h, loc);
                report.bad_chunks.push(*h);
                bad_locs.push((*h, loc));
            }
        }
        let bad_indexes: Vec<Hash> = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(INDEXES)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                let (k, b) = row?;
                if ChunkIndex::decode(b.value()).is_err() {
                    v.push(Hash(*k.value()));
                }
            }
            v
        };
        let seeded: Vec<Hash> = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(SEEDED)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                v.push(Hash(*row?.0.value()));
            }
            v
        };
        for h in seeded {
            if let Some(e) = self.seed_entry(&h)?
                && read_seed(&h, &e).is_some()
            {
                continue;
            }
            report.stale_seeds.push(h);
        }
        report.bad_indexes = bad_indexes;
        if !report.is_clean() {
            let tx = self.db.begin_write()?;
            {
                let mut t = tx.open_table(CHUNKS)?;
                for (h, loc) in &bad_locs {
                    let current = t.get(h.as_bytes())?.map(|v| v.value());
                    if current == Some(*loc) {
                        t.remove(h.as_bytes())?;
                    }
                }
                let mut ix = tx.open_table(INDEXES)?;
                for h in &report.bad_indexes {
                    ix.remove(h.as_bytes())?;
                }
                let mut s = tx.open_table(SEEDED)?;
                for h in &report.stale_seeds {
                    s.remove(h.as_bytes())?;
                }
            }
            tx.commit()?;
        }
        Ok(report)
    }

    fn seed_file(&self, path: &Path, params: &ChunkingParams) -> Result<SeedReport> {
        let (abs, index, entries) = chunk_for_seed(path, params)?;
        let index_id = self.put_index(&index)?;
        self.replace_seeds(&abs, &entries)?;
        Ok(SeedReport {
            index,
            index_id,
            chunks: entries.len() as u64,
        })
    }

    fn unseed(&self, path: &Path) -> Result<()> {
        // A path that no longer resolves was seeded (if at all) under the
        // name it had: compare as given then.
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.replace_seeds(&abs, &[])
    }

    fn seed_region(&self, path: &Path, offset: u64, index: &ChunkIndex) -> Result<SeedReport> {
        let (abs, entries) = scan_region(path, offset, index)?;
        let index_id = self.put_index(index)?;
        self.replace_seeds(&abs, &entries)?;
        Ok(SeedReport {
            index: index.clone(),
            index_id,
            chunks: entries.len() as u64,
        })
    }

    fn list(&self) -> Result<Vec<(Hash, ChunkInfo)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHUNKS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (_, _, stored, raw, compressed) = v.value();
            out.push((
                Hash(*k.value()),
                ChunkInfo {
                    raw_len: raw,
                    stored_len: stored,
                    compressed,
                    source: ChunkSource::Stored,
                },
            ));
        }
        Ok(out)
    }
}
