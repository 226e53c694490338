//! What the core knows about one connected peer.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use meshota_manifest::{Hash, KeyId};

use crate::bitmap::Bitmap;
use crate::time::Timestamp;

/// One outstanding chunk request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    pub(crate) hash: Hash,
    pub(crate) deadline: Timestamp,
}

/// A connected, authenticated peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) node: KeyId,
    /// The manifest ids of its last summary.
    pub(crate) summary: Vec<Hash>,
    /// Its availability per release (chunks) and per patch (pieces).
    pub(crate) have: BTreeMap<Hash, Bitmap>,
    /// Bitmaps it sent for patches whose index we do not hold yet (keys
    /// are patch ids listed by held manifests, so bounded by them); checked
    /// and moved to `have` when the index arrives.
    pub(crate) patch_hints: BTreeMap<Hash, Vec<u8>>,
    /// Releases (and patches) whose availability we asked for.
    pub(crate) asked_have: BTreeSet<Hash>,
    /// Our requests to it, by request id.
    pub(crate) in_flight: BTreeMap<u32, Request>,
    /// Penalty points.
    pub(crate) points: u32,
}

impl Peer {
    pub(crate) fn new(node: KeyId) -> Self {
        Self {
            node,
            summary: Vec::new(),
            have: BTreeMap::new(),
            patch_hints: BTreeMap::new(),
            asked_have: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            points: 0,
        }
    }
}
