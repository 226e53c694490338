//! Bootloader environment formats, sans-IO: U-Boot environments (single and
//! redundant, as libubootenv and U-Boot read them), GRUB environment blocks,
//! `fw_env.config`, and the RAUC variable conventions on top of them.
//!
//! RAUC conventions (documented in `docs/boot.md`):
//! - U-Boot: `BOOT_ORDER` (space-separated bootnames, first is tried first),
//!   `BOOT_A_LEFT`, `BOOT_B_LEFT` (boots left, decimal);
//! - GRUB: `ORDER`, `A_OK`, `A_TRY`, `B_OK`, `B_TRY` (`0`/`1`).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::state::{GrubState, SlotId, UbootState};

/// Variables of an environment, sorted by name (libubootenv writes them sorted).
pub type Vars = BTreeMap<String, String>;

/// Largest environment this crate reads or writes, checked before allocating.
pub const MAX_ENV_SIZE: u64 = 1 << 20;

const UB: &str = "U-Boot";
const GRUB: &str = "GRUB";

fn malformed(what: &'static str, reason: impl Into<String>) -> Error {
    Error::EnvMalformed {
        what,
        reason: reason.into(),
    }
}

/// Parses the data area of a U-Boot environment: `name=value\0...\0\0`.
///
/// # Errors
/// [`Error::EnvMalformed`] for a variable without `=`, an empty name, or
/// bytes that are not UTF-8. Never panics.
pub fn parse_uboot_data(data: &[u8]) -> Result<Vars> {
    let mut vars = Vars::new();
    // Bounded by the data length: each entry consumes at least one byte.
    for entry in data.split(|&b| b == 0) {
        if entry.is_empty() {
            break;
        }
        let text = core::str::from_utf8(entry)
            .map_err(|_| malformed(UB, format!("variable at byte {} is not UTF-8", entry.len())))?;
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| malformed(UB, format!("entry {text:?} has no '='")))?;
        if name.is_empty() {
            return Err(malformed(UB, "variable with an empty name"));
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

/// Serialises variables into a data area of exactly `size` bytes, padded with
/// zero bytes (as libubootenv does).
///
/// # Errors
/// [`Error::EnvTooLarge`] when they do not fit (a final empty entry is needed);
/// [`Error::EnvMalformed`] for names with `=` or NUL, values with NUL.
pub fn encode_uboot_data(vars: &Vars, size: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size);
    for (k, v) in vars {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(malformed(UB, format!("variable {k:?} cannot be stored")));
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    if out.len() > size {
        return Err(Error::EnvTooLarge {
            needed: out.len(),
            size,
        });
    }
    out.resize(size, 0);
    Ok(out)
}

/// One decoded copy of a U-Boot environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootCopy {
    /// The flags byte (redundant environments only): a counter, the copy with
    /// the newer one is current.
    pub flags: Option<u8>,
    /// The variables.
    pub vars: Vars,
}

/// Decodes one copy: CRC32 (LE) of the data area, then a flags byte if
/// `redundant`, then the data area.
///
/// # Errors
/// [`Error::EnvMalformed`] for a short copy or a CRC mismatch, or bad data.
pub fn decode_uboot_copy(bytes: &[u8], redundant: bool) -> Result<UbootCopy> {
    let hdr = if redundant { 5 } else { 4 };
    let crc = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| malformed(UB, "shorter than its header"))?;
    let data = bytes
        .get(hdr..)
        .ok_or_else(|| malformed(UB, "shorter than its header"))?;
    let actual = crc32fast::hash(data);
    if actual != crc {
        return Err(malformed(
            UB,
            format!("CRC32 mismatch: stored {crc:#010x}, computed {actual:#010x}"),
        ));
    }
    let flags = if redundant {
        bytes.get(4).copied()
    } else {
        None
    };
    Ok(UbootCopy {
        flags,
        vars: parse_uboot_data(data)?,
    })
}

