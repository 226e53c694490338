//! Random-access reads of an image (a base slot, a file, bytes in memory).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use meshota_manifest::Hash;

use crate::error::{Error, Result};

/// An image read by offset: a base slot, an image file, or bytes in memory.
/// Invariant: `len` does not change while a patch is created or applied
/// (if it does, reads fail or produced chunks fail their hash check).
pub trait ReadAt {
    /// The image length in bytes.
    ///
    /// # Errors
    /// I/O.
    fn image_len(&self) -> io::Result<u64>;

    /// Fills `buf` from `offset`; an error if the image ends first.
    ///
    /// # Errors
    /// I/O, [`io::ErrorKind::UnexpectedEof`] past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    /// The length by seeking to the end, so block devices (whose metadata
    /// length is 0) report their size.
    fn image_len(&self) -> io::Result<u64> {
        let mut f = self;
        f.seek(SeekFrom::End(0))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn image_len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn image_len(&self) -> io::Result<u64> {
        Ok(self.as_slice().len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

fn eof() -> io::Error {
    io::Error::from(io::ErrorKind::UnexpectedEof)
}

/// Bytes read per step when hashing or scanning an image.
pub(crate) const READ_STEP: usize = 1 << 20;

/// The BLAKE3 and length of the whole image (as [`ReadAt::image_len`]
/// reports it), read in 1 MiB steps (memory
/// does not grow with the image).
///
/// # Errors
/// [`Error::Read`] when a read fails.
pub fn hash_image<R: ReadAt + ?Sized>(image: &R) -> Result<(Hash, u64)> {
    let len = image.image_len().map_err(read_err)?;
    Ok((hash_prefix(image, len)?, len))
}

/// The BLAKE3 of the first `len` bytes of `image` (a slot may be longer
/// than the image written to it), read in 1 MiB steps.
///
/// # Errors
/// [`Error::Read`] when a read fails or the image is shorter than `len`.
pub fn hash_prefix<R: ReadAt + ?Sized>(image: &R, len: u64) -> Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_STEP];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(READ_STEP as u64)).unwrap_or(READ_STEP);
        image.read_exact_at(&mut buf[..n], off).map_err(read_err)?;
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    Ok(Hash::from(hasher.finalize()))
}

pub(crate) fn read_err(e: io::Error) -> Error {
    Error::Read {
        detail: e.to_string(),
    }
}

/// Size of the cached window [`WindowReader`] keeps of the base.
pub(crate) const BASE_WINDOW: usize = 64 * 1024;

/// Reads small ranges of an image through one cached 64 KiB window, so the
/// many short reads of a patch's add runs cost few system calls.
pub(crate) struct WindowReader<'a, R: ReadAt + ?Sized> {
    image: &'a R,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a, R: ReadAt + ?Sized> WindowReader<'a, R> {
    pub(crate) fn new(image: &'a R, len: u64) -> Self {
        Self {
            image,
            len,
            start: 0,
            buf: Vec::with_capacity(BASE_WINDOW),
        }
    }

    /// Copies `out.len()` bytes from `offset`; `None` when the range leaves
    /// the image (the caller names it), an error when a read fails.
    pub(crate) fn read(&mut self, mut offset: u64, mut out: &mut [u8]) -> Result<Option<()>> {
        let Some(end) = offset.checked_add(out.len() as u64) else {
            return Ok(None);
        };
        if end > self.len {
            return Ok(None);
        }
        while !out.is_empty() {
            let cached_end = self.start + self.buf.len() as u64;
            if offset < self.start || offset >= cached_end {
                let n = usize::try_from((self.len - offset).min(BASE_WINDOW as u64))
                    .unwrap_or(BASE_WINDOW);
                self.buf.resize(n, 0);
                self.image
                    .read_exact_at(&mut self.buf, offset)
                    .map_err(read_err)?;
                self.start = offset;
            }
            let at = usize::try_from(offset - self.start).unwrap_or(0);
            let take = (self.buf.len() - at).min(out.len());
            out[..take].copy_from_slice(&self.buf[at..at + take]);
            out = &mut out[take..];
            offset += take as u64;
        }
        Ok(Some(()))
    }
}
