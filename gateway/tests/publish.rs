//! `publish`: the static origin layout, written atomically, idempotent and
//! incremental, with a signed catalog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{files, image, keys, release};
use meshota_blobstore::FsStore;
use meshota_gateway::Error;
use meshota_gateway::origin::{layout, publish};
use meshota_manifest::{Catalog, Expiration, Hash, SecretKey, SignedDocument, UnixTime};

const NOW: UnixTime = UnixTime(2_000);

#[test]
fn publish_writes_objects_that_hash_to_their_names_and_a_catalog_the_trust_root_accepts() {
    let d = tempfile::tempdir().unwrap();
    let store = FsStore::open_or_create(&d.path().join("store")).unwrap();
    let k = keys();
    let m = release(&store, &k, &image(300_000, 1), "1.0.0", 1);
    let origin = d.path().join("origin");
    let r = publish(
        &store,
        &m,
        &k.trust,
        &k.release,
        &origin,
        NOW,
        Expiration::dangerous_ignore(),
    )
    .unwrap();
    assert!(r.catalog_written);
    assert_eq!(r.catalog_sequence, 1);
    assert_eq!(r.objects_present, 0);

    let listed = files(&origin);
    let chunks: Vec<_> = listed.iter().filter(|p| p.starts_with("chunks")).collect();
    assert!(chunks.len() > 5, "{listed:?}");
    assert_eq!(
        r.objects_written as usize,
        chunks.len() + 2,
        "chunks + index + manifest"
    );
    for p in listed
        .iter()
        .filter(|p| p.starts_with("chunks") || p.starts_with("indexes"))
    {
        let name = p.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(origin.join(p)).unwrap();
        assert_eq!(Hash::of(&bytes).to_hex(), name, "{p:?}");
    }
    let id = SignedDocument::<meshota_manifest::ReleaseManifest>::decode(&m)
        .unwrap()
        .id();
    assert_eq!(
        std::fs::read(origin.join(layout::manifest(&id))).unwrap(),
        m
    );
    let cat =
        SignedDocument::<Catalog>::decode(&std::fs::read(origin.join(layout::CATALOG)).unwrap())
            .unwrap();
    let v = k
        .trust
        .verify_catalog(&cat, None, Expiration::dangerous_ignore())
        .unwrap();
    assert_eq!(v.body().releases.len(), 1);
    assert_eq!(v.body().releases[0].release, id);
    assert_eq!(v.body().releases[0].manifest_size, m.len() as u64);
    // No temporary file is left behind.
    assert!(
        listed
            .iter()
            .all(|p| !p.to_string_lossy().contains(".tmp-")),
        "{listed:?}"
    );
}

#[test]
fn publishing_the_same_release_twice_writes_nothing_and_keeps_the_catalog() {
    let d = tempfile::tempdir().unwrap();
    let store = FsStore::open_or_create(&d.path().join("store")).unwrap();
    let k = keys();
    let m = release(&store, &k, &image(200_000, 2), "1.0.0", 1);
    let origin = d.path().join("origin");
    let ign = Expiration::dangerous_ignore();
    let first = publish(&store, &m, &k.trust, &k.release, &origin, NOW, ign).unwrap();
    let catalog = std::fs::read(origin.join(layout::CATALOG)).unwrap();
    let again = publish(
        &store,
        &m,
        &k.trust,
        &k.release,
        &origin,
        UnixTime(3_000),
        ign,
    )
    .unwrap();
    assert_eq!(again.objects_written, 0);
    assert_eq!(again.objects_present, first.objects_written);
    assert!(!again.catalog_written);
    assert_eq!(again.catalog_sequence, 1);
    assert_eq!(
        std::fs::read(origin.join(layout::CATALOG)).unwrap(),
        catalog
    );
}

#[test]
fn a_second_release_writes_only_its_new_objects_and_raises_the_catalog_sequence() {
    let d = tempfile::tempdir().unwrap();
    let store = FsStore::open_or_create(&d.path().join("store")).unwrap();
    let k = keys();
    let v1 = image(400_000, 3);
    let mut v2 = v1.clone();
    v2[200_000..210_000].copy_from_slice(&image(10_000, 4));
    let m1 = release(&store, &k, &v1, "1.0.0", 1);
    let m2 = release(&store, &k, &v2, "2.0.0", 2);
    let origin = d.path().join("origin");
    let ign = Expiration::dangerous_ignore();
    let r1 = publish(&store, &m1, &k.trust, &k.release, &origin, NOW, ign).unwrap();
    let r2 = publish(&store, &m2, &k.trust, &k.release, &origin, NOW, ign).unwrap();
    assert!(r2.objects_present > 0, "unchanged chunks are shared");
    assert!(r2.objects_written < r1.objects_written / 2, "{r1:?} {r2:?}");
    assert_eq!(r2.catalog_sequence, 2);
    let cat =
        SignedDocument::<Catalog>::decode(&std::fs::read(origin.join(layout::CATALOG)).unwrap())
            .unwrap();
    let versions: Vec<_> = cat
        .unverified_body()
        .releases
        .iter()
        .map(|e| e.version.as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);
}

#[test]
fn publish_refuses_a_catalog_key_the_trust_root_does_not_authorise_and_writes_no_catalog() {
    let d = tempfile::tempdir().unwrap();
    let store = FsStore::open_or_create(&d.path().join("store")).unwrap();
    let k = keys();
    let m = release(&store, &k, &image(100_000, 5), "1.0.0", 1);
    let origin = d.path().join("origin");
    let stranger = SecretKey::from_seed([9; 32], "stranger").unwrap();
    let e = publish(
        &store,
        &m,
        &k.trust,
        &stranger,
        &origin,
        NOW,
        Expiration::dangerous_ignore(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Document {
                source: meshota_manifest::Error::UnknownKey { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!origin.exists(), "nothing is written with a refused key");
}

#[test]
fn publish_names_a_chunk_the_store_lacks() {
    let d = tempfile::tempdir().unwrap();
    let k = keys();
    let full = FsStore::open_or_create(&d.path().join("full")).unwrap();
    let m = release(&full, &k, &image(100_000, 6), "1.0.0", 1);
    let empty = FsStore::open_or_create(&d.path().join("empty")).unwrap();
    let e = publish(
        &empty,
        &m,
        &k.trust,
        &k.release,
        &d.path().join("o"),
        NOW,
        Expiration::dangerous_ignore(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotInStore {
                what: "chunk index",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!d.path().join("o").join(layout::CATALOG).exists());
}
