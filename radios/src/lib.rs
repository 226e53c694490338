//! Radio links for meshota, as frames.
//!
//! # What it is for
//! LoRa links are broadcast, lossy, slow and duty-cycle limited. This crate
//! holds what every LoRa link of the mesh needs, whatever drives it:
//! - [`lora`]: modulation parameters and exact time on air (Semtech
//!   AN1200.13);
//! - [`region`]: regional rules as data (EU868 sub-bands and duty cycles,
//!   US915 dwell time, largest payload per data rate);
//! - [`dutycycle`]: the per-node budget asked before every transmission,
//!   and an independent checker;
//! - [`medium`]: a simulated medium (path loss, packet error rate,
//!   half-duplex radios, collisions with capture, duty-cycle checking);
//!
//! # What it promises
//! - Airtime is computed exactly (nanoseconds) and rounded up, never down.
//! - A node that follows its [`DutyCycleBudget`] never exceeds a sub-band's
//!   duty cycle in any one-hour window (property-tested against the
//!   [`DutyCycleChecker`]).
//! - Input from the air gets a typed [`Error`], never a panic.
//! - Sans-IO: time ([`Micros`]) and randomness ([`SeededRng`]) are passed
//!   in; no clocks, threads or global RNG.
//!
//! # What it does not do
//! It depends on no other meshota crate and knows nothing of manifests or
//! chunks.
//!
//! # Where to start reading
//! [`lora`], then [`region`] and [`dutycycle`].
#![cfg_attr(not(any(test, feature = "sx126x")), no_std)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

pub mod coding;
pub mod dutycycle;
mod error;
pub mod fragment;
pub mod frame;
pub mod lora;
pub mod medium;
pub mod progress;
pub mod region;
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
pub use rng::SeededRng;
pub use shortid::ShortId;
pub use time::Micros;
