//! One poll of the origin: catalog, then each release's manifest, chunk
//! indexes, patches and missing chunks, verified before they are stored.

use std::path::Path;

use meshota_blobstore::index::MAX_INDEX_BYTES;
use meshota_blobstore::patch::PatchIndex;
use meshota_blobstore::patch::format::MAX_PATCH_INDEX_BYTES;
use meshota_blobstore::patch::pin_index;
use meshota_blobstore::{ChunkIndex, ChunkRef, ChunkStore};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::MAX_CATALOG_BYTES;
use meshota_manifest::{
    Catalog, Expiration, Hash, InstallPolicy, ReleaseManifest, SignedDocument, TrustRoot, Verified,
};

use super::http::{FetchStats, Origin};
use super::layout;
use crate::{Error, Result};

/// Chunks fetched before they are written to the store in one commit.
const PUT_BATCH_BYTES: usize = 4 << 20;

/// What a sync needs besides the origin and the store.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions<'a> {
    /// The node's trust root: the catalog and every manifest must verify.
    pub trust: &'a Verified<TrustRoot>,
    /// Expiry enforcement for the trust root, keys, catalog.
    pub expiration: Expiration,
    /// Where the last accepted catalog is kept (`catalog.mota`); the
    /// caller's state directory.
    pub state_dir: &'a Path,
}

/// A release that became complete in the store during this sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRelease {
    /// Its id.
    pub release: Hash,
    /// Its version.
    pub version: String,
    /// The signed manifest, as fetched (verified).
    pub manifest: Vec<u8>,
    /// The chunk index ids of its components (stored and pinned).
    pub indexes: Vec<Hash>,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Sequence of the catalog now held.
    pub catalog_sequence: u64,
    /// Releases the catalog lists.
    pub releases_listed: usize,
    /// Releases completed by this sync (empty when nothing was new).
    pub new_releases: Vec<SyncedRelease>,
    /// Chunks fetched and stored.
    pub chunks_fetched: u64,
    /// HTTP traffic of this sync.
    pub fetch: FetchStats,
}

/// Polls the origin once. Verifies the catalog against `opts.trust` and
/// the catalog held (a lower sequence is refused), then for each listed
/// release the store does not hold pinned: fetches and verifies its
/// manifest, indexes, patches and missing chunks, stores them and pins the
/// release. The catalog is recorded as held only after every release it
/// lists is complete, so an interrupted sync is resumed by the next poll.
///
/// # Errors
/// [`Error::Catalog`] (older or untrusted catalog: nothing is fetched),
/// [`Error::Document`] (a manifest fails verification),
/// [`Error::ObjectHashMismatch`], [`Error::ObjectTooLarge`],
/// [`Error::ObjectInvalid`] (nothing of that object is stored), HTTP and
/// store errors. Releases completed before the error stay stored and pinned.
pub fn sync(
    origin: &mut Origin,
    store: &dyn ChunkStore,
    opts: &SyncOptions<'_>,
) -> Result<SyncReport> {
    let before = origin.stats();
    let held_path = opts.state_dir.join("catalog.mota");
    let held = read_held(&held_path)?;
    let url = origin.url(layout::CATALOG);
    let bytes = origin.fetch_small(layout::CATALOG, MAX_CATALOG_BYTES as u64)?;
    let doc = SignedDocument::<Catalog>::decode(&bytes).map_err(|source| Error::Catalog {
        url: url.clone(),
        source,
    })?;
    let catalog = opts
        .trust
        .verify_catalog(&doc, held.as_ref().map(|h| (h.0, h.1)), opts.expiration)
        .map_err(|source| Error::Catalog {
            url: url.clone(),
            source,
        })?;
    // A release counts as held when it is pinned and none of its pinned
    // indexes misses a chunk (the mesh may have pinned one half-fetched).
    let mut pinned: std::collections::BTreeMap<Hash, bool> = std::collections::BTreeMap::new();
    for (r, ix) in store.pins()? {
        let complete = store
            .get_index(&ix)
            .and_then(|i| store.missing(&i))
            .is_ok_and(|m| m.is_empty());
        let e = pinned.entry(r).or_insert(true);
        *e = *e && complete;
    }
    let mut report = SyncReport {
        catalog_sequence: catalog.body().sequence,
        releases_listed: catalog.body().releases.len(),
        new_releases: Vec::new(),
        chunks_fetched: 0,
        fetch: FetchStats::default(),
    };
    for entry in &catalog.body().releases {
        if pinned.get(&entry.release) == Some(&true) {
            continue;
        }
        let synced = sync_release(origin, store, opts, entry, &mut report.chunks_fetched)?;
        report.new_releases.push(synced);
    }
    if held.as_ref().is_none_or(|h| h.1 != doc.id()) {
        write_atomic(&held_path, &bytes, 0o644)?;
    }
    let after = origin.stats();
    report.fetch = FetchStats {
        objects: after.objects - before.objects,
        bytes: after.bytes - before.bytes,
        resumed: after.resumed - before.resumed,
        requests: after.requests - before.requests,
    };
    Ok(report)
}

/// The catalog held: (sequence, id). A held file that no longer decodes is
/// an error, not a reset: forgetting it would let an old catalog back in.
fn read_held(path: &Path) -> Result<Option<(u64, Hash)>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_limited(path, MAX_CATALOG_BYTES)?;
    let doc = SignedDocument::<Catalog>::decode(&bytes).map_err(|source| Error::Document {
        what: path.display().to_string(),
        source,
    })?;
    Ok(Some((doc.unverified_body().sequence, doc.id())))
}

