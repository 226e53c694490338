//! The station side of an image: gathering a device's inputs from an
//! intermediate CA directory and its registry.

use std::path::Path;

use meshota_manifest::fs::read_limited;

use super::contents::{Identity, ImageInputs};
use crate::ca::{CERT_FILE, CRL_FILE, MAX_CERT_FILE_BYTES, ROOT_FILE};
use crate::cert::{parse_pem, parse_pem_chain};
use crate::error::{Error, Result};
use crate::registry::{DeviceArtifacts, DeviceRecord, Registry, Status};
use crate::serial::HardwareId;

/// A device's registry entry and the inputs of its image.
#[derive(Clone, Debug)]
pub struct DeviceImageSource {
    /// The registry record.
    pub record: DeviceRecord,
    /// What the station kept of its certificate and KEM key.
    pub artifacts: DeviceArtifacts,
    /// The image inputs (configuration still empty).
    pub inputs: ImageInputs,
}

fn pem_file(path: &Path) -> Result<String> {
    let bytes = read_limited(path, MAX_CERT_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| Error::Malformed {
        what: "PEM file",
        reason: format!("{} is not UTF-8", path.display()),
    })
}

/// Looks the hardware up in the registry of the intermediate CA in
/// `ca_dir` and gathers its image inputs: identity, certificate chain
/// (device, intermediate), root certificate, and the CA's current
/// revocation list when there is one.
///
/// # Errors
/// [`Error::UnknownDevice`] (not provisioned), [`Error::DeviceRevoked`],
/// [`Error::SerialCollision`] (the serial belongs to other hardware),
/// [`Error::MissingArtifact`] (no certificate kept), file and registry errors.
pub fn device_source(
    ca_dir: &Path,
    registry: &Registry,
    hwid: &HardwareId,
    fleet: &str,
    machine_id: bool,
) -> Result<DeviceImageSource> {
    let serial = hwid.serial();
    let record = registry
        .by_serial(serial)?
        .ok_or_else(|| Error::UnknownDevice(format!("serial {serial} (hardware id {hwid})")))?;
    if let Some(known) = &record.hardware_id {
        if known != hwid.as_str() {
            return Err(Error::SerialCollision {
                serial: serial.to_string(),
                existing: known.clone(),
                new: hwid.as_str().to_owned(),
            });
        }
    }
    if matches!(record.status, Status::Revoked { .. }) {
        return Err(Error::DeviceRevoked(record.device_id));
    }
    let artifacts =
        registry
            .artifacts(&record.device_id)?
            .ok_or_else(|| Error::MissingArtifact {
                device_id: record.device_id.clone(),
                what: "its certificate",
            })?;
    let cert = parse_pem(artifacts.cert_pem.as_bytes())?;
    if crate::cert::serial_hex(&cert) != record.cert_serial {
        return Err(Error::Registry {
            path: ca_dir.to_path_buf(),
            reason: format!(
                "the certificate kept for {} is not its current one ({})",
                record.device_id, record.cert_serial
            ),
        });
    }
    let intermediate = pem_file(&ca_dir.join(CERT_FILE))?;
    parse_pem_chain(intermediate.as_bytes())?;
    let root_pem = pem_file(&ca_dir.join(ROOT_FILE))?;
    parse_pem(root_pem.as_bytes())?;
    let crl_path = ca_dir.join(CRL_FILE);
    let crl_pem = if crl_path.exists() {
        Some(pem_file(&crl_path)?)
    } else {
        None
    };
    let inputs = ImageInputs {
        identity: Identity {
            device_id: record.device_id.clone(),
            serial,
            fleet: fleet.to_owned(),
            machine_id,
        },
        device_chain_pem: format!("{}{intermediate}", artifacts.cert_pem),
        root_pem,
        crl_pem,
        config: Vec::new(),
    };
    Ok(DeviceImageSource {
        record,
        artifacts,
        inputs,
    })
}
