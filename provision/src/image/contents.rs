//! The file tree of a provisioning image.
//!
//! Layout (paths inside the image, all regular files, directories 0755):
//!
//! | path | mode | class |
//! | --- | --- | --- |
//! | `etc/hostname` | 0644 | immutable: the device id |
//! | `etc/serial-number` | 0644 | immutable: the 10-hex-digit serial |
//! | `etc/mqtt-client-id` | 0644 | immutable: the device id |
//! | `etc/mqtt-group-id` | 0644 | immutable: the fleet |
//! | `etc/machine-id` | 0444 | immutable, optional: derived from the serial |
//! | `etc/meshota/device.crt` | 0644 | the device certificate, then its issuer (PEM) |
//! | `etc/meshota/root.crt` | 0644 | the fleet's root CA certificate (PEM) |
//! | `etc/meshota/crl.pem` | 0644 | optional: the issuer's revocation list |
//! | `etc/meshota/config/<name>` | 0644 | mutable configuration |
//! | `etc/meshota/secret/<name>` | 0600 | mutable, confidential: sealed to the device's ML-KEM key |
//!
//! Every immutable file is its value and one `\n`. Names of configuration
//! files follow [`crate::serial::check_name`]. The tree is a sorted map, so
//! it has one order whatever order the inputs came in.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::serial::{DeviceSerial, check_name};

use super::{MAX_FILE_BYTES, MAX_FILES};

/// Directory of the mutable configuration files.
pub const CONFIG_DIR: &str = "etc/meshota/config";
/// The device certificate chain (device, then issuer).
pub const DEVICE_CERT: &str = "etc/meshota/device.crt";
/// The fleet's root CA certificate.
pub const ROOT_CERT: &str = "etc/meshota/root.crt";
/// The issuer's revocation list, when the station has one.
pub const CRL: &str = "etc/meshota/crl.pem";
/// Directory of the confidential files, each sealed to the device's
/// ML-KEM-768 key (`image::seal`).
pub const SECRET_DIR: &str = "etc/meshota/secret";

/// BLAKE3 key-derivation context of the optional machine id.
pub const MACHINE_ID_CONTEXT: &str = "meshota 2026-11 machine-id from device serial v1";

/// A field that never changes once a device is provisioned: re-provisioning
/// with a different value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImmutableField {
    /// `/etc/hostname`: the device id.
    Hostname,
    /// `/etc/serial-number`: the device serial.
    SerialNumber,
    /// `/etc/mqtt-client-id`: the device id.
    MqttClientId,
    /// `/etc/mqtt-group-id`: the fleet.
    MqttGroupId,
    /// `/etc/machine-id` (optional): derived from the serial.
    MachineId,
}

impl ImmutableField {
    /// Every immutable field, in path order.
    pub const ALL: [Self; 5] = [
        Self::Hostname,
        Self::MachineId,
        Self::MqttClientId,
        Self::MqttGroupId,
        Self::SerialNumber,
    ];

    /// The file's path inside the image (and under the install root).
    #[must_use]
    pub const fn path(self) -> &'static str {
        match self {
            Self::Hostname => "etc/hostname",
            Self::SerialNumber => "etc/serial-number",
            Self::MqttClientId => "etc/mqtt-client-id",
            Self::MqttGroupId => "etc/mqtt-group-id",
            Self::MachineId => "etc/machine-id",
        }
    }

    /// Whether every image must hold it.
    #[must_use]
    pub const fn required(self) -> bool {
        !matches!(self, Self::MachineId)
    }

    /// The field for an image path, if it is one.
    #[must_use]
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.path() == path)
    }
}

/// Who the image is for: the values of the immutable fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The device id (hostname and MQTT client id).
    pub device_id: String,
    /// The device serial.
    pub serial: DeviceSerial,
    /// The fleet (MQTT group id).
    pub fleet: String,
    /// Whether `/etc/machine-id` is written.
    pub machine_id: bool,
}

/// The systemd machine id for a serial: 32 lowercase hex digits, the first
/// 16 bytes of `BLAKE3::derive_key(MACHINE_ID_CONTEXT, serial)`.
#[must_use]
pub fn machine_id(serial: DeviceSerial) -> String {
    let key = blake3::derive_key(MACHINE_ID_CONTEXT, serial.to_string().as_bytes());
    hex::encode(&key[..16])
}

/// Everything an image is built from.
#[derive(Clone, Debug)]
pub struct ImageInputs {
    /// The immutable identity.
    pub identity: Identity,
    /// The device certificate then its issuer, PEM.
    pub device_chain_pem: String,
    /// The root CA certificate, PEM.
    pub root_pem: String,
    /// The issuer's revocation list, PEM, if any.
    pub crl_pem: Option<String>,
    /// Mutable configuration files: (name, contents).
    pub config: Vec<(String, Vec<u8>)>,
}

