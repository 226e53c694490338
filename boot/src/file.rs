//! [`FileSlot`]: a slot in a plain file (testnets) or on a block device or
//! partition (Linux). Both go through the same code; a block device is opened
//! with `O_SYNC` and flushed with `fsync`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};
use crate::slot::{ERASED, Slot, check_erase, check_range};

/// `O_SYNC` of the target platform.
const O_SYNC: i32 = libc::O_SYNC;

/// Bytes written per call when erasing a file region.
const ERASE_CHUNK: usize = 64 * 1024;

/// How a [`FileSlot`] makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Buffered writes; `flush` calls `fsync`. For plain files.
    FsyncOnFlush,
    /// Opened `O_SYNC` (each write reaches the device) and `flush` still
    /// calls `fsync`. For block devices and partitions.
    SyncWrites,
}

/// A slot at a fixed byte range of a file or block device.
///
/// Invariant: every access stays inside `[offset, offset + size)` of the file;
/// erase writes [`ERASED`] bytes; erase granularity is `erase_size` (1 unless
/// configured, as files and block devices can rewrite any byte).
#[derive(Debug)]
pub struct FileSlot {
    file: File,
    path: PathBuf,
    offset: u64,
    size: u64,
    erase_size: u64,
    durability: Durability,
}

impl FileSlot {
    /// Creates (or truncates) a plain file of `size` erased bytes.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err(format!("create slot file {}", path.display())))?;
        let mut slot = Self {
            file,
            path: path.to_path_buf(),
            offset: 0,
            size,
            erase_size: 1,
            durability: Durability::FsyncOnFlush,
        };
        slot.file
            .set_len(size)
            .map_err(io_err(format!("size slot file {}", path.display())))?;
        slot.erase(0, size)?;
        slot.flush()?;
        Ok(slot)
    }

    /// Opens an existing file as a whole-file slot.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_region(path, 0, None, Durability::FsyncOnFlush)
    }

    /// Opens a block device or partition (e.g. `/dev/mmcblk0p2`) as a slot;
    /// its size is the device size.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn open_block_device(path: &Path) -> Result<Self> {
        Self::open_region(path, 0, None, Durability::SyncWrites)
    }

    /// Opens `size` bytes (or up to the end when `None`) at `offset` of `path`.
    ///
    /// # Errors
    /// I/O errors; [`Error::OutOfBounds`] when the region passes the end.
    pub fn open_region(
        path: &Path,
        offset: u64,
        size: Option<u64>,
        durability: Durability,
    ) -> Result<Self> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if durability == Durability::SyncWrites {
            opts.custom_flags(O_SYNC);
        }
        let mut file = opts
            .open(path)
            .map_err(io_err(format!("open slot {}", path.display())))?;
        // Seeking to the end works for block devices, where metadata length is 0.
        let total = file
            .seek(SeekFrom::End(0))
            .map_err(io_err(format!("size of {}", path.display())))?;
        let size = match size {
            Some(s) => s,
            None => total.saturating_sub(offset),
        };
        check_range(offset, size, total)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            offset,
            size,
            erase_size: 1,
            durability,
        })
    }

    /// Sets the erase granularity (for partitions whose medium has one).
    #[must_use]
    pub fn with_erase_size(mut self, erase_size: u64) -> Self {
        self.erase_size = erase_size.max(1);
        self
    }

    /// The path the slot lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How writes are made durable.
    #[must_use]
    pub const fn durability(&self) -> Durability {
        self.durability
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        let abs = self.offset.saturating_add(offset);
        self.file
            .seek(SeekFrom::Start(abs))
            .map_err(io_err(format!("seek {}", self.path.display())))?;
        Ok(())
    }
}

impl Slot for FileSlot {
    fn size(&self) -> u64 {
        self.size
    }

    fn erase_size(&self) -> u64 {
        self.erase_size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.seek(offset)?;
        self.file
            .read_exact(buf)
            .map_err(io_err(format!("read {}", self.path.display())))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        check_range(offset, data.len() as u64, self.size)?;
        self.seek(offset)?;
        self.file
            .write_all(data)
            .map_err(io_err(format!("write {}", self.path.display())))
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<()> {
        check_erase(offset, len, self.size, self.erase_size)?;
        self.seek(offset)?;
        let chunk = [ERASED; ERASE_CHUNK];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left)
                .unwrap_or(ERASE_CHUNK)
                .min(ERASE_CHUNK);
            self.file
                .write_all(chunk.get(..n).unwrap_or(&chunk))
                .map_err(io_err(format!("erase {}", self.path.display())))?;
            left -= n as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(io_err(format!("flush {}", self.path.display())))?;
        self.file.sync_all().map_err(|source| Error::Io {
            context: format!("fsync {}", self.path.display()),
            source,
        })
    }
}
