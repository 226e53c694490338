//! The signed provisioning image file: the squashfs, then a signed
//! trailer naming the device and the squashfs's hash.
//!
//! ```text
//! offset 0        squashfs image               squashfs_len bytes (4 KiB multiple)
//! squashfs_len    trailer: "MOTA" 01 40 ‖ signed envelope of ImageHeader
//! end − 12        u32 little-endian: the trailer's length
//! end − 8         "MOTAPIMG"
//! ```
//!
//! `unsquashfs` reads the file as it is (a squashfs reader stops at the
//! superblock's `bytes_used`). The header is signed by one provisioning
//! key of the trust root (ML-DSA-65, context
//! `meshota/v1/provisioning-image`).
//!
//! Verification ([`verify_image`]), in order; the first failure is the
//! error:
//! 1. size within [`MAX_SIGNED_IMAGE_BYTES`]; the end magic; the trailer
//!    length within [`MAX_TRAILER_BYTES`] and the file;
//! 2. the trailer decodes canonically (manifest framing, kind 66), with
//!    exactly one signature;
//! 3. the signer is a provisioning key of the trust root, not revoked or
//!    expired, whose scope covers the header's hardware class, and its
//!    signature verifies;
//! 4. `squashfs_len` is where the trailer starts and BLAKE3 of those bytes
//!    is `squashfs_hash`;
//! 5. only then is the squashfs parsed; its layout is checked, and its
//!    immutable files must equal the header's device id, serial and fleet.

use meshota_manifest::{
    Document, Expiration, KeyId, Kind, SecretKey, SignedDocument, TrustRoot, Verified,
};
use serde::{Deserialize, Serialize};

use super::contents::{ImageInputs, ImageTree, ImmutableField, SECRET_DIR};
use super::seal::{KEM_CIPHERTEXT_LEN, Sealer};
use super::{MAX_IMAGE_BYTES, squashfs};
use crate::error::{Error, Result};
use crate::serial::check_name;

/// The last 8 bytes of a signed image.
pub const TRAILER_MAGIC: [u8; 8] = *b"MOTAPIMG";
/// Largest trailer accepted, in bytes.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Largest signed image accepted, in bytes.
pub const MAX_SIGNED_IMAGE_BYTES: usize = MAX_IMAGE_BYTES + MAX_TRAILER_BYTES + 12;

/// What the provisioning key signs about an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHeader {
    /// The device id.
    pub device_id: String,
    /// The device serial, 10 lowercase hex digits.
    pub serial: String,
    /// The device's hardware class (the provisioning key's scope).
    pub hardware: String,
    /// The fleet.
    pub fleet: String,
    /// The device's ML-DSA identity key id (its node id).
    pub node_id: KeyId,
    /// The image time (Unix seconds); a device refuses an image older than
    /// the one installed.
    pub issued: u64,
    /// Length of the squashfs part.
    pub squashfs_len: u64,
    /// BLAKE3 of the squashfs part.
    pub squashfs_hash: [u8; 32],
    /// The ML-KEM-768 ciphertext the sealed files' keys derive from;
    /// present exactly when the image has sealed files.
    pub kem_ciphertext: Option<Vec<u8>>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> meshota_manifest::Error {
    meshota_manifest::Error::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl Document for ImageHeader {
    const KIND: Kind = Kind::ProvisioningImage;
    const MAX_BYTES: usize = MAX_TRAILER_BYTES;

    fn check_structure(&self) -> Result<(), meshota_manifest::Error> {
        for (field, v) in [
            ("device id", &self.device_id),
            ("hardware class", &self.hardware),
            ("fleet", &self.fleet),
        ] {
            check_name(field, v).map_err(|e| invalid(field, e.to_string()))?;
        }
        if self.serial.parse::<crate::serial::DeviceSerial>().is_err()
            || self.serial != self.serial.to_ascii_lowercase()
        {
            return Err(invalid("serial", "not 10 lowercase hex digits"));
        }
        if self.squashfs_len > MAX_IMAGE_BYTES as u64 {
            return Err(invalid("squashfs length", "over the image limit"));
        }
        if let Some(ct) = &self.kem_ciphertext {
            if ct.len() != KEM_CIPHERTEXT_LEN {
                return Err(invalid("ML-KEM ciphertext", "not 1,088 bytes"));
            }
        }
        Ok(())
    }
}

/// Everything a signed image is made from.
#[derive(Debug)]
pub struct SignedImageInputs<'a> {
    /// The public files.
    pub inputs: &'a ImageInputs,
    /// Confidential files: (name, contents), sealed to `kem_public`.
    pub secrets: &'a [(String, Vec<u8>)],
    /// The device's hardware class.
    pub hardware: &'a str,
    /// The device's identity key id.
    pub node_id: KeyId,
    /// The device's ML-KEM-768 encapsulation key (needed for secrets).
    pub kem_public: Option<&'a [u8]>,
    /// The image time (Unix seconds; every inode's mtime).
    pub issued: u32,
    /// The provisioning key.
    pub signer: &'a SecretKey,
}

