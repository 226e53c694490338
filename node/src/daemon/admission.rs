//! Admission by device certificate (`[mesh.certificates]`): a peer is
//! admitted when the certificate chain in its hello verifies to the
//! fleet's root CA now (the provision crate's `verify_device`: structure,
//! signatures, path length, validity, key usage, and the revocation list
//! when one is configured) and its device certificate names the ML-DSA-65
//! key the peer proved by channel binding. The hardware class in the
//! certificate must be the one the peer declares.
//!
//! The revocation list is re-read when its file changes, so revoking a
//! device at the station and copying the new list takes effect on the
//! next connection without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use meshota_manifest::fs::read_limited;
use meshota_mesh::quic::{AdmissionPolicy, hello::Hello};
use meshota_provision::ca::{MAX_CERT_FILE_BYTES, parse_crl};
use meshota_provision::cert::parse_pem_chain;
use meshota_provision::verify::verify_device;
use meshota_provision::x509_cert::Certificate;
use meshota_provision::x509_cert::crl::CertificateList;
use meshota_provision::x509_cert::der::{Decode, Encode};

use crate::config::CertificatesConfig;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::timefmt::now;

/// The revocation list as last read, with the file time it was read at.
#[derive(Debug, Default)]
struct Crl {
    modified: Option<SystemTime>,
    list: Option<CertificateList>,
}

/// The certificate rule of one fleet.
#[derive(Debug)]
pub(crate) struct CertificateAdmission {
    root: Certificate,
    crl_path: Option<PathBuf>,
    crl: Mutex<Crl>,
}

/// Reads a PEM chain (device certificate first).
fn read_chain(path: &Path) -> CmdResult<Vec<Certificate>> {
    let bytes = read_limited(path, MAX_CERT_FILE_BYTES)?;
    let chain = parse_pem_chain(&bytes).at(path)?;
    if chain.is_empty() {
        return Err(Failure::file(path, "holds no certificate"));
    }
    Ok(chain)
}

impl CertificateAdmission {
    /// Loads the root and the revocation list (which must exist and parse
    /// when configured); also returns this node's own chain in DER, for its
    /// hellos, after checking that it names `device_key`.
    pub(crate) fn load(
        cfg: &CertificatesConfig,
        device_key: &meshota_manifest::PublicKey,
    ) -> CmdResult<(Self, Vec<Vec<u8>>)> {
        let root = read_chain(&cfg.root)?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::file(&cfg.root, "holds no certificate"))?;
        let chain = read_chain(&cfg.chain)?;
        let named = meshota_provision::verify::certificate_key(&chain[0]).at(&cfg.chain)?;
        if named != *device_key {
            return Err(Failure::file(
                &cfg.chain,
                "its device certificate names another key than mesh.device_key: peers would refuse this node",
            ));
        }
        let own = chain
            .iter()
            .map(|c| c.to_der().at(&cfg.chain))
            .collect::<CmdResult<Vec<_>>>()?;
        let admission = Self {
            root,
            crl_path: cfg.crl.clone(),
            crl: Mutex::new(Crl::default()),
        };
        if let Some(path) = &cfg.crl {
            admission
                .current_crl()
                .map_err(|e| Failure::file(path, e))?;
        }
        Ok((admission, own))
    }

    /// The revocation list, re-read if its file changed since last time.
    fn current_crl(&self) -> Result<Option<CertificateList>, String> {
        let Some(path) = &self.crl_path else {
            return Ok(None);
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut crl = self
            .crl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if crl.modified != Some(modified) || crl.list.is_none() {
            let bytes = read_limited(path, MAX_CERT_FILE_BYTES).map_err(|e| e.to_string())?;
            let list = parse_crl(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            *crl = Crl {
                modified: Some(modified),
                list: Some(list),
            };
        }
        Ok(crl.list.clone())
    }
}

impl AdmissionPolicy for CertificateAdmission {
    fn admit(&self, hello: &Hello) -> Result<(), String> {
        let certs = hello
            .certificates
            .iter()
            .map(|der| Certificate::from_der(der).map_err(|e| format!("certificate: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((device, intermediates)) = certs.split_first() else {
            return Err("presented no certificate".into());
        };
        let crl = self.current_crl()?;
        let verified = verify_device(&self.root, intermediates, device, now(), crl.as_ref())
            .map_err(|e| e.to_string())?;
        if verified.public_key != hello.device_key {
            return Err(format!(
                "device certificate {} names another key than the one proved",
                verified.cert_serial
            ));
        }
        if verified.subject.hardware != hello.hardware {
            return Err(format!(
                "certificate hardware class {:?}, hello says {:?}",
                verified.subject.hardware, hello.hardware
            ));
        }
        Ok(())
    }
}
