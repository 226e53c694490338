//! One test per verification rule: each builds a document that breaks
//! exactly one rule and checks that rule's typed error comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use meshota_manifest::{
    Error, Expiration, Kind, Role, Scope, SignedDocument, TrustRoot, UnixTime, frame,
    limits::MAX_MANIFEST_BYTES,
};

fn encoded_manifest(world: &World) -> Vec<u8> {
    sign_manifest(manifest_body("rpi4", "stable", 5), &[&world.releases[0]])
        .encode()
        .unwrap()
}

fn verify_bytes(world: &World, bytes: &[u8]) -> Result<(), Error> {
    let doc = SignedDocument::decode(bytes)?;
    world
        .trust
        .verify_manifest(&doc, &policy("rpi4", Some(4)))?;
    Ok(())
}

#[test]
fn accepts_manifest_signed_by_trusted_release_key() {
    let w = World::new();
    let bytes = encoded_manifest(&w);
    let doc = SignedDocument::decode(&bytes).unwrap();
    let v = w
        .trust
        .verify_manifest(&doc, &policy("rpi4", Some(4)))
        .unwrap();
    assert_eq!(v.security_version, 5);
    assert_eq!(v.id(), doc.id());
    // Re-encoding a verified manifest yields the same bytes.
    assert_eq!(v.encode().unwrap(), bytes);
}

#[test]
fn rejects_bad_magic() {
    let w = World::new();
    let mut bytes = encoded_manifest(&w);
    bytes[0] = b'X';
    assert!(
        matches!(verify_bytes(&w, &bytes), Err(Error::BadMagic { found }) if &found == b"XOTA")
    );
}

#[test]
fn rejects_unsupported_format_version() {
    let w = World::new();
    let mut bytes = encoded_manifest(&w);
    bytes[4] = 9;
    assert_eq!(
        verify_bytes(&w, &bytes),
        Err(Error::UnsupportedFormatVersion {
            found: 9,
            supported: 1
        })
    );
}

#[test]
fn rejects_trust_root_given_as_manifest() {
    let w = World::new();
    let bytes = w.trust_doc.encode().unwrap();
    assert_eq!(
        verify_bytes(&w, &bytes),
        Err(Error::WrongKind {
            expected: Kind::ReleaseManifest,
            found: Kind::TrustRoot as u8
        })
    );
}

#[test]
fn rejects_truncated_manifest_at_every_length() {
    let w = World::new();
    let bytes = encoded_manifest(&w);
    for len in 0..bytes.len() {
        let err = verify_bytes(&w, &bytes[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. } | Error::Malformed { .. }),
            "length {len}: {err:?}"
        );
    }
    assert!(matches!(
        verify_bytes(&w, &bytes[..bytes.len() - 1]),
        Err(Error::Truncated {
            kind: Kind::ReleaseManifest
        })
    ));
}

#[test]
fn rejects_oversize_manifest_before_decoding() {
    let w = World::new();
    let mut bytes = encoded_manifest(&w);
    bytes.resize(MAX_MANIFEST_BYTES + 1, 0);
    assert_eq!(
        verify_bytes(&w, &bytes),
        Err(Error::Oversize {
            kind: Kind::ReleaseManifest,
            len: MAX_MANIFEST_BYTES + 1,
            max: MAX_MANIFEST_BYTES
        })
    );
}

#[test]
fn rejects_bytes_after_the_document() {
    let w = World::new();
    let mut bytes = encoded_manifest(&w);
    bytes.push(0);
    assert!(matches!(
        verify_bytes(&w, &bytes),
        Err(Error::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn rejects_manifest_signed_by_unknown_key() {
    let w = World::new();
    let stranger = key(99, "stranger");
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&stranger]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::UnknownKey {
            key: stranger.id(),
            role: Role::Release,
            trust_version: 1
        })
    );
}

#[test]
fn rejects_manifest_signed_by_root_key_instead_of_release_key() {
    let w = World::new();
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.roots[0]]);
    assert!(matches!(
        w.trust.verify_manifest(&doc, &policy("rpi4", None)),
        Err(Error::UnknownKey {
            role: Role::Release,
            ..
        })
    ));
}

#[test]
fn rejects_manifest_with_altered_signature() {
    let w = World::new();
    let mut doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    doc.signatures_mut()[0].signature[100] ^= 0x01;
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::InvalidSignature {
            key: w.releases[0].id()
        })
    );
}

