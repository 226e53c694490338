//! What drivers feed the core, and what the core asks drivers to do.

use alloc::string::String;
use alloc::vec::Vec;

use meshota_manifest::{Hash, KeyId};

use crate::time::Timestamp;

/// A link to a peer, as numbered by the driver. Unique among the links the
/// driver currently has open; may be reused after [`Event::LinkDown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

/// Something that happened outside the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link came up with an authenticated peer (the driver checked its
    /// device key and admission).
    LinkUp {
        /// The link.
        peer: PeerId,
        /// The peer's node id (device key id).
        node: KeyId,
    },
    /// A link went down.
    LinkDown {
        /// The link.
        peer: PeerId,
    },
    /// A message arrived on a link (undecoded).
    Message {
        /// The link.
        peer: PeerId,
        /// The bytes as received.
        bytes: Vec<u8>,
    },
    /// The time asked for with [`Action::ArmTimer`] (or later) has come.
    Timeout,
    /// A chunk the core asked to store could not be stored.
    StoreFailed {
        /// The chunk.
        hash: Hash,
    },
    /// The driver finished an [`Action::ApplyPatch`]: `produced` are the
    /// target chunks it now holds (each verified against the release's
    /// signed chunk index and stored). Empty when nothing could be applied
    /// (a wrong base, every piece failed): the chunks are then fetched
    /// plainly.
    PatchApplied {
        /// The release.
        release: Hash,
        /// The patch id.
        patch: Hash,
        /// Target chunks held now.
        produced: Vec<Hash>,
    },
    /// A chunk the core asked to serve could not be read (missing or
    /// failed its hash on read): the core stops advertising it.
    ServeFailed {
        /// The link the request came from.
        peer: PeerId,
        /// The request.
        request: u32,
        /// The chunk.
        hash: Hash,
    },
}

/// Why a peer was penalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offence {
    /// A message that does not decode or breaks a limit.
    MalformedMessage,
    /// A manifest that fails verification.
    BadManifest,
    /// A chunk index that does not decode or does not match its manifest.
    BadIndex,
    /// A chunk whose bytes do not hash to its id.
    CorruptChunk,
    /// A node report not signed by the device key it carries (forged).
    BadReport,
    /// An availability bitmap of the wrong length.
    BadBitmap,
    /// A request not answered in time.
    Timeout,
}

impl Offence {
    /// Penalty points for this offence.
    #[must_use]
    pub const fn points(self) -> u32 {
        match self {
            Self::BadManifest | Self::BadIndex | Self::CorruptChunk | Self::BadReport => 10,
            Self::MalformedMessage | Self::BadBitmap => 5,
            Self::Timeout => 1,
        }
    }
}

/// Work the core hands to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes on this link.
    Send {
        /// The link.
        peer: PeerId,
        /// An encoded [`crate::wire::Message`].
        bytes: Vec<u8>,
    },
    /// Close the link; do not accept this node again before `until`.
    Disconnect {
        /// The link.
        peer: PeerId,
        /// The banned node.
        node: KeyId,
        /// End of the ban.
        until: Timestamp,
        /// Why.
        reason: Offence,
    },
    /// A peer broke a rule (logged, counted; banned at the threshold).
    Penalised {
        /// The node.
        node: KeyId,
        /// What it did.
        offence: Offence,
        /// Its total points.
        points: u32,
    },
    /// Persist a verified release manifest (its file bytes).
    StoreManifest {
        /// Manifest id.
        id: Hash,
        /// Encoded signed manifest.
        bytes: Vec<u8>,
    },
    /// Persist a chunk index blob whose id matches a verified manifest.
    StoreIndex {
        /// Index id.
        id: Hash,
        /// Encoded index.
        bytes: Vec<u8>,
    },
    /// Persist a chunk, or a patch blob (patch index or piece), whose bytes
    /// hash to `hash` (already checked).
    StoreChunk {
        /// Chunk id.
        hash: Hash,
        /// Chunk bytes.
        data: Vec<u8>,
    },
    /// Read this chunk or patch blob (store or seeded slot, re-hashing it)
    /// and send it
    /// with [`crate::wire::chunk_response`]; on failure report
    /// [`Event::ServeFailed`].
    ServeChunk {
        /// The link.
        peer: PeerId,
        /// The request to answer.
        request: u32,
        /// The chunk.
        hash: Hash,
    },
    /// Every piece of this patch worth fetching is held (or given up): apply
    /// them against the active slot (the base), verifying each produced
    /// chunk against the release's signed chunk index and storing it, then
    /// report [`Event::PatchApplied`]. A piece whose output fails is
    /// discarded whole; its chunks are fetched plainly afterwards.
    ApplyPatch {
        /// The release (manifest id).
        release: Hash,
        /// The patch id (BLAKE3 of its patch index blob, held in the store).
        patch: Hash,
    },
    /// Every chunk of this wanted release is held and verified: run the
    /// install pipeline, then tell the core with
    /// [`crate::Node::installed`].
    InstallReady {
        /// Manifest id.
        release: Hash,
    },
    /// A node report arrived that is newer than any held for its node:
    /// gateways forward it; every node relays it.
    ReportReceived {
        /// Encoded signed node report.
        bytes: Vec<u8>,
    },
    /// Call back with [`Event::Timeout`] at (or after) this time.
    ArmTimer {
        /// When.
        at: Timestamp,
    },
    /// Something a person may want to read in the log.
    Note {
        /// What happened.
        text: String,
    },
}
