//! The mesh crate's error type.

use alloc::string::String;

/// What can go wrong in the protocol core. Errors caused by a peer are
/// reported as penalties against that peer, never as panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message larger than [`crate::wire::MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message ends early.
    #[error("truncated message")]
    Truncated,
    /// Another protocol version.
    #[error(
        "unsupported protocol version {found} (this build speaks {})",
        crate::wire::PROTOCOL_VERSION
    )]
    UnsupportedProtocol {
        /// The version byte found.
        found: u8,
    },
    /// The message does not decode.
    #[error("malformed message")]
    Malformed,
    /// A list inside a message is longer than its limit.
    #[error("{what}: {count} exceeds the limit of {max}")]
    LimitExceeded {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Encoding failed (not expected).
    #[error("message encoding failed")]
    Encode,
    /// A release given to the node locally was rejected.
    #[error("release rejected: {0}")]
    Release(String),
}
