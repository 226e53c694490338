//! The meshota gateway: the bridge between a mesh and the cloud.
//!
//! **Purpose.** A gateway is a mesh node that also pulls releases from an
//! HTTP(S) origin of static files and injects them into the mesh, and
//! that reports the fleet to an MQTT broker ([`mqtt`]). This crate holds
//! the origin side: the static layout
//! ([`origin::layout`]), writing it ([`origin::publish()`], for
//! `meshota publish`), and syncing from it over HTTP with resumable Range
//! requests ([`origin::sync()`], driven by `meshota gateway run`).
//!
//! **Promises.**
//! - Nothing enters the store unverified: the catalog and every manifest
//!   are checked against the node's trust root, every index, patch blob and
//!   chunk against its BLAKE3 id, before any put. A bad object is refused
//!   with a typed [`Error`] and leaves no trace but a deleted partial file.
//! - A gateway never goes back to an older catalog: the last accepted one
//!   is kept, and a lower sequence is refused ([`Error::Catalog`]).
//! - Publishing is atomic per file (temp + fsync + rename), idempotent and
//!   incremental: objects already on the origin are not written again, and
//!   the catalog is written last, so a reader never sees a catalog naming
//!   an object that is not there yet.
//! - MQTT reports are delivered at least once: queued on disk
//!   ([`mqtt::Outbox`]) before they are sent, removed only on the broker's
//!   PUBACK, so a broker outage or a gateway restart loses none.
//!
//! **What it does not do.** It runs no mesh itself (the `meshota` binary's
//! daemon does, and calls [`origin::sync()`] on a blocking thread); it does
//! not serve HTTP (any static server does); MQTT runs over plain TCP only
//! (no TLS yet); the web console is not built. (USB station mode is the
//! node daemon's `[station]`, built on the sneakernet crate.)
//!
//! **Where to start reading.** [`origin::layout`] (the paths), then
//! [`origin::publish()`], then [`origin::sync()`] and [`origin::http`];
//! for MQTT, [`mqtt`] (topics, at-least-once semantics), then
//! [`mqtt::Outbox`] and [`mqtt::Link`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
mod error;
pub mod mqtt;
pub mod origin;

pub use config::GatewayConfig;
pub use error::{Error, Result};
