//! Device-signed image fetches (`provision serve` / `provision fetch`):
//! what a device signs, and the server's checks. Sans-IO: the caller
//! passes the time in.
//!
//! A request carries four headers: `x-meshota-device` (device id),
//! `x-meshota-time` (Unix seconds), `x-meshota-nonce` (32 hex digits),
//! `x-meshota-signature` (hex ML-DSA-65 signature, deterministic, context
//! [`FETCH_CONTEXT`]) over
//!
//! ```text
//! "meshota/v1 provision-fetch\n" METHOD "\n" PATH "\n" DEVICE_ID "\n" TIME "\n" NONCE_HEX
//! ```
//!
//! The server ([`verify_fetch`]) answers only when, in order: the headers
//! parse; the device is in the registry (else unauthorized: no anonymous
//! or unknown fetches); it is not revoked (forbidden); the signature
//! verifies with the key of its current certificate; the time is within
//! [`REPLAY_WINDOW_SECS`] of the server's; the nonce was not seen within
//! the window ([`ReplayGuard`], bounded by [`MAX_NONCES`]).

use std::collections::{BTreeSet, HashSet};

use meshota_manifest::{SecretKey, UnixTime};

use crate::cert::parse_pem;
use crate::error::{Error, Result};
use crate::registry::{DeviceRecord, Registry, Status};
use crate::verify::certificate_key;

/// ML-DSA context of a fetch signature.
pub const FETCH_CONTEXT: &[u8] = b"meshota/v1/provision-fetch";
/// How far a request's time may be from the server's, in seconds.
pub const REPLAY_WINDOW_SECS: u64 = 300;
/// Most nonces remembered; beyond it, requests are refused until old ones
/// leave the window (a flood cannot grow memory without bound).
pub const MAX_NONCES: usize = 100_000;
/// Header: the device id.
pub const HEADER_DEVICE: &str = "x-meshota-device";
/// Header: the request time, Unix seconds.
pub const HEADER_TIME: &str = "x-meshota-time";
/// Header: 16 random bytes, hex.
pub const HEADER_NONCE: &str = "x-meshota-nonce";
/// Header: the signature, hex.
pub const HEADER_SIGNATURE: &str = "x-meshota-signature";
/// The path a device fetches its current image from.
pub const IMAGE_PATH_PREFIX: &str = "/v1/provision/image/";

/// The signed part of a fetch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchAuth {
    /// The device id.
    pub device_id: String,
    /// Unix seconds.
    pub time: u64,
    /// Random, once per request.
    pub nonce: [u8; 16],
    /// The ML-DSA-65 signature.
    pub signature: Vec<u8>,
}

fn unauthorized(reason: impl Into<String>) -> Error {
    Error::FetchUnauthorized {
        reason: reason.into(),
    }
}

/// The bytes a device signs (module doc).
#[must_use]
pub fn message(method: &str, path: &str, device_id: &str, time: u64, nonce: &[u8; 16]) -> Vec<u8> {
    format!(
        "meshota/v1 provision-fetch\n{method}\n{path}\n{device_id}\n{time}\n{}",
        hex::encode(nonce)
    )
    .into_bytes()
}

impl FetchAuth {
    /// Signs a request with the device's identity key.
    ///
    /// # Errors
    /// [`Error::Key`] when signing fails.
    pub fn sign(
        key: &SecretKey,
        method: &str,
        path: &str,
        device_id: &str,
        time: UnixTime,
        nonce: [u8; 16],
    ) -> Result<Self> {
        let signature = key
            .sign(
                &message(method, path, device_id, time.0, &nonce),
                FETCH_CONTEXT,
            )
            .map_err(|source| Error::Key {
                path: "identity key".into(),
                source,
            })?;
        Ok(Self {
            device_id: device_id.to_owned(),
            time: time.0,
            nonce,
            signature,
        })
    }

    /// The four headers, names and values.
    #[must_use]
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_DEVICE, self.device_id.clone()),
            (HEADER_TIME, self.time.to_string()),
            (HEADER_NONCE, hex::encode(self.nonce)),
            (HEADER_SIGNATURE, hex::encode(&self.signature)),
        ]
    }

    /// Reads the headers (`get` returns a header's value).
    ///
    /// # Errors
    /// [`Error::FetchUnauthorized`] when one is missing or malformed.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self> {
        let h = |name: &'static str| {
            get(name).ok_or_else(|| {
                unauthorized(format!(
                    "no {name} header: fetches are signed by the device key"
                ))
            })
        };
        let device_id = h(HEADER_DEVICE)?.to_owned();
        crate::serial::check_name("device id", &device_id)
            .map_err(|e| unauthorized(e.to_string()))?;
        let time = h(HEADER_TIME)?
            .parse::<u64>()
            .map_err(|_| unauthorized(format!("{HEADER_TIME} is not Unix seconds")))?;
        let mut nonce = [0u8; 16];
        hex::decode_to_slice(h(HEADER_NONCE)?, &mut nonce)
            .map_err(|_| unauthorized(format!("{HEADER_NONCE} is not 32 hex digits")))?;
        let sig = h(HEADER_SIGNATURE)?;
        if sig.len() != 2 * meshota_manifest::keys::SIGNATURE_LEN {
            return Err(unauthorized(format!(
                "{HEADER_SIGNATURE} is not an ML-DSA-65 signature"
            )));
        }
        let signature =
            hex::decode(sig).map_err(|_| unauthorized(format!("{HEADER_SIGNATURE} is not hex")))?;
        Ok(Self {
            device_id,
            time,
            nonce,
            signature,
        })
    }
}

