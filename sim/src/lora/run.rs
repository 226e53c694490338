//! One LoRa run: the engine that moves frames between stations over the
//! simulated medium in virtual time, and the report.
//!
//! # The loop
//! At each instant `t` (the earliest of: a frame on air ends, a station's
//! timeout, a late node's join): the medium resolves every frame that has
//! ended; each frame received intact goes to its receiver's
//! `handle_frame`; then every station whose timeout has come runs
//! `handle_timeout` and `poll_transmit`, and what it returns goes on the
//! air at `t`. Stations are visited in index order; the medium draws its
//! losses from the seed: one seed, one run. Bounded by
//! [`VIRTUAL_US_MAX`] and [`STEPS_MAX`].

use meshota_blobstore::ChunkIndex;
use meshota_manifest::{Expiration, Hash};
use meshota_mesh::TrickleConfig;
use std::collections::BTreeMap;
use std::rc::Rc;

use meshota_mesh::radio::{LinkEvent, RadioConfig, RadioLink, RadioTiming, bundle};
use meshota_radios::{EU868, Loss, Medium, Micros, ShortId};
use serde::Serialize;

use super::bound::{bound_airtime_us, greedy_cds};
use super::kinds::{AirtimeByKind, BaselineAirtimeByKind};
use super::scenario::{self, LoraTopology, seconds};
use crate::Error;
use crate::fixture::{Fixture, HARDWARE, PatchedRelease};
use crate::rng::SimRng;

/// Virtual time after which a run that has not converged stops (6 hours).
pub const VIRTUAL_US_MAX: u64 = 6 * 3_600 * Micros::SECOND;
/// Loop iterations after which a run stops (livelock guard).
pub const STEPS_MAX: u64 = 20_000_000;
/// Largest payload (bytes) a scenario takes.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Largest installed image (bytes) a patch run takes ([`PatchRun::image_bytes`]).
pub const IMAGE_BYTES_MAX: usize = 64 << 20;
/// Smallest installed image (bytes) a patch run takes.
pub const IMAGE_BYTES_MIN: usize = 64 << 10;
/// Images above this cross the radio as a large release (the daemon's
/// default `[radio] whole_release_bytes_max`): by patch only, the bundle
/// carrying the chunk index as a delta, unchanged chunks left in the
/// node's store.
pub const WHOLE_RELEASE_BYTES_MAX: usize = 1 << 20;
/// Channel activity detection (listen before talk, as the SX126x's CAD)
/// sees a frame whose SNR margin over the demodulation floor is at least
/// this (dB).
pub const CAD_MARGIN_DB: f64 = 0.0;
/// After a busy channel, a node waits for the frame's end plus a random
/// delay below this (µs).
pub const CAD_BACKOFF_US: u64 = 200_000;
/// The mesh key of every honest node.
pub const MESH_KEY: [u8; 32] = [0x4d; 32];
/// The mesh key of the intruder (another mesh's key).
pub const INTRUDER_KEY: [u8; 32] = [0x66; 32];

/// What one LoRa run simulates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraOptions {
    /// The scenario.
    pub topology: LoraTopology,
    /// Size of the release's image (the payload), bytes.
    pub payload_bytes: usize,
    /// The one seed.
    pub seed: u64,
    /// Add a node beside node 0 with another mesh key that holds the
    /// release and talks: it must be ignored.
    pub intruder: bool,
    /// The last node joins (powers on) this many seconds into the run.
    pub late_join_s: Option<u64>,
    /// Also run the unicast baseline on the same scenario.
    pub baseline: bool,
    /// Centre frequency: [`scenario::FREQ_HZ`] (g3, 10 %) by default,
    /// [`scenario::FREQ_G1_HZ`] for the 1 % sub-band.
    pub freq_hz: u32,
    /// A patch release: every node runs v1 and node 0 holds v2 with a
    /// patch from v1 of about `payload_bytes` (the image is ten times
    /// larger); nodes on v1 fetch the patch.
    pub patch: Option<PatchRun>,
    /// Every link's backoffs, retries and margins
    /// ([`RadioTiming::LORA`] by default; the protocol's tuning knobs).
    pub timing: RadioTiming,
    /// Which nodes serve their neighbours.
    pub relays: Relays,
}

/// Which nodes of a run are relays (the others are leaves, which only
/// receive: `RadioConfig::relay`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Relays {
    /// Every node serves (the default): senders are elected on the air.
    #[default]
    All,
    /// Only the nodes of the broadcast bound's greedy connected dominating
    /// set serve: a backbone planned from the topology, as an operator
    /// who knows where the nodes stand could configure it.
    Cds,
    /// The backbone `meshota radio plan` gives: the greedy set plus the
    /// relays that keep every node within [`PLAN_MAX_DETOUR`] hops of its
    /// shortest path (`meshota_radios::backbone::plan`).
    Plan,
}

/// The detour `--relays plan` allows, as `meshota radio plan`'s default.
pub const PLAN_MAX_DETOUR: usize = 2;

impl Relays {
    /// The name `--relays` takes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Cds => "cds",
            Self::Plan => "plan",
        }
    }
}

impl core::str::FromStr for Relays {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "all" => Ok(Self::All),
            "cds" => Ok(Self::Cds),
            "plan" => Ok(Self::Plan),
            _ => Err(Error::UnknownRelays(s.into())),
        }
    }
}

