//! The QUIC transport on loopback: channel binding, admission, framing
//! limits and the post-quantum key exchange. Every test runs under a tokio
//! timeout and every loop is bounded.
#![cfg(feature = "quic")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use meshota_manifest::{KeyId, SecretKey};
use meshota_mesh::quic::hello::{EXPORTER_LABEL, EXPORTER_LEN, Hello};
use meshota_mesh::quic::{
    Admission, CloseCode, MAX_MESSAGE_BYTES, PeerCheck, PeerConn, QuicEndpoint, QuicError, frame,
    tls,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32], "device").unwrap()
}

fn allow(ids: &[KeyId]) -> Admission {
    Admission::AllowList(ids.iter().copied().collect::<BTreeSet<_>>())
}

fn bind(key: SecretKey, hardware: &str, admission: Admission) -> QuicEndpoint {
    QuicEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        key,
        hardware.into(),
        admission,
    )
    .unwrap()
}

/// Connects `client` to `server` and accepts on `server` at the same time.
async fn pair(
    client: &QuicEndpoint,
    server: &QuicEndpoint,
) -> (
    Result<PeerConn, QuicError>,
    Option<Result<PeerConn, QuicError>>,
) {
    let addr = server.local_addr().unwrap();
    tokio::join!(client.connect(addr), server.accept())
}

/// A plain quinn client with meshota's TLS config but no meshota logic, to
/// play a misbehaving peer.
async fn raw_client(server: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(tls::client_config().unwrap());
    let conn = ep.connect(server, tls::SERVER_NAME).unwrap().await.unwrap();
    (ep, conn)
}

/// Sends a hello signed by `key` over `signed_value(exporter)`, then the
/// "admitted" verdict, on the raw connection's first uni stream.
async fn raw_hello(conn: &quinn::Connection, key: &SecretKey, tamper: bool) {
    let mut exporter = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .unwrap();
    if tamper {
        // What a relay terminating TLS would have: some other session's value.
        exporter[0] ^= 1;
    }
    let hello = Hello::sign(key, &exporter, "raw").unwrap();
    let mut out = conn.open_uni().await.unwrap();
    frame::write_frame(&mut out, &hello.encode().unwrap())
        .await
        .unwrap();
    frame::write_frame(&mut out, &[1]).await.unwrap();
    out.finish().unwrap();
}

/// The application close code the raw connection was closed with.
async fn close_code(conn: &quinn::Connection) -> CloseCode {
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            CloseCode::from_code(close.error_code.into_inner())
        }
        other => panic!("closed without an application code: {other}"),
    }
}

#[tokio::test]
async fn connects_with_channel_binding_and_round_trips_messages_both_ways() {
    bounded(async {
        let (ka, kb) = (key(1), key(2));
        let (ida, idb) = (ka.id(), kb.id());
        let a = bind(ka, "pi4", allow(&[idb]));
        let b = bind(kb, "esp32", allow(&[ida]));
        let (ca, cb) = pair(&a, &b).await;
        let mut ca = ca.unwrap();
        let mut cb = cb.unwrap().unwrap();
        assert_eq!(ca.peer_id(), idb);
        assert_eq!(ca.peer_key().id(), idb);
        assert_eq!(ca.hardware(), "esp32");
        assert_eq!(cb.peer_id(), ida);
        assert_eq!(cb.hardware(), "pi4");
        assert_eq!(ca.remote_addr(), b.local_addr().unwrap());

        let sizes = [0usize, 1, 200, 65_536, 1_000_003, MAX_MESSAGE_BYTES];
        let message = |n: usize, tag: u8| -> Vec<u8> {
            (0..n).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
        };
        for &n in &sizes {
            ca.send(&message(n, 0xa0)).await.unwrap();
            cb.send(&message(n, 0xb0)).await.unwrap();
        }
        // Streams may complete out of order: collect, then compare by size.
        for (conn, tag) in [(&mut cb, 0xa0), (&mut ca, 0xb0)] {
            let mut got = Vec::new();
            for _ in 0..sizes.len() {
                got.push(conn.recv().await.unwrap().expect("message"));
            }
            got.sort_by_key(|m| m.len());
            for (m, &n) in got.iter().zip(&sizes) {
                assert_eq!(m.as_ref(), message(n, tag).as_slice(), "size {n}");
            }
        }

        ca.close("done");
        assert!(
            cb.recv().await.unwrap().is_none(),
            "orderly close ends recv"
        );
    })
    .await;
}