/// Encodes one copy of `env_size` bytes.
///
/// # Errors
/// As [`encode_uboot_data`]; [`Error::EnvTooLarge`] for an `env_size` too small for the header.
pub fn encode_uboot_copy(vars: &Vars, env_size: usize, flags: Option<u8>) -> Result<Vec<u8>> {
    let hdr = if flags.is_some() { 5 } else { 4 };
    let data_len = env_size.checked_sub(hdr).ok_or(Error::EnvTooLarge {
        needed: hdr + 1,
        size: env_size,
    })?;
    let data = encode_uboot_data(vars, data_len)?;
    let mut out = Vec::with_capacity(env_size);
    out.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
    if let Some(f) = flags {
        out.push(f);
    }
    out.extend_from_slice(&data);
    Ok(out)
}

/// Which of two valid redundant copies is current, by U-Boot's rule on the
/// flags counter: the larger wins, except that 0 follows 255.
#[must_use]
pub const fn uboot_current_copy(flags0: u8, flags1: u8) -> usize {
    if flags0 == 255 && flags1 == 0 {
        1
    } else if flags1 == 255 && flags0 == 0 {
        0
    } else if flags1 > flags0 {
        1
    } else {
        0
    }
}

/// One line of `fw_env.config`: where a copy of the environment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvLocation {
    /// Device or file path.
    pub device: String,
    /// Byte offset of the copy in it.
    pub offset: u64,
    /// Environment size in bytes (same for both copies).
    pub env_size: u64,
    /// Erase-sector size (0 when not given).
    pub sector_size: u64,
}

/// A parsed `fw_env.config`: one location, or two for a redundant environment.
///
/// Invariant: 1 or 2 locations, all with the same `env_size`, each at most
/// [`MAX_ENV_SIZE`] and larger than the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// The copies.
    pub locations: Vec<FwEnvLocation>,
}

impl FwEnvConfig {
    /// The environment is redundant (two copies with flags).
    #[must_use]
    pub fn redundant(&self) -> bool {
        self.locations.len() == 2
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses `fw_env.config` text: `device offset env_size [sector_size [sectors]]`
/// per line, numbers in decimal or `0x` hex, `#` comments.
///
/// # Errors
/// [`Error::FwEnvConfig`] naming the line.
pub fn parse_fw_env_config(text: &str) -> Result<FwEnvConfig> {
    let mut locations = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| Error::FwEnvConfig {
            line: i + 1,
            reason,
        };
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 3 {
            return Err(bad(
                "expected `device offset size [sector_size [sectors]]`".to_string()
            ));
        }
        let num = |idx: usize, name: &str| {
            f.get(idx).and_then(|s| parse_num(s)).ok_or_else(|| {
                bad(format!(
                    "{name} {:?} is not a number",
                    f.get(idx).unwrap_or(&"")
                ))
            })
        };
        let offset = num(1, "offset")?;
        let env_size = num(2, "size")?;
        let sector_size = if f.len() > 3 {
            num(3, "sector size")?
        } else {
            0
        };
        if env_size <= 5 || env_size > MAX_ENV_SIZE {
            return Err(bad(format!("size {env_size} must be 6..={MAX_ENV_SIZE}")));
        }
        if locations.len() == 2 {
            return Err(bad("more than two environment copies".to_string()));
        }
        locations.push(FwEnvLocation {
            device: f[0].to_string(),
            offset,
            env_size,
            sector_size,
        });
    }
    match locations.as_slice() {
        [] => Err(Error::FwEnvConfig {
            line: 0,
            reason: "no environment location".to_string(),
        }),
        [a, b] if a.env_size != b.env_size => Err(Error::FwEnvConfig {
            line: 0,
            reason: "the two copies differ in size".to_string(),
        }),
        _ => Ok(FwEnvConfig { locations }),
    }
}

fn parse_order(name: &str, value: &str) -> Result<Vec<SlotId>> {
    let mut order = Vec::new();
    for word in value.split_ascii_whitespace().take(8) {
        let slot = SlotId::parse(word).ok_or_else(|| Error::BadVariable {
            name: name.to_string(),
            value: value.to_string(),
        })?;
        if !order.contains(&slot) {
            order.push(slot);
        }
    }
    Ok(order)
}

fn order_string(order: &[SlotId]) -> String {
    order.iter().map(|s| s.name()).collect::<Vec<_>>().join(" ")
}

/// U-Boot variable names of RAUC's script.
pub mod uboot_vars {
    /// Boot order.
    pub const ORDER: &str = "BOOT_ORDER";
    /// Boots left for slot A.
    pub const A_LEFT: &str = "BOOT_A_LEFT";
    /// Boots left for slot B.
    pub const B_LEFT: &str = "BOOT_B_LEFT";
}

/// GRUB variable names of RAUC's script.
pub mod grub_vars {
    /// Boot order.
    pub const ORDER: &str = "ORDER";
    /// Slot A is OK.
    pub const A_OK: &str = "A_OK";
    /// Slot A was tried.
    pub const A_TRY: &str = "A_TRY";
    /// Slot B is OK.
    pub const B_OK: &str = "B_OK";
    /// Slot B was tried.
    pub const B_TRY: &str = "B_TRY";
}

const fn left_var(slot: SlotId) -> &'static str {
    match slot {
        SlotId::A => uboot_vars::A_LEFT,
        SlotId::B => uboot_vars::B_LEFT,
    }
}

