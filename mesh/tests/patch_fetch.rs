//! Patches over the mesh, in virtual time: nodes whose active slot is a
//! listed base fetch patch pieces instead of chunks, relay them, and fall
//! back to plain chunks whenever a patch cannot be used.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::{Behaviour, Keys, Net, Published, image, keys, publish};
use meshota_blobstore::patch::{PatchIndex, PatchOptions, PieceRef, create_patch};
use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, MemStore, ingest};
use meshota_manifest::{
    Component, Hash, PatchRef, ReleaseManifest, RolloutPolicy, SignedDocument, UnixTime,
};
use meshota_mesh::{Installed, Limits};

const LEN: usize = 1 << 20;

/// The next release of `old`: an operand changed every 3 KiB, so nearly
/// every chunk is new while a binary patch stays small.
fn next(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for at in (100..new.len() - 1).step_by(3 * 1024) {
        new[at] = new[at].wrapping_add(0x40);
    }
    new
}

/// A release with a patch, and the patch blobs (index and pieces) by hash.
struct Patched {
    release: Published,
    blobs: BTreeMap<Hash, Vec<u8>>,
    patch: Hash,
    /// Bytes of the new release's chunks the base does not hold.
    new_chunk_bytes: u64,
}

/// How the patch blobs listed in the manifest are altered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    /// One byte of the first piece flipped, the piece listed by its new
    /// hash (a broken release tool).
    CorruptFirstPiece,
}

/// Signs `new` as security version 2 with a patch from `patch_base`,
/// listed in the manifest under `listed_base`'s image hash.
fn publish_patched(
    k: &Keys,
    patch_base: &[u8],
    listed_base: &[u8],
    new: &[u8],
    tamper: Tamper,
) -> Patched {
    let origin = MemStore::new();
    let new_index = ingest(&origin, new, &DEFAULT_PARAMS, &mut |_| {})
        .unwrap()
        .index;
    let base_index = meshota_blobstore::index_reader(patch_base, &DEFAULT_PARAMS).unwrap();
    let opts = PatchOptions {
        piece_output_bytes: 128 * 1024,
        ..PatchOptions::default()
    };
    let build = create_patch(&origin, patch_base, &base_index, new, &new_index, &opts)
        .unwrap()
        .expect("a patch beats the chunks");
    let mut blobs = BTreeMap::new();
    let mut pieces: Vec<PieceRef> = build.index.pieces().to_vec();
    for p in &pieces {
        blobs.insert(p.hash, origin.get(&p.hash).unwrap());
    }
    if tamper == Tamper::CorruptFirstPiece {
        let mut bad = blobs[&pieces[0].hash].clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        pieces[0] = PieceRef {
            hash: Hash::of(&bad),
            size: bad.len() as u32,
            ..pieces[0]
        };
        blobs.insert(pieces[0].hash, bad);
    }
    let index = PatchIndex::new(
        build.index.base_image_hash(),
        build.index.base_size(),
        build.index.target_index(),
        pieces,
    )
    .unwrap();
    let encoded = index.encode().unwrap();
    let patch = Hash::of(&encoded);
    blobs.insert(patch, encoded.clone());
    let index_bytes = new_index.encode().unwrap();
    let mut chunks = BTreeMap::new();
    let mut off = 0usize;
    for c in new_index.chunks() {
        chunks.insert(c.hash, new[off..off + c.len as usize].to_vec());
        off += c.len as usize;
    }
    let listed_hash = Hash::of(listed_base);
    let body = ReleaseManifest {
        product: "test".into(),
        hardware: "rpi4".into(),
        channel: "stable".into(),
        version: "1.0.2".into(),
        security_version: 2,
        created: UnixTime(1_790_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: new_index.total_size(),
            image_hash: new_index.image_hash(),
            chunk_index: Hash::of(&index_bytes),
            chunking: *new_index.params(),
        }],
        patches: vec![PatchRef {
            component: "rootfs".into(),
            base_image_hash: listed_hash,
            patch,
            size: encoded.len() as u64,
        }],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[&k.release]).unwrap();
    let in_base: std::collections::BTreeSet<Hash> =
        base_index.chunks().iter().map(|c| c.hash).collect();
    let new_chunk_bytes = chunks
        .iter()
        .filter(|(h, _)| !in_base.contains(*h))
        .map(|(_, d)| d.len() as u64)
        .sum();
    Patched {
        release: Published {
            manifest: doc.encode().unwrap(),
            index: index_bytes,
            chunks,
            id: doc.id(),
            image_hash: new_index.image_hash(),
        },
        blobs,
        patch,
        new_chunk_bytes,
    }
}