#[test]
fn rejects_signature_made_for_another_document_kind() {
    // Domain separation: a release key's signature over the same bytes with
    // the rollout-command context does not verify as a manifest signature.
    let w = World::new();
    let mut doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    let other_ctx = meshota_manifest::signed::context(Kind::RolloutCommand);
    let sig = w.releases[0]
        .sign(doc.body_bytes(), other_ctx.as_bytes())
        .unwrap();
    doc.signatures_mut()[0].signature = sig;
    assert!(matches!(
        w.trust.verify_manifest(&doc, &policy("rpi4", None)),
        Err(Error::InvalidSignature { .. })
    ));
}

#[test]
fn counts_duplicate_signatures_by_one_key_once() {
    let w = World::with(|t| t.release_threshold = 2);
    let k = &w.releases[0];
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[k, k, k]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::ThresholdNotMet {
            role: Role::Release,
            valid: 1,
            threshold: 2
        })
    );
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[k, &w.releases[1]]);
    assert!(w.trust.verify_manifest(&doc, &policy("rpi4", None)).is_ok());
}

#[test]
fn rejects_manifest_below_release_threshold() {
    let w = World::with(|t| t.release_threshold = 2);
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[1]]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::ThresholdNotMet {
            role: Role::Release,
            valid: 1,
            threshold: 2
        })
    );
}

#[test]
fn rejects_key_whose_scope_does_not_cover_the_hardware_class() {
    let w = World::new();
    let scoped = &w.releases[2]; // rpi4 / beta only
    let doc = sign_manifest(manifest_body("imx8", "beta", 5), &[scoped]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("imx8", None))
            .map(|_| ()),
        Err(Error::KeyOutOfScope {
            key: scoped.id(),
            hardware: "imx8".into(),
            channel: "beta".into()
        })
    );
}

#[test]
fn rejects_key_whose_scope_does_not_cover_the_channel() {
    let w = World::new();
    let scoped = &w.releases[2];
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[scoped]);
    assert!(matches!(
        w.trust.verify_manifest(&doc, &policy("rpi4", None)),
        Err(Error::KeyOutOfScope { .. })
    ));
    let doc = sign_manifest(manifest_body("rpi4", "beta", 5), &[scoped]);
    assert!(w.trust.verify_manifest(&doc, &policy("rpi4", None)).is_ok());
}

#[test]
fn rejects_manifest_for_another_hardware_class() {
    let w = World::new();
    let doc = sign_manifest(manifest_body("imx8", "stable", 5), &[&w.releases[0]]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::WrongHardware {
            expected: "rpi4".into(),
            found: "imx8".into()
        })
    );
}

#[test]
fn rejects_security_version_not_above_installed() {
    let w = World::new();
    for offered in [3, 5] {
        let doc = sign_manifest(manifest_body("rpi4", "stable", offered), &[&w.releases[0]]);
        assert_eq!(
            w.trust
                .verify_manifest(&doc, &policy("rpi4", Some(5)))
                .map(|_| ()),
            Err(Error::Rollback {
                installed: 5,
                offered
            })
        );
    }
    let doc = sign_manifest(manifest_body("rpi4", "stable", 6), &[&w.releases[0]]);
    assert!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", Some(5)))
            .is_ok()
    );
}

#[test]
fn rejects_manifest_under_expired_trust_root() {
    let w = World::with(|t| t.expires = Some(UnixTime(NOW.0 + 10)));
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    let later = Expiration::Enforce {
        now: UnixTime(NOW.0 + 10),
    };
    let mut p = policy("rpi4", None);
    p.expiration = later;
    assert_eq!(
        w.trust.verify_manifest(&doc, &p).map(|_| ()),
        Err(Error::ExpiredTrustRoot {
            version: 1,
            expires: UnixTime(NOW.0 + 10),
            now: UnixTime(NOW.0 + 10)
        })
    );
    // A node without any clock can only opt out explicitly.
    p.expiration = Expiration::dangerous_ignore();
    assert!(w.trust.verify_manifest(&doc, &p).is_ok());
}

#[test]
fn rejects_manifest_signed_by_expired_release_key() {
    let w = World::with(|t| t.release_keys[0].expires = Some(UnixTime(NOW.0 - 1)));
    let doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    assert_eq!(
        w.trust
            .verify_manifest(&doc, &policy("rpi4", None))
            .map(|_| ()),
        Err(Error::KeyExpired {
            key: w.releases[0].id(),
            expired_at: UnixTime(NOW.0 - 1),
            now: NOW
        })
    );
}