/// Reads RAUC's U-Boot variables; unset ones take the script's defaults
/// (`"A B"`, `default_attempts`), as `test -n || setenv` does in the script.
///
/// # Errors
/// [`Error::BadVariable`] for an unknown bootname or a non-numeric count.
pub fn uboot_state_from_vars(vars: &Vars, default_attempts: u8) -> Result<UbootState> {
    let mut st = UbootState::script_defaults(default_attempts);
    if let Some(v) = vars.get(uboot_vars::ORDER).filter(|v| !v.is_empty()) {
        st.order = parse_order(uboot_vars::ORDER, v)?;
    }
    for slot in SlotId::ALL {
        let name = left_var(slot);
        if let Some(v) = vars.get(name).filter(|v| !v.is_empty()) {
            // U-Boot's `test` parses decimal here; values above 255 saturate.
            let n: u64 = v.trim().parse().map_err(|_| Error::BadVariable {
                name: name.to_string(),
                value: v.clone(),
            })?;
            st.left[slot.index()] = u8::try_from(n).unwrap_or(u8::MAX);
        }
    }
    Ok(st)
}

/// Writes RAUC's U-Boot variables into `vars`, keeping all others.
pub fn uboot_state_into_vars(st: &UbootState, vars: &mut Vars) {
    vars.insert(uboot_vars::ORDER.to_string(), order_string(&st.order));
    for slot in SlotId::ALL {
        vars.insert(
            left_var(slot).to_string(),
            st.left[slot.index()].to_string(),
        );
    }
}

const fn grub_names(slot: SlotId) -> (&'static str, &'static str) {
    match slot {
        SlotId::A => (grub_vars::A_OK, grub_vars::A_TRY),
        SlotId::B => (grub_vars::B_OK, grub_vars::B_TRY),
    }
}

fn parse_flag(vars: &Vars, name: &str) -> Result<bool> {
    match vars.get(name).map(|s| s.trim()) {
        None | Some("" | "0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(Error::BadVariable {
            name: name.to_string(),
            value: other.to_string(),
        }),
    }
}

