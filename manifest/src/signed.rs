//! Signed documents: decoding (untrusted) and the verified wrapper.
//!
//! [`SignedDocument`] is what came off the disk or the wire: well formed,
//! within limits, and *not yet trusted*. A [`Verified`] value can only be
//! made by the verification functions of this crate, so code that holds
//! one knows every rule was checked.

use alloc::vec::Vec;

use serde::{Serialize, de::DeserializeOwned};

use crate::frame::{self, Envelope, Kind, SignatureEntry};
use crate::keys::SIGNATURE_LEN;
use crate::limits::MAX_SIGNATURES;
use crate::{Error, Hash, KeyId, SecretKey};

/// A body type that travels inside a signed envelope.
pub trait Document: Serialize + DeserializeOwned + Clone {
    /// The kind byte of its files.
    const KIND: Kind;
    /// The largest encoded file of this kind accepted.
    const MAX_BYTES: usize;
    /// Structural checks that need no keys: list lengths, string lengths,
    /// field values. Run on every decode and before every signing.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] or [`Error::InvalidField`].
    fn check_structure(&self) -> Result<(), Error>;
}

/// The ML-DSA context string for documents of `kind`: domain separation, so
/// a signature over one kind of document is never valid for another.
#[must_use]
pub fn context(kind: Kind) -> alloc::string::String {
    alloc::format!("meshota/v1/{}", kind.name())
}

/// A decoded, well-formed, *unverified* signed document.
#[derive(Debug, Clone)]
pub struct SignedDocument<T> {
    body: T,
    body_bytes: Vec<u8>,
    signatures: Vec<SignatureEntry>,
}

impl<T: Document> SignedDocument<T> {
    /// Signs `body` with each key (in the order given) and returns the
    /// document. Nothing is verified against a trust root here.
    ///
    /// # Errors
    /// Structural errors of `body`, [`Error::SigningFailed`].
    pub fn sign(body: T, keys: &[&SecretKey]) -> Result<Self, Error> {
        body.check_structure()?;
        if keys.len() > MAX_SIGNATURES {
            return Err(Error::LimitExceeded {
                field: "signatures",
                count: keys.len(),
                max: MAX_SIGNATURES,
            });
        }
        let body_bytes = postcard::to_allocvec(&body).map_err(|e| Error::Encoding {
            kind: T::KIND,
            reason: alloc::format!("{e}"),
        })?;
        let ctx = context(T::KIND);
        let mut signatures = Vec::with_capacity(keys.len());
        for key in keys {
            signatures.push(SignatureEntry {
                key_id: key.id(),
                signature: key.sign(&body_bytes, ctx.as_bytes())?,
            });
        }
        Ok(Self {
            body,
            body_bytes,
            signatures,
        })
    }

