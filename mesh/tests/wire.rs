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
