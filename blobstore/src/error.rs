//! The crate's one error type.

use std::path::PathBuf;

use meshota_manifest::{ChunkingParams, Hash};

/// Every way a blobstore operation can fail. Variants carry the values
/// involved so the CLI can name the file, the chunk and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `put` was given bytes that do not hash to the id they were put under:
    /// the sender lied or the bytes were damaged in transit. Nothing stored.
    #[error("chunk {expected} was given bytes whose BLAKE3 is {actual}; refusing to store them")]
    HashMismatch {
        /// The id the caller claimed.
        expected: Hash,
        /// The BLAKE3 of the bytes actually given.
        actual: Hash,
    },
    /// The chunk is neither stored nor available from a seeded image.
    #[error("chunk {hash} is not in the store")]
    ChunkNotFound {
        /// The chunk asked for.
        hash: Hash,
    },
    /// A stored chunk no longer decodes or hashes to its id (disk corruption,
    /// tampering). It was not returned; `verify` quarantines such chunks.
    #[error(
        "chunk {hash} is corrupt at rest ({detail}); run `meshota store verify` to quarantine it"
    )]
    CorruptChunk {
        /// The chunk's id.
        hash: Hash,
        /// What was wrong: decode failure, wrong length or wrong hash.
        detail: String,
    },
    /// A chunk indexed in place in a seeded file no longer matches; the entry
    /// has been dropped from the seed index.
    #[error("seeded chunk {hash} in {path} changed on disk; dropped it from the seed index")]
    SeedStale {
        /// The chunk's id.
        hash: Hash,
        /// The seeded file.
        path: PathBuf,
    },
    /// A chunk is larger than any chunk the store accepts.
    #[error("chunk of {len} bytes exceeds the limit of {max} bytes")]
    ChunkTooLarge {
        /// The chunk's length.
        len: usize,
        /// The limit ([`crate::MAX_CHUNK_BYTES`]).
        max: usize,
    },
    /// The directory exists and is not empty but carries no store marker.
    #[error(
        "{path} is not a meshota store (no MESHOTA-STORE marker); pass an empty or new directory to create one"
    )]
    NotAStore {
        /// The directory given.
        path: PathBuf,
    },
    /// Another process (or another handle in this one) has the store open;
    /// a store is used by one process at a time.
    #[error(
        "{path} is in use by another process (a meshota daemon or command); stop it or use another store"
    )]
    StoreInUse {
        /// The store directory.
        path: PathBuf,
    },
    /// The store marker names a format this build does not read.
    #[error(
        "{path} is a meshota store of an unsupported format ({found:?}); use a matching meshota version"
    )]
    UnsupportedStore {
        /// The marker file.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// The chunking parameters are out of range for FastCDC 2020 or fail
    /// [`ChunkingParams::validate`].
    #[error("invalid chunking parameters {params:?}: {reason}")]
    InvalidChunkingParams {
        /// The parameters given.
        params: ChunkingParams,
        /// Which bound was broken.
        reason: &'static str,
    },
    /// An encoded chunk index is longer than [`crate::index::MAX_INDEX_BYTES`].
    #[error("chunk index of {len} bytes exceeds the limit of {max} bytes")]
    IndexTooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An encoded chunk index ended before its header or body did.
    #[error("chunk index truncated: {len} bytes, {what}")]
    IndexTruncated {
        /// The encoded length.
        len: usize,
        /// Which part is missing.
        what: &'static str,
    },
    /// The bytes do not start with the meshota magic `MOTA`.
    #[error("not a meshota document: magic {found:02x?}, expected \"MOTA\"")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A format version this build does not read.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The document is of another kind than expected.
    #[error("wrong document kind {found} (expected {expected})")]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind byte expected.
        expected: u8,
    },
    /// The index body does not decode, has trailing bytes, is not in
    /// canonical form, or breaks an invariant (lengths, counts, sizes).
    #[error("malformed chunk index: {reason}")]
    IndexMalformed {
        /// What was wrong.
        reason: String,
    },
    /// No chunk index with this id is in the store.
    #[error("chunk index {hash} is not in the store")]
    IndexNotFound {
        /// The index id asked for.
        hash: Hash,
    },
    /// GC found a pin whose index is missing or no longer decodes, so it
    /// cannot tell which chunks that release needs; it deleted nothing.
    #[error(
        "release {release} pins chunk index {index}, which is missing or damaged ({detail}); re-fetch the index or unpin the release, then run GC again"
    )]
    PinnedIndexMissing {
        /// The release holding the pin.
        release: Hash,
        /// The index it pins.
        index: Hash,
        /// Why the index could not be read.
        detail: String,
    },
    /// Assembly produced an image whose BLAKE3 differs from the index's.
    #[error("assembled image hashes to {actual}, the index says {expected}")]
    ImageHashMismatch {
        /// The image hash recorded in the index.
        expected: Hash,
        /// The hash of the bytes written.
        actual: Hash,
    },
    /// An encoded patch index or piece is longer than its limit; checked
    /// before anything is decoded.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    PatchTooLarge {
        /// "patch index" or "patch piece".
        what: &'static str,
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An encoded patch index or piece ended before its header or body did.
    #[error("{what} truncated: {len} bytes")]
    PatchTruncated {
        /// "patch index" or "patch piece".
        what: &'static str,
        /// The encoded length.
        len: usize,
    },
    /// A patch index or piece does not decode, is not canonical, breaks a
    /// limit or an invariant, or does not fit the chunk index it claims to
    /// rebuild. Nothing was produced from it.
    #[error("malformed {what}: {reason}")]
    PatchMalformed {
        /// "patch index" or "patch piece".
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The base image is not the one the patch was made from: the patch
    /// was refused before anything was applied. Fetch the chunks plainly.
    #[error(
        "patch is for base image {expected}, this base hashes to {actual}; refused before applying (fetch the chunks instead)"
    )]
    WrongBase {
        /// The base image hash the patch names.
        expected: Hash,
        /// The hash of the base actually given.
        actual: Hash,
    },
    /// The patch index rebuilds another chunk index than the one given.
    #[error("patch index rebuilds chunk index {expected}, not {actual}")]
    PatchTargetMismatch {
        /// The target index the patch names.
        expected: Hash,
        /// The index it was applied for.
        actual: Hash,
    },
    /// A piece produced a chunk that does not hash to the signed index's
    /// entry (a damaged or forged piece, or a base that changed while it was
    /// read). The piece's whole output was discarded.
    #[error(
        "patch piece produced chunk #{ordinal} hashing to {actual}, the signed index says {expected}; piece discarded"
    )]
    PieceOutputMismatch {
        /// Ordinal of the chunk in the target index.
        ordinal: u32,
        /// The hash the signed index lists.
        expected: Hash,
        /// The hash of the bytes produced.
        actual: Hash,
    },
    /// An encoded chunk index delta is longer than
    /// [`crate::index_delta::MAX_INDEX_DELTA_BYTES`]; checked before anything
    /// is decoded.
    #[error("chunk index delta of {len} bytes exceeds the limit of {max} bytes")]
    IndexDeltaTooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An encoded chunk index delta ended before its header or body did.
    #[error("chunk index delta truncated: {len} bytes")]
    IndexDeltaTruncated {
        /// The encoded length.
        len: usize,
    },
    /// A chunk index delta does not decode, has trailing bytes, is not in
    /// canonical form, breaks an invariant (an empty op, two adjacent `New`
    /// ops, too many ops or chunks), or names base chunks the base does not
    /// have. Nothing was built from it.
    #[error("malformed chunk index delta: {reason}")]
    IndexDeltaMalformed {
        /// What was wrong.
        reason: String,
    },
    /// The chunk index delta was written against another base chunk index
    /// than the one given; refused before anything was built. Fetch the
    /// target index whole instead.
    #[error(
        "chunk index delta is written against base index {expected}, this base index is {actual}; refused (fetch the target index whole instead)"
    )]
    IndexDeltaBase {
        /// The base index id the delta names.
        expected: Hash,
        /// The id of the base index actually given.
        actual: Hash,
    },
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", "write", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an assembled image to the caller's writer failed.
    #[error("writing the assembled image failed at offset {offset}: {source}")]
    Write {
        /// Bytes written before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the image being ingested or chunked failed.
    #[error("reading the input image failed: {detail}")]
    Read {
        /// The underlying error, as text.
        detail: String,
    },
    /// The metadata database failed (redb). The store may be in use by another
    /// process (it holds an exclusive lock) or damaged.
    #[error("store metadata database: {source}")]
    Db {
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
}

impl Error {
    /// An [`Error::Io`] naming `op` and `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::Db { source: Box::new(redb::Error::from(e)) }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
