//! Patch pieces over the LoRa radio link (`mesh::radio::patch`): two links
//! over a perfect channel, one holding the new release and its patch, the
//! other on the patch's base (or not), with the test acting as the driver
//! that applies pieces against the base.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::radio::{
    KEY, config, drive_alone, drive_pair, hear_announces, hear_bundle, holder_announce,
    member_frame, seconds_until_sends,
};
use common::{Keys, image, keys};
use meshota_blobstore::patch::{PatchOptions, create_patch};
use meshota_blobstore::{ChunkIndex, ChunkStore, DEFAULT_PARAMS, MemStore, index_reader};
use meshota_manifest::Hash;
use meshota_mesh::radio::msg::{Announce, ManifestRequest, PayloadRequest, tag_of};
use meshota_mesh::radio::{LinkEvent, PieceOutput, RadioError, RadioLink, bundle};
use meshota_radios::{FrameCodec, FrameKind, Header, Micros, Progress, ShortId};
use proptest::prelude::*;

/// v1, and v2 (v1 with an operand changed every 3 KiB: most chunks new, a
/// small patch) whose manifest lists the patch from v1.
struct World {
    v1: Vec<u8>,
    v1_id: Hash,
    v1_chunks: Vec<Vec<u8>>,
    v2: Vec<u8>,
    bundle: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    patch_index: Vec<u8>,
    patch_id: Hash,
    pieces: Vec<Vec<u8>>,
}

fn chunks_of(img: &[u8], index: &ChunkIndex) -> Vec<Vec<u8>> {
    let mut off = 0usize;
    index
        .chunks()
        .iter()
        .map(|c| {
            let b = img[off..off + c.len as usize].to_vec();
            off += c.len as usize;
            b
        })
        .collect()
}

fn world(k: &Keys) -> World {
    let v1 = image(11, 128 * 1024);
    let mut v2 = v1.clone();
    for at in (100..v2.len() - 1).step_by(3 * 1024) {
        v2[at] = v2[at].wrapping_add(0x40);
    }
    let i1 = index_reader(v1.as_slice(), &DEFAULT_PARAMS).unwrap();
    let i2 = index_reader(v2.as_slice(), &DEFAULT_PARAMS).unwrap();
    let store = MemStore::new();
    let opts = PatchOptions {
        piece_output_bytes: 32 * 1024,
        ..PatchOptions::default()
    };
    let build = create_patch(&store, v1.as_slice(), &i1, v2.as_slice(), &i2, &opts)
        .unwrap()
        .expect("a patch beats the chunks");
    assert!(build.index.pieces().len() >= 2);
    let pieces: Vec<Vec<u8>> = build
        .index
        .pieces()
        .iter()
        .map(|p| store.get(&p.hash).unwrap())
        .collect();
    let v1_doc = common::publish(&k.release, &v1, "board", 1);
    let index_bytes = i2.encode().unwrap();
    let manifest =
        common::radio::patch_release_manifest(&k.release, "1.0.2", &i2, i1.image_hash(), &build);
    World {
        v1_id: v1_doc.id,
        v1_chunks: chunks_of(&v1, &i1),
        chunks: chunks_of(&v2, &i2),
        bundle: bundle::encode(&manifest, &index_bytes).unwrap(),
        patch_id: build.id,
        patch_index: build.encoded,
        pieces,
        v1,
        v2,
    }
}

fn origin(k: &Keys, w: &World) -> RadioLink {
    let mut a = RadioLink::new(config(1, 1), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), w.bundle.clone(), &w.chunks)
        .unwrap();
    a.add_patch(Micros(0), w.patch_index.clone(), &w.pieces)
        .unwrap();
    a
}

/// How the test's driver answers the receiver's piece jobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Applies them against v1.
    Apply,
    /// Answers the first job with chunks that do not match the index (a
    /// driver bug), the rest honestly.
    FirstOutputWrong,
}

/// `b` (on v1, its chunks handed in on `ManifestVerified`) fetches from
/// `a` over a channel that loses nothing. Bounded.
fn run_pair(a: &mut RadioLink, b: &mut RadioLink, w: &World, driver: Driver) -> bool {
    run_pair_until(a, b, w, driver, RadioLink::is_complete, Micros(0)).0
}

