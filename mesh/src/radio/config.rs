//! What one node's radio link is configured with: keys, channel, region,
//! frame size, Trickle and the protocol's timing.

use alloc::string::String;

use meshota_manifest::Expiration;
use meshota_radios::{Channel, Region, ShortId};

use crate::trickle::TrickleConfig;

/// Timing of one link, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadioTiming {
    /// After hearing a burst frame (symbol or bundle fragment), requests and
    /// announcements wait this long: a neighbour's burst is still going.
    pub quiet_us: u64,
    /// Requests wait a random delay below this (so one asker goes first and
    /// the others hear it).
    pub request_backoff_us: u64,
    /// A request not answered is sent again after this (plus backoff),
    /// doubled for each request in a row the holder asked left unanswered
    /// (up to 16 times).
    pub request_retry_us: u64,
    /// A source waits this, divided by the square of the number of
    /// neighbours that asked it, times a random factor in [1/2, 1), before
    /// a burst; another
    /// source's symbols heard meanwhile, or every asker going elsewhere,
    /// cancel it. So the source that covers the most askers goes first and
    /// a source asked by one neighbour waits long enough (up to this) for
    /// another's burst to serve that neighbour (a greedy dominating set in
    /// the making).
    pub burst_backoff_us: u64,
    /// A source asked by a single neighbour that knows no other needy
    /// neighbour (its burst would serve that one node) waits this many
    /// times longer (at least 1): a neighbour of the asker that more needy
    /// nodes surround has time to complete and serve the asker along with
    /// the others (on a grid, the wave then runs along every third row
    /// rather than along the edges). [`RadioTiming::LORA`] leaves it at 1:
    /// at 4 the simulated grid spent 4 % less airtime but every scenario
    /// took about twice as long to converge.
    pub lone_wait_factor: u64,
    /// A burst sends `need + need / margin_div + 1` symbols for the largest
    /// need asked, to cover loss.
    pub margin_div: u32,
    /// The margin's divisor instead of `margin_div` when the source knows
    /// two or more needy neighbours: the burst has to cover the unluckiest
    /// of several receivers.
    pub margin_div_shared: u32,
    /// A neighbour still announcing an older release that has not asked
    /// for ours within this long resets the Trickle timer again.
    pub stale_neighbour_us: u64,
    /// Bundle verification failures of one release before it is refused.
    pub bundle_failures_max: u32,
}

impl RadioTiming {
    /// Defaults for LoRa at SF7/125 kHz (frames of about 0.35 s).
    pub const LORA: Self = Self {
        quiet_us: 1_000_000,
        request_backoff_us: 1_500_000,
        request_retry_us: 32_000_000,
        burst_backoff_us: 128_000_000,
        lone_wait_factor: 1,
        margin_div: 8,
        margin_div_shared: 6,
        stale_neighbour_us: 30_000_000,
        bundle_failures_max: 3,
    };
}

/// Everything one node's link needs. The mesh key is a secret: only nodes
/// holding the same key exchange frames.
#[derive(Clone)]
pub struct RadioConfig {
    /// The 32-byte mesh key frames are authenticated with.
    pub mesh_key: [u8; 32],
    /// This node's short id on the air.
    pub short_id: ShortId,
    /// Frequency and modulation of every frame.
    pub channel: Channel,
    /// The region whose duty cycles the budget enforces.
    pub region: Region,
    /// Largest frame (bytes), e.g. the data rate's limit.
    pub frame_len: usize,
    /// Trickle timing of announcements.
    pub trickle: TrickleConfig,
    /// Backoffs, retries and margins.
    pub timing: RadioTiming,
    /// Seed of every random choice of this link.
    pub seed: u64,
    /// The node's hardware class (releases for others are carried and
    /// relayed, never reported complete for install).
    pub hardware: Option<String>,
    /// Expiry enforcement for manifests.
    pub expiration: Expiration,
    /// Whether this node serves its neighbours (a relay) or only receives
    /// (a leaf). A leaf never sends bundle, repair or patch index fragments
    /// or symbols; it announces itself a leaf, so neighbours never ask it
    /// and never count it as a holder, and it still asks, receives,
    /// verifies and installs. For battery nodes, and for a backbone an
    /// operator plans: relays must connect the node a release enters at to
    /// every leaf, or the leaves cut off wait for ever.
    pub relay: bool,
}

impl core::fmt::Debug for RadioConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RadioConfig")
            .field("short_id", &self.short_id)
            .field("channel", &self.channel)
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}