    /// Adds a signature by `key` over the same body.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`], [`Error::SigningFailed`].
    pub fn add_signature(&mut self, key: &SecretKey) -> Result<(), Error> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(Error::LimitExceeded {
                field: "signatures",
                count: self.signatures.len() + 1,
                max: MAX_SIGNATURES,
            });
        }
        let ctx = context(T::KIND);
        self.signatures.push(SignatureEntry {
            key_id: key.id(),
            signature: key.sign(&self.body_bytes, ctx.as_bytes())?,
        });
        Ok(())
    }

    /// Decodes a file or message of this kind. Checks the size limit before
    /// reading anything, then the header, then the envelope, then the body
    /// (which must be in canonical encoding), then structure. Signatures are
    /// *not* checked.
    ///
    /// # Errors
    /// Any framing or structural error.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let payload = frame::open(bytes, T::KIND, T::MAX_BYTES)?;
        let envelope: Envelope = frame::decode_exact(payload, T::KIND)?;
        if envelope.signatures.len() > MAX_SIGNATURES {
            return Err(Error::LimitExceeded {
                field: "signatures",
                count: envelope.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        if let Some(bad) = envelope
            .signatures
            .iter()
            .find(|s| s.signature.len() != SIGNATURE_LEN)
        {
            return Err(Error::InvalidField {
                field: "signature",
                reason: alloc::format!(
                    "signature by {} is {} bytes, an ML-DSA-65 signature has {SIGNATURE_LEN}",
                    bad.key_id,
                    bad.signature.len()
                ),
            });
        }
        let body: T = frame::decode_exact(&envelope.body, T::KIND)?;
        body.check_structure()?;
        Ok(Self {
            body,
            body_bytes: envelope.body,
            signatures: envelope.signatures,
        })
    }

    /// Encodes the document: header, then the envelope.
    ///
    /// # Errors
    /// Only [`Error::Encoding`], never expected.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        frame::seal(
            T::KIND,
            &Envelope {
                body: self.body_bytes.clone(),
                signatures: self.signatures.clone(),
            },
        )
    }

    /// The body, unverified: for inspection only.
    #[must_use]
    pub const fn unverified_body(&self) -> &T {
        &self.body
    }

    /// The exact signed bytes.
    #[must_use]
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The document's id: BLAKE3 of the body bytes. Independent of which
    /// signatures are attached.
    #[must_use]
    pub fn id(&self) -> Hash {
        Hash::of(&self.body_bytes)
    }

    /// The signatures attached.
    #[must_use]
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }

    /// Mutable access to the signatures, for tests of verification rules and
    /// for tools that strip signatures.
    pub fn signatures_mut(&mut self) -> &mut Vec<SignatureEntry> {
        &mut self.signatures
    }

    /// Distinct key ids whose signatures verify under `lookup`, plus the
    /// first key id (if any) whose signature failed.
    pub(crate) fn signers<'k>(
        &self,
        mut key_for: impl FnMut(&KeyId) -> Option<&'k crate::PublicKey>,
    ) -> SignerScan {
        let ctx = context(T::KIND);
        let mut scan = SignerScan::default();
        for entry in &self.signatures {
            if scan.seen.contains(&entry.key_id) {
                continue;
            }
            scan.seen.push(entry.key_id);
            match key_for(&entry.key_id) {
                None => scan.unmatched.push(entry.key_id),
                Some(pk) => {
                    if pk.verify(&self.body_bytes, ctx.as_bytes(), &entry.signature) {
                        scan.valid.push(entry.key_id);
                    } else if scan.invalid.is_none() {
                        scan.invalid = Some(entry.key_id);
                    }
                }
            }
        }
        scan
    }

    pub(crate) fn into_verified(self) -> Verified<T> {
        Verified {
            id: Hash::of(&self.body_bytes),
            body: self.body,
            document: self.body_bytes,
            signatures: self.signatures,
        }
    }
}

/// The outcome of checking each distinct signer once.
#[derive(Debug, Default)]
pub(crate) struct SignerScan {
    /// Every distinct key id seen, in order.
    pub(crate) seen: Vec<KeyId>,
    /// Keys whose signature verified.
    pub(crate) valid: Vec<KeyId>,
    /// Keys the lookup did not offer.
    pub(crate) unmatched: Vec<KeyId>,
    /// The first key whose signature failed.
    pub(crate) invalid: Option<KeyId>,
}

/// A document that passed every rule of the verification that produced it.
/// Only this crate constructs it.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    id: Hash,
    body: T,
    document: Vec<u8>,
    signatures: Vec<SignatureEntry>,
}

impl<T: Document> Verified<T> {
    /// The verified body.
    #[must_use]
    pub const fn body(&self) -> &T {
        &self.body
    }

    /// The document id (BLAKE3 of the signed body bytes).
    #[must_use]
    pub const fn id(&self) -> Hash {
        self.id
    }

    /// Re-encodes the whole signed document, to store or relay it.
    ///
    /// # Errors
    /// Only [`Error::Encoding`], never expected.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        frame::seal(
            T::KIND,
            &Envelope {
                body: self.document.clone(),
                signatures: self.signatures.clone(),
            },
        )
    }
}

impl<T: Document> Verified<T> {
    /// The signed document this value was verified from, for APIs that
    /// take one (they check it again: verification is not skipped).
    #[must_use]
    pub fn to_document(&self) -> SignedDocument<T> {
        SignedDocument {
            body: self.body.clone(),
            body_bytes: self.document.clone(),
            signatures: self.signatures.clone(),
        }
    }
}

impl<T> core::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.body
    }
}
