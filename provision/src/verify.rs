//! Offline verification of a device certificate: root → intermediates →
//! device at a given time, and against the issuer's revocation list.
//!
//! Rules, in the order they are checked (the first failure is reported):
//! 1. every certificate is X.509 v3, signed with ML-DSA-65 (parameters
//!    absent, the same algorithm inside and outside the signed part), holds
//!    no extension twice and no critical extension this profile does not
//!    know;
//! 2. the root is self-issued, self-signed and a CA;
//! 3. a path is found from the device to the root by issuer names
//!    ([`Error::NotIssuedBy`] when none: a certificate from another CA);
//! 4. down the path, each certificate's signature verifies with its
//!    issuer's key ([`Error::BadSignature`]: another CA with the same
//!    name), its authorityKeyIdentifier matches the issuer's
//!    subjectKeyIdentifier, the issuer is a CA with keyCertSign whose
//!    path length allows what is below it ([`Error::NotACa`]);
//! 5. every certificate of the path is valid at the time given
//!    ([`Error::NotYetValid`], [`Error::Expired`]);
//! 6. the device certificate is not a CA, may sign (digitalSignature), has
//!    a device subject and the subjectAltName `urn:meshota:device:<id>`;
//! 7. with a revocation list: it is issued by the device's issuer and
//!    signed with its key, `thisUpdate <= at <= nextUpdate`
//!    ([`Error::StaleCrl`]), and does not list the device's certificate
//!    serial ([`Error::Revoked`]).

use der::Encode;
use der::oid::ObjectIdentifier;
use meshota_manifest::{PublicKey, UnixTime};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};

use crate::alg::{check_algorithm, public_key_of, verify_x509_signature};
use crate::cert::{DEVICE_URI_PREFIX, DeviceSubject, Period, display_name, rfc3339, unix_time};
use crate::error::{Error, Result};

/// Extensions this profile knows; any other one must not be critical.
const KNOWN_EXTENSIONS: [ObjectIdentifier; 6] = [
    const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS,
    const_oid::db::rfc5280::ID_CE_KEY_USAGE,
    const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
    const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME,
    const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE,
];

/// A device certificate that passed every rule of the module doc.
#[derive(Clone, Debug)]
pub struct VerifiedDevice {
    /// Device id, serial and hardware class from the subject.
    pub subject: DeviceSubject,
    /// The certificate serial number, lowercase hex.
    pub cert_serial: String,
    /// The certificate's validity.
    pub period: Period,
    /// The device's ML-DSA-65 identity key.
    pub public_key: PublicKey,
    /// The names of the chain from the device up to the root.
    pub chain: Vec<String>,
}

fn label(cert: &Certificate) -> String {
    format!(
        "certificate {:?} (serial {})",
        display_name(cert.tbs_certificate().subject()),
        crate::cert::serial_hex(cert)
    )
}

/// Rule 1 for one certificate.
fn check_structure(cert: &Certificate) -> Result<()> {
    let tbs = cert.tbs_certificate();
    if tbs.version() != x509_cert::Version::V3 {
        return Err(Error::profile(
            "certificate",
            format!("{} is not X.509 v3", label(cert)),
        ));
    }
    check_algorithm(cert.signature_algorithm(), "certificate")?;
    if tbs.signature() != cert.signature_algorithm() {
        return Err(Error::profile(
            "certificate",
            format!(
                "{}: the signed and unsigned algorithm identifiers differ",
                label(cert)
            ),
        ));
    }
    let mut seen = Vec::new();
    for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or_default() {
        if seen.contains(&ext.extn_id) {
            return Err(Error::profile(
                "certificate",
                format!("{}: extension {} appears twice", label(cert), ext.extn_id),
            ));
        }
        seen.push(ext.extn_id);
        if ext.critical && !KNOWN_EXTENSIONS.contains(&ext.extn_id) {
            return Err(Error::profile(
                "certificate",
                format!(
                    "{}: unknown critical extension {}",
                    label(cert),
                    ext.extn_id
                ),
            ));
        }
    }
    Ok(())
}

fn extension<'a, T>(cert: &'a Certificate) -> Result<Option<T>>
where
    T: der::Decode<'a> + const_oid::AssociatedOid,
{
    cert.tbs_certificate()
        .get_extension::<T>()
        .map(|o| o.map(|(_, v)| v))
        .map_err(|e| Error::profile("certificate", format!("{}: {e}", label(cert))))
}

fn check_time(cert: &Certificate, at: UnixTime) -> Result<()> {
    let p = Period::of(cert);
    if at.0 < p.not_before.0 {
        return Err(Error::NotYetValid {
            what: label(cert),
            not_before: rfc3339(p.not_before),
            at: rfc3339(at),
        });
    }
    if at.0 > p.not_after.0 {
        return Err(Error::Expired {
            what: label(cert),
            not_after: rfc3339(p.not_after),
            at: rfc3339(at),
        });
    }
    Ok(())
}

