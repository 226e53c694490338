//! Test fixtures for the gateway: keys and a trust root, releases ingested
//! into a store, and a real nginx serving an origin directory on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::{Path, PathBuf};

pub mod nginx;
pub mod process;
#[allow(unused_imports)]
pub use nginx::Nginx;

use meshota_blobstore::patch::{PatchOptions, create_patch};
use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, IngestReport, ingest};
use meshota_manifest::{
    Component, Hash, PatchRef, ReleaseManifest, RolloutPolicy, SignedDocument, UnixTime,
};

/// A dev trust root with one root key and one unrestricted release key.
pub use meshota_testkit::DevTrust as Keys;

/// The dev trust root of seed 1 (root key `[1; 32]`, release key `[2; 32]`).
pub fn keys() -> Keys {
    meshota_testkit::dev_trust(1)
}

/// Deterministic pseudo-random bytes (xorshift), `len` long.
pub fn image(len: usize, seed: u64) -> Vec<u8> {
    meshota_testkit::image(len, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The manifest body of `img` (ingested as `report`) as `version`.
fn body(
    img: &[u8],
    report: &IngestReport,
    version: &str,
    sv: u64,
    patches: Vec<PatchRef>,
) -> ReleaseManifest {
    ReleaseManifest {
        product: "sensor".into(),
        hardware: "rpi4".into(),
        channel: "stable".into(),
        version: version.into(),
        security_version: sv,
        created: UnixTime(1_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: img.len() as u64,
            image_hash: report.index.image_hash(),
            chunk_index: report.index_id,
            chunking: DEFAULT_PARAMS,
        }],
        patches,
        rollout: RolloutPolicy::default(),
    }
}

/// Ingests `img` into `store`, pins it, and returns the signed manifest's
/// encoding for `version`.
pub fn release(store: &FsStore, keys: &Keys, img: &[u8], version: &str, sv: u64) -> Vec<u8> {
    let report = ingest(store, img, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let doc =
        SignedDocument::sign(body(img, &report, version, sv, vec![]), &[&keys.release]).unwrap();
    store.pin(doc.id(), report.index_id).unwrap();
    doc.encode().unwrap()
}

/// Ingests `base` and `img` into `store` and returns the signed manifest
/// of `img` as `version`, listing a patch from `base` (blobs stored and
/// pinned under the release as `release create` does), and the patch id.
pub fn release_with_patch(
    store: &FsStore,
    keys: &Keys,
    base: &[u8],
    img: &[u8],
    version: &str,
    sv: u64,
) -> (Vec<u8>, Hash) {
    let b = ingest(store, base, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let report = ingest(store, img, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let build = create_patch(
        store,
        base,
        &b.index,
        img,
        &report.index,
        &PatchOptions::default(),
    )
    .unwrap()
    .expect("a patch beats the chunks");
    let patch = PatchRef {
        component: "rootfs".into(),
        base_image_hash: b.index.image_hash(),
        patch: build.id,
        size: build.encoded.len() as u64,
    };
    let doc = SignedDocument::sign(
        body(img, &report, version, sv, vec![patch]),
        &[&keys.release],
    )
    .unwrap();
    store.pin(doc.id(), report.index_id).unwrap();
    let pin = store.put_index(&build.pin).unwrap();
    store.pin(doc.id(), pin).unwrap();
    (doc.encode().unwrap(), build.id)
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}
