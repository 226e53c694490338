//! A CA directory: its certificate, its key, its audit log, and what it
//! signs.
//!
//! ```text
//! DIR/ca.crt         the CA certificate (PEM)
//! DIR/ca.key         the CA key: meshota's secret key file (0600, optionally
//!                    passphrase-sealed, exactly as release keys)
//! DIR/root.crt       intermediates only: the root certificate (PEM)
//! DIR/audit.log      one JSON line per signing operation, appended and fsynced
//!                    before the signed object is handed out
//! DIR/registry.redb  intermediates only: the device registry
//! DIR/crl.pem        intermediates only: the latest revocation list
//! ```
//!
//! A CA refuses to sign anything outside its own certificate's validity
//! period ([`Error::CaOutOfValidity`]), and every certificate it issues
//! ends no later than its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use der::Encode;
use der::referenced::OwnedToRef;
use meshota_manifest::fs::{read_limited, read_secret, write_atomic};
use meshota_manifest::limits::MAX_SECRET_KEY_FILE_BYTES;
use meshota_manifest::{PublicKey, SecretKey, UnixTime};
use serde::Serialize;
use x509_cert::Certificate;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::ToExtension;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, SubjectKeyIdentifier};
use x509_cert::serial_number::SerialNumber;
use zeroize::Zeroizing;

use crate::alg::ml_dsa_65_algorithm;
use crate::cert::{
    CertRequest, DeviceSubject, Period, Role, ca_name, display_name, issue, parse_pem, rfc3339,
    serial_hex, to_pem, x509_time,
};
use crate::error::{Error, Result};
use crate::verify::certificate_key;

/// The CA certificate file in a CA directory.
pub const CERT_FILE: &str = "ca.crt";
/// The CA key file in a CA directory.
pub const KEY_FILE: &str = "ca.key";
/// The root certificate kept in an intermediate's directory.
pub const ROOT_FILE: &str = "root.crt";
/// The audit log of a CA directory.
pub const AUDIT_FILE: &str = "audit.log";
/// The device registry of an intermediate's directory.
pub const REGISTRY_FILE: &str = "registry.redb";
/// The latest revocation list of an intermediate's directory.
pub const CRL_FILE: &str = "crl.pem";

/// Largest certificate PEM file read, in bytes.
pub const MAX_CERT_FILE_BYTES: usize = 256 * 1024;

/// One line of the audit log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who: the operator string the caller supplied (user, uid, host).
    pub operator: String,
    /// What: `create-root`, `issue-intermediate`, `issue-device`, `issue-crl`.
    pub action: &'static str,
    /// The signing CA's name.
    pub ca: String,
    /// The subject signed for (RFC 4514 string), or the CRL number.
    pub subject: String,
    /// The serial number of the certificate issued (hex), or the CRL number.
    pub serial: String,
}

/// Appends entries to `DIR/audit.log` (created 0600) as JSON lines and
/// fsyncs before returning.
///
/// # Errors
/// [`Error::Io`].
pub fn append_audit(dir: &Path, entries: &[AuditEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let path = dir.join(AUDIT_FILE);
    let mut text = String::new();
    for e in entries {
        let line = serde_json::to_string(e).map_err(|e| Error::build("audit entry", e))?;
        text.push_str(&line);
        text.push('\n');
    }
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io(&path))?;
    f.write_all(text.as_bytes()).map_err(Error::io(&path))?;
    f.sync_all().map_err(Error::io(&path))
}

fn random_serial() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::Rng(e.to_string()))?;
    Ok(b)
}

/// The secret key file bytes to write for a new CA key (plain or sealed:
/// the caller decides, as for release keys).
pub struct NewKey<'a> {
    /// The key.
    pub key: &'a SecretKey,
    /// Its encoded secret key file.
    pub file: &'a [u8],
}

impl core::fmt::Debug for NewKey<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NewKey({:?})", self.key)
    }
}

/// An open CA: certificate and key (matching), the directory, who acts.
pub struct Ca {
    dir: PathBuf,
    cert: Certificate,
    key: SecretKey,
    root: Option<Certificate>,
    operator: String,
}

impl core::fmt::Debug for Ca {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Ca({:?}, {})", self.name(), self.dir.display())
    }
}

