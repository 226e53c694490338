//! The one error type of the manifest crate.
//!
//! Variants are grouped by cause, as in rustls: the bytes were not a meshota
//! document at all; the document was well formed but its signatures do not
//! establish trust; the document is trusted but must not be used here
//! (wrong hardware, rollback, expiry); or a key file could not be used.
//! Each variant carries the values involved, so a message can name them.

use alloc::string::String;

use crate::{KeyId, Kind, UnixTime};

/// Which set of keys a threshold applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The root keys of a trust root: they sign trust roots.
    Root,
    /// The release keys of a trust root: they sign manifests and rollout
    /// commands.
    Release,
    /// A node's device key: it signs that node's reports.
    Device,
    /// The provisioning keys of a trust root: they sign provisioning images.
    Provisioning,
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::Release => "release",
            Self::Device => "device",
            Self::Provisioning => "provisioning",
        })
    }
}

/// Everything that can make a meshota document or key unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- The bytes are not a well-formed meshota document. ----
    /// The input does not start with the `MOTA` magic: it is not a meshota
    /// file, or it is damaged at its start.
    #[error("not a meshota file: bad magic {found:02x?} (expected \"MOTA\")")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// Written by a newer (or unknown) format version of meshota.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedFormatVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A valid meshota file of another kind, e.g. a trust root given where a
    /// release manifest was expected.
    #[error("wrong kind of file: expected a {expected}, found kind byte {found}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: Kind,
        /// The kind byte found.
        found: u8,
    },
    /// The input ends before the document does: a cut-off download or copy.
    #[error("truncated {kind}: the input ends before the document does")]
    Truncated {
        /// The kind being decoded.
        kind: Kind,
    },
    /// The input is larger than this kind of document may ever be; refused
    /// before decoding.
    #[error("oversize {kind}: {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The kind being decoded.
        kind: Kind,
        /// The input's length.
        len: usize,
        /// The limit for this kind.
        max: usize,
    },
    /// Bytes follow the end of the document.
    #[error("{count} unexpected bytes after the end of the {kind}")]
    TrailingBytes {
        /// The kind being decoded.
        kind: Kind,
        /// How many bytes follow.
        count: usize,
    },
    /// The document's structure does not decode.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// The kind being decoded.
        kind: Kind,
        /// What the decoder found wrong.
        reason: String,
    },
    /// A list or string is longer than its limit.
    #[error("{field} has {count} entries or bytes, more than the limit of {max}")]
    LimitExceeded {
        /// Which field.
        field: &'static str,
        /// Its size.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value that is not allowed.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },

    // ---- Signatures do not establish trust. ----
    /// Signed by a key the trust root does not list for this role.
    #[error(
        "signed by unknown key {key}: it is not a {role} key of trust root version {trust_version}"
    )]
    UnknownKey {
        /// The signing key.
        key: KeyId,
        /// The role the key would need.
        role: Role,
        /// The trust root version checked against.
        trust_version: u64,
    },
    /// Signed by a key that a trust root version revoked.
    #[error("signed by revoked key {key}: trust root version {trust_version} revokes it")]
    RevokedKey {
        /// The revoked key.
        key: KeyId,
        /// The trust root version that lists it as revoked.
        trust_version: u64,
    },
    /// A signature by a known key does not verify: the document was altered
    /// after signing, or the signature was damaged.
    #[error("invalid signature by key {key}: the document was altered or the signature is damaged")]
    InvalidSignature {
        /// The key whose signature failed.
        key: KeyId,
    },
    /// Fewer distinct trusted keys signed than the threshold requires.
    /// Several signatures by one key count once.
    #[error(
        "{role} threshold not met: {valid} valid signature(s) from distinct keys, {threshold} required"
    )]
    ThresholdNotMet {
        /// The role whose threshold applies.
        role: Role,
        /// Distinct keys with valid signatures.
        valid: usize,
        /// The threshold.
        threshold: usize,
    },
    /// The release key is trusted, but not for this hardware class or channel.
    #[error(
        "key {key} may not sign for hardware class {hardware:?} on channel {channel:?}: outside its scope"
    )]
    KeyOutOfScope {
        /// The key.
        key: KeyId,
        /// The document's hardware class.
        hardware: String,
        /// The document's channel.
        channel: String,
    },
    /// The provisioning key is trusted, but not for this hardware class.
    #[error(
        "provisioning key {key} may not provision hardware class {hardware:?}: outside its scope"
    )]
    ProvisioningOutOfScope {
        /// The key.
        key: KeyId,
        /// The image's hardware class.
        hardware: String,
    },
    /// The release key's validity ended.
    #[error("key {key} expired at {expired_at} (now {now})")]
    KeyExpired {
        /// The key.
        key: KeyId,
        /// When it expired.
        expired_at: UnixTime,
        /// The verifier's time.
        now: UnixTime,
    },
    /// A trust-root rotation is not signed by the threshold of the previous
    /// version's root keys (or not by its own).
    #[error(
        "trust root rotation {from_version} -> {to_version} is not signed by the {signed_by} root threshold: {valid} of {threshold} valid"
    )]
    RotationNotSigned {
        /// The version the node holds.
        from_version: u64,
        /// The offered version.
        to_version: u64,
        /// "previous" or "new": whose threshold is not met.
        signed_by: &'static str,
        /// Distinct valid signatures by that set.
        valid: usize,
        /// That set's threshold.
        threshold: usize,
    },
    /// A trust root whose version is not the next one: a replay of an old
    /// root, or a skipped version.
    #[error("trust root version {offered} cannot follow version {current}: only version {} is accepted next", current + 1)]
    TrustRootVersion {
        /// The version the node holds.
        current: u64,
        /// The offered version.
        offered: u64,
    },

    // ---- Trusted, but not to be used here. ----
    /// The trust root's validity ended: freeze attack protection.
    #[error("trust root version {version} expired at {expires} (now {now})")]
    ExpiredTrustRoot {
        /// The trust root version.
        version: u64,
        /// When it expired.
        expires: UnixTime,
        /// The verifier's time.
        now: UnixTime,
    },
    /// A document that expired (rollout command).
    #[error("{kind} expired at {expires} (now {now})")]
    Expired {
        /// The kind of document.
        kind: Kind,
        /// When it expired.
        expires: UnixTime,
        /// The verifier's time.
        now: UnixTime,
    },
    /// The release is for another hardware class.
    #[error("release is for hardware class {found:?}, this device is {expected:?}")]
    WrongHardware {
        /// The device's class.
        expected: String,
        /// The release's class.
        found: String,
    },
    /// The release's security version is not above the installed one.
    #[error("security version {offered} is not above installed {installed}: refusing a rollback")]
    Rollback {
        /// The installed security version.
        installed: u64,
        /// The offered one.
        offered: u64,
    },
    /// An origin catalog older than the one already held: a replay or a
    /// stale mirror (freeze/rollback attack on the catalog).
    #[error(
        "catalog sequence {offered} is older than the held sequence {held}: refusing a replayed or stale catalog"
    )]
    OlderCatalog {
        /// The sequence of the catalog held.
        held: u64,
        /// The sequence offered.
        offered: u64,
    },
    /// A catalog with the held sequence number but different contents: the
    /// signer reused a sequence, or the catalog was forged by a key holder.
    #[error(
        "catalog sequence {sequence} is already held with other contents: sequences must not be reused"
    )]
    CatalogSequenceReused {
        /// The reused sequence.
        sequence: u64,
    },
    /// A node report claims to be from another node than the key that
    /// signed it.
    #[error("node report names node {claimed} but is checked against device key {key}")]
    ReportNodeMismatch {
        /// The node id in the report.
        claimed: KeyId,
        /// The device key used.
        key: KeyId,
    },

    // ---- Keys and key files. ----
    /// A public key that is not a valid ML-DSA-65 key.
    #[error("invalid public key: {reason}")]
    BadPublicKey {
        /// Why.
        reason: String,
    },
    /// A key algorithm this build does not know.
    #[error("unsupported key algorithm {found} (this build knows 1 = ML-DSA-65)")]
    UnsupportedAlgorithm {
        /// The algorithm byte.
        found: u8,
    },
    /// The secret key file is passphrase-protected and no passphrase was
    /// given.
    #[error(
        "secret key {name:?} is passphrase-protected: set MESHOTA_PASSPHRASE or run on a terminal to be asked"
    )]
    PassphraseRequired {
        /// The key's name.
        name: String,
    },
    /// The passphrase does not open the secret key (or the file is damaged).
    #[error("wrong passphrase for secret key {name:?} (or the key file is damaged)")]
    WrongPassphrase {
        /// The key's name.
        name: String,
    },
    /// The secret key's stored public key id does not match the key: the
    /// file is damaged or was edited.
    #[error("secret key file is inconsistent: it derives key {derived} but records {recorded}")]
    SecretKeyMismatch {
        /// The id derived from the seed.
        derived: KeyId,
        /// The id recorded in the file.
        recorded: KeyId,
    },
    /// A value could not be encoded (never expected for meshota's types).
    #[error("cannot encode {kind}: {reason}")]
    Encoding {
        /// The kind being encoded.
        kind: Kind,
        /// Why.
        reason: String,
    },
    /// Signing failed inside ML-DSA (context too long; never expected).
    #[error("signing failed: {reason}")]
    SigningFailed {
        /// Why.
        reason: &'static str,
    },
}
