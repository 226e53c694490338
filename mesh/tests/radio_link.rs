//! The LoRa radio link (`mesh::radio`) driven directly, two links and a
//! perfect channel, or frames crafted by a member of the mesh: what the
//! link accepts, relays and refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::radio::{
    KEY, config, drive_alone, drive_pair, hear_announces, hear_bundle, holder_announce,
    member_frame, seconds_until_sends,
};
use common::*;
use meshota_blobstore::ChunkIndex;
use meshota_manifest::Hash;
use meshota_mesh::radio::msg::{Announce, PayloadRequest, ReleaseKey, tag_of};
use meshota_mesh::radio::{LinkEvent, NeighbourLink, RadioLink, bundle};
use meshota_radios::{FrameCodec, FrameKind, Header, Micros, Progress, ShortId};
use proptest::prelude::*;

struct Release {
    bundle: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    id: Hash,
    image: Vec<u8>,
}

fn release(security_version: u64, signer: &meshota_manifest::SecretKey) -> Release {
    let img = image(security_version, 20 * 1024);
    let p = publish(signer, &img, "board", security_version);
    let index = ChunkIndex::decode(&p.index).unwrap();
    let chunks = index
        .chunks()
        .iter()
        .map(|c| p.chunks[&c.hash].clone())
        .collect();
    Release {
        bundle: bundle::encode(&p.manifest, &p.index).unwrap(),
        chunks,
        id: p.id,
        image: img,
    }
}

/// Two links in range of each other over a channel that loses nothing,
/// until `b` holds everything or `until`. Bounded.
fn run_pair(a: &mut RadioLink, b: &mut RadioLink, until: Micros) -> bool {
    drive_pair(a, b, Micros(0), until, RadioLink::is_complete, |_, _| {}).0
}

/// Node 1 holds v2 and node 2, configured `b_config`, runs v1; the two
/// are driven over a lossless channel until node 2 holds v2 (asserted).
/// Returns both links and v2.
fn one_hop(b_config: meshota_mesh::radio::RadioConfig) -> (RadioLink, RadioLink, Release) {
    let (mut a, mut b, new) = holder_and_needy(b_config);
    // A source asked by one neighbour waits up to 128 s per round, and the
    // bundle and the symbols are two rounds.
    assert!(run_pair(&mut a, &mut b, Micros(1_500 * Micros::SECOND)));
    assert_eq!(b.release(), Some(new.id));
    assert_eq!(b.payload().unwrap(), new.image);
    (a, b, new)
}

/// Node 1 holding v2, and a node configured `b_config` running v1.
fn holder_and_needy(b_config: meshota_mesh::radio::RadioConfig) -> (RadioLink, RadioLink, Release) {
    let k = keys();
    let old = release(1, &k.release);
    let new = release(2, &k.release);
    let mut a = RadioLink::new(config(1, 1), k.trust.clone(), (old.id, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), new.bundle.clone(), &new.chunks)
        .unwrap();
    let b = RadioLink::new(b_config, k.trust.clone(), (old.id, 1), Micros(0)).unwrap();
    (a, b, new)
}

#[test]
fn a_neighbour_fetches_the_bundle_then_decodes_and_verifies_every_chunk() {
    let (a, mut b, new) = one_hop(config(2, 2));
    let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert!(events.contains(&LinkEvent::ManifestVerified { release: new.id }));
    assert!(events.contains(&LinkEvent::ReleaseComplete { release: new.id }));
    // One hop, no loss: the bundle and the payload crossed about once.
    assert!(a.stats().sent_pieces <= 2 * 18, "{:?}", a.stats());
    assert!(b.stats().sent_symbols == 0 && b.stats().frames_bad_mac == 0);
}

#[test]
fn a_release_whose_chunks_do_not_match_its_index_is_refused_locally() {
    let k = keys();
    let old = release(1, &k.release);
    let new = release(2, &k.release);
    let mut a = RadioLink::new(config(1, 1), k.trust.clone(), (old.id, 1), Micros(0)).unwrap();
    let mut chunks = new.chunks.clone();
    chunks[0][0] ^= 1;
    assert!(
        a.add_release(Micros(0), new.bundle.clone(), &chunks)
            .is_err()
    );
    assert_eq!(a.release(), None);
}

