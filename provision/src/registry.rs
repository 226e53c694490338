//! The station's device registry (redb): which hardware is which device,
//! its current certificate, and what was revoked.
//!
//! Tables: `devices` (device id → record, a version byte then postcard),
//! `serials` (device serial → device id), `certs` (certificate serial →
//! device id), `artifacts` (device id → its current certificate and
//! ML-KEM-768 public key, what a provisioning image is built from; a
//! version byte then postcard), `meta` (`crl_number`). Every change is one redb write
//! transaction: it happens whole or not at all.
//!
//! Rules ([`Registry::resolve`] and again inside [`Registry::record`]):
//! - a serial already registered keeps its device id: re-provisioning the
//!   same hardware returns the same device id and serial
//!   ([`Error::DeviceIdMismatch`] if another id is asked for);
//! - a serial registered for a different hardware id is a collision of
//!   the 40-bit mapping ([`Error::SerialCollision`]);
//! - a device id belongs to one serial ([`Error::DeviceIdTaken`]);
//! - a revoked device is not provisioned again ([`Error::DeviceRevoked`]).
//!
//! Re-provisioning replaces the device's certificate; the one it replaces
//! is revoked as superseded (it stays on every later revocation list until
//! it expires), so a device has one valid certificate at a time.

use std::path::{Path, PathBuf};

use meshota_manifest::UnixTime;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::cert::{Period, rfc3339};
use crate::error::{Error, Result};
use crate::serial::{DeviceSerial, HardwareId, default_device_id};

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const SERIALS: TableDefinition<&str, &str> = TableDefinition::new("serials");
const CERTS: TableDefinition<&str, &str> = TableDefinition::new("certs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");

/// Version byte in front of every stored record.
const RECORD_VERSION: u8 = 1;
/// Largest stored record accepted, in bytes.
const MAX_RECORD_BYTES: usize = 1 << 20;

/// Whether a device may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Its current certificate is valid (until it expires).
    Active,
    /// Revoked at this time; its certificates are on the revocation list.
    Revoked {
        /// When.
        at: u64,
    },
}

/// A certificate of the device that is no longer valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    /// The certificate serial, lowercase hex.
    pub cert_serial: String,
    /// When it was revoked or superseded.
    pub at: u64,
    /// Its notAfter: after it, the entry may leave the revocation list.
    pub not_after: u64,
}

/// One device of the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device id (certificate CN).
    pub device_id: String,
    /// The 10-hex-digit device serial.
    pub serial: String,
    /// The normalised hardware id, when the station saw it (not for CSRs).
    pub hardware_id: Option<String>,
    /// The hardware class.
    pub hardware_class: String,
    /// The serial of its current certificate, lowercase hex.
    pub cert_serial: String,
    /// Current certificate's notBefore (Unix seconds).
    pub not_before: u64,
    /// Current certificate's notAfter (Unix seconds).
    pub not_after: u64,
    /// Active or revoked.
    pub status: Status,
    /// When the current certificate was recorded.
    pub provisioned_at: u64,
    /// Earlier certificates, superseded or revoked.
    pub revoked_certs: Vec<RevokedCert>,
}

/// A certificate just issued, to be recorded.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The device id.
    pub device_id: String,
    /// The device serial.
    pub serial: DeviceSerial,
    /// The normalised hardware id, if known.
    pub hardware_id: Option<HardwareId>,
    /// The hardware class.
    pub hardware_class: String,
    /// The new certificate's serial, lowercase hex.
    pub cert_serial: String,
    /// The new certificate's validity.
    pub period: Period,
    /// The certificate and KEM key to keep for provisioning images, when
    /// the caller has them (replaces what was kept for the device).
    pub artifacts: Option<DeviceArtifacts>,
}

/// What the station keeps of a device to build its provisioning image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceArtifacts {
    /// The device's current certificate, PEM (the certificate alone).
    pub cert_pem: String,
    /// The device's ML-KEM-768 encapsulation key (1,184 bytes), when known
    /// (keys made by the station, or `provision sign --kem-pub`).
    pub kem_public: Option<Vec<u8>>,
}

/// How to name the device to revoke.
#[derive(Clone, Debug)]
pub enum Selector {
    /// By device serial.
    Serial(DeviceSerial),
    /// By device id.
    DeviceId(String),
    /// By certificate serial (hex).
    CertSerial(String),
}

