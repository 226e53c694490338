//! Radio links for meshota, as frames.
//!
//! # What it is for
//! LoRa links are broadcast, lossy, slow and duty-cycle limited. This crate
//! holds what every LoRa link of the mesh needs, whatever drives it (the
//! mesh core, the simulator, a daemon with a real radio):
//! - [`lora`]: modulation parameters and exact time on air (Semtech
//!   AN1200.13);
//! - [`region`]: regional rules as data (EU868 sub-bands and duty cycles,
//!   US915 dwell time, largest payload per data rate);
//! - [`dutycycle`]: the per-node budget asked before every transmission,
//!   and an independent checker;
//! - [`medium`]: a simulated medium (path loss to packet error rate,
//!   half-duplex radios, collisions with capture, duty-cycle checking);
//! - [`frame`], [`shortid`], [`mod@fragment`]: authenticated frames that fit the
//!   smallest payload of the data rate, two-byte node ids, fragmentation
//!   and bounded reassembly;
//! - [`coding`], [`progress`]: objects as RaptorQ symbols sized to the
//!   frame, and receivers' progress bitmaps;
//! - [`backbone`]: which nodes must relay (a greedy connected dominating
//!   set) and which can be leaves, from the links between them;
//! - `sx126x` (feature `sx126x`): lora-phy's SX126x driver over Linux
//!   spidev and GPIO character devices.
//!
//! # What it promises
//! - Airtime is computed exactly (nanoseconds) and rounded up, never down.
//! - A node that follows its [`DutyCycleBudget`] never exceeds a sub-band's
//!   duty cycle in any one-hour window (property-tested against the
//!   [`DutyCycleChecker`]).
//! - A frame whose MAC fails is dropped before any field is parsed; a
//!   decoded object is returned only if it hashes to its id.
//! - Input from the air (frames, symbols, bitmaps) gets a typed [`Error`],
//!   never a panic; every buffer it keeps has a bound.
//! - Sans-IO: time ([`Micros`]) and randomness ([`SeededRng`]) are passed
//!   in; no clocks, threads or global RNG. Without the `sx126x` feature the
//!   crate is `no_std + alloc`.
//!
//! # What it does not do
//! It depends on no other meshota crate and knows nothing of manifests or
//! chunks; the protocol that uses these pieces (announcements, fetches,
//! multi-hop) is the mesh crate's `mesh::radio`. It does not
//! stop replayed frames (the mesh layer drops what it already has).
//!
//! # Where to start reading
//! [`lora`] and [`region`], then [`dutycycle`]; [`frame`] for the wire
//! format; [`medium`] for the simulation model. ARCHITECTURE.md ("Radio
//! links") has every format byte by byte.
#![cfg_attr(not(any(test, feature = "sx126x")), no_std)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

pub mod backbone;
pub mod coding;
pub mod dutycycle;
mod error;
pub mod fragment;
pub mod frame;
pub mod leb128;
pub mod lora;
pub mod medium;
pub mod progress;
pub mod region;
pub mod repair;
mod rng;
pub mod shortid;
mod time;

#[cfg(feature = "sx126x")]
pub mod sx126x;

pub use coding::{ObjectDecoder, ObjectEncoder, ObjectInfo, symbol_size_for};
pub use dutycycle::{DutyCycleBudget, DutyCycleChecker, Violation};
pub use error::Error;
pub use fragment::{Message, Reassembler, ReassemblyLimits, fragment};
pub use frame::{Frame, FrameCodec, FrameKind, Header};
pub use lora::{Bandwidth, CodingRate, HeaderMode, LoraParams, LowDataRate, SpreadingFactor};
pub use medium::{Channel, Loss, Medium, MediumConfig, Reception, Sent};
pub use progress::Progress;
pub use region::{DataRate, EU868, Region, SubBand, US915};
pub use repair::RepairEncoder;
pub use rng::SeededRng;
pub use shortid::ShortId;
pub use time::Micros;