/// A member of the mesh (right key) announces a release signed by a key the
/// trust root does not list and pushes its bundle: the link refuses it,
/// never carries or announces it, and stops fetching it after three tries.
#[test]
fn a_member_cannot_make_a_node_carry_an_unsigned_release() {
    let k = keys();
    let old = release(1, &k.release);
    let rogue_key = meshota_manifest::SecretKey::from_seed([66; 32], "rogue").unwrap();
    let forged = release(9, &rogue_key);
    let codec = FrameCodec::new(&KEY, 222).unwrap();
    let mallory = ShortId(666);
    let frame = |kind, index: u8, count: u8, payload: &[u8]| {
        let h = Header {
            kind,
            src: mallory,
            dst: ShortId::BROADCAST,
            msg_id: 0,
            frag_index: index,
            frag_count: count,
        };
        codec.encode(&h, payload).unwrap()
    };
    let mut b = RadioLink::new(config(2, 2), k.trust.clone(), (old.id, 1), Micros(0)).unwrap();
    let announce = holder_announce(&forged.id, 9, false, 0);
    let piece = bundle::piece_len(codec.max_payload());
    let count = u8::try_from(forged.bundle.len().div_ceil(piece)).unwrap();
    let mut now = Micros(0);
    for _round in 0..4 {
        now = now.plus(Micros::SECOND);
        b.handle_frame(now, &frame(FrameKind::Announce, 0, 1, &announce.encode()));
        for i in 0..count {
            let from = usize::from(i) * piece;
            let mut p = tag_of(&forged.id).to_vec();
            p.extend_from_slice(&forged.bundle[from..(from + piece).min(forged.bundle.len())]);
            b.handle_frame(now, &frame(FrameKind::Message, i, count, &p));
        }
    }
    assert_eq!(b.release(), None);
    let rejected = std::iter::from_fn(|| b.poll_event())
        .filter(|e| matches!(e, LinkEvent::BundleRejected { .. }))
        .count();
    assert_eq!(rejected, 3, "three tries, then the release is refused");
    // It still announces what it runs, never the forged release.
    let mut sent = Vec::new();
    for _ in 0..50 {
        now = now.plus(2 * Micros::SECOND);
        b.handle_timeout(now);
        if let Some(f) = b.poll_transmit(now) {
            sent.push(f);
        }
    }
    for f in &sent {
        let f = codec.decode(f).unwrap();
        if f.header.kind == FrameKind::Announce {
            assert_eq!(
                Announce::decode(f.payload).unwrap().release,
                ReleaseKey::of(&old.id)
            );
        }
    }
}

/// The [`LinkEvent::ShortIdShared`] events `link` has pending (others are
/// consumed too).
fn short_id_shared_events(link: &mut RadioLink) -> Vec<LinkEvent> {
    std::iter::from_fn(|| link.poll_event())
        .filter(|e| matches!(e, LinkEvent::ShortIdShared { .. }))
        .collect()
}

fn payload_request(tag: [u8; 4], chunks: usize) -> Vec<u8> {
    PayloadRequest {
        tag,
        held: Progress::new(chunks).unwrap(),
        needs: Vec::new(),
    }
    .encode(210)
}

/// A holder asked for symbols by one neighbour stands down when that
/// neighbour then asks another source, or announces itself complete: its
/// burst is called off and it sends no symbol. Without either, it sends.
#[test]
fn a_holder_whose_only_asker_went_to_another_source_sends_no_symbols() {
    let k = keys_cached();
    let mut outcomes = Vec::new();
    for cover in ["none", "asked another source", "announced complete"] {
        let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
        let id = a.release().unwrap();
        let tag = tag_of(&id);
        let ask = payload_request(tag, k.3.len());
        let t = Micros(Micros::SECOND);
        a.handle_frame(
            t,
            &member_frame(9, ShortId(1), FrameKind::Progress, 0, (0, 1), &ask),
        );
        let t2 = t.plus(100_000);
        match cover {
            "asked another source" => a.handle_frame(
                t2,
                &member_frame(9, ShortId(50), FrameKind::Progress, 1, (0, 1), &ask),
            ),
            "announced complete" => {
                let done = holder_announce(&id, 2, false, 0);
                a.handle_frame(
                    t2,
                    &member_frame(
                        9,
                        ShortId::BROADCAST,
                        FrameKind::Announce,
                        1,
                        (0, 1),
                        &done.encode(),
                    ),
                );
            }
            _ => {}
        }
        // Past a lone source's longest wait (128 s).
        let symbols = drive_alone(&mut a, t2, 600)
            .iter()
            .filter(|(h, _)| h.kind == FrameKind::Symbol)
            .count();
        outcomes.push((cover, symbols, a.stats().bursts_suppressed));
    }
    assert!(
        outcomes[0].1 > 0,
        "asked and not covered: it serves ({outcomes:?})"
    );
    for o in &outcomes[1..] {
        assert_eq!(o.1, 0, "covered elsewhere: no symbol ({outcomes:?})");
        assert_eq!(o.2, 1, "{outcomes:?}");
    }
}

