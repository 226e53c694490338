//! The transport's errors and the application close codes peers exchange.

use meshota_manifest::KeyId;
use quinn::{ConnectionError, VarInt};

/// Why a connection was closed, as carried in a QUIC `CONNECTION_CLOSE`
/// application error code. Every code this crate sends is one of the named
/// variants; codes from other software arrive as [`CloseCode::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// 0: an orderly close (`PeerConn::close`); not an error.
    Normal,
    /// 1: the peer's hello signature did not verify over this connection's
    /// TLS exporter value (possible relay or man in the middle).
    ChannelBindingFailed,
    /// 2: the peer's device key is not admitted by the closing side.
    NotAdmitted,
    /// 3: the peer broke the wire format (malformed hello or frame).
    ProtocolViolation,
    /// 4: the peer announced a frame longer than the limit.
    MessageTooLarge,
    /// 5: the hello exchange did not finish in time.
    HelloTimeout,
    /// Any other code (never sent by this crate).
    Other(u64),
}

impl CloseCode {
    /// The wire value. `from_code(c.code()) == c` for every variant.
    #[must_use]
    pub const fn code(self) -> u64 {
        match self {
            Self::Normal => 0,
            Self::ChannelBindingFailed => 1,
            Self::NotAdmitted => 2,
            Self::ProtocolViolation => 3,
            Self::MessageTooLarge => 4,
            Self::HelloTimeout => 5,
            Self::Other(code) => code,
        }
    }

    /// Decodes a wire value; unknown values become [`CloseCode::Other`].
    #[must_use]
    pub const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Normal,
            1 => Self::ChannelBindingFailed,
            2 => Self::NotAdmitted,
            3 => Self::ProtocolViolation,
            4 => Self::MessageTooLarge,
            5 => Self::HelloTimeout,
            other => Self::Other(other),
        }
    }

    pub(crate) fn varint(self) -> VarInt {
        // Every named code is tiny; an `Other` beyond 2^62 is clamped.
        VarInt::from_u64(self.code()).unwrap_or(VarInt::MAX)
    }
}

/// Everything that can go wrong in the QUIC transport. Errors caused by a
/// peer's bytes are typed here and never panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// Binding or reading the UDP socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Generating the per-process self-signed certificate failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The rustls configuration was not usable for QUIC.
    #[error("QUIC configuration: {reason}")]
    Config {
        /// What was wrong.
        reason: String,
    },
    /// quinn refused to start the connection (bad address, endpoint closed).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed for a transport reason (timeout, reset, TLS).
    #[error("connection: {0}")]
    Connection(ConnectionError),
    /// The peer closed the connection with an application code.
    #[error("closed by peer: {code:?} ({reason})")]
    ClosedByPeer {
        /// The code the peer sent.
        code: CloseCode,
        /// The peer's human-readable reason (untrusted text).
        reason: String,
    },
    /// This side already closed the connection.
    #[error("connection closed locally")]
    LocallyClosed,
    /// The TLS exporter could not produce the channel-binding value.
    #[error("TLS exporter unavailable")]
    Exporter,
    /// The peer negotiated an ALPN other than `meshota/1`.
    #[error("peer did not negotiate ALPN meshota/1")]
    WrongAlpn,
    /// The hello exchange did not finish within `HELLO_TIMEOUT`.
    #[error("hello exchange timed out")]
    HelloTimeout,
    /// The peer's hello is not a valid hello (header, size, encoding).
    #[error("malformed hello: {reason}")]
    MalformedHello {
        /// What was wrong.
        reason: &'static str,
    },
    /// The peer's signature does not verify over this connection's exporter
    /// value: its TLS session is not the one it signed for.
    #[error("channel binding failed for peer {peer}")]
    ChannelBindingFailed {
        /// The key the peer claimed.
        peer: KeyId,
    },
    /// The peer presented this endpoint's own device key (a reflected hello).
    #[error("peer presented our own device key")]
    ReflectedHello,
    /// The peer proved its key but the admission policy does not admit it.
    #[error("peer {peer} is not admitted")]
    NotAdmitted {
        /// The refused peer's key id.
        peer: KeyId,
    },
    /// The peer proved its key but its certificate does not admit it
    /// (another fleet's CA, expired, revoked, or not for this key).
    #[error("peer {peer} is not admitted: {reason}")]
    NotCertified {
        /// The refused peer's key id.
        peer: KeyId,
        /// Why its credentials were refused.
        reason: String,
    },
    /// A frame header announced more bytes than allowed; nothing was
    /// allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// A frame was truncated, had trailing bytes or an invalid verdict.
    #[error("malformed frame: {reason}")]
    MalformedFrame {
        /// What was wrong.
        reason: &'static str,
    },
    /// `send` was given a message longer than `MAX_MESSAGE_BYTES`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The message length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// A stream was reset or stopped by the peer.
    #[error("stream: {reason}")]
    Stream {
        /// What happened.
        reason: String,
    },
}

impl QuicError {
    /// The code this side closes the connection with when it hits this
    /// error, or `None` when the error does not call for a close from here
    /// (the connection is already gone, or the failure is local).
    #[must_use]
    pub const fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::ChannelBindingFailed { .. } | Self::ReflectedHello => {
                Some(CloseCode::ChannelBindingFailed)
            }
            Self::NotAdmitted { .. } | Self::NotCertified { .. } => Some(CloseCode::NotAdmitted),
            Self::MalformedHello { .. }
            | Self::MalformedFrame { .. }
            | Self::WrongAlpn
            | Self::Stream { .. } => Some(CloseCode::ProtocolViolation),
            Self::FrameTooLarge { .. } => Some(CloseCode::MessageTooLarge),
            Self::HelloTimeout => Some(CloseCode::HelloTimeout),
            _ => None,
        }
    }

    /// Whether this error only reports an orderly end of the connection
    /// (a `Normal` close by either side).
    #[must_use]
    pub const fn is_orderly_close(&self) -> bool {
        matches!(
            self,
            Self::LocallyClosed
                | Self::ClosedByPeer {
                    code: CloseCode::Normal,
                    ..
                }
        )
    }
}

impl From<ConnectionError> for QuicError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::ApplicationClosed(close) => Self::ClosedByPeer {
                code: CloseCode::from_code(close.error_code.into_inner()),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            ConnectionError::LocallyClosed => Self::LocallyClosed,
            other => Self::Connection(other),
        }
    }
}

impl From<quinn::ReadError> for QuicError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => Self::Stream {
                reason: other.to_string(),
            },
        }
    }
}

impl From<quinn::ReadExactError> for QuicError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(r) => r.into(),
            quinn::ReadExactError::FinishedEarly(_) => Self::MalformedFrame {
                reason: "stream ended inside a frame header",
            },
        }
    }
}

impl From<quinn::WriteError> for QuicError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => Self::Stream {
                reason: other.to_string(),
            },
        }
    }
}

impl From<quinn::ClosedStream> for QuicError {
    fn from(e: quinn::ClosedStream) -> Self {
        Self::Stream {
            reason: e.to_string(),
        }
    }
}
