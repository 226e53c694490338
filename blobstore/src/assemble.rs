//! Assembling an image from its index into any writer.

use std::io::Write;

use meshota_manifest::Hash;

use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::store::ChunkStore;

/// What an assembly wrote. Invariant: `bytes == index.total_size()` and the
/// written bytes hash to `index.image_hash()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssembleReport {
    /// Bytes written.
    pub bytes: u64,
    /// Chunks written (repeats counted).
    pub chunks: u64,
}

/// Streams the image of `index` into `out`: each chunk is read from `store`
/// (hash-checked by the store, length-checked here), written, and folded into
/// a running BLAKE3; the whole-image hash is checked at the end. Memory is
/// one chunk (at most 1 MiB) whatever the image size. `out` is flushed but
/// not synced: a caller writing a slot syncs it.
///
/// On error the writer holds a partial image: never mark it bootable.
///
/// # Errors
/// [`Error::ChunkNotFound`], [`Error::CorruptChunk`], [`Error::SeedStale`],
/// [`Error::Write`], [`Error::ImageHashMismatch`].
pub fn assemble<S: ChunkStore + ?Sized, W: Write>(
    store: &S,
    index: &ChunkIndex,
    out: &mut W,
    progress: &mut dyn FnMut(u64),
) -> Result<AssembleReport> {
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    for (i, c) in index.chunks().iter().enumerate() {
        let bytes = store.get(&c.hash)?;
        if bytes.len() != c.len as usize {
            return Err(Error::CorruptChunk {
                hash: c.hash,
                detail: format!("{} bytes, the index says {}", bytes.len(), c.len),
            });
        }
        out.write_all(&bytes).map_err(|source| Error::Write {
            offset: written,
            source,
        })?;
        hasher.update(&bytes);
        written += bytes.len() as u64;
        if i % 256 == 255 {
            progress(written);
        }
    }
    out.flush().map_err(|source| Error::Write {
        offset: written,
        source,
    })?;
    progress(written);
    let actual = Hash::from(hasher.finalize());
    if actual != index.image_hash() {
        return Err(Error::ImageHashMismatch {
            expected: index.image_hash(),
            actual,
        });
    }
    Ok(AssembleReport {
        bytes: written,
        chunks: index.chunks().len() as u64,
    })
}