/// How a patch run goes (with [`LoraOptions::patch`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchRun {
    /// This node runs another image (no patch from it): it fetches chunks.
    pub other_base: Option<usize>,
    /// One piece of the patch is corrupt (flipped bytes, signed): its
    /// chunks must be fetched plainly.
    pub corrupt_piece: bool,
    /// Nodes ignore the patch and fetch the chunks of v2 they lack (their
    /// v1 chunks still count): the yardstick for the patch's airtime.
    pub chunks_only: bool,
    /// Bytes of the installed image v1 (default: ten times the patch, at
    /// least 64 KiB). Above [`WHOLE_RELEASE_BYTES_MAX`] the release crosses
    /// as a large one (by patch only; neither `other_base` nor
    /// `chunks_only` applies, nor the unicast baseline).
    pub image_bytes: Option<usize>,
}

impl LoraOptions {
    /// A plain run of `topology` with `payload_bytes` from `seed`.
    #[must_use]
    pub const fn new(topology: LoraTopology, payload_bytes: usize, seed: u64) -> Self {
        Self {
            topology,
            payload_bytes,
            seed,
            intruder: false,
            late_join_s: None,
            baseline: false,
            freq_hz: scenario::FREQ_HZ,
            patch: None,
            timing: RadioTiming::LORA,
            relays: Relays::All,
        }
    }
}

/// The outcome of one LoRa run. Every field is a function of the options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoraReport {
    /// Every honest node holds the release, verified.
    pub converged: bool,
    /// Virtual time of the last honest node's completion (or of the stop).
    pub virtual_seconds: f64,
    /// Airtime of every honest node's transmissions until then.
    pub airtime_total_s: f64,
    /// `airtime_total_s` per honest node.
    pub airtime_per_node_s: f64,
    /// The most airtime any one node used.
    pub airtime_max_node_s: f64,
    /// The broadcast bound: the payload once per node of the greedy CDS.
    pub bound_airtime_s: f64,
    /// Nodes in the greedy CDS.
    pub cds_nodes: usize,
    /// `airtime_total_s / bound_airtime_s`.
    pub airtime_vs_bound: f64,
    /// The bundle (`bundle_bytes`: signed manifest + chunk index) once per
    /// node of the same greedy CDS, in full frames as the bound: what the
    /// signed manifest every node must verify adds to the bound's own
    /// figure; not part of the goal (`bound_airtime_s` and
    /// `airtime_vs_bound` leave it out). JSON `bundle_bound_airtime_s`.
    pub bundle_bound_airtime_s: f64,
    /// The honest nodes' frames and airtime by frame kind (the intruder's
    /// left out). The kinds' airtimes sum to `airtime_total_s`. JSON: two
    /// objects keyed `announce`, `request`, `bundle` (message fragments:
    /// the bundle, and a patch run's patch index), `symbol`, `progress`,
    /// `repair`, `other`: `airtime_by_kind_s` (seconds) and
    /// `frames_by_kind` (frames).
    #[serde(flatten)]
    pub airtime_by_kind: AirtimeByKind,
    /// The unicast baseline's total airtime (with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_airtime_s: Option<f64>,
    /// Whether the baseline converged (with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_converged: Option<bool>,
    /// The baseline's time to converge (with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_virtual_seconds: Option<f64>,
    /// `baseline_airtime_s / airtime_total_s` (with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_vs_coded: Option<f64>,
    /// The baseline's frames and airtime by kind (with `--baseline`); they
    /// sum to `baseline_airtime_s`. JSON: `baseline_airtime_by_kind_s` and
    /// `baseline_frames_by_kind`, keyed as `airtime_by_kind_s`; the
    /// baseline sends bundle and image alike as message frames (`bundle`)
    /// and acknowledges each with a progress frame.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub baseline_airtime_by_kind: Option<BaselineAirtimeByKind>,
    /// Duty-cycle violations the medium's checker saw (must be 0).
    pub duty_cycle_violations: usize,
    /// Duty-cycle violations in the baseline run (with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_duty_cycle_violations: Option<usize>,
    /// Honest nodes that completed.
    pub converged_nodes: usize,
    /// Honest nodes.
    pub honest_nodes: usize,
    /// Usable links in the scenario's graph.
    pub links: usize,
    /// Payload (image) bytes.
    pub payload_bytes: usize,
    /// Chunks in the signed index (one RaptorQ object each).
    pub chunks: usize,
    /// Bundle (signed manifest + index, or index delta in a large-release
    /// run) bytes.
    pub bundle_bytes: usize,
    /// Frames sent by honest nodes.
    pub frames: u64,
    /// Announcements, requests, bundle fragments and symbols sent.
    pub announces: u64,
    /// Requests (bundle and payload) sent.
    pub requests: u64,
    /// Bundle fragments sent.
    pub pieces: u64,
    /// Symbols sent.
    pub symbols: u64,
    /// Bursts of symbols started.
    pub bursts: u64,
    /// Frames that waited for the duty-cycle budget.
    pub budget_waits: u64,
    /// Symbols sent by each node that sent any.
    pub symbols_per_node: Vec<u64>,
    /// Bursts cancelled on hearing another source.
    pub bursts_suppressed: u64,
    /// Frames honest nodes dropped for a bad MAC.
    pub bad_mac_frames: u64,
    /// Honest nodes that used a frame of the intruder or list it as a
    /// neighbour (must be 0).
    pub intruder_accepted: usize,
    /// Chunks that decoded to bytes not matching the signed index.
    pub chunk_failures: u64,
    /// Completed nodes whose image did not hash to the manifest's (must be 0).
    pub corrupt_payloads: usize,
    /// Patch runs: bytes of the patch (index and pieces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_bytes: Option<usize>,
    /// Patch runs: bytes of the new image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<usize>,
    /// Patch runs: bytes of the new image's chunks v1 does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_chunk_bytes: Option<usize>,
    /// Patch runs: nodes (node 0 aside) that completed from their base and
    /// patch pieces alone, with no chunk decoded from chunk symbols.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_by_patch: Option<usize>,
    /// Patch runs: nodes (node 0 aside) that completed from chunk symbols
    /// alone (no piece applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_by_chunks: Option<usize>,
    /// Patch runs: nodes that used both (a failed piece's chunks fetched
    /// plainly, or chunks overheard).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_mixed: Option<usize>,
    /// Patch runs: pieces applied, summed over nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pieces_applied: Option<u64>,
    /// Patch runs: pieces that failed, summed over nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piece_failures: Option<u64>,
    /// Patch runs: symbols of patch pieces sent (also in `symbols`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piece_symbols: Option<u64>,
    /// Large-release runs (image above [`WHOLE_RELEASE_BYTES_MAX`]): the
    /// bundle carried the chunk index as a delta.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub index_delta: bool,
    /// Patch runs: the most chunks any node but the origin held in its
    /// link's memory at the end (in a large-release run, only those the
    /// pieces made or that were fetched plainly; the rest stayed in the
    /// node's store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_in_memory_max: Option<usize>,
    /// When the late node joined and completed (seconds), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_join: Option<(f64, Option<f64>)>,
    /// The first nodes that did not converge, with their state.
    pub stuck: Vec<String>,
    /// The same for the baseline run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_stuck: Vec<String>,
    /// The node that used the most airtime, with its state.
    pub busiest: String,
    /// Receptions lost to collisions, half duplex and noise (in range).
    pub losses: [u64; 3],
    /// Transmissions deferred by listen-before-talk.
    pub cad_deferrals: u64,
    /// Why the run stopped: "converged", "virtual-time-limit", "step-limit".
    pub stop: String,
    /// The scenario.
    pub topology: String,
    /// The seed.
    pub seed: u64,
    /// Which nodes served: "all", or "cds" (the bound's dominating set).
    pub relays: String,
    /// Honest nodes that were relays.
    pub relay_nodes: usize,
}