/// Nonces seen within the replay window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    by_time: BTreeSet<(u64, [u8; 16])>,
    seen: HashSet<[u8; 16]>,
}

impl ReplayGuard {
    /// Accepts `auth`'s time and nonce at `now`, remembering the nonce.
    ///
    /// # Errors
    /// [`Error::FetchUnauthorized`]: time outside the window (clock skew or
    /// an old request replayed), nonce already seen (a replay), or the
    /// nonce table full.
    pub fn check(&mut self, auth: &FetchAuth, now: UnixTime) -> Result<()> {
        if auth.time.abs_diff(now.0) > REPLAY_WINDOW_SECS {
            return Err(unauthorized(format!(
                "request time {} is more than {REPLAY_WINDOW_SECS} s from the server's {} (clock skew, or a replayed request)",
                auth.time, now.0
            )));
        }
        let horizon = now.0.saturating_sub(REPLAY_WINDOW_SECS);
        while let Some(&(t, n)) = self.by_time.first() {
            if t >= horizon {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&n);
        }
        if self.seen.contains(&auth.nonce) {
            return Err(unauthorized(
                "this nonce was already used: a replayed request",
            ));
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(unauthorized(
                "too many requests in the replay window; retry later",
            ));
        }
        self.seen.insert(auth.nonce);
        self.by_time.insert((auth.time, auth.nonce));
        Ok(())
    }
}

/// The server's check of a fetch (module doc, in order). Returns the
/// device's registry record.
///
/// # Errors
/// [`Error::FetchUnauthorized`], [`Error::DeviceRevoked`],
/// [`Error::Registry`].
pub fn verify_fetch(
    registry: &Registry,
    auth: &FetchAuth,
    method: &str,
    path: &str,
    now: UnixTime,
    guard: &mut ReplayGuard,
) -> Result<DeviceRecord> {
    let record = registry
        .get(&auth.device_id)?
        .ok_or_else(|| unauthorized(format!("device {} is not in the registry", auth.device_id)))?;
    if matches!(record.status, Status::Revoked { .. }) {
        return Err(Error::DeviceRevoked(record.device_id));
    }
    let artifacts = registry
        .artifacts(&record.device_id)?
        .ok_or_else(|| unauthorized("the registry kept no certificate for this device"))?;
    let key = certificate_key(&parse_pem(artifacts.cert_pem.as_bytes())?)?;
    let msg = message(method, path, &auth.device_id, auth.time, &auth.nonce);
    if !key.verify(&msg, FETCH_CONTEXT, &auth.signature) {
        return Err(unauthorized(
            "the signature does not verify with the device's certificate key",
        ));
    }
    guard.check(auth, now)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(time: u64, nonce: u8) -> FetchAuth {
        FetchAuth {
            device_id: "d".into(),
            time,
            nonce: [nonce; 16],
            signature: vec![],
        }
    }

    #[test]
    fn a_nonce_is_accepted_once_within_the_window() {
        let mut g = ReplayGuard::default();
        g.check(&auth(1000, 1), UnixTime(1000)).unwrap();
        assert!(g.check(&auth(1000, 1), UnixTime(1001)).is_err());
        g.check(&auth(1000, 2), UnixTime(1001)).unwrap();
    }

    #[test]
    fn a_request_outside_the_window_is_refused_and_old_nonces_are_forgotten() {
        let mut g = ReplayGuard::default();
        assert!(
            g.check(&auth(1000, 1), UnixTime(1000 + REPLAY_WINDOW_SECS + 1))
                .is_err()
        );
        assert!(g.check(&auth(2000, 1), UnixTime(1000)).is_err());
        g.check(&auth(1000, 3), UnixTime(1000)).unwrap();
        // Later, the old entry leaves the table (its request is out of the window anyway).
        g.check(&auth(1400, 4), UnixTime(1400)).unwrap();
        assert_eq!(g.seen.len(), 1);
    }

    #[test]
    fn headers_round_trip_and_missing_ones_are_refused() {
        let key = SecretKey::from_seed([9; 32], "d").unwrap();
        let a = FetchAuth::sign(&key, "GET", "/p", "d", UnixTime(5), [7; 16]).unwrap();
        let h = a.headers();
        let back =
            FetchAuth::from_headers(|n| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str()))
                .unwrap();
        assert_eq!(back, a);
        let e = FetchAuth::from_headers(|n| {
            h.iter()
                .find(|(k, _)| *k == n && n != HEADER_SIGNATURE)
                .map(|(_, v)| v.as_str())
        })
        .unwrap_err();
        assert!(e.to_string().contains(HEADER_SIGNATURE), "{e}");
    }
}
