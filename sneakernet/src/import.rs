//! Verifying a bundle file, and importing it into a node's store.
//!
//! Import reads the file twice. The first pass checks everything (every
//! record against its id, the end digest, every signature under the node's
//! trust root, the replay rule, every reference) and writes nothing. Only
//! when it passes does the second pass commit: chunks in batches, then
//! indexes, then pins, then manifests (each written atomically), so a
//! release becomes visible to the node only after all it needs is durable.
//! The second pass checks each record again as it commits it; should the
//! file change between the passes (a stick swapped mid-import), the import
//! stops with that error, and the chunks it had committed are unreferenced
//! by any manifest or pin: invisible, and dropped by `meshota store gc`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use meshota_blobstore::{ChunkIndex, ChunkStore};
use meshota_manifest::fs::write_atomic;
use meshota_manifest::{Hash, ReleaseManifest, SignedDocument};
use serde::Serialize;

use crate::crypt::DecryptionKey;
use crate::error::{Error, Result};
use crate::reader::{BundleReader, Item};
use crate::verify::{Checker, Policy, Summary};

/// Chunk bytes held in memory before a batch is committed.
const BATCH_BYTES: usize = 32 << 20;

/// Limits a bundle must meet before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bundle file accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: 8 << 30 }
    }
}

/// Progress of a pass: bytes of the file read so far and its size.
pub type Progress<'p> = &'p mut dyn FnMut(Pass, u64, u64);

/// Which pass over the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    /// Checking everything, writing nothing.
    Verify,
    /// Committing to the store.
    Commit,
}

fn open_file(path: &Path, limits: Limits) -> Result<(BufReader<File>, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if size > limits.max_bytes {
        return Err(Error::TooLarge {
            size,
            max: limits.max_bytes,
        });
    }
    Ok((BufReader::with_capacity(1 << 20, file), size))
}

/// Checks a whole bundle file under `policy` without writing anything.
///
/// # Errors
/// Every error of [`BundleReader`] and [`Checker`], [`Error::TooLarge`].
pub fn verify_file(
    path: &Path,
    key: Option<&DecryptionKey>,
    policy: Policy<'_>,
    limits: Limits,
    progress: Progress<'_>,
) -> Result<Summary> {
    let (file, size) = open_file(path, limits)?;
    let mut reader = BundleReader::open(file, key)?;
    let mut checker = Checker::new(policy);
    while let Some(record) = reader.next_record()? {
        checker.check(&record)?;
        progress(Pass::Verify, reader.offset(), size);
    }
    progress(Pass::Verify, size, size);
    let header = reader.header().clone();
    checker.finish(header.encrypted, &header.recipients, size)
}

/// Where an import commits.
#[derive(Debug)]
pub struct Target<'a, S: ?Sized> {
    /// The node's chunk store.
    pub store: &'a S,
    /// The node's manifest directory (`<data_dir>/manifests`): each
    /// release as `<release id>.mota`.
    pub manifests_dir: &'a Path,
}

/// A release an import committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRelease {
    /// Release id.
    pub id: Hash,
    /// Version.
    pub version: String,
    /// The signed manifest bytes.
    pub manifest: Vec<u8>,
    /// The encoded chunk index of its first component.
    pub index: Vec<u8>,
}

/// What an import committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// What the bundle holds.
    pub summary: Summary,
    /// The releases, now in the store and the manifest directory.
    pub releases: Vec<ImportedRelease>,
    /// Every chunk the bundle carried (all now in the store).
    pub chunks: Vec<Hash>,
    /// How many of them the store did not hold before.
    pub new_chunks: u64,
}

/// Verifies `path` completely, then commits it to `target` (see the module
/// doc for the order and what a failure leaves).
///
/// # Errors
/// As [`verify_file`] (nothing written); [`Error::Store`] or I/O while
/// committing.
pub fn import<S: ChunkStore + ?Sized>(
    path: &Path,
    key: Option<&DecryptionKey>,
    policy: Policy<'_>,
    limits: Limits,
    target: &Target<'_, S>,
    progress: Progress<'_>,
) -> Result<Imported> {
    let summary = verify_file(path, key, policy, limits, progress)?;

    let (file, size) = open_file(path, limits)?;
    let mut reader = BundleReader::open(file, key)?;
    let mut checker = Checker::new(policy);
    let mut manifests: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut indexes: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut chunks = Vec::new();
    let mut batch: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut new_chunks = 0u64;
    let mut commit = |batch: &mut Vec<(Hash, Vec<u8>)>| -> Result<()> {
        let refs: Vec<(Hash, &[u8])> = batch.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        let report = target.store.put_batch(&refs).map_err(Error::Store)?;
        new_chunks += report.new_chunks;
        batch.clear();
        Ok(())
    };
    while let Some(record) = reader.next_record()? {
        checker.check(&record)?;
        match record.item {
            Item::TrustRoot(_) => {}
            Item::Manifest(bytes) => manifests.push((record.id, bytes)),
            Item::Index(bytes) => indexes.push((record.id, bytes)),
            Item::Chunk(raw) => {
                chunks.push(record.id);
                batch_bytes += raw.len();
                batch.push((record.id, raw));
                if batch_bytes >= BATCH_BYTES {
                    commit(&mut batch)?;
                    batch_bytes = 0;
                }
            }
        }
        progress(Pass::Commit, reader.offset(), size);
    }
    let header = reader.header().clone();
    let again = checker.finish(header.encrypted, &header.recipients, size)?;
    if again != summary {
        return Err(Error::CorruptStream(
            "the file changed between the verify and commit passes".into(),
        ));
    }
    commit(&mut batch)?;
    for (_, bytes) in &indexes {
        let index = ChunkIndex::decode(bytes).map_err(Error::Store)?;
        target.store.put_index(&index).map_err(Error::Store)?;
    }
    let mut releases = Vec::new();
    for (_, bytes) in &manifests {
        let doc =
            SignedDocument::<ReleaseManifest>::decode(bytes).map_err(|e| Error::Manifest {
                id: Hash::of(bytes).to_hex(),
                source: e,
            })?;
        let id = doc.id();
        let body = doc.unverified_body();
        for c in &body.components {
            target.store.pin(id, c.chunk_index).map_err(Error::Store)?;
        }
        let first = body.components.first().map(|c| c.chunk_index);
        let index = indexes
            .iter()
            .find(|(ix, _)| Some(*ix) == first)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        releases.push(ImportedRelease {
            id,
            version: body.version.clone(),
            manifest: bytes.clone(),
            index,
        });
    }
    std::fs::create_dir_all(target.manifests_dir)
        .map_err(|e| Error::io(target.manifests_dir, e))?;
    for r in &releases {
        let path = target.manifests_dir.join(format!("{}.mota", r.id.to_hex()));
        write_atomic(&path, &r.manifest, 0o644).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(Imported {
        summary,
        releases,
        chunks,
        new_chunks,
    })
}