fn run_pair_until(
    a: &mut RadioLink,
    b: &mut RadioLink,
    w: &World,
    driver: Driver,
    stop: fn(&RadioLink) -> bool,
    start: Micros,
) -> (bool, Micros) {
    let mut jobs = 0;
    let until = start.plus(3_600 * Micros::SECOND);
    drive_pair(a, b, start, until, stop, |b, now| {
        while let Some(e) = b.poll_event() {
            match e {
                LinkEvent::ManifestVerified { .. } => {
                    b.add_chunks(now, &w.v1_chunks);
                }
                LinkEvent::ApplyPiece(job) => {
                    jobs += 1;
                    let mut out = job.apply(w.v1.as_slice());
                    if driver == Driver::FirstOutputWrong && jobs == 1 {
                        let chunks = out.chunks.as_mut().unwrap();
                        chunks[0][0] ^= 1;
                    }
                    b.piece_applied(now, out);
                }
                _ => {}
            }
        }
    })
}

fn announces(link: &mut RadioLink, codec: &FrameCodec) -> Option<Announce> {
    let mut now = Micros(4_000 * Micros::SECOND);
    for _ in 0..400 {
        now = now.plus(Micros::SECOND);
        link.handle_timeout(now);
        if let Some(f) = link.poll_transmit(now) {
            let f = codec.decode(&f).unwrap();
            if f.header.kind == FrameKind::Announce {
                return Some(Announce::decode(f.payload).unwrap());
            }
        }
    }
    None
}

#[test]
fn a_neighbour_on_the_base_fetches_the_patch_pieces_instead_of_chunks_and_serves_them() {
    let k = keys();
    let w = world(&k);
    let mut a = origin(&k, &w);
    let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    b.set_base_image(Hash::of(&w.v1));
    assert!(run_pair(&mut a, &mut b, &w, Driver::Apply));
    assert_eq!(b.payload().unwrap(), w.v2);
    let s = b.stats();
    assert_eq!(s.chunks_decoded, 0, "{s:?}");
    assert_eq!(s.pieces_applied, w.pieces.len() as u64, "{s:?}");
    assert_eq!(s.piece_failures, 0);
    // What crossed is about the patch, not the chunks it rebuilt.
    let sent = a.stats().sent_symbols as usize * 200;
    let patch: usize = w.pieces.iter().map(Vec::len).sum();
    let rebuilt: usize = w
        .chunks
        .iter()
        .filter(|c| !w.v1_chunks.contains(c))
        .map(Vec::len)
        .sum();
    assert!(sent < 2 * patch + 2_000, "sent {sent}, patch {patch}");
    assert!(patch * 2 < rebuilt, "patch {patch}, new chunks {rebuilt}");
    // It hands the patch to its driver to keep: the signed id, the index
    // blob and every piece, in order.
    let p = b.patch_blobs().expect("the whole patch");
    assert_eq!((p.id, p.index), (w.patch_id, w.patch_index.as_slice()));
    assert_eq!(
        p.pieces,
        w.pieces
            .iter()
            .map(|b| (Hash::of(b), b.as_slice()))
            .collect::<Vec<_>>()
    );
    // It now holds the patch and says so: a relay for its neighbours.
    let codec = FrameCodec::new(&KEY, 222).unwrap();
    let ann = announces(&mut b, &codec).expect("it announces");
    assert!(ann.complete && ann.pieces, "{ann:?}");
}

/// The election of senders holds for the patch as for the chunks: a node
/// on the base asks for the patch index the holder that announced the most
/// needy neighbours, not merely the one it heard last.
#[test]
fn a_node_fetching_a_patch_asks_the_holder_that_covers_the_most_neighbours() {
    let k = keys();
    let w = world(&k);
    let id = origin(&k, &w).release().unwrap();
    for (cover_20, cover_21, expected) in [(1u8, 5u8, 21u16), (6, 2, 20)] {
        let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
        b.set_base_image(Hash::of(&w.v1));
        let mut now = Micros(Micros::SECOND);
        for (src, needy) in [(20u16, cover_20), (21, cover_21)] {
            let a = holder_announce(&id, 2, true, needy);
            now = hear_announces(&mut b, now, src, &[0, 1], &a);
        }
        // The bundle, broadcast by a third holder's answer to someone else.
        hear_bundle(&mut b, now, 30, &id, &w.bundle);
        assert_eq!(b.release(), Some(id));
        while let Some(e) = b.poll_event() {
            if matches!(e, LinkEvent::ManifestVerified { .. }) {
                b.add_chunks(now, &w.v1_chunks);
            }
        }
        let asked: Vec<ShortId> = drive_alone(&mut b, now, 30)
            .iter()
            .filter(|(h, _)| h.kind == FrameKind::Request)
            .map(|(h, _)| h.dst)
            .collect();
        assert_eq!(asked.first(), Some(&ShortId(expected)), "{asked:?}");
    }
}

