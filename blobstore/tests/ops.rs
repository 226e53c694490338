//! The CLI-facing entry points (`ops`), chunking parameter checks and delta
//! planning, end to end on files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshota_blobstore::ops::{
    delta_plan_image, delta_plan_index, store_gc, store_ingest, store_ls, store_verify,
};
use meshota_blobstore::{
    ChunkStore, DEFAULT_PARAMS, Error, FsStore, MemStore, check_params, ingest, plan_delta,
};
use meshota_manifest::{ChunkingParams, Hash};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn store_ingest_creates_the_store_pins_the_image_and_survives_gc() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    std::fs::write(&img, noise(1, 1_000_000)).unwrap();
    let store = d.path().join("store");
    let mut calls = 0;
    let r = store_ingest(&store, &img, &DEFAULT_PARAMS, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert!(calls >= 1);
    assert_eq!(r.index.total_size(), 1_000_000);
    let gc = store_gc(&store).unwrap();
    assert_eq!(gc.chunks_removed, 0);
    let ls = store_ls(&store).unwrap();
    assert_eq!(ls.stats.chunks, r.new_chunks);
    assert_eq!(ls.pins, vec![(r.index_id, r.index_id)]);
    assert!(store_verify(&store).unwrap().is_clean());
}

#[test]
fn store_commands_refuse_a_directory_that_is_not_a_store() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notes.txt"), b"hello").unwrap();
    for r in [
        store_ls(d.path()).err(),
        store_verify(d.path()).err(),
        store_gc(d.path()).err(),
    ] {
        assert!(matches!(r, Some(Error::NotAStore { .. })), "{r:?}");
    }
    let img = d.path().join("notes.txt");
    assert!(matches!(
        store_ingest(d.path(), &img, &DEFAULT_PARAMS, &mut |_, _| {}),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn delta_plan_fetches_only_what_the_old_image_lacks() {
    let d = tempfile::tempdir().unwrap();
    let old = noise(2, 2_000_000);
    let mut new = old.clone();
    new[1_000_000..1_000_100].copy_from_slice(&[0u8; 100]);
    new.extend_from_slice(&noise(3, 300_000));
    let (po, pn) = (d.path().join("old"), d.path().join("new"));
    std::fs::write(&po, &old).unwrap();
    std::fs::write(&pn, &new).unwrap();
    let plan = delta_plan_image(std::slice::from_ref(&po), &pn, None, &DEFAULT_PARAMS).unwrap();
    assert!(plan.fetch_bytes < plan.full_bytes / 4, "{plan:?}");
    assert!(
        plan.fetch_bytes >= 300_000,
        "appended noise must be fetched: {plan:?}"
    );
    assert_eq!(plan.target_size, new.len() as u64);
    let json = plan.to_json();
    for field in [
        "\"fetch_bytes\":",
        "\"full_bytes\":",
        "\"chunks_to_fetch\":",
    ] {
        assert!(json.contains(field), "{json}");
    }
    let from_nothing = delta_plan_image(&[], &pn, None, &DEFAULT_PARAMS).unwrap();
    assert_eq!(from_nothing.fetch_bytes, from_nothing.full_bytes);
    assert_eq!(from_nothing.full_bytes, plan.full_bytes);
}

#[test]
fn delta_plan_by_index_id_uses_the_origin_store_sizes() {
    let d = tempfile::tempdir().unwrap();
    let (po, pn) = (d.path().join("old"), d.path().join("new"));
    let old = noise(4, 500_000);
    let mut new = old.clone();
    new.extend_from_slice(&noise(5, 100_000));
    std::fs::write(&po, &old).unwrap();
    std::fs::write(&pn, &new).unwrap();
    let store = d.path().join("origin");
    let r = store_ingest(&store, &pn, &DEFAULT_PARAMS, &mut |_, _| {}).unwrap();
    let plan = delta_plan_index(&[po], &r.index_id, &store).unwrap();
    let by_image = delta_plan_image(&[d.path().join("old")], &pn, None, &DEFAULT_PARAMS).unwrap();
    assert_eq!(plan, by_image);
}

#[test]
fn plan_counts_chunks_in_the_local_store_as_present() {
    let origin = MemStore::new();
    let local = MemStore::new();
    let img = noise(6, 400_000);
    let r = ingest(&origin, img.as_slice(), &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let first = r.index.chunks()[0];
    local
        .put(first.hash, &origin.get(&first.hash).unwrap())
        .unwrap();
    let plan = plan_delta(&[&local], &origin, &r.index).unwrap();
    assert_eq!(plan.chunks_to_fetch.len() + 1, plan.target_chunks as usize);
    assert!(!plan.chunks_to_fetch.iter().any(|c| c.hash == first.hash));
}

#[test]
fn chunking_params_outside_fastcdc_bounds_are_refused_not_panicked_on() {
    let base = DEFAULT_PARAMS;
    let cases = [
        ChunkingParams {
            min_size: 64,
            avg_size: 128,
            max_size: 4096,
            ..base
        },
        ChunkingParams {
            min_size: 4097,
            avg_size: 16384,
            max_size: 65536,
            ..base
        },
        ChunkingParams {
            min_size: 64,
            avg_size: 256,
            max_size: 512,
            ..base
        },
        ChunkingParams {
            min_size: 8192,
            avg_size: 4096,
            max_size: 65536,
            ..base
        },
    ];
    for p in cases {
        assert!(
            matches!(check_params(&p), Err(Error::InvalidChunkingParams { .. })),
            "{p:?}"
        );
        assert!(ingest(&MemStore::new(), &b"abc"[..], &p, &mut |_| {}).is_err());
    }
    assert!(check_params(&DEFAULT_PARAMS).is_ok());
}

#[test]
fn an_empty_image_has_an_empty_index_and_assembles_to_nothing() {
    let s = MemStore::new();
    let r = ingest(&s, &b""[..], &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    assert!(r.index.chunks().is_empty());
    assert_eq!(r.index.image_hash(), Hash::of(b""));
    let mut out = Vec::new();
    meshota_blobstore::assemble(&s, &r.index, &mut out, &mut |_| {}).unwrap();
    assert!(out.is_empty());
}

#[test]
fn a_second_process_cannot_open_a_store_in_use() {
    let d = tempfile::tempdir().unwrap();
    let _a = FsStore::open_or_create(d.path()).unwrap();
    match FsStore::open(d.path()) {
        Err(Error::StoreInUse { path }) => assert_eq!(path, d.path()),
        other => panic!("{:?}", other.err()),
    }
}