fn sync_release(
    origin: &mut Origin,
    store: &dyn ChunkStore,
    opts: &SyncOptions<'_>,
    entry: &meshota_manifest::CatalogEntry,
    chunks_fetched: &mut u64,
) -> Result<SyncedRelease> {
    // 1. The manifest: its id must be the catalog's, its signatures the
    //    trust root's.
    let release = entry.release;
    let manifest = origin.fetch(
        &layout::manifest(&release),
        entry.manifest_size,
        |url, b| {
            let doc =
                SignedDocument::<ReleaseManifest>::decode(b).map_err(|source| Error::Document {
                    what: url.to_string(),
                    source,
                })?;
            if doc.id() != release {
                return Err(Error::ObjectInvalid {
                    url: url.to_string(),
                    reason: format!("manifest id is {}, the catalog lists {release}", doc.id()),
                });
            }
            Ok(())
        },
    )?;
    let doc =
        SignedDocument::<ReleaseManifest>::decode(&manifest).map_err(|source| Error::Document {
            what: origin.url(&layout::manifest(&release)),
            source,
        })?;
    let policy = InstallPolicy {
        hardware: None,
        installed_security_version: None,
        expiration: opts.expiration,
    };
    let verified = opts
        .trust
        .verify_manifest(&doc, &policy)
        .map_err(|source| Error::Document {
            what: origin.url(&layout::manifest(&release)),
            source,
        })?;
    let m = verified.body();

    // 2. Chunk indexes, then the chunks the store lacks.
    let mut indexes = Vec::new();
    for c in &m.components {
        let index = match store.get_index(&c.chunk_index) {
            Ok(ix) => ix,
            Err(_) => {
                let bytes = origin.fetch(
                    &layout::index(&c.chunk_index),
                    MAX_INDEX_BYTES as u64,
                    |url, b| check_hash(url, &c.chunk_index, b),
                )?;
                let url = origin.url(&layout::index(&c.chunk_index));
                let ix = ChunkIndex::decode(&bytes).map_err(|e| Error::ObjectInvalid {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
                if ix.total_size() != c.size || ix.image_hash() != c.image_hash {
                    return Err(Error::ObjectInvalid {
                        url,
                        reason: "the index does not describe the manifest's image".into(),
                    });
                }
                store.put_index(&ix)?;
                ix
            }
        };
        fetch_chunks(origin, store, &store.missing(&index)?, chunks_fetched)?;
        indexes.push(c.chunk_index);
    }

    // 3. Patches: the index blob and its pieces, pinned through a pin index.
    let mut pins = Vec::new();
    for p in &m.patches {
        let encoded = fetch_blob(
            origin,
            store,
            &p.patch,
            p.size.min(MAX_PATCH_INDEX_BYTES as u64),
        )?;
        let url = origin.url(&layout::patch(&p.patch));
        let pindex = PatchIndex::decode(&encoded).map_err(|e| Error::ObjectInvalid {
            url,
            reason: e.to_string(),
        })?;
        let mut refs = Vec::with_capacity(pindex.pieces().len());
        for piece in pindex.pieces() {
            fetch_blob(origin, store, &piece.hash, u64::from(piece.size))?;
            refs.push(ChunkRef {
                hash: piece.hash,
                len: piece.size,
            });
        }
        let pin = pin_index(store, &encoded, p.patch, refs)?;
        pins.push(store.put_index(&pin)?);
    }

    // 4. Complete: pin everything under the release.
    for id in indexes.iter().chain(&pins) {
        store.pin(release, *id)?;
    }
    Ok(SyncedRelease {
        release,
        version: m.version.clone(),
        manifest,
        indexes,
    })
}

/// A patch blob from the store, or fetched (hash-checked) and stored.
fn fetch_blob(origin: &mut Origin, store: &dyn ChunkStore, id: &Hash, max: u64) -> Result<Vec<u8>> {
    if store.has(id)? {
        return Ok(store.get(id)?);
    }
    let bytes = origin.fetch(&layout::patch(id), max, |url, b| check_hash(url, id, b))?;
    store.put(*id, &bytes)?;
    Ok(bytes)
}

/// Fetches `missing` chunks, each hash- and length-checked, and stores
/// them in batches.
fn fetch_chunks(
    origin: &mut Origin,
    store: &dyn ChunkStore,
    missing: &[ChunkRef],
    chunks_fetched: &mut u64,
) -> Result<()> {
    let mut batch: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |batch: &mut Vec<(Hash, Vec<u8>)>, n: &mut u64| -> Result<()> {
        let items: Vec<(Hash, &[u8])> = batch.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        store.put_batch(&items)?;
        *n += items.len() as u64;
        batch.clear();
        Ok(())
    };
    for c in missing {
        let bytes = origin.fetch(&layout::chunk(&c.hash), u64::from(c.len), |url, b| {
            check_hash(url, &c.hash, b)
        })?;
        batch_bytes += bytes.len();
        batch.push((c.hash, bytes));
        if batch_bytes >= PUT_BATCH_BYTES {
            flush(&mut batch, chunks_fetched)?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, chunks_fetched)?;
    }
    Ok(())
}

fn check_hash(url: &str, expected: &Hash, bytes: &[u8]) -> Result<()> {
    let actual = Hash::of(bytes);
    if actual != *expected {
        return Err(Error::ObjectHashMismatch {
            url: url.to_string(),
            expected: *expected,
            actual,
        });
    }
    Ok(())
}