impl LoraReport {
    /// The report as one line of JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Converged with no duty-cycle violation, no corrupt payload and the
    /// intruder ignored.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.converged
            && self.duty_cycle_violations == 0
            && self.corrupt_payloads == 0
            && self.intruder_accepted == 0
    }
}

/// One station of the engine: a sans-IO radio node.
pub trait Station {
    /// A frame received intact at `now`.
    fn handle_frame(&mut self, now: Micros, bytes: &[u8]);
    /// Timers due at `now`.
    fn handle_timeout(&mut self, now: Micros);
    /// When it next wants `handle_timeout` and `poll_transmit`.
    fn poll_timeout(&self) -> Micros;
    /// A frame to put on the air now (budget already charged).
    fn poll_transmit(&mut self, now: Micros) -> Option<Vec<u8>>;
    /// The image, once the station holds all of it.
    fn take_completed(&mut self) -> Option<Vec<u8>>;
    /// A description of its state (for nodes that did not converge).
    fn describe(&self) -> String {
        String::new()
    }
    /// Counters for the report (coded links only).
    fn node_stats(&self) -> Option<NodeStats> {
        None
    }
}

/// The image a node runs, as its driver can read it: the patch base its
/// link applies pieces against, and the chunks it hands the link when a
/// new release verifies.
struct Installed {
    image: Rc<[u8]>,
    chunks: Rc<[Vec<u8>]>,
}

/// What the nodes of a large-release run share: the target's chunks in
/// image order, and where each base chunk is (to assemble a completed
/// image from the link's chunks and the node's "store", its base).
struct LargeRun {
    target: Vec<Hash>,
    base_ids: Vec<Hash>,
    base_at: BTreeMap<Hash, usize>,
}

struct Coded {
    link: RadioLink,
    installed: Option<Installed>,
    /// Set in a large-release run: chunks stay in the "store".
    large: Option<Rc<LargeRun>>,
    /// The time of the last call (events are drained in `take_completed`).
    now: Micros,
}

impl Coded {
    const fn new(link: RadioLink, now: Micros) -> Self {
        Self {
            link,
            installed: None,
            large: None,
            now,
        }
    }
}

