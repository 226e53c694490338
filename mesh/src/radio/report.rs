//! What a radio link tells its driver: events to act on and counters.

use alloc::collections::BTreeSet;

use meshota_manifest::Hash;
use meshota_radios::ShortId;

use super::error::RadioError;
use super::patch::PieceJob;

/// What the driver should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A release's bundle verified: the link now carries and relays it.
    ManifestVerified {
        /// The release.
        release: Hash,
    },
    /// A bundle failed verification (the error says why).
    BundleRejected {
        /// The release announced (its key: the bundle's own id is not
        /// trusted).
        release: super::msg::ReleaseKey,
        /// Why.
        error: RadioError,
    },
    /// A piece of the patch from the node's base decoded: apply it against
    /// the base ([`PieceJob::apply`]) and hand the output back with
    /// [`RadioLink::piece_applied`](super::RadioLink::piece_applied) (see `mesh::radio::patch`).
    ApplyPiece(PieceJob),
    /// A frame under the mesh key came from this link's own short id: a
    /// neighbour uses the same id, and neighbours take the two for one
    /// node. Reported once per short id the link uses (the frames are
    /// dropped, counted in [`LinkStats::frames_own_id`]); a driver whose id
    /// was derived gives the link the next one
    /// ([`RadioLink::change_short_id`](super::RadioLink::change_short_id)),
    /// otherwise the operator gives one of the two another id.
    ShortIdShared {
        /// The short id both use.
        short_id: ShortId,
    },
    /// Every chunk of the release decoded and matched the signed index:
    /// [`RadioLink::payload`](super::RadioLink::payload) holds the image.
    ReleaseComplete {
        /// The release.
        release: Hash,
    },
}

/// Counters of one link. Invariant: they only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed in.
    pub frames_heard: u64,
    /// Frames dropped because their MAC did not verify (another mesh key).
    pub frames_bad_mac: u64,
    /// Frames or messages dropped as malformed.
    pub frames_malformed: u64,
    /// Frames dropped because they came from our own short id (a
    /// neighbour shares it: [`LinkEvent::ShortIdShared`]).
    pub frames_own_id: u64,
    /// Notices sent to a neighbour whose frames looked like two senders'
    /// (message ids going back and forth): two nodes beyond each other's
    /// range share its short id.
    pub clash_notices_sent: u64,
    /// Such notices received about our own short id (reported as
    /// [`LinkEvent::ShortIdShared`]).
    pub clash_notices_heard: u64,
    /// Frames put on the air.
    pub frames_sent: u64,
    /// Airtime of those frames (µs).
    pub airtime_us: u64,
    /// Announcements sent.
    pub sent_announces: u64,
    /// Bundle and payload requests sent.
    pub sent_requests: u64,
    /// Bundle fragments sent.
    pub sent_pieces: u64,
    /// Symbols sent.
    pub sent_symbols: u64,
    /// Bursts of symbols started.
    pub bursts: u64,
    /// Bursts cancelled before they started: another source was heard
    /// sending, or every neighbour that asked went to another source or
    /// announced itself complete.
    pub bursts_suppressed: u64,
    /// Own requests postponed because a neighbour asked the same.
    pub requests_postponed: u64,
    /// Chunks whose decoded bytes did not match the signed index.
    pub chunk_failures: u64,
    /// Chunks decoded from chunk symbols.
    pub chunks_decoded: u64,
    /// Chunks the driver supplied ([`RadioLink::add_chunks`](super::RadioLink::add_chunks), e.g. from
    /// the installed image).
    pub chunks_supplied: u64,
    /// Chunks produced by applied patch pieces.
    pub chunks_from_pieces: u64,
    /// Patch pieces decoded from symbols.
    pub pieces_decoded: u64,
    /// Patch pieces applied whose every chunk verified.
    pub pieces_applied: u64,
    /// Patch pieces that failed (output not matching the signed index, or
    /// symbols that kept decoding to bytes not hashing to the piece's id).
    pub piece_failures: u64,
    /// Symbols of patch pieces sent (also counted in `sent_symbols`).
    pub sent_piece_symbols: u64,
    /// Patch index fragments sent (also counted in `sent_pieces`).
    pub sent_patch_fragments: u64,
    /// Bundle repair fragments sent (also counted in `sent_pieces`).
    pub sent_repairs: u64,
    /// Bundles that failed verification.
    pub bundle_failures: u64,
    /// Times a frame waited for the duty-cycle budget.
    pub budget_waits: u64,
    /// Short ids whose bundle fragments or symbols this node used.
    pub sources: BTreeSet<ShortId>,
}

/// What a link measured of one neighbour: the input of a backbone plan
/// (`meshota_radios::backbone`, `meshota radio plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourLink {
    /// Its short id.
    pub id: ShortId,
    /// Its frames heard out of its frames sent, in percent (recent frames
    /// weigh most; 0 when no frame of it carried a sequence number yet).
    pub heard_percent: u8,
    /// Whether `heard_percent` reaches the link's threshold for a strong
    /// neighbour (one whose bursts reach us and ours it): only strong
    /// neighbours are asked or counted as needy.
    pub strong: bool,
    /// Whether its last announcement said it is a leaf.
    pub leaf: bool,
}

/// A patch a link holds whole, borrowed from it: what its driver stores
/// so that the patch outlives the link's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchBlobs<'a> {
    /// The patch id: the BLAKE3 of `index`, as the signed manifest lists it.
    pub id: Hash,
    /// The patch index blob.
    pub index: &'a [u8],
    /// The pieces in index order with their ids from the index (each
    /// piece hashes to its id).
    pub pieces: Vec<(Hash, &'a [u8])>,
}
