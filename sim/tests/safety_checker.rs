//! The safety checker refuses what a broken core might install: each
//! attack, one test, through the same function the simulator calls.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::rc::Rc;

use meshota_manifest::Hash;
use meshota_sim::Error;
use meshota_sim::fixture::{Fixture, INSTALLED_SECURITY_VERSION, Published};
use meshota_sim::safety::{Store, check_install};

fn store_of(p: &Published) -> Store {
    let mut s = Store::default();
    s.manifests.insert(p.id, p.manifest.clone());
    s.indexes.insert(Hash::of(&p.index), p.index.clone());
    for (h, d) in &p.chunks {
        s.chunks.insert(*h, Rc::clone(d));
    }
    s
}

fn refused(r: Result<u64, Error>, why: &str) {
    match r {
        Err(Error::UnsafeInstall { reason, .. }) => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[test]
fn the_signed_release_above_the_installed_version_is_accepted() {
    let f = Fixture::new(1, 100_000).unwrap();
    let s = store_of(&f.target);
    let sv = check_install(&f.trust, &s, Some(INSTALLED_SECURITY_VERSION), &f.target.id).unwrap();
    assert_eq!(sv, meshota_sim::fixture::TARGET_SECURITY_VERSION);
}

#[test]
fn a_manifest_signed_by_an_untrusted_key_is_refused() {
    let f = Fixture::new(1, 100_000).unwrap();
    let s = store_of(&f.forged);
    refused(
        check_install(&f.trust, &s, Some(1), &f.forged.id),
        "manifest",
    );
}

#[test]
fn a_replayed_manifest_at_the_installed_security_version_is_refused() {
    let f = Fixture::new(1, 100_000).unwrap();
    let s = store_of(&f.rollback);
    refused(check_install(&f.trust, &s, Some(1), &f.rollback.id), "");
}

#[test]
fn an_image_with_a_corrupt_chunk_is_refused() {
    let f = Fixture::new(1, 100_000).unwrap();
    let mut s = store_of(&f.target);
    let (h, d) = s
        .chunks
        .iter()
        .next()
        .map(|(h, d)| (*h, d.to_vec()))
        .unwrap();
    let mut bad = d;
    bad[0] ^= 1;
    s.chunks.insert(h, Rc::from(bad));
    refused(
        check_install(&f.trust, &s, Some(1), &f.target.id),
        "image hash",
    );
}

#[test]
fn a_release_whose_manifest_was_never_stored_is_refused() {
    let f = Fixture::new(1, 100_000).unwrap();
    let mut s = store_of(&f.target);
    s.manifests.clear();
    refused(
        check_install(&f.trust, &s, Some(1), &f.target.id),
        "never stored",
    );
}
