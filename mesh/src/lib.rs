//! The meshota mesh protocol.
//!
//! # What it is for
//! Nodes gossip signed release manifests and swap the chunks of the release
//! they want. This crate's core, [`Node`], is **sans-IO**: a state machine
//! fed [`Event`]s (link up/down, message received, timer fired, store
//! failures) with the current [`Timestamp`] passed in, returning
//! [`Action`]s (send, store, serve, install ready, arm timer). It owns no
//! sockets, threads or clocks; its randomness comes from the seed in its
//! [`Config`]. The same core runs in a real node (driven by the QUIC driver
//! in [`quic`] when the `quic` feature is on), in the simulator, and over
//! radio links.
//!
//! # What it promises
//! - A manifest is verified against the trust root before it is stored,
//!   relayed, or used to plan a fetch; one that fails is never fetched again
//!   from anyone, and its sender is penalised.
//! - A chunk is hashed before it is stored; a peer that sends a corrupt
//!   chunk, a bad manifest or a bad index is penalised and, at
//!   [`Limits::ban_threshold`], disconnected and banned for
//!   [`Limits::ban_ms`].
//! - Only the newest release for the node's hardware class and channel,
//!   above its installed security version and admitted by the release's
//!   rollout, is fetched for install. Other verified manifests are carried
//!   and relayed.
//! - Chunks are fetched rarest first from several peers, at most
//!   [`Limits::in_flight_per_peer`] per peer, with timeouts, exponential
//!   backoff and an endgame; upload and download rates are capped when
//!   configured. Every queue and list has a bound ([`Limits`], [`wire`]).
//! - [`Action::InstallReady`] is emitted once, when every chunk of the
//!   wanted release is held and verified.
//! - Patches: when the wanted release's manifest lists a patch from the
//!   node's confirmed image ([`Installed::image_hash`]), the core fetches
//!   the patch index and the pieces worth fetching (the blobstore's
//!   `choose_pieces`) instead of the chunks they produce, and asks the
//!   driver to apply them ([`Action::ApplyPatch`]). A patch index for
//!   another base, a piece that keeps failing, or no progress for two
//!   request timeouts ends in a plain chunk fetch. Patch blobs are
//!   advertised and served like chunks (addressing: `patch.rs`).
//!
//! # What it does not do
//! It does not read or write chunks (the driver does, on [`Action`]s), run
//! the install pipeline, or authenticate links (drivers admit peers and
//! pass their node ids in [`Event::LinkUp`]). Node reports are relayed
//! after structural checks only: their signatures are checked where the
//! device key is known (gateways).
//!
//! # Where to start reading
//! [`event`] (the contract with drivers), then [`wire`] (the messages),
//! then `node.rs` (the handlers and the scheduler).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

mod bitmap;
mod config;
mod error;
pub mod event;
mod node;
mod patch;
mod peer;
pub mod radio;
mod release;
mod rng;
mod time;
pub mod trickle;
pub mod wire;

#[cfg(feature = "quic")]
pub mod quic;

pub use bitmap::Bitmap;
pub use config::{Config, Limits};
pub use error::Error;
pub use event::{Action, Event, Offence, PeerId};
pub use node::{FRESH_DEMAND_MS, Installed, Node, Stats};
pub use release::cohort;
pub use rng::SeededRng;
pub use time::Timestamp;
pub use trickle::TrickleConfig;
