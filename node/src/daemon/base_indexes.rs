//! The chunk indexes of images this node has run, kept on disk
//! (`DATA_DIR/base-indexes/IMAGE.idx`, IMAGE the image hash in hex; the
//! [`KEEP`] most recently run).
//!
//! A large release crosses the radio with its chunk index written as a
//! delta against the index of its first patch's base image. The node that
//! hands such a release to its radio needs that base index, but the
//! image it seeds is by then often the release itself (a publisher
//! installs what it publishes) and, after a restart, nothing in memory
//! remembers the image before. Releases the core holds cover bases that
//! were releases; these files cover the rest (a factory or testnet image).
//!
//! A file is only ever a hint: it is decoded with the index size limit and
//! used only when it describes the image its name says, and the delta
//! built from it is checked by every receiver against the signed index id.
//! A missing, unreadable or wrong file is the same as none.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use meshota_blobstore::ChunkIndex;
use meshota_blobstore::index::MAX_INDEX_BYTES;
use meshota_manifest::Hash;
use meshota_manifest::fs::{read_limited, write_atomic};

/// Indexes kept: the running image's and the two before it.
pub(super) const KEEP: usize = 3;

/// The directory of remembered base indexes.
#[derive(Debug, Clone)]
pub(super) struct BaseIndexes {
    dir: PathBuf,
}

impl BaseIndexes {
    /// The remembered indexes under `data_dir` (nothing is created yet).
    pub(super) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("base-indexes"),
        }
    }

    fn path(&self, image: &Hash) -> PathBuf {
        self.dir.join(format!("{}.idx", image.to_hex()))
    }

    /// Remembers `index` as the most recently run image's (written
    /// atomically, or its file's time refreshed when already there), then
    /// forgets all but the [`KEEP`] most recent.
    ///
    /// # Errors
    /// A description of the file operation that failed.
    pub(super) fn remember(&self, index: &ChunkIndex) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = self.path(&index.image_hash());
        let refreshed = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if refreshed.is_err() {
            let bytes = index.encode().map_err(|e| e.to_string())?;
            write_atomic(&path, &bytes, 0o644).map_err(|e| e.to_string())?;
        }
        self.prune()
    }

    /// The remembered index of `image`, if a file for it decodes and
    /// describes that image.
    pub(super) fn find(&self, image: &Hash) -> Option<ChunkIndex> {
        let path = self.path(image);
        let bytes = read_limited(&path, MAX_INDEX_BYTES).ok()?;
        let index = ChunkIndex::decode(&bytes).ok()?;
        (index.image_hash() == *image).then_some(index)
    }

    fn prune(&self) -> Result<(), String> {
        let at = |e: std::io::Error| format!("{}: {e}", self.dir.display());
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(at)? {
            let path = entry.map_err(at)?.path();
            if path.extension().is_some_and(|e| e == "idx") {
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((modified, path));
            }
        }
        files.sort();
        let excess = files.len().saturating_sub(KEEP);
        for (_, path) in files.into_iter().take(excess) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshota_blobstore::{DEFAULT_PARAMS, MemStore, ingest};

    fn index_of(seed: u8) -> ChunkIndex {
        let image: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect();
        ingest(
            &MemStore::new(),
            image.as_slice(),
            &DEFAULT_PARAMS,
            &mut |_| {},
        )
        .unwrap()
        .index
    }

    #[test]
    fn a_remembered_index_is_found_by_its_image() {
        let d = tempfile::tempdir().unwrap();
        let b = BaseIndexes::new(d.path());
        let i = index_of(1);
        assert!(b.find(&i.image_hash()).is_none());
        b.remember(&i).unwrap();
        assert_eq!(b.find(&i.image_hash()), Some(i.clone()));
        // Another process (after a restart) reads the same.
        assert_eq!(BaseIndexes::new(d.path()).find(&i.image_hash()), Some(i));
    }

    #[test]
    fn only_the_most_recently_run_indexes_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let b = BaseIndexes::new(d.path());
        let all: Vec<ChunkIndex> = (1..=5).map(index_of).collect();
        for i in &all[..3] {
            b.remember(i).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Running the first image again makes it the most recent.
        b.remember(&all[0]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        b.remember(&all[3]).unwrap();
        let kept: Vec<bool> = all
            .iter()
            .map(|i| b.find(&i.image_hash()).is_some())
            .collect();
        assert_eq!(kept, [true, false, true, true, false]);
    }

    #[test]
    fn a_corrupt_or_misnamed_file_is_no_index() {
        let d = tempfile::tempdir().unwrap();
        let b = BaseIndexes::new(d.path());
        let (one, two) = (index_of(1), index_of(2));
        b.remember(&one).unwrap();
        let path = b.path(&one.image_hash());
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        bytes.truncate(n - 3);
        std::fs::write(&path, &bytes).unwrap();
        assert!(b.find(&one.image_hash()).is_none());
        // Two's index under one's name is not one's index.
        std::fs::write(&path, two.encode().unwrap()).unwrap();
        assert!(b.find(&one.image_hash()).is_none());
    }
}
