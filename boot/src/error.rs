//! The crate's one error type.

use alloc::string::String;

use meshota_manifest::Hash;

use crate::state::SlotId;

/// Everything that can go wrong in meshota-boot, with the values involved.
///
/// Invariant: no variant is ever produced by a panic path; every decoder in
/// this crate turns bad bytes from disk into one of these values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An access reached past the end of a slot or medium.
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte medium")]
    OutOfBounds {
        /// First byte accessed.
        offset: u64,
        /// Number of bytes accessed.
        len: u64,
        /// Size of the medium.
        size: u64,
    },
    /// An erase did not start and end on erase-sector boundaries.
    #[error(
        "erase of {len} bytes at offset {offset} is not aligned to the {erase_size}-byte sector"
    )]
    Misaligned {
        /// First byte of the erase.
        offset: u64,
        /// Length of the erase.
        len: u64,
        /// The medium's erase-sector size.
        erase_size: u64,
    },
    /// A NOR-flash write would have to set a bit that only an erase can set:
    /// the caller wrote without erasing first.
    #[error(
        "write at offset {offset} needs bits set that only an erase can set (was {old:#04x}, wanted {new:#04x})"
    )]
    NotErased {
        /// Offset of the first offending byte.
        offset: u64,
        /// Byte on the flash.
        old: u8,
        /// Byte the caller wanted.
        new: u8,
    },
    /// The simulated power was cut at flash operation `op` (test models only);
    /// every access fails with this until the model is power-cycled.
    #[error("power cut at flash operation {op}")]
    PowerCut {
        /// Index of the operation at which the power went (0-based).
        op: u64,
    },
    /// Neither copy of a double-buffered record holds a valid record.
    #[error("no valid {what} record in either copy (both blank or corrupt)")]
    NoValidRecord {
        /// Which record store (`"boot"`, `"install"`).
        what: &'static str,
    },
    /// A record would not fit its half of the medium.
    #[error("a {len}-byte record does not fit the {max}-byte record area")]
    RecordTooLarge {
        /// Encoded record length.
        len: usize,
        /// Largest record the area holds.
        max: usize,
    },
    /// A record medium cannot be split into two erase-aligned halves.
    #[error(
        "record medium of {size} bytes cannot hold two copies aligned to {erase_size}-byte sectors"
    )]
    RecordAreaGeometry {
        /// Size of the medium.
        size: u64,
        /// Its erase-sector size.
        erase_size: u64,
    },
    /// A record's CRC was valid but its payload did not decode (a bug or a
    /// record from an incompatible version).
    #[error("{what} record payload does not decode: {reason}")]
    RecordPayload {
        /// Which record store.
        what: &'static str,
        /// Decoder's message.
        reason: String,
    },
    /// A bootloader environment (U-Boot or GRUB) is malformed.
    #[error("{what} environment is malformed: {reason}")]
    EnvMalformed {
        /// `"U-Boot"` or `"GRUB"`.
        what: &'static str,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// No copy of the U-Boot environment has a valid CRC32.
    #[error("no copy of the U-Boot environment has a valid CRC32 (initialise it first)")]
    EnvNoValidCopy,
    /// The environment's variables do not fit its size.
    #[error("environment needs {needed} bytes but holds only {size}")]
    EnvTooLarge {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        size: usize,
    },
    /// A boot variable holds a value the RAUC conventions do not allow.
    #[error("boot variable {name} has invalid value {value:?}")]
    BadVariable {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `fw_env.config` could not be understood.
    #[error("fw_env.config line {line}: {reason}")]
    FwEnvConfig {
        /// 1-based line number (0 for the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system I/O call failed.
    #[cfg(feature = "std")]
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image is larger than the slot it must go into.
    #[error("image of {image} bytes does not fit slot {slot:?} of {slot_size} bytes")]
    SlotTooSmall {
        /// The slot.
        slot: SlotId,
        /// Image size.
        image: u64,
        /// Slot size.
        slot_size: u64,
    },
    /// The image stream ended before or ran past the size the manifest states.
    #[error("image stream has {actual} bytes but the manifest says {expected}")]
    ImageLengthMismatch {
        /// From the manifest.
        expected: u64,
        /// Streamed.
        actual: u64,
    },
    /// The bytes read back from the slot do not hash to the manifest's image hash
    /// (a corrupt or substituted image, or a failing medium).
    #[error("slot {slot:?} holds an image hashing to {actual}, the manifest says {expected}")]
    ImageHashMismatch {
        /// The slot read back.
        slot: SlotId,
        /// From the manifest.
        expected: Hash,
        /// Computed over the slot.
        actual: Hash,
    },
    /// The release's security version is below the device's anti-rollback
    /// counter: a downgrade (rollback attack) was stopped.
    #[error(
        "downgrade refused: release security version {offered} is below the device's counter {counter}"
    )]
    Downgrade {
        /// The device's committed counter.
        counter: u64,
        /// The release's security version.
        offered: u64,
    },
    /// Re-verification of the manifest right before the slot switch failed
    /// (bad signature, revoked key, expired trust root, wrong hardware...).
    #[error("manifest re-verification before the slot switch failed: {reason}")]
    ManifestRejected {
        /// The verifier's message.
        reason: String,
    },
    /// The release manifest failed a rule of meshota-manifest (bad or missing
    /// signature, revoked or expired key, expired trust root, other hardware,
    /// rollback...), checked before writing and again right before the switch.
    #[error("release manifest rejected: {0}")]
    Manifest(#[from] meshota_manifest::Error),
    /// The manifest has no component of the name this device installs.
    #[error("the manifest has no component named {name:?}")]
    NoSuchComponent {
        /// The component name looked for.
        name: String,
    },
    /// The manifest re-verified right before the switch describes a different
    /// image than the one written (it was swapped during the install).
    #[error("manifest changed during the install: wrote {written}, manifest now names {now}")]
    ManifestChanged {
        /// Image hash that was written.
        written: Hash,
        /// Image hash the re-verified manifest names.
        now: Hash,
    },
    /// A trial boot count of zero, or above what the backend can express, was asked for.
    #[error("trial boots must be 1..={max}, got {asked}")]
    BadTrialCount {
        /// Requested.
        asked: u8,
        /// Backend's maximum.
        max: u8,
    },
    /// The health check did not pass.
    #[error("health check failed: {reason}")]
    HealthCheckFailed {
        /// Exit status or message.
        reason: String,
    },
    /// The operation needs a state the device is not in.
    #[error("cannot {action}: {reason}")]
    WrongState {
        /// What was attempted.
        action: &'static str,
        /// Why it cannot happen now.
        reason: String,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(feature = "std")]
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
