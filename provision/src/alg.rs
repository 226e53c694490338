//! ML-DSA-65 in X.509 (RFC 9881) and ML-KEM-768 key encodings (RFC 9935).
//!
//! Keys are meshota's own [`SecretKey`] (the 32-byte FIPS 204 seed, the
//! file format release keys use, optionally passphrase-sealed), so a CA key
//! is handled exactly like a release key. [`X509Signer`] adapts one to
//! x509-cert's builders: the algorithm identifier is `id-ml-dsa-65`
//! (2.16.840.1.101.3.4.3.18) with parameters absent, the signature is pure
//! ML-DSA-65 with the empty context string (RFC 9881 §3), deterministic
//! (FIPS 204 allows either variant; verifiers cannot tell them apart).

use der::asn1::BitString;
use der::{Decode, Encode};
use meshota_manifest::{PublicKey, SecretKey};
use spki::{
    AlgorithmIdentifierOwned, EncodePublicKey, ObjectIdentifier, SignatureAlgorithmIdentifier,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// `id-ml-dsa-65` (FIPS 204, RFC 9881): the signature and public key
/// algorithm of every meshota certificate, CSR and CRL.
pub const ID_ML_DSA_65: ObjectIdentifier = const_oid::db::fips204::ID_ML_DSA_65;

/// `id-alg-ml-kem-768` (FIPS 203, RFC 9935): the devices' key-encapsulation keys.
pub const ID_ML_KEM_768: ObjectIdentifier = const_oid::db::fips203::ID_ALG_ML_KEM_768;

/// The context string of X.509 signatures: empty, as RFC 9881 requires.
const X509_CONTEXT: &[u8] = b"";

/// The algorithm identifier `id-ml-dsa-65` with absent parameters.
#[must_use]
pub fn ml_dsa_65_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_ML_DSA_65,
        parameters: None,
    }
}

/// The SubjectPublicKeyInfo of an ML-DSA-65 public key (RFC 9881 §4).
///
/// # Errors
/// Only [`Error::Build`], never expected (1,952 bytes fit a BIT STRING).
pub fn spki_of(key: &PublicKey) -> Result<SubjectPublicKeyInfoOwned> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: ml_dsa_65_algorithm(),
        subject_public_key: BitString::new(0, key.as_bytes().to_vec())
            .map_err(|e| Error::build("public key", e))?,
    })
}

/// The ML-DSA-65 public key in a SubjectPublicKeyInfo.
///
/// # Errors
/// [`Error::Profile`] when the algorithm is not `id-ml-dsa-65` with absent
/// parameters, or the key is not 1,952 bytes.
pub fn public_key_of(spki: &SubjectPublicKeyInfoOwned, what: &'static str) -> Result<PublicKey> {
    check_algorithm(&spki.algorithm, what)?;
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| Error::profile(what, "the public key has unused bits"))?;
    PublicKey::from_bytes(bytes).map_err(|e| Error::profile(what, e.to_string()))
}

/// Checks that an algorithm identifier is `id-ml-dsa-65` without parameters.
///
/// # Errors
/// [`Error::Profile`] naming the algorithm found.
pub fn check_algorithm(alg: &AlgorithmIdentifierOwned, what: &'static str) -> Result<()> {
    if alg.oid != ID_ML_DSA_65 {
        return Err(Error::profile(
            what,
            format!("algorithm {} is not ML-DSA-65 ({ID_ML_DSA_65})", alg.oid),
        ));
    }
    if alg.parameters.is_some() {
        return Err(Error::profile(
            what,
            "ML-DSA-65 parameters must be absent (RFC 9881)",
        ));
    }
    Ok(())
}

/// Verifies an X.509 signature: `alg` must be ML-DSA-65, `signature` a
/// whole number of bytes, and valid for `signed` under `key` with the empty
/// context.
///
/// # Errors
/// [`Error::Profile`] for a wrong algorithm, [`Error::BadSignature`] otherwise.
pub(crate) fn verify_x509_signature(
    key: &PublicKey,
    signed: &[u8],
    alg: &AlgorithmIdentifierOwned,
    signature: &BitString,
    what: &str,
    whose: &'static str,
) -> Result<()> {
    let bad = || Error::BadSignature {
        what: what.to_owned(),
        key: whose,
    };
    check_algorithm(alg, "signature algorithm")?;
    let sig = signature.as_bytes().ok_or_else(bad)?;
    if key.verify(signed, X509_CONTEXT, sig) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A [`SecretKey`] as an x509-cert signer (see the module doc).
pub struct X509Signer<'a> {
    key: &'a SecretKey,
}

