//! The gateway's one error type.

use std::path::PathBuf;

use meshota_manifest::Hash;

/// Result with the gateway's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a publish or a sync. Each variant names the
/// file or URL involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A local file helper failed (atomic write, bounded read).
    #[error(transparent)]
    File(#[from] meshota_manifest::fs::FileError),
    /// A signed document (catalog, manifest) is malformed or not trusted.
    #[error("{what}: {source}")]
    Document {
        /// Which document (a URL or a path).
        what: String,
        /// The rule it broke.
        source: meshota_manifest::Error,
    },
    /// The catalog offered is not acceptable: older than the one held,
    /// a reused sequence, or not signed as the trust root requires.
    #[error("{url}: catalog refused: {source}")]
    Catalog {
        /// Where it came from.
        url: String,
        /// The rule it broke ([`meshota_manifest::Error::OlderCatalog`] for a
        /// replayed or stale catalog).
        source: meshota_manifest::Error,
    },
    /// The chunk store failed or refused.
    #[error("store: {0}")]
    Store(#[from] meshota_blobstore::Error),
    /// An object the publisher needs is not in the store.
    #[error("{what} {id} is not in the store: run `release create --store` with this store first")]
    NotInStore {
        /// What kind of object.
        what: &'static str,
        /// Its id.
        id: Hash,
    },
    /// The origin could not be reached, or the transfer broke off (the
    /// partial download is kept and resumed next time).
    #[error("GET {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The origin answered with an unexpected HTTP status.
    #[error("GET {url}: HTTP status {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// An object is larger than the catalog, manifest or index says it may
    /// be: refused before it is read further.
    #[error("GET {url}: more than {max} bytes: refused (corrupt or hostile origin)")]
    ObjectTooLarge {
        /// The URL.
        url: String,
        /// The most bytes allowed.
        max: u64,
    },
    /// An object's content does not hash to its id: corrupt or tampered on
    /// the origin or on the way. Nothing of it was stored.
    #[error("GET {url}: content hashes to {actual}, expected {expected}: corrupt object refused")]
    ObjectHashMismatch {
        /// The URL.
        url: String,
        /// The id asked for.
        expected: Hash,
        /// What the bytes hash to.
        actual: Hash,
    },
    /// An object decoded but does not describe what it was fetched for
    /// (a manifest whose id differs from the catalog's entry, an index of
    /// another image, a patch index that does not decode).
    #[error("GET {url}: {reason}")]
    ObjectInvalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A gateway setting is unusable (bad origin URL, unreadable CA file).
    #[error("gateway config: {0}")]
    Config(String),
}

impl Error {
    /// A closure making [`Error::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