/// Announcements carry how many neighbours the holder heard lacking the
/// release, counting only neighbours whose frames arrive in sequence (a
/// neighbour heard once, after a gap, is a weak link and not counted).
#[test]
fn a_holder_announces_how_many_strong_neighbours_still_need_the_release() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
    let old = holder_announce(&k.1, 1, false, 0);
    let mut now = Micros(Micros::SECOND);
    // Neighbours 9 and 10: two frames in a row each (strong); 11: one
    // frame (unknown quality: weak).
    for (src, ids) in [(9u16, [0u8, 1]), (10, [5, 6])] {
        now = hear_announces(&mut a, now, src, &ids, &old);
    }
    a.handle_frame(
        now,
        &member_frame(
            11,
            ShortId::BROADCAST,
            FrameKind::Announce,
            0,
            (0, 1),
            &old.encode(),
        ),
    );
    let announced: Vec<Announce> = drive_alone(&mut a, now, 30)
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Announce)
        .map(|(_, p)| Announce::decode(p).unwrap())
        .collect();
    let last = announced.last().expect("it announced");
    assert_eq!(last.release, ReleaseKey::of(&a.release().unwrap()));
    assert_eq!(last.needy, 2, "{announced:?}");
}

/// A link reports what it measured of each neighbour: frames heard out of
/// frames sent (from the gaps in their sequence numbers), whether that
/// makes a strong link, and whether the neighbour announced itself a leaf.
#[test]
fn a_link_reports_each_neighbours_reception_and_role() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let mut ann = holder_announce(&k.1, 1, false, 0);
    let mut now = Micros(Micros::SECOND);
    // 9: every frame heard; 10: ids 0, 4, 8 heard, and it announced itself
    // a leaf. The first frame of each counts as one of two (its gap is not
    // known): 4 of 5 and 3 of 10.
    for (src, ids, leaf) in [(9u16, vec![0u8, 1, 2, 3], false), (10, vec![0, 4, 8], true)] {
        ann.leaf = leaf;
        now = hear_announces(&mut a, now, src, &ids, &ann);
    }
    let links: Vec<NeighbourLink> = a.neighbour_links().collect();
    assert_eq!(
        links,
        [
            NeighbourLink {
                id: ShortId(9),
                heard_percent: 80,
                strong: true,
                leaf: false
            },
            NeighbourLink {
                id: ShortId(10),
                heard_percent: 30,
                strong: false,
                leaf: true
            },
        ]
    );
}

/// Frames from a member using our own short id are dropped and counted,
/// never taken for a neighbour, and reported once: the operator must give
/// one of the two nodes another id.
#[test]
fn a_neighbour_sharing_our_short_id_is_reported_once_and_its_frames_dropped() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let twin = holder_announce(&k.1, 1, false, 3);
    let now = hear_announces(&mut a, Micros(Micros::SECOND), 1, &[0, 1, 2], &twin);
    hear_announces(&mut a, now, 9, &[0, 1], &twin);
    let shared: Vec<LinkEvent> = short_id_shared_events(&mut a);
    assert_eq!(
        shared,
        [LinkEvent::ShortIdShared {
            short_id: ShortId(1)
        }]
    );
    assert_eq!(a.stats().frames_own_id, 3);
    assert_eq!(
        a.neighbours().collect::<Vec<_>>(),
        [ShortId(9)],
        "the twin is no neighbour"
    );
}

/// Two neighbours on one short id cannot fetch from each other; once the
/// driver of one gives its link another id (its answer to the report),
/// the release crosses, and a clash of the new id is reported again.
#[test]
fn a_node_that_changes_its_shared_short_id_fetches_from_its_twin() {
    let (mut a, mut b, new) = holder_and_needy(config(1, 2));
    let mut reported = Vec::new();
    let (done, _) = drive_pair(
        &mut a,
        &mut b,
        Micros(0),
        Micros(1_500 * Micros::SECOND),
        RadioLink::is_complete,
        |b, _| {
            while let Some(e) = b.poll_event() {
                if let LinkEvent::ShortIdShared { short_id } = e {
                    reported.push(short_id);
                    if reported.len() == 1 {
                        b.change_short_id(ShortId(2));
                    } else {
                        b.change_short_id(ShortId(3));
                    }
                }
            }
        },
    );
    assert!(done, "{}", b.describe());
    assert_eq!(b.payload().unwrap(), new.image);
    assert_eq!(reported, [ShortId(1)]);
    assert_eq!(b.neighbours().collect::<Vec<_>>(), [ShortId(1)]);
    // The twin's own report came once, before b moved.
    let twin: Vec<LinkEvent> = short_id_shared_events(&mut a);
    assert!(twin.len() <= 1, "{twin:?}");
    // Moving onto a neighbour's id forgets that neighbour and re-arms
    // the report.
    b.change_short_id(ShortId(1));
    assert!(b.neighbours().next().is_none());
    let ann = holder_announce(&new.id, 1, false, 3);
    hear_announces(&mut b, Micros(1_600 * Micros::SECOND), 1, &[0, 1], &ann);
    let again: Vec<LinkEvent> = short_id_shared_events(&mut b);
    assert_eq!(
        again,
        [LinkEvent::ShortIdShared {
            short_id: ShortId(1)
        }]
    );
}

