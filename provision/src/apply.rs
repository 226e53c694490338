//! Installing a provisioning image on the device: checks against what is
//! installed, then an atomic switch of the directory the device reads its
//! `/etc` overlay from.
//!
//! Layout under the node's data directory:
//!
//! ```text
//! provision/current                 symlink -> the installed generation
//! provision/<issued>-<hash16>/etc/… the image's files (sealed ones decrypted, 0600)
//! provision/<issued>-<hash16>/image.mota  the signed header it came with
//! ```
//!
//! [`install`] writes a new generation into a temporary directory (every
//! file and directory fsynced), renames it into place, then replaces the
//! `current` symlink with `rename(2)` (atomic) and fsyncs the directory.
//! A crash leaves either the old or the new generation current, never a
//! mix; a stray temporary directory is removed by the next install.
//! Older generations are removed after the switch.
//!
//! On a real device an overlay mount exposes the current generation under
//! `/etc` (the read-only root stays the lower layer):
//!
//! ```text
//! mount -t overlay overlay \
//!   -o lowerdir=/var/lib/meshota/provision/current/etc:/etc /etc
//! ```
//!
//! (no upperdir: read-only; re-run after `provision apply`, which prints
//! the command; the mount resolves the symlink when it is made.)

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use meshota_manifest::{KeyId, SignedDocument};
use zeroize::Zeroizing;

use crate::alg::KemKeyPair;
use crate::cert::{DeviceSubject, parse_pem_chain};
use crate::error::{Error, Result};
use crate::image::contents::{DEVICE_CERT, ImageTree, ImmutableField, SECRET_DIR};
use crate::image::seal::Opener;
use crate::image::signed::{ImageHeader, VerifiedImage};
use crate::verify::certificate_key;

/// The directory under the data directory that holds the generations.
pub const PROVISION_DIR: &str = "provision";
/// The symlink naming the installed generation.
pub const CURRENT: &str = "current";
/// The signed header kept with each generation.
pub const HEADER_FILE: &str = "image.mota";

/// An image opened for this device: its files in plain text.
pub struct OpenedImage {
    /// The signed header.
    pub header: ImageHeader,
    /// The signed trailer bytes (kept with the generation).
    pub trailer: Vec<u8>,
    /// Every file, sealed ones decrypted.
    pub files: Vec<(String, u16, Zeroizing<Vec<u8>>)>,
}

impl core::fmt::Debug for OpenedImage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "OpenedImage({})", self.header.device_id)
    }
}

fn not_ours(reason: String) -> Error {
    Error::NotForThisDevice { reason }
}

/// Checks that a verified image is for the device whose identity key id is
/// `node_id` (the header and the certificate in the image both name it),
/// then decrypts its sealed files with `kem`.
///
/// # Errors
/// [`Error::NotForThisDevice`]: another node id, another certificate key,
/// sealed files that do not open with `kem` (or no `kem` given).
pub fn open_image(
    image: &VerifiedImage,
    trailer: Vec<u8>,
    node_id: KeyId,
    kem: Option<&KemKeyPair>,
) -> Result<OpenedImage> {
    let h = &image.header;
    if h.node_id != node_id {
        return Err(not_ours(format!(
            "it is for device {} (node id {}), this device's node id is {}",
            h.device_id, h.node_id, node_id
        )));
    }
    let chain = image
        .tree
        .get(DEVICE_CERT)
        .map(|f| parse_pem_chain(&f.bytes))
        .transpose()?
        .unwrap_or_default();
    let Some(device_cert) = chain.first() else {
        return Err(not_ours(format!("/{DEVICE_CERT} holds no certificate")));
    };
    if certificate_key(device_cert)?.id() != node_id {
        return Err(not_ours(format!(
            "its certificate /{DEVICE_CERT} is not for this device's identity key {node_id}"
        )));
    }
    // The signed header and the certificate name the same device.
    let subject = DeviceSubject::from_name(
        device_cert.tbs_certificate().subject(),
        "device certificate",
    )?;
    if subject.device_id != h.device_id
        || subject.serial.to_string() != h.serial
        || subject.hardware != h.hardware
    {
        return Err(Error::BadImage {
            reason: format!(
                "the header names {} / {} / {}, its certificate {} / {} / {}",
                h.device_id,
                h.serial,
                h.hardware,
                subject.device_id,
                subject.serial,
                subject.hardware
            ),
        });
    }
    let opener = match (&h.kem_ciphertext, kem) {
        (Some(ct), Some(k)) => Some(Opener::new(k, ct)?),
        (Some(_), None) => {
            return Err(not_ours(
                "it has sealed files and this device has no ML-KEM key configured".into(),
            ));
        }
        (None, _) => None,
    };
    let mut files = Vec::new();
    for (path, f) in image.tree.files() {
        let bytes = match (&opener, path.starts_with(SECRET_DIR)) {
            (Some(o), true) => o.open(path, &f.bytes)?,
            _ => Zeroizing::new(f.bytes.clone()),
        };
        files.push((path.to_owned(), f.mode, bytes));
    }
    Ok(OpenedImage {
        header: h.clone(),
        trailer,
        files,
    })
}

