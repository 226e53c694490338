//! The one error type of the crate, grouped by cause as the variants'
//! docs say. Every variant names what was wrong and, where it helps, what
//! to do.

use std::path::PathBuf;

/// Why a provisioning operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- Input that is malformed (from a file, a CSV row or a command line).
    /// A hardware id is empty, too long, or holds a character the
    /// normalisation does not accept.
    #[error("hardware id {raw:?}: {reason}")]
    BadHardwareId {
        /// The hardware id as given (truncated to 80 characters).
        raw: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A device serial is not exactly 10 hexadecimal digits.
    #[error("device serial {0:?} is not 10 hexadecimal digits (e.g. 1a2b3c4d5e)")]
    BadSerial(String),
    /// A device id, hardware class or CA name breaks its character rules.
    #[error("{what} {value:?}: {rule}")]
    BadName {
        /// Which name ("device id", "hardware class", "CA name").
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A DER or PEM structure does not parse.
    #[error("{what}: not a valid encoding ({reason})")]
    Malformed {
        /// What was being read ("certificate", "CSR", "CRL", ...).
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A certificate, CSR or CRL parses but does not follow meshota's
    /// profile (ARCHITECTURE.md, "Provisioning").
    #[error("{what}: {reason}")]
    Profile {
        /// What was being checked.
        what: &'static str,
        /// The rule broken.
        reason: String,
    },
    /// A line of the devices CSV is malformed.
    #[error("devices CSV line {line}: {reason}")]
    BadCsv {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A provisioning image (or the inputs of one) breaks the image
    /// layout or its limits (ARCHITECTURE.md, "Provisioning images").
    #[error("provisioning image: {reason}")]
    BadImage {
        /// What is wrong, naming the path inside the image.
        reason: String,
    },

    // --- Verification failed: the input is well formed but not trusted.
    /// A signature (certificate, CSR or CRL) does not verify with the key
    /// it must verify with.
    #[error("{what}: the ML-DSA-65 signature does not verify with {key}")]
    BadSignature {
        /// What was signed.
        what: String,
        /// Whose key was used ("the issuer's key", "the CSR's own key").
        key: &'static str,
    },
    /// The chain does not link: a certificate's issuer is not the next
    /// certificate's subject (typically a certificate from another CA).
    #[error(
        "{child} was issued by {issuer:?}, not by {parent:?}: it does not chain to this root (a certificate from another CA, or its intermediate certificate not supplied?)"
    )]
    NotIssuedBy {
        /// The certificate being checked.
        child: String,
        /// Its issuer name.
        issuer: String,
        /// The subject it was expected to name.
        parent: String,
    },
    /// A certificate is not valid yet at the verification time.
    #[error("{what} is not valid before {not_before} (checked at {at})")]
    NotYetValid {
        /// The certificate.
        what: String,
        /// Its notBefore (RFC 3339).
        not_before: String,
        /// The verification time (RFC 3339).
        at: String,
    },
    /// A certificate has expired at the verification time.
    #[error("{what} expired at {not_after} (checked at {at})")]
    Expired {
        /// The certificate.
        what: String,
        /// Its notAfter (RFC 3339).
        not_after: String,
        /// The verification time (RFC 3339).
        at: String,
    },
    /// The device certificate's serial is on the issuer's revocation list.
    #[error("device {device_id} (certificate serial {cert_serial}) was revoked at {revoked_at}")]
    Revoked {
        /// The device id in the certificate.
        device_id: String,
        /// The certificate serial, hex.
        cert_serial: String,
        /// The revocation time (RFC 3339).
        revoked_at: String,
    },
    /// The revocation list cannot be used at the verification time.
    #[error("revocation list: {reason}")]
    StaleCrl {
        /// Why ("its nextUpdate ... has passed", "issued by another CA").
        reason: String,
    },
    /// A CA certificate is not allowed to sign what it signed (not a CA,
    /// no keyCertSign, path length exceeded).
    #[error("{what}: {reason}")]
    NotACa {
        /// The certificate.
        what: String,
        /// The constraint broken.
        reason: String,
    },

    /// A provisioning image is for another device than this one.
    #[error("provisioning image is not for this device: {reason}")]
    NotForThisDevice {
        /// Which value differs, with both values.
        reason: String,
    },
    /// A provisioning image's signature does not establish trust.
    #[error("provisioning image signature: {reason}")]
    ImageNotTrusted {
        /// Why (unknown, revoked, out-of-scope or expired key, bad signature,
        /// altered bytes).
        reason: String,
    },
    /// Re-provisioning would change a field that never changes.
    #[error(
        "provisioning image changes immutable field /{field}: installed {installed:?}, image {offered:?}; refusing (an immutable field changes only by provisioning the device from scratch)"
    )]
    ImmutableFieldChanged {
        /// The field's path (e.g. `etc/serial-number`).
        field: &'static str,
        /// The installed value.
        installed: String,
        /// The image's value.
        offered: String,
    },

    /// An image fetch is not authenticated (`provision serve`).
    #[error("fetch refused: {reason}")]
    FetchUnauthorized {
        /// Why (no signature, unknown device, bad signature, replay).
        reason: String,
    },

    // --- The CA refuses to act.
    /// The CA's own certificate is outside its validity period: it refuses
    /// to sign anything.
    #[error(
        "the CA certificate {name:?} is valid from {not_before} to {not_after}; refusing to sign at {at} (issue a new CA certificate)"
    )]
    CaOutOfValidity {
        /// The CA's name.
        name: String,
        /// Its notBefore (RFC 3339).
        not_before: String,
        /// Its notAfter (RFC 3339).
        not_after: String,
        /// Now (RFC 3339).
        at: String,
    },
    /// The operation needs an intermediate (issuing) CA directory.
    #[error("{0}: this is a root CA directory; devices are issued by an intermediate CA")]
    NotIssuingCa(PathBuf),

    // --- The registry refuses a change.
    /// Two different hardware ids map to the same 10-hex-digit serial.
    #[error(
        "serial collision: hardware ids {existing:?} and {new:?} both map to serial {serial}; provision one of them by hand with an explicit device id and report it"
    )]
    SerialCollision {
        /// The serial.
        serial: String,
        /// The hardware id already registered.
        existing: String,
        /// The hardware id being registered.
        new: String,
    },
    /// The device id is already registered for other hardware.
    #[error(
        "device id {device_id} is already registered for serial {registered_serial}, not {serial}"
    )]
    DeviceIdTaken {
        /// The device id.
        device_id: String,
        /// The serial it belongs to.
        registered_serial: String,
        /// The serial that asked for it.
        serial: String,
    },
    /// The hardware is registered under another device id than the one asked for.
    #[error(
        "serial {serial} is registered as device {registered}, not {requested}: re-provisioning keeps the device id (omit it or use {registered})"
    )]
    DeviceIdMismatch {
        /// The serial.
        serial: String,
        /// Its registered device id.
        registered: String,
        /// The id asked for.
        requested: String,
    },
    /// A revoked device is not provisioned again.
    #[error("device {0} is revoked; a revoked device is not provisioned again")]
    DeviceRevoked(String),
    /// The registry knows the device but kept no copy of something an
    /// image needs (a device signed before images existed, or from a CSR
    /// without `--kem-pub`).
    #[error(
        "device {device_id}: the registry kept no copy of {what}; issue its certificate again (provision sign, with --kem-pub for encrypted files)"
    )]
    MissingArtifact {
        /// The device id.
        device_id: String,
        /// What is missing.
        what: &'static str,
    },
    /// Nothing in the registry matches.
    #[error("no device in the registry has {0}")]
    UnknownDevice(String),
    /// The registry database failed.
    #[error("registry {path}: {reason}")]
    Registry {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    // --- The environment.
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] meshota_manifest::fs::FileError),
    /// A key file or signature operation of the manifest crate failed.
    #[error("{path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause (wrong passphrase, bad file, ...).
        source: meshota_manifest::Error,
    },
    /// Any other I/O failure, naming the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The system random number generator failed.
    #[error("the system RNG failed: {0}")]
    Rng(String),
    /// An X.509 structure could not be built (an internal encoding limit).
    #[error("building the {what} failed: {reason}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// The builder's complaint.
        reason: String,
    },
}

impl Error {
    pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            reason: e.to_string(),
        }
    }

    pub(crate) fn profile(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Profile {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn build(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Build {
            what,
            reason: e.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
