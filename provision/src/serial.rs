//! Hardware ids, the 10-hex-digit device serial derived from them, and the
//! character rules of device ids and hardware classes.
//!
//! ## The serial mapping (stable: changing it renames every device)
//! 1. **Normalise** the hardware id as the device reports it: drop trailing
//!    NUL bytes (device-tree strings end in one), trim ASCII whitespace,
//!    lowercase ASCII letters, drop one leading `0x` when the rest is
//!    hexadecimal. The result must be 1–128 printable ASCII characters
//!    without spaces, commas or quotes. `/proc/cpuinfo` text is reduced to
//!    the value of its `Serial` line first ([`HardwareId::from_cpuinfo`]).
//! 2. **Map**: serial = the first 5 bytes (40 bits) of
//!    `BLAKE3::derive_key(SERIAL_CONTEXT, normalised id)`, written as 10
//!    lowercase hex digits.
//!
//! The serial does not depend on the device type or on which file the id
//! came from: a Raspberry Pi's `/proc/cpuinfo` `Serial` and its
//! `/sys/firmware/devicetree/base/serial-number` give the same id, hence
//! the same serial. With 40 bits, a fleet of a million devices has about a
//! 1 in 2,200 chance of one collision; the registry refuses the second
//! hardware id of a collision ([`crate::Error::SerialCollision`]).

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};

/// The BLAKE3 key-derivation context of the serial mapping (domain separation).
pub const SERIAL_CONTEXT: &str = "meshota 2026-11 device serial from hardware id v1";

/// Longest normalised hardware id, in bytes.
pub const MAX_HARDWARE_ID_LEN: usize = 128;

/// Longest device id or hardware class, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A normalised hardware id (see the module doc). Two reports of the same
/// hardware normalise to equal values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HardwareId(String);

impl HardwareId {
    /// Normalises a hardware id as the device reports it.
    ///
    /// # Errors
    /// [`Error::BadHardwareId`] when nothing is left, the id is longer than
    /// [`MAX_HARDWARE_ID_LEN`], or holds a character outside printable
    /// ASCII, or a space, comma or quote.
    pub fn normalise(raw: &str) -> Result<Self> {
        let bad = |reason| Error::BadHardwareId {
            raw: raw.chars().take(80).collect(),
            reason,
        };
        let s = raw.trim_end_matches('\0').trim_ascii().to_ascii_lowercase();
        let s = match s.strip_prefix("0x") {
            Some(rest) if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                rest.to_owned()
            }
            _ => s,
        };
        if s.is_empty() {
            return Err(bad("empty after normalisation"));
        }
        if s.len() > MAX_HARDWARE_ID_LEN {
            return Err(bad("longer than 128 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\''))
        {
            return Err(bad(
                "holds a character other than printable ASCII without spaces, commas or quotes",
            ));
        }
        Ok(Self(s))
    }

    /// The hardware id in `/proc/cpuinfo` text: the value of its `Serial`
    /// line (as on Raspberry Pi and BeagleBone), normalised.
    ///
    /// # Errors
    /// [`Error::BadHardwareId`] when there is no `Serial` line or its value
    /// does not normalise.
    pub fn from_cpuinfo(text: &str) -> Result<Self> {
        let value = text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "Serial").then_some(value)
        });
        match value {
            Some(v) => Self::normalise(v),
            None => Err(Error::BadHardwareId {
                raw: String::new(),
                reason: "the cpuinfo text has no `Serial` line",
            }),
        }
    }

    /// The normalised id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The device serial this id maps to (see the module doc).
    #[must_use]
    pub fn serial(&self) -> DeviceSerial {
        let key = blake3::derive_key(SERIAL_CONTEXT, self.0.as_bytes());
        let mut out = [0u8; 5];
        out.copy_from_slice(&key[..5]);
        DeviceSerial(out)
    }
}

impl fmt::Display for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device serial: 40 bits, written as exactly 10 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceSerial([u8; 5]);

impl DeviceSerial {
    /// The 5 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 5] {
        &self.0
    }
}

impl fmt::Display for DeviceSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceSerial({self})")
    }
}

impl FromStr for DeviceSerial {
    type Err = Error;

