//! Ingesting an image: chunk, store, index.

use std::io::Read;

use meshota_manifest::{ChunkingParams, Hash};

use crate::chunking::Chunker;
use crate::error::Result;
use crate::index::{ChunkIndex, ChunkRef};
use crate::store::ChunkStore;

/// Raw bytes buffered before one durable batch put during ingest: bounds
/// ingest memory and the work lost to a crash.
pub const INGEST_BATCH_BYTES: usize = 16 << 20;

/// What an ingest did. Invariant: `index_id == index.id()` and the index is
/// stored; every chunk of it was stored before the index was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// The image's chunk index.
    pub index: ChunkIndex,
    /// Its content address.
    pub index_id: Hash,
    /// Chunks newly stored (the rest were already present).
    pub new_chunks: u64,
    /// At-rest bytes newly stored.
    pub new_stored_bytes: u64,
}

/// Chunks `reader` with `params`, stores every chunk (batched, durable per
/// batch), then stores the index. `progress` is called with the bytes read
/// so far after each batch. Does not pin: pin the returned index for a
/// release or the next GC removes it.
///
/// # Errors
/// [`crate::Error::InvalidChunkingParams`], [`crate::Error::Read`], store errors.
pub fn ingest<S: ChunkStore + ?Sized, R: Read>(
    store: &S,
    reader: R,
    params: &ChunkingParams,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestReport> {
    let mut chunker = Chunker::new(reader, params)?;
    let mut refs = Vec::new();
    let mut batch: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut read = 0u64;
    let (mut new_chunks, mut new_stored_bytes) = (0u64, 0u64);
    let mut flush = |batch: &mut Vec<(Hash, Vec<u8>)>| -> Result<()> {
        let items: Vec<(Hash, &[u8])> = batch.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        let r = store.put_batch(&items)?;
        new_chunks += r.new_chunks;
        new_stored_bytes += r.new_stored_bytes;
        batch.clear();
        Ok(())
    };
    while let Some(c) = chunker.next_chunk()? {
        read += c.data.len() as u64;
        refs.push(ChunkRef {
            hash: c.hash,
            len: u32::try_from(c.data.len()).unwrap_or(u32::MAX),
        });
        batch_bytes += c.data.len();
        batch.push((c.hash, c.data));
        if batch_bytes >= INGEST_BATCH_BYTES {
            flush(&mut batch)?;
            batch_bytes = 0;
            progress(read);
        }
    }
    flush(&mut batch)?;
    progress(read);
    let (image_hash, _) = chunker.image_hash();
    let index = ChunkIndex::new(*params, refs, image_hash)?;
    let index_id = store.put_index(&index)?;
    Ok(IngestReport {
        index,
        index_id,
        new_chunks,
        new_stored_bytes,
    })
}

/// Chunks `reader` without storing anything: its index only.
///
/// # Errors
/// [`crate::Error::InvalidChunkingParams`], [`crate::Error::Read`].
pub fn index_reader<R: Read>(reader: R, params: &ChunkingParams) -> Result<ChunkIndex> {
    let mut chunker = Chunker::new(reader, params)?;
    let mut refs = Vec::new();
    while let Some(c) = chunker.next_chunk()? {
        refs.push(ChunkRef {
            hash: c.hash,
            len: u32::try_from(c.data.len()).unwrap_or(u32::MAX),
        });
    }
    let (image_hash, _) = chunker.image_hash();
    ChunkIndex::new(*params, refs, image_hash)
}