#[test]
fn rejects_document_with_wrong_signature_length() {
    let w = World::new();
    let mut doc = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    doc.signatures_mut()[0].signature.pop();
    let bytes = doc.encode().unwrap();
    assert!(matches!(
        SignedDocument::<meshota_manifest::ReleaseManifest>::decode(&bytes),
        Err(Error::InvalidField {
            field: "signature",
            ..
        })
    ));
}

#[test]
fn rejects_manifest_with_invalid_semver() {
    let w = World::new();
    let mut body = manifest_body("rpi4", "stable", 5);
    body.version = "one point two".into();
    assert!(matches!(
        SignedDocument::sign(body, &[&w.releases[0]]),
        Err(Error::InvalidField {
            field: "version",
            ..
        })
    ));
}

#[test]
fn frame_peek_kind_names_the_file_kind() {
    let w = World::new();
    assert_eq!(
        frame::peek_kind(&w.trust_doc.encode().unwrap()),
        Ok(Kind::TrustRoot as u8)
    );
}

// ---------------------------------------------------------------- trust roots

#[test]
fn rejects_trust_root_below_its_own_threshold() {
    let roots = [key(1, "r1"), key(2, "r2"), key(3, "r3")];
    let body = root_body(&roots, 2, vec![]);
    let doc = SignedDocument::sign(body, &[&roots[0]]).unwrap();
    assert_eq!(
        TrustRoot::verify_initial(&doc, enforce()).map(|_| ()),
        Err(Error::ThresholdNotMet {
            role: Role::Root,
            valid: 1,
            threshold: 2
        })
    );
}

#[test]
fn rejects_expired_trust_root() {
    let roots = [key(1, "r1")];
    let mut body = root_body(&roots, 1, vec![]);
    body.expires = Some(UnixTime(NOW.0 - 1));
    let doc = SignedDocument::sign(body, &[&roots[0]]).unwrap();
    assert!(matches!(
        TrustRoot::verify_initial(&doc, enforce()),
        Err(Error::ExpiredTrustRoot { version: 1, .. })
    ));
}

fn next_version(w: &World, edit: impl FnOnce(&mut TrustRoot)) -> TrustRoot {
    let mut next = w.trust.body().clone();
    next.version += 1;
    edit(&mut next);
    next
}

#[test]
fn accepts_rotation_signed_by_previous_and_new_thresholds() {
    let w = World::new();
    let new_root = key(4, "root-4");
    let next = next_version(&w, |t| {
        // Replace root-3 by root-4.
        t.root_keys.pop();
        t.root_keys.push(
            common::root_body(std::slice::from_ref(&new_root), 1, vec![]).root_keys[0].clone(),
        );
        t.revoked.push(w.roots[2].id());
    });
    let doc = SignedDocument::sign(next, &[&w.roots[0], &w.roots[1]]).unwrap();
    let v2 = w.trust.verify_rotation(&doc, enforce()).unwrap();
    assert_eq!(v2.version, 2);
}

#[test]
fn rejects_rotation_not_signed_by_previous_threshold() {
    let w = World::new();
    let a = key(4, "new-a");
    let b = key(5, "new-b");
    // Version 2 replaces every root key; only the new keys sign it.
    let mut next = root_body(&[a, b], 2, w.trust.release_keys.clone());
    next.version = 2;
    let (a, b) = (key(4, "new-a"), key(5, "new-b"));
    let doc = SignedDocument::sign(next.clone(), &[&a, &b, &w.roots[0]]).unwrap();
    assert_eq!(
        w.trust.verify_rotation(&doc, enforce()).map(|_| ()),
        Err(Error::RotationNotSigned {
            from_version: 1,
            to_version: 2,
            signed_by: "previous",
            valid: 1,
            threshold: 2
        })
    );
    // With the old threshold too, it is accepted.
    let doc = SignedDocument::sign(next, &[&a, &b, &w.roots[0], &w.roots[1]]).unwrap();
    assert!(w.trust.verify_rotation(&doc, enforce()).is_ok());
}

