//! Confidential files of an image, encrypted to the device's ML-KEM-768
//! key, so an image can cross the mesh or sit on a USB stick and reveal
//! nothing but its public files.
//!
//! One encapsulation per image: `(ct, ss) = ML-KEM-768.Encaps(ek, m)`;
//! `ct` (1,088 bytes) travels in the signed image header. Each sealed file
//! at image path `p` is `ChaCha20-Poly1305(key_p, nonce = 12 zero bytes,
//! aad = p)` of its contents, with
//! `key_p = BLAKE3::derive_key(FILE_KEY_CONTEXT, ss ‖ p)`: one key per
//! file, each used once, so the fixed nonce never repeats under a key.
//!
//! `m` is not drawn from the RNG, so the same inputs give the same image
//! (as RFC 6979 derandomises signatures): it is
//! `BLAKE3::keyed_hash(derive_key(RANDOMNESS_CONTEXT, σ), "m")`, where σ
//! is the provisioning key's deterministic ML-DSA-65 signature (context
//! [`RANDOMNESS_SIGNING_CONTEXT`]) over the BLAKE3 transcript of the
//! device's encapsulation key, the image time and every sealed path and
//! plaintext. Only the provisioning key's holder can compute σ, and any
//! change of key, device, time or content gives another `m`, so no two
//! different plaintexts are ever sealed under one file key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use meshota_manifest::SecretKey;
use ml_kem::kem::Decapsulate;
use ml_kem::{MlKem768, array::Array};
use zeroize::Zeroizing;

use crate::alg::KemKeyPair;
use crate::error::{Error, Result};

/// BLAKE3 key-derivation context of a sealed file's key.
pub const FILE_KEY_CONTEXT: &str = "meshota 2026-11 provisioning image file key v1";
/// BLAKE3 key-derivation context of the encapsulation randomness.
pub const RANDOMNESS_CONTEXT: &str =
    "meshota 2026-11 provisioning image encapsulation randomness v1";
/// ML-DSA context of the signature the randomness is derived from.
pub const RANDOMNESS_SIGNING_CONTEXT: &[u8] = b"meshota/v1/provisioning-image-randomness";
/// Bytes of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Bytes of an ML-KEM-768 encapsulation key.
pub const KEM_PUBLIC_LEN: usize = 1184;
/// Bytes the AEAD adds to each sealed file.
pub const TAG_LEN: usize = 16;

fn file_key(ss: &[u8; 32], path: &str) -> Zeroizing<[u8; 32]> {
    let mut material = Zeroizing::new(Vec::with_capacity(32 + path.len()));
    material.extend_from_slice(ss);
    material.extend_from_slice(path.as_bytes());
    Zeroizing::new(blake3::derive_key(FILE_KEY_CONTEXT, &material))
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadImage {
        reason: reason.into(),
    }
}

/// Seals files to one device for one image.
pub struct Sealer {
    ss: Zeroizing<[u8; 32]>,
    ciphertext: Vec<u8>,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Encapsulates to `device_ek` with randomness derived from `signer`
    /// and the transcript of what will be sealed (module doc).
    ///
    /// # Errors
    /// [`Error::Malformed`] when `device_ek` is not an ML-KEM-768 key;
    /// [`Error::Key`] when signing fails.
    pub fn new(
        device_ek: &[u8],
        signer: &SecretKey,
        issued: u64,
        files: &[(String, Vec<u8>)],
    ) -> Result<Self> {
        let ek_bytes: &[u8; KEM_PUBLIC_LEN] = device_ek
            .try_into()
            .map_err(|_| Error::malformed("ML-KEM public key", "not 1,184 bytes"))?;
        let ek = ml_kem::EncapsulationKey::<MlKem768>::new(&Array::from(*ek_bytes))
            .map_err(|_| Error::malformed("ML-KEM public key", "does not decode"))?;
        let mut t = blake3::Hasher::new();
        t.update(device_ek);
        t.update(&issued.to_le_bytes());
        for (path, bytes) in files {
            t.update(&(path.len() as u64).to_le_bytes());
            t.update(path.as_bytes());
            t.update(&(bytes.len() as u64).to_le_bytes());
            t.update(bytes);
        }
        let sigma = signer
            .sign(t.finalize().as_bytes(), RANDOMNESS_SIGNING_CONTEXT)
            .map_err(|source| Error::Key {
                path: "provisioning key".into(),
                source,
            })?;
        let prf = Zeroizing::new(blake3::derive_key(RANDOMNESS_CONTEXT, &sigma));
        let m = Zeroizing::new(*blake3::keyed_hash(&prf, b"m").as_bytes());
        let (ct, ss) = ek.encapsulate_deterministic(&Array::from(*m));
        let mut shared = Zeroizing::new([0u8; 32]);
        shared.copy_from_slice(ss.as_slice());
        Ok(Self {
            ss: shared,
            ciphertext: ct.to_vec(),
        })
    }

    /// The ML-KEM ciphertext for the image header.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Encrypts the file at image path `path`.
    ///
    /// # Errors
    /// [`Error::Build`], never expected.
    pub fn seal(&self, path: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let key = file_key(&self.ss, path);
        chacha20poly1305::ChaCha20Poly1305::new((&*key).into())
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: plain,
                    aad: path.as_bytes(),
                },
            )
            .map_err(|_| Error::build("sealed file", "AEAD sealing failed"))
    }
}

/// Opens files sealed to this device.
pub struct Opener {
    ss: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for Opener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Opener(..)")
    }
}

impl Opener {
    /// Decapsulates the image's ciphertext with the device's key. ML-KEM
    /// decapsulation never fails: a ciphertext for another key yields an
    /// unrelated secret, and [`Opener::open`] then fails.
    ///
    /// # Errors
    /// [`Error::BadImage`] when the ciphertext has the wrong length.
    pub fn new(kem: &KemKeyPair, ciphertext: &[u8]) -> Result<Self> {
        let ct: &[u8; KEM_CIPHERTEXT_LEN] = ciphertext
            .try_into()
            .map_err(|_| bad("the ML-KEM ciphertext is not 1,088 bytes"))?;
        let dk = kem.decapsulation_key();
        let ss = dk.decapsulate(&Array::from(*ct));
        let mut shared = Zeroizing::new([0u8; 32]);
        shared.copy_from_slice(ss.as_slice());
        Ok(Self { ss: shared })
    }

    /// Decrypts the sealed file at image path `path`.
    ///
    /// # Errors
    /// [`Error::NotForThisDevice`] when it does not authenticate: sealed to
    /// another device's key, or altered.
    pub fn open(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = file_key(&self.ss, path);
        chacha20poly1305::ChaCha20Poly1305::new((&*key).into())
            .decrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: sealed,
                    aad: path.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::NotForThisDevice {
                reason: format!(
                    "/{path} does not decrypt with this device's ML-KEM key (sealed to another device, or altered)"
                ),
            })
    }
}
