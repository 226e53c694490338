//! The deterministic meshota simulator.
//!
//! # Purpose
//! Runs many [`meshota_mesh::Node`] protocol cores — the same code a real
//! node runs — in one thread on a virtual clock, over modelled links
//! (bandwidth with serialisation, latency, jitter and so reordering,
//! transmission loss, partitions that start and heal), with nodes that
//! crash and restart from their store, and malicious nodes that serve
//! corrupt chunks, push forged or replayed manifests, or flood junk. It is
//! the engine of `meshota sim` and of this crate's scenario tests, in the
//! style of TigerBeetle's VOPR: one seed, all faults.
//!
//! # Promises
//! - **One seed, one run.** Every random choice comes from [`SimRng`]
//!   streams derived from [`Options::seed`]; events are ordered by (time,
//!   sequence); no wall clock, thread RNG or hash-map order is used (the
//!   crate's `clippy.toml` forbids clocks and RNGs). Equal options give an
//!   equal [`Report`], including [`Report::trace_hash`], a BLAKE3 of every
//!   processed event and message byte.
//! - **Safety at every step.** Every `InstallReady` is judged by
//!   [`safety::check_install`], independently of the core: the manifest in
//!   the node's store must verify against the trust root (trusted key,
//!   hardware) and be above the node's installed security version, and the
//!   chunks in the node's store must assemble to the manifest's image hash.
//!   Chunks a core asks to store are re-hashed. Refusals are counted in
//!   [`Report::invalid_installs`] and [`Report::corrupt_stores`].
//! - **Liveness at the end.** A run converges when every honest node
//!   connected to the seed (node 0) through honest nodes has installed the
//!   release ([`Report::converged`]).
//! - **Bounded.** Every loop is bounded: virtual time
//!   ([`options::VIRTUAL_MS_MAX`]), events ([`options::EVENTS_PER_NODE_MAX`]
//!   per node), attack traffic ([`net::ATTACK_MESSAGES_MAX`]) and the
//!   actions drained from a core.
//! - **A failing run names its replay:** [`Report::replay`] is the exact
//!   `meshota sim ...` command line.
//!
//! # What it does not do
//! It does not open sockets, run the QUIC driver, write files, run the
//! boot pipeline (an install is the checker's verdict, then
//! `Node::installed`), or model CPU time and disk speed. Links model a
//! reliable transport (loss costs retransmission time, and repeated loss
//! fails the connection); datagram links (LoRa) are not modelled yet.
//! There is one release to converge on, one hardware class and one channel.
//!
//! # Where to start reading
//! [`Options`] (what a run is), then [`net`] (the engine: links, faults,
//! attackers, the event loop), then [`safety`] (the checker), then
//! [`Report`].

pub mod fixture;
pub mod lora;
pub mod net;
pub mod options;
pub mod report;
pub mod rng;
pub mod safety;
pub mod topology;

mod error;

pub use error::Error;
pub use net::{Attack, Role, Sim, run};
pub use options::{Options, Topology};
pub use report::{Report, Stop};
pub use rng::SimRng;
