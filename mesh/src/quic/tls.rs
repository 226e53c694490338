//! TLS and QUIC configuration: rustls on the aws-lc-rs provider, TLS 1.3
//! only, hybrid post-quantum key exchange X25519MLKEM768 only, ALPN
//! `meshota/1`, a per-process self-signed certificate, and a client that
//! accepts any server certificate because trust is established above TLS
//! (see [`DangerousAcceptAnyServerCert`]).
//!
//! quinn's convenience constructors (`ClientConfig::with_platform_verifier`,
//! `ServerConfig::with_single_cert`) pick the process-default provider and
//! lose the hybrid group where that is ring; so the rustls configs are built
//! here with the provider passed explicitly and wrapped in
//! [`QuicClientConfig`] and [`QuicServerConfig`].

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::QuicError;

/// The one ALPN protocol id meshota peers speak.
pub const ALPN: &[u8] = b"meshota/1";

/// The TLS server name clients send. Certificates are not checked against
/// it (see [`DangerousAcceptAnyServerCert`]); it only has to be a valid DNS
/// name.
pub const SERVER_NAME: &str = "meshota";

/// How many unidirectional streams a peer may have open towards us at once:
/// one per message in flight, plus the hello stream. A stream's credit
/// returns only after we read it, so this caps messages per round trip:
/// at 8 a two-node transfer of 20 KiB chunks was stream-credit bound.
/// Memory is bounded by the endpoint's read budget, not by this count.
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 256;

/// A connection with no packet for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive interval, well under [`IDLE_TIMEOUT`], so idle peers stay
/// connected.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The crypto provider every meshota connection uses: aws-lc-rs with the
/// key exchange groups narrowed to X25519MLKEM768. A handshake that
/// completes therefore used the hybrid post-quantum group; a peer that
/// offers only classical groups fails the handshake.
#[must_use]
pub fn crypto_provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    provider
}

/// The transport parameters both sides use: no bidirectional streams, at
/// most [`MAX_CONCURRENT_UNI_STREAMS`] incoming unidirectional streams,
/// keep-alive and idle timeout.
#[must_use]
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS))
        .keep_alive_interval(Some(KEEP_ALIVE))
        // 30 s is far below the 2^62 ms limit, so the conversion never fails.
        .max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t
}

/// The rustls server config: a fresh self-signed certificate (rcgen,
/// ECDSA P-256), TLS 1.3 only, [`crypto_provider`], ALPN [`ALPN`], no client
/// certificates (clients authenticate by channel binding).
///
/// # Errors
/// [`QuicError::Certificate`] if key generation fails, [`QuicError::Tls`]
/// if rustls rejects the configuration.
pub fn rustls_server_config() -> Result<rustls::ServerConfig, QuicError> {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// The quinn server config: [`rustls_server_config`] wrapped in
/// [`QuicServerConfig`], with [`transport_config`].
///
/// # Errors
/// As [`rustls_server_config`]; [`QuicError::Config`] if quinn rejects it.
pub fn server_config() -> Result<quinn::ServerConfig, QuicError> {
    let quic =
        QuicServerConfig::try_from(rustls_server_config()?).map_err(|e| QuicError::Config {
            reason: e.to_string(),
        })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The rustls client config: TLS 1.3 only, [`crypto_provider`], ALPN
/// [`ALPN`], and [`DangerousAcceptAnyServerCert`] as the certificate
/// verifier.
///
/// # Errors
/// [`QuicError::Tls`] if rustls rejects the configuration.
pub fn rustls_client_config() -> Result<rustls::ClientConfig, QuicError> {
    let provider = Arc::new(crypto_provider());
    let verifier = Arc::new(DangerousAcceptAnyServerCert {
        provider: provider.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// The quinn client config: [`rustls_client_config`] wrapped in
/// [`QuicClientConfig`], with [`transport_config`].
///
/// # Errors
/// As [`rustls_client_config`]; [`QuicError::Config`] if quinn rejects it.
pub fn client_config() -> Result<quinn::ClientConfig, QuicError> {
    let quic =
        QuicClientConfig::try_from(rustls_client_config()?).map_err(|e| QuicError::Config {
            reason: e.to_string(),
        })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// A server certificate verifier that accepts **any** certificate chain.
///
/// It still checks the TLS 1.3 `CertificateVerify` signature against the
/// presented certificate, so the TLS handshake itself is well formed.
///
/// Why this is safe here: certificates are per-process, self-signed and
/// carry no identity; meshota does not use them for trust. Right after the
/// handshake each side signs the connection's TLS exporter value with its
/// ML-DSA-65 device key (channel binding, `super::hello`). A relay or man
/// in the middle that terminates TLS holds two sessions with two different
/// exporter values and cannot produce the victims' signatures over either,
/// so the connection is refused before any message is exchanged. Never use
/// this verifier without that check.
#[derive(Debug)]
pub struct DangerousAcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for DangerousAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is enabled; a TLS 1.2 signature is never expected.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
