//! An image read out of a chunk store as a byte stream, for the boot crate's
//! install pipeline (which takes any [`Read`]).
//!
//! Memory is one chunk (at most 1 MiB, the store's limit) whatever the image
//! size. Every chunk is hash-checked by the store on the way out and
//! length-checked here against the index; the whole image is hash-checked
//! by the install pipeline when it reads the slot back.

use std::io::{self, Read};

use meshota_blobstore::{ChunkIndex, ChunkStore};

/// Reads the image an index describes, one chunk at a time.
///
/// Invariant: `buf[pos..]` is the unread rest of chunk `next - 1`; the bytes
/// handed out so far are exactly the concatenation of the first chunks of
/// the index.
pub(crate) struct StoreImageReader<'a, S: ChunkStore + ?Sized> {
    store: &'a S,
    index: &'a ChunkIndex,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a, S: ChunkStore + ?Sized> StoreImageReader<'a, S> {
    /// A reader at the start of the image of `index`.
    pub(crate) fn new(store: &'a S, index: &'a ChunkIndex) -> Self {
        Self {
            store,
            index,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Loads the next chunk; false at the end of the image.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(c) = self.index.chunks().get(self.next) else {
            return Ok(false);
        };
        let bytes = self.store.get(&c.hash).map_err(io::Error::other)?;
        if bytes.len() != c.len as usize {
            return Err(io::Error::other(format!(
                "chunk {} ({} of the index) has {} bytes, the index says {}",
                c.hash,
                self.next,
                bytes.len(),
                c.len
            )));
        }
        self.next += 1;
        self.buf = bytes;
        self.pos = 0;
        Ok(true)
    }
}

impl<S: ChunkStore + ?Sized> Read for StoreImageReader<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        // Bounded: each pass either returns or consumes one chunk of the index
        // (an empty chunk cannot be indexed, but is tolerated).
        while self.pos >= self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use meshota_blobstore::{DEFAULT_PARAMS, MemStore, ingest};

    use super::*;

    fn image(len: usize) -> Vec<u8> {
        meshota_testkit::image(len, 0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn reading_in_odd_sized_pieces_yields_the_whole_image() {
        let img = image(300_000);
        let store = MemStore::new();
        let report = ingest(&store, &img[..], &DEFAULT_PARAMS, &mut |_| {}).unwrap();
        let index = store.get_index(&report.index_id).unwrap();
        assert!(index.chunks().len() > 3);
        let mut r = StoreImageReader::new(&store, &index);
        let mut out = Vec::new();
        let mut buf = [0u8; 7777];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, img);
    }

    #[test]
    fn a_missing_chunk_is_a_read_error_naming_it() {
        let img = image(200_000);
        let store = MemStore::new();
        let report = ingest(&store, &img[..], &DEFAULT_PARAMS, &mut |_| {}).unwrap();
        let index = store.get_index(&report.index_id).unwrap();
        let empty = MemStore::new();
        let mut r = StoreImageReader::new(&empty, &index);
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        let first = index.chunks()[0].hash.to_string();
        assert!(e.to_string().contains(&first), "{e}");
    }
}
