//! Configuration of one protocol core: who it is and its limits.

use alloc::string::String;

use meshota_manifest::{KeyId, UnixTime};

use crate::trickle::TrickleConfig;

/// Every bound the core enforces. "Put a limit on everything": each queue,
/// retry and rate has one, with the default documented here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Chunk requests outstanding to one peer at once. Default 32.
    pub in_flight_per_peer: usize,
    /// Peers asked for the same chunk at once during the endgame. Default 2.
    pub requests_per_chunk_endgame: usize,
    /// A chunk request not answered within this is abandoned. Default 10 s.
    pub request_timeout_ms: u64,
    /// First retry delay of a chunk that failed; doubles per failure.
    /// Default 250 ms.
    pub retry_base_ms: u64,
    /// Largest retry delay. Default 30 s.
    pub retry_max_ms: u64,
    /// Penalty points at which a peer is disconnected and banned.
    /// Default 20 (two bad chunks or manifests).
    pub ban_threshold: u32,
    /// How long a banned peer stays banned. Default 10 min.
    pub ban_ms: u64,
    /// Upload rate cap in bytes per second (chunk payloads); `None` = no cap.
    pub upload_bytes_per_sec: Option<u64>,
    /// Download rate cap in bytes per second; `None` = no cap.
    pub download_bytes_per_sec: Option<u64>,
    /// Chunk requests waiting for upload budget; more are answered
    /// [`crate::wire::Message::Busy`]. Default 256.
    pub serve_queue: usize,
    /// Seed-side distribution ("super-seeding"): while requests wait for
    /// upload budget, a request for a chunk this node uploaded to another
    /// peer within this window is answered `Busy`, so a capped upload
    /// carries chunks its peers do not have yet and they pass on the rest.
    /// 0 turns it off. Default 30 s.
    pub super_seed_ms: u64,
    /// New-chunk announcements are batched for this long. Default 50 ms.
    pub have_flush_ms: u64,
    /// Most release manifests kept (lowest security versions dropped first).
    /// Default 64.
    pub releases: usize,
    /// Most node reports kept for relaying (one per node). Default 4096.
    pub reports: usize,
    /// Most manifest ids remembered as rejected, so that they are not
    /// fetched again. Default 1024.
    pub rejected_ids: usize,
    /// Most manifest requests outstanding at once (over all peers); ids
    /// beyond it are asked for on a later summary. Default 64.
    pub pending_manifests: usize,
}

impl Limits {
    /// The defaults listed on each field.
    pub const DEFAULT: Self = Self {
        in_flight_per_peer: 32,
        requests_per_chunk_endgame: 2,
        request_timeout_ms: 10_000,
        retry_base_ms: 250,
        retry_max_ms: 30_000,
        ban_threshold: 20,
        ban_ms: 600_000,
        upload_bytes_per_sec: None,
        download_bytes_per_sec: None,
        serve_queue: 256,
        super_seed_ms: 30_000,
        have_flush_ms: 50,
        releases: 64,
        reports: 4096,
        rejected_ids: 1024,
        pending_manifests: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Who this node is and how it behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's id: its device key id.
    pub node_id: KeyId,
    /// Hardware class: only releases for it are installed.
    pub hardware: String,
    /// Channel followed for installs.
    pub channel: String,
    /// Seed of every random choice the core makes.
    pub seed: u64,
    /// Bounds and rates.
    pub limits: Limits,
    /// Anti-entropy timing.
    pub trickle: TrickleConfig,
    /// Wall-clock time at [`crate::Timestamp`] zero, when the node has a
    /// trustworthy clock: expiry dates are then enforced. `None` for nodes
    /// without any clock (expiry cannot be checked; see
    /// `meshota_manifest::Expiration::dangerous_ignore`).
    pub wall_clock_at_zero: Option<UnixTime>,
}
