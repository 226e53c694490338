//! The pieces together, as the simulator will drive them: a sender that asks
//! its duty-cycle budget before every frame broadcasts a 4 KiB object as
//! RaptorQ symbols in authenticated 51-byte frames over the simulated medium
//! (10 % extra loss, collisions with a chatty neighbour); every receiver
//! authenticates frames, feeds symbols to its decoder and ends up with the
//! object; a receiver with another mesh key gets nothing; nobody breaks
//! the duty cycle. Bounded by a frame count.

use meshota_radios::{
    Bandwidth, Channel, DutyCycleBudget, EU868, Error, FrameCodec, FrameKind, Header, LoraParams,
    Medium, MediumConfig, Micros, ObjectDecoder, ObjectEncoder, ShortId, SpreadingFactor,
    symbol_size_for,
};

/// EU868 g1: 1 %, 36 s of airtime per hour.
const G1: u32 = 868_100_000;
const FRAMES_MAX: usize = 2_000;

#[test]
fn coded_broadcast_over_the_medium_reaches_every_receiver_within_the_duty_cycle() {
    let mesh_key = [5u8; 32];
    let limit = EU868.frame_limit(&[0, 1, 2]).unwrap();
    let codec = FrameCodec::new(&mesh_key, limit).unwrap();
    let stranger = FrameCodec::new(&[6u8; 32], limit).unwrap();
    let object: Vec<u8> = (0..4_096u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut encoder = ObjectEncoder::new(&object, symbol_size_for(codec.max_payload())).unwrap();
    let info = *encoder.info();

    // Node 0 sends, nodes 1–3 receive with our key, node 4 with another key,
    // node 5 chats on the same channel now and then (collisions).
    let config = MediumConfig {
        extra_loss: 0.1,
        ..MediumConfig::eu868()
    };
    let positions = [
        (0.0, 0.0),
        (500.0, 0.0),
        (0.0, 700.0),
        (-900.0, 0.0),
        (0.0, -400.0),
        (300.0, 300.0),
    ];
    let mut medium = Medium::with_positions(config, &positions, 77);
    let channel = Channel {
        freq_hz: G1,
        params: LoraParams::new(SpreadingFactor::Sf9, Bandwidth::Khz125),
    };
    let mut budget = DutyCycleBudget::new(EU868);
    let mut chatter_budget = DutyCycleBudget::new(EU868);
    let mut decoders: Vec<ObjectDecoder> =
        (0..3).map(|_| ObjectDecoder::new(info).unwrap()).collect();
    let mut got: Vec<Option<Vec<u8>>> = vec![None; 3];
    let mut bad_macs = 0;
    let mut collisions = 0;

    let mut queue = encoder.source_symbols().into_iter();
    let mut now = Micros(0);
    let mut sent = 0;
    while got.iter().any(Option::is_none) {
        assert!(sent < FRAMES_MAX, "not delivered after {sent} frames");
        let symbol = match queue.next() {
            Some(s) => s,
            None => {
                queue = encoder.repair_symbols(8).into_iter();
                continue;
            }
        };
        let header = Header {
            kind: FrameKind::Symbol,
            src: ShortId(1),
            dst: ShortId::BROADCAST,
            msg_id: 0,
            frag_index: 0,
            frag_count: 1,
        };
        let frame = codec.encode(&header, &symbol).unwrap();
        let airtime = channel.params.time_on_air_us(frame.len()).unwrap();
        now = budget.earliest(now, G1, airtime).unwrap();
        budget.try_transmit(now, G1, airtime).unwrap();
        let tx = medium.transmit(now, 0, channel, frame).unwrap();
        // Every seventh frame the chatter talks over the second half of it.
        if sent % 7 == 3 {
            let at = Micros(now.0 + airtime / 2);
            let chat = codec
                .encode(
                    &Header {
                        src: ShortId(9),
                        ..header
                    },
                    &[0; 20],
                )
                .unwrap();
            let chat_air = channel.params.time_on_air_us(chat.len()).unwrap();
            if chatter_budget.try_transmit(at, G1, chat_air).is_ok() {
                medium.transmit(at, 5, channel, chat).unwrap();
            }
        }
        sent += 1;
        now = tx.end;
        let next = medium.next_event().unwrap_or(now).max(now);
        now = next;
        for reception in medium.advance(now).unwrap() {
            let Ok(bytes) = reception.outcome else {
                collisions +=
                    usize::from(reception.outcome == Err(meshota_radios::Loss::Collision));
                continue;
            };
            match reception.to {
                1..=3 => {
                    let frame = codec.decode(&bytes).unwrap();
                    if frame.header.kind != FrameKind::Symbol || frame.header.src != ShortId(1) {
                        continue;
                    }
                    let i = reception.to - 1;
                    if let Some(out) = decoders[i].push(frame.payload).unwrap() {
                        got[i] = Some(out);
                    }
                }
                4 => match stranger.decode(&bytes) {
                    Err(Error::BadMac) => bad_macs += 1,
                    other => panic!("a node with another key parsed {other:?}"),
                },
                _ => {}
            }
        }
    }
    for out in &got {
        assert_eq!(out.as_deref(), Some(&object[..]));
    }
    assert!(bad_macs > 0);
    assert!(collisions > 0, "the chatter never collided");
    assert!(medium.duty_cycle_violations().is_empty());
    // 4 KiB in 31-byte symbols is K = 133; losses and collisions cost some more.
    assert!(sent >= usize::try_from(info.source_symbols()).unwrap());
    // ~200 frames of ~0.2 s exceed g1's 36 s per hour: the budget held the
    // sender back until the window slid.
    assert!(now.0 > Micros::HOUR, "done at {} µs", now.0);
}
