//! What the core knows about one release.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use meshota_blobstore::ChunkIndex;
use meshota_manifest::{Hash, ReleaseManifest, Verified};

use crate::bitmap::Bitmap;
use crate::event::PeerId;
use crate::patch::PatchState;

/// A verified release, its chunk index once known, and which of its chunks
/// this node holds.
#[derive(Debug)]
pub(crate) struct Release {
    pub(crate) manifest: Verified<ReleaseManifest>,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) index: Option<Indexed>,
    /// Peers that asked to hear about new chunks of this release.
    pub(crate) subscribers: BTreeSet<PeerId>,
    /// Ordinals gained since the last announcement.
    pub(crate) unannounced: Vec<u32>,
    /// Withdrawn by a rollout command.
    pub(crate) revoked: bool,
    /// Admission stage opened by rollout commands (0 = the first stage).
    pub(crate) stage: u32,
    /// Rollout halted.
    pub(crate) halted: bool,
    /// Highest rollout command sequence applied.
    pub(crate) rollout_sequence: u64,
    /// `InstallReady` was emitted.
    pub(crate) install_announced: bool,
    /// The patches the manifest lists for its first component, by patch id.
    pub(crate) patches: BTreeMap<Hash, PatchState>,
}

/// A release's chunk index with lookups.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub(crate) index: ChunkIndex,
    pub(crate) bytes: Vec<u8>,
    pub(crate) id: Hash,
    /// Chunk id -> its ordinals (a chunk may repeat within an image).
    pub(crate) ordinals: BTreeMap<Hash, Vec<u32>>,
    pub(crate) have: Bitmap,
    /// A chunk of this release was fetched from a peer: a node that
    /// fetched none and holds them all is the release's origin here (a
    /// publisher, a gateway, a USB import), the only node that distributes
    /// seed-side.
    pub(crate) fetched_any: bool,
    /// When one of its chunks last went to a peer for the first time
    /// (seed-side distribution: while recent, peers still ask for chunks
    /// nobody else has).
    pub(crate) first_upload_at: Option<crate::Timestamp>,
}

impl Indexed {
    pub(crate) fn new(index: ChunkIndex, bytes: Vec<u8>, id: Hash, held: &BTreeSet<Hash>) -> Self {
        let mut ordinals: BTreeMap<Hash, Vec<u32>> = BTreeMap::new();
        let mut have = Bitmap::new(index.chunks().len());
        for (i, c) in index.chunks().iter().enumerate() {
            let i32_ = u32::try_from(i).unwrap_or(u32::MAX);
            ordinals.entry(c.hash).or_default().push(i32_);
            if held.contains(&c.hash) {
                have.set(i);
            }
        }
        Self {
            index,
            bytes,
            id,
            ordinals,
            have,
            fetched_any: false,
            first_upload_at: None,
        }
    }

    /// Length of chunk `hash` if it belongs to this index.
    pub(crate) fn chunk_len(&self, hash: &Hash) -> Option<u32> {
        let i = *self.ordinals.get(hash)?.first()? as usize;
        self.index.chunks().get(i).map(|c| c.len)
    }
}

impl Release {
    pub(crate) fn new(manifest: Verified<ReleaseManifest>, manifest_bytes: Vec<u8>) -> Self {
        let component = manifest.components.first().map(|c| c.name.clone());
        let patches = manifest
            .patches
            .iter()
            .filter(|p| Some(&p.component) == component.as_ref())
            .map(|p| (p.patch, PatchState::new(p.base_image_hash, p.size)))
            .collect();
        Self {
            manifest,
            manifest_bytes,
            index: None,
            subscribers: BTreeSet::new(),
            unannounced: Vec::new(),
            revoked: false,
            stage: 0,
            halted: false,
            rollout_sequence: 0,
            install_announced: false,
            patches,
        }
    }

    /// The chunk index id the manifest names (first component).
    pub(crate) fn index_id(&self) -> Option<Hash> {
        self.manifest.components.first().map(|c| c.chunk_index)
    }

    /// Whether every chunk is held.
    pub(crate) fn complete(&self) -> bool {
        self.index.as_ref().is_some_and(|i| i.have.is_full())
    }
}

/// The cohort (0–99) of a node for a release: stable per (node, release),
/// spread evenly over the fleet.
#[must_use]
pub fn cohort(node: &meshota_manifest::KeyId, release: &Hash) -> u8 {
    let mut h = blake3::Hasher::new();
    h.update(b"meshota/v1/cohort");
    h.update(&node.0);
    h.update(release.as_bytes());
    let d = h.finalize();
    let b = d.as_bytes();
    (u16::from_le_bytes([b[0], b[1]]) % 100) as u8
}