/// The registry database.
pub struct Registry {
    db: Database,
    path: PathBuf,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Registry({})", self.path.display())
    }
}

/// Names of the registry's values in errors.
const RECORD_NAME: &str = "device record";
const ARTIFACTS_NAME: &str = "device artifacts record";

/// A versioned registry value: `RECORD_VERSION` then postcard. `what`
/// names it in errors ("device record", "device artifacts").
fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_stdvec(value).map_err(|e| Error::build(what, e))?);
    Ok(out)
}

/// Reads a value written by [`encode`], refusing other versions and
/// values over [`MAX_RECORD_BYTES`].
fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let bad = |reason: String| Error::Registry {
        path: path.to_path_buf(),
        reason,
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) if rest.len() <= MAX_RECORD_BYTES => {
            postcard::from_bytes(rest).map_err(|e| bad(format!("a {what} does not decode: {e}")))
        }
        Some((v, _)) => Err(bad(format!("a {what} has unknown version {v}"))),
        None => Err(bad(format!("an empty {what}"))),
    }
}

impl Registry {
    /// Opens (or creates) the registry at `path`.
    ///
    /// # Errors
    /// [`Error::Registry`], e.g. when another process holds it open.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| Error::Registry {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let r = Self {
            db,
            path: path.to_path_buf(),
        };
        let tx = r.db.begin_write().map_err(|e| r.err(e))?;
        tx.open_table(DEVICES).map_err(|e| r.err(e))?;
        tx.open_table(SERIALS).map_err(|e| r.err(e))?;
        tx.open_table(CERTS).map_err(|e| r.err(e))?;
        tx.open_table(META).map_err(|e| r.err(e))?;
        tx.open_table(ARTIFACTS).map_err(|e| r.err(e))?;
        tx.commit().map_err(|e| r.err(e))?;
        Ok(r)
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Registry {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// The device with this id.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn get(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DEVICES).map_err(|e| self.err(e))?;
        t.get(device_id)
            .map_err(|e| self.err(e))?
            .map(|v| decode(v.value(), &self.path, RECORD_NAME))
            .transpose()
    }

    /// What the station kept of the device's current certificate, if anything.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn artifacts(&self, device_id: &str) -> Result<Option<DeviceArtifacts>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ARTIFACTS).map_err(|e| self.err(e))?;
        t.get(device_id)
            .map_err(|e| self.err(e))?
            .map(|v| decode(v.value(), &self.path, ARTIFACTS_NAME))
            .transpose()
    }

    /// The device with this serial.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn by_serial(&self, serial: DeviceSerial) -> Result<Option<DeviceRecord>> {
        let id = {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let t = tx.open_table(SERIALS).map_err(|e| self.err(e))?;
            t.get(serial.to_string().as_str())
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_owned())
        };
        match id {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// The device id hardware with `serial` gets (see the module rules):
    /// its registered id, else `requested`, else `dev-<serial>`.
    ///
    /// # Errors
    /// [`Error::SerialCollision`], [`Error::DeviceIdMismatch`],
    /// [`Error::DeviceIdTaken`], [`Error::DeviceRevoked`], [`Error::Registry`].
    pub fn resolve(
        &self,
        serial: DeviceSerial,
        hardware_id: Option<&HardwareId>,
        requested: Option<&str>,
    ) -> Result<String> {
        let existing = self.by_serial(serial)?;
        let taken = match (&existing, requested) {
            (None, Some(id)) => self.get(id)?,
            _ => None,
        };
        check_claim(
            serial,
            hardware_id,
            requested,
            existing.as_ref(),
            taken.as_ref(),
        )
    }

    /// Records issued certificates in one transaction, after checking each
    /// against the rules again. Nothing is recorded if any fails.
    ///
    /// # Errors
    /// The first rule broken; [`Error::Registry`].
    pub fn record(&self, issued: &[Issued], now: UnixTime) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut devices = tx.open_table(DEVICES).map_err(|e| self.err(e))?;
            let mut serials = tx.open_table(SERIALS).map_err(|e| self.err(e))?;
            let mut certs = tx.open_table(CERTS).map_err(|e| self.err(e))?;
            let mut artifacts = tx.open_table(ARTIFACTS).map_err(|e| self.err(e))?;
            for i in issued {
                let serial = i.serial.to_string();
                let existing_id = serials
                    .get(serial.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_owned());
                let existing = match &existing_id {
                    Some(id) => devices
                        .get(id.as_str())
                        .map_err(|e| self.err(e))?
                        .map(|v| decode(v.value(), &self.path, RECORD_NAME))
                        .transpose()?,
                    None => None,
                };
                let taken = if existing.is_none() {
                    devices
                        .get(i.device_id.as_str())
                        .map_err(|e| self.err(e))?
                        .map(|v| decode(v.value(), &self.path, RECORD_NAME))
                        .transpose()?
                } else {
                    None
                };
                let id = check_claim(
                    i.serial,
                    i.hardware_id.as_ref(),
                    Some(&i.device_id),
                    existing.as_ref(),
                    taken.as_ref(),
                )?;
                let mut revoked_certs = Vec::new();
                let mut hardware_id = i.hardware_id.as_ref().map(|h| h.as_str().to_owned());
                if let Some(old) = existing {
                    revoked_certs = old.revoked_certs;
                    revoked_certs.push(RevokedCert {
                        cert_serial: old.cert_serial,
                        at: now.0,
                        not_after: old.not_after,
                    });
                    hardware_id = hardware_id.or(old.hardware_id);
                }
                let record = DeviceRecord {
                    device_id: id.clone(),
                    serial: serial.clone(),
                    hardware_id,
                    hardware_class: i.hardware_class.clone(),
                    cert_serial: i.cert_serial.clone(),
                    not_before: i.period.not_before.0,
                    not_after: i.period.not_after.0,
                    status: Status::Active,
                    provisioned_at: now.0,
                    revoked_certs,
                };
                devices
                    .insert(id.as_str(), encode(&record, RECORD_NAME)?.as_slice())
                    .map_err(|e| self.err(e))?;
                serials
                    .insert(serial.as_str(), id.as_str())
                    .map_err(|e| self.err(e))?;
                certs
                    .insert(i.cert_serial.as_str(), id.as_str())
                    .map_err(|e| self.err(e))?;
                match &i.artifacts {
                    Some(a) => {
                        artifacts
                            .insert(id.as_str(), encode(a, ARTIFACTS_NAME)?.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    // A certificate the station keeps nothing of: drop what
                    // it kept of the old one, which no longer matches.
                    None => {
                        artifacts.remove(id.as_str()).map_err(|e| self.err(e))?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Marks a device revoked at `now`; its current certificate joins the
    /// revocation list. Revoking a revoked device changes nothing.
    ///
    /// # Errors
    /// [`Error::UnknownDevice`], [`Error::Registry`].
    pub fn revoke(&self, selector: &Selector, now: UnixTime) -> Result<DeviceRecord> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let record = {
            let mut devices = tx.open_table(DEVICES).map_err(|e| self.err(e))?;
            let id = match selector {
                Selector::DeviceId(id) => Some(id.clone()),
                Selector::Serial(s) => {
                    let t = tx.open_table(SERIALS).map_err(|e| self.err(e))?;
                    let v = t.get(s.to_string().as_str()).map_err(|e| self.err(e))?;
                    v.map(|v| v.value().to_owned())
                }
                Selector::CertSerial(c) => {
                    let t = tx.open_table(CERTS).map_err(|e| self.err(e))?;
                    let v = t
                        .get(c.to_ascii_lowercase().as_str())
                        .map_err(|e| self.err(e))?;
                    v.map(|v| v.value().to_owned())
                }
            };
            let unknown = || {
                Error::UnknownDevice(match selector {
                    Selector::DeviceId(id) => format!("device id {id}"),
                    Selector::Serial(s) => format!("serial {s}"),
                    Selector::CertSerial(c) => format!("certificate serial {c}"),
                })
            };
            let id = id.ok_or_else(unknown)?;
            let mut record: DeviceRecord = devices
                .get(id.as_str())
                .map_err(|e| self.err(e))?
                .map(|v| decode(v.value(), &self.path, RECORD_NAME))
                .transpose()?
                .ok_or_else(unknown)?;
            if record.status == Status::Active {
                record.status = Status::Revoked { at: now.0 };
                record.revoked_certs.push(RevokedCert {
                    cert_serial: record.cert_serial.clone(),
                    at: now.0,
                    not_after: record.not_after,
                });
                devices
                    .insert(id.as_str(), encode(&record, RECORD_NAME)?.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            record
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(record)
    }

    /// Every device, ordered by device id.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn devices(&self) -> Result<Vec<DeviceRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DEVICES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(decode(v.value(), &self.path, RECORD_NAME)?);
        }
        Ok(out)
    }

    /// Every revoked or superseded certificate not expired at `now`:
    /// (serial bytes, revocation time), ordered by serial.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn revoked_certs(&self, now: UnixTime) -> Result<Vec<(Vec<u8>, UnixTime)>> {
        let mut out = Vec::new();
        for d in self.devices()? {
            for r in d.revoked_certs {
                if r.not_after >= now.0 {
                    let bytes = hex::decode(&r.cert_serial).map_err(|e| self.err(e))?;
                    out.push((bytes, UnixTime(r.at)));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Takes the next revocation list number (1, 2, ...), durably.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub fn next_crl_number(&self) -> Result<u64> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let n = {
            let mut t = tx.open_table(META).map_err(|e| self.err(e))?;
            let n = t
                .get("crl_number")
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value())
                + 1;
            t.insert("crl_number", n).map_err(|e| self.err(e))?;
            n
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }
}

fn check_claim(
    serial: DeviceSerial,
    hardware_id: Option<&HardwareId>,
    requested: Option<&str>,
    existing: Option<&DeviceRecord>,
    taken: Option<&DeviceRecord>,
) -> Result<String> {
    if let Some(r) = existing {
        if let (Some(new), Some(old)) = (hardware_id, &r.hardware_id) {
            if new.as_str() != old {
                return Err(Error::SerialCollision {
                    serial: serial.to_string(),
                    existing: old.clone(),
                    new: new.as_str().to_owned(),
                });
            }
        }
        if matches!(r.status, Status::Revoked { .. }) {
            return Err(Error::DeviceRevoked(r.device_id.clone()));
        }
        if let Some(req) = requested {
            if req != r.device_id {
                return Err(Error::DeviceIdMismatch {
                    serial: serial.to_string(),
                    registered: r.device_id.clone(),
                    requested: req.to_owned(),
                });
            }
        }
        return Ok(r.device_id.clone());
    }
    if let Some(t) = taken {
        return Err(Error::DeviceIdTaken {
            device_id: t.device_id.clone(),
            registered_serial: t.serial.clone(),
            serial: serial.to_string(),
        });
    }
    Ok(requested.map_or_else(|| default_device_id(serial), str::to_owned))
}

/// The CSV export: a header line, then one line per device. Fields never
/// hold commas or quotes (names and hardware ids are restricted), so no
/// quoting is needed. Times are RFC 3339; `revoked_at` is empty for active
/// devices.
#[must_use]
pub fn export_csv(records: &[DeviceRecord]) -> String {
    let mut out = String::from(
        "device_id,serial,hardware_id,hardware_class,cert_serial,not_before,not_after,status,revoked_at\n",
    );
    for r in records {
        let (status, revoked_at) = match r.status {
            Status::Active => ("active", String::new()),
            Status::Revoked { at } => ("revoked", rfc3339(UnixTime(at))),
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.device_id,
            r.serial,
            r.hardware_id.as_deref().unwrap_or(""),
            r.hardware_class,
            r.cert_serial,
            rfc3339(UnixTime(r.not_before)),
            rfc3339(UnixTime(r.not_after)),
            status,
            revoked_at
        ));
    }
    out
}

/// The JSON export: an array of objects with the CSV's fields (`hardware_id`
/// and `revoked_at` null when unknown / active).
#[must_use]
pub fn export_json(records: &[DeviceRecord]) -> String {
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let (status, revoked_at) = match r.status {
                Status::Active => ("active", None),
                Status::Revoked { at } => ("revoked", Some(rfc3339(UnixTime(at)))),
            };
            serde_json::json!({
                "device_id": r.device_id,
                "serial": r.serial,
                "hardware_id": r.hardware_id,
                "hardware_class": r.hardware_class,
                "cert_serial": r.cert_serial,
                "not_before": rfc3339(UnixTime(r.not_before)),
                "not_after": rfc3339(UnixTime(r.not_after)),
                "status": status,
                "revoked_at": revoked_at,
            })
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
}
