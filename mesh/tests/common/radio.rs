//! Two LoRa radio links driven directly, for the radio tests: the link
//! configuration they share, a lossless channel between two links, frames
//! crafted by hand and one link run alone.

use meshota_manifest::Expiration;
use meshota_manifest::Hash;
use meshota_mesh::TrickleConfig;
use meshota_mesh::radio::msg::{Announce, ReleaseKey, tag_of};
use meshota_mesh::radio::{RadioConfig, RadioLink, RadioTiming, bundle};
use meshota_radios::{
    Bandwidth, Channel, EU868, FrameCodec, FrameKind, Header, LoraParams, Micros, ShortId,
    SpreadingFactor,
};

/// The mesh key of every honest link in these tests.
pub const KEY: [u8; 32] = [7; 32];
/// EU868 sub-band g3.
pub const FREQ: u32 = 869_525_000;
/// DR5's frame length.
pub const FRAME_LEN: usize = 222;

/// Link `id`'s configuration: EU868 g3, SF7/125 kHz, hardware "board".
pub fn config(id: u16, seed: u64) -> RadioConfig {
    RadioConfig {
        mesh_key: KEY,
        short_id: ShortId(id),
        channel: Channel {
            freq_hz: FREQ,
            params: LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125),
        },
        region: EU868,
        frame_len: FRAME_LEN,
        trickle: TrickleConfig::LORA,
        timing: RadioTiming::LORA,
        seed,
        hardware: Some("board".into()),
        expiration: Expiration::dangerous_ignore(),
        relay: true,
    }
}

/// Runs `a` and `b` in range of each other over a channel that loses
/// nothing (every frame one sends reaches the other when its airtime
/// ends) from `start` until `stop(b)` or `until`, calling `after_step(b,
/// now)` after every step (the test acting as `b`'s driver). Bounded in
/// steps. Returns whether `stop(b)` held, and the time reached.
pub fn drive_pair(
    a: &mut RadioLink,
    b: &mut RadioLink,
    start: Micros,
    until: Micros,
    stop: impl Fn(&RadioLink) -> bool,
    mut after_step: impl FnMut(&mut RadioLink, Micros),
) -> (bool, Micros) {
    let params = config(0, 0).channel.params;
    let mut in_flight: Vec<(Micros, bool, Vec<u8>)> = Vec::new();
    let mut now = start;
    for _ in 0..200_000 {
        if stop(b) || now > until {
            break;
        }
        in_flight.sort_by_key(|f| f.0);
        while in_flight.first().is_some_and(|f| f.0 <= now) {
            let (_, to_b, bytes) = in_flight.remove(0);
            if to_b {
                b.handle_frame(now, &bytes);
            } else {
                a.handle_frame(now, &bytes);
            }
        }
        for (link, to_b) in [(&mut *a, true), (&mut *b, false)] {
            if link.poll_timeout() <= now {
                link.handle_timeout(now);
                if let Some(f) = link.poll_transmit(now) {
                    assert!(f.len() <= FRAME_LEN);
                    let airtime = params.time_on_air_us(f.len()).unwrap();
                    in_flight.push((now.plus(airtime), to_b, f));
                }
            }
        }
        after_step(b, now);
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .chain(in_flight.iter().map(|f| f.0))
            .min()
            .unwrap();
        now = next.max(Micros(now.0 + 1));
    }
    (stop(b), now)
}

/// Frames of mesh members (the right key) crafted by hand: `msg_id` is the
/// sender's sequence number of unfragmented frames (link quality).
pub fn member_frame(
    src: u16,
    dst: ShortId,
    kind: FrameKind,
    msg_id: u8,
    (index, count): (u8, u8),
    payload: &[u8],
) -> Vec<u8> {
    let h = Header {
        kind,
        src: ShortId(src),
        dst,
        msg_id,
        frag_index: index,
        frag_count: count,
    };
    FrameCodec::new(&KEY, 222)
        .unwrap()
        .encode(&h, payload)
        .unwrap()
}

/// Runs one link alone for `secs` seconds of virtual time and returns the
/// frames it sent, decoded (header, payload).
pub fn drive_alone(link: &mut RadioLink, from: Micros, secs: u64) -> Vec<(Header, Vec<u8>)> {
    let codec = FrameCodec::new(&KEY, 222).unwrap();
    let end = from.plus(secs * Micros::SECOND);
    let mut now = from;
    let mut sent = Vec::new();
    for _ in 0..100_000 {
        if now > end {
            break;
        }
        link.handle_timeout(now);
        if let Some(f) = link.poll_transmit(now) {
            let d = codec.decode(&f).unwrap();
            sent.push((d.header, d.payload.to_vec()));
        }
        now = link.poll_timeout().max(now.plus(1_000));
    }
    sent
}

