//! USB sneakernet bundles: how releases reach nodes that no network reaches.
//!
//! **Purpose.** A bundle is one file carrying a trust root, signed release
//! manifests, chunk indexes, patches and chunks ([`format`](mod@format) has every byte).
//! [`export()`] writes one from a store, streaming, leaving out what a field
//! node's [`WantList`] says it holds; [`import()`] puts one into a node's
//! store; [`verify_file`] runs every check import runs without a node, so
//! an operator can check a stick before the trip. Bundles may be encrypted
//! to recipients' ML-KEM-768 keys ([`crypt`]).
//!
//! **Promises.**
//! - Nothing of a bundle is committed unless all of it verified: every
//!   record hashes to its id, the end record's digest matches, every
//!   manifest verifies under the node's trust root and is not older than
//!   what it runs, every index and chunk is referenced by a release in the
//!   bundle, the file is under the size limit. A failure names what failed.
//! - A bundle appears under its name only when completely written and
//!   fsynced (temp file, then rename).
//! - Reading holds one record in memory at a time; decompression is
//!   bounded; no input makes the reader panic (property-tested).
//! - An encrypted bundle reveals recipient ids, record count and sizes only.
//! - Bundles are content-addressed inside: [`merge`] joins bundles, each
//!   record kept once.
//!
//! **Where to start reading.** [`format`](mod@format), then [`reader`] and [`verify`],
//! then [`import`](mod@import) (the two-pass commit) and [`export`](mod@export).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod crypt;
mod error;
pub mod export;
pub mod format;
pub mod import;
pub mod merge;
pub mod reader;
pub mod verify;
pub mod want;
pub mod writer;

pub use crypt::{DecryptionKey, RecipientKey};
pub use error::{Error, Result};
pub use export::{ExportReport, ExportSpec, export};
pub use import::{Imported, ImportedRelease, Limits, Pass, Target, import, verify_file};
pub use reader::{BundleReader, Header, Item, Record, read_header};
pub use verify::{Checker, Installed, Policy, ReleaseSummary, Summary};
pub use want::{WantList, WantRelease};
pub use writer::BundleWriter;
