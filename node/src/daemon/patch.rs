//! Applying a patch the core asked for ([`meshota_mesh::Action::ApplyPatch`]):
//! the library's `rebuild_from_patch` against the confirmed slot, on a
//! blocking thread. Every produced chunk is verified against the release's
//! signed chunk index before it is stored; a piece that fails is discarded
//! whole, and the core fetches its chunks plainly. A wrong base (the slot
//! does not hash to the patch's base) is refused before any piece is read.
//!
//! Also: copying a release's patch blobs from a publisher's store into the
//! node's store (`node publish --patch-store`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use meshota_blobstore::patch::{PatchIndex, ReadAt, pin_index, rebuild_from_patch};
use meshota_blobstore::{ChunkIndex, ChunkRef, ChunkStore, FsStore};
use meshota_manifest::{Hash, ReleaseManifest};

use crate::device::Node;

/// A slot inside its file or device: `len` bytes from `offset`.
/// Invariant: reads never leave `[offset, offset + len)`.
pub(super) struct SlotRegion {
    file: File,
    offset: u64,
    len: u64,
}

impl SlotRegion {
    /// The confirmed slot of `node`'s device.
    ///
    /// # Errors
    /// A message naming the slot when it cannot be opened.
    pub(super) fn confirmed(node: &Node) -> Result<Self, String> {
        let mut dev = node.open_device().map_err(|f| f.message)?;
        let record = dev.record().map_err(|e| e.to_string())?;
        let cfg = &node.config.device;
        let slot = match record.confirmed {
            meshota_boot::SlotId::A => &cfg.slot_a,
            meshota_boot::SlotId::B => &cfg.slot_b,
        };
        let file = File::open(&slot.path).map_err(|e| format!("{}: {e}", slot.path.display()))?;
        let total = file
            .image_len()
            .map_err(|e| format!("{}: {e}", slot.path.display()))?;
        let len = slot
            .size
            .unwrap_or_else(|| total.saturating_sub(slot.offset));
        Ok(Self {
            file,
            offset: slot.offset,
            len,
        })
    }
}

impl ReadAt for SlotRegion {
    fn image_len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let fits = offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.len);
        if !fits {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        ReadAt::read_exact_at(&self.file, buf, self.offset + offset)
    }
}

/// What applying one patch did.
pub(crate) struct Applied {
    /// Target chunks the store holds afterwards (produced or held before).
    pub(crate) held: Vec<Hash>,
    /// Pieces applied whose output all verified.
    pub(crate) pieces_applied: u64,
    /// Pieces that failed (nothing of theirs stored), with the reasons.
    pub(crate) failures: Vec<String>,
    /// Chunks stored from verified piece output.
    pub(crate) chunks_produced: u64,
}