/// Two nodes beyond each other's range share short id 9; a node between
/// them hears both, so the message ids "from 9" go back and forth. It
/// tells 9 (both hear it) that the id seems shared. One sender that
/// restarted (ids from 0 again) is not taken for two.
#[test]
fn a_neighbour_whose_frames_look_like_two_senders_is_told_its_short_id_is_shared() {
    let k = keys_cached();
    let ann = holder_announce(&k.1, 1, false, 3);
    let notices = |seqs: &[u8]| {
        let mut n = RadioLink::new(config(5, 5), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        let now = hear_announces(&mut n, Micros(Micros::SECOND), 9, seqs, &ann);
        let sent: Vec<(Header, Vec<u8>)> = drive_alone(&mut n, now, 30)
            .into_iter()
            .filter(|(h, _)| h.kind == FrameKind::Notice)
            .collect();
        (sent, n.stats().clash_notices_sent)
    };
    let (sent, count) = notices(&[10, 100, 11, 101, 12, 102, 13, 103]);
    assert_eq!(count, 1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0.dst, ShortId(9));
    assert_eq!(sent[0].1, [1]);
    let (sent, count) = notices(&[10, 11, 12, 13, 0, 1, 2, 3, 4]);
    assert!(sent.is_empty() && count == 0, "{sent:?}");
}

/// A notice that our short id seems shared is reported like a clash we
/// heard ourselves (the driver then moves a derived id); a notice to
/// another id is ignored, an unknown notice is malformed.
#[test]
fn a_notice_that_our_short_id_is_shared_is_reported_as_a_clash() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(9, 9), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let notice = |dst: u16, seq: u8, payload: &[u8]| {
        member_frame(5, ShortId(dst), FrameKind::Notice, seq, (0, 1), payload)
    };
    let shared = |a: &mut RadioLink| short_id_shared_events(a).len();
    a.handle_frame(Micros(1_000), &notice(10, 1, &[1]));
    assert_eq!(shared(&mut a), 0, "a notice to another id");
    a.handle_frame(Micros(2_000), &notice(9, 2, &[7]));
    assert_eq!(shared(&mut a), 0);
    assert_eq!(a.stats().frames_malformed, 1);
    a.handle_frame(Micros(3_000), &notice(9, 3, &[1]));
    a.handle_frame(Micros(4_000), &notice(9, 4, &[1]));
    assert_eq!(shared(&mut a), 1, "reported once");
    assert_eq!(a.stats().clash_notices_heard, 1);
    // Moved to another id, a notice about the old one no longer applies.
    a.change_short_id(ShortId(11));
    a.handle_frame(Micros(5_000), &notice(9, 5, &[1]));
    assert_eq!(shared(&mut a), 0);
}

/// A needy node with two holders in range asks the one that announced the
/// most needy neighbours (a greedy cover: askers gather on few sources).
#[test]
fn a_needy_node_asks_the_holder_that_covers_the_most_neighbours() {
    let k = keys_cached();
    for (cover_20, cover_21, expected) in [(1u8, 5u8, 21u16), (6, 2, 20)] {
        let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        let id = {
            let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
            a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
            a.release().unwrap()
        };
        let mut now = Micros(Micros::SECOND);
        for (src, needy) in [(20u16, cover_20), (21, cover_21)] {
            let a = holder_announce(&id, 2, false, needy);
            now = hear_announces(&mut b, now, src, &[0, 1], &a);
        }
        // The bundle, broadcast by another holder's answer.
        hear_bundle(&mut b, now, 30, &id, &k.2);
        assert_eq!(b.release(), Some(id));
        let asked: Vec<ShortId> = drive_alone(&mut b, now, 30)
            .iter()
            .filter(|(h, _)| h.kind == FrameKind::Progress)
            .map(|(h, _)| h.dst)
            .collect();
        assert_eq!(asked.first(), Some(&ShortId(expected)), "{asked:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Authenticated frames (right mesh key) with random payloads of every
    /// kind never panic a link that carries a release.
    #[test]
    fn authenticated_garbage_never_panics_the_link(
        frames in proptest::collection::vec((1u8..=6, any::<u8>(), 1u8..=20, proptest::collection::vec(any::<u8>(), 0..210)), 1..40)
    ) {
        let k = keys_cached();
        let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
        let codec = FrameCodec::new(&KEY, 222).unwrap();
        let mut now = Micros(0);
        for (kind, index, count, payload) in frames {
            let kind = match kind {
                1 => FrameKind::Announce,
                2 => FrameKind::Request,
                3 => FrameKind::Message,
                4 => FrameKind::Symbol,
                5 => FrameKind::Progress,
                _ => FrameKind::Repair,
            };
            let h = Header { kind, src: ShortId(9), dst: ShortId(1), msg_id: 0, frag_index: index % count, frag_count: count };
            now = now.plus(100_000);
            a.handle_frame(now, &codec.encode(&h, &payload).unwrap());
            a.handle_timeout(now);
            let _ = a.poll_transmit(now);
        }
    }
}

type Cached = (
    meshota_manifest::Verified<meshota_manifest::TrustRoot>,
    Hash,
    Vec<u8>,
    Vec<Vec<u8>>,
);

fn keys_cached() -> &'static Cached {
    static CELL: std::sync::OnceLock<Cached> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let k = keys();
        let old = release(1, &k.release);
        let new = release(2, &k.release);
        (k.trust, old.id, new.bundle, new.chunks)
    })
}

