//! ML-DSA-65 keys, key ids, and the public and secret key file formats.
//!
//! A key id is the BLAKE3 digest of the encoded public key (1,952 bytes,
//! FIPS 204 `pkEncode`). A secret key is stored as its 32-byte FIPS 204 seed
//! ξ, from which the whole key pair is derived; optionally sealed with a
//! passphrase (Argon2id, then XChaCha20-Poly1305).

use alloc::{string::String, vec::Vec};
use core::fmt;

use ml_dsa::{
    EncodedVerifyingKey, ExpandedSigningKey, MlDsa65, Signature, SigningKey, VerifyingKey,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::frame::{self, Kind};
use crate::limits::{MAX_PUBLIC_KEY_FILE_BYTES, MAX_SECRET_KEY_FILE_BYTES, MAX_STRING_BYTES};
use crate::{Error, Hash};

/// Encoded ML-DSA-65 public key length.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Encoded ML-DSA-65 signature length.
pub const SIGNATURE_LEN: usize = 3309;
/// The algorithm byte for ML-DSA-65 in key files.
pub const ALGORITHM_ML_DSA_65: u8 = 1;

/// The id of a public key: BLAKE3 of its 1,952 encoded bytes. Two keys have
/// the same id exactly when they are the same key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The 16-hex-digit prefix humans read.
    #[must_use]
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// The full 64-hex-digit form.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

/// An ML-DSA-65 public key. Always exactly [`PUBLIC_KEY_LEN`] bytes; its id
/// is computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: Vec<u8>,
    id: KeyId,
}

impl PublicKey {
    /// Wraps encoded public key bytes.
    ///
    /// # Errors
    /// [`Error::BadPublicKey`] when the length is not 1,952 bytes. (Every
    /// 1,952-byte string decodes to some ML-DSA-65 key.)
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(Error::BadPublicKey {
                reason: alloc::format!(
                    "{} bytes, an ML-DSA-65 public key has {PUBLIC_KEY_LEN}",
                    bytes.len()
                ),
            });
        }
        Ok(Self {
            id: KeyId(*Hash::of(bytes).as_bytes()),
            bytes: bytes.to_vec(),
        })
    }

    /// The key's id.
    #[must_use]
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// The 1,952 encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `signature` is a valid ML-DSA-65 signature by this key over
    /// `message` with context string `context` (FIPS 204 Algorithm 3).
    #[must_use]
    pub fn verify(&self, message: &[u8], context: &[u8], signature: &[u8]) -> bool {
        let Ok(enc) = EncodedVerifyingKey::<MlDsa65>::try_from(self.bytes.as_slice()) else {
            return false;
        };
        let Ok(sig) = Signature::<MlDsa65>::try_from(signature) else {
            return false;
        };
        // Accept only the one canonical encoding of a signature, so that no
        // byte of a signed document can change without failing verification.
        if sig.encode().as_slice() != signature {
            return false;
        }
        VerifyingKey::<MlDsa65>::decode(&enc).verify_with_context(message, context, &sig)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id.short())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = crate::frame::serde_bytes_vec::deserialize(d)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An ML-DSA-65 secret key: its seed and the signing key expanded from it
/// once; both are zeroised when dropped.
#[derive(Clone)]
pub struct SecretKey {
    seed: Zeroizing<[u8; 32]>,
    signing: ExpandedSigningKey<MlDsa65>,
    name: String,
    public: PublicKey,
}

impl SecretKey {
    /// Derives the key pair from a 32-byte seed (FIPS 204 `KeyGen_internal`).
    /// The caller supplies the seed from a cryptographic RNG.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] when `name` is longer than the string limit.
    pub fn from_seed(seed: [u8; 32], name: &str) -> Result<Self, Error> {
        check_name(name)?;
        let seed = Zeroizing::new(seed);
        let sk = SigningKey::<MlDsa65>::from_seed(&(*seed).into());
        let vk: &VerifyingKey<MlDsa65> = sk.as_ref();
        let public = PublicKey::from_bytes(vk.encode().as_slice())?;
        Ok(Self {
            signing: ExpandedSigningKey::<MlDsa65>::from_seed(&(*seed).into()),
            seed,
            name: name.into(),
            public,
        })
    }

    /// The key's name (informational, chosen at generation).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key.
    #[must_use]
    pub const fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key id.
    #[must_use]
    pub const fn id(&self) -> KeyId {
        self.public.id
    }

