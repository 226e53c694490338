//! The QUIC transport's TLS negotiates the hybrid post-quantum group
//! X25519MLKEM768 and nothing else. Every test runs under a timeout and
//! every loop is bounded.
#![cfg(feature = "quic")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use meshota_manifest::SecretKey;
use meshota_mesh::quic::{Admission, QuicEndpoint, tls};
use rustls::NamedGroup;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn bind(n: u8) -> QuicEndpoint {
    QuicEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        SecretKey::from_seed([n; 32], "device").unwrap(),
        "pi4".into(),
        Admission::Open,
    )
    .unwrap()
}

#[test]
fn provider_offers_only_x25519mlkem768() {
    let groups: Vec<NamedGroup> = tls::crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(groups, [NamedGroup::X25519MLKEM768]);
}

/// Moves every pending TLS record from `from` to `to`.
fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut records = Vec::new();
    for _ in 0..64 {
        if !from.wants_write() {
            break;
        }
        from.write_tls(&mut records).unwrap();
    }
    let mut rest = records.as_slice();
    for _ in 0..1024 {
        if rest.is_empty() {
            break;
        }
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
    assert!(rest.is_empty(), "records left over");
}

#[test]
fn configs_negotiate_x25519mlkem768_with_each_other() {
    // The same rustls configs that quinn is given, in an in-memory handshake,
    // so rustls' own negotiated_key_exchange_group() is reachable.
    let client = rustls::ClientConnection::new(
        Arc::new(tls::rustls_client_config().unwrap()),
        tls::SERVER_NAME.try_into().unwrap(),
    )
    .unwrap();
    let server =
        rustls::ServerConnection::new(Arc::new(tls::rustls_server_config().unwrap())).unwrap();
    let (mut client, mut server) = (
        rustls::Connection::Client(client),
        rustls::Connection::Server(server),
    );
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    for side in [&client, &server] {
        assert_eq!(
            side.negotiated_key_exchange_group().unwrap().name(),
            NamedGroup::X25519MLKEM768
        );
        assert_eq!(side.alpn_protocol(), Some(tls::ALPN));
    }
}

#[tokio::test]
async fn refuses_client_offering_only_classical_key_exchange() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = bind(2);
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        // meshota's client settings, but offering the classical group only.
        let mut client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClassicalAcceptAny))
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![tls::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let result = ep
            .connect(server.local_addr().unwrap(), tls::SERVER_NAME)
            .unwrap()
            .await;
        assert!(
            result.is_err(),
            "a classical-only handshake must not complete"
        );
    })
    .await
    .expect("test timed out");
}

/// End to end through quinn: needs quinn's test-only feature to expose the
/// group (`--features quic-pq-group-test`).
#[cfg(feature = "quic-pq-group-test")]
#[tokio::test]
async fn quinn_connections_negotiate_x25519mlkem768() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (bind(1), bind(2));
        let (ca, cb) = tokio::join!(a.connect(b.local_addr().unwrap()), b.accept());
        for conn in [ca.unwrap(), cb.unwrap().unwrap()] {
            let data = conn
                .connection()
                .handshake_data()
                .unwrap()
                .downcast::<quinn::crypto::rustls::HandshakeData>()
                .unwrap();
            assert_eq!(
                data.negotiated_key_exchange_group,
                NamedGroup::X25519MLKEM768
            );
        }
    })
    .await
    .expect("test timed out");
}

/// Accepts any certificate; checks TLS 1.3 signatures with the default
/// aws-lc-rs algorithms. For the classical-only test client.
#[derive(Debug)]
struct ClassicalAcceptAny;

impl rustls::client::danger::ServerCertVerifier for ClassicalAcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