/// Reads RAUC's GRUB variables; unset ones take `grub.cfg`'s defaults
/// (`ORDER="A B"`, flags 0).
///
/// # Errors
/// [`Error::BadVariable`] for an unknown bootname or a flag not `0`/`1`.
pub fn grub_state_from_vars(vars: &Vars) -> Result<GrubState> {
    let mut st = GrubState::script_defaults();
    if let Some(v) = vars.get(grub_vars::ORDER).filter(|v| !v.is_empty()) {
        st.order = parse_order(grub_vars::ORDER, v)?;
    }
    for slot in SlotId::ALL {
        let (ok, tr) = grub_names(slot);
        st.ok[slot.index()] = parse_flag(vars, ok)?;
        st.tried[slot.index()] = parse_flag(vars, tr)?;
    }
    Ok(st)
}

/// Writes RAUC's GRUB variables into `vars`, keeping all others.
pub fn grub_state_into_vars(st: &GrubState, vars: &mut Vars) {
    vars.insert(grub_vars::ORDER.to_string(), order_string(&st.order));
    for slot in SlotId::ALL {
        let (ok, tr) = grub_names(slot);
        vars.insert(ok.to_string(), u8::from(st.ok[slot.index()]).to_string());
        vars.insert(tr.to_string(), u8::from(st.tried[slot.index()]).to_string());
    }
}

/// Size of a GRUB environment block.
pub const GRUBENV_SIZE: usize = 1024;
/// First line of a GRUB environment block.
pub const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

/// Parses a GRUB environment block: the header line, `name=value` lines
/// (`\\` escapes the next character, so `\` + newline continues a value),
/// `#` comment lines and `#` padding.
///
/// # Errors
/// [`Error::EnvMalformed`] for a missing header or non-UTF-8 bytes. Never panics.
pub fn parse_grubenv(bytes: &[u8]) -> Result<Vars> {
    let body = bytes
        .strip_prefix(GRUBENV_HEADER.as_bytes())
        .ok_or_else(|| malformed(GRUB, "missing the \"# GRUB Environment Block\" header"))?;
    let text = core::str::from_utf8(body).map_err(|_| malformed(GRUB, "not UTF-8"))?;
    let mut vars = Vars::new();
    let mut chars = text.chars();
    let mut line = String::new();
    let mut lines = Vec::new();
    // Unescape into logical lines; bounded by the input length.
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => {
                    line.push('\\');
                    line.push(n);
                }
                None => line.push('\\'),
            },
            '\n' => lines.push(core::mem::take(&mut line)),
            c => line.push(c),
        }
    }
    lines.push(line);
    for l in lines {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let Some((name, raw)) = l.split_once('=') else {
            continue;
        };
        let mut value = String::with_capacity(raw.len());
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                if let Some(n) = it.next() {
                    value.push(n);
                }
            } else {
                value.push(c);
            }
        }
        vars.insert(name.to_string(), value);
    }
    Ok(vars)
}