/// `n` nodes, all running `v1` (installed, its chunks held as a seeded
/// slot would provide them); node 0 also publishes `p` with its patch
/// blobs (unless `with_blobs` is false).
fn net_on(k: &Keys, n: usize, v1: &Published, base: &[u8], p: &Patched, with_blobs: bool) -> Net {
    let installed = Installed {
        release: Some(v1.id),
        security_version: Some(1),
        image_hash: Some(v1.image_hash),
    };
    let mut net = Net::with_installed(n, &k.trust, "rpi4", Limits::DEFAULT, installed);
    for i in 0..n {
        net.seed_release(i, v1);
        net.nodes[i].base = Some(base.to_vec());
    }
    net.seed_release(0, &p.release);
    if with_blobs {
        let now = net.now;
        let node = &mut net.nodes[0];
        for (h, d) in &p.blobs {
            node.store.insert(*h, d.clone());
        }
        node.core.add_patch_index(now, &p.blobs[&p.patch]).unwrap();
        node.core.add_chunks(now, p.blobs.keys().copied());
    }
    net
}

fn v1() -> (Keys, Vec<u8>, Published) {
    let k = keys();
    let img = image(41, LEN);
    let v1 = publish(&k.release, &img, "rpi4", 1);
    (k, img, v1)
}

fn run_until_installed(net: &mut Net, id: Hash) {
    let done = net.run_until(2_000_000, 600_000, |n| n.all_installed(id));
    let states: Vec<_> = net
        .nodes
        .iter()
        .map(|n| {
            (
                n.installed.clone(),
                *n.core.stats(),
                n.core.patch_in_progress(),
            )
        })
        .collect();
    assert!(done, "every node installs the new release: {states:#?}");
}

#[test]
fn node_on_the_listed_base_fetches_patch_pieces_instead_of_chunks_and_installs() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let mut net = net_on(&k, 2, &v1, &img, &p, true);
    net.connect(0, 1);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert!(st.patch_bytes_fetched > 0, "{st:?}");
    assert_eq!(net.nodes[1].patches_applied, 1);
    assert_eq!(net.nodes[1].pieces_failed, 0);
    let fetched = st.patch_bytes_fetched + st.chunk_bytes_fetched;
    assert!(
        fetched * 4 < p.new_chunk_bytes,
        "fetched {fetched} bytes, the chunk plan is {}",
        p.new_chunk_bytes
    );
}

#[test]
fn node_on_the_base_relays_pieces_it_fetched_to_the_next_node() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let mut net = net_on(&k, 3, &v1, &img, &p, true);
    net.connect(0, 1);
    net.connect(1, 2);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(2, &p.release), new);
    let st = *net.nodes[2].core.stats();
    assert!(st.patch_bytes_fetched > 0, "{st:?}");
    assert!(
        st.patch_bytes_fetched + st.chunk_bytes_fetched < p.new_chunk_bytes / 4,
        "{st:?}"
    );
    assert!(net.nodes[1].core.stats().chunks_served > 0);
}

#[test]
fn node_on_an_unlisted_base_fetches_chunks_only() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let other = image(77, LEN);
    let other_rel = publish(&k.release, &other, "rpi4", 1);
    let mut net = net_on(&k, 2, &v1, &img, &p, true);
    // Node 1 runs another image: the manifest lists no patch from it.
    let installed = Installed {
        release: Some(other_rel.id),
        security_version: Some(1),
        image_hash: Some(other_rel.image_hash),
    };
    net.nodes[1] = Net::with_installed(2, &k.trust, "rpi4", Limits::DEFAULT, installed)
        .nodes
        .remove(1);
    net.seed_release(1, &other_rel);
    net.nodes[1].base = Some(other);
    net.connect(0, 1);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert_eq!(st.patch_bytes_fetched, 0, "{st:?}");
    assert_eq!(net.nodes[1].patches_applied, 0);
    assert!(st.chunk_bytes_fetched >= p.new_chunk_bytes / 2, "{st:?}");
}

#[test]
fn piece_whose_output_fails_is_discarded_and_its_chunks_are_fetched_plainly() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::CorruptFirstPiece);
    let mut net = net_on(&k, 2, &v1, &img, &p, true);
    net.connect(0, 1);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    assert_eq!(net.nodes[1].pieces_failed, 1);
    let st = *net.nodes[1].core.stats();
    assert!(st.patch_chunks_produced > 0, "{st:?}");
    assert!(
        st.chunk_bytes_fetched > 0,
        "the bad piece's chunks came plainly: {st:?}"
    );
}