/// Frames a holder sends, with its link, when node 9 asks it for the
/// bundle and then for every symbol.
fn holder_burst() -> (RadioLink, Vec<(Header, Vec<u8>)>) {
    holder_burst_as(config(1, 1))
}

/// [`holder_burst`] of a holder configured as `cfg`.
fn holder_burst_as(cfg: meshota_mesh::radio::RadioConfig) -> (RadioLink, Vec<(Header, Vec<u8>)>) {
    let k = keys_cached();
    let mut a = RadioLink::new(cfg, k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
    let tag = tag_of(&a.release().unwrap());
    let t = Micros(Micros::SECOND);
    let mut bundle_ask = tag.to_vec();
    bundle_ask.push(0);
    a.handle_frame(
        t,
        &member_frame(9, ShortId(1), FrameKind::Request, 0, (0, 1), &bundle_ask),
    );
    a.handle_frame(
        t.plus(1_000),
        &member_frame(
            9,
            ShortId(1),
            FrameKind::Progress,
            1,
            (0, 1),
            &payload_request(tag, k.3.len()),
        ),
    );
    // Past a lone source's longest wait (128 s).
    let sent = drive_alone(&mut a, t.plus(1_000), 700);
    (a, sent)
}

/// Release `id`'s announcement (security version 2) in the state given.
fn announced(id: &Hash, complete: bool, fetching: bool) -> Announce {
    Announce {
        release: ReleaseKey::of(id),
        security_version: 2,
        complete,
        pieces: false,
        fetching,
        needy: 0,
        leaf: false,
    }
}

/// `a` broadcast by member `src`.
fn announce_frame(src: u16, a: &Announce) -> Vec<u8> {
    member_frame(
        src,
        ShortId::BROADCAST,
        FrameKind::Announce,
        0,
        (0, 1),
        &a.encode(),
    )
}

/// A neighbour that hears a burst's symbols before it holds the bundle
/// (it missed the bundle's fragments, which come again later) keeps them
/// and decodes from them once the bundle verifies: no symbol is sent
/// twice for it.
#[test]
fn symbols_heard_before_the_bundle_verifies_are_kept_and_used() {
    let k = keys_cached();
    let (a, sent) = holder_burst();
    let id = a.release().unwrap();
    let symbols: Vec<_> = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Symbol)
        .collect();
    let fragments: Vec<_> = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Message)
        .collect();
    assert!(!symbols.is_empty() && !fragments.is_empty(), "{sent:?}");
    let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let mut now = Micros(Micros::SECOND);
    b.handle_frame(now, &announce_frame(1, &announced(&id, true, false)));
    let mut deliver = |b: &mut RadioLink, (h, p): &(Header, Vec<u8>)| {
        now = now.plus(400_000);
        b.handle_frame(
            now,
            &member_frame(1, h.dst, h.kind, h.msg_id, (h.frag_index, h.frag_count), p),
        );
    };
    for s in &symbols {
        deliver(&mut b, s);
    }
    assert!(b.release().is_none(), "no bundle yet: nothing carried");
    for f in &fragments {
        deliver(&mut b, f);
    }
    assert_eq!(b.release(), Some(id));
    assert!(
        b.is_complete(),
        "decoded from the symbols kept: {}",
        b.describe()
    );
    assert_eq!(b.stats().chunks_decoded, k.3.len() as u64);
}

/// A node that hears of a newer release only from a neighbour still
/// fetching it waits for a holder that can serve the symbols too, and
/// asks that one for the bundle as soon as it is heard.
#[test]
fn the_bundle_is_asked_of_a_complete_holder_not_of_one_still_fetching() {
    let id = keys_release_id();
    assert_asks_only_the_source_heard_later(&announced(&id, false, false), 300);
}

