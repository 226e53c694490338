//! Property tests: hostile bytes never panic a decoder; no byte of a signed
//! manifest can change without verification failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use meshota_manifest::{
    Catalog, CatalogEntry, Expiration, Hash, NodeReport, ReleaseManifest, RolloutCommand,
    SecretKey, SignedDocument, TrustRoot, UnixTime, keys::decode_public_key_file,
};
use proptest::prelude::*;

fn decode_everything(bytes: &[u8]) {
    let _ = SignedDocument::<ReleaseManifest>::decode(bytes);
    let _ = SignedDocument::<TrustRoot>::decode(bytes);
    let _ = SignedDocument::<RolloutCommand>::decode(bytes);
    let _ = SignedDocument::<NodeReport>::decode(bytes);
    let _ = SignedDocument::<Catalog>::decode(bytes);
    let _ = decode_public_key_file(bytes);
    let _ = SecretKey::from_secret_key_file(bytes, |_| None);
}

fn with_header(kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = b"MOTA\x01".to_vec();
    v.push(kind);
    v.extend_from_slice(rest);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_everything(&bytes);
    }

    #[test]
    fn decoding_random_payloads_behind_a_valid_header_never_panics(
        kind in prop_oneof![Just(1u8), Just(2), Just(3), Just(4), Just(5), Just(16), Just(17)],
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        decode_everything(&with_header(kind, &bytes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutating_a_valid_manifest_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let w = World::new();
        let mut bytes = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]])
            .encode()
            .unwrap();
        for (pos, val) in edits {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        if let Ok(doc) = SignedDocument::<ReleaseManifest>::decode(&bytes) {
            let _ = w.trust.verify_manifest(&doc, &policy("rpi4", None));
        }
    }
}

/// Every single-byte change, at every position of a signed manifest, with
/// several different masks per position, makes decoding or verification
/// fail. Exhaustive over positions, not sampled.
#[test]
fn flipping_any_single_byte_of_a_signed_manifest_fails_verification() {
    let w = World::new();
    let bytes = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]])
        .encode()
        .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..bytes.len() {
        for round in 0..3 {
            // xorshift: a seeded, non-zero mask per (position, round).
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mask = match round {
                0 => 0x01,
                1 => 0x80,
                _ => (state as u8) | 1,
            };
            let mut tampered = bytes.clone();
            tampered[i] ^= mask;
            let accepted = SignedDocument::<ReleaseManifest>::decode(&tampered)
                .and_then(|doc| w.trust.verify_manifest(&doc, &policy("rpi4", None)))
                .is_ok();
            assert!(!accepted, "byte {i} xor {mask:#04x} was accepted");
        }
    }
}

/// The same for a signed origin catalog: no byte of it can change and
/// still verify (so a mirror cannot edit the sequence or the list).
#[test]
fn flipping_any_single_byte_of_a_signed_catalog_fails_verification() {
    let w = World::new();
    let body = Catalog {
        sequence: 7,
        issued: UnixTime(1_000),
        expires: None,
        releases: vec![CatalogEntry {
            release: Hash::of(b"release"),
            hardware: "rpi4".into(),
            channel: "stable".into(),
            version: "1.0.0".into(),
            security_version: 5,
            manifest_size: 9_000,
        }],
    };
    let bytes = SignedDocument::sign(body, &[&w.releases[0]])
        .unwrap()
        .encode()
        .unwrap();
    let ignore = Expiration::dangerous_ignore();
    assert!(
        w.trust
            .verify_catalog(&SignedDocument::decode(&bytes).unwrap(), None, ignore)
            .is_ok()
    );
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[i] ^= mask;
            let accepted = SignedDocument::<Catalog>::decode(&tampered)
                .and_then(|doc| w.trust.verify_catalog(&doc, None, ignore))
                .is_ok();
            assert!(!accepted, "byte {i} xor {mask:#04x} was accepted");
        }
    }
}

/// The same for a signed trust root, against its own root keys.
#[test]
fn flipping_any_single_byte_of_a_trust_root_fails_verification() {
    let w = World::new();
    let bytes = w.trust_doc.encode().unwrap();
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        let accepted = SignedDocument::<TrustRoot>::decode(&tampered)
            .and_then(|doc| TrustRoot::verify_initial(&doc, enforce()))
            .is_ok_and(|v| v.root_keys == w.trust.root_keys);
        assert!(!accepted, "byte {i} was accepted");
    }
}