/// Builds, seals and signs an image (module doc for the layout). Equal
/// inputs give equal bytes.
///
/// # Errors
/// [`Error::BadImage`], [`Error::BadName`], [`Error::MissingArtifact`]
/// (secrets but no KEM key), [`Error::Key`], [`Error::Build`].
pub fn build_signed_image(s: &SignedImageInputs<'_>) -> Result<Vec<u8>> {
    let mut tree = ImageTree::build(s.inputs)?;
    let mut kem_ciphertext = None;
    if !s.secrets.is_empty() {
        let ek = s.kem_public.ok_or_else(|| Error::MissingArtifact {
            device_id: s.inputs.identity.device_id.clone(),
            what: "its ML-KEM public key",
        })?;
        let mut files = Vec::with_capacity(s.secrets.len());
        for (name, bytes) in s.secrets {
            check_name("secret file name", name)?;
            files.push((format!("{SECRET_DIR}/{name}"), bytes.clone()));
        }
        files.sort();
        let sealer = Sealer::new(ek, s.signer, u64::from(s.issued), &files)?;
        for (path, bytes) in &files {
            tree.insert(path, 0o600, sealer.seal(path, bytes)?)?;
        }
        kem_ciphertext = Some(sealer.ciphertext().to_vec());
    }
    let squash = squashfs::write(&tree, s.issued)?;
    let header = ImageHeader {
        device_id: s.inputs.identity.device_id.clone(),
        serial: s.inputs.identity.serial.to_string(),
        hardware: s.hardware.to_owned(),
        fleet: s.inputs.identity.fleet.clone(),
        node_id: s.node_id,
        issued: u64::from(s.issued),
        squashfs_len: squash.len() as u64,
        squashfs_hash: *blake3::hash(&squash).as_bytes(),
        kem_ciphertext,
    };
    let doc = SignedDocument::sign(header, &[s.signer]).map_err(|source| Error::Key {
        path: "provisioning key".into(),
        source,
    })?;
    let trailer = doc.encode().map_err(|e| Error::build("image trailer", e))?;
    let len = u32::try_from(trailer.len()).map_err(|e| Error::build("image trailer", e))?;
    let mut out = squash;
    out.extend_from_slice(&trailer);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&TRAILER_MAGIC);
    Ok(out)
}

/// A signed image whose signature, hash and layout were checked. Sealed
/// files are still sealed.
#[derive(Clone, Debug)]
pub struct VerifiedImage {
    /// The signed header.
    pub header: ImageHeader,
    /// The signer's key id.
    pub signer: KeyId,
    /// The files, as in the squashfs.
    pub tree: ImageTree,
}