#[test]
fn patch_index_for_another_base_is_refused_before_any_piece_is_fetched() {
    let (k, img, v1) = v1();
    let new = next(&img);
    // Made from another image (a relative of v1), listed under v1's hash.
    let mut other = img.clone();
    for b in &mut other[500_000..500_100] {
        *b ^= 0xa5;
    }
    let p = publish_patched(&k, &other, &img, &new, Tamper::None);
    let mut net = net_on(&k, 2, &v1, &img, &p, false);
    // A node refuses to carry it at all ...
    let now = net.now;
    let err = net.nodes[0]
        .core
        .add_patch_index(now, &p.blobs[&p.patch])
        .unwrap_err();
    assert!(err.to_string().contains("base"), "{err}");
    // ... and a node on v1 handed it by a peer gives the patch up at once.
    net.connect(0, 1);
    assert!(net.run_until(100_000, 60_000, |n| {
        n.nodes[1].core.patch_in_progress().is_some()
    }));
    let link = net.first_link(1).unwrap();
    net.inject(
        1,
        link,
        &meshota_mesh::wire::Message::Index {
            bytes: p.blobs[&p.patch].clone(),
        },
    );
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert_eq!(st.patch_blobs_fetched, 0, "nothing of it kept: {st:?}");
    assert_eq!(st.patch_fallbacks, 1, "{st:?}");
    assert_eq!(net.nodes[1].patches_applied, 0);
    assert!(
        net.now.0 < 2 * Limits::DEFAULT.request_timeout_ms,
        "gave up on the refused index, not on the stall timeout"
    );
}

#[test]
fn patch_nobody_serves_falls_back_to_chunks_after_the_stall_timeout() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let mut net = net_on(&k, 2, &v1, &img, &p, false);
    net.connect(0, 1);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert_eq!(st.patch_bytes_fetched, 0, "{st:?}");
    assert_eq!(st.patch_fallbacks, 1, "{st:?}");
    let stall = 2 * Limits::DEFAULT.request_timeout_ms;
    assert!(net.now.0 > stall, "waited for the index first");
}

#[test]
fn peer_serving_corrupt_pieces_is_penalised_and_the_pieces_come_from_an_honest_one() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let mut net = net_on(&k, 3, &v1, &img, &p, true);
    // Node 2 is a second origin, honest; node 0 flips a byte of everything
    // it serves.
    net.seed_release(2, &p.release);
    let now = net.now;
    for (h, d) in &p.blobs {
        net.nodes[2].store.insert(*h, d.clone());
    }
    net.nodes[2]
        .core
        .add_patch_index(now, &p.blobs[&p.patch])
        .unwrap();
    net.nodes[2].core.add_chunks(now, p.blobs.keys().copied());
    net.nodes[0].behaviour = Behaviour::CorruptChunks;
    net.connect(0, 1);
    net.connect(2, 1);
    assert!(net.run_until(2_000_000, 600_000, |n| {
        n.nodes[1].installed.contains(&p.release.id)
    }));
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert!(st.corrupt_chunks >= 1, "{st:?}");
    assert!(st.patch_bytes_fetched > 0, "{st:?}");
    assert_eq!(net.nodes[1].pieces_failed, 0);
    assert!(
        st.patch_bytes_fetched + st.chunk_bytes_fetched < p.new_chunk_bytes / 4,
        "{st:?}"
    );
}

#[test]
fn restarted_node_holding_the_pieces_applies_them_without_fetching_again() {
    let (k, img, v1) = v1();
    let new = next(&img);
    let p = publish_patched(&k, &img, &img, &new, Tamper::None);
    let mut net = net_on(&k, 2, &v1, &img, &p, true);
    // Node 1 fetched the patch before a restart: its store holds the index
    // and the pieces, and a fresh core is fed them as the daemon does.
    let now = net.now;
    let n1 = &mut net.nodes[1];
    for (h, d) in &p.blobs {
        n1.store.insert(*h, d.clone());
    }
    let held: Vec<Hash> = n1.store.keys().copied().collect();
    let mut fresh = Net::with_installed(
        2,
        &k.trust,
        "rpi4",
        Limits::DEFAULT,
        Installed {
            release: Some(v1.id),
            security_version: Some(1),
            image_hash: Some(v1.image_hash),
        },
    )
    .nodes
    .remove(1);
    fresh.store = std::mem::take(&mut n1.store);
    fresh.base = Some(img.clone());
    fresh
        .core
        .add_release(now, &v1.manifest, Some(&v1.index))
        .unwrap();
    fresh
        .core
        .add_release(now, &p.release.manifest, Some(&p.release.index))
        .unwrap();
    fresh.core.add_patch_index(now, &p.blobs[&p.patch]).unwrap();
    fresh.core.add_chunks(now, held);
    net.nodes[1] = fresh;
    net.connect(0, 1);
    run_until_installed(&mut net, p.release.id);
    assert_eq!(net.assemble(1, &p.release), new);
    let st = *net.nodes[1].core.stats();
    assert_eq!(st.patch_bytes_fetched, 0, "{st:?}");
    assert_eq!(net.nodes[1].patches_applied, 1);
    assert!(st.patch_chunks_produced > 0, "{st:?}");
}
