//! meshota's certificate profile: how root, intermediate and device
//! certificates are built, and how a device's identity is read back.
//!
//! | | root | intermediate | device |
//! | --- | --- | --- | --- |
//! | subject | `CN=<name>` | `CN=<name>` | `OU=<hardware class>, CN=<device id>, serialNumber=<10 hex>` |
//! | basicConstraints (critical) | CA, pathLen (default 1) | CA, pathLen (default 0) | not a CA |
//! | keyUsage (critical) | keyCertSign, cRLSign | keyCertSign, cRLSign | digitalSignature |
//! | subjectKeyIdentifier | SHA-1 of the key (RFC 5280 method 1) | same | same |
//! | authorityKeyIdentifier | its own SKI | the root's SKI | the intermediate's SKI |
//! | subjectAltName | — | — | URI `urn:meshota:device:<device id>` |
//! | default validity | 10 years (3,652 days) | 5 years (1,826 days) | 2 years (730 days) |
//!
//! Every certificate is X.509 v3, signed with ML-DSA-65 (`id-ml-dsa-65`,
//! parameters absent, RFC 9881), with a random positive 128-bit serial
//! number. The hardware class is the subject's organizationalUnitName (a
//! standard attribute every tool prints); the device serial is the X.520
//! serialNumber attribute, a PrintableString. A certificate never outlives
//! its issuer: its notAfter is clamped to the issuer's.

use core::time::Duration;

use der::asn1::{Ia5String, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Any, Decode, DecodePem, Encode, EncodePem};
use meshota_manifest::{PublicKey, SecretKey, UnixTime};
use spki::SubjectPublicKeyInfoRef;
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::alg::{X509Signature, X509Signer, spki_of};
use crate::error::{Error, Result};
use crate::serial::{DeviceSerial, check_name};

/// Default validity of a root CA certificate, in days (10 years).
pub const ROOT_VALIDITY_DAYS: u32 = 3652;
/// Default validity of an intermediate CA certificate, in days (5 years).
pub const INTERMEDIATE_VALIDITY_DAYS: u32 = 1826;
/// Default validity of a device certificate, in days (2 years).
pub const DEVICE_VALIDITY_DAYS: u32 = 730;

/// The URI prefix of a device's subjectAltName.
pub const DEVICE_URI_PREFIX: &str = "urn:meshota:device:";

const OID_CN: der::oid::ObjectIdentifier = const_oid::db::rfc4519::COMMON_NAME;
const OID_OU: der::oid::ObjectIdentifier = const_oid::db::rfc4519::ORGANIZATIONAL_UNIT_NAME;
const OID_SERIAL: der::oid::ObjectIdentifier = const_oid::db::rfc4519::SERIAL_NUMBER;

/// What a certificate is for; decides its extensions (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A self-signed root CA; `path_len` intermediates may follow it.
    Root {
        /// The basicConstraints pathLenConstraint.
        path_len: u8,
    },
    /// An intermediate CA issued by the root.
    Intermediate {
        /// The basicConstraints pathLenConstraint.
        path_len: u8,
    },
    /// A device (end entity).
    Device,
}

/// A device's identity as its certificate (or CSR) subject states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSubject {
    /// The device id (subject CN); obeys [`check_name`].
    pub device_id: String,
    /// The device serial (subject serialNumber).
    pub serial: DeviceSerial,
    /// The hardware class (subject OU); obeys [`check_name`].
    pub hardware: String,
}

impl DeviceSubject {
    /// Checks the names and builds the X.509 subject
    /// `OU=<hardware>, CN=<device id>, serialNumber=<serial>`.
    ///
    /// # Errors
    /// [`Error::BadName`] when the device id or hardware class breaks the rules.
    pub fn to_name(&self) -> Result<Name> {
        check_name("device id", &self.device_id)?;
        check_name("hardware class", &self.hardware)?;
        let serial = self.serial.to_string();
        build_name(&[
            (OID_OU, utf8(&self.hardware)?),
            (OID_CN, utf8(&self.device_id)?),
            (
                OID_SERIAL,
                Any::encode_from(
                    &PrintableStringRef::new(&serial).map_err(|e| Error::build("name", e))?,
                )
                .map_err(|e| Error::build("name", e))?,
            ),
        ])
    }