/// Applies patch `patch` of `manifest` against the confirmed slot.
///
/// # Errors
/// A message when the patch cannot be applied at all (not listed, index
/// missing or malformed, wrong base, slot unreadable): the core then
/// fetches every chunk plainly.
pub(crate) fn apply(
    node: &Node,
    store: &FsStore,
    manifest: &ReleaseManifest,
    patch: Hash,
) -> Result<Applied, String> {
    let pref = manifest
        .patches
        .iter()
        .find(|p| p.patch == patch)
        .ok_or("the manifest does not list this patch")?;
    let comp = manifest
        .components
        .iter()
        .find(|c| c.name == pref.component)
        .ok_or("the manifest has no component for this patch")?;
    let target = store
        .get_index(&comp.chunk_index)
        .map_err(|e| format!("chunk index: {e}"))?;
    let index =
        PatchIndex::load(store, &patch, pref.size).map_err(|e| format!("patch index: {e}"))?;
    let base = SlotRegion::confirmed(node)?;
    let report = rebuild_from_patch(store, &target, &index, &base, &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    let missing: std::collections::BTreeSet<Hash> =
        report.still_missing.iter().map(|c| c.hash).collect();
    let mut held: Vec<Hash> = target
        .chunks()
        .iter()
        .map(|c| c.hash)
        .filter(|h| !missing.contains(h))
        .collect();
    held.sort_unstable();
    held.dedup();
    Ok(Applied {
        held,
        pieces_applied: report.pieces_applied,
        failures: report
            .failed
            .iter()
            .map(|f| format!("piece {}: {}", f.piece.hash.short(), f.error))
            .collect(),
        chunks_produced: report.chunks_produced,
    })
}

/// One patch copied into the node's store.
pub(super) struct Imported {
    /// The patch index blob.
    pub(super) index: Vec<u8>,
    /// Every blob copied: the index and the pieces.
    pub(super) blobs: Vec<Hash>,
}

/// Copies the patch blobs `manifest` lists (index and pieces) from the
/// store at `from` into `store`, each hash-checked on read and again on
/// write. Every patch index is checked first (against the manifest's base
/// and `target`, the release's chunk index), so nothing is copied for a
/// patch the node would refuse. Returns the patches copied; a patch whose
/// blobs `from` lacks is an error (a publisher that names a store promises
/// them).
///
/// # Errors
/// A message naming the store and the blob or the rule broken.
pub(super) fn import(
    store: &FsStore,
    from: &Path,
    manifest: &ReleaseManifest,
    target: &ChunkIndex,
) -> Result<Vec<Imported>, String> {
    let src = FsStore::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let at = |e: meshota_blobstore::Error| format!("{}: {e}", PathBuf::from(from).display());
    let target_id = target.id().map_err(|e| e.to_string())?;
    let mut indexes = Vec::new();
    for p in &manifest.patches {
        let index = PatchIndex::load(&src, &p.patch, p.size).map_err(at)?;
        if index.base_image_hash() != p.base_image_hash {
            return Err(format!(
                "{}: patch {} is from base {}, the manifest lists it for base {}",
                from.display(),
                p.patch.short(),
                index.base_image_hash().short(),
                p.base_image_hash.short()
            ));
        }
        index.check_target(target, &target_id).map_err(at)?;
        indexes.push((p, index));
    }
    let mut out = Vec::new();
    for (p, index) in indexes {
        let bytes = src.get(&p.patch).map_err(at)?;
        let mut blobs = vec![(p.patch, bytes.clone())];
        for piece in index.pieces() {
            blobs.push((piece.hash, src.get(&piece.hash).map_err(at)?));
        }
        let batch: Vec<(Hash, &[u8])> = blobs.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        store
            .put_batch(&batch)
            .map_err(|e| format!("storing patch {}: {e}", p.patch.short()))?;
        out.push(Imported {
            index: bytes,
            blobs: blobs.iter().map(|(h, _)| *h).collect(),
        });
    }
    Ok(out)
}

/// Pins under `release` every patch of its manifest whose index blob and
/// pieces `store` holds whole, through a pin index (as `release create`
/// pins the patches it makes), so that a store GC keeps what this node
/// serves its neighbours. Patches not held whole are left alone. Returns
/// how many were pinned.
///
/// # Errors
/// A message naming the patch when the store fails or a held index blob
/// does not decode to what the manifest signs.
pub(super) fn pin_held_patches(
    store: &FsStore,
    release: Hash,
    manifest: &ReleaseManifest,
) -> Result<usize, String> {
    let mut pinned = 0;
    for p in &manifest.patches {
        let at = |e: meshota_blobstore::Error| format!("patch {}: {e}", p.patch.short());
        if !store.has(&p.patch).map_err(at)? {
            continue;
        }
        // Hash-checked by the store: the blob the manifest signs.
        let encoded = store.get(&p.patch).map_err(at)?;
        let index = PatchIndex::decode(&encoded).map_err(at)?;
        let mut refs = Vec::with_capacity(index.pieces().len());
        for piece in index.pieces() {
            if !store.has(&piece.hash).map_err(at)? {
                break;
            }
            refs.push(ChunkRef {
                hash: piece.hash,
                len: piece.size,
            });
        }
        if refs.len() < index.pieces().len() {
            continue;
        }
        let pin = pin_index(store, &encoded, p.patch, refs).map_err(at)?;
        let pin_id = store.put_index(&pin).map_err(at)?;
        store.pin(release, pin_id).map_err(at)?;
        pinned += 1;
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use meshota_blobstore::patch::{PatchOptions, create_patch};
    use meshota_blobstore::{DEFAULT_PARAMS, ingest};
    use meshota_manifest::{Component, PatchRef, RolloutPolicy, UnixTime};

    use super::*;

    /// A manifest for the image `index` describes, listing `patches`.
    fn manifest(index: &ChunkIndex, id: Hash, patches: Vec<PatchRef>) -> ReleaseManifest {
        ReleaseManifest {
            product: "p".into(),
            hardware: "hw".into(),
            channel: "stable".into(),
            version: "2.0.0".into(),
            security_version: 2,
            created: UnixTime(1),
            components: vec![Component {
                name: "rootfs".into(),
                slot: "rootfs".into(),
                size: index.total_size(),
                image_hash: index.image_hash(),
                chunk_index: id,
                chunking: DEFAULT_PARAMS,
            }],
            patches,
            rollout: RolloutPolicy::default(),
        }
    }

    /// A store holding a base, its successor and the patch between them
    /// (blobs stored, not pinned, as a node that fetched them); the
    /// successor's manifest; the patch.
    fn world(
        dir: &Path,
    ) -> (
        FsStore,
        ReleaseManifest,
        meshota_blobstore::patch::PatchBuild,
    ) {
        let store = FsStore::open_or_create(dir).unwrap();
        let base = meshota_testkit::image(300_000, 3);
        let mut next = base.clone();
        for at in (500..next.len()).step_by(50_000) {
            next[at] ^= 0x33;
        }
        let b = ingest(&store, base.as_slice(), &DEFAULT_PARAMS, &mut |_| {}).unwrap();
        let n = ingest(&store, next.as_slice(), &DEFAULT_PARAMS, &mut |_| {}).unwrap();
        let build = create_patch(
            &store,
            base.as_slice(),
            &b.index,
            next.as_slice(),
            &n.index,
            &PatchOptions::default(),
        )
        .unwrap()
        .expect("a patch beats the chunks");
        let p = PatchRef {
            component: "rootfs".into(),
            base_image_hash: b.index.image_hash(),
            patch: build.id,
            size: build.encoded.len() as u64,
        };
        (store, manifest(&n.index, n.index_id, vec![p]), build)
    }

    #[test]
    fn a_patch_held_whole_is_pinned_under_its_release_and_survives_gc() {
        let t = tempfile::tempdir().unwrap();
        let (store, m, build) = world(t.path());
        let release = Hash::of(b"release");
        assert_eq!(pin_held_patches(&store, release, &m).unwrap(), 1);
        store.gc().unwrap();
        assert!(store.has(&build.id).unwrap(), "the patch index blob");
        for p in build.index.pieces() {
            assert!(store.has(&p.hash).unwrap(), "piece {}", p.hash.short());
        }
    }

    #[test]
    fn a_patch_not_held_whole_is_not_pinned_and_gc_removes_what_there_is() {
        let t = tempfile::tempdir().unwrap();
        let (full, m, build) = world(&t.path().join("full"));
        // Another node holds the index blob but none of the pieces.
        let partial = FsStore::open_or_create(&t.path().join("partial")).unwrap();
        partial
            .put(build.id, &full.get(&build.id).unwrap())
            .unwrap();
        let release = Hash::of(b"release");
        assert_eq!(pin_held_patches(&partial, release, &m).unwrap(), 0);
        partial.gc().unwrap();
        assert!(!partial.has(&build.id).unwrap());
        // A manifest listing no patch the store holds pins nothing.
        let empty = FsStore::open_or_create(&t.path().join("empty")).unwrap();
        assert_eq!(pin_held_patches(&empty, release, &m).unwrap(), 0);
    }
}
