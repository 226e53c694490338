//! meshota's formats and trust.
//!
//! This crate defines every signed document meshota moves — trust roots,
//! release manifests, rollout commands, node reports, origin catalogs — and the key files
//! that sign them, and it holds every rule for trusting one.
//!
//! # What it promises
//! - **One framing.** Every file starts with `MOTA`, a format version and a
//!   kind byte ([`frame`]); payloads are postcard, decoded only in their
//!   canonical encoding, after a size limit ([`limits`]) was checked.
//! - **Typed refusals.** Verification returns a [`Verified`] value or an
//!   [`Error`] naming the broken rule and the values involved. Decoding
//!   hostile bytes never panics.
//! - **Domain-separated ML-DSA-65.** Signatures are FIPS 204 ML-DSA-65 over
//!   the body bytes, with the context string `meshota/v1/<kind>`
//!   ([`signed::context`]), so a signature for one kind of document is
//!   never valid for another.
//! - **Sans-IO.** No clock, no RNG, no file access in the core: time comes
//!   in through [`Expiration`], randomness through seeds and nonces the
//!   caller passes. File helpers live in [`fs`] behind the `std` feature.
//!
//! # What it does not do
//! It does not keep state between verifications: the caller stores the
//! latest trust root and installed security versions, and passes them in.
//! It does not chunk images (see the blobstore crate).
//!
//! # Where to start reading
//! [`trust`] (who may sign what), then [`release`] (what a release is and
//! [`Verified::<TrustRoot>::verify_manifest`]), then [`signed`] (how
//! envelopes are decoded and counted).
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

pub mod catalog;
mod error;
pub mod frame;
#[cfg(feature = "std")]
pub mod fs;
mod hash;
pub mod keys;
pub mod limits;
pub mod release;
pub mod report;
pub mod rollout;
pub mod signed;
mod time;
pub mod trust;

pub use catalog::{Catalog, CatalogEntry};
pub use error::{Error, Role};
pub use frame::Kind;
pub use hash::{ChunkingAlgorithm, ChunkingParams, Hash, ParseHashError};
pub use keys::{KdfParams, KeyId, Protection, PublicKey, SecretKey};
pub use release::{
    Component, InstallPolicy, PatchRef, ReleaseManifest, RolloutPolicy, RolloutStage,
};
pub use report::{InstallOutcome, NodeReport, SlotState};
pub use rollout::{RolloutAction, RolloutCommand};
pub use signed::{Document, SignedDocument, Verified};
pub use time::{Expiration, UnixTime};
pub use trust::{ProvisioningKey, ReleaseKey, RootKey, Scope, TrustRoot};