/// A holder that served a neighbour the bundle, then the patch index,
/// answers its request for the pieces within seconds: the neighbourhood's
/// election was held for the bundle, and the patch index's burst does not
/// make the holder forget whom it served.
#[test]
fn the_piece_request_after_the_bundle_and_patch_index_skips_a_second_election() {
    let k = keys();
    let w = world(&k);
    let mut a = origin(&k, &w);
    let kinds = |sent: &[(Header, Vec<u8>)]| {
        sent.iter()
            .filter(|(h, _)| h.kind == FrameKind::Message)
            .count()
    };
    let ask_all = |tag| ManifestRequest { tag, held: None }.encode();
    let t = Micros(Micros::SECOND);
    let f = member_frame(
        9,
        ShortId(1),
        FrameKind::Request,
        0,
        (0, 1),
        &ask_all(tag_of(&a.release().unwrap())),
    );
    a.handle_frame(t, &f);
    assert!(
        kinds(&drive_alone(&mut a, t, 200)) > 0,
        "the bundle went out"
    );
    let t = t.plus(201 * Micros::SECOND);
    let f = member_frame(
        9,
        ShortId(1),
        FrameKind::Request,
        1,
        (0, 1),
        &ask_all(tag_of(&w.patch_id)),
    );
    a.handle_frame(t, &f);
    assert!(
        kinds(&drive_alone(&mut a, t, 30)) > 0,
        "the patch index went out"
    );
    let t = t.plus(31 * Micros::SECOND);
    let r = PayloadRequest {
        tag: tag_of(&w.patch_id),
        held: Progress::new(w.pieces.len()).unwrap(),
        needs: Vec::new(),
    };
    let f = member_frame(
        9,
        ShortId(1),
        FrameKind::Progress,
        2,
        (0, 1),
        &r.encode(210),
    );
    a.handle_frame(t, &f);
    let served = seconds_until_sends(&mut a, t, FrameKind::Symbol, 200).expect("pieces went out");
    assert!(served <= 8, "{served} s");
}

#[test]
fn a_driver_output_that_does_not_match_the_index_is_refused_and_its_chunks_fetched_plainly() {
    let k = keys();
    let w = world(&k);
    let mut a = origin(&k, &w);
    let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    b.set_base_image(Hash::of(&w.v1));
    assert!(run_pair(&mut a, &mut b, &w, Driver::FirstOutputWrong));
    assert_eq!(b.payload().unwrap(), w.v2, "no wrong chunk was kept");
    let s = b.stats();
    assert_eq!(s.piece_failures, 1, "{s:?}");
    assert_eq!(s.pieces_applied, w.pieces.len() as u64 - 1);
    assert!(
        s.chunks_decoded > 0,
        "the failed piece's chunks came plainly"
    );
}

#[test]
fn a_node_whose_driver_gives_no_base_fetches_chunks_only() {
    let k = keys();
    let w = world(&k);
    let mut a = origin(&k, &w);
    let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    assert!(run_pair(&mut a, &mut b, &w, Driver::Apply));
    assert_eq!(b.payload().unwrap(), w.v2);
    let s = b.stats();
    assert_eq!((s.pieces_decoded, s.pieces_applied), (0, 0), "{s:?}");
    assert!(b.patch_blobs().is_none(), "no patch to keep");
    assert!(s.chunks_decoded > 0);
    assert_eq!(a.stats().sent_piece_symbols, 0);
}

