//! The QUIC transport the mesh protocol runs over (feature `quic`, on by
//! default): authenticated peer connections that carry opaque message byte
//! strings. The protocol core decides what the messages mean; this module
//! only moves them.
//!
//! # What it promises
//!
//! - **Post-quantum key exchange.** TLS 1.3 through rustls on the aws-lc-rs
//!   provider, passed explicitly, with X25519MLKEM768 as the only key
//!   exchange group ([`tls::crypto_provider`]): every connection that
//!   completes used the hybrid group.
//! - **Authentication above TLS.** TLS certificates are per-process and
//!   self-signed and prove nothing. After the handshake each side signs the
//!   TLS exporter value with its ML-DSA-65 device key ([`hello`]); a
//!   relay that terminates TLS cannot produce those signatures. A
//!   [`PeerConn`] exists only after both signatures verified and both
//!   sides admitted each other ([`Admission`]).
//! - **Bounded input.** Hellos and messages are length-prefixed and their
//!   length is checked against a limit ([`MAX_MESSAGE_BYTES`] for messages)
//!   before anything is allocated; a malformed or oversize frame closes the
//!   connection with a [`CloseCode`] and yields a typed [`QuicError`]. No
//!   network input can panic.
//!
//! # Wire
//!
//! ALPN `meshota/1`. Each side's first unidirectional stream carries
//! `frame(hello) || frame([1])` (the hello, then the verdict "admitted")
//! and ends. Every later unidirectional stream carries exactly one message
//! as one frame. A frame is a `u32` big-endian length and that many bytes.
//! Bidirectional streams are not allowed.
//!
//! # What it does not do
//!
//! - No discovery, reconnection or peer management: the caller dials
//!   addresses and keeps the connections it wants.
//! - No message ordering across streams, and no meaning of messages.
//! - Fleet membership is an allow-list of device key ids, open mode, or a
//!   [`PeerCheck`] the driver supplies over the certificate chain a hello
//!   carries (`Admission::Certified`); this crate parses no X.509.
//! - Not sans-IO: this is a tokio driver, so it owns sockets and timers
//!   (tokio's clock), unlike the protocol core.

mod endpoint;
mod error;
pub mod frame;
pub mod hello;
pub mod tls;

pub use endpoint::{
    Admission, HELLO_TIMEOUT, MAX_PENDING_HANDSHAKES, PeerCheck, PeerConn, PeerSender,
    QuicEndpoint, READ_BUDGET_BYTES,
};
pub use error::{CloseCode, QuicError};
pub use frame::MAX_MESSAGE_BYTES;