/// What is installed now, if anything.
#[derive(Clone, Debug)]
pub struct InstalledState {
    /// The generation directory.
    pub dir: PathBuf,
    /// Its signed header.
    pub header: ImageHeader,
    /// The installed files (for the immutable fields).
    pub tree: ImageTree,
}

/// Reads the installed generation under `data_dir`, if any.
///
/// # Errors
/// [`Error::Io`], [`Error::BadImage`] when the installed state is damaged.
pub fn installed(data_dir: &Path) -> Result<Option<InstalledState>> {
    let link = data_dir.join(PROVISION_DIR).join(CURRENT);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&link)(e)),
    };
    let dir = data_dir.join(PROVISION_DIR).join(target);
    let hpath = dir.join(HEADER_FILE);
    let bytes = fs::read(&hpath).map_err(Error::io(&hpath))?;
    let header = SignedDocument::<ImageHeader>::decode(&bytes)
        .map_err(|e| Error::BadImage {
            reason: format!("installed header {}: {e}", hpath.display()),
        })?
        .unverified_body()
        .clone();
    let mut tree = ImageTree::default();
    for f in ImmutableField::ALL {
        let p = dir.join(f.path());
        match fs::read(&p) {
            Ok(b) => tree.insert(f.path(), 0o644, b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p)(e)),
        }
    }
    Ok(Some(InstalledState { dir, header, tree }))
}

/// Refuses an image that changes an immutable field, or is older than the
/// installed one.
///
/// # Errors
/// [`Error::ImmutableFieldChanged`] naming the first field that differs
/// (a field present on one side only differs too);
/// [`Error::ImageNotTrusted`] for an older image (a replayed one).
pub fn check_against_installed(installed: &InstalledState, image: &OpenedImage) -> Result<()> {
    let mut offered = ImageTree::default();
    for (p, _, b) in &image.files {
        if ImmutableField::from_path(p).is_some() {
            offered.insert(p, 0o644, b.to_vec())?;
        }
    }
    for f in ImmutableField::ALL {
        let a = installed.tree.field(f)?;
        let b = offered.field(f)?;
        if a != b {
            let show = |v: Option<String>| v.unwrap_or_else(|| "(absent)".into());
            return Err(Error::ImmutableFieldChanged {
                field: f.path(),
                installed: show(a),
                offered: show(b),
            });
        }
    }
    if image.header.issued < installed.header.issued {
        return Err(Error::ImageNotTrusted {
            reason: format!(
                "it was issued at {} , before the installed image ({}): an old image replayed?",
                image.header.issued, installed.header.issued
            ),
        });
    }
    Ok(())
}

fn write_file(path: &Path, mode: u16, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(u32::from(mode))
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(u32::from(mode)))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir))
}

/// Installs an opened image as the current generation under `data_dir`
/// (module doc), after [`check_against_installed`] when something is
/// installed. Returns the generation directory.
///
/// # Errors
/// The checks' errors; [`Error::Io`].
pub fn install(data_dir: &Path, image: &OpenedImage) -> Result<PathBuf> {
    let base = data_dir.join(PROVISION_DIR);
    fs::create_dir_all(&base).map_err(Error::io(&base))?;
    if let Some(current) = installed(data_dir)? {
        check_against_installed(&current, image)?;
    }
    // Leftovers of an interrupted install.
    if let Ok(entries) = fs::read_dir(&base) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let name = format!(
        "{}-{}",
        image.header.issued,
        &hex::encode(image.header.squashfs_hash)[..16]
    );
    let gen_dir = base.join(&name);
    if !gen_dir.exists() {
        let tmp = base.join(format!(".tmp-{}", std::process::id()));
        let r = write_generation(&tmp, image)
            .and_then(|()| fs::rename(&tmp, &gen_dir).map_err(Error::io(&gen_dir)));
        if let Err(e) = r {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync(&base)?;
    }
    let link_tmp = base.join(".current.tmp");
    let _ = fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&name, &link_tmp).map_err(Error::io(&link_tmp))?;
    let link = base.join(CURRENT);
    fs::rename(&link_tmp, &link).map_err(Error::io(&link))?;
    sync(&base)?;
    // Older generations are no longer referenced.
    if let Ok(entries) = fs::read_dir(&base) {
        for e in entries.flatten() {
            let n = e.file_name();
            if n != *name.as_str() && n != CURRENT && e.path().is_dir() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(gen_dir)
}

fn write_generation(tmp: &Path, image: &OpenedImage) -> Result<()> {
    fs::create_dir(tmp).map_err(Error::io(tmp))?;
    let mut dirs = std::collections::BTreeSet::new();
    for (path, mode, bytes) in &image.files {
        let p = tmp.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
            dirs.insert(parent.to_path_buf());
        }
        write_file(&p, *mode, bytes).map_err(Error::io(&p))?;
    }
    let h = tmp.join(HEADER_FILE);
    write_file(&h, 0o644, &image.trailer).map_err(Error::io(&h))?;
    // Children before parents, then the generation directory itself.
    let mut all: Vec<PathBuf> = dirs.into_iter().collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in all {
        let mut cur = d.as_path();
        loop {
            sync(cur)?;
            match cur.parent() {
                Some(p) if p.starts_with(tmp) && p != tmp => cur = p,
                _ => break,
            }
        }
    }
    sync(tmp)
}
