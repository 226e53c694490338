//! # meshota-provision: a private CA for device identities
//!
//! Factory and field provisioning of meshota devices: an offline root CA,
//! an intermediate CA on the factory station, and one X.509 v3 certificate
//! per device binding its ML-DSA-65 identity key (its node id) to its
//! device id, serial number and hardware class. Everything is signed with
//! ML-DSA-65 under the standard algorithm identifiers (RFC 9881), so
//! standard tools (Python `cryptography` ≥ 50 is tested) verify the chain.
//!
//! ## Promises
//! - Certificates follow one profile ([`cert`]): basic constraints with
//!   path length, key usage, subject and authority key identifiers; device
//!   certificates carry the subjectAltName `urn:meshota:device:<id>`.
//! - A CA signs nothing outside its own validity, and every signature it
//!   makes is in its audit log (fsynced) before the signed object is
//!   handed out ([`ca::Ca`]). CA keys are meshota secret key files: 0600,
//!   optionally passphrase-sealed, exactly like release keys.
//! - A CSR is accepted only when its signature verifies with its own key
//!   (proof of possession, [`csr::verify_csr`]).
//! - [`verify::verify_device`] checks root → intermediate → device at a
//!   given time and against the revocation list (an X.509 CRL) and names
//!   the first rule broken.
//! - A hardware id maps to one stable 10-hex-digit serial ([`serial`]);
//!   the registry gives the same hardware the same device id every time
//!   and refuses serial collisions ([`registry`]).
//! - Bad input is an [`Error`], never a panic; files are written
//!   atomically (temporary file, fsync, rename, directory fsync) and the
//!   registry changes in whole transactions.
//! - Provisioning images ([`image`]) are deterministic squashfs files
//!   signed by a provisioning key of the trust root, with confidential
//!   files sealed to the device's ML-KEM-768 key; [`apply`] installs one
//!   only after every check (signature, hash, device, immutable fields)
//!   passed, atomically.
//!
//! ## What it does not do (yet)
//! No networking: [`fetch_auth`] holds the image server's rules, and the
//! server itself (HTTP, MQTT) is in the `meshota` binary, as is the mesh
//! admission check built on [`verify::verify_device`]. There is no OCSP, no CRL distribution point, and no
//! hardware security module support: CA keys live in files.
//!
//! ## Where to start reading
//! [`cert`] (the certificate profile), then [`ca::Ca`] (signing, audit),
//! [`verify`] (the rules, in order), [`serial`] (the hardware id mapping),
//! [`registry`] and [`batch`]; for images, [`image::signed`] then [`apply`].
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod alg;
pub mod apply;
pub mod batch;
pub mod ca;
pub mod cert;
pub mod csr;
mod error;
pub mod fetch_auth;
pub mod image;
pub mod registry;
pub mod serial;
pub mod verify;

pub use error::{Error, Result};
/// The X.509 types of this crate's API (x509-cert 0.3).
pub use x509_cert;