impl Station for Coded {
    fn handle_frame(&mut self, now: Micros, bytes: &[u8]) {
        self.now = now;
        self.link.handle_frame(now, bytes);
    }
    fn handle_timeout(&mut self, now: Micros) {
        self.now = now;
        self.link.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Micros {
        self.link.poll_timeout()
    }
    fn poll_transmit(&mut self, now: Micros) -> Option<Vec<u8>> {
        self.now = now;
        self.link.poll_transmit(now)
    }
    fn take_completed(&mut self) -> Option<Vec<u8>> {
        let mut done = false;
        while let Some(e) = self.link.poll_event() {
            match e {
                LinkEvent::ReleaseComplete { .. } => done = true,
                LinkEvent::ManifestVerified { .. } => match (&self.large, &self.installed) {
                    (Some(l), Some(_)) => {
                        self.link.add_stored_chunks(self.now, &l.base_ids);
                    }
                    (None, Some(b)) => {
                        self.link.add_chunks(self.now, &b.chunks);
                    }
                    _ => {}
                },
                LinkEvent::ApplyPiece(job) => {
                    let out = match &self.installed {
                        Some(b) => job.apply(&*b.image),
                        None => job.failed("no base image"),
                    };
                    self.link.piece_applied(self.now, out);
                }
                _ => {}
            }
        }
        if !done {
            return None;
        }
        match (&self.large, &self.installed) {
            (Some(l), Some(b)) => Some(assemble(&self.link, l, &b.chunks)),
            _ => self.link.payload(),
        }
    }
    fn describe(&self) -> String {
        self.link.describe()
    }
    fn node_stats(&self) -> Option<NodeStats> {
        let s = self.link.stats();
        Some(NodeStats {
            frames_sent: s.frames_sent,
            sent_announces: s.sent_announces,
            sent_requests: s.sent_requests,
            sent_pieces: s.sent_pieces,
            sent_symbols: s.sent_symbols,
            bursts: s.bursts,
            budget_waits: s.budget_waits,
            bursts_suppressed: s.bursts_suppressed,
            frames_bad_mac: s.frames_bad_mac,
            chunk_failures: s.chunk_failures,
            sources: s.sources.iter().copied().collect(),
            symbols_sent: s.sent_symbols,
            neighbours: self.link.neighbours().collect(),
            chunks_decoded: s.chunks_decoded,
            pieces_applied: s.pieces_applied,
            piece_failures: s.piece_failures,
            sent_piece_symbols: s.sent_piece_symbols,
            chunks_in_memory: self.link.held_chunks().count(),
        })
    }
}

/// A large release's image as a node's driver assembles it on completion:
/// each chunk from the link's memory, else from the base it runs (its
/// store). A chunk in neither leaves the image short, so its hash fails.
fn assemble(link: &RadioLink, large: &LargeRun, base: &[Vec<u8>]) -> Vec<u8> {
    let held: BTreeMap<Hash, &[u8]> = link.held_chunks().collect();
    let mut image = Vec::new();
    for h in &large.target {
        if let Some(b) = held.get(h) {
            image.extend_from_slice(b);
        } else if let Some(&j) = large.base_at.get(h) {
            image.extend_from_slice(&base[j]);
        }
    }
    image
}

/// What the engine measured.
#[derive(Debug, Clone, Default)]
pub struct EngineOutcome {
    /// Completion time per node (µs).
    pub completed_at: Vec<Option<u64>>,
    /// Completed nodes whose image hash was wrong.
    pub corrupt: usize,
    /// When the run stopped (µs).
    pub end_us: u64,
    /// Airtime per node until the stop (µs).
    pub airtime_us: Vec<u64>,
    /// Frames and airtime per node by frame kind until the stop (index
    /// order); node `i`'s kinds sum to `airtime_us[i]`.
    pub by_kind: Vec<AirtimeByKind>,
    /// Duty-cycle violations.
    pub violations: usize,
    /// Why it stopped.
    pub stop: &'static str,
    /// Frames lost at joined receivers: collisions, half duplex, noise.
    pub losses: [u64; 3],
    /// Transmissions deferred because channel activity was detected.
    pub cad_deferrals: u64,
    /// The node with the most airtime, described.
    pub busiest: String,
    /// The first nodes that did not complete, described.
    pub stuck: Vec<String>,
    /// Counters of the stations that report them (index order; honest and
    /// intruder alike).
    pub stats: Vec<Option<NodeStats>>,
}

/// Where and how the stations of one run live.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    /// The frequency every station sends on.
    pub freq_hz: u32,
    /// Positions (m), one per station.
    pub positions: &'a [(f64, f64)],
    /// Seed of the driver's own draws (listen-before-talk backoffs).
    pub seed: u64,
    /// When each station powers on (µs); it neither hears nor sends before.
    pub joins: &'a [u64],
    /// The stations that must complete.
    pub required: &'a [usize],
    /// The hash a completed image must have.
    pub image_hash: &'a Hash,
}

