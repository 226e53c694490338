//! Exporting releases from a store into a bundle, minus what a want list
//! says the field already holds.

use std::collections::HashSet;
use std::path::Path;

use meshota_blobstore::ChunkStore;
use meshota_blobstore::patch::PatchIndex;
use meshota_manifest::{Hash, ReleaseManifest, SignedDocument};
use serde::Serialize;

use crate::crypt::RecipientKey;
use crate::error::{Error, Result};
use crate::want::WantList;
use crate::writer::BundleWriter;

/// What to put in a bundle.
#[derive(Debug, Default)]
pub struct ExportSpec<'a> {
    /// The signed trust root to carry (recommended: `bundle verify` on the
    /// stick then needs nothing else).
    pub trust_root: Option<&'a [u8]>,
    /// Signed release manifests, as their files hold them.
    pub manifests: Vec<Vec<u8>>,
    /// The field's want list: chunks it holds are left out, and a
    /// release's patches are carried only for the base the field runs.
    pub want: Option<&'a WantList>,
    /// Encrypt to these recipients (none: a plain bundle).
    pub recipients: Vec<RecipientKey>,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Releases written.
    pub releases: usize,
    /// Chunks written (including patch blobs).
    pub chunks: u64,
    /// Chunks left out because the want list says the field holds them.
    pub chunks_skipped: u64,
    /// Patches written.
    pub patches: usize,
    /// Bundle size in bytes.
    pub bytes: u64,
    /// Whether it is encrypted.
    pub encrypted: bool,
}

fn missing(what: &'static str, id: &Hash, e: impl core::fmt::Display) -> Error {
    Error::Export {
        what,
        id: id.to_hex(),
        reason: e.to_string(),
    }
}

/// Writes the bundle to `out` (temp file, fsync, rename). `progress` gets
/// the bytes written so far. The store must hold every chunk of every
/// release that the want list does not name as held.
///
/// # Errors
/// [`Error::Export`] naming a release, index or chunk the store lacks;
/// I/O (nothing appears at `out`).
pub fn export<S: ChunkStore + ?Sized>(
    store: &S,
    spec: &ExportSpec<'_>,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport> {
    let docs = spec
        .manifests
        .iter()
        .map(|b| {
            SignedDocument::<ReleaseManifest>::decode(b)
                .map_err(|e| missing("release manifest", &Hash::of(b), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let held = match spec.want {
        Some(w) => w.held_hashes(store)?,
        None => HashSet::new(),
    };
    let base = spec.want.and_then(|w| w.installed_image);

    let mut w = BundleWriter::create(out, &spec.recipients)?;
    let mut report = ExportReport {
        encrypted: !spec.recipients.is_empty(),
        ..ExportReport::default()
    };
    if let Some(root) = spec.trust_root {
        w.trust_root(root)?;
    }
    for bytes in &spec.manifests {
        w.manifest(bytes)?;
    }
    report.releases = docs.len();
    let mut indexes = Vec::new();
    for doc in &docs {
        for c in &doc.unverified_body().components {
            let index = store
                .get_index(&c.chunk_index)
                .map_err(|e| missing("chunk index", &c.chunk_index, e))?;
            w.index(
                &index
                    .encode()
                    .map_err(|e| missing("chunk index", &c.chunk_index, e))?,
            )?;
            indexes.push(index);
        }
    }
    progress(w.bytes());
    // Patches first: a node that can apply them needs fewer chunks, but
    // the chunks still follow (the field may not be on the base).
    for doc in &docs {
        for p in &doc.unverified_body().patches {
            if base.is_some_and(|b| b != p.base_image_hash) {
                continue;
            }
            let Ok(patch) = PatchIndex::load(store, &p.patch, p.size) else {
                continue; // the exporting store does not have this patch
            };
            let mut blobs = vec![p.patch];
            blobs.extend(patch.pieces().iter().map(|piece| piece.hash));
            if !blobs.iter().all(|h| store.has(h).unwrap_or(false)) {
                continue;
            }
            for h in blobs {
                let sent = store
                    .get_sent(&h)
                    .map_err(|e| missing("patch blob", &h, e))?;
                if w.chunk(&sent)? {
                    report.chunks += 1;
                }
            }
            report.patches += 1;
            progress(w.bytes());
        }
    }
    for index in &indexes {
        for c in index.chunks() {
            if held.contains(&c.hash) {
                report.chunks_skipped += 1;
                continue;
            }
            let sent = store
                .get_sent(&c.hash)
                .map_err(|e| missing("chunk", &c.hash, e))?;
            if w.chunk(&sent)? {
                report.chunks += 1;
                progress(w.bytes());
            }
        }
    }
    report.bytes = w.finish()?;
    progress(report.bytes);
    Ok(report)
}