/// Serialises a GRUB environment block of exactly [`GRUBENV_SIZE`] bytes,
/// escaping `\` and newlines as grub-editenv does, padded with `#`.
///
/// # Errors
/// [`Error::EnvTooLarge`]; [`Error::EnvMalformed`] for names with `=` or newlines.
pub fn encode_grubenv(vars: &Vars) -> Result<Vec<u8>> {
    let mut out = String::from(GRUBENV_HEADER);
    for (k, v) in vars {
        if k.is_empty() || k.contains(['=', '\n', '\\']) || k.starts_with('#') {
            return Err(malformed(
                GRUB,
                format!("variable name {k:?} cannot be stored"),
            ));
        }
        out.push_str(k);
        out.push('=');
        for c in v.chars() {
            if c == '\\' || c == '\n' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('\n');
    }
    if out.len() > GRUBENV_SIZE {
        return Err(Error::EnvTooLarge {
            needed: out.len(),
            size: GRUBENV_SIZE,
        });
    }
    let mut bytes = out.into_bytes();
    bytes.resize(GRUBENV_SIZE, b'#');
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn uboot_copy_round_trips_single_and_redundant() {
        let v = vars(&[("BOOT_ORDER", "A B"), ("bootcmd", "run x")]);
        for flags in [None, Some(7)] {
            let b = encode_uboot_copy(&v, 256, flags).unwrap();
            assert_eq!(b.len(), 256);
            assert_eq!(
                decode_uboot_copy(&b, flags.is_some()).unwrap(),
                UbootCopy {
                    flags,
                    vars: v.clone()
                }
            );
        }
    }

    #[test]
    fn uboot_copy_with_bad_crc_is_rejected() {
        let mut b = encode_uboot_copy(&vars(&[("a", "1")]), 64, Some(1)).unwrap();
        b[10] ^= 1;
        assert!(matches!(
            decode_uboot_copy(&b, true),
            Err(Error::EnvMalformed { .. })
        ));
    }

    #[test]
    fn redundant_copy_with_newer_flags_wins_and_zero_follows_255() {
        assert_eq!(uboot_current_copy(1, 2), 1);
        assert_eq!(uboot_current_copy(2, 1), 0);
        assert_eq!(uboot_current_copy(255, 0), 1);
        assert_eq!(uboot_current_copy(0, 255), 0);
    }

    #[test]
    fn fw_env_config_accepts_hex_decimal_and_comments() {
        let c = parse_fw_env_config(
            "# comment\n/dev/mtd1 0x0 0x4000 0x10000\n/tmp/env2 16384 0x4000 # x\n",
        )
        .unwrap();
        assert!(c.redundant());
        assert_eq!(c.locations[1].offset, 16384);
        assert_eq!(c.locations[0].sector_size, 0x10000);
        assert!(parse_fw_env_config("").is_err());
        assert!(parse_fw_env_config("/dev/x zz 0x4000").is_err());
        assert!(parse_fw_env_config("/a 0 0x100\n/b 0 0x200").is_err());
    }

    #[test]
    fn rauc_uboot_variables_missing_take_script_defaults() {
        let st = uboot_state_from_vars(&Vars::new(), 3).unwrap();
        assert_eq!(st.order, vec![SlotId::A, SlotId::B]);
        assert_eq!(st.left, [3, 3]);
        let st = uboot_state_from_vars(&vars(&[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "1")]), 3)
            .unwrap();
        assert_eq!(st.order, vec![SlotId::B, SlotId::A]);
        assert_eq!(st.left, [3, 1]);
        assert!(uboot_state_from_vars(&vars(&[("BOOT_ORDER", "A C")]), 3).is_err());
        assert!(uboot_state_from_vars(&vars(&[("BOOT_A_LEFT", "x")]), 3).is_err());
    }

    #[test]
    fn grubenv_round_trips_with_escapes() {
        let v = vars(&[("ORDER", "A B"), ("X", "a\\b\nc")]);
        let b = encode_grubenv(&v).unwrap();
        assert_eq!(b.len(), GRUBENV_SIZE);
        assert_eq!(parse_grubenv(&b).unwrap(), v);
    }

    #[test]
    fn grubenv_without_header_is_rejected() {
        assert!(parse_grubenv(b"ORDER=A B\n").is_err());
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_as_an_environment_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = decode_uboot_copy(&bytes, true);
            let _ = decode_uboot_copy(&bytes, false);
            let _ = parse_uboot_data(&bytes);
            let _ = parse_grubenv(&bytes);
            let mut g = GRUBENV_HEADER.as_bytes().to_vec();
            g.extend_from_slice(&bytes);
            if let Ok(v) = parse_grubenv(&g) {
                let _ = grub_state_from_vars(&v);
            }
            if let Ok(v) = parse_uboot_data(&bytes) {
                let _ = uboot_state_from_vars(&v, 3);
            }
            if let Ok(s) = core::str::from_utf8(&bytes) {
                let _ = parse_fw_env_config(s);
            }
        }

        #[test]
        fn grubenv_round_trips(v in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}", "[ -~\n]{0,20}", 0..8)) {
            let b = encode_grubenv(&v).unwrap();
            prop_assert_eq!(parse_grubenv(&b).unwrap(), v);
        }
    }
}