#[tokio::test]
async fn refuses_peer_not_on_allow_list() {
    bounded(async {
        let outsider = key(7);
        let outsider_id = outsider.id();
        let client = bind(outsider, "pi4", Admission::Open);
        let server = bind(key(2), "pi4", allow(&[key(9).id()]));
        let (c, s) = pair(&client, &server).await;
        match s.unwrap() {
            Err(QuicError::NotAdmitted { peer }) => assert_eq!(peer, outsider_id),
            other => panic!("server: expected NotAdmitted, got {other:?}"),
        }
        match c {
            Err(QuicError::ClosedByPeer { code, .. }) => assert_eq!(code, CloseCode::NotAdmitted),
            other => panic!("client: expected ClosedByPeer(NotAdmitted), got {other:?}"),
        }
    })
    .await;
}

/// A certificate-style check: the credentials must be "cert-for:" and the
/// proven key's id (what a real chain check establishes).
fn certified() -> Admission {
    Admission::Certified(PeerCheck::new(|key, creds| {
        if creds == format!("cert-for:{}", key.id()).as_bytes() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes of credentials do not name this key",
                creds.len()
            ))
        }
    }))
}

fn bind_certified(key: SecretKey, creds: &str) -> QuicEndpoint {
    QuicEndpoint::bind_with_credentials(
        "127.0.0.1:0".parse().unwrap(),
        key,
        "pi4".into(),
        certified(),
        creds.as_bytes().to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn certified_admission_admits_peers_whose_credentials_pass_the_check() {
    bounded(async {
        let (a, b) = (key(1), key(2));
        let a_creds = format!("cert-for:{}", a.id());
        let b_creds = format!("cert-for:{}", b.id());
        let client = bind_certified(a, &a_creds);
        let server = bind_certified(b, &b_creds);
        let (c, s) = pair(&client, &server).await;
        c.unwrap();
        s.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn certified_admission_refuses_another_keys_credentials_and_none() {
    bounded(async {
        let server = bind_certified(key(2), &format!("cert-for:{}", key(2).id()));
        // Credentials of another key (a stolen certificate), then none at all.
        for (n, creds) in [
            (3u8, format!("cert-for:{}", key(4).id())),
            (5, String::new()),
        ] {
            let outsider = key(n);
            let outsider_id = outsider.id();
            let client = bind_certified(outsider, &creds);
            let (c, s) = pair(&client, &server).await;
            match s.unwrap() {
                Err(QuicError::NotCertified { peer, reason }) => {
                    assert_eq!(peer, outsider_id);
                    assert!(reason.contains("do not name this key"), "{reason}");
                }
                other => panic!("server: expected NotCertified, got {other:?}"),
            }
            match c {
                Err(QuicError::ClosedByPeer { code, .. }) => {
                    assert_eq!(code, CloseCode::NotAdmitted);
                }
                other => panic!("client: expected ClosedByPeer(NotAdmitted), got {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn refuses_server_not_on_clients_allow_list() {
    bounded(async {
        let server_key = key(2);
        let server_id = server_key.id();
        let client = bind(key(1), "pi4", allow(&[key(9).id()]));
        let server = bind(server_key, "pi4", Admission::Open);
        let (c, s) = pair(&client, &server).await;
        match c {
            Err(QuicError::NotAdmitted { peer }) => assert_eq!(peer, server_id),
            other => panic!("client: expected NotAdmitted, got {other:?}"),
        }
        match s.unwrap() {
            Err(QuicError::ClosedByPeer { code, .. }) => assert_eq!(code, CloseCode::NotAdmitted),
            other => panic!("server: expected ClosedByPeer(NotAdmitted), got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn refuses_hello_signed_over_a_different_exporter_value() {
    bounded(async {
        let server = bind(key(2), "pi4", Admission::Open);
        let (_ep, conn) = raw_client(server.local_addr().unwrap()).await;
        let relay_key = key(5);
        let relay_id = relay_key.id();
        raw_hello(&conn, &relay_key, true).await;
        match server.accept().await.unwrap() {
            Err(QuicError::ChannelBindingFailed { peer }) => assert_eq!(peer, relay_id),
            other => panic!("expected ChannelBindingFailed, got {other:?}"),
        }
        assert_eq!(close_code(&conn).await, CloseCode::ChannelBindingFailed);
    })
    .await;
}

#[tokio::test]
async fn refuses_malformed_hello() {
    bounded(async {
        let server = bind(key(2), "pi4", Admission::Open);
        let (_ep, conn) = raw_client(server.local_addr().unwrap()).await;
        let mut out = conn.open_uni().await.unwrap();
        frame::write_frame(&mut out, b"MOTA\x01\x30 not postcard")
            .await
            .unwrap();
        out.finish().unwrap();
        assert!(matches!(
            server.accept().await.unwrap(),
            Err(QuicError::MalformedHello { .. })
        ));
        assert_eq!(close_code(&conn).await, CloseCode::ProtocolViolation);
    })
    .await;
}

#[tokio::test]
async fn refuses_oversize_frame_without_allocating_it() {
    bounded(async {
        let server = bind(key(2), "pi4", Admission::Open);
        // Announced lengths just over the limit and at u32::MAX: the second
        // would be a 4 GiB allocation if the check came after it.
        for announced in [MAX_MESSAGE_BYTES as u32 + 1, u32::MAX] {
            let (_ep, conn) = raw_client(server.local_addr().unwrap()).await;
            raw_hello(&conn, &key(5), false).await;
            let mut peer = server.accept().await.unwrap().unwrap();
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(&announced.to_be_bytes()).await.unwrap();
            s.write_all(b"a few body bytes").await.unwrap();
            match peer.recv().await {
                Err(QuicError::FrameTooLarge { len, max }) => {
                    assert_eq!(len, u64::from(announced));
                    assert_eq!(max, MAX_MESSAGE_BYTES as u64);
                }
                other => panic!("expected FrameTooLarge, got {other:?}"),
            }
            assert!(peer.recv().await.unwrap().is_none());
            assert_eq!(close_code(&conn).await, CloseCode::MessageTooLarge);
        }
    })
    .await;
}

#[tokio::test]
async fn refuses_truncated_frame_and_trailing_bytes() {
    bounded(async {
        let server = bind(key(2), "pi4", Admission::Open);
        let truncated: &[u8] = &[0, 0, 0, 10, 1, 2, 3];
        let trailing: &[u8] = &[0, 0, 0, 1, 9, 9];
        let short_header: &[u8] = &[0, 0];
        for bytes in [truncated, trailing, short_header] {
            let (_ep, conn) = raw_client(server.local_addr().unwrap()).await;
            raw_hello(&conn, &key(5), false).await;
            let mut peer = server.accept().await.unwrap().unwrap();
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(bytes).await.unwrap();
            s.finish().unwrap();
            match peer.recv().await {
                Err(QuicError::MalformedFrame { .. }) => {}
                other => panic!("{bytes:?}: expected MalformedFrame, got {other:?}"),
            }
            assert_eq!(close_code(&conn).await, CloseCode::ProtocolViolation);
        }
    })
    .await;
}

#[tokio::test]
async fn send_refuses_message_over_the_limit_and_keeps_the_connection() {
    bounded(async {
        let a = bind(key(1), "pi4", Admission::Open);
        let b = bind(key(2), "pi4", Admission::Open);
        let (ca, cb) = pair(&a, &b).await;
        let (ca, mut cb) = (ca.unwrap(), cb.unwrap().unwrap());
        let too_big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            ca.send(&too_big).await,
            Err(QuicError::MessageTooLarge { .. })
        ));
        ca.send(b"still here").await.unwrap();
        assert_eq!(cb.recv().await.unwrap().unwrap().as_ref(), b"still here");
    })
    .await;
}

#[tokio::test]
async fn open_mode_admits_anyone() {
    bounded(async {
        let server = bind(key(2), "pi4", Admission::Open);
        for n in 10..13u8 {
            let client = bind(key(n), "pi4", Admission::Open);
            let (c, s) = pair(&client, &server).await;
            let (c, s) = (c.unwrap(), s.unwrap().unwrap());
            assert_eq!(s.peer_id(), key(n).id());
            assert_eq!(c.peer_id(), server.device_id());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_sending_floods_at_once_through_their_senders_deliver_everything() {
    // More messages than the stream limit and the read budget hold at
    // once, sent by both sides at the same time: each side's sends wait
    // for credit the other returns only by reading, so sending and
    // receiving must run apart (the daemon's peer task does the same).
    const N: usize = 600;
    const LEN: usize = 64 * 1024;
    let (a, b) = (key(41), key(42));
    let ids = [a.id(), b.id()];
    let ea = bind(a, "rpi4", allow(&ids));
    let eb = bind(b, "rpi4", allow(&ids));
    let (ca, cb) = bounded(pair(&ea, &eb)).await;
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap().unwrap());
    let flood = |s: meshota_mesh::quic::PeerSender, tag: u8| {
        tokio::spawn(async move {
            for i in 0..N {
                let mut m = vec![tag; LEN];
                m[..8].copy_from_slice(&(i as u64).to_le_bytes());
                s.send(&m).await.unwrap();
            }
        })
    };
    let (sa, sb) = (flood(ca.sender(), 0xa), flood(cb.sender(), 0xb));
    let (got_b, got_a) = bounded(async {
        tokio::join!(
            async {
                let mut n = 0;
                while n < N {
                    let m = cb.recv().await.unwrap().unwrap();
                    assert_eq!((m.len(), m[LEN - 1]), (LEN, 0xa));
                    n += 1;
                }
                n
            },
            async {
                let mut n = 0;
                while n < N {
                    let m = ca.recv().await.unwrap().unwrap();
                    assert_eq!((m.len(), m[LEN - 1]), (LEN, 0xb));
                    n += 1;
                }
                n
            }
        )
    })
    .await;
    assert_eq!((got_a, got_b), (N, N));
    sa.await.unwrap();
    sb.await.unwrap();
}
