//! Content-defined chunking (FastCDC 2020) with recorded parameters.

use std::io::Read;

use fastcdc::v2020::{self, StreamCDC};
use meshota_manifest::{ChunkingAlgorithm, ChunkingParams, Hash};

use crate::error::{Error, Result};

/// The default chunking parameters: 4 KiB min, 16 KiB average, 64 KiB max.
///
/// Chosen by measurement (`blobstore-bench params`, figures in
/// DESIGN-NOTES.md): over esbuild 0.23.0→0.23.1 and 0.23.1→0.24.0 the
/// bytes to fetch (zstd per chunk, as sent) summed to 8.17 MB at 8 KiB,
/// 8.18 MB at 16 KiB, 8.40 MB at 32 KiB and 8.50 MB at 64 KiB average:
/// 16 KiB is as good as the smallest while cutting half as many chunks
/// (index rows, requests). A 64 KiB maximum keeps every chunk one mesh
/// message and one RaptorQ block. A 1 GiB image has ~64 Ki chunks (a 2.4 MB
/// index).
pub const DEFAULT_PARAMS: ChunkingParams = ChunkingParams {
    algorithm: ChunkingAlgorithm::FastCdc2020,
    min_size: 4 * 1024,
    avg_size: 16 * 1024,
    max_size: 64 * 1024,
};

/// Checks `params` against both [`ChunkingParams::validate`] and the bounds
/// FastCDC 2020 asserts on (which would otherwise panic in the chunker).
///
/// # Errors
/// [`Error::InvalidChunkingParams`] naming the broken bound.
pub fn check_params(params: &ChunkingParams) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidChunkingParams {
            params: *params,
            reason,
        })
    };
    if !params.validate() {
        return bad("sizes must satisfy 64 <= min <= avg <= max <= 1 MiB");
    }
    let (min, avg, max) = (
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
    );
    if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min) {
        return bad("min_size outside FastCDC's 64..=1 MiB");
    }
    if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg) {
        return bad("avg_size outside FastCDC's 256..=4 MiB");
    }
    if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max) {
        return bad("max_size outside FastCDC's 1 KiB..=16 MiB");
    }
    if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
        return bad("sizes must be even");
    }
    Ok(())
}

/// One chunk cut from a stream: its id, offset in the image and bytes.
/// Invariant: `hash == Hash::of(&data)`.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// BLAKE3 of `data`.
    pub hash: Hash,
    /// Offset of the chunk's first byte in the image.
    pub offset: u64,
    /// The chunk's bytes (at most `params.max_size`).
    pub data: Vec<u8>,
}

/// Streams chunks out of `reader` in order, holding at most one
/// `max_size` buffer plus the current chunk in memory. Also computes the
/// whole-image BLAKE3 and size as it goes ([`Chunker::image_hash`]).
pub struct Chunker<R: Read> {
    cdc: StreamCDC<R>,
    image: blake3::Hasher,
    size: u64,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with checked `params`.
    ///
    /// # Errors
    /// [`Error::InvalidChunkingParams`].
    pub fn new(reader: R, params: &ChunkingParams) -> Result<Self> {
        check_params(params)?;
        Ok(Self {
            cdc: StreamCDC::new(
                reader,
                params.min_size as usize,
                params.avg_size as usize,
                params.max_size as usize,
            ),
            image: blake3::Hasher::new(),
            size: 0,
        })
    }

    /// The next chunk, `None` at the end of the input.
    ///
    /// # Errors
    /// [`Error::Read`] when the reader fails.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        match self.cdc.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::Read {
                detail: e.to_string(),
            }),
            Some(Ok(c)) => {
                self.image.update(&c.data);
                self.size += c.data.len() as u64;
                Ok(Some(Chunk {
                    hash: Hash::of(&c.data),
                    offset: c.offset,
                    data: c.data,
                }))
            }
        }
    }

    /// The BLAKE3 and length of every byte chunked so far; after
    /// [`Chunker::next_chunk`] returned `None` this is the whole image.
    #[must_use]
    pub fn image_hash(&self) -> (Hash, u64) {
        (Hash::from(self.image.finalize()), self.size)
    }
}
