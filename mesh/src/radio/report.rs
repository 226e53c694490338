//! What a radio link tells its driver: events to act on and counters.

use alloc::collections::BTreeSet;

use meshota_manifest::Hash;
use meshota_radios::ShortId;

use super::error::RadioError;

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
        /// The release announced.
        release: Hash,
        /// Why.
        error: RadioError,
    },
    /// Every chunk of the release decoded and matched the signed index:
    /// [`RadioLink::payload`] holds the image.
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
    /// Bundles that failed verification.
    pub bundle_failures: u64,
    /// Times a frame waited for the duty-cycle budget.
    pub budget_waits: u64,
    /// Short ids whose bundle fragments or symbols this node used.
    pub sources: BTreeSet<ShortId>,
}
