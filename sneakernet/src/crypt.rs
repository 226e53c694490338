//! Bundle encryption: one random content key per bundle, wrapped for each
//! recipient with ML-KEM-768, and ChaCha20-Poly1305 per record.
//!
//! Wrapping: `(ct, ss) = ML-KEM-768.Encaps(ek)`; the key-encryption key is
//! `BLAKE3.derive_key("meshota bundle v1 content key", ss ‖ recipient id)`;
//! the content key is sealed under it with a zero nonce (each key-encryption
//! key seals exactly one message), associated data the 12-byte fixed header.
//! A lost stick reveals the recipients' ids, record count and sizes, nothing
//! else.

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use meshota_manifest::Hash;
use ml_kem::{Decapsulate, DecapsulationKey, Encapsulate, EncapsulationKey, MlKem768};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::{KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN, STANZA_LEN, record_nonce};

const WRAP_CONTEXT: &str = "meshota bundle v1 content key";

/// A recipient's ML-KEM-768 public (encapsulation) key and its id.
#[derive(Clone)]
pub struct RecipientKey {
    ek: EncapsulationKey<MlKem768>,
    id: Hash,
}

impl core::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RecipientKey({})", self.id.short())
    }
}

impl RecipientKey {
    /// Parses a 1,184-byte encapsulation key; its id is the BLAKE3 of those bytes.
    ///
    /// # Errors
    /// [`Error::Key`] when the length is wrong or the key fails FIPS 203's
    /// modulus check.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEM_PUBLIC_KEY_LEN {
            return Err(Error::Key(format!(
                "an encapsulation key is {KEM_PUBLIC_KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        let arr = ml_kem::array::Array::try_from(bytes)
            .map_err(|_| Error::Key("wrong encapsulation key length".into()))?;
        let ek = EncapsulationKey::<MlKem768>::new(&arr)
            .map_err(|_| Error::Key("not a valid ML-KEM-768 encapsulation key".into()))?;
        Ok(Self {
            ek,
            id: Hash::of(bytes),
        })
    }

    /// The recipient id stored in the bundle header.
    #[must_use]
    pub const fn id(&self) -> Hash {
        self.id
    }
}

/// A recipient's ML-KEM-768 private key, kept as its 64-byte seed.
pub struct DecryptionKey {
    dk: DecapsulationKey<MlKem768>,
    id: Hash,
}

impl core::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DecryptionKey({})", self.id.short())
    }
}

impl DecryptionKey {
    /// The key pair of a FIPS 203 seed (d ‖ z), as `meshota keys generate
    /// --kem` and `meshota provision keygen` store it.
    #[must_use]
    pub fn from_seed(seed: &[u8; 64]) -> Self {
        let dk = DecapsulationKey::<MlKem768>::from_seed((*seed).into());
        let id = Hash::of(&ml_kem::KeyExport::to_bytes(dk.encapsulation_key()));
        Self { dk, id }
    }

    /// The public half, to encrypt to.
    ///
    /// # Errors
    /// Never for a key made by [`DecryptionKey::from_seed`].
    pub fn recipient(&self) -> Result<RecipientKey> {
        RecipientKey::from_bytes(&ml_kem::KeyExport::to_bytes(self.dk.encapsulation_key()))
    }

    /// The recipient id this key opens.
    #[must_use]
    pub const fn id(&self) -> Hash {
        self.id
    }
}

/// The per-bundle content key.
pub(crate) struct ContentKey(Zeroizing<[u8; 32]>);

impl ContentKey {
    pub(crate) fn random() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *k).map_err(|e| Error::Rng(e.to_string()))?;
        Ok(Self(k))
    }

    /// The record cipher for a bundle whose header hashes to `header_hash`.
    pub(crate) fn cipher(&self, header_hash: Hash) -> RecordCipher {
        RecordCipher {
            aead: ChaCha20Poly1305::new((&*self.0).into()),
            aad: header_hash,
        }
    }
}

fn kek(shared: &[u8], recipient: &Hash) -> Zeroizing<[u8; 32]> {
    let mut material = Zeroizing::new([0u8; 64]);
    material[..32].copy_from_slice(shared);
    material[32..].copy_from_slice(recipient.as_bytes());
    Zeroizing::new(blake3::derive_key(WRAP_CONTEXT, &*material))
}