    /// Reads a device subject: exactly one CN, one serialNumber and one OU,
    /// each valid.
    ///
    /// # Errors
    /// [`Error::Profile`] naming the missing or malformed attribute.
    pub fn from_name(name: &Name, what: &'static str) -> Result<Self> {
        let device_id = single_string(name, OID_CN, "CN (device id)", what)?;
        let serial = single_string(name, OID_SERIAL, "serialNumber", what)?;
        let hardware = single_string(name, OID_OU, "OU (hardware class)", what)?;
        check_name("device id", &device_id).map_err(|e| Error::profile(what, e.to_string()))?;
        check_name("hardware class", &hardware).map_err(|e| Error::profile(what, e.to_string()))?;
        let serial: DeviceSerial = serial
            .parse()
            .map_err(|e: Error| Error::profile(what, e.to_string()))?;
        if name.len() != 3 {
            return Err(Error::profile(
                what,
                "the subject must hold exactly OU, CN and serialNumber",
            ));
        }
        Ok(Self {
            device_id,
            serial,
            hardware,
        })
    }
}

/// The subject `CN=<name>` of a CA. CA names are 1–64 characters, no
/// control characters.
///
/// # Errors
/// [`Error::BadName`] when the name breaks the rule.
pub fn ca_name(name: &str) -> Result<Name> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Error::BadName {
            what: "CA name",
            value: name.chars().take(80).collect(),
            rule: "must be 1 to 64 characters without control characters",
        });
    }
    build_name(&[(OID_CN, utf8(name)?)])
}

fn utf8(s: &str) -> Result<Any> {
    Any::encode_from(&Utf8StringRef::new(s).map_err(|e| Error::build("name", e))?)
        .map_err(|e| Error::build("name", e))
}

fn build_name(attrs: &[(der::oid::ObjectIdentifier, Any)]) -> Result<Name> {
    let mut seq = RdnSequence::default();
    for (oid, value) in attrs {
        let mut set = SetOfVec::new();
        set.insert(AttributeTypeAndValue {
            oid: *oid,
            value: value.clone(),
        })
        .map_err(|e| Error::build("name", e))?;
        seq.push(RelativeDistinguishedName::from(set));
    }
    let der = seq.to_der().map_err(|e| Error::build("name", e))?;
    Name::from_der(&der).map_err(|e| Error::build("name", e))
}

fn single_string(
    name: &Name,
    oid: der::oid::ObjectIdentifier,
    label: &str,
    what: &'static str,
) -> Result<String> {
    let mut values = name.iter().filter(|a| a.oid == oid);
    let (Some(first), None) = (values.next(), values.next()) else {
        return Err(Error::profile(
            what,
            format!("the subject must hold exactly one {label}"),
        ));
    };
    let s: x509_cert::ext::pkix::name::DirectoryString = (&first.value)
        .try_into()
        .map_err(|e| Error::profile(what, format!("{label}: {e}")))?;
    Ok(s.value().into_owned())
}

/// The common name of a CA certificate's subject, or the whole name.
#[must_use]
pub fn display_name(name: &Name) -> String {
    match name.common_name() {
        Ok(Some(cn)) => cn.value().into_owned(),
        _ => name.to_string(),
    }
}

/// Converts a Unix time to an X.509 time (UTCTime before 2050,
/// GeneralizedTime after, as RFC 5280 requires).
///
/// # Errors
/// [`Error::Build`] for times past 9999.
pub fn x509_time(t: UnixTime) -> Result<Time> {
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(t.0))
        .map_err(|e| Error::build("time", e))?;
    Ok(Time::from(dt))
}

/// The Unix time of an X.509 time.
#[must_use]
pub fn unix_time(t: &Time) -> UnixTime {
    UnixTime(t.to_unix_duration().as_secs())
}

/// A Unix time as RFC 3339 (`2026-11-23T19:00:00Z`); out-of-range times as
/// seconds.
#[must_use]
pub fn rfc3339(t: UnixTime) -> String {
    der::DateTime::from_unix_duration(Duration::from_secs(t.0))
        .map_or_else(|_| format!("@{}", t.0), |d| d.to_string())
}

/// A validity period; `not_before <= not_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// First second of validity.
    pub not_before: UnixTime,
    /// Last second of validity.
    pub not_after: UnixTime,
}

impl Period {
    /// `days` days from `now`, clamped to `limit` (the issuer's notAfter).
    #[must_use]
    pub fn days_from(now: UnixTime, days: u32, limit: Option<UnixTime>) -> Self {
        let end = now.0.saturating_add(u64::from(days) * 86_400);
        let end = limit.map_or(end, |l| end.min(l.0));
        Self {
            not_before: now,
            not_after: UnixTime(end.max(now.0)),
        }
    }

    /// The validity of a certificate.
    #[must_use]
    pub fn of(cert: &Certificate) -> Self {
        let v = cert.tbs_certificate().validity();
        Self {
            not_before: unix_time(&v.not_before),
            not_after: unix_time(&v.not_after),
        }
    }