/// The release id of [`holder_burst`]'s release.
fn keys_release_id() -> Hash {
    holder_burst().0.release().unwrap()
}

/// A needy node hears node 5 announce `first` (of [`keys_release_id`]'s
/// release) and sends no request for `quiet_secs`; then it hears node 5
/// again and node 6 announce itself a complete relay, and within a minute
/// asks node 6 and never node 5.
fn assert_asks_only_the_source_heard_later(first: &Announce, quiet_secs: u64) {
    let k = keys_cached();
    let id = keys_release_id();
    let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let t = Micros(Micros::SECOND);
    b.handle_frame(t, &announce_frame(5, first));
    let early = drive_alone(&mut b, t, quiet_secs);
    assert!(
        early.iter().all(|(h, _)| h.kind != FrameKind::Request),
        "asked node 5 ({first:?}): {early:?}"
    );
    let t2 = t.plus((quiet_secs + 1) * Micros::SECOND);
    b.handle_frame(t2, &announce_frame(5, first));
    b.handle_frame(t2, &announce_frame(6, &announced(&id, true, false)));
    let later = drive_alone(&mut b, t2, 60);
    let asked: Vec<_> = later
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Request)
        .map(|(h, _)| h.dst)
        .collect();
    assert!(asked.contains(&ShortId(6)), "{later:?}");
    assert!(!asked.contains(&ShortId(5)), "{later:?}");
}

/// A node that has only heard of a newer release from a node fetching it
/// too asks nobody (nobody heard can serve it), and announces that
/// release as fetching: holders hear a node that lacks it, and nodes with
/// older releases learn of it.
#[test]
fn a_node_that_only_heard_of_a_release_announces_it_as_fetching_and_asks_nobody() {
    let k = keys_cached();
    let (a, _) = holder_burst();
    let id = a.release().unwrap();
    let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let t = Micros(Micros::SECOND);
    b.handle_frame(t, &announce_frame(5, &announced(&id, false, true)));
    let sent = drive_alone(&mut b, t, 1_800);
    assert!(
        sent.iter().all(|(h, _)| h.kind == FrameKind::Announce),
        "{sent:?}"
    );
    let own: Vec<Announce> = sent
        .iter()
        .map(|(_, p)| Announce::decode(p).unwrap())
        .collect();
    assert!(!own.is_empty());
    assert!(
        own.iter()
            .all(|a| a.fetching && a.release == ReleaseKey::of(&id) && !a.complete)
    );
}

/// Two neighbours lost different bundle fragments: the holder sends as
/// many repair fragments as the larger loss (plus a margin), not the
/// union of both losses, and a neighbour missing fragments completes the
/// bundle from them.
#[test]
fn askers_that_lost_different_fragments_are_served_repair_fragments() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
    let id = a.release().unwrap();
    let tag = tag_of(&id);
    let count = k.2.len().div_ceil(bundle::piece_len(222 - 12));
    let ask = |lost: &[usize]| {
        let mut held = Progress::new(count).unwrap();
        (0..count)
            .filter(|i| !lost.contains(i))
            .for_each(|i| held.set(i));
        let mut r = tag.to_vec();
        r.push(count as u8);
        r.extend_from_slice(&held.to_bytes());
        r
    };
    let t = Micros(Micros::SECOND);
    for (who, lost) in [(9u16, [0usize, 1, 2]), (10, [5, 6, 7])] {
        a.handle_frame(
            t,
            &member_frame(who, ShortId(1), FrameKind::Request, 0, (0, 1), &ask(&lost)),
        );
    }
    let sent = drive_alone(&mut a, t, 300);
    let fragments = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Message)
        .count();
    let repairs: Vec<_> = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Repair)
        .collect();
    assert_eq!(fragments, 0, "not the union of the losses");
    let larger_loss = 3;
    assert_eq!(
        repairs.len(),
        larger_loss + larger_loss / 8 + 1,
        "the larger loss plus a margin"
    );
    assert_eq!(a.stats().sent_repairs, repairs.len() as u64);

    // A neighbour that got every fragment but 0, 1 and 2 completes from
    // the repair fragments alone.
    let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let mut now = t;
    b.handle_frame(now, &announce_frame(1, &announced(&id, true, false)));
    let per = bundle::piece_len(222 - 12);
    for i in 3..count {
        now = now.plus(400_000);
        let mut p = tag.to_vec();
        p.extend_from_slice(&k.2[i * per..((i + 1) * per).min(k.2.len())]);
        b.handle_frame(
            now,
            &member_frame(
                1,
                ShortId::BROADCAST,
                FrameKind::Message,
                0,
                (i as u8, count as u8),
                &p,
            ),
        );
    }
    assert!(b.release().is_none());
    for (h, p) in &repairs {
        now = now.plus(400_000);
        b.handle_frame(now, &member_frame(1, h.dst, h.kind, h.msg_id, (0, 1), p));
    }
    assert_eq!(b.release(), Some(id), "{}", b.describe());
}

