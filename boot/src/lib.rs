//! # meshota-boot: A/B slots, boot control, install, confirm and rollback
//!
//! This crate puts a verified image into the inactive slot of an A/B device
//! and switches to it so that the device is never bricked: whatever the point
//! at which power is lost, the device boots a slot holding a complete, verified
//! image, and an update that does not confirm itself rolls back on its own.
//!
//! ## Promises
//! - Boot-control and install state change only through atomic commit points
//!   ([`record::RecordStore`]: double-buffered, CRC32, sequence numbers; the
//!   redundant U-Boot environment); a power cut leaves the old or the new state.
//! - A slot is marked bootable only after its whole image was read back and
//!   hash-checked and the manifest was verified again (see `install`).
//! - The anti-rollback counter is raised only when an image is confirmed.
//! - Bytes from disk never cause a panic: every decoder returns [`Error`].
//! - The state logic ([`state`], [`record`], [`env`](mod@env)) is sans-IO and builds
//!   with `no_std + alloc` (`--no-default-features`); time is passed in.
//!
//! ## What it does not do
//! - It does not verify manifest signatures itself: the caller passes a
//!   re-verification closure (backed by `meshota-manifest`).
//! - It does not fetch chunks or assemble images from a store: it takes a byte stream.
//! - It does not reboot the machine; it tells the caller when to.
//! - GRUB's script cannot count, so GRUB trials are one boot long.
//!
//! ## Where to start reading
//! [`state`] (the bootloaders' decisions), then [`slot::Slot`] and
//! [`control::BootControl`], then `install`. `docs/boot.md` has the variable
//! conventions and the install/confirm/rollback state table.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod env;
mod error;
pub mod lifecycle;
pub mod record;
pub mod slot;
pub mod state;

#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod control;
#[cfg(feature = "std")]
pub mod file;
#[cfg(feature = "std")]
pub mod flash;
#[cfg(feature = "std")]
pub mod install;

#[cfg(feature = "std")]
pub use control::BootControl;
pub use error::{Error, Result};
pub use slot::Slot;
pub use state::{BootChoice, BootScheme, BootStatus, SlotId, SlotStatus};