fn tbs_der(cert: &Certificate) -> Result<Vec<u8>> {
    cert.tbs_certificate()
        .to_der()
        .map_err(|e| Error::malformed("certificate", e))
}

/// `issuer` may issue a certificate with `below` CA certificates under it.
fn check_issuer_may_sign(issuer: &Certificate, below: usize) -> Result<()> {
    let what = label(issuer);
    let bc: Option<BasicConstraints> = extension(issuer)?;
    let Some(bc) = bc.filter(|b| b.ca) else {
        return Err(Error::NotACa {
            what,
            reason: "it is not a CA (basicConstraints cA is false or absent)".into(),
        });
    };
    let ku: Option<KeyUsage> = extension(issuer)?;
    if !ku.is_some_and(|k| k.0.contains(KeyUsages::KeyCertSign)) {
        return Err(Error::NotACa {
            what,
            reason: "its keyUsage lacks keyCertSign".into(),
        });
    }
    if let Some(max) = bc.path_len_constraint {
        if below > usize::from(max) {
            return Err(Error::NotACa {
                what,
                reason: format!(
                    "its pathLenConstraint {max} allows fewer CA certificates below it than the {below} found"
                ),
            });
        }
    }
    Ok(())
}

/// The subject public key of a certificate, checked to be ML-DSA-65.
///
/// # Errors
/// [`Error::Profile`] for another algorithm or a malformed key.
pub fn certificate_key(cert: &Certificate) -> Result<PublicKey> {
    public_key_of(
        cert.tbs_certificate().subject_public_key_info(),
        "certificate",
    )
}

/// Checks that `child` was signed by `parent`: names, key identifiers and
/// the signature.
fn check_signed_by(child: &Certificate, parent: &Certificate) -> Result<()> {
    if child.tbs_certificate().issuer() != parent.tbs_certificate().subject() {
        return Err(Error::NotIssuedBy {
            child: label(child),
            issuer: child.tbs_certificate().issuer().to_string(),
            parent: parent.tbs_certificate().subject().to_string(),
        });
    }
    let aki: Option<AuthorityKeyIdentifier> = extension(child)?;
    let ski: Option<SubjectKeyIdentifier> = extension(parent)?;
    if let (Some(a), Some(s)) = (aki.and_then(|a| a.key_identifier), ski) {
        if a != s.0 {
            return Err(Error::NotIssuedBy {
                child: format!("{} (authorityKeyIdentifier)", label(child)),
                issuer: hex::encode(a.as_bytes()),
                parent: hex::encode(s.0.as_bytes()),
            });
        }
    }
    verify_x509_signature(
        &certificate_key(parent)?,
        &tbs_der(child)?,
        child.signature_algorithm(),
        child.signature(),
        &label(child),
        "the issuer's key",
    )
}

