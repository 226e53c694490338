use super::*;
use crate::frame::FrameCodec;
use crate::rng::SeededRng;
use proptest::prelude::*;

fn object(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SeededRng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Sends every source symbol, then repair symbols, each lost with
/// probability `loss` (seeded), until the decoder yields the object;
/// returns the object and how many symbols were received. Bounded: at
/// most four times the source symbol count are sent.
fn transfer(
    data: &[u8],
    symbol_size: usize,
    loss: f64,
    seed: u64,
    shuffle: bool,
) -> (Vec<u8>, u32) {
    let mut enc = ObjectEncoder::new(data, symbol_size).unwrap();
    let info = *enc.info();
    let mut dec = ObjectDecoder::new(info).unwrap();
    let mut rng = SeededRng::new(seed);
    let k = info.source_symbols();
    let mut stream = enc.source_symbols();
    if shuffle {
        // Fisher–Yates with the seeded generator: any order works.
        for i in (1..stream.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            stream.swap(i, j);
        }
    }
    let mut sent = 0u32;
    let mut batch = stream.into_iter();
    loop {
        let symbol = match batch.next() {
            Some(s) => s,
            None => {
                assert!(sent < 4 * k, "not decoded after {sent} symbols");
                batch = enc.repair_symbols(16).into_iter();
                continue;
            }
        };
        sent += 1;
        if rng.chance(loss) {
            continue;
        }
        let received_before = dec.received();
        if let Some(out) = dec.push(&symbol).unwrap() {
            // It cannot decode from fewer symbols than the source count.
            assert!(received_before + 1 >= k);
            assert!(dec.is_complete());
            return (out, dec.received());
        }
    }
}

#[test]
fn decodes_with_ten_percent_seeded_loss_once_enough_repair_symbols_arrive() {
    // 20 KiB in 51-byte frames (EU868 DR0–DR2): 32-byte symbols.
    let codec = FrameCodec::new(&[1; 32], 51).unwrap();
    let size = symbol_size_for(codec.max_payload());
    assert_eq!(size, 32);
    let data = object(20 * 1024, 1);
    let (out, received) = transfer(&data, size, 0.10, 11, false);
    assert_eq!(out, data);
    let k = (20 * 1024u32).div_ceil(32);
    // RaptorQ needs about K symbols, rarely a few more.
    assert!(
        received >= k && received <= k + 8,
        "received {received}, K {k}"
    );
}

#[test]
fn decodes_with_thirty_percent_seeded_loss_in_any_order() {
    // 100 KiB in 222-byte frames (EU868 DR4–DR6): 203-byte symbols (no
    // alignment: every byte of the frame that is not a header is data).
    let size = symbol_size_for(222 - crate::frame::OVERHEAD);
    assert_eq!(size, 203);
    let data = object(100 * 1024, 2);
    let (out, _) = transfer(&data, size, 0.30, 12, true);
    assert_eq!(out, data);
    // A few KiB at the smallest frames too.
    let small = object(3_000, 3);
    assert_eq!(transfer(&small, 31, 0.30, 13, true).0, small);
}

#[test]
fn rejects_symbols_of_another_object() {
    let a = ObjectEncoder::new(&object(4_000, 4), 31).unwrap();
    let b = ObjectEncoder::new(&object(4_000, 5), 31).unwrap();
    let mut dec = ObjectDecoder::new(*a.info()).unwrap();
    for s in b.source_symbols() {
        assert_eq!(dec.push(&s), Err(Error::ForeignSymbol));
    }
    assert_eq!(dec.received(), 0);
    // Wrong lengths with the right tag.
    let mut s = a.source_symbols()[0].clone();
    s.push(0);
    assert!(matches!(dec.push(&s), Err(Error::MalformedSymbol { .. })));
    s.truncate(SYMBOL_HEADER_LEN + 30);
    assert!(matches!(dec.push(&s), Err(Error::MalformedSymbol { .. })));
    assert!(matches!(
        dec.push(&[0; 3]),
        Err(Error::MalformedSymbol { .. })
    ));
}

#[test]
fn a_corrupted_symbol_never_yields_wrong_bytes() {
    let data = object(2_000, 6);
    let enc = ObjectEncoder::new(&data, 31).unwrap();
    let mut dec = ObjectDecoder::new(*enc.info()).unwrap();
    let mut symbols = enc.source_symbols();
    symbols[3][SYMBOL_HEADER_LEN] ^= 0xFF;
    let mut results = Vec::new();
    for s in &symbols {
        results.push(dec.push(s));
    }
    assert_eq!(results.last(), Some(&Err(Error::DecodedObjectMismatch)));
    assert!(!dec.is_complete());
    assert_eq!(dec.received(), 0);
}

#[test]
fn object_and_symbol_sizes_outside_the_limits_are_refused() {
    assert!(matches!(
        ObjectEncoder::new(&[], 31),
        Err(Error::ObjectSize { .. })
    ));
    assert!(matches!(
        ObjectEncoder::new(&alloc::vec![0; OBJECT_BYTES_MAX + 1], 31),
        Err(Error::ObjectSize { .. })
    ));
    assert!(matches!(
        ObjectEncoder::new(&[1], 0),
        Err(Error::SymbolSize { .. })
    ));
    assert!(matches!(
        ObjectEncoder::new(&[1], SYMBOL_SIZE_MAX + 1),
        Err(Error::SymbolSize { .. })
    ));
    let bad = ObjectInfo {
        id: [0; 32],
        len: 100_000,
        symbol_size: 1, // more source symbols than one block holds
    };
    assert!(matches!(
        ObjectDecoder::new(bad),
        Err(Error::SymbolSize { .. })
    ));
    // Every encoder symbol is exactly header + symbol size.
    let enc = ObjectEncoder::new(&object(1_000, 7), 100).unwrap();
    assert_eq!(enc.info().symbol_size, 100);
    assert!(
        enc.source_symbols()
            .iter()
            .all(|s| s.len() == SYMBOL_HEADER_LEN + 100)
    );
    assert!(matches!(
        ObjectEncoder::new(&object(100_000, 8), 1),
        Err(Error::SymbolSize { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Symbols with the right tag and length but arbitrary
    /// symbol ids and data never panic the decoder; whatever it yields
    /// hashes to the id.
    #[test]
    fn arbitrary_symbols_never_panic_the_decoder(
        symbols in prop::collection::vec((any::<[u8; 3]>(), prop::collection::vec(any::<u8>(), 31)), 1..200)
    ) {
        let info = ObjectInfo { id: [9; 32], len: 1_000, symbol_size: 31 };
        let mut dec = ObjectDecoder::new(info).unwrap();
        for (esi, data) in symbols {
            let mut s = info.tag().to_vec();
            s.extend_from_slice(&esi);
            s.extend_from_slice(&data);
            if let Ok(Some(out)) = dec.push(&s) {
                prop_assert_eq!(*blake3::hash(&out).as_bytes(), info.id);
            }
            prop_assert!(dec.received() <= symbols_max(&info));
        }
    }
}

#[test]
fn senders_starting_at_different_repair_points_never_repeat_each_other() {
    let data = object(20 * 1024, 5);
    let mut a = ObjectEncoder::new(&data, 200).unwrap();
    let mut b = ObjectEncoder::new(&data, 200).unwrap();
    a.repair_from(0);
    b.repair_from(1 << 20);
    let k = a.info().source_symbols();
    let from_a = a.repair_symbols(k / 2 + 2);
    let from_b = b.repair_symbols(k / 2 + 2);
    let ids = |s: &[Vec<u8>]| -> std::collections::BTreeSet<u32> {
        s.iter().map(|x| symbol_esi(x).unwrap()).collect()
    };
    // Consecutive repair symbols carry consecutive ids, past the start.
    let a_ids: Vec<u32> = from_a.iter().map(|x| symbol_esi(x).unwrap()).collect();
    assert!(a_ids.windows(2).all(|w| w[1] == w[0] + 1), "{a_ids:?}");
    assert!(symbol_esi(&from_b[0]).unwrap() >= 1 << 20);
    assert_eq!(symbol_esi(&from_a[0][..6]), None, "shorter than the header");
    assert!(ids(&from_a).is_disjoint(&ids(&from_b)));
    // Half from each sender is enough: the receiver needs no repeats.
    let mut dec = ObjectDecoder::new(*a.info()).unwrap();
    let mut out = None;
    for s in from_a.iter().zip(&from_b).flat_map(|(x, y)| [x, y]) {
        if let Some(bytes) = dec.push(s).unwrap() {
            out = Some(bytes);
            break;
        }
    }
    assert_eq!(out.as_deref(), Some(&data[..]));
    // Past the largest start the encoder clamps and still yields symbols
    // whose 24-bit symbol id is valid.
    b.repair_from(u32::MAX);
    let far = b.repair_symbols(2);
    assert_eq!(far.len(), 2);
    assert!(dec.push(&far[0]).is_ok());
}
