//! Test fixtures for the gateway: keys and a trust root, releases ingested
//! into a store, and a real nginx serving an origin directory on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::{Path, PathBuf};

pub mod nginx;
#[allow(unused_imports)]
pub use nginx::Nginx;

use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, ingest};
use meshota_manifest::trust::{ReleaseKey, RootKey, Scope};
use meshota_manifest::{
    Component, Expiration, ReleaseManifest, RolloutPolicy, SecretKey, SignedDocument, TrustRoot,
    UnixTime, Verified,
};

/// A dev trust root with one root key and one unrestricted release key.
pub struct Keys {
    pub root: SecretKey,
    pub release: SecretKey,
    pub trust: Verified<TrustRoot>,
}

pub fn keys() -> Keys {
    let root = SecretKey::from_seed([1; 32], "root").unwrap();
    let release = SecretKey::from_seed([2; 32], "release").unwrap();
    let body = TrustRoot {
        version: 1,
        expires: None,
        root_keys: vec![RootKey {
            name: "root".into(),
            key: root.public().clone(),
        }],
        root_threshold: 1,
        release_keys: vec![ReleaseKey {
            name: "release".into(),
            key: release.public().clone(),
            scope: Scope::default(),
            expires: None,
        }],
        release_threshold: 1,
        revoked: vec![],
        provisioning_keys: vec![],
    };
    let doc = SignedDocument::sign(body, &[&root]).unwrap();
    let trust = TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).unwrap();
    Keys {
        root,
        release,
        trust,
    }
}

/// Deterministic pseudo-random bytes (xorshift), `len` long.
pub fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Ingests `img` into `store`, pins it, and returns the signed manifest's
/// encoding for `version`.
pub fn release(store: &FsStore, keys: &Keys, img: &[u8], version: &str, sv: u64) -> Vec<u8> {
    let report = ingest(store, img, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let body = ReleaseManifest {
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
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[&keys.release]).unwrap();
    store.pin(doc.id(), report.index_id).unwrap();
    doc.encode().unwrap()
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