/// One regular file of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    /// Its permission bits.
    pub mode: u16,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// The files of an image by path (relative, `/`-separated, no `.` or `..`
/// parts), sorted. Directories are implied by the paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageTree {
    files: BTreeMap<String, ImageFile>,
}

fn line(value: &str) -> Vec<u8> {
    format!("{value}\n").into_bytes()
}

fn bad_image(reason: impl Into<String>) -> Error {
    Error::BadImage {
        reason: reason.into(),
    }
}

impl ImageTree {
    /// Builds the tree of a device's image (see the module doc).
    ///
    /// # Errors
    /// [`Error::BadName`] for a device id, fleet or configuration file
    /// name breaking the name rules, [`Error::BadImage`] for a duplicate
    /// name or a limit exceeded.
    pub fn build(inputs: &ImageInputs) -> Result<Self> {
        let id = &inputs.identity;
        check_name("device id", &id.device_id)?;
        check_name("fleet", &id.fleet)?;
        let mut tree = Self::default();
        tree.insert(ImmutableField::Hostname.path(), 0o644, line(&id.device_id))?;
        tree.insert(
            ImmutableField::SerialNumber.path(),
            0o644,
            line(&id.serial.to_string()),
        )?;
        tree.insert(
            ImmutableField::MqttClientId.path(),
            0o644,
            line(&id.device_id),
        )?;
        tree.insert(ImmutableField::MqttGroupId.path(), 0o644, line(&id.fleet))?;
        if id.machine_id {
            tree.insert(
                ImmutableField::MachineId.path(),
                0o444,
                line(&machine_id(id.serial)),
            )?;
        }
        tree.insert(
            DEVICE_CERT,
            0o644,
            inputs.device_chain_pem.as_bytes().to_vec(),
        )?;
        tree.insert(ROOT_CERT, 0o644, inputs.root_pem.as_bytes().to_vec())?;
        if let Some(crl) = &inputs.crl_pem {
            tree.insert(CRL, 0o644, crl.as_bytes().to_vec())?;
        }
        for (name, bytes) in &inputs.config {
            check_name("configuration file name", name)?;
            tree.insert(&format!("{CONFIG_DIR}/{name}"), 0o644, bytes.clone())?;
        }
        Ok(tree)
    }

    /// Adds a file. Paths are relative and `/`-separated, each part a
    /// name by [`check_name`].
    ///
    /// # Errors
    /// [`Error::BadImage`]: a bad or duplicate path, a file over
    /// [`MAX_FILE_BYTES`], more than [`MAX_FILES`] files.
    pub fn insert(&mut self, path: &str, mode: u16, bytes: Vec<u8>) -> Result<()> {
        check_path(path)?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(bad_image(format!(
                "{path} is {} bytes; a file may have at most {MAX_FILE_BYTES}",
                bytes.len()
            )));
        }
        if self.files.len() >= MAX_FILES {
            return Err(bad_image(format!("more than {MAX_FILES} files")));
        }
        if self
            .files
            .keys()
            .any(|p| is_dir_of(p, path) || is_dir_of(path, p))
        {
            return Err(bad_image(format!("{path} is both a file and a directory")));
        }
        if self
            .files
            .insert(path.to_owned(), ImageFile { mode, bytes })
            .is_some()
        {
            return Err(bad_image(format!("{path} is listed twice")));
        }
        Ok(())
    }

    /// The file at `path`, if any.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&ImageFile> {
        self.files.get(path)
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &ImageFile)> {
        self.files.iter().map(|(p, f)| (p.as_str(), f))
    }

    /// Every directory the files need (each parent of each file), sorted,
    /// parents before children.
    #[must_use]
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs = std::collections::BTreeSet::new();
        for p in self.files.keys() {
            let mut rest = p.as_str();
            while let Some((parent, _)) = rest.rsplit_once('/') {
                dirs.insert(parent.to_owned());
                rest = parent;
            }
        }
        dirs.into_iter().collect()
    }

    /// The value of an immutable field (its file without the final `\n`),
    /// if the image holds it.
    ///
    /// # Errors
    /// [`Error::BadImage`] when the file is not one line of UTF-8.
    pub fn field(&self, field: ImmutableField) -> Result<Option<String>> {
        self.get(field.path())
            .map(|f| field_value(field, &f.bytes))
            .transpose()
    }

    /// Checks that the tree has the layout of the module doc: every
    /// required immutable field, the certificate files, and nothing
    /// outside the listed paths.
    ///
    /// # Errors
    /// [`Error::BadImage`] naming the first path or field at fault.
    pub fn check_layout(&self) -> Result<()> {
        for f in ImmutableField::ALL {
            if f.required() && self.get(f.path()).is_none() {
                return Err(bad_image(format!("it has no /{}", f.path())));
            }
            self.field(f)?;
        }
        for p in [DEVICE_CERT, ROOT_CERT] {
            if self.get(p).is_none() {
                return Err(bad_image(format!("it has no /{p}")));
            }
        }
        for (p, _) in self.files() {
            let known = ImmutableField::from_path(p).is_some()
                || [DEVICE_CERT, ROOT_CERT, CRL].contains(&p)
                || p.strip_prefix(CONFIG_DIR)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|n| !n.contains('/'))
                || is_extra_path(p);
            if !known {
                return Err(bad_image(format!(
                    "/{p} is not a file a provisioning image may hold"
                )));
            }
        }
        Ok(())
    }
}

