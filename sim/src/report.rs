//! What a run reports. Every field is a function of the options: no wall
//! clock, so identical options print identical JSON.

use serde::Serialize;

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Stop {
    /// Every required node installed the release.
    Converged,
    /// Virtual time reached [`crate::options::VIRTUAL_MS_MAX`].
    VirtualTimeLimit,
    /// The event budget ran out (or a core produced actions without end).
    EventLimit,
    /// Nothing was left to happen.
    QueueEmpty,
}

/// The outcome of one run. `converged` and `invalid_installs` decide
/// success ([`Report::ok`]); the rest explains it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Every honest node connected to the seed through honest nodes
    /// installed the release (liveness).
    pub converged: bool,
    /// Virtual time of the last required install (or of the stop).
    pub virtual_seconds: f64,
    /// Bytes of every message put on a link (protocol and attack traffic).
    pub bytes: u64,
    /// Messages put on links.
    pub messages: u64,
    /// `InstallReady`s the safety checker refused (must be 0).
    pub invalid_installs: u64,
    /// Chunks a core asked to store whose bytes do not hash to their id
    /// (must be 0).
    pub corrupt_stores: u64,
    /// Nodes in the run.
    pub nodes: usize,
    /// Honest nodes.
    pub honest_nodes: usize,
    /// Malicious nodes.
    pub malicious_nodes: usize,
    /// Honest nodes connected to the seed through honest nodes: the ones
    /// that must converge.
    pub required_nodes: usize,
    /// Required nodes that installed the release.
    pub converged_nodes: usize,
    /// Links in the topology.
    pub links: usize,
    /// Size of the release's image.
    pub image_bytes: u64,
    /// Chunks in the release's index.
    pub chunks: usize,
    /// Chunk payload bytes fetched and verified by all cores.
    pub chunk_bytes_fetched: u64,
    /// Chunks fetched and verified by all cores.
    pub chunks_fetched: u64,
    /// Chunks stored again by a node that already held them.
    pub duplicate_chunk_stores: u64,
    /// Installs the checker accepted (every node, attackers included).
    pub installs: u64,
    /// Messages lost because their link went down or their receiver
    /// crashed.
    pub messages_dropped: u64,
    /// Connections that failed after too many retransmissions.
    pub link_failures: u64,
    /// Links closed by a core (bans).
    pub disconnects: u64,
    /// Bans by all cores.
    pub bans: u64,
    /// Corrupt chunks the cores caught.
    pub corrupt_chunks_rejected: u64,
    /// Manifests the cores rejected.
    pub rejected_manifests: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Events processed.
    pub events: u64,
    /// Why the run stopped.
    pub stop: Stop,
    /// BLAKE3 of the full event trace (times, receivers, message bytes):
    /// equal for equal options.
    pub trace_hash: String,
    /// The seed.
    pub seed: u64,
    /// The topology's name.
    pub topology: String,
    /// Percent of malicious nodes asked for.
    pub malicious_percent: u32,
    /// Percent transmission loss.
    pub loss_percent: u32,
    /// Percent of crashing honest nodes.
    pub crash_percent: u32,
    /// Whether the halves were partitioned for a while.
    pub partition: bool,
    /// Image size in KiB.
    pub size_kib: u64,
    /// The command that replays this run.
    pub replay: String,
    /// The first safety violations, verbatim.
    pub violations: Vec<String>,
    /// The first required nodes that did not converge, with what they
    /// hold and want.
    pub stuck: Vec<String>,
}

impl Report {
    /// Safe and live: converged with no invalid install or corrupt store.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.converged && self.invalid_installs == 0 && self.corrupt_stores == 0
    }

    /// The report as one line of JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