/// Runs `link` alone from `from` and returns the whole seconds until it
/// first sends a frame of `kind`, or `None` within `max_secs`. Bounded in
/// steps.
pub fn seconds_until_sends(
    link: &mut RadioLink,
    from: Micros,
    kind: FrameKind,
    max_secs: u64,
) -> Option<u64> {
    let codec = FrameCodec::new(&KEY, 222).unwrap();
    let end = from.plus(max_secs * Micros::SECOND);
    let mut now = from;
    for _ in 0..100_000 {
        if now > end {
            break;
        }
        link.handle_timeout(now);
        if let Some(f) = link.poll_transmit(now) {
            if codec.decode(&f).unwrap().header.kind == kind {
                return Some(now.since(from) / Micros::SECOND);
            }
        }
        now = link.poll_timeout().max(now.plus(1_000));
    }
    None
}

/// `link` hears member `src` announce `a` in frames with message ids
/// `seqs` (their gaps are what the link measures the neighbour's link
/// quality by), 10 ms apart from `now`; returns the time of the last.
pub fn hear_announces(
    link: &mut RadioLink,
    mut now: Micros,
    src: u16,
    seqs: &[u8],
    a: &Announce,
) -> Micros {
    for &seq in seqs {
        now = now.plus(10_000);
        let f = member_frame(
            src,
            ShortId::BROADCAST,
            FrameKind::Announce,
            seq,
            (0, 1),
            &a.encode(),
        );
        link.handle_frame(now, &f);
    }
    now
}

/// `link` hears member `src` broadcast every fragment of `bundle_bytes`,
/// the bundle of release `id` (as a holder's answer to another node).
pub fn hear_bundle(link: &mut RadioLink, now: Micros, src: u16, id: &Hash, bundle_bytes: &[u8]) {
    let piece = bundle::piece_len(FrameCodec::new(&KEY, FRAME_LEN).unwrap().max_payload());
    let count = u8::try_from(bundle_bytes.len().div_ceil(piece)).unwrap();
    for i in 0..count {
        let from = usize::from(i) * piece;
        let mut p = tag_of(id).to_vec();
        p.extend_from_slice(&bundle_bytes[from..(from + piece).min(bundle_bytes.len())]);
        let f = member_frame(
            src,
            ShortId::BROADCAST,
            FrameKind::Message,
            0,
            (i, count),
            &p,
        );
        link.handle_frame(now, &f);
    }
}

/// A relay's announcement that it holds every chunk of `release` (and
/// every piece of its patch if `pieces`), with `needy` needy neighbours.
pub fn holder_announce(release: &Hash, security_version: u64, pieces: bool, needy: u8) -> Announce {
    Announce {
        release: ReleaseKey::of(release),
        security_version,
        complete: true,
        pieces,
        fetching: false,
        needy,
        leaf: false,
    }
}

/// The signed manifest (encoded) of a release on hardware "board": one
/// component `rootfs` whose chunk index is `target`, listing `patch` from
/// the image `base_image`.
pub fn patch_release_manifest(
    signer: &meshota_manifest::SecretKey,
    version: &str,
    target: &meshota_blobstore::ChunkIndex,
    base_image: Hash,
    patch: &meshota_blobstore::patch::PatchBuild,
) -> Vec<u8> {
    use meshota_manifest::{
        Component, PatchRef, ReleaseManifest, RolloutPolicy, SignedDocument, UnixTime,
    };
    let body = ReleaseManifest {
        product: "test".into(),
        hardware: "board".into(),
        channel: "stable".into(),
        version: version.into(),
        security_version: 2,
        created: UnixTime(1_790_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: target.total_size(),
            image_hash: target.image_hash(),
            chunk_index: target.id().unwrap(),
            chunking: *target.params(),
        }],
        patches: vec![PatchRef {
            component: "rootfs".into(),
            base_image_hash: base_image,
            patch: patch.id,
            size: patch.encoded.len() as u64,
        }],
        rollout: RolloutPolicy::default(),
    };
    SignedDocument::sign(body, &[signer])
        .unwrap()
        .encode()
        .unwrap()
}