/// Checks that `dir` holds no CA yet, and creates it.
fn prepare_new_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    for f in [CERT_FILE, KEY_FILE] {
        let p = dir.join(f);
        if p.exists() {
            return Err(Error::Io {
                path: p,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; refusing to overwrite a CA",
                ),
            });
        }
    }
    Ok(())
}

fn write_ca_files(dir: &Path, cert: &Certificate, key: &NewKey<'_>) -> Result<()> {
    // The key first: a certificate without its key would be useless, a key
    // without a certificate is only a stray file.
    write_atomic(&dir.join(KEY_FILE), key.file, 0o600)?;
    write_atomic(&dir.join(CERT_FILE), to_pem(cert)?.as_bytes(), 0o644)?;
    Ok(())
}

impl Ca {
    /// Creates a root CA in `dir`: a self-signed certificate for `key`
    /// valid `days` days from `now`, the key file, and the first audit
    /// entry.
    ///
    /// # Errors
    /// [`Error::Io`] when `dir` already holds a CA; [`Error::BadName`].
    pub fn create_root(
        dir: &Path,
        name: &str,
        key: &NewKey<'_>,
        days: u32,
        path_len: u8,
        now: UnixTime,
        operator: &str,
    ) -> Result<Self> {
        let subject = ca_name(name)?;
        prepare_new_dir(dir)?;
        let cert = issue(
            &CertRequest {
                role: Role::Root { path_len },
                subject,
                subject_key: key.key.public(),
                period: Period::days_from(now, days, None),
                serial: random_serial()?,
            },
            None,
            key.key,
        )?;
        append_audit(
            dir,
            &[AuditEntry {
                time: rfc3339(now),
                operator: operator.to_owned(),
                action: "create-root",
                ca: name.to_owned(),
                subject: cert.tbs_certificate().subject().to_string(),
                serial: serial_hex(&cert),
            }],
        )?;
        write_ca_files(dir, &cert, key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert,
            key: key.key.clone(),
            root: None,
            operator: operator.to_owned(),
        })
    }

    /// This root issues an intermediate CA into `dir` (certificate, key
    /// file, a copy of the root certificate). Logged in this CA's audit log.
    ///
    /// # Errors
    /// [`Error::CaOutOfValidity`], [`Error::Io`] when `dir` already holds a
    /// CA, [`Error::BadName`].
    pub fn create_intermediate(
        &self,
        dir: &Path,
        name: &str,
        key: &NewKey<'_>,
        days: u32,
        path_len: u8,
        now: UnixTime,
    ) -> Result<Self> {
        self.check_usable(now)?;
        let subject = ca_name(name)?;
        prepare_new_dir(dir)?;
        let cert = issue(
            &CertRequest {
                role: Role::Intermediate { path_len },
                subject,
                subject_key: key.key.public(),
                period: Period::days_from(now, days, Some(self.period().not_after)),
                serial: random_serial()?,
            },
            Some(&self.cert),
            &self.key,
        )?;
        self.audit(now, "issue-intermediate", &cert)?;
        write_atomic(&dir.join(ROOT_FILE), to_pem(&self.cert)?.as_bytes(), 0o644)?;
        write_ca_files(dir, &cert, key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert,
            key: key.key.clone(),
            root: Some(self.cert.clone()),
            operator: self.operator.clone(),
        })
    }

    /// Opens the CA in `dir`; `passphrase` is asked only for a sealed key.
    ///
    /// # Errors
    /// [`Error::File`] (missing files, a key file others can read),
    /// [`Error::Key`] (wrong passphrase), [`Error::Malformed`],
    /// [`Error::Profile`] when the key is not the certificate's.
    pub fn open(
        dir: &Path,
        operator: &str,
        passphrase: impl FnOnce(&str) -> Option<Zeroizing<String>>,
    ) -> Result<Self> {
        let cert = read_cert(&dir.join(CERT_FILE))?;
        let root_path = dir.join(ROOT_FILE);
        let root = if root_path.exists() {
            Some(read_cert(&root_path)?)
        } else {
            None
        };
        let key_path = dir.join(KEY_FILE);
        let bytes = Zeroizing::new(read_secret(&key_path, MAX_SECRET_KEY_FILE_BYTES)?);
        let key =
            SecretKey::from_secret_key_file(&bytes, passphrase).map_err(|source| Error::Key {
                path: key_path.clone(),
                source,
            })?;
        if &certificate_key(&cert)? != key.public() {
            return Err(Error::profile(
                "CA directory",
                format!(
                    "{} is not the key of {}",
                    key_path.display(),
                    dir.join(CERT_FILE).display()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cert,
            key,
            root,
            operator: operator.to_owned(),
        })
    }

    /// The CA's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    #[must_use]
    pub const fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The root certificate above an intermediate (`None` for a root).
    #[must_use]
    pub const fn root(&self) -> Option<&Certificate> {
        self.root.as_ref()
    }

    /// The CA's name (its subject CN).
    #[must_use]
    pub fn name(&self) -> String {
        display_name(self.cert.tbs_certificate().subject())
    }

    /// The CA certificate's validity.
    #[must_use]
    pub fn period(&self) -> Period {
        Period::of(&self.cert)
    }

    /// The CA's public key.
    #[must_use]
    pub const fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    /// Refuses to act outside the CA certificate's validity.
    ///
    /// # Errors
    /// [`Error::CaOutOfValidity`].
    pub fn check_usable(&self, now: UnixTime) -> Result<()> {
        let p = self.period();
        if p.contains(now) {
            Ok(())
        } else {
            Err(Error::CaOutOfValidity {
                name: self.name(),
                not_before: rfc3339(p.not_before),
                not_after: rfc3339(p.not_after),
                at: rfc3339(now),
            })
        }
    }

    fn require_issuing(&self) -> Result<()> {
        if self.root.is_none() {
            return Err(Error::NotIssuingCa(self.dir.clone()));
        }
        Ok(())
    }

    fn entry(&self, now: UnixTime, action: &'static str, cert: &Certificate) -> AuditEntry {
        AuditEntry {
            time: rfc3339(now),
            operator: self.operator.clone(),
            action,
            ca: self.name(),
            subject: cert.tbs_certificate().subject().to_string(),
            serial: serial_hex(cert),
        }
    }

    fn audit(&self, now: UnixTime, action: &'static str, cert: &Certificate) -> Result<()> {
        append_audit(&self.dir, &[self.entry(now, action, cert)])
    }

    /// Issues device certificates, one per request, valid `days` days from
    /// `now` (clamped to the CA's notAfter). All successful issues are
    /// written to the audit log (one fsync) before any is returned; a
    /// request that fails (bad names) fails alone.
    ///
    /// # Errors
    /// The outer error: [`Error::CaOutOfValidity`], [`Error::NotIssuingCa`],
    /// or the audit log could not be written (then nothing is returned).
    pub fn issue_devices(
        &self,
        requests: &[(DeviceSubject, PublicKey)],
        days: u32,
        now: UnixTime,
    ) -> Result<Vec<Result<Certificate>>> {
        self.check_usable(now)?;
        self.require_issuing()?;
        let period = Period::days_from(now, days, Some(self.period().not_after));
        let out: Vec<Result<Certificate>> = requests
            .iter()
            .map(|(subject, key)| {
                issue(
                    &CertRequest {
                        role: Role::Device,
                        subject: subject.to_name()?,
                        subject_key: key,
                        period,
                        serial: random_serial()?,
                    },
                    Some(&self.cert),
                    &self.key,
                )
            })
            .collect();
        let entries: Vec<AuditEntry> = out
            .iter()
            .flatten()
            .map(|c| self.entry(now, "issue-device", c))
            .collect();
        append_audit(&self.dir, &entries)?;
        Ok(out)
    }

    /// Issues one device certificate (see [`Ca::issue_devices`]).
    ///
    /// # Errors
    /// As [`Ca::issue_devices`], and the request's own error.
    pub fn issue_device(
        &self,
        subject: &DeviceSubject,
        key: &PublicKey,
        days: u32,
        now: UnixTime,
    ) -> Result<Certificate> {
        self.issue_devices(&[(subject.clone(), key.clone())], days, now)?
            .pop()
            .unwrap_or_else(|| Err(Error::build("certificate", "no result")))
    }

    /// Issues revocation list number `number`: `revoked` lists certificate
    /// serials (bytes) and revocation times; valid from `now` for
    /// `next_update_days` days. Logged before it is returned.
    ///
    /// # Errors
    /// [`Error::CaOutOfValidity`], [`Error::Build`], [`Error::Io`].
    pub fn issue_crl(
        &self,
        revoked: &[(Vec<u8>, UnixTime)],
        number: u64,
        now: UnixTime,
        next_update_days: u32,
    ) -> Result<CertificateList> {
        self.check_usable(now)?;
        let crl_number = der::asn1::Uint::new(&number.to_be_bytes())
            .map(CrlNumber::from)
            .map_err(|e| Error::build("CRL", e))?;
        let mut entries = Vec::with_capacity(revoked.len());
        for (serial, at) in revoked {
            entries.push(RevokedCert {
                serial_number: SerialNumber::new(serial).map_err(|e| Error::build("CRL", e))?,
                revocation_date: x509_time(*at)?,
                crl_entry_extensions: None,
            });
        }
        let next = Period::days_from(now, next_update_days, None).not_after;
        // Built by hand rather than with x509-cert 0.3's `CrlBuilder`, which
        // copies the issuer certificate's own authorityKeyIdentifier (the
        // root's key id, for an intermediate) into the CRL. RFC 5280 §5.2.1:
        // a CRL's AKI names the key that signed it, the issuer's SKI.
        let issuer = self.cert.tbs_certificate().subject().clone();
        let ski = SubjectKeyIdentifier::try_from(
            self.cert
                .tbs_certificate()
                .subject_public_key_info()
                .owned_to_ref(),
        )
        .map_err(|e| Error::build("CRL", e))?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(ski.0),
            ..Default::default()
        };
        let number_ext = crl_number
            .to_extension(&issuer, &[])
            .map_err(|e| Error::build("CRL", e))?;
        let aki_ext = aki
            .to_extension(&issuer, core::slice::from_ref(&number_ext))
            .map_err(|e| Error::build("CRL", e))?;
        let extensions = vec![number_ext, aki_ext];
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: ml_dsa_65_algorithm(),
            issuer,
            this_update: x509_time(now)?,
            next_update: Some(x509_time(next)?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: Some(extensions),
        };
        let signed = tbs.to_der().map_err(|e| Error::build("CRL", e))?;
        let signature = self
            .key
            .sign(&signed, b"")
            .map_err(|e| Error::build("CRL", e))?;
        let crl = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: ml_dsa_65_algorithm(),
            signature: der::asn1::BitString::new(0, signature)
                .map_err(|e| Error::build("CRL", e))?,
        };
        append_audit(
            &self.dir,
            &[AuditEntry {
                time: rfc3339(now),
                operator: self.operator.clone(),
                action: "issue-crl",
                ca: self.name(),
                subject: format!("CRL number {number}, {} revoked", revoked.len()),
                serial: number.to_string(),
            }],
        )?;
        Ok(crl)
    }
}