/// With `lone_wait_factor` F, a source asked by one neighbour and knowing
/// no other needy one waits F times longer before its burst (64-128 s at
/// 1, 256-512 s at 4).
#[test]
fn a_lone_source_waits_lone_wait_factor_times_longer() {
    let k = keys_cached();
    let first_symbol = |factor: u64| {
        let mut cfg = config(1, 1);
        cfg.timing.lone_wait_factor = factor;
        let mut a = RadioLink::new(cfg, k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
        seconds_to_first_symbol(&mut a, 9, Micros(Micros::SECOND))
    };
    let one = first_symbol(1);
    let four = first_symbol(4);
    assert!((64..=128).contains(&one), "{one} s");
    assert!((256..=512).contains(&four), "{four} s");
}

/// A source that just sent a neighbour the bundle answers that
/// neighbour's payload request after a short wait (at most 8 s), not a
/// second election (64-128 s when one neighbour asks): the election for
/// this neighbourhood was just held.
#[test]
fn the_payload_request_after_a_bundle_burst_skips_a_second_election() {
    let k = keys_cached();
    let mut a = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    a.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
    let tag = tag_of(&a.release().unwrap());
    let mut bundle_ask = tag.to_vec();
    bundle_ask.push(0);
    let t = Micros(Micros::SECOND);
    a.handle_frame(
        t,
        &member_frame(9, ShortId(1), FrameKind::Request, 0, (0, 1), &bundle_ask),
    );
    let bundle = drive_alone(&mut a, t, 200);
    assert!(bundle.iter().any(|(h, _)| h.kind == FrameKind::Message));
    let t2 = t.plus(201 * Micros::SECOND);
    let served = seconds_to_first_symbol(&mut a, 9, t2);
    assert!(served <= 8, "{served} s");
    // A neighbour the bundle burst did not serve waits out an election.
    let mut fresh = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    fresh.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
    let elected = seconds_to_first_symbol(&mut fresh, 10, t2);
    assert!(elected >= 64, "{elected} s");
}

/// Member `asker` asks holder `a` for every chunk at `at`; the seconds
/// until `a` sends its first symbol. Bounded in steps.
fn seconds_to_first_symbol(a: &mut RadioLink, asker: u16, at: Micros) -> u64 {
    let tag = tag_of(&a.release().unwrap());
    let chunks = a.chunk_progress().unwrap().1;
    a.handle_frame(
        at,
        &member_frame(
            asker,
            ShortId(1),
            FrameKind::Progress,
            1,
            (0, 1),
            &payload_request(tag, chunks),
        ),
    );
    seconds_until_sends(a, at, FrameKind::Symbol, 3_600).expect("a symbol sent")
}

/// A bundle fetched for one release key that turns out to be another
/// release is refused as the wrong release, before its signature is
/// checked; under its own key it verifies.
#[test]
fn a_bundle_for_another_release_key_is_refused_as_the_wrong_release() {
    let k = keys_cached();
    let policy = meshota_manifest::InstallPolicy {
        hardware: None,
        installed_security_version: None,
        expiration: meshota_manifest::Expiration::dangerous_ignore(),
    };
    let other = ReleaseKey::of(&k.1);
    let wrong = bundle::verify(k.2.clone(), Some(&other), &k.0, &policy, None);
    assert!(
        matches!(
            wrong,
            Err(meshota_mesh::radio::RadioError::WrongRelease { .. })
        ),
        "{wrong:?}"
    );
    let id = bundle::verify(k.2.clone(), None, &k.0, &policy, None)
        .unwrap()
        .id;
    assert!(bundle::verify(k.2.clone(), Some(&ReleaseKey::of(&id)), &k.0, &policy, None).is_ok());
}

/// A leaf (`relay = false`) holding a release serves nobody: asked for
/// the bundle and for every symbol, it sends announcements only, flagged
/// leaf with no coverage, where a relay asked the same sends both.
#[test]
fn a_leaf_holding_the_release_sends_no_bundle_and_no_symbols_when_asked() {
    let kinds = |sent: &[(Header, Vec<u8>)], kind: FrameKind| {
        sent.iter().filter(|(h, _)| h.kind == kind).count()
    };
    let (_, relay) = holder_burst();
    assert!(kinds(&relay, FrameKind::Message) > 0 && kinds(&relay, FrameKind::Symbol) > 0);
    let mut cfg = config(1, 1);
    cfg.relay = false;
    let (leaf, sent) = holder_burst_as(cfg);
    assert!(leaf.is_complete());
    assert!(!sent.is_empty());
    for (h, p) in &sent {
        assert_eq!(h.kind, FrameKind::Announce, "a leaf sent {h:?}");
        let a = Announce::decode(p).unwrap();
        assert!(a.leaf && a.complete && a.needy == 0, "{a:?}");
    }
    assert_eq!(leaf.stats().sent_symbols, 0);
}

/// A leaf receives like any node: from a relay it fetches the bundle,
/// decodes every chunk and verifies the release, sending no symbol.
#[test]
fn a_leaf_fetches_and_verifies_a_release_from_a_relay() {
    let mut cfg = config(2, 2);
    cfg.relay = false;
    let (_, b, _) = one_hop(cfg);
    assert_eq!(b.stats().sent_symbols, 0);
    assert_eq!(b.stats().sent_pieces, 0);
}

/// A needy node never asks a leaf: hearing only a leaf that holds the
/// release it asks nobody; once a relay holding it is heard, it asks the
/// relay.
#[test]
fn a_needy_node_asks_a_relay_and_never_a_leaf() {
    let leaf = Announce {
        leaf: true,
        needy: 9,
        ..announced(&keys_release_id(), true, false)
    };
    assert_asks_only_the_source_heard_later(&leaf, 900);
}

/// Completion is news once: the symbol that completes the release reports
/// it (and restarts announcements), the burst's later symbols, or another
/// neighbour's burst heard afterwards, do not report it again.
#[test]
fn a_release_is_reported_complete_once_however_many_symbols_follow() {
    let k = keys_cached();
    let (a, sent) = holder_burst();
    let id = a.release().unwrap();
    let mut b = RadioLink::new(config(2, 2), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
    let mut now = Micros(Micros::SECOND);
    b.handle_frame(now, &announce_frame(1, &announced(&id, true, false)));
    let mut frames: Vec<_> = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Message)
        .collect();
    let symbols: Vec<_> = sent
        .iter()
        .filter(|(h, _)| h.kind == FrameKind::Symbol)
        .collect();
    // The whole burst, then its symbols again as if from a second source.
    frames.extend(symbols.iter().copied());
    frames.extend(symbols.iter().copied());
    let mut completions = 0;
    let mut completed_at = None;
    for (n, (h, p)) in frames.iter().enumerate() {
        now = now.plus(400_000);
        let src = if n < frames.len() - symbols.len() {
            1
        } else {
            3
        };
        b.handle_frame(
            now,
            &member_frame(
                src,
                h.dst,
                h.kind,
                h.msg_id,
                (h.frag_index, h.frag_count),
                p,
            ),
        );
        while let Some(e) = b.poll_event() {
            if matches!(e, LinkEvent::ReleaseComplete { .. }) {
                completions += 1;
                completed_at.get_or_insert(n);
            }
        }
    }
    assert!(b.is_complete(), "{}", b.describe());
    let at = completed_at.unwrap();
    assert!(
        at + 1 < frames.len() - symbols.len(),
        "the burst's margin symbols came after completion ({at} of {})",
        frames.len()
    );
    assert_eq!(completions, 1);
}

/// Leaves do not keep a relay quiet. A complete relay hearing a complete
/// relay announce every few seconds stays quiet after its first interval
/// (Trickle, k = 1); hearing complete leaves as often, it keeps
/// announcing, since nodes that lack the release never ask a leaf and would
/// otherwise never hear a source.
#[test]
fn complete_leaves_do_not_keep_a_relay_from_announcing() {
    let k = keys_cached();
    let announced_by = |leaf: bool| {
        let mut r = RadioLink::new(config(1, 1), k.0.clone(), (k.1, 1), Micros(0)).unwrap();
        r.add_release(Micros(0), k.2.clone(), &k.3).unwrap();
        let id = r.release().unwrap();
        let neighbour = Announce {
            leaf,
            ..announced(&id, true, false)
        };
        let mut now = Micros(0);
        let mut own = 0;
        for step in 0..300u64 {
            r.handle_frame(now, &announce_frame(7 + (step % 3) as u16, &neighbour));
            own += drive_alone(&mut r, now, 4)
                .iter()
                .filter(|(h, _)| h.kind == FrameKind::Announce)
                .count();
            now = now.plus(4 * Micros::SECOND);
        }
        own
    };
    let among_relays = announced_by(false);
    let among_leaves = announced_by(true);
    assert!(among_relays <= 2, "{among_relays} announcements");
    assert!(among_leaves >= 4, "{among_leaves} announcements");
}
