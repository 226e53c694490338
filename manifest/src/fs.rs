//! Files on disk: atomic writes and secret key permissions (feature `std`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A secret key file that others can read: refused, as ssh refuses it.
    #[error(
        "{path}: secret key file is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any valid file of its kind.
    #[error("{path}: {len} bytes is larger than the {max}-byte limit for this kind of file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads at most `max` bytes; a longer file is refused before it is read.
///
/// # Errors
/// [`FileError::Io`], [`FileError::TooLarge`].
pub fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, FileError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len > max as u64 {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(io_err(path))?;
    if out.len() > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: out.len() as u64,
            max,
        });
    }
    Ok(out)
}

/// Reads a secret key file after checking that only its owner can access
/// it (no group or other permission bits).
///
/// # Errors
/// [`FileError::InsecurePermissions`], [`FileError::Io`], [`FileError::TooLarge`].
pub fn read_secret(path: &Path, max: usize) -> Result<Vec<u8>, FileError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_limited(path, max)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, created with `mode`, written, fsynced, renamed over `path`,
/// then the directory fsynced. Readers see the old file or the new one,
/// never a mix; a crash leaves at most a stray temporary file, which later
/// writes step around (every temporary name is new: process id and a
/// per-process counter, and a name already taken is skipped). Threads of
/// one process may write the same path at once; the last rename wins.
///
/// # Errors
/// [`FileError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut f) = create_temporary(&dir, &name, mode).map_err(io_err(path))?;
    let result = (|| {
        // The umask may have cleared bits; set exactly what was asked.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Temporary names tried before giving up: more than a crashed writer can
/// have left behind under one process id.
const TEMPORARY_ATTEMPTS: u32 = 64;

/// Creates a new temporary file `.NAME.tmp-PID-N` in `dir` with `mode`,
/// never opening an existing file.
fn create_temporary(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..TEMPORARY_ATTEMPTS {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{pid}-{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}