/// Runs stations built by `make` (at their join time) over `medium` until
/// every required station completed, or a bound is hit.
///
/// # Errors
/// [`Error::Core`] when the medium refuses a frame (a station broke the
/// half-duplex rule or sent an impossible frame).
pub fn drive(
    medium: &mut Medium,
    scene: &Scene<'_>,
    make: &mut dyn FnMut(usize, Micros) -> Result<Box<dyn Station>, Error>,
) -> Result<EngineOutcome, Error> {
    let Scene {
        freq_hz,
        positions,
        seed,
        joins,
        required,
        image_hash,
    } = *scene;
    let n = joins.len();
    let channel = scenario::channel_at(freq_hz);
    let cfg = scenario::medium_config();
    // senses[j][i]: node i's channel activity detection sees j's frames.
    let senses: Vec<Vec<bool>> = (0..n)
        .map(|j| {
            (0..n)
                .map(|i| {
                    let (a, b) = (positions[j], positions[i]);
                    i != j
                        && scenario::margin_db(&cfg, channel.params, (a.0 - b.0).hypot(a.1 - b.1))
                            >= CAD_MARGIN_DB
                })
                .collect()
        })
        .collect();
    let mut cad_rng = SimRng::stream(seed, 0xcad);
    let mut cad_until = vec![0u64; n];
    let mut on_air: Vec<(usize, u64)> = Vec::new();
    let mut stations: Vec<Option<Box<dyn Station>>> = (0..n).map(|_| None).collect();
    let mut out = EngineOutcome {
        completed_at: vec![None; n],
        by_kind: vec![AirtimeByKind::default(); n],
        ..EngineOutcome::default()
    };
    let mut t = 0u64;
    let mut steps = 0u64;
    let core = |e: meshota_radios::Error| Error::Core(e.to_string());
    out.stop = loop {
        if required.iter().all(|&i| out.completed_at[i].is_some()) {
            break "converged";
        }
        if t > VIRTUAL_US_MAX {
            break "virtual-time-limit";
        }
        steps += 1;
        if steps > STEPS_MAX {
            break "step-limit";
        }
        let now = Micros(t);
        for i in 0..n {
            if stations[i].is_none() && joins[i] <= t {
                stations[i] = Some(make(i, now)?);
            }
        }
        for r in medium.advance(now).map_err(core)? {
            match (&r.outcome, stations[r.to].as_mut()) {
                (Ok(bytes), Some(s)) => s.handle_frame(now, bytes),
                (Err(Loss::Collision), Some(_)) => out.losses[0] += 1,
                (Err(Loss::HalfDuplex), Some(_)) => out.losses[1] += 1,
                (Err(Loss::Noise), Some(_)) => out.losses[2] += 1,
                _ => {}
            }
        }
        for i in 0..n {
            let Some(s) = stations[i].as_mut() else {
                continue;
            };
            if s.poll_timeout().0.max(cad_until[i]) <= t {
                s.handle_timeout(now);
                // Listen before talk: channel activity detection first.
                let busy = on_air
                    .iter()
                    .filter(|(j, end)| *end > t && senses[*j][i])
                    .map(|(_, end)| *end)
                    .max();
                if let Some(end) = busy {
                    cad_until[i] = end + cad_rng.between(0, CAD_BACKOFF_US);
                    out.cad_deferrals += 1;
                } else if let Some(frame) = s.poll_transmit(now) {
                    let (first, len) = (frame.first().copied(), frame.len());
                    let sent = medium.transmit(now, i, channel, frame).map_err(core)?;
                    out.by_kind[i].record(first, len);
                    on_air.push((i, sent.end.0));
                }
            }
            if out.completed_at[i].is_none() {
                if let Some(image) = s.take_completed() {
                    out.completed_at[i] = Some(t);
                    if Hash::of(&image) != *image_hash {
                        out.corrupt += 1;
                    }
                }
            }
        }
        on_air.retain(|(_, end)| *end > t);
        let mut next = medium.next_event().map_or(u64::MAX, |m| m.0);
        for (i, s) in stations.iter().enumerate() {
            match s {
                Some(s) => next = next.min(s.poll_timeout().0.max(cad_until[i])),
                None => next = next.min(joins[i]),
            }
        }
        t = next.max(t + 1);
    };
    out.end_us = required
        .iter()
        .filter_map(|&i| out.completed_at[i])
        .max()
        .filter(|_| out.stop == "converged")
        .unwrap_or(t);
    out.airtime_us = (0..n).map(|i| medium.airtime_us(i)).collect();
    out.violations = medium.duty_cycle_violations().len();
    out.stuck = required
        .iter()
        .filter(|&&i| out.completed_at[i].is_none())
        .take(5)
        .map(|&i| {
            let d = stations[i]
                .as_ref()
                .map_or_else(|| "not joined".into(), |s| s.describe());
            format!(
                "node {i} (airtime {} s): {d}",
                seconds(medium.airtime_us(i))
            )
        })
        .collect();
    if let Some(i) = (0..n).max_by_key(|&i| medium.airtime_us(i)) {
        let d = stations[i]
            .as_ref()
            .map_or_else(String::new, |s| s.describe());
        out.busiest = format!(
            "node {i} (airtime {} s): {d}",
            seconds(medium.airtime_us(i))
        );
    }
    out.stats = stations
        .iter()
        .map(|s| s.as_ref().and_then(|s| s.node_stats()))
        .collect();
    Ok(out)
}

struct World {
    fixture: Fixture,
    bundle: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    positions: Vec<(f64, f64)>,
    honest: usize,
    joins: Vec<u64>,
    patch: Option<PatchedRelease>,
    /// A large-release run.
    large: Option<LargeWorld>,
}