#[test]
fn add_patch_refuses_an_unlisted_index_and_pieces_that_do_not_hash() {
    let k = keys();
    let w = world(&k);
    let mut a = RadioLink::new(config(1, 1), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    // No release carried yet.
    assert!(
        a.add_patch(Micros(0), w.patch_index.clone(), &w.pieces)
            .is_err()
    );
    a.add_release(Micros(0), w.bundle.clone(), &w.chunks)
        .unwrap();
    let mut unlisted = w.patch_index.clone();
    unlisted.push(0);
    assert!(matches!(
        a.add_patch(Micros(0), unlisted, &w.pieces),
        Err(RadioError::Index(_))
    ));
    let mut bad = w.pieces.clone();
    bad[0][10] ^= 1;
    assert!(a.add_patch(Micros(0), w.patch_index.clone(), &bad).is_err());
    assert!(
        a.add_patch(Micros(0), w.patch_index.clone(), &w.pieces[1..])
            .is_err()
    );
    // After the refusals the right blobs are still taken.
    a.add_patch(Micros(0), w.patch_index.clone(), &w.pieces)
        .unwrap();
}

/// A member of the mesh broadcasts symbols under a piece's tag that decode
/// to bytes not hashing to the piece's id (a malicious source): after three
/// such decodes the piece is given up and its chunks come plainly; nothing
/// wrong is kept.
#[test]
fn a_piece_whose_symbols_keep_decoding_wrong_is_given_up_for_its_chunks() {
    let k = keys();
    let w = world(&k);
    let mut a = origin(&k, &w);
    let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
    b.set_base_image(Hash::of(&w.v1));
    let (held, now) = run_pair_until(
        &mut a,
        &mut b,
        &w,
        Driver::Apply,
        |b| b.describe().contains("with index"),
        Micros(0),
    );
    assert!(held, "{}", b.describe());
    let codec = FrameCodec::new(&KEY, 222).unwrap();
    let piece = &w.pieces[0];
    let id = Hash::of(piece);
    let size = meshota_radios::symbol_size_for(222 - meshota_radios::frame::OVERHEAD);
    let k_symbols = piece.len().div_ceil(size);
    let mut t = now;
    for round in 0..3u8 {
        for esi in 0..k_symbols + 4 {
            let mut p = id.0[..4].to_vec();
            p.extend_from_slice(&u32::try_from(esi).unwrap().to_be_bytes()[1..]);
            p.extend((0..size).map(|i| (i as u8) ^ round ^ (esi as u8)));
            let h = Header {
                kind: FrameKind::Symbol,
                src: ShortId(666),
                dst: ShortId::BROADCAST,
                msg_id: 0,
                frag_index: 0,
                frag_count: 1,
            };
            t = t.plus(1_000);
            b.handle_frame(t, &codec.encode(&h, &p).unwrap());
        }
    }
    assert!(b.stats().piece_failures >= 1, "{:?}", b.stats());
    let (done, _) = run_pair_until(&mut a, &mut b, &w, Driver::Apply, RadioLink::is_complete, t);
    assert!(done, "{}", b.describe());
    assert_eq!(b.payload().unwrap(), w.v2);
    let s = b.stats();
    assert_eq!(s.pieces_applied, w.pieces.len() as u64 - 1, "{s:?}");
    assert!(s.chunks_decoded > 0, "{s:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Authenticated frames with random payloads, some under the patch's
    /// tag, never panic a link that fetches by patch nor one that serves it.
    #[test]
    fn authenticated_garbage_never_panics_a_patch_link(
        frames in proptest::collection::vec((1u8..=6, any::<u8>(), 1u8..=20, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..210)), 1..40)
    ) {
        static CELL: std::sync::OnceLock<(Keys, World)> = std::sync::OnceLock::new();
        let (k, w) = CELL.get_or_init(|| {
            let k = keys();
            let w = world(&k);
            (k, w)
        });
        let mut a = origin(k, w);
        let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (w.v1_id, 1), Micros(0)).unwrap();
        b.set_base_image(Hash::of(&w.v1));
        // b verifies the bundle first (so it fetches the patch).
        let (verified, mut now) =
            run_pair_until(&mut a, &mut b, w, Driver::Apply, |b| b.release().is_some(), Micros(0));
        prop_assert!(verified);
        let codec = FrameCodec::new(&KEY, 222).unwrap();
        let patch_tag = {
            let id = Hash::of(&w.patch_index);
            [id.0[0], id.0[1], id.0[2], id.0[3]]
        };
        for (kind, index, count, tagged, mut payload) in frames {
            let kind = match kind {
                1 => FrameKind::Announce,
                2 => FrameKind::Request,
                3 => FrameKind::Message,
                4 => FrameKind::Symbol,
                5 => FrameKind::Progress,
                _ => FrameKind::Repair,
            };
            if tagged && payload.len() >= 4 {
                payload[..4].copy_from_slice(&patch_tag);
            }
            let h = Header { kind, src: ShortId(9), dst: ShortId(1), msg_id: 0, frag_index: index % count, frag_count: count };
            now = now.plus(100_000);
            let f = codec.encode(&h, &payload).unwrap();
            for link in [&mut a, &mut b] {
                link.handle_frame(now, &f);
                link.handle_timeout(now);
                let _ = link.poll_transmit(now);
                while let Some(e) = link.poll_event() {
                    if let LinkEvent::ApplyPiece(job) = e {
                        let out: PieceOutput = job.apply(w.v1.as_slice());
                        link.piece_applied(now, out);
                    }
                }
            }
        }
    }
}