/// Verifies `device` against the trust anchor `root` through
/// `intermediates` (any order) at time `at`, and against `crl` when given.
///
/// # Errors
/// The first rule broken, in the order of the module doc.
pub fn verify_device(
    root: &Certificate,
    intermediates: &[Certificate],
    device: &Certificate,
    at: UnixTime,
    crl: Option<&CertificateList>,
) -> Result<VerifiedDevice> {
    for c in core::iter::once(root)
        .chain(intermediates)
        .chain(core::iter::once(device))
    {
        check_structure(c)?;
    }
    // 2. The root.
    if root.tbs_certificate().issuer() != root.tbs_certificate().subject() {
        return Err(Error::profile(
            "root certificate",
            format!("{} is not self-issued", label(root)),
        ));
    }
    verify_x509_signature(
        &certificate_key(root)?,
        &tbs_der(root)?,
        root.signature_algorithm(),
        root.signature(),
        &label(root),
        "its own key (a root is self-signed)",
    )?;
    // 3. The path, device first, by issuer names.
    let mut path: Vec<&Certificate> = vec![device];
    let root_subject = root.tbs_certificate().subject();
    while let Some(last) = path.last() {
        let issuer = last.tbs_certificate().issuer();
        if issuer == root_subject {
            break;
        }
        let next = intermediates
            .iter()
            .find(|c| c.tbs_certificate().subject() == issuer && !path.contains(c));
        match next {
            Some(c) if path.len() <= intermediates.len() => path.push(c),
            _ => {
                return Err(Error::NotIssuedBy {
                    child: label(last),
                    issuer: issuer.to_string(),
                    parent: root_subject.to_string(),
                });
            }
        }
    }
    path.push(root);
    // 4. Signatures and CA constraints, from the root down.
    for i in (0..path.len() - 1).rev() {
        let (child, parent) = (path[i], path[i + 1]);
        check_issuer_may_sign(parent, i)?;
        check_signed_by(child, parent)?;
    }
    // 5. Validity of every certificate on the path.
    for c in path.iter().rev() {
        check_time(c, at)?;
    }
    // 6. The device certificate itself.
    let bc: Option<BasicConstraints> = extension(device)?;
    if bc.is_some_and(|b| b.ca) {
        return Err(Error::profile(
            "device certificate",
            format!("{} is a CA certificate, not a device", label(device)),
        ));
    }
    let ku: Option<KeyUsage> = extension(device)?;
    if !ku.is_some_and(|k| k.0.contains(KeyUsages::DigitalSignature)) {
        return Err(Error::profile(
            "device certificate",
            format!("{}: keyUsage lacks digitalSignature", label(device)),
        ));
    }
    let subject =
        DeviceSubject::from_name(device.tbs_certificate().subject(), "device certificate")?;
    let san: Option<SubjectAltName> = extension(device)?;
    let want = format!("{DEVICE_URI_PREFIX}{}", subject.device_id);
    let has_uri = san.is_some_and(|s| {
        s.0.iter()
            .any(|n| matches!(n, GeneralName::UniformResourceIdentifier(u) if u.as_str() == want))
    });
    if !has_uri {
        return Err(Error::profile(
            "device certificate",
            format!("{}: subjectAltName lacks the URI {want}", label(device)),
        ));
    }
    let cert_serial = crate::cert::serial_hex(device);
    // 7. Revocation.
    if let Some(crl) = crl {
        let issuer = path[1];
        check_crl(crl, issuer, at)?;
        let serial = device.tbs_certificate().serial_number();
        if let Some(entry) = crl
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .find(|r| &r.serial_number == serial)
        {
            return Err(Error::Revoked {
                device_id: subject.device_id,
                cert_serial,
                revoked_at: rfc3339(unix_time(&entry.revocation_date)),
            });
        }
    }
    Ok(VerifiedDevice {
        public_key: certificate_key(device)?,
        period: Period::of(device),
        cert_serial,
        chain: path
            .iter()
            .map(|c| display_name(c.tbs_certificate().subject()))
            .collect(),
        subject,
    })
}

/// Checks that `crl` was issued and signed by `issuer` and is current at `at`.
///
/// # Errors
/// [`Error::StaleCrl`], [`Error::BadSignature`], [`Error::Profile`].
pub fn check_crl(crl: &CertificateList, issuer: &Certificate, at: UnixTime) -> Result<()> {
    let tbs = &crl.tbs_cert_list;
    if &tbs.issuer != issuer.tbs_certificate().subject() {
        return Err(Error::StaleCrl {
            reason: format!(
                "issued by {:?}, not by the device's issuer {:?}",
                tbs.issuer.to_string(),
                issuer.tbs_certificate().subject().to_string()
            ),
        });
    }
    check_algorithm(&crl.signature_algorithm, "revocation list")?;
    if tbs.signature != crl.signature_algorithm {
        return Err(Error::profile(
            "revocation list",
            "the signed and unsigned algorithm identifiers differ",
        ));
    }
    let signed = tbs
        .to_der()
        .map_err(|e| Error::malformed("revocation list", e))?;
    verify_x509_signature(
        &certificate_key(issuer)?,
        &signed,
        &crl.signature_algorithm,
        &crl.signature,
        "revocation list",
        "the issuer's key",
    )?;
    // RFC 5280 §5.2.1: the CRL's authorityKeyIdentifier names the signing key.
    let aki = tbs
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER)
        .map(|e| {
            <AuthorityKeyIdentifier as der::Decode>::from_der(e.extn_value.as_bytes())
                .map_err(|err| Error::malformed("revocation list", err))
        })
        .transpose()?;
    let ski: Option<SubjectKeyIdentifier> = extension(issuer)?;
    if let (Some(a), Some(s)) = (aki.and_then(|a| a.key_identifier), ski) {
        if a != s.0 {
            return Err(Error::StaleCrl {
                reason: format!(
                    "its authorityKeyIdentifier {} is not the issuer's key identifier {}",
                    hex::encode(a.as_bytes()),
                    hex::encode(s.0.as_bytes())
                ),
            });
        }
    }
    let this_update = unix_time(&tbs.this_update);
    if at.0 < this_update.0 {
        return Err(Error::StaleCrl {
            reason: format!(
                "its thisUpdate {} is after the verification time {}",
                rfc3339(this_update),
                rfc3339(at)
            ),
        });
    }
    if let Some(next) = tbs.next_update.as_ref().map(unix_time) {
        if at.0 > next.0 {
            return Err(Error::StaleCrl {
                reason: format!(
                    "its nextUpdate {} has passed (verification time {}); fetch or issue a current one",
                    rfc3339(next),
                    rfc3339(at)
                ),
            });
        }
    }
    Ok(())
}