    /// Whether `at` lies inside the period (both ends included, RFC 5280).
    #[must_use]
    pub const fn contains(&self, at: UnixTime) -> bool {
        self.not_before.0 <= at.0 && at.0 <= self.not_after.0
    }
}

/// What to put in a certificate: everything but the issuer's key.
#[derive(Clone, Debug)]
pub struct CertRequest<'a> {
    /// Root, intermediate or device.
    pub role: Role,
    /// The subject name.
    pub subject: Name,
    /// The subject's ML-DSA-65 public key.
    pub subject_key: &'a PublicKey,
    /// Validity; already clamped to the issuer's.
    pub period: Period,
    /// 16 random bytes for the serial number (made positive and 16 bytes long).
    pub serial: [u8; 16],
}

/// A certificate serial number from 16 random bytes: top bit cleared (a
/// positive INTEGER) and the next set (so it encodes in exactly 16 bytes).
#[must_use]
pub fn serial_from_random(mut bytes: [u8; 16]) -> [u8; 16] {
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    bytes
}

struct Profile {
    subject: Name,
    issuer: Name,
    role: Role,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext: Vec<Extension> = Vec::new();
        let (ca, path_len, usage) = match self.role {
            Role::Root { path_len } | Role::Intermediate { path_len } => (
                true,
                Some(path_len),
                KeyUsages::KeyCertSign | KeyUsages::CRLSign,
            ),
            Role::Device => (false, None, KeyUsages::DigitalSignature.into()),
        };
        let bc = BasicConstraints {
            ca,
            path_len_constraint: path_len,
        };
        let mut bc = bc.to_extension(tbs.subject(), &ext)?;
        bc.critical = true;
        ext.push(bc);
        ext.push(KeyUsage(usage).to_extension(tbs.subject(), &ext)?);
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki_id = match self.role {
            Role::Root { .. } => ski.0.clone(),
            _ => SubjectKeyIdentifier::try_from(issuer_spk)?.0,
        };
        ext.push(ski.to_extension(tbs.subject(), &ext)?);
        ext.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(aki_id),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        if self.role == Role::Device {
            let id = display_name(&self.subject);
            let uri = Ia5String::new(&format!("{DEVICE_URI_PREFIX}{id}"))?;
            ext.push(
                SubjectAltName(vec![GeneralName::UniformResourceIdentifier(uri)])
                    .to_extension(tbs.subject(), &ext)?,
            );
        }
        Ok(ext)
    }
}

/// Builds and signs a certificate. `issuer` is `None` for a root (self-signed
/// with `signer`, whose public key must then be `req.subject_key`).
///
/// # Errors
/// [`Error::Build`] when x509-cert refuses the structure.
pub fn issue(
    req: &CertRequest<'_>,
    issuer: Option<&Certificate>,
    signer: &SecretKey,
) -> Result<Certificate> {
    let issuer_name = issuer.map_or_else(
        || req.subject.clone(),
        |c| c.tbs_certificate().subject().clone(),
    );
    let profile = Profile {
        subject: req.subject.clone(),
        issuer: issuer_name,
        role: req.role,
    };
    let serial = SerialNumber::new(&serial_from_random(req.serial))
        .map_err(|e| Error::build("certificate", e))?;
    let validity = Validity::new(
        x509_time(req.period.not_before)?,
        x509_time(req.period.not_after)?,
    );
    let builder = CertificateBuilder::new(profile, serial, validity, spki_of(req.subject_key)?)
        .map_err(|e| Error::build("certificate", e))?;
    builder
        .build::<_, X509Signature>(&X509Signer::new(signer))
        .map_err(|e| Error::build("certificate", e))
}

/// A certificate as PEM (`CERTIFICATE`, LF line endings).
///
/// # Errors
/// [`Error::Build`], never expected.
pub fn to_pem(cert: &Certificate) -> Result<String> {
    cert.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::build("PEM", e))
}

/// Every certificate in a PEM file, in order (at least one).
///
/// # Errors
/// [`Error::Malformed`] when a block does not parse or there is none.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>> {
    let certs = Certificate::load_pem_chain(pem).map_err(|e| Error::malformed("certificate", e))?;
    if certs.is_empty() {
        return Err(Error::malformed("certificate", "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// One certificate from PEM.
///
/// # Errors
/// [`Error::Malformed`].
pub fn parse_pem(pem: &[u8]) -> Result<Certificate> {
    Certificate::from_pem(pem).map_err(|e| Error::malformed("certificate", e))
}

/// A certificate's serial number as lowercase hex.
#[must_use]
pub fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// A certificate's DER encoding.
///
/// # Errors
/// [`Error::Build`], never expected.
pub fn to_der(cert: &Certificate) -> Result<Vec<u8>> {
    cert.to_der().map_err(|e| Error::build("certificate", e))
}