fn untrusted(reason: impl Into<String>) -> Error {
    Error::ImageNotTrusted {
        reason: reason.into(),
    }
}

/// Splits a signed image into its squashfs part and its decoded trailer,
/// checking steps 1–2 of the module doc (nothing is trusted yet).
///
/// # Errors
/// [`Error::BadImage`].
pub fn split(bytes: &[u8]) -> Result<(&[u8], SignedDocument<ImageHeader>)> {
    let bad = |r: String| Error::BadImage { reason: r };
    // 1.
    if bytes.len() > MAX_SIGNED_IMAGE_BYTES {
        return Err(bad(format!(
            "{} bytes; a signed image has at most {MAX_SIGNED_IMAGE_BYTES}",
            bytes.len()
        )));
    }
    let Some(body_end) = bytes.len().checked_sub(12) else {
        return Err(bad("too short to be a signed image".into()));
    };
    if bytes[body_end + 4..] != TRAILER_MAGIC {
        return Err(bad(
            "no MOTAPIMG trailer at its end: not a signed provisioning image (a bare squashfs?)"
                .into(),
        ));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[body_end..body_end + 4]);
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_TRAILER_BYTES || len > body_end {
        return Err(bad(format!("trailer length {len} is out of range")));
    }
    let start = body_end - len;
    // 2.
    let doc = SignedDocument::<ImageHeader>::decode(&bytes[start..body_end])
        .map_err(|e| bad(format!("trailer: {e}")))?;
    if doc.signatures().len() != 1 {
        return Err(bad(format!(
            "trailer has {} signatures; an image has exactly one",
            doc.signatures().len()
        )));
    }
    Ok((&bytes[..start], doc))
}

/// Verifies a signed image against the trust root (module doc, steps
/// 1–5).
///
/// # Errors
/// [`Error::BadImage`] (malformed), [`Error::ImageNotTrusted`] (signer,
/// signature or hash).
pub fn verify_image(
    bytes: &[u8],
    trust: &Verified<TrustRoot>,
    expiration: Expiration,
) -> Result<VerifiedImage> {
    let (squash, doc) = split(bytes)?;
    let header = doc.unverified_body().clone();
    // 3.
    let entry = &doc.signatures()[0];
    let key = trust
        .provisioning_signer(&entry.key_id, &header.hardware, expiration)
        .map_err(|e| untrusted(e.to_string()))?;
    let ctx = meshota_manifest::signed::context(Kind::ProvisioningImage);
    if !key.verify(doc.body_bytes(), ctx.as_bytes(), &entry.signature) {
        return Err(untrusted(format!(
            "the signature by {} does not verify: the image header was altered",
            entry.key_id
        )));
    }
    // 4.
    if header.squashfs_len != squash.len() as u64
        || *blake3::hash(squash).as_bytes() != header.squashfs_hash
    {
        return Err(untrusted(
            "the squashfs bytes are not the ones signed (altered or truncated)",
        ));
    }
    // 5.
    let tree = squashfs::read(squash)?;
    tree.check_layout()?;
    for (field, expected) in [
        (ImmutableField::Hostname, &header.device_id),
        (ImmutableField::MqttClientId, &header.device_id),
        (ImmutableField::SerialNumber, &header.serial),
        (ImmutableField::MqttGroupId, &header.fleet),
    ] {
        let v = tree.field(field)?;
        if v.as_ref() != Some(expected) {
            return Err(Error::BadImage {
                reason: format!(
                    "/{} holds {v:?}, but the signed header says {expected:?}",
                    field.path()
                ),
            });
        }
    }
    let sealed = tree.files().any(|(p, _)| p.starts_with(SECRET_DIR));
    if sealed != header.kem_ciphertext.is_some() {
        return Err(Error::BadImage {
            reason: "sealed files and the ML-KEM ciphertext must come together".into(),
        });
    }
    Ok(VerifiedImage {
        header,
        signer: entry.key_id,
        tree,
    })
}