/// Reads one PEM certificate file.
///
/// # Errors
/// [`Error::File`], [`Error::Malformed`] (naming the file).
pub fn read_cert(path: &Path) -> Result<Certificate> {
    let bytes = read_limited(path, MAX_CERT_FILE_BYTES)?;
    parse_pem(&bytes).map_err(|e| Error::Malformed {
        what: "certificate",
        reason: format!("{}: {e}", path.display()),
    })
}

/// Fsyncs a directory (after files were renamed into it).
///
/// # Errors
/// [`Error::Io`].
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir))
}

/// A revocation list as PEM (`X509 CRL`).
///
/// # Errors
/// [`Error::Build`], never expected.
pub fn crl_to_pem(crl: &CertificateList) -> Result<String> {
    use der::EncodePem;
    crl.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::build("CRL PEM", e))
}

/// Parses a revocation list, PEM (`X509 CRL`) or DER.
///
/// # Errors
/// [`Error::Malformed`].
pub fn parse_crl(bytes: &[u8]) -> Result<CertificateList> {
    use der::{Decode, DecodePem};
    if bytes.starts_with(b"-----BEGIN") {
        CertificateList::from_pem(bytes)
    } else {
        CertificateList::from_der(bytes)
    }
    .map_err(|e| Error::malformed("revocation list", e))
}