#[test]
fn rejects_rotation_not_signed_by_its_own_threshold() {
    let w = World::new();
    let a = key(4, "new-a");
    let b = key(5, "new-b");
    let mut next = root_body(&[a, b], 2, vec![]);
    next.version = 2;
    let a = key(4, "new-a");
    let doc = SignedDocument::sign(next, &[&w.roots[0], &w.roots[1], &a]).unwrap();
    assert!(matches!(
        w.trust.verify_rotation(&doc, enforce()),
        Err(Error::RotationNotSigned {
            signed_by: "new",
            valid: 1,
            threshold: 2,
            ..
        })
    ));
}

#[test]
fn rejects_replayed_or_skipping_trust_root_version() {
    let w = World::new();
    // Replay of version 1.
    assert_eq!(
        w.trust.verify_rotation(&w.trust_doc, enforce()).map(|_| ()),
        Err(Error::TrustRootVersion {
            current: 1,
            offered: 1
        })
    );
    // Skip to version 3.
    let next = next_version(&w, |t| t.version = 3);
    let doc = SignedDocument::sign(next, &[&w.roots[0], &w.roots[1]]).unwrap();
    assert_eq!(
        w.trust.verify_rotation(&doc, enforce()).map(|_| ()),
        Err(Error::TrustRootVersion {
            current: 1,
            offered: 3
        })
    );
}

#[test]
fn rejects_manifest_signed_by_revoked_key() {
    let w = World::new();
    // Version 2 removes release key 10 and revokes it.
    let next = next_version(&w, |t| {
        t.release_keys.remove(0);
        t.revoked.push(w.releases[0].id());
    });
    let doc = SignedDocument::sign(next, &[&w.roots[0], &w.roots[1]]).unwrap();
    let v2 = w.trust.verify_rotation(&doc, enforce()).unwrap();
    let m = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[0]]);
    // Accepted under version 1 ...
    assert!(w.trust.verify_manifest(&m, &policy("rpi4", None)).is_ok());
    // ... rejected once the node has seen version 2.
    assert_eq!(
        v2.verify_manifest(&m, &policy("rpi4", None)).map(|_| ()),
        Err(Error::RevokedKey {
            key: w.releases[0].id(),
            trust_version: 2
        })
    );
    // Keys that version 2 kept still sign.
    let m = sign_manifest(manifest_body("rpi4", "stable", 5), &[&w.releases[1]]);
    assert!(v2.verify_manifest(&m, &policy("rpi4", None)).is_ok());
}

#[test]
fn rejects_trust_root_that_lists_a_revoked_key() {
    let w = World::new();
    let next = next_version(&w, |t| t.revoked.push(w.releases[1].id()));
    assert!(matches!(
        SignedDocument::sign(next, &[&w.roots[0], &w.roots[1]]),
        Err(Error::InvalidField {
            field: "revoked keys",
            ..
        })
    ));
}

#[test]
fn rejects_rotation_signed_only_by_revoked_root_keys() {
    let w = World::new();
    // v2 revokes root-1 and root-2 and keeps root-3 alone (threshold 1).
    let v2_body = next_version(&w, |t| {
        t.root_keys.drain(..2);
        t.root_threshold = 1;
        t.revoked.push(w.roots[0].id());
        t.revoked.push(w.roots[1].id());
    });
    let doc2 = SignedDocument::sign(v2_body, &[&w.roots[0], &w.roots[1], &w.roots[2]]).unwrap();
    let v2 = w.trust.verify_rotation(&doc2, enforce()).unwrap();
    // An attacker holding the revoked keys signs a v3 that brings them back.
    let mut v3_body = w.trust.body().clone();
    v3_body.version = 3;
    let doc3 = SignedDocument::sign(v3_body, &[&w.roots[0], &w.roots[1]]).unwrap();
    assert!(matches!(
        v2.verify_rotation(&doc3, enforce()),
        Err(Error::RevokedKey {
            trust_version: 2,
            ..
        })
    ));
}

#[test]
fn rejects_invalid_thresholds_in_trust_root() {
    let roots = [key(1, "r1")];
    for t in [0u32, 2] {
        let body = root_body(&roots, t, vec![]);
        assert!(matches!(
            SignedDocument::sign(body, &[&roots[0]]),
            Err(Error::InvalidField {
                field: "root threshold",
                ..
            })
        ));
    }
}

#[test]
fn scope_with_empty_lists_covers_everything() {
    let s = Scope::default();
    assert!(s.covers("anything", "any"));
    let s = Scope {
        hardware: vec!["a".into()],
        channels: vec![],
    };
    assert!(s.covers("a", "x"));
    assert!(!s.covers("b", "x"));
}