    /// Deterministic ML-DSA-65 signature (FIPS 204 Algorithm 2, deterministic
    /// variant) over `message` with context string `context`.
    ///
    /// # Errors
    /// [`Error::SigningFailed`] if `context` is longer than 255 bytes.
    pub fn sign(&self, message: &[u8], context: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self
            .signing
            .sign_deterministic(message, context)
            .map_err(|_| Error::SigningFailed {
                reason: "ML-DSA rejected the context string",
            })?;
        Ok(sig.encode().to_vec())
    }

    /// Encodes the public key file for this key.
    ///
    /// # Errors
    /// Only [`Error::Encoding`], never expected.
    pub fn public_key_file(&self) -> Result<Vec<u8>, Error> {
        encode_public_key_file(&self.name, &self.public)
    }

    /// Encodes the secret key file: plain (the file's permissions are its
    /// only protection) or sealed with a passphrase.
    ///
    /// `salt` and `nonce` must come from a cryptographic RNG; they are used
    /// only when `protection` is a passphrase.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the passphrase KDF rejects its parameters.
    pub fn secret_key_file(&self, protection: Protection<'_>) -> Result<Vec<u8>, Error> {
        let sealed = match protection {
            Protection::None => SealedSeed::Plain { seed: *self.seed },
            Protection::Passphrase {
                passphrase,
                kdf,
                salt,
                nonce,
            } => {
                let key = derive_key(passphrase, &kdf, &salt)?;
                let ciphertext = aead_seal(&key, &nonce, self.public.id(), &*self.seed)?;
                SealedSeed::Passphrase {
                    kdf,
                    salt,
                    nonce,
                    ciphertext,
                }
            }
        };
        let file = SecretKeyFile {
            algorithm: ALGORITHM_ML_DSA_65,
            name: self.name.clone(),
            key_id: self.public.id(),
            sealed,
        };
        let out = frame::seal(Kind::SecretKey, &file);
        let mut file = file;
        file.zeroize_seed();
        out
    }

    /// Decodes a secret key file. `passphrase` is asked for only when the
    /// file is sealed; it returns `None` when no passphrase is available.
    ///
    /// # Errors
    /// Framing errors, [`Error::PassphraseRequired`], [`Error::WrongPassphrase`],
    /// [`Error::SecretKeyMismatch`] when the file's recorded id does not
    /// match the derived key.
    pub fn from_secret_key_file(
        bytes: &[u8],
        passphrase: impl FnOnce(&str) -> Option<Zeroizing<String>>,
    ) -> Result<Self, Error> {
        let payload = frame::open(bytes, Kind::SecretKey, MAX_SECRET_KEY_FILE_BYTES)?;
        let mut file: SecretKeyFile = frame::decode_exact(payload, Kind::SecretKey)?;
        if file.algorithm != ALGORITHM_ML_DSA_65 {
            return Err(Error::UnsupportedAlgorithm {
                found: file.algorithm,
            });
        }
        check_name(&file.name)?;
        let seed: Zeroizing<[u8; 32]> = match &file.sealed {
            SealedSeed::Plain { seed } => Zeroizing::new(*seed),
            SealedSeed::Passphrase {
                kdf,
                salt,
                nonce,
                ciphertext,
            } => {
                let pass = passphrase(&file.name).ok_or_else(|| Error::PassphraseRequired {
                    name: file.name.clone(),
                })?;
                let key = derive_key(&pass, kdf, salt)?;
                aead_open(&key, nonce, file.key_id, ciphertext).ok_or_else(|| {
                    Error::WrongPassphrase {
                        name: file.name.clone(),
                    }
                })?
            }
        };
        file.zeroize_seed();
        let key = Self::from_seed(*seed, &file.name)?;
        if key.id() != file.key_id {
            return Err(Error::SecretKeyMismatch {
                derived: key.id(),
                recorded: file.key_id,
            });
        }
        Ok(key)
    }

    /// Whether a secret key file is passphrase-protected (after checking its
    /// framing).
    ///
    /// # Errors
    /// Framing errors.
    pub fn file_is_sealed(bytes: &[u8]) -> Result<bool, Error> {
        let payload = frame::open(bytes, Kind::SecretKey, MAX_SECRET_KEY_FILE_BYTES)?;
        let mut file: SecretKeyFile = frame::decode_exact(payload, Kind::SecretKey)?;
        let sealed = matches!(file.sealed, SealedSeed::Passphrase { .. });
        file.zeroize_seed();
        Ok(sealed)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({:?}, {})", self.name, self.public.id.short())
    }
}

