//! Writing a bundle: streaming, to a temporary file beside the destination
//! that is flushed, fsynced and renamed only when the end record is written.
//! A bundle that was not finished (an error, a full stick, a crash) never
//! appears under its name.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use meshota_blobstore::SentChunk;
use meshota_manifest::Hash;

use crate::crypt::{ContentKey, RecipientKey, RecordCipher, seal_stanza};
use crate::error::{Error, Result};
use crate::format::{MAX_RECIPIENTS, RecordKind, fixed_header};

/// A bundle being written. Records must be added in kind order (trust
/// roots, manifests, indexes, chunks); a record whose id was already
/// written is skipped. [`BundleWriter::finish`] makes the file appear.
pub struct BundleWriter {
    out: PathBuf,
    tmp: Option<PathBuf>,
    file: BufWriter<File>,
    hasher: blake3::Hasher,
    cipher: Option<RecordCipher>,
    count: u64,
    bytes: u64,
    last: RecordKind,
    seen: HashSet<(RecordKind, Hash)>,
}

impl core::fmt::Debug for BundleWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("out", &self.out)
            .field("records", &self.count)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl BundleWriter {
    /// Starts a bundle that will appear at `out`, encrypted to `recipients`
    /// when there are any.
    ///
    /// # Errors
    /// I/O creating the temporary file; [`Error::Key`] for over
    /// [`MAX_RECIPIENTS`] recipients.
    pub fn create(out: &Path, recipients: &[RecipientKey]) -> Result<Self> {
        if recipients.len() > MAX_RECIPIENTS {
            return Err(Error::Key(format!(
                "at most {MAX_RECIPIENTS} recipients per bundle, not {}",
                recipients.len()
            )));
        }
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).map_err(|e| Error::Rng(e.to_string()))?;
        let tmp = dir.join(format!(".{name}.{}.part", hex_lower(&suffix)));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = Self {
            out: out.to_path_buf(),
            tmp: Some(tmp),
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            cipher: None,
            count: 0,
            bytes: 0,
            last: RecordKind::TrustRoot,
            seen: HashSet::new(),
        };
        let n = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
        let fixed = fixed_header(!recipients.is_empty(), n);
        let mut header = fixed.to_vec();
        if !recipients.is_empty() {
            let key = ContentKey::random()?;
            for r in recipients {
                header.extend_from_slice(&seal_stanza(r, &key, &fixed)?);
            }
            w.cipher = Some(key.cipher(Hash::of(&header)));
        }
        w.raw(&header)?;
        Ok(w)
    }

    /// Bytes written so far.
    #[must_use]
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        let path = self.tmp.clone().unwrap_or_default();
        self.file.write_all(bytes).map_err(|e| Error::io(&path, e))
    }

    /// Writes one record; returns false when its id was already written.
    fn record(&mut self, kind: RecordKind, id: Hash, parts: &[&[u8]]) -> Result<bool> {
        if kind < self.last {
            return Err(Error::Export {
                what: kind.name(),
                id: id.to_hex(),
                reason: format!("written after a {} (records go in kind order)", self.last),
            });
        }
        if kind != RecordKind::End && !self.seen.insert((kind, id)) {
            return Ok(false);
        }
        self.last = kind;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > kind.max_payload() {
            return Err(Error::Export {
                what: kind.name(),
                id: id.to_hex(),
                reason: format!("{len} bytes, over the {} limit", kind.max_payload()),
            });
        }
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        if let Some(cipher) = &self.cipher {
            let mut plain = Vec::with_capacity(1 + 32 + len);
            plain.push(kind as u8);
            plain.extend_from_slice(id.as_bytes());
            for p in parts {
                plain.extend_from_slice(p);
            }
            let sealed = cipher.seal(self.count, &plain)?;
            let n = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
            self.raw(&n.to_le_bytes())?;
            self.raw(&sealed)?;
        } else {
            let mut head = [0u8; 37];
            head[0] = kind as u8;
            head[1..5].copy_from_slice(&len32.to_le_bytes());
            head[5..].copy_from_slice(id.as_bytes());
            self.raw(&head)?;
            for p in parts {
                self.raw(p)?;
            }
        }
        self.count += 1;
        Ok(true)
    }

    /// Adds a signed trust root (as its file holds it).
    ///
    /// # Errors
    /// Out of order, over the size limit, I/O.
    pub fn trust_root(&mut self, bytes: &[u8]) -> Result<bool> {
        self.record(RecordKind::TrustRoot, Hash::of(bytes), &[bytes])
    }

    /// Adds a signed release manifest.
    ///
    /// # Errors
    /// As [`BundleWriter::trust_root`].
    pub fn manifest(&mut self, bytes: &[u8]) -> Result<bool> {
        self.record(RecordKind::Manifest, Hash::of(bytes), &[bytes])
    }

    /// Adds an encoded chunk index.
    ///
    /// # Errors
    /// As [`BundleWriter::trust_root`].
    pub fn index(&mut self, bytes: &[u8]) -> Result<bool> {
        self.record(RecordKind::ChunkIndex, Hash::of(bytes), &[bytes])
    }

    /// Adds a chunk in its at-rest form (as the store sends it); the id is
    /// the chunk's hash, which a reader checks after decompressing.
    ///
    /// # Errors
    /// As [`BundleWriter::trust_root`].
    pub fn chunk(&mut self, chunk: &SentChunk) -> Result<bool> {
        let mut prefix = [0u8; 5];
        prefix[0] = u8::from(chunk.compressed);
        prefix[1..].copy_from_slice(&chunk.raw_len.to_le_bytes());
        self.record(RecordKind::Chunk, chunk.hash, &[&prefix, &chunk.bytes])
    }

    /// Writes the end record, flushes and fsyncs, renames the file into
    /// place and fsyncs its directory. Returns the file size.
    ///
    /// # Errors
    /// I/O; the temporary file is removed.
    pub fn finish(mut self) -> Result<u64> {
        let digest = Hash(*self.hasher.finalize().as_bytes());
        let count = self.count;
        self.record(RecordKind::End, digest, &[&count.to_le_bytes()])?;
        let tmp = self.tmp.clone().unwrap_or_default();
        self.file.flush().map_err(|e| Error::io(&tmp, e))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
        self.tmp = None;
        if let Some(dir) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(self.bytes)
    }
}

impl Drop for BundleWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
