//! Every way a bundle or a want list can be refused, each naming what failed.

use meshota_manifest::Hash;

use crate::format::RecordKind;

/// A bundle, want list or key that was refused, or the I/O under it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than the configured limit (checked before reading).
    #[error("bundle is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not a bundle (or want list) of a version this build reads.
    #[error("not a meshota {what}: {reason}")]
    NotABundle {
        /// "bundle" or "want list".
        what: &'static str,
        /// What was wrong with the header.
        reason: String,
    },
    /// The file ends before its end record: it was cut short (a copy that
    /// did not finish, a stick pulled too early).
    #[error("bundle is truncated: it ends at byte {offset} before its end record")]
    Truncated {
        /// Where it ended.
        offset: u64,
    },
    /// A record is malformed: bad kind, order, length or encoding.
    #[error("record {index} (at byte {offset}): {reason}")]
    Malformed {
        /// Record number, from 0.
        index: u64,
        /// Its byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record's content does not hash to its id, or the end record's
    /// digest does not match the bytes before it: the file was corrupted.
    #[error("{kind} {id} is corrupt: its content does not hash to its id")]
    Corrupt {
        /// The record kind.
        kind: RecordKind,
        /// The id it claimed.
        id: String,
    },
    /// The end record's digest or count does not match the records read.
    #[error("bundle is corrupt: {0}")]
    CorruptStream(String),
    /// An encrypted record or key stanza failed authentication.
    #[error("bundle is encrypted and {0}")]
    Decrypt(String),
    /// The bundle is encrypted and no key to open it was given.
    #[error(
        "bundle is encrypted to {recipients} recipient(s); give a recipient's ML-KEM-768 private key to open it"
    )]
    NeedKey {
        /// How many recipients it names.
        recipients: usize,
    },
    /// The given key is not among the bundle's recipients.
    #[error("bundle is encrypted, but not to this key (recipient id {key}); it names: {named}")]
    NotARecipient {
        /// The key's recipient id.
        key: String,
        /// The recipient ids the bundle names.
        named: String,
    },
    /// The bundle's trust root is not the verifier's.
    #[error(
        "bundle carries a foreign trust root (version {offered}, id {id}); this node trusts version {trusted} ({trusted_id})"
    )]
    ForeignTrust {
        /// The bundle's root version.
        offered: u64,
        /// Its id.
        id: String,
        /// The node's root version.
        trusted: u64,
        /// The node's root id.
        trusted_id: String,
    },
    /// The bundle carries a newer, validly rotated trust root; the node must
    /// take the rotation before it takes releases signed under it.
    #[error(
        "bundle carries trust root version {offered}, a valid rotation of this node's version {trusted}; rotate the node's trust root first, then import"
    )]
    TrustRotationFirst {
        /// The node's version.
        trusted: u64,
        /// The bundle's version.
        offered: u64,
    },
    /// A manifest failed verification against the trust root.
    #[error("release manifest {id} rejected: {source}")]
    Manifest {
        /// Manifest id.
        id: String,
        /// The rule it broke.
        #[source]
        source: meshota_manifest::Error,
    },
    /// A manifest is older than what the node has installed: a replayed
    /// bundle (or one made for another fleet state).
    #[error(
        "release {version} ({id}) has security version {offered}, older than the installed {installed}: a replayed or stale bundle"
    )]
    Replayed {
        /// Manifest id.
        id: String,
        /// Its version string.
        version: String,
        /// Its security version.
        offered: u64,
        /// The node's.
        installed: u64,
    },
    /// A record that no manifest in the bundle references.
    #[error("{kind} {id} is not referenced by any release in the bundle")]
    Unreferenced {
        /// The record kind.
        kind: RecordKind,
        /// Its id.
        id: String,
    },
    /// A release in the bundle lacks its chunk index.
    #[error("release {version} ({id}) is in the bundle without its chunk index {index}")]
    MissingIndex {
        /// Release id.
        id: String,
        /// Its version.
        version: String,
        /// The index it names.
        index: String,
    },
    /// A chunk index or patch index failed to decode.
    #[error("{kind} {id}: {source}")]
    Blob {
        /// The record kind.
        kind: RecordKind,
        /// Its id.
        id: String,
        /// The decoding error.
        #[source]
        source: meshota_blobstore::Error,
    },
    /// The store refused or failed a write while committing.
    #[error("committing to the store: {0}")]
    Store(#[source] meshota_blobstore::Error),
    /// A key file or key bytes are not a valid ML-KEM-768 key.
    #[error("ML-KEM-768 key: {0}")]
    Key(String),
    /// A requested release or its parts are not in the exporting store.
    #[error("exporting {what} {id}: {reason}")]
    Export {
        /// What was being exported.
        what: &'static str,
        /// Its id.
        id: String,
        /// Why it failed.
        reason: String,
    },
    /// The system random number generator failed.
    #[error("the system RNG failed: {0}")]
    Rng(String),
}

impl Error {
    /// An I/O error at `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(kind: RecordKind, id: &Hash) -> Self {
        Self::Corrupt {
            kind,
            id: id.to_hex(),
        }
    }

    pub(crate) fn unreferenced(kind: RecordKind, id: &Hash) -> Self {
        Self::Unreferenced {
            kind,
            id: id.to_hex(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
