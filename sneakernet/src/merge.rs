//! Joining bundles: every record of every input, each id once, in kind
//! order. Each input is read (and checked by the reader) once per record
//! kind, so memory stays one record plus the set of ids written.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use meshota_blobstore::SentChunk;

use crate::crypt::{DecryptionKey, RecipientKey};
use crate::error::{Error, Result};
use crate::format::RecordKind;
use crate::reader::{BundleReader, Item};
use crate::writer::BundleWriter;

/// Merges `inputs` into a new bundle at `out`, encrypted to `recipients`
/// when any are given. Encrypted inputs need `key`. Returns the records
/// written. Reference checks are left to whoever verifies the result.
///
/// # Errors
/// Any reader error of any input (naming it), I/O; nothing appears at `out`.
pub fn merge(
    inputs: &[&Path],
    key: Option<&DecryptionKey>,
    recipients: &[RecipientKey],
    out: &Path,
) -> Result<u64> {
    let mut w = BundleWriter::create(out, recipients)?;
    let mut written = 0;
    for kind in [
        RecordKind::TrustRoot,
        RecordKind::Manifest,
        RecordKind::ChunkIndex,
        RecordKind::Chunk,
    ] {
        for path in inputs {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut r = BundleReader::open(BufReader::with_capacity(1 << 20, file), key)
                .map_err(|e| named(path, e))?;
            while let Some(rec) = r.next_record().map_err(|e| named(path, e))? {
                if rec.kind() != kind {
                    continue;
                }
                let new = match &rec.item {
                    Item::TrustRoot(b) => w.trust_root(b)?,
                    Item::Manifest(b) => w.manifest(b)?,
                    Item::Index(b) => w.index(b)?,
                    Item::Chunk(raw) => w.chunk(&SentChunk::encode(rec.id, raw))?,
                };
                written += u64::from(new);
            }
        }
    }
    w.finish()?;
    Ok(written)
}

fn named(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => Error::Export {
            what: "bundle",
            id: path.display().to_string(),
            reason: other.to_string(),
        },
    }
}
