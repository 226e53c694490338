//! Device identities and their certificate requests (PKCS#10, RFC 2986).
//!
//! A device makes its own keys ([`DeviceKeys`]: an ML-DSA-65 identity key and
//! an ML-KEM-768 key pair) and a CSR signed with the identity key, whose
//! subject is the [`DeviceSubject`]. The CA accepts a CSR only when its
//! signature verifies with the public key it carries: the requester holds
//! the private key ([`verify_csr`]).

use der::{Decode, DecodePem, Encode, EncodePem};
use meshota_manifest::{PublicKey, SecretKey};
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::request::CertReq;

use crate::alg::{KemKeyPair, X509Signature, X509Signer, public_key_of, verify_x509_signature};
use crate::cert::DeviceSubject;
use crate::error::{Error, Result};

/// Largest CSR file accepted, in bytes (one ML-DSA-65 CSR is about 7.5 KB in PEM).
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// A device's private keys.
#[derive(Debug)]
pub struct DeviceKeys {
    /// The ML-DSA-65 identity key: the node id of the device, the key in
    /// its certificate.
    pub identity: SecretKey,
    /// The ML-KEM-768 key pair provisioning payloads are encrypted to.
    pub kem: KemKeyPair,
}

impl DeviceKeys {
    /// Keys from 96 bytes of a cryptographic RNG (32 for ML-DSA, 64 for ML-KEM).
    ///
    /// # Errors
    /// [`Error::BadName`] when `device_id` is not a valid key name.
    pub fn from_seeds(device_id: &str, dsa_seed: [u8; 32], kem_seed: [u8; 64]) -> Result<Self> {
        let identity = SecretKey::from_seed(dsa_seed, device_id).map_err(|_| Error::BadName {
            what: "device id",
            value: device_id.chars().take(80).collect(),
            rule: "is too long for a key name",
        })?;
        Ok(Self {
            identity,
            kem: KemKeyPair::from_seed(kem_seed),
        })
    }

    /// Keys from the operating system's RNG.
    ///
    /// # Errors
    /// [`Error::Rng`], [`Error::BadName`].
    pub fn generate(device_id: &str) -> Result<Self> {
        let mut dsa = zeroize::Zeroizing::new([0u8; 32]);
        let mut kem = zeroize::Zeroizing::new([0u8; 64]);
        getrandom::fill(&mut *dsa).map_err(|e| Error::Rng(e.to_string()))?;
        getrandom::fill(&mut *kem).map_err(|e| Error::Rng(e.to_string()))?;
        Self::from_seeds(device_id, *dsa, *kem)
    }
}

/// Builds a CSR for `subject`, signed with `identity` (pure ML-DSA-65,
/// empty context, as for certificates).
///
/// # Errors
/// [`Error::BadName`] for bad subject names; [`Error::Build`].
pub fn build_csr(subject: &DeviceSubject, identity: &SecretKey) -> Result<CertReq> {
    let builder = RequestBuilder::new(subject.to_name()?).map_err(|e| Error::build("CSR", e))?;
    builder
        .build::<_, X509Signature>(&X509Signer::new(identity))
        .map_err(|e| Error::build("CSR", e))
}

/// A CSR as PEM (`CERTIFICATE REQUEST`).
///
/// # Errors
/// [`Error::Build`], never expected.
pub fn csr_to_pem(csr: &CertReq) -> Result<String> {
    csr.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::build("CSR PEM", e))
}

/// A CSR that passed [`verify_csr`]: its subject and its key.
#[derive(Clone, Debug)]
pub struct VerifiedCsr {
    /// The device subject the request asks for.
    pub subject: DeviceSubject,
    /// The identity key; the request was signed with its private half.
    pub public_key: PublicKey,
}

/// Parses a CSR (PEM or DER) and checks it: version 1, ML-DSA-65 key and
/// signature algorithm, a device subject, and a signature that verifies
/// with the key the CSR carries (proof of possession).
///
/// # Errors
/// [`Error::Malformed`], [`Error::Profile`], [`Error::BadSignature`] when
/// the signature does not match the key.
pub fn verify_csr(bytes: &[u8]) -> Result<VerifiedCsr> {
    if bytes.len() > MAX_CSR_BYTES {
        return Err(Error::malformed(
            "CSR",
            format!("larger than {MAX_CSR_BYTES} bytes"),
        ));
    }
    let csr = if bytes.starts_with(b"-----BEGIN") {
        CertReq::from_pem(bytes)
    } else {
        CertReq::from_der(bytes)
    }
    .map_err(|e| Error::malformed("CSR", e))?;
    if csr.info.version != x509_cert::request::Version::V1 {
        return Err(Error::profile("CSR", "version must be 1 (0 on the wire)"));
    }
    let public_key = public_key_of(&csr.info.public_key, "CSR")?;
    let subject = DeviceSubject::from_name(&csr.info.subject, "CSR")?;
    let signed = csr.info.to_der().map_err(|e| Error::malformed("CSR", e))?;
    verify_x509_signature(
        &public_key,
        &signed,
        &csr.algorithm,
        &csr.signature,
        &format!("CSR for device {}", subject.device_id),
        "the CSR's own key (the requester does not hold the private key)",
    )?;
    Ok(VerifiedCsr {
        subject,
        public_key,
    })
}