/// Wraps `key` for `to`: one header stanza.
pub(crate) fn seal_stanza(
    to: &RecipientKey,
    key: &ContentKey,
    fixed_header: &[u8],
) -> Result<Vec<u8>> {
    let (ct, shared) = to.ek.encapsulate();
    let kek = kek(shared.as_slice(), &to.id);
    let sealed = ChaCha20Poly1305::new((&*kek).into())
        .encrypt(
            (&[0u8; 12]).into(),
            Payload {
                msg: &*key.0,
                aad: fixed_header,
            },
        )
        .map_err(|_| Error::Decrypt("sealing the content key failed".into()))?;
    let mut out = Vec::with_capacity(STANZA_LEN);
    out.extend_from_slice(to.id.as_bytes());
    out.extend_from_slice(ct.as_slice());
    out.extend_from_slice(&sealed);
    debug_assert_eq!(out.len(), STANZA_LEN);
    Ok(out)
}

/// The recipient id a stanza names.
pub(crate) fn stanza_recipient(stanza: &[u8]) -> Option<Hash> {
    let id: [u8; 32] = stanza.get(..32)?.try_into().ok()?;
    Some(Hash(id))
}

/// Unwraps the content key from the stanza addressed to `key`.
pub(crate) fn open_stanza(
    key: &DecryptionKey,
    stanza: &[u8],
    fixed_header: &[u8],
) -> Result<ContentKey> {
    let bad = || Error::Decrypt("its key stanza for this recipient does not open".into());
    let ct = stanza.get(32..32 + KEM_CIPHERTEXT_LEN).ok_or_else(bad)?;
    let sealed = stanza.get(32 + KEM_CIPHERTEXT_LEN..).ok_or_else(bad)?;
    let ct = ml_kem::array::Array::try_from(ct).map_err(|_| bad())?;
    let shared = key.dk.decapsulate(&ct);
    let kek = kek(shared.as_slice(), &key.id);
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new((&*kek).into())
            .decrypt(
                (&[0u8; 12]).into(),
                Payload {
                    msg: sealed,
                    aad: fixed_header,
                },
            )
            .map_err(|_| bad())?,
    );
    let mut k = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(bad());
    }
    k.copy_from_slice(&plain);
    Ok(ContentKey(k))
}

/// Seals and opens records: nonce = record number, AAD = header hash.
pub(crate) struct RecordCipher {
    aead: ChaCha20Poly1305,
    aad: Hash,
}

impl RecordCipher {
    pub(crate) fn seal(&self, n: u64, plain: &[u8]) -> Result<Vec<u8>> {
        self.aead
            .encrypt(
                (&record_nonce(n)).into(),
                Payload {
                    msg: plain,
                    aad: self.aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Decrypt("sealing a record failed".into()))
    }

    pub(crate) fn open(&self, n: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.aead
            .decrypt(
                (&record_nonce(n)).into(),
                Payload {
                    msg: sealed,
                    aad: self.aad.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::Decrypt(format!(
                    "record {n} fails authentication (corrupted, reordered or from another bundle)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stanza_opens_only_with_its_recipients_key() {
        let alice = DecryptionKey::from_seed(&[1u8; 64]);
        let bob = DecryptionKey::from_seed(&[2u8; 64]);
        let key = ContentKey::random().unwrap();
        let header = [9u8; 12];
        let stanza = seal_stanza(&alice.recipient().unwrap(), &key, &header).unwrap();
        assert_eq!(stanza.len(), STANZA_LEN);
        assert_eq!(stanza_recipient(&stanza), Some(alice.id()));
        let opened = open_stanza(&alice, &stanza, &header).unwrap();
        assert_eq!(*opened.0, *key.0);
        assert!(open_stanza(&bob, &stanza, &header).is_err());
        // The header is bound: a changed recipient count does not open.
        assert!(open_stanza(&alice, &stanza, &[8u8; 12]).is_err());
    }

    #[test]
    fn a_record_opens_only_under_its_number() {
        let key = ContentKey::random().unwrap();
        let c = key.cipher(Hash::of(b"header"));
        let sealed = c.seal(7, b"chunk bytes").unwrap();
        assert_eq!(c.open(7, &sealed).unwrap(), b"chunk bytes");
        assert!(c.open(8, &sealed).is_err());
        let other = key.cipher(Hash::of(b"other header"));
        assert!(other.open(7, &sealed).is_err());
    }

    #[test]
    fn recipient_key_refuses_wrong_lengths() {
        assert!(matches!(
            RecipientKey::from_bytes(&[0u8; 100]),
            Err(Error::Key(_))
        ));
    }
}
