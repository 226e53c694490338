//! Patches through real node daemons: a two-node testnet on loopback where
//! node 1 runs the testnet's initial release (the base) and node 0
//! publishes 1.0.0 with a patch from it (`node publish --patch-store`).
//! Node 1 installs 1.0.0 fetching pieces instead of chunks; a corrupt
//! piece, a truncated piece or a patch made from another base never
//! produces an installed image, and the install completes by plain chunk
//! fetch. Every wait is bounded; a guard stops the daemons.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshota_blobstore::patch::{PatchIndex, PieceRef};
use meshota_blobstore::{ChunkStore, FsStore};
use meshota_manifest::{Hash, ReleaseManifest, SecretKey, SignedDocument};
use serde_json::Value;

mod common;
use common::{Down, ok_here as ok, run_here as run, testnet_release_create};

/// A two-node testnet and a publisher's store holding its initial image.
struct Net {
    dir: PathBuf,
    state: Value,
    _down: Down,
}

impl Net {
    fn up(root: &Path) -> Self {
        let dir = root.join("tn");
        let (_, down) = common::testnet_up(&dir, 2, &[]);
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap())
                .unwrap();
        Self {
            dir,
            state,
            _down: down,
        }
    }

    fn s(&self, path: &[&str]) -> String {
        let v = path.iter().fold(&self.state, |v, k| &v[*k]);
        v.as_str()
            .map_or_else(|| v.to_string(), str::to_string)
            .trim_matches('"')
            .to_string()
    }

    fn initial_image(&self) -> Vec<u8> {
        std::fs::read(self.s(&["initial", "image"])).unwrap()
    }

    fn pub_store(&self) -> PathBuf {
        self.dir.join("pub-store")
    }

    /// `release create` into the publisher's store.
    fn create(&self, image: &Path, version: &str, sv: u64, out: &Path, previous: Option<&Path>) {
        testnet_release_create(
            &self.state,
            &self.pub_store(),
            image,
            version,
            sv,
            out,
            previous,
        );
    }

    fn initial_sv(&self) -> u64 {
        self.state["initial"]["security_version"].as_u64().unwrap()
    }

    fn config(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}/node.toml"))
    }

    fn publish(&self, manifest: &Path, image: &Path) {
        ok(&[
            "node",
            "publish",
            "--config",
            self.config(0).to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--patch-store",
            self.pub_store().to_str().unwrap(),
        ]);
    }

    fn status(&self, i: usize) -> Value {
        serde_json::from_str(&ok(&[
            "node",
            "status",
            "--config",
            self.config(i).to_str().unwrap(),
            "--json",
        ]))
        .unwrap()
    }

    /// Waits (at most 120 s) until node `i` runs `version` confirmed.
    fn wait_confirmed(&self, i: usize, version: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.status(i);
            if s["installed"]["version"] == version && s["slot"]["state"] == "confirmed" {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not confirm {version}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Re-signs `manifest` with the testnet's release key after `edit`.
    fn resign(&self, manifest: &Path, out: &Path, edit: impl FnOnce(&mut ReleaseManifest)) {
        let doc =
            SignedDocument::<ReleaseManifest>::decode(&std::fs::read(manifest).unwrap()).unwrap();
        let mut body = doc.unverified_body().clone();
        edit(&mut body);
        let key_bytes = std::fs::read(self.s(&["release_key"])).unwrap();
        let key = SecretKey::from_secret_key_file(&key_bytes, |_| None).unwrap();
        let doc = SignedDocument::sign(body, &[&key]).unwrap();
        std::fs::write(out, doc.encode().unwrap()).unwrap();
    }
}

/// The next release of `old`: an operand changed every 3 KiB, so nearly
/// every chunk is new while a binary patch stays small.
fn next(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for at in (100..new.len() - 1).step_by(3 * 1024) {
        new[at] = new[at].wrapping_add(0x40);
    }
    new
}

fn num(s: &Value, k: &str) -> u64 {
    s[k].as_u64()
        .unwrap_or_else(|| panic!("status has no {k}: {s:#}"))
}

/// Sets up the base and 1.0.0 with a patch from it in the publisher's
/// store; returns (1.0.0 image, its manifest, the base manifest).
fn release_with_patch(net: &Net, root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let base = root.join("base.img");
    std::fs::write(&base, net.initial_image()).unwrap();
    let base_m = root.join("base.mota");
    net.create(&base, "0.1.0", net.initial_sv(), &base_m, None);
    let v1 = root.join("v1.img");
    std::fs::write(&v1, next(&net.initial_image())).unwrap();
    let r1 = root.join("r1.mota");
    net.create(&v1, "1.0.0", net.initial_sv() + 1, &r1, Some(&base_m));
    (v1, r1, base_m)
}

/// The manifest's single patch index, from the publisher's store.
fn patch_of(net: &Net, manifest: &Path) -> (Hash, PatchIndex) {
    let doc = SignedDocument::<ReleaseManifest>::decode(&std::fs::read(manifest).unwrap()).unwrap();
    let p = doc.unverified_body().patches[0].clone();
    let store = FsStore::open(&net.pub_store()).unwrap();
    (p.patch, PatchIndex::load(&store, &p.patch, p.size).unwrap())
}

/// Lists `piece_bytes` as piece 0 of the patch (under its own hash, as a
/// broken release tool would), with the base `base` names, and signs a
/// manifest listing that patch.
fn relist(
    net: &Net,
    r1: &Path,
    out: &Path,
    base_of: Option<&PatchIndex>,
    alter: impl Fn(&[u8]) -> Vec<u8>,
) {
    let (_, index) = patch_of(net, r1);
    let store = FsStore::open(&net.pub_store()).unwrap();
    let mut pieces: Vec<PieceRef> = index.pieces().to_vec();
    let bad = alter(&store.get(&pieces[0].hash).unwrap());
    pieces[0] = PieceRef {
        hash: Hash::of(&bad),
        size: bad.len() as u32,
        ..pieces[0]
    };
    store.put(Hash::of(&bad), &bad).unwrap();
    let base = base_of.unwrap_or(&index);
    let new_index = PatchIndex::new(
        base.base_image_hash(),
        base.base_size(),
        index.target_index(),
        pieces,
    )
    .unwrap();
    let bytes = new_index.encode().unwrap();
    store.put(Hash::of(&bytes), &bytes).unwrap();
    drop(store);
    let (base_hash, size) = (base.base_image_hash(), bytes.len() as u64);
    net.resign(r1, out, |m| {
        m.patches[0].patch = Hash::of(&bytes);
        m.patches[0].size = size;
        m.patches[0].base_image_hash = base_hash;
    });
}

/// Publishes, waits for node 1, and checks that it installed 1.0.0
/// through plain chunks after every piece failed.
fn installs_plainly_after_the_piece_fails(net: &Net, manifest: &Path, v1: &Path) -> Value {
    net.publish(manifest, v1);
    let s = net.wait_confirmed(1, "1.0.0");
    assert!(num(&s, "patch_pieces_failed") >= 1, "{s:#}");
    assert_eq!(num(&s, "patch_pieces_applied"), 0, "{s:#}");
    assert_eq!(num(&s, "patch_chunks_produced"), 0, "{s:#}");
    assert!(num(&s, "chunk_bytes_fetched") > 0, "{s:#}");
    assert!(s["last_failure"].is_null(), "{s:#}");
    s
}

#[test]
fn node_on_the_base_installs_fetching_fewer_bytes_than_the_chunk_plan() {
    let d = tempfile::tempdir().unwrap();
    let net = Net::up(d.path());
    let (v1, r1, _) = release_with_patch(&net, d.path());
    let plan: Value = serde_json::from_str(&ok(&[
        "delta",
        "plan",
        "--from",
        net.dir.join("../base.img").to_str().unwrap(),
        "--to",
        r1.to_str().unwrap(),
        "--store",
        net.pub_store().to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(plan["plan"], "patch", "{plan:#}");
    let chunk_plan = num(&plan, "chunk_plan_bytes");
    net.publish(&r1, &v1);
    let s = net.wait_confirmed(1, "1.0.0");
    let patch = num(&s, "patch_bytes_fetched");
    let chunks = num(&s, "chunk_bytes_fetched");
    eprintln!("node 1 fetched {patch} patch + {chunks} chunk bytes; chunk plan {chunk_plan}");
    assert!(patch > 0, "{s:#}");
    assert!(num(&s, "patch_pieces_applied") >= 1, "{s:#}");
    assert_eq!(num(&s, "patch_pieces_failed"), 0, "{s:#}");
    assert!(num(&s, "patch_chunks_produced") > 0, "{s:#}");
    assert!(
        (patch + chunks) * 2 < chunk_plan,
        "fetched {patch} patch + {chunks} chunk bytes, the chunk plan is {chunk_plan}"
    );
    // The patch it applied stays pinned under the release: a store GC
    // keeps it, for the peers on the base it serves.
    let (id, index) = patch_of(&net, &r1);
    ok(&["testnet", "down", "--dir", net.dir.to_str().unwrap()]);
    let store = net.dir.join("node-1/store");
    ok(&["store", "gc", "--store", store.to_str().unwrap()]);
    let store = FsStore::open(&store).unwrap();
    assert!(store.has(&id).unwrap(), "the patch index blob");
    for p in index.pieces() {
        assert!(store.has(&p.hash).unwrap(), "piece {}", p.hash.short());
    }
}

#[test]
fn corrupt_patch_piece_never_installs_and_the_install_completes_by_plain_chunk_fetch() {
    let d = tempfile::tempdir().unwrap();
    let net = Net::up(d.path());
    let (v1, r1, _) = release_with_patch(&net, d.path());
    let bad = d.path().join("r1-corrupt.mota");
    relist(&net, &r1, &bad, None, |b| {
        let mut b = b.to_vec();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        b
    });
    installs_plainly_after_the_piece_fails(&net, &bad, &v1);
}

#[test]
fn truncated_patch_piece_never_installs_and_the_install_completes_by_plain_chunk_fetch() {
    let d = tempfile::tempdir().unwrap();
    let net = Net::up(d.path());
    let (v1, r1, _) = release_with_patch(&net, d.path());
    let bad = d.path().join("r1-truncated.mota");
    relist(&net, &r1, &bad, None, |b| b[..b.len() / 2].to_vec());
    installs_plainly_after_the_piece_fails(&net, &bad, &v1);
}

#[test]
fn patch_made_from_another_base_never_installs_and_the_install_completes_by_plain_chunk_fetch() {
    let d = tempfile::tempdir().unwrap();
    let net = Net::up(d.path());
    let (v1, r1, _) = release_with_patch(&net, d.path());
    // A relative of the base, and 1.0.0's patch made from it ...
    let mut other = net.initial_image();
    for b in &mut other[100_000..100_100] {
        *b ^= 0xa5;
    }
    let other_img = d.path().join("other.img");
    std::fs::write(&other_img, &other).unwrap();
    let other_m = d.path().join("other.mota");
    net.create(&other_img, "0.0.9", net.initial_sv(), &other_m, None);
    let r1x = d.path().join("r1-from-other.mota");
    net.create(&v1, "1.0.0", net.initial_sv() + 1, &r1x, Some(&other_m));
    // ... listed (index and manifest) as if it were from the node's base.
    let (_, base_index) = patch_of(&net, &r1);
    let bad = d.path().join("r1-wrong-base.mota");
    relist(&net, &r1x, &bad, Some(&base_index), <[u8]>::to_vec);
    let s = installs_plainly_after_the_piece_fails(&net, &bad, &v1);
    assert!(
        s["patch_last_error"]
            .as_str()
            .is_some_and(|e| e.contains("base")),
        "{s:#}"
    );
}

#[test]
fn publish_refuses_a_patch_store_whose_patch_is_not_from_the_listed_base() {
    let d = tempfile::tempdir().unwrap();
    let net = Net::up(d.path());
    let (v1, r1, _) = release_with_patch(&net, d.path());
    // The honest patch, listed under another image's hash.
    let bad = d.path().join("r1-relisted.mota");
    net.resign(&r1, &bad, |m| {
        m.patches[0].base_image_hash = Hash::of(b"some other image");
    });
    let o = run(&[
        "node",
        "publish",
        "--config",
        net.config(0).to_str().unwrap(),
        "--manifest",
        bad.to_str().unwrap(),
        "--image",
        v1.to_str().unwrap(),
        "--patch-store",
        net.pub_store().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("base"), "{err}");
    let s = net.status(0);
    let id = SignedDocument::<ReleaseManifest>::decode(&std::fs::read(&bad).unwrap())
        .unwrap()
        .id()
        .to_hex();
    assert!(
        !s["releases"].as_array().unwrap().iter().any(|r| r == &id),
        "not announced: {s:#}"
    );
}