impl<'a> X509Signer<'a> {
    /// Wraps a key; it signs with the empty context string.
    #[must_use]
    pub const fn new(key: &'a SecretKey) -> Self {
        Self { key }
    }
}

impl core::fmt::Debug for X509Signer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "X509Signer({:?})", self.key)
    }
}

/// The verifying half of an [`X509Signer`], encodable as a SubjectPublicKeyInfo.
#[derive(Clone, Debug)]
pub struct X509PublicKey(PublicKey);

impl EncodePublicKey for X509PublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: ml_dsa_65_algorithm(),
            subject_public_key: BitString::new(0, self.0.as_bytes().to_vec())?,
        };
        Ok(der::Document::encode_msg(&spki)?)
    }
}

/// An encoded ML-DSA-65 signature (3,309 bytes).
#[derive(Clone, Debug)]
pub struct X509Signature(Vec<u8>);

impl SignatureBitStringEncoding for X509Signature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::new(0, self.0.clone())
    }
}

impl signature::Keypair for X509Signer<'_> {
    type VerifyingKey = X509PublicKey;

    fn verifying_key(&self) -> X509PublicKey {
        X509PublicKey(self.key.public().clone())
    }
}

impl SignatureAlgorithmIdentifier for X509Signer<'_> {
    type Params = der::asn1::AnyRef<'static>;

    const SIGNATURE_ALGORITHM_IDENTIFIER: spki::AlgorithmIdentifier<Self::Params> =
        spki::AlgorithmIdentifier {
            oid: ID_ML_DSA_65,
            parameters: None,
        };
}

impl signature::Signer<X509Signature> for X509Signer<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<X509Signature, signature::Error> {
        self.key
            .sign(msg, X509_CONTEXT)
            .map(X509Signature)
            .map_err(|_| signature::Error::new())
    }
}

/// An ML-KEM-768 key pair, kept as its 64-byte FIPS 203 seed (d ‖ z).
pub struct KemKeyPair {
    seed: Zeroizing<[u8; 64]>,
}

impl core::fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KemKeyPair(..)")
    }
}

/// DER prefix of an RFC 9935 ML-KEM-768 private key in its seed form:
/// `OneAsymmetricKey { version 0, id-alg-ml-kem-768, privateKey OCTET
/// STRING { seed [0] IMPLICIT OCTET STRING (SIZE (64)) } }`; the 64 seed
/// bytes follow.
const KEM_PKCS8_PREFIX: [u8; 22] = [
    0x30, 0x54, // SEQUENCE, 84 bytes
    0x02, 0x01, 0x00, // version 0
    0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04,
    0x02, // id-alg-ml-kem-768
    0x04, 0x42, // privateKey OCTET STRING, 66 bytes
    0x80, 0x40, // seed [0], 64 bytes
];

impl KemKeyPair {
    /// The key pair derived from a 64-byte seed from a cryptographic RNG
    /// (FIPS 203 `ML-KEM.KeyGen_internal(d, z)`).
    #[must_use]
    pub fn from_seed(seed: [u8; 64]) -> Self {
        Self {
            seed: Zeroizing::new(seed),
        }
    }

    /// The 64-byte FIPS 203 seed (d ‖ z): the private key itself, for
    /// callers that decapsulate (sneakernet bundles).
    #[must_use]
    pub fn seed(&self) -> &[u8; 64] {
        &self.seed
    }

    /// The encapsulation (public) key, 1,184 bytes.
    #[must_use]
    pub fn encapsulation_key(&self) -> Vec<u8> {
        use ml_kem::KeyExport;
        let dk = ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed((*self.seed).into());
        dk.encapsulation_key().to_bytes().to_vec()
    }

    /// The decapsulation key (expanded from the seed).
    #[must_use]
    pub fn decapsulation_key(&self) -> ml_kem::DecapsulationKey<ml_kem::MlKem768> {
        ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed((*self.seed).into())
    }