fn world(o: &LoraOptions) -> Result<World, Error> {
    if o.payload_bytes == 0 || o.payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(Error::OutOfRange {
            what: "payload bytes",
            value: o.payload_bytes as u64,
            min: 1,
            max: PAYLOAD_BYTES_MAX as u64,
        });
    }
    let nodes = o.topology.nodes();
    if let Some(i) = o.patch.and_then(|p| p.other_base) {
        if i == 0 || i >= nodes {
            return Err(Error::OutOfRange {
                what: "node on another base",
                value: i as u64,
                min: 1,
                max: nodes as u64 - 1,
            });
        }
    }
    if let Some(n) = o.patch.and_then(|p| p.image_bytes) {
        if !(IMAGE_BYTES_MIN..=IMAGE_BYTES_MAX).contains(&n) {
            return Err(Error::OutOfRange {
                what: "image bytes",
                value: n as u64,
                min: IMAGE_BYTES_MIN as u64,
                max: IMAGE_BYTES_MAX as u64,
            });
        }
    }
    let (fixture, patch) = match o.patch {
        Some(p) => {
            let (f, r) =
                Fixture::with_patch(o.seed, o.payload_bytes, p.corrupt_piece, p.image_bytes)?;
            (f, Some(r))
        }
        None => (Fixture::new(o.seed, o.payload_bytes)?, None),
    };
    let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
    let index = ChunkIndex::decode(&fixture.target.index).map_err(|e| fx(&e))?;
    let large = match (&patch, o.patch) {
        (Some(p), Some(run)) if p.image_bytes > WHOLE_RELEASE_BYTES_MAX => {
            if run.other_base.is_some() || run.chunks_only || o.baseline {
                return Err(Error::Unsupported(
                    "--other-base, --patch-as-chunks and --baseline with an image above 1 MiB (a large release crosses the radio by patch only)",
                ));
            }
            Some(large_run(&fixture, p, &index)?)
        }
        _ => None,
    };
    let chunks = index
        .chunks()
        .iter()
        .map(|c| {
            fixture
                .target
                .chunks
                .get(&c.hash)
                .map(|b| b.to_vec())
                .ok_or_else(|| fx(&"chunk missing from the fixture"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = match &large {
        Some(l) => bundle::encode_delta(&fixture.target.manifest, l.base.index(), &index)
            .map_err(|e| fx(&e))?,
        None => {
            bundle::encode(&fixture.target.manifest, &fixture.target.index).map_err(|e| fx(&e))?
        }
    };
    let mut positions = scenario::positions(o.topology, o.seed)?;
    let honest = positions.len();
    let mut joins = vec![0u64; honest];
    if let Some(s) = o.late_join_s {
        if let Some(last) = joins.last_mut() {
            *last = s.saturating_mul(Micros::SECOND);
        }
    }
    if o.intruder {
        // Beside node 0, in range of it and its neighbours.
        let (x, y) = positions[0];
        positions.push((x + 500.0, y + 500.0));
        joins.push(0);
    }
    Ok(World {
        fixture,
        bundle,
        chunks,
        positions,
        honest,
        joins,
        patch,
        large,
    })
}

/// The parts of a large-release run.
struct LargeWorld {
    /// v1's chunk index: the delta's base, every node's base index.
    base: bundle::BaseIndex,
    /// The chunks the patch's pieces make: what the origin holds in memory.
    made: Vec<Vec<u8>>,
    /// What every node's driver shares.
    shared: Rc<LargeRun>,
}

fn large_run(
    fixture: &Fixture,
    p: &PatchedRelease,
    target: &ChunkIndex,
) -> Result<LargeWorld, Error> {
    let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
    let base = ChunkIndex::decode(&fixture.installed.index).map_err(|e| fx(&e))?;
    let patch = meshota_blobstore::patch::PatchIndex::decode(&p.patch_index).map_err(|e| fx(&e))?;
    let held = patch
        .chunks_made(target)
        .iter()
        .map(|h| {
            fixture
                .target
                .chunks
                .get(h)
                .map(|b| b.to_vec())
                .ok_or_else(|| fx(&"chunk missing from the fixture"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut base_at = BTreeMap::new();
    for (j, c) in base.chunks().iter().enumerate() {
        base_at.entry(c.hash).or_insert(j);
    }
    let shared = LargeRun {
        target: target.chunks().iter().map(|c| c.hash).collect(),
        base_ids: base_at.keys().copied().collect(),
        base_at,
    };
    Ok(LargeWorld {
        base: bundle::BaseIndex::new(base).map_err(|e| fx(&e))?,
        made: held,
        shared: Rc::new(shared),
    })
}

fn short_id(i: usize) -> ShortId {
    ShortId::derive(crate::fixture::node_id(i).0.as_slice(), 0)
}

fn radio_config(i: usize, key: [u8; 32], o: &LoraOptions, relay: bool) -> RadioConfig {
    let (seed, freq_hz) = (o.seed, o.freq_hz);
    RadioConfig {
        mesh_key: key,
        short_id: short_id(i),
        channel: scenario::channel_at(freq_hz),
        region: EU868,
        frame_len: scenario::frame_len(),
        trickle: TrickleConfig::LORA,
        timing: o.timing,
        seed: SimRng::stream(seed, 0x4ad10 + i as u64).next_u64(),
        hardware: Some(HARDWARE.into()),
        expiration: Expiration::dangerous_ignore(),
        relay,
    }
}

/// Runs one LoRa scenario (and the baseline when asked).
///
/// # Errors
/// [`Error::OutOfRange`] for a payload size out of bounds, [`Error::Fixture`]
/// when the world cannot be built, [`Error::Core`] when a station breaks
/// the medium's rules.
pub fn run(o: &LoraOptions) -> Result<LoraReport, Error> {
    let w = world(o)?;
    let medium_seed = SimRng::stream(o.seed, 0x3ed1).next_u64();
    let mut medium = Medium::with_positions(scenario::medium_config(), &w.positions, medium_seed);
    let installed = (
        w.fixture.installed.id,
        crate::fixture::INSTALLED_SECURITY_VERSION,
    );
    let required: Vec<usize> = (0..w.honest).collect();
    let trust = w.fixture.trust.clone();
    let adj = scenario::usable_links(&w.positions[..w.honest]);
    let cds = greedy_cds(&adj, 0);
    let planned = match o.relays {
        Relays::Plan => meshota_radios::backbone::plan(&adj, 0, PLAN_MAX_DETOUR).relays,
        Relays::All | Relays::Cds => Vec::new(),
    };
    let relay = |i: usize| match o.relays {
        Relays::All => true,
        Relays::Cds => cds.contains(&i),
        Relays::Plan => planned.contains(&i),
    };
    let mut make = |i: usize, now: Micros| -> Result<Box<dyn Station>, Error> {
        let intruder = i >= w.honest;
        let key = if intruder { INTRUDER_KEY } else { MESH_KEY };
        let config = radio_config(i, key, o, intruder || relay(i));
        let mut link = RadioLink::new(config, trust.clone(), installed, now)
            .map_err(|e| Error::Core(e.to_string()))?;
        if i == 0 || intruder {
            match &w.large {
                Some(l) => link.add_stored_release(now, w.bundle.clone(), Some(&l.base), &l.made),
                None => link.add_release(now, w.bundle.clone(), &w.chunks),
            }
            .map_err(|e| Error::Core(e.to_string()))?;
        }
        let mut station = Coded::new(link, now);
        if let (Some(p), Some(run)) = (&w.patch, o.patch) {
            if i == 0 {
                station
                    .link
                    .add_patch(now, p.patch_index.clone(), &p.pieces)
                    .map_err(|e| Error::Core(e.to_string()))?;
                if let Some(l) = &w.large {
                    // Its store holds v2's unchanged chunks: v1's.
                    station.large = Some(l.shared.clone());
                    station.installed = Some(Installed {
                        image: p.base_image.clone(),
                        chunks: p.base_chunks.clone(),
                    });
                }
            } else if !intruder {
                let (image, chunks, hash) = if run.other_base == Some(i) {
                    (&p.other_image, &p.other_chunks, Hash::of(&p.other_image))
                } else {
                    (
                        &p.base_image,
                        &p.base_chunks,
                        w.fixture.installed.image_hash,
                    )
                };
                match &w.large {
                    Some(l) => {
                        station.link.set_base_index(l.base.clone());
                        station.large = Some(l.shared.clone());
                    }
                    None if !run.chunks_only => station.link.set_base_image(hash),
                    None => {}
                }
                station.installed = Some(Installed {
                    image: image.clone(),
                    chunks: chunks.clone(),
                });
            }
        }
        Ok(Box::new(station))
    };
    let scene = Scene {
        freq_hz: o.freq_hz,
        positions: &w.positions,
        seed: o.seed,
        joins: &w.joins,
        required: &required,
        image_hash: &w.fixture.target.image_hash,
    };
    let out = drive(&mut medium, &scene, &mut make)?;
    let stats: Vec<NodeStats> = out.stats[..w.honest]
        .iter()
        .map(|s| s.clone().unwrap_or_default())
        .collect();
    let honest_airtime: u64 = out.airtime_us[..w.honest].iter().sum();
    // The bound sends what must cross: the patch when nodes fetch by it,
    // the new chunks when they fetch v2's chunks they lack.
    let sent = match (&w.patch, o.patch) {
        (Some(p), Some(run)) if run.chunks_only => p.new_chunk_bytes,
        (Some(p), Some(_)) => p.patch_bytes,
        _ => o.payload_bytes,
    };
    let bound = bound_airtime_us(sent, cds.len());
    let bundle_bound = bound_airtime_us(w.bundle.len(), cds.len());
    let mut by_kind = AirtimeByKind::default();
    for k in &out.by_kind[..w.honest] {
        by_kind.merge(k);
    }
    let converged_nodes = required
        .iter()
        .filter(|&&i| out.completed_at[i].is_some())
        .count();
    let mut report = LoraReport {
        converged: out.stop == "converged",
        virtual_seconds: seconds(out.end_us),
        airtime_total_s: seconds(honest_airtime),
        airtime_per_node_s: seconds(honest_airtime) / w.honest as f64,
        airtime_max_node_s: seconds(
            out.airtime_us[..w.honest]
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
        ),
        bound_airtime_s: seconds(bound),
        cds_nodes: cds.len(),
        airtime_vs_bound: honest_airtime as f64 / bound.max(1) as f64,
        bundle_bound_airtime_s: seconds(bundle_bound),
        airtime_by_kind: by_kind,
        baseline_airtime_s: None,
        baseline_converged: None,
        baseline_virtual_seconds: None,
        baseline_vs_coded: None,
        baseline_airtime_by_kind: None,
        duty_cycle_violations: out.violations,
        baseline_duty_cycle_violations: None,
        converged_nodes,
        honest_nodes: w.honest,
        links: adj.iter().map(Vec::len).sum::<usize>() / 2,
        payload_bytes: o.payload_bytes,
        chunks: w.chunks.len(),
        bundle_bytes: w.bundle.len(),
        frames: stats.iter().map(|s| s.frames_sent).sum(),
        announces: stats.iter().map(|s| s.sent_announces).sum(),
        requests: stats.iter().map(|s| s.sent_requests).sum(),
        pieces: stats.iter().map(|s| s.sent_pieces).sum(),
        symbols: stats.iter().map(|s| s.sent_symbols).sum(),
        bursts: stats.iter().map(|s| s.bursts).sum(),
        symbols_per_node: Vec::new(),
        budget_waits: stats.iter().map(|s| s.budget_waits).sum(),
        bursts_suppressed: stats.iter().map(|s| s.bursts_suppressed).sum(),
        bad_mac_frames: stats.iter().map(|s| s.frames_bad_mac).sum(),
        intruder_accepted: 0,
        chunk_failures: stats.iter().map(|s| s.chunk_failures).sum(),
        corrupt_payloads: out.corrupt,
        patch_bytes: w.patch.as_ref().map(|p| p.patch_bytes),
        image_bytes: w.patch.as_ref().map(|p| p.image_bytes),
        new_chunk_bytes: w.patch.as_ref().map(|p| p.new_chunk_bytes),
        installed_by_patch: None,
        installed_by_chunks: None,
        installed_mixed: None,
        pieces_applied: None,
        piece_failures: None,
        piece_symbols: None,
        index_delta: w.large.is_some(),
        chunks_in_memory_max: None,
        late_join: o
            .late_join_s
            .map(|s| (s as f64, out.completed_at[w.honest - 1].map(seconds))),
        losses: out.losses,
        cad_deferrals: out.cad_deferrals,
        stuck: out.stuck.clone(),
        baseline_stuck: Vec::new(),
        busiest: out.busiest.clone(),
        stop: out.stop.into(),
        topology: o.topology.to_string(),
        seed: o.seed,
        relays: o.relays.name().into(),
        relay_nodes: (0..w.honest).filter(|&i| relay(i)).count(),
    };
    report.symbols_per_node = stats
        .iter()
        .map(|s| s.symbols_sent)
        .filter(|&n| n > 0)
        .collect();
    if o.patch.is_some() {
        let done = |i: usize| out.completed_at[i].is_some();
        let fetched: Vec<&NodeStats> = (1..w.honest)
            .filter(|&i| done(i))
            .map(|i| &stats[i])
            .collect();
        report.installed_by_patch = Some(
            fetched
                .iter()
                .filter(|s| s.chunks_decoded == 0 && s.pieces_applied > 0)
                .count(),
        );
        report.installed_by_chunks = Some(fetched.iter().filter(|s| s.pieces_applied == 0).count());
        report.installed_mixed = Some(
            fetched
                .iter()
                .filter(|s| s.chunks_decoded > 0 && s.pieces_applied > 0)
                .count(),
        );
        report.pieces_applied = Some(stats.iter().map(|s| s.pieces_applied).sum());
        report.piece_failures = Some(stats.iter().map(|s| s.piece_failures).sum());
        report.piece_symbols = Some(stats.iter().map(|s| s.sent_piece_symbols).sum());
        report.chunks_in_memory_max = stats[1..].iter().map(|s| s.chunks_in_memory).max();
    }
    if o.intruder {
        let intruder = short_id(w.honest);
        report.intruder_accepted = stats
            .iter()
            .filter(|s| s.sources.contains(&intruder) || s.neighbours.contains(&intruder))
            .count();
    }
    if o.baseline {
        let b = super::unicast::run(
            o,
            &w.positions[..w.honest],
            &w.bundle,
            &w.chunks,
            &w.fixture.target.image_hash,
        )?;
        let total: u64 = b.airtime_us.iter().sum();
        report.baseline_airtime_s = Some(seconds(total));
        report.baseline_converged = Some(b.stop == "converged");
        report.baseline_virtual_seconds = Some(seconds(b.end_us));
        report.baseline_vs_coded = Some(total as f64 / honest_airtime.max(1) as f64);
        let mut kinds = AirtimeByKind::default();
        for k in &b.by_kind {
            kinds.merge(k);
        }
        report.baseline_airtime_by_kind = Some(BaselineAirtimeByKind(kinds));
        report.baseline_duty_cycle_violations = Some(b.violations);
        report.baseline_stuck = b.stuck.clone();
    }
    Ok(report)
}

/// Per-node statistics kept for the report.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// The link's counters.
    pub frames_sent: u64,
    /// Announcements sent.
    pub sent_announces: u64,
    /// Requests sent.
    pub sent_requests: u64,
    /// Fragments sent.
    pub sent_pieces: u64,
    /// Symbols sent.
    pub sent_symbols: u64,
    /// Bursts started.
    pub bursts: u64,
    /// Frames that waited for the budget.
    pub budget_waits: u64,
    /// Bursts suppressed.
    pub bursts_suppressed: u64,
    /// Frames with a bad MAC.
    pub frames_bad_mac: u64,
    /// Chunk failures.
    pub chunk_failures: u64,
    /// Sources used.
    pub sources: Vec<ShortId>,
    /// Symbols sent.
    pub symbols_sent: u64,
    /// Neighbours heard.
    pub neighbours: Vec<ShortId>,
    /// Chunks decoded from chunk symbols.
    pub chunks_decoded: u64,
    /// Patch pieces applied.
    pub pieces_applied: u64,
    /// Patch pieces failed.
    pub piece_failures: u64,
    /// Symbols of patch pieces sent.
    pub sent_piece_symbols: u64,
    /// Distinct chunks in the link's memory (at the run's end).
    pub chunks_in_memory: usize,
}
