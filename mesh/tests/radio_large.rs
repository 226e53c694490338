//! Large releases over the LoRa radio link: the bundle carries the chunk
//! index as a delta against the base of the first listed patch, the
//! release crosses by patch only, and chunks of the base stay in the
//! node's store (the link holds their ids, not their bytes). Two links
//! over a perfect channel, the test acting as their drivers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::radio::{config, drive_pair};
use common::{Keys, image, keys};
use meshota_blobstore::patch::{PatchOptions, create_patch};
use meshota_blobstore::{ChunkIndex, ChunkStore, DEFAULT_PARAMS, MemStore, index_reader};
use meshota_manifest::Hash;
use meshota_mesh::radio::bundle::{self, BaseIndex};
use meshota_mesh::radio::{LinkEvent, RadioError, RadioLink};
use meshota_radios::Micros;

/// v1 (the base every node runs) and v2: v1 with bytes changed at two
/// places, so few chunks are new; v2's manifest lists the patch from v1.
struct World {
    v1: Vec<u8>,
    v1_index: ChunkIndex,
    v1_id: Hash,
    v2: Vec<u8>,
    v2_index: ChunkIndex,
    manifest: Vec<u8>,
    patch_index: Vec<u8>,
    pieces: Vec<Vec<u8>>,
}

fn world(k: &Keys) -> World {
    let v1 = image(21, 512 * 1024);
    let mut v2 = v1.clone();
    for at in [100_000, 400_000] {
        for b in &mut v2[at..at + 24] {
            *b = b.wrapping_add(0x40);
        }
    }
    let v1_index = index_reader(v1.as_slice(), &DEFAULT_PARAMS).unwrap();
    let v2_index = index_reader(v2.as_slice(), &DEFAULT_PARAMS).unwrap();
    let store = MemStore::new();
    let build = create_patch(
        &store,
        v1.as_slice(),
        &v1_index,
        v2.as_slice(),
        &v2_index,
        &PatchOptions::default(),
    )
    .unwrap()
    .expect("a patch beats the chunks");
    let pieces = build
        .index
        .pieces()
        .iter()
        .map(|p| store.get(&p.hash).unwrap())
        .collect();
    let v1_doc = common::publish(&k.release, &v1, "board", 1);
    let manifest = common::radio::patch_release_manifest(
        &k.release,
        "2.0.0",
        &v2_index,
        v1_index.image_hash(),
        &build,
    );
    World {
        v1_id: v1_doc.id,
        manifest,
        patch_index: build.encoded,
        pieces,
        v1,
        v1_index,
        v2,
        v2_index,
    }
}

impl World {
    fn delta_bundle(&self) -> Vec<u8> {
        bundle::encode_delta(&self.manifest, &self.v1_index, &self.v2_index).unwrap()
    }

    fn base(&self) -> BaseIndex {
        BaseIndex::new(self.v1_index.clone()).unwrap()
    }

    /// The chunk bytes of `index` over `img`, by id.
    fn chunk(img: &[u8], index: &ChunkIndex, hash: &Hash) -> Option<Vec<u8>> {
        let mut at = 0usize;
        for c in index.chunks() {
            let end = at + c.len as usize;
            if c.hash == *hash {
                return Some(img[at..end].to_vec());
            }
            at = end;
        }
        None
    }

    /// v2's chunks that v1 does not have: what the patch's pieces make.
    fn new_chunks(&self) -> BTreeSet<Hash> {
        let old: BTreeSet<Hash> = self.v1_index.chunks().iter().map(|c| c.hash).collect();
        self.v2_index
            .chunks()
            .iter()
            .map(|c| c.hash)
            .filter(|h| !old.contains(h))
            .collect()
    }

    /// A source of v2 that keeps only the new chunks in memory.
    fn origin(&self, k: &Keys) -> RadioLink {
        let mut a =
            RadioLink::new(config(1, 1), k.trust.clone(), (self.v1_id, 1), Micros(0)).unwrap();
        let held: Vec<Vec<u8>> = self
            .new_chunks()
            .iter()
            .map(|h| Self::chunk(&self.v2, &self.v2_index, h).unwrap())
            .collect();
        a.add_stored_release(Micros(0), self.delta_bundle(), Some(&self.base()), &held)
            .unwrap();
        a.add_patch(Micros(0), self.patch_index.clone(), &self.pieces)
            .unwrap();
        a
    }

    /// A node on v1 whose store holds v1's chunks.
    fn on_base(&self, k: &Keys, id: u16) -> RadioLink {
        let mut b = RadioLink::new(
            config(id, u64::from(id)),
            k.trust.clone(),
            (self.v1_id, 1),
            Micros(0),
        )
        .unwrap();
        b.set_base_index(self.base());
        b
    }
}

/// `b` fetches from `a`, its driver marking v1's chunks held in the store
/// and applying pieces against v1. Returns whether it completed and the
/// bundle rejections it saw.
fn fetch(a: &mut RadioLink, b: &mut RadioLink, w: &World, secs: u64) -> (bool, Vec<RadioError>) {
    let v1_hashes: Vec<Hash> = w.v1_index.chunks().iter().map(|c| c.hash).collect();
    let mut rejected = Vec::new();
    let (done, _) = drive_pair(
        a,
        b,
        Micros(0),
        Micros(secs * Micros::SECOND),
        RadioLink::is_complete,
        |b, now| {
            while let Some(e) = b.poll_event() {
                match e {
                    LinkEvent::ManifestVerified { .. } => {
                        b.add_stored_chunks(now, &v1_hashes);
                    }
                    LinkEvent::ApplyPiece(job) => {
                        let out = job.apply(w.v1.as_slice());
                        b.piece_applied(now, out);
                    }
                    LinkEvent::BundleRejected { error, .. } => rejected.push(error),
                    _ => {}
                }
            }
        },
    );
    (done, rejected)
}

