//! The message decoder against hostile bytes.
#![allow(clippy::unwrap_used, missing_docs)]

use meshota_manifest::Hash;
use meshota_mesh::Error;
use meshota_mesh::wire::{MAX_MESSAGE_BYTES, Message, PROTOCOL_VERSION};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn decoding_random_bodies_behind_the_version_byte_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut v = vec![PROTOCOL_VERSION];
        v.extend_from_slice(&bytes);
        let _ = Message::decode(&v);
    }

    #[test]
    fn every_message_round_trips(request in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..512), seed in any::<[u8; 32]>()) {
        let hash = Hash(seed);
        for m in [
            Message::Summary { releases: vec![hash], installed: Some(hash) },
            Message::GetChunk { request, hash },
            Message::NoChunk { request, hash },
            Message::Busy { request, hash },
            Message::Chunk { request, hash, data: data.clone() },
            Message::HaveMore { release: hash, ordinals: vec![request] },
            Message::Have { release: hash, bitmap: data.clone() },
        ] {
            prop_assert_eq!(Message::decode(&m.encode().unwrap()).unwrap(), m);
        }
    }
}

#[test]
fn rejects_oversize_message_before_decoding() {
    let bytes = vec![PROTOCOL_VERSION; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        Message::decode(&bytes),
        Err(Error::Oversize {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
}

#[test]
fn rejects_other_protocol_version_and_trailing_bytes() {
    let mut m = Message::GetManifest { id: Hash([1; 32]) }.encode().unwrap();
    m.push(0);
    assert_eq!(Message::decode(&m), Err(Error::Malformed));
    m.pop();
    m[0] = 9;
    assert_eq!(
        Message::decode(&m),
        Err(Error::UnsupportedProtocol { found: 9 })
    );
    assert_eq!(Message::decode(&[]), Err(Error::Truncated));
}

#[test]
fn rejects_summary_longer_than_its_limit() {
    let m = Message::Summary {
        releases: vec![Hash([0; 32]); meshota_mesh::wire::MAX_SUMMARY_RELEASES + 1],
        installed: None,
    };
    assert!(matches!(
        Message::decode(&m.encode().unwrap()),
        Err(Error::LimitExceeded { .. })
    ));
}

/// Byte fields are encoded as postcard byte strings, which is exactly the
/// wire form of a `u8` sequence: a varint length, then the raw bytes.
#[test]
fn chunk_message_wire_form_is_version_variant_request_hash_length_bytes() {
    let data: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let m = Message::Chunk {
        request: 5,
        hash: Hash([7; 32]),
        data: data.clone(),
    };
    let mut expected = vec![PROTOCOL_VERSION, 9, 5];
    expected.extend_from_slice(&[7; 32]);
    expected.extend_from_slice(&[0xac, 0x02]); // varint(300)
    expected.extend_from_slice(&data);
    assert_eq!(m.encode().unwrap(), expected);
    // A plain sequence of u8 (the previous encoding) gives the same bytes.
    let as_seq = postcard::to_allocvec(&(5u32, [7u8; 32], data)).unwrap();
    assert_eq!(&expected[2..], &as_seq[..]);
}