/// Sealed files: `etc/meshota/secret/<name>`.
fn is_extra_path(path: &str) -> bool {
    path.strip_prefix(SECRET_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|n| !n.contains('/'))
}

fn field_value(field: ImmutableField, bytes: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|t| !t.is_empty() && !t.contains('\n'))
        .ok_or_else(|| bad_image(format!("/{} is not one line of text", field.path())))?;
    Ok(text.to_owned())
}

fn is_dir_of(dir: &str, path: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.len() > 255 {
        return Err(bad_image(format!("path {path:?} is empty or too long")));
    }
    for part in path.split('/') {
        check_name("image path part", part)
            .map_err(|_| bad_image(format!("path {path:?}: part {part:?} is not a plain name")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> ImageInputs {
        ImageInputs {
            identity: Identity {
                device_id: "pump-7".into(),
                serial: "1a2b3c4d5e".parse().unwrap(),
                fleet: "north".into(),
                machine_id: true,
            },
            device_chain_pem: "DEVICE\n".into(),
            root_pem: "ROOT\n".into(),
            crl_pem: None,
            config: vec![
                ("zz.toml".into(), b"z".to_vec()),
                ("a.toml".into(), b"a".to_vec()),
            ],
        }
    }

    #[test]
    fn immutable_fields_hold_identity_values_one_line_each() {
        let t = ImageTree::build(&inputs()).unwrap();
        assert_eq!(t.get("etc/hostname").unwrap().bytes, b"pump-7\n");
        assert_eq!(t.get("etc/serial-number").unwrap().bytes, b"1a2b3c4d5e\n");
        assert_eq!(t.get("etc/mqtt-client-id").unwrap().bytes, b"pump-7\n");
        assert_eq!(t.get("etc/mqtt-group-id").unwrap().bytes, b"north\n");
        let mid = t.field(ImmutableField::MachineId).unwrap().unwrap();
        assert_eq!(mid.len(), 32);
        assert!(
            mid.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        t.check_layout().unwrap();
    }

    #[test]
    fn tree_order_does_not_depend_on_input_order() {
        let a = ImageTree::build(&inputs()).unwrap();
        let mut i = inputs();
        i.config.reverse();
        assert_eq!(a, ImageTree::build(&i).unwrap());
        let paths: Vec<_> = a.files().map(|(p, _)| p.to_owned()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn config_names_that_could_escape_their_directory_are_refused() {
        for bad in ["../passwd", "a/b", ".hidden", "", "sp ace"] {
            let mut i = inputs();
            i.config = vec![(bad.into(), b"x".to_vec())];
            assert!(ImageTree::build(&i).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layout_check_refuses_unknown_paths_and_missing_fields() {
        let mut t = ImageTree::build(&inputs()).unwrap();
        t.insert("etc/shadow", 0o600, b"x".to_vec()).unwrap();
        let e = t.check_layout().unwrap_err().to_string();
        assert!(e.contains("/etc/shadow"), "{e}");

        let mut t = ImageTree::default();
        t.insert("etc/hostname", 0o644, b"a\n".to_vec()).unwrap();
        let e = t.check_layout().unwrap_err().to_string();
        assert!(e.contains("/etc/mqtt-client-id"), "{e}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_stored() {
        let mut t = ImageTree::default();
        let e = t
            .insert("etc/big", 0o644, vec![0; MAX_FILE_BYTES + 1])
            .unwrap_err();
        assert!(matches!(e, Error::BadImage { .. }));
        assert!(t.get("etc/big").is_none());
    }
}