#[test]
fn a_node_on_the_base_takes_a_release_whose_bundle_carries_its_index_as_a_delta() {
    let k = keys();
    let w = world(&k);
    let whole = bundle::encode(&w.manifest, &w.v2_index.encode().unwrap()).unwrap();
    let delta = w.delta_bundle();
    assert!(
        delta.len() + 200 < whole.len(),
        "delta bundle {} bytes, whole {}",
        delta.len(),
        whole.len()
    );
    let mut a = w.origin(&k);
    let mut b = w.on_base(&k, 2);
    let (done, rejected) = fetch(&mut a, &mut b, &w, 3_600);
    assert!(done && rejected.is_empty(), "{rejected:?}");
    // The bundle came as a delta and was rebuilt to the signed index.
    let got = b.bundle().unwrap();
    assert!(got.is_delta());
    assert_eq!(got.bytes, delta);
    assert_eq!(Hash::of(got.index_bytes()), w.v2_index.id().unwrap());
    // Nothing but the pieces crossed: every new chunk was made from them,
    // every other one is in the store, not in the link's memory.
    let s = b.stats();
    assert_eq!(s.chunks_decoded, 0, "{s:?}");
    assert_eq!(s.pieces_applied, w.pieces.len() as u64, "{s:?}");
    assert!(b.payload().is_none(), "some chunks are only in the store");
    // Progress counts the release's chunks, not the patch pieces.
    let n = w.v2_index.chunks().len();
    assert_eq!(b.chunk_progress(), Some((n, n)));
    let held: BTreeSet<Hash> = b.held_chunks().map(|(h, _)| h).collect();
    assert_eq!(held, w.new_chunks());
    for (h, bytes) in b.held_chunks() {
        assert_eq!(Hash::of(bytes), h);
    }
}

#[test]
fn a_node_that_completed_by_patch_serves_the_large_release_to_the_next() {
    let k = keys();
    let w = world(&k);
    let mut a = w.origin(&k);
    let mut b = w.on_base(&k, 2);
    assert!(fetch(&mut a, &mut b, &w, 3_600).0);
    // b now relays: c, on v1 too, gets it from b alone.
    let mut c = w.on_base(&k, 3);
    let (done, rejected) = fetch(&mut b, &mut c, &w, 3_600);
    assert!(done && rejected.is_empty(), "{rejected:?}");
    assert_eq!(c.bundle().unwrap().bytes, w.delta_bundle());
    assert_eq!(c.stats().chunks_decoded, 0);
    let held: BTreeSet<Hash> = c.held_chunks().map(|(h, _)| h).collect();
    assert_eq!(held, w.new_chunks());
}

#[test]
fn a_node_without_the_base_index_refuses_the_delta_bundle_once_and_stops_asking() {
    let k = keys();
    let w = world(&k);
    let mut a = w.origin(&k);
    // No base index: the delta cannot be rebuilt.
    let mut c = RadioLink::new(config(3, 3), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    let (done, rejected) = fetch(&mut a, &mut c, &w, 3_600);
    assert!(!done);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        matches!(&rejected[0], RadioError::OtherBase { base } if *base == w.v1_index.id().unwrap().short()),
        "{rejected:?}"
    );
    assert!(c.release().is_none());
    // It asked for the bundle, not again and again for an hour.
    assert!(c.stats().sent_requests <= 3, "{:?}", c.stats());
}

#[test]
fn a_node_that_moved_to_another_image_drops_the_old_base_index() {
    let k = keys();
    let w = world(&k);
    let mut a = w.origin(&k);
    // On v1 once, now on an image with no known index: v1's index no
    // longer rebuilds deltas for it.
    let mut c = w.on_base(&k, 3);
    c.set_base_image(Hash::of(b"another image"));
    let (done, rejected) = fetch(&mut a, &mut c, &w, 3_600);
    assert!(!done);
    assert!(
        matches!(rejected.as_slice(), [RadioError::OtherBase { .. }]),
        "{rejected:?}"
    );
    // Told v1's image again, it keeps v1's index.
    let mut a = w.origin(&k);
    let mut d = w.on_base(&k, 4);
    d.set_base_image(w.v1_index.image_hash());
    let (done, rejected) = fetch(&mut a, &mut d, &w, 3_600);
    assert!(done && rejected.is_empty(), "{rejected:?}");
}

#[test]
fn a_delta_that_rebuilds_another_index_is_refused() {
    let k = keys();
    let w = world(&k);
    // A delta from v1 to v1 itself, under v2's signed manifest.
    let forged = bundle::encode_delta(&w.manifest, &w.v1_index, &w.v1_index).unwrap();
    let mut b = w.on_base(&k, 2);
    let err = b
        .add_stored_release(Micros(0), forged, None, &[])
        .unwrap_err();
    assert!(
        matches!(&err, RadioError::Index(why) if why.contains("do not hash")),
        "{err}"
    );
    assert!(b.release().is_none());
}

#[test]
fn add_stored_release_refuses_a_held_chunk_the_index_does_not_list() {
    let k = keys();
    let w = world(&k);
    let mut a = RadioLink::new(config(1, 1), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    let err = a
        .add_stored_release(
            Micros(0),
            w.delta_bundle(),
            Some(&w.base()),
            &[vec![1, 2, 3]],
        )
        .unwrap_err();
    assert!(matches!(err, RadioError::Index(_)), "{err}");
    assert!(a.release().is_none());
    // Without any base, the delta is another base's.
    let err = a
        .add_stored_release(Micros(0), w.delta_bundle(), None, &[])
        .unwrap_err();
    assert!(matches!(err, RadioError::OtherBase { .. }), "{err}");
}