    /// Parses 10 hex digits (either case).
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 5];
        if s.len() != 10 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(Error::BadSerial(s.chars().take(40).collect()));
        }
        Ok(Self(out))
    }
}

/// Checks a device id or hardware class: 1–64 characters of `A–Z a–z 0–9 . _ -`,
/// not starting with `.` or `-`. Such names are safe as file names, in
/// URIs and in CSV fields.
///
/// # Errors
/// [`Error::BadName`] naming `what`.
pub fn check_name(what: &'static str, value: &str) -> Result<()> {
    let bad = |rule| Error::BadName {
        what,
        value: value.chars().take(80).collect(),
        rule,
    };
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(bad("must be 1 to 64 characters long"));
    }
    if value.starts_with(['.', '-']) {
        return Err(bad("must not start with '.' or '-'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("may hold only A-Z, a-z, 0-9, '.', '_' and '-'"));
    }
    Ok(())
}

/// The device id given to hardware when none is asked for: `dev-<serial>`.
#[must_use]
pub fn default_device_id(serial: DeviceSerial) -> String {
    format!("dev-{serial}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_mapping_is_pinned_by_test_vectors() {
        // Changing SERIAL_CONTEXT or the normalisation renames every device:
        // these values must never change.
        // (Computed independently with Python's `blake3` package.)
        let id = HardwareId::normalise("10000000abcdef01").unwrap();
        assert_eq!(id.serial().to_string(), "e7bd9ee47f");
        // A 40-bit collision, found by search, for the registry's tests.
        let a = HardwareId::normalise("hw00053033").unwrap();
        let b = HardwareId::normalise("hw0006b231").unwrap();
        assert_eq!(a.serial().to_string(), "c566d0ae41");
        assert_eq!(a.serial(), b.serial());
    }

    #[test]
    fn cpuinfo_and_device_tree_reports_of_one_board_give_one_serial() {
        let cpuinfo = "processor\t: 0\nHardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000ABCDEF01\nModel\t\t: Raspberry Pi 4\n";
        let device_tree = "10000000abcdef01\0";
        let a = HardwareId::from_cpuinfo(cpuinfo).unwrap();
        let b = HardwareId::normalise(device_tree).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.serial(), b.serial());
    }

    #[test]
    fn normalisation_trims_lowercases_and_drops_a_hex_prefix() {
        for raw in ["  ABCDEF0123 \n", "0xabcdef0123", "0XABCDEF0123\0\0"] {
            assert_eq!(HardwareId::normalise(raw).unwrap().as_str(), "abcdef0123");
        }
        // A 0x prefix on a non-hex id is kept.
        assert_eq!(HardwareId::normalise("0xyz").unwrap().as_str(), "0xyz");
    }

    #[test]
    fn unusable_hardware_ids_are_refused_with_a_reason() {
        for raw in ["", " \0", "a b", "a,b", "x\"y", "é", &"a".repeat(129)] {
            assert!(
                matches!(HardwareId::normalise(raw), Err(Error::BadHardwareId { .. })),
                "{raw:?}"
            );
        }
        assert!(HardwareId::from_cpuinfo("processor : 0\n").is_err());
    }

    #[test]
    fn serials_parse_only_as_ten_hex_digits() {
        let s: DeviceSerial = "1A2B3C4D5E".parse().unwrap();
        assert_eq!(s.to_string(), "1a2b3c4d5e");
        for bad in ["1a2b3c4d5", "1a2b3c4d5e6", "1a2b3c4d5g", ""] {
            assert!(bad.parse::<DeviceSerial>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_file_and_uri_safe() {
        check_name("device id", "pump-station_7.b").unwrap();
        for bad in ["", ".hidden", "-x", "a/b", "a b", "a:b", &"x".repeat(65)] {
            assert!(check_name("device id", bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn normalisation_never_panics_and_is_idempotent(raw in ".{0,200}") {
            if let Ok(id) = HardwareId::normalise(&raw) {
                let again = HardwareId::normalise(id.as_str()).unwrap();
                proptest::prop_assert_eq!(&again, &id);
                proptest::prop_assert_eq!(again.serial(), id.serial());
            }
        }
    }
}
