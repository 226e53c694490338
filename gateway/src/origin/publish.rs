//! `meshota publish`: write a release into a static origin directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use meshota_blobstore::ChunkStore;
use meshota_blobstore::patch::PatchIndex;
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::MAX_CATALOG_BYTES;
use meshota_manifest::{
    Catalog, CatalogEntry, Expiration, Hash, InstallPolicy, ReleaseManifest, SecretKey,
    SignedDocument, TrustRoot, UnixTime, Verified,
};

use super::layout;
use crate::{Error, Result};

/// Mode of every file written to the origin (world-readable: it is served).
const MODE: u32 = 0o644;

/// What one publish did. Invariant: `objects_written + objects_present`
/// counts every object the release needs (manifest, indexes, patch blobs,
/// distinct chunks) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The release's id.
    pub release: Hash,
    /// Its version.
    pub version: String,
    /// Objects written by this run.
    pub objects_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
    /// Objects already on the origin, left alone.
    pub objects_present: u64,
    /// The catalog's sequence after this run.
    pub catalog_sequence: u64,
    /// Whether a new catalog was written (false when the release was
    /// already listed: publishing twice changes nothing).
    pub catalog_written: bool,
}

/// Writes the release `manifest` (its chunk indexes, patches and chunks
/// read from `store`) into the origin directory `to`, then a new catalog
/// listing it, signed by `key` with the previous sequence + 1.
///
/// Order: every object, then the manifest, then the catalog, each by
/// temp file + fsync + rename; objects already present are skipped (they
/// are content-addressed). The manifest is verified against `trust`
/// first, and the catalog before it is written, so a publish never writes
/// a catalog a gateway would refuse. An existing catalog must verify too.
///
/// # Errors
/// [`Error::Document`] (manifest or existing catalog untrusted, or the
/// new catalog would be: e.g. `key` is not a release key covering every
/// entry), [`Error::NotInStore`], store and file errors.
pub fn publish(
    store: &dyn ChunkStore,
    manifest: &[u8],
    trust: &Verified<TrustRoot>,
    key: &SecretKey,
    to: &Path,
    now: UnixTime,
    expiration: Expiration,
) -> Result<PublishReport> {
    let doc =
        SignedDocument::<ReleaseManifest>::decode(manifest).map_err(|source| Error::Document {
            what: "release manifest".into(),
            source,
        })?;
    let policy = InstallPolicy {
        hardware: None,
        installed_security_version: None,
        expiration,
    };
    let verified = trust
        .verify_manifest(&doc, &policy)
        .map_err(|source| Error::Document {
            what: "release manifest".into(),
            source,
        })?;
    let m = verified.body();
    let release = doc.id();

    // The new catalog is signed and checked before anything is written, so
    // a key the trust root refuses leaves the origin untouched.
    let catalog_path = to.join(layout::CATALOG);
    let previous = read_catalog(&catalog_path, trust, expiration)?;
    let (mut entries, last_sequence) = previous
        .map(|c| (c.releases, c.sequence))
        .unwrap_or_default();
    let listed = entries.iter().any(|e| e.release == release);
    let catalog = if listed {
        None
    } else {
        entries.push(CatalogEntry {
            release,
            hardware: m.hardware.clone(),
            channel: m.channel.clone(),
            version: m.version.clone(),
            security_version: m.security_version,
            manifest_size: manifest.len() as u64,
        });
        let body = Catalog {
            sequence: last_sequence + 1,
            issued: now,
            expires: None,
            releases: entries,
        };
        let what = || catalog_path.display().to_string();
        let signed = SignedDocument::sign(body, &[key]).map_err(|source| Error::Document {
            what: what(),
            source,
        })?;
        trust
            .verify_catalog(&signed, None, expiration)
            .map_err(|source| Error::Document {
                what: format!("{} (nothing written)", what()),
                source,
            })?;
        Some(signed.encode().map_err(|source| Error::Document {
            what: what(),
            source,
        })?)
    };

    let mut w = Writer {
        root: to.to_path_buf(),
        written: 0,
        bytes: 0,
        present: 0,
    };
    // Chunk indexes and chunks.
    let mut seen = HashSet::new();
    for c in &m.components {
        let index = match store.get_index(&c.chunk_index) {
            Ok(ix) => ix,
            Err(meshota_blobstore::Error::IndexNotFound { .. }) => {
                return Err(Error::NotInStore {
                    what: "chunk index",
                    id: c.chunk_index,
                });
            }
            Err(e) => return Err(e.into()),
        };
        for chunk in index.chunks() {
            if seen.insert(chunk.hash) {
                w.object(&layout::chunk(&chunk.hash), || {
                    get_blob(store, &chunk.hash, "chunk")
                })?;
            }
        }
        let encoded = index.encode()?;
        w.object(&layout::index(&c.chunk_index), || Ok(encoded))?;
    }
    // Patches: the index blob and its pieces.
    for p in &m.patches {
        let encoded = get_blob(store, &p.patch, "patch index")?;
        let pindex = PatchIndex::decode(&encoded)?;
        for piece in pindex.pieces() {
            w.object(&layout::patch(&piece.hash), || {
                get_blob(store, &piece.hash, "patch piece")
            })?;
        }
        w.object(&layout::patch(&p.patch), || Ok(encoded))?;
    }
    w.object(&layout::manifest(&release), || Ok(manifest.to_vec()))?;

    // The catalog, last.
    if let Some(bytes) = &catalog {
        write_atomic(&catalog_path, bytes, MODE)?;
    }
    Ok(PublishReport {
        release,
        version: m.version.clone(),
        objects_written: w.written,
        bytes_written: w.bytes,
        objects_present: w.present,
        catalog_sequence: last_sequence + u64::from(catalog.is_some()),
        catalog_written: catalog.is_some(),
    })
}

/// The existing catalog of an origin directory, verified; `None` when
/// there is none yet.
fn read_catalog(
    path: &Path,
    trust: &Verified<TrustRoot>,
    expiration: Expiration,
) -> Result<Option<Catalog>> {
    if !path.exists() {
        return Ok(None);
    }
    let what = || path.display().to_string();
    let bytes = read_limited(path, MAX_CATALOG_BYTES)?;
    let doc = SignedDocument::<Catalog>::decode(&bytes).map_err(|source| Error::Document {
        what: what(),
        source,
    })?;
    let v = trust
        .verify_catalog(&doc, None, expiration)
        .map_err(|source| Error::Document {
            what: what(),
            source,
        })?;
    Ok(Some(v.body().clone()))
}

/// A blob (chunk or patch blob) from the store, or [`Error::NotInStore`].
fn get_blob(store: &dyn ChunkStore, id: &Hash, what: &'static str) -> Result<Vec<u8>> {
    match store.get(id) {
        Ok(b) => Ok(b),
        Err(meshota_blobstore::Error::ChunkNotFound { .. }) => {
            Err(Error::NotInStore { what, id: *id })
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes content-addressed objects under the origin root, skipping those
/// present.
struct Writer {
    root: PathBuf,
    written: u64,
    bytes: u64,
    present: u64,
}

impl Writer {
    fn object(&mut self, rel: &str, bytes: impl FnOnce() -> Result<Vec<u8>>) -> Result<()> {
        let path = self.root.join(rel);
        if path.exists() {
            self.present += 1;
            return Ok(());
        }
        let bytes = bytes()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        write_atomic(&path, &bytes, MODE)?;
        self.written += 1;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}
