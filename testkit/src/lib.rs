//! Fixtures shared by the workspace's tests (a dev-dependency only; never
//! part of a shipped binary).
//!
//! Start with [`dev_trust`]: a trust root with one root key and one
//! unrestricted release key, both derived from a seed, so every test that
//! needs "a fleet's keys" gets the same ones without repeating the trust
//! root's construction. [`image`] gives deterministic incompressible
//! bytes for test images.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshota_manifest::{
    Expiration, ReleaseKey, RootKey, Scope, SecretKey, SignedDocument, TrustRoot, Verified,
};

/// A dev trust root and its keys. Invariant: `trust` is `doc` verified as
/// an initial trust root, `root` signed `doc`, and `release` is its one
/// release key (any hardware, any channel, no expiry).
pub struct DevTrust {
    /// The root key (threshold 1).
    pub root: SecretKey,
    /// The release key.
    pub release: SecretKey,
    /// The signed trust root.
    pub doc: SignedDocument<TrustRoot>,
    /// The same, verified.
    pub trust: Verified<TrustRoot>,
}

/// The dev trust root of `seed`: root key from `[seed; 32]`, release key
/// from `[seed + 1; 32]` (wrapping), version 1, no expiry.
///
/// # Panics
/// Never for any seed (key derivation and signing of this fixed shape
/// cannot fail); a panic here is a bug in the manifest crate.
#[must_use]
pub fn dev_trust(seed: u8) -> DevTrust {
    let root = SecretKey::from_seed([seed; 32], "root").unwrap();
    let release = SecretKey::from_seed([seed.wrapping_add(1); 32], "release").unwrap();
    let body = TrustRoot::with_one_key_each(
        RootKey {
            name: "root".into(),
            key: root.public().clone(),
        },
        ReleaseKey {
            name: "release".into(),
            key: release.public().clone(),
            scope: Scope::default(),
            expires: None,
        },
    );
    let doc = SignedDocument::sign(body, &[&root]).unwrap();
    let trust = TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).unwrap();
    DevTrust {
        root,
        release,
        doc,
        trust,
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed | 1`,
/// the top byte of each state): incompressible test images, the same for
/// the same arguments.
#[must_use]
pub fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The whole HTTP/1.1 response (status line, headers, body) of `GET
/// /metrics` from a daemon's metrics address, read until the daemon
/// closes the connection (at most 10 s per read).
///
/// # Panics
/// When the address does not answer or the status is not 200 OK (a test
/// failure).
#[must_use]
pub fn get_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    body
}