    /// The private key as PKCS#8 (RFC 9935 seed form), PEM `PRIVATE KEY`.
    ///
    /// # Errors
    /// Only [`Error::Build`], never expected.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let mut der = Zeroizing::new(Vec::with_capacity(86));
        der.extend_from_slice(&KEM_PKCS8_PREFIX);
        der.extend_from_slice(&*self.seed);
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|e| Error::build("ML-KEM private key", e))
    }

    /// Reads a private key written by [`KemKeyPair::to_pkcs8_pem`].
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything else (other algorithms, the
    /// expanded key form).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let (label, der) =
            der::pem::decode_vec(pem.as_bytes()).map_err(|e| Error::malformed("ML-KEM key", e))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" || der.len() != 86 || der[..22] != KEM_PKCS8_PREFIX {
            return Err(Error::malformed(
                "ML-KEM key",
                "not an ML-KEM-768 private key in RFC 9935 seed form",
            ));
        }
        let mut seed = [0u8; 64];
        seed.copy_from_slice(&der[22..]);
        Ok(Self::from_seed(seed))
    }

    /// The public key as a SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
    ///
    /// # Errors
    /// Only [`Error::Build`], never expected.
    pub fn public_key_pem(&self) -> Result<String> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_ML_KEM_768,
                parameters: None,
            },
            subject_public_key: BitString::new(0, self.encapsulation_key())
                .map_err(|e| Error::build("ML-KEM public key", e))?,
        };
        let der = spki
            .to_der()
            .map_err(|e| Error::build("ML-KEM public key", e))?;
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &der)
            .map_err(|e| Error::build("ML-KEM public key", e))
    }
}

/// Parses an ML-KEM-768 SubjectPublicKeyInfo PEM; returns the 1,184-byte key.
///
/// # Errors
/// [`Error::Malformed`] when it is not one.
pub fn kem_public_key_from_pem(pem: &str) -> Result<Vec<u8>> {
    let (label, der) = der::pem::decode_vec(pem.as_bytes())
        .map_err(|e| Error::malformed("ML-KEM public key", e))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&der)
        .map_err(|e| Error::malformed("ML-KEM public key", e))?;
    let bytes = spki.subject_public_key.as_bytes().unwrap_or_default();
    if label != "PUBLIC KEY"
        || spki.algorithm.oid != ID_ML_KEM_768
        || spki.algorithm.parameters.is_some()
        || bytes.len() != 1184
    {
        return Err(Error::malformed(
            "ML-KEM public key",
            "not an ML-KEM-768 SubjectPublicKeyInfo",
        ));
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_identifiers_are_the_standard_oids() {
        assert_eq!(ID_ML_DSA_65.to_string(), "2.16.840.1.101.3.4.3.18");
        assert_eq!(ID_ML_KEM_768.to_string(), "2.16.840.1.101.3.4.4.2");
        // The hand-written PKCS#8 prefix names the same OID.
        assert_eq!(&KEM_PKCS8_PREFIX[7..18], ID_ML_KEM_768_DER);
    }

    const ID_ML_KEM_768_DER: &[u8] = &[
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x02,
    ];

    #[test]
    fn oid_der_matches_const_oid() {
        assert_eq!(ID_ML_KEM_768.to_der().unwrap(), ID_ML_KEM_768_DER);
    }

    #[test]
    fn kem_keys_round_trip_through_pem_and_derive_the_same_public_key() {
        let kp = KemKeyPair::from_seed([7u8; 64]);
        let pem = kp.to_pkcs8_pem().unwrap();
        let back = KemKeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.encapsulation_key(), kp.encapsulation_key());
        assert_eq!(kp.encapsulation_key().len(), 1184);
        let public = kem_public_key_from_pem(&kp.public_key_pem().unwrap()).unwrap();
        assert_eq!(public, kp.encapsulation_key());
    }

    #[test]
    fn a_signature_verifies_only_over_the_signed_bytes() {
        let key = SecretKey::from_seed([1u8; 32], "t").unwrap();
        let sig = signature::Signer::<X509Signature>::try_sign(&X509Signer::new(&key), b"tbs")
            .unwrap()
            .to_bitstring()
            .unwrap();
        let alg = ml_dsa_65_algorithm();
        verify_x509_signature(key.public(), b"tbs", &alg, &sig, "t", "k").unwrap();
        assert!(matches!(
            verify_x509_signature(key.public(), b"tbS", &alg, &sig, "t", "k"),
            Err(Error::BadSignature { .. })
        ));
    }
}
