//! The channel-binding hello: each side's proof that it holds its ML-DSA-65
//! device key *and* is the endpoint of this very TLS session.
//!
//! Both sides export 32 bytes of keying material from the TLS session
//! ([`EXPORTER_LABEL`], empty context) and sign them with
//! [`CHANNEL_BINDING_CONTEXT`]. A relay that terminates TLS has a different
//! exporter value on each side and cannot forge either signature.
//!
//! Wire form (the body of the first frame on each side's hello stream):
//!
//! ```text
//! "MOTA"  magic             4 bytes
//! 1       format version    1 byte
//! 48      kind (hello)      1 byte
//! postcard { device_key: bytes(1952), signature: bytes(3309), hardware: string(<= 128),
//!            credentials: bytes(<= 32 KiB) }
//! ```
//!
//! `credentials` is the sender's device certificate chain (PEM: device,
//! then intermediates) in fleets admitted by certificate, empty otherwise.
//! It is not covered by the hello signature: the admission check requires
//! the certificate's key to be the `device_key` this hello proves, and the
//! stream is inside the TLS session the signature binds.
//!
//! The size is checked before decoding, the payload must decode to its end
//! and be in canonical postcard encoding (re-encoding yields the same bytes).

use meshota_manifest::keys::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use meshota_manifest::limits::MAX_STRING_BYTES;
use meshota_manifest::{KeyId, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

use super::QuicError;

/// The TLS exporter label (RFC 8446 §7.5) for the channel-binding value.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-meshota-channel-binding";

/// Length of the exported channel-binding value.
pub const EXPORTER_LEN: usize = 32;

/// ML-DSA context string of the channel-binding signature; no other
/// meshota signature uses it, so a hello signature never verifies as a
/// document signature or the reverse.
pub const CHANNEL_BINDING_CONTEXT: &[u8] = b"meshota/v1/channel-binding";

/// The hello header: magic, format version, kind.
pub const HELLO_HEADER: [u8; 6] =
    meshota_manifest::frame::header(meshota_manifest::Kind::ChannelBindingHello);

/// Largest credentials (certificate chain) a hello may carry.
pub const MAX_CREDENTIAL_BYTES: usize = 32 * 1024;

/// Largest encoded hello accepted: header, key, signature, the longest
/// hardware string, the largest credentials and varint lengths, rounded up.
pub const MAX_HELLO_BYTES: usize = 6 * 1024 + MAX_CREDENTIAL_BYTES;

/// The longest hardware class string, as in manifests.
pub const MAX_HARDWARE_BYTES: usize = MAX_STRING_BYTES;

/// A decoded hello. Its fields are as the peer sent them; a `Hello` proves
/// nothing until [`Hello::verify`] accepts it for this connection's
/// exporter value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's ML-DSA-65 device public key (always 1,952 bytes).
    pub device_key: PublicKey,
    /// ML-DSA-65 signature over the exporter value with
    /// [`CHANNEL_BINDING_CONTEXT`].
    pub signature: Vec<u8>,
    /// The sender's hardware class (at most [`MAX_HARDWARE_BYTES`]).
    pub hardware: String,
    /// The sender's certificate chain, or empty (module doc).
    pub credentials: Vec<u8>,
}

impl Hello {
    /// Signs `exporter` (the channel-binding value of this connection) with
    /// `key`. Signing any other value produces a hello that every honest
    /// peer refuses.
    ///
    /// # Errors
    /// [`QuicError::MalformedHello`] if `hardware` is longer than
    /// [`MAX_HARDWARE_BYTES`] or signing fails.
    pub fn sign(key: &SecretKey, exporter: &[u8], hardware: &str) -> Result<Self, QuicError> {
        if hardware.len() > MAX_HARDWARE_BYTES {
            return Err(QuicError::MalformedHello {
                reason: "hardware class string too long",
            });
        }
        let signature =
            key.sign(exporter, CHANNEL_BINDING_CONTEXT)
                .map_err(|_| QuicError::MalformedHello {
                    reason: "signing the channel-binding value failed",
                })?;
        Ok(Self {
            device_key: key.public().clone(),
            signature,
            hardware: hardware.to_owned(),
            credentials: Vec::new(),
        })
    }

    /// The same hello carrying `credentials` (its certificate chain).
    ///
    /// # Errors
    /// [`QuicError::MalformedHello`] if they exceed [`MAX_CREDENTIAL_BYTES`].
    pub fn with_credentials(mut self, credentials: Vec<u8>) -> Result<Self, QuicError> {
        if credentials.len() > MAX_CREDENTIAL_BYTES {
            return Err(QuicError::MalformedHello {
                reason: "credentials too long",
            });
        }
        self.credentials = credentials;
        Ok(self)
    }

