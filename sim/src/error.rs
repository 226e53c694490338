//! The simulator's error type.

/// What can stop a run from being set up or completed. Safety violations
/// inside a run are not errors: they are counted in the
/// [`crate::Report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option outside its bounds.
    #[error("{what} = {value} is out of range {min}..={max}")]
    OutOfRange {
        /// The option.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A topology name that is not one of line, ring, grid, random.
    #[error("unknown topology {0:?} (expected line, ring, grid or random)")]
    UnknownTopology(String),
    /// A `--relays` value that is not `all`, `cds` or `plan`.
    #[error("unknown relays {0:?} (expected all, cds or plan)")]
    UnknownRelays(String),
    /// Options that cannot be combined (the message says which and why).
    #[error("unsupported options: {0}")]
    Unsupported(&'static str),
    /// Keys, signatures or the chunk index of the run could not be made.
    #[error("building the signed fixture failed: {0}")]
    Fixture(String),
    /// A core refused a release it was given locally (at start or restart).
    #[error("a core refused a local release: {0}")]
    Core(String),
    /// The safety checker refused an install: the release is not signed by
    /// a trusted key, not above the installed security version, or its
    /// stored image does not match its manifest.
    #[error("unsafe install of release {release}: {reason}")]
    UnsafeInstall {
        /// The release's short id.
        release: String,
        /// The rule broken.
        reason: String,
    },
}