/// How a secret key file protects the seed.
pub enum Protection<'a> {
    /// No encryption: only file permissions (0600) protect the key.
    None,
    /// Sealed with a key derived from a passphrase.
    Passphrase {
        /// The passphrase.
        passphrase: &'a str,
        /// KDF cost parameters.
        kdf: KdfParams,
        /// Random KDF salt.
        salt: [u8; 16],
        /// Random AEAD nonce.
        nonce: [u8; 24],
    },
}

/// Argon2id cost parameters, recorded in the key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (above OWASP's
    /// minimum of 19 MiB and 2 passes for Argon2id).
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// The most memory a key file may ask the KDF for (1 GiB): a hostile
    /// file cannot make the loader allocate more.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a key file may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
}

#[derive(Serialize, Deserialize)]
struct SecretKeyFile {
    algorithm: u8,
    name: String,
    key_id: KeyId,
    sealed: SealedSeed,
}

impl SecretKeyFile {
    fn zeroize_seed(&mut self) {
        if let SealedSeed::Plain { seed } = &mut self.sealed {
            seed.zeroize();
        }
    }
}

#[derive(Serialize, Deserialize)]
enum SealedSeed {
    Plain {
        seed: [u8; 32],
    },
    Passphrase {
        kdf: KdfParams,
        salt: [u8; 16],
        nonce: [u8; 24],
        #[serde(with = "crate::frame::serde_bytes_vec")]
        ciphertext: Vec<u8>,
    },
}

#[derive(Serialize, Deserialize)]
struct PublicKeyFile {
    algorithm: u8,
    name: String,
    key: PublicKey,
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.len() > MAX_STRING_BYTES {
        return Err(Error::LimitExceeded {
            field: "key name",
            count: name.len(),
            max: MAX_STRING_BYTES,
        });
    }
    Ok(())
}

/// Encodes a public key file.
///
/// # Errors
/// Only [`Error::Encoding`], never expected.
pub fn encode_public_key_file(name: &str, key: &PublicKey) -> Result<Vec<u8>, Error> {
    check_name(name)?;
    frame::seal(
        Kind::PublicKey,
        &PublicKeyFile {
            algorithm: ALGORITHM_ML_DSA_65,
            name: name.into(),
            key: key.clone(),
        },
    )
}

/// Decodes a public key file into its name and key.
///
/// # Errors
/// Framing errors, [`Error::UnsupportedAlgorithm`], [`Error::BadPublicKey`].
pub fn decode_public_key_file(bytes: &[u8]) -> Result<(String, PublicKey), Error> {
    let payload = frame::open(bytes, Kind::PublicKey, MAX_PUBLIC_KEY_FILE_BYTES)?;
    let file: PublicKeyFile = frame::decode_exact(payload, Kind::PublicKey)?;
    if file.algorithm != ALGORITHM_ML_DSA_65 {
        return Err(Error::UnsupportedAlgorithm {
            found: file.algorithm,
        });
    }
    check_name(&file.name)?;
    Ok((file.name, file.key))
}

fn derive_key(
    passphrase: &str,
    kdf: &KdfParams,
    salt: &[u8; 16],
) -> Result<Zeroizing<[u8; 32]>, Error> {
    if kdf.memory_kib > KdfParams::MAX_MEMORY_KIB || kdf.iterations > KdfParams::MAX_ITERATIONS {
        return Err(Error::InvalidField {
            field: "passphrase KDF parameters",
            reason: alloc::format!(
                "{} KiB and {} passes exceed the limits of {} KiB and {} passes",
                kdf.memory_kib,
                kdf.iterations,
                KdfParams::MAX_MEMORY_KIB,
                KdfParams::MAX_ITERATIONS
            ),
        });
    }
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| Error::InvalidField {
            field: "passphrase KDF parameters",
            reason: alloc::format!("{e}"),
        })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut *out)
        .map_err(|e| Error::InvalidField {
            field: "passphrase KDF parameters",
            reason: alloc::format!("{e}"),
        })?;
    Ok(out)
}

fn aead_seal(key: &[u8; 32], nonce: &[u8; 24], aad: KeyId, plain: &[u8]) -> Result<Vec<u8>, Error> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(
            nonce.into(),
            Payload {
                msg: plain,
                aad: &aad.0,
            },
        )
        .map_err(|_| Error::Encoding {
            kind: Kind::SecretKey,
            reason: "AEAD sealing failed".into(),
        })
}

fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: KeyId,
    sealed: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &aad.0,
                },
            )
            .ok()?,
    );
    let seed: [u8; 32] = plain.as_slice().try_into().ok()?;
    Some(Zeroizing::new(seed))
}