    /// The sender's key id.
    #[must_use]
    pub const fn peer_id(&self) -> KeyId {
        self.device_key.id()
    }

    /// Encodes header and postcard payload; `decode(encode(h)) == h`.
    ///
    /// # Errors
    /// [`QuicError::MalformedHello`] if encoding fails (never expected).
    pub fn encode(&self) -> Result<Vec<u8>, QuicError> {
        let out = HELLO_HEADER.to_vec();
        postcard::to_extend(self, out).map_err(|_| QuicError::MalformedHello {
            reason: "hello does not encode",
        })
    }

    /// Decodes an untrusted hello, checking in order: size, header,
    /// payload decodes exactly to the end, canonical encoding, field sizes.
    ///
    /// # Errors
    /// [`QuicError::MalformedHello`] naming the first check that failed.
    pub fn decode(bytes: &[u8]) -> Result<Self, QuicError> {
        let bad = |reason| QuicError::MalformedHello { reason };
        if bytes.len() > MAX_HELLO_BYTES {
            return Err(bad("hello too large"));
        }
        let payload = bytes
            .strip_prefix(&HELLO_HEADER[..4])
            .ok_or(bad("bad magic"))?;
        let (&version, payload) = payload.split_first().ok_or(bad("truncated header"))?;
        if version != HELLO_HEADER[4] {
            return Err(bad("unsupported hello version"));
        }
        let (&kind, payload) = payload.split_first().ok_or(bad("truncated header"))?;
        if kind != HELLO_HEADER[5] {
            return Err(bad("not a hello"));
        }
        let (hello, rest): (Self, _) =
            postcard::take_from_bytes(payload).map_err(|_| bad("payload does not decode"))?;
        if !rest.is_empty() {
            return Err(bad("bytes after the payload"));
        }
        if hello.encode()?.as_slice() != bytes {
            return Err(bad("non-canonical encoding"));
        }
        if hello.device_key.as_bytes().len() != PUBLIC_KEY_LEN {
            return Err(bad("device key length"));
        }
        if hello.signature.len() != SIGNATURE_LEN {
            return Err(bad("signature length"));
        }
        if hello.hardware.len() > MAX_HARDWARE_BYTES {
            return Err(bad("hardware class string too long"));
        }
        if hello.credentials.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad("credentials too long"));
        }
        Ok(hello)
    }

    /// Checks the signature over this connection's exporter value.
    ///
    /// # Errors
    /// [`QuicError::ChannelBindingFailed`] when it does not verify.
    pub fn verify(&self, exporter: &[u8]) -> Result<(), QuicError> {
        if self
            .device_key
            .verify(exporter, CHANNEL_BINDING_CONTEXT, &self.signature)
        {
            Ok(())
        } else {
            Err(QuicError::ChannelBindingFailed {
                peer: self.peer_id(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32], "test").unwrap()
    }

    #[test]
    fn hello_round_trips_and_verifies_only_over_its_exporter() {
        let hello = Hello::sign(&key(1), &[7; 32], "pi4").unwrap();
        let bytes = hello.encode().unwrap();
        assert!(bytes.len() <= MAX_HELLO_BYTES);
        let back = Hello::decode(&bytes).unwrap();
        assert_eq!(back, hello);
        back.verify(&[7; 32]).unwrap();
        assert!(matches!(
            back.verify(&[8; 32]),
            Err(QuicError::ChannelBindingFailed { .. })
        ));
    }

    #[test]
    fn hello_with_longest_hardware_fits_the_limit() {
        let hw = "x".repeat(MAX_HARDWARE_BYTES);
        let bytes = Hello::sign(&key(2), &[0; 32], &hw)
            .unwrap()
            .encode()
            .unwrap();
        assert!(bytes.len() <= MAX_HELLO_BYTES);
    }

    #[test]
    fn decode_refuses_every_truncation_and_bad_header() {
        let bytes = Hello::sign(&key(3), &[1; 32], "pi4")
            .unwrap()
            .encode()
            .unwrap();
        for cut in 0..bytes.len() {
            assert!(Hello::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..HELLO_HEADER.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            assert!(Hello::decode(&bad).is_err(), "header byte {i}");
        }
        let mut long = bytes;
        long.push(0);
        assert!(Hello::decode(&long).is_err());
    }
}
