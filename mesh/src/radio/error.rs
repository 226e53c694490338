//! Why a radio message was refused. Input from the air gets one of these,
//! never a panic; the link counts them ([`super::LinkStats`]) and drops
//! the frame.

use alloc::string::String;

/// A radio message or bundle that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RadioError {
    /// The frame layer refused it (bad MAC, length, version, kind).
    #[error("frame refused: {0}")]
    Frame(#[from] meshota_radios::Error),
    /// The message ends before its fields do.
    #[error("{what}: truncated")]
    Truncated {
        /// Which message.
        what: &'static str,
    },
    /// A field holds a value its format does not allow.
    #[error("{what}: {reason}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bundle (signed manifest and chunk index) longer than
    /// [`super::bundle::BUNDLE_BYTES_MAX`].
    #[error("bundle of {len} bytes exceeds {max}")]
    BundleTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The manifest failed verification against the trust root.
    #[error("manifest rejected: {0}")]
    Manifest(String),
    /// The assembled bundle is not the release that was announced.
    #[error("bundle is release {found}, not the announced {expected}")]
    WrongRelease {
        /// The announced id (short form).
        expected: String,
        /// The id of the manifest received (short form).
        found: String,
    },
    /// The chunk index does not belong to the manifest.
    #[error("chunk index rejected: {0}")]
    Index(String),
    /// The bundle carries its chunk index as a delta against a base index
    /// this node does not hold (a large release crosses the radio only to
    /// nodes on the base of its first listed patch).
    #[error("chunk index is a delta against base index {base}, which this node does not hold")]
    OtherBase {
        /// The delta's base index id (short form).
        base: String,
    },
}
