//! The node config file (TOML): what a node is (hardware class, channel),
//! what it trusts, where its state and chunks live, and its A/B device
//! (`[device]`, the boot crate's [`DeviceConfig`]). The format, with a full
//! example, is in `docs/node-config.md`.
//!
//! Unknown fields are refused everywhere, so a typo is an error, not a
//! silently ignored setting. Relative paths are resolved against the
//! directory of the config file, never against the working directory.

use std::path::{Path, PathBuf};

use meshota_boot::config::{BootConfig, DeviceConfig, SlotConfig};
use meshota_boot::install::HEALTH_TIMEOUT_MAX;
use meshota_manifest::Expiration;
use serde::{Deserialize, Serialize};

use crate::failure::{CmdResult, Failure};
use crate::timefmt::now;

/// Largest node config file read, in bytes.
pub(crate) const MAX_CONFIG_BYTES: usize = 1 << 20;

fn default_component() -> String {
    "rootfs".to_string()
}

/// A node's configuration file.
///
/// Invariant after [`NodeConfig::load`]: every path is absolute or relative
/// to the working directory as the config file's directory dictates (relative
/// paths in the file were joined to that directory), `hardware`, `channel`
/// and `component` are not empty, and the health check (if any) has a
/// program and a timeout within 1 ms..=1 h.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// Hardware class of this device (`rpi4`): releases for another class
    /// are refused.
    pub(crate) hardware: String,
    /// Release channel the node follows (`stable`).
    pub(crate) channel: String,
    /// The trust root file (`trust.mota`) releases are verified against.
    pub(crate) trust_root: PathBuf,
    /// Directory for the node's own state (copies of the manifests of the
    /// slots' releases); created when missing.
    pub(crate) data_dir: PathBuf,
    /// The chunk store images are assembled from (`install` without
    /// `--store`/`--image` uses it). Optional.
    #[serde(default)]
    pub(crate) store_dir: Option<PathBuf>,
    /// The manifest component written to the A/B slots (default `rootfs`).
    #[serde(default = "default_component")]
    pub(crate) component: String,
    /// Do not enforce trust-root and key expiry (for devices with no
    /// trustworthy clock; default false).
    #[serde(default)]
    pub(crate) ignore_expiry: bool,
    /// The A/B device: slots, install record, bootloader, health check
    /// (`[device.health]`: `command`, `timeout_ms`) and trial boots.
    pub(crate) device: DeviceConfig,
    /// The mesh daemon's settings (`meshota node run`); see docs/daemon.md.
    #[serde(default)]
    pub(crate) mesh: Option<MeshConfig>,
    /// Gateway duties (`meshota gateway run`): the HTTP origin to poll;
    /// see docs/gateway.md. Ignored by `meshota node run`.
    #[serde(default)]
    pub(crate) gateway: Option<meshota_gateway::GatewayConfig>,
    /// Sneakernet bundles (`meshota bundle import|want`): size limit and
    /// the key encrypted bundles are opened with.
    #[serde(default)]
    pub(crate) bundle: BundleConfig,
    /// USB station mode (`[station]`): the daemon watches a directory (a
    /// removable medium's mount point) for bundles and want lists.
    #[serde(default)]
    pub(crate) station: Option<StationConfig>,
    /// Provisioning (`meshota provision apply|fetch`).
    #[serde(default)]
    pub(crate) provision: Option<ProvisionConfig>,
    /// A LoRa radio the daemon drives beside (or instead of) its QUIC
    /// peers: `[radio]`, see docs/node-config.md.
    #[serde(default)]
    pub(crate) radio: Option<RadioConfig>,
}

/// Which radio the `[radio]` table drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RadioBackend {
    /// The simulated medium of `meshota testnet medium`, over a Unix socket.
    Medium,
    /// An SX126x on spidev and GPIO (needs the `sx126x` build feature).
    Sx126x,
}

/// The `[radio]` table: one LoRa radio driven by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RadioConfig {
    /// `medium` or `sx126x`.
    pub(crate) backend: RadioBackend,
    /// The mesh key file: 64 hex digits (32 bytes), shared by every node of
    /// the radio mesh; frames under another key are dropped unparsed.
    pub(crate) mesh_key_file: PathBuf,
    /// `EU868` (default) or `US915`.
    #[serde(default = "default_region")]
    pub(crate) region: String,
    /// Centre frequency (Hz); its sub-band sets the duty cycle. Default
    /// 869.525 MHz (EU868 g3, 10 %).
    #[serde(default = "default_frequency_hz")]
    pub(crate) frequency_hz: u32,
    /// The region's data rate index (default 5: SF7/125 kHz in EU868).
    #[serde(default = "default_data_rate")]
    pub(crate) data_rate: u8,
    /// Short id on the air (default: derived from the device key).
    #[serde(default)]
    pub(crate) short_id: Option<u16>,
    /// Seed of the link's random choices (default: from the node id).
    #[serde(default)]
    pub(crate) seed: Option<u64>,
    /// `true` (default): the node serves its radio neighbours (a relay).
    /// `false`: a leaf, which receives, verifies and installs but never
    /// sends bundles or symbols (battery nodes; nodes off a planned
    /// backbone). Relays must connect every leaf to where releases enter.
    #[serde(default = "default_relay")]
    pub(crate) relay: bool,
    /// Largest release image (bytes) the link holds in memory and sends
    /// whole, chunks and all (default 1 MiB). A larger release crosses the
    /// radio by patch only, to nodes on the base of its first listed
    /// patch, and its chunks stay in the store.
    #[serde(default = "default_whole_release_bytes_max")]
    pub(crate) whole_release_bytes_max: u64,
    /// `backend = "medium"`: the medium server's socket and this node's
    /// place on it.
    #[serde(default)]
    pub(crate) medium: Option<MediumLinkConfig>,
    /// `backend = "sx126x"`: where the radio is wired.
    #[serde(default)]
    pub(crate) sx126x: Option<Sx126xConfig>,
}

/// The `[radio.medium]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MediumLinkConfig {
    /// The medium server's Unix socket.
    pub(crate) socket: PathBuf,
    /// This node's index on the medium (its position there).
    pub(crate) node: u16,
}

/// The `[radio.sx126x]` table (docs/radio-sx1262.md has the wiring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sx126xConfig {
    /// The spidev device (`/dev/spidev0.0`).
    pub(crate) spidev: PathBuf,
    /// The GPIO chip (`/dev/gpiochip0`).
    pub(crate) gpio_chip: PathBuf,
    /// NRESET line.
    pub(crate) reset_line: u32,
    /// BUSY line.
    pub(crate) busy_line: u32,
    /// DIO1 line.
    pub(crate) dio1_line: u32,
    /// NSS on a GPIO line (none: the spidev chip select).
    #[serde(default)]
    pub(crate) nss_line: Option<u32>,
    /// SPI clock (Hz, default 2 MHz).
    #[serde(default = "default_spi_hz")]
    pub(crate) spi_speed_hz: u32,
    /// TCXO on DIO3 at 1.8 V.
    #[serde(default)]
    pub(crate) tcxo_1v8: bool,
    /// DC-DC regulator (default true).
    #[serde(default = "default_true")]
    pub(crate) use_dcdc: bool,
    /// Transmit power (dBm, default 14).
    #[serde(default = "default_tx_power")]
    pub(crate) tx_power_dbm: i32,
}

fn default_region() -> String {
    "EU868".to_string()
}

const fn default_frequency_hz() -> u32 {
    869_525_000
}

const fn default_data_rate() -> u8 {
    5
}

const fn default_relay() -> bool {
    true
}

const fn default_whole_release_bytes_max() -> u64 {
    1 << 20
}

const fn default_spi_hz() -> u32 {
    2_000_000
}

const fn default_true() -> bool {
    true
}

const fn default_tx_power() -> i32 {
    14
}

/// The `[mesh.certificate]` table: admit peers whose device certificate
/// chains to `root`, is valid now and not on `crl`, for the key they prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertAdmissionConfig {
    /// The fleet's root CA certificate (PEM).
    pub(crate) root: PathBuf,
    /// This node's chain (device certificate, then its intermediate; PEM),
    /// presented to peers.
    pub(crate) chain: PathBuf,
    /// The intermediate's revocation list (PEM); a list past its
    /// nextUpdate refuses every peer until it is replaced.
    #[serde(default)]
    pub(crate) crl: Option<PathBuf>,
}

/// The `[provision]` table: where the device's provisioning keys are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvisionConfig {
    /// The directory `meshota provision keygen` wrote: `identity.pub`
    /// (the node id), `identity.key`, `kem.key` (opens sealed files).
    pub(crate) keys: PathBuf,
}

/// The `[station]` table (docs/daemon.md, "USB station").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StationConfig {
    /// The directory to watch (the stick's mount point).
    pub(crate) dir: PathBuf,
    /// How often to look, in milliseconds (default 1000). A file is taken
    /// only once its size and time stayed the same for one interval, so a
    /// copy still in progress is not read.
    #[serde(default = "default_station_poll_ms")]
    pub(crate) poll_ms: u64,
}

const fn default_station_poll_ms() -> u64 {
    1000
}

/// The `[bundle]` table. Every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleConfig {
    /// Largest bundle file import reads (default 8 GiB); a larger one is
    /// refused before it is read.
    #[serde(default = "default_bundle_max_bytes")]
    pub(crate) max_bytes: u64,
    /// This node's ML-KEM-768 private key (PEM, from `meshota keys
    /// generate --kem` or `meshota provision keygen`), to open bundles
    /// encrypted to it.
    #[serde(default)]
    pub(crate) kem_key: Option<PathBuf>,
}

impl Default for BundleConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_bundle_max_bytes(),
            kem_key: None,
        }
    }
}

const fn default_bundle_max_bytes() -> u64 {
    8 << 30
}

/// What the daemon does after an install has switched the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RebootMode {
    /// The daemon performs the simulated bootloader's reboot and the health
    /// check itself (testnets, the demo).
    Simulated,
    /// A real reboot follows, then `meshota boot confirm`; the daemon only
    /// reports that a reboot is due.
    External,
}

/// The `[mesh]` table: identity, addresses, admission and rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeshConfig {
    /// The ML-DSA-65 device key (secret key file, 0600); its id is the node id.
    pub(crate) device_key: PathBuf,
    /// UDP address the QUIC endpoint binds.
    pub(crate) listen: std::net::SocketAddr,
    /// Static peers, dialled and re-dialled.
    #[serde(default)]
    pub(crate) peers: Vec<std::net::SocketAddr>,
    /// Admit any device key (testnets only).
    #[serde(default)]
    pub(crate) open: bool,
    /// The fleet allow-list: device key ids in hex.
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// Admission by device certificate (provisioned fleets), instead of
    /// `open` or `allow`.
    #[serde(default)]
    pub(crate) certificate: Option<CertAdmissionConfig>,
    /// The control socket (default `<data_dir>/node.sock`).
    #[serde(default)]
    pub(crate) control_socket: Option<PathBuf>,
    /// Upload cap in bytes per second.
    #[serde(default)]
    pub(crate) upload_bytes_per_sec: Option<u64>,
    /// Download cap in bytes per second.
    #[serde(default)]
    pub(crate) download_bytes_per_sec: Option<u64>,
    /// Seed of the protocol core's random choices (default: from the node id).
    #[serde(default)]
    pub(crate) seed: Option<u64>,
    /// What follows an install (default: simulated for the simulated
    /// bootloader, external otherwise).
    #[serde(default)]
    pub(crate) reboot: Option<RebootMode>,
    /// TCP address of the Prometheus metrics endpoint (`GET /metrics`);
    /// none when unset. Port 0 picks a free port (see the status object).
    #[serde(default)]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// LAN discovery over mDNS/DNS-SD; off when the table is absent.
    #[serde(default)]
    pub(crate) mdns: Option<MdnsConfig>,
}

/// The `[mesh.mdns]` table. Its presence turns discovery on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MdnsConfig {
    /// Fleet label in the TXT record: only nodes announcing the same label
    /// are dialled. Default `"default"`.
    #[serde(default = "default_fleet")]
    pub(crate) fleet: String,
    /// Interfaces (by name, e.g. `["eth0"]`) mDNS runs on; empty = every
    /// interface, loopback included.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    /// The mDNS UDP port: 5353 (RFC 6762) unless every node of the LAN is
    /// configured alike (tests use another to stay apart from the host's).
    #[serde(default = "default_mdns_port")]
    pub(crate) port: u16,
}

fn default_fleet() -> String {
    "default".to_string()
}

const fn default_mdns_port() -> u16 {
    5353
}

/// `path` joined to `base` when relative.
fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

fn resolve_slot(base: &Path, slot: &mut SlotConfig) {
    resolve(base, &mut slot.path);
}

impl NodeConfig {
    /// Reads, parses, validates and resolves the config file at `path`.
    ///
    /// # Errors
    /// A rejection naming the file and the field: unreadable file, TOML
    /// syntax (with line and column), unknown or missing fields, bad values.
    pub(crate) fn load(path: &Path) -> CmdResult<Self> {
        let bytes = meshota_manifest::fs::read_limited(path, MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Failure::file(
                path,
                format!(
                    "node config is not UTF-8 (byte {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base).map_err(|e| Failure::file(path, format!("bad node config: {e}")))
    }

    /// Parses `text`, validates it and resolves relative paths against `base`.
    ///
    /// # Errors
    /// The parser's message (it names the field and the position) or the
    /// field that failed validation.
    pub(crate) fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut c: Self = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        c.validate()?;
        c.resolve_paths(base);
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("hardware", &self.hardware),
            ("channel", &self.channel),
            ("component", &self.component),
        ] {
            if value.trim().is_empty() {
                return Err(format!("field `{field}` is empty"));
            }
        }
        if let Some(st) = &self.station {
            if !(10..=3_600_000).contains(&st.poll_ms) {
                return Err("station.poll_ms must be within 10..=3600000".into());
            }
            if self.mesh.is_none() {
                return Err("a [station] needs the [mesh] table: the daemon runs it".into());
            }
        }
        if let Some(m) = &self.mesh {
            let modes = usize::from(m.open)
                + usize::from(!m.allow.is_empty())
                + usize::from(m.certificate.is_some());
            if modes != 1 {
                return Err(
                    "in [mesh], give exactly one of `open = true` (testnets), `allow = [key ids]` or a `[mesh.certificate]` table (provisioned fleets)"
                        .to_string(),
                );
            }
            for id in &m.allow {
                let mut out = [0u8; 32];
                if hex::decode_to_slice(id, &mut out).is_err() {
                    return Err(format!(
                        "field `mesh.allow`: {id:?} is not a 64-hex-digit device key id"
                    ));
                }
            }
            if let Some(d) = &m.mdns {
                if d.fleet.is_empty() || d.fleet.len() > 63 || d.fleet.contains('=') {
                    return Err(format!(
                        "field `mesh.mdns.fleet`: {:?} must be 1 to 63 bytes without `=`",
                        d.fleet
                    ));
                }
                if d.port == 0 {
                    return Err("field `mesh.mdns.port` is 0; use 5353 (the default)".to_string());
                }
            }
            if m.upload_bytes_per_sec == Some(0) || m.download_bytes_per_sec == Some(0) {
                return Err(
                    "a rate cap in [mesh] is 0 bytes per second; omit it for no cap".to_string(),
                );
            }
        }
        if let Some(g) = &self.gateway {
            g.validate()?;
        }
        if let Some(r) = &self.radio {
            if self.mesh.is_none() {
                return Err("a [radio] needs the [mesh] table: the daemon drives it".into());
            }
            match r.backend {
                RadioBackend::Medium if r.medium.is_none() => {
                    return Err(
                        "radio.backend = \"medium\" needs a [radio.medium] table (socket, node)"
                            .into(),
                    );
                }
                RadioBackend::Sx126x if r.sx126x.is_none() => {
                    return Err(
                        "radio.backend = \"sx126x\" needs a [radio.sx126x] table (spidev, gpio_chip, lines)"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        if self.device.trial_boots == 0 {
            return Err("field `device.trial_boots` is 0; it must be 1 to 255".to_string());
        }
        if let Some(h) = &self.device.health {
            if h.command.first().is_none_or(|p| p.is_empty()) {
                return Err(
                    "field `device.health.command` is empty; give a program and its arguments, \
                     e.g. [\"/usr/bin/true\"]"
                        .to_string(),
                );
            }
            let max = u64::try_from(HEALTH_TIMEOUT_MAX.as_millis()).unwrap_or(u64::MAX);
            if h.timeout_ms == 0 || h.timeout_ms > max {
                return Err(format!(
                    "field `device.health.timeout_ms` is {}; it must be 1 to {max}",
                    h.timeout_ms
                ));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(m) = &mut self.mesh {
            resolve(base, &mut m.device_key);
            if let Some(c) = &mut m.certificate {
                resolve(base, &mut c.root);
                resolve(base, &mut c.chain);
                if let Some(crl) = &mut c.crl {
                    resolve(base, crl);
                }
            }
            if let Some(c) = &mut m.control_socket {
                resolve(base, c);
            }
        }
        if let Some(g) = &mut self.gateway {
            if let Some(ca) = &mut g.ca_file {
                resolve(base, ca);
            }
        }
        if let Some(p) = &mut self.provision {
            resolve(base, &mut p.keys);
        }
        if let Some(r) = &mut self.radio {
            resolve(base, &mut r.mesh_key_file);
            if let Some(m) = &mut r.medium {
                resolve(base, &mut m.socket);
            }
        }
        resolve(base, &mut self.trust_root);
        resolve(base, &mut self.data_dir);
        if let Some(k) = &mut self.bundle.kem_key {
            resolve(base, k);
        }
        if let Some(st) = &mut self.station {
            resolve(base, &mut st.dir);
        }
        if let Some(s) = &mut self.store_dir {
            resolve(base, s);
        }
        let d = &mut self.device;
        resolve_slot(base, &mut d.slot_a);
        resolve_slot(base, &mut d.slot_b);
        resolve(base, &mut d.install_record);
        match &mut d.boot {
            BootConfig::Simulated { records } => resolve(base, records),
            BootConfig::Uboot {
                fw_env_config,
                cmdline,
            } => {
                resolve(base, fw_env_config);
                if let Some(c) = cmdline {
                    resolve(base, c);
                }
            }
            BootConfig::Grub { grubenv, cmdline } => {
                resolve(base, grubenv);
                if let Some(c) = cmdline {
                    resolve(base, c);
                }
            }
        }
    }

    /// Expiry enforcement with the system clock, or none when
    /// `ignore_expiry` is set.
    pub(crate) fn expiration(&self) -> Expiration {
        if self.ignore_expiry {
            Expiration::dangerous_ignore()
        } else {
            Expiration::Enforce { now: now() }
        }
    }

    /// Where the copy of the manifest of the release in `slot` is kept.
    pub(crate) fn slot_manifest_path(&self, slot: meshota_boot::SlotId) -> PathBuf {
        self.data_dir.join(format!("slot-{}.mota", slot.name()))
    }

    /// The bootloader kind, as written in the file.
    pub(crate) fn boot_kind(&self) -> &'static str {
        match self.device.boot {
            BootConfig::Simulated { .. } => "simulated",
            BootConfig::Uboot { .. } => "uboot",
            BootConfig::Grub { .. } => "grub",
        }
    }
}

impl NodeConfig {
    /// The control socket path of the daemon.
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.mesh
            .as_ref()
            .and_then(|m| m.control_socket.clone())
            .unwrap_or_else(|| self.data_dir.join("node.sock"))
    }

    /// The store directory (default `<data_dir>/store`).
    pub(crate) fn store_dir_or_default(&self) -> PathBuf {
        self.store_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FULL: &str = r#"
hardware = "rpi4"
channel = "stable"
trust_root = "trust.mota"
data_dir = "state"
store_dir = "/var/lib/meshota/store"

[device]
install_record = "state/install.rec"
trial_boots = 2
[device.slot_a]
path = "disk.img"
size = 65536
[device.slot_b]
path = "disk.img"
offset = 65536
[device.boot]
kind = "simulated"
records = "state/boot.rec"
[device.health]
command = ["true"]
timeout_ms = 5000
"#;

    #[test]
    fn relative_paths_resolve_against_the_config_directory_and_absolute_ones_stay() {
        let c = NodeConfig::parse(FULL, Path::new("/etc/meshota")).unwrap();
        assert_eq!(c.trust_root, Path::new("/etc/meshota/trust.mota"));
        assert_eq!(c.data_dir, Path::new("/etc/meshota/state"));
        assert_eq!(
            c.store_dir.as_deref(),
            Some(Path::new("/var/lib/meshota/store"))
        );
        assert_eq!(c.device.slot_b.path, Path::new("/etc/meshota/disk.img"));
        assert_eq!(c.device.slot_b.offset, 65536);
        assert_eq!(
            c.device.install_record,
            Path::new("/etc/meshota/state/install.rec")
        );
        assert_eq!(
            c.device.boot,
            BootConfig::Simulated {
                records: PathBuf::from("/etc/meshota/state/boot.rec")
            }
        );
        assert_eq!(c.component, "rootfs");
        assert_eq!(c.device.trial_boots, 2);
        assert!(!c.ignore_expiry);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_position() {
        let text = FULL.replace("channel =", "chanel =");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("chanel") && e.contains("line"), "{e}");
    }

    #[test]
    fn an_unknown_field_inside_the_device_table_is_refused() {
        let text = FULL.replace("trial_boots = 2", "trial_boot = 2");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("trial_boot"), "{e}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let text = FULL.replace("hardware = \"rpi4\"\n", "");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("hardware"), "{e}");
    }

    #[test]
    fn an_empty_health_command_and_a_zero_timeout_are_refused_by_field() {
        let text = FULL.replace("command = [\"true\"]", "command = []");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("device.health.command"), "{e}");
        let text = FULL.replace("timeout_ms = 5000", "timeout_ms = 0");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("device.health.timeout_ms"), "{e}");
    }

    #[test]
    fn an_unknown_bootloader_kind_is_refused() {
        let text = FULL.replace("kind = \"simulated\"", "kind = \"lilo\"");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("lilo"), "{e}");
    }

    const MESH: &str = "\n[mesh]\ndevice_key = \"k\"\nlisten = \"127.0.0.1:0\"\nopen = true\n";

    #[test]
    fn an_mdns_table_turns_discovery_on_with_documented_defaults() {
        let text = format!("{FULL}{MESH}[mesh.mdns]\n");
        let c = NodeConfig::parse(&text, Path::new("/")).unwrap();
        let m = c.mesh.unwrap().mdns.unwrap();
        assert_eq!((m.fleet.as_str(), m.port), ("default", 5353));
        assert!(m.interfaces.is_empty());
        let c = NodeConfig::parse(&format!("{FULL}{MESH}"), Path::new("/")).unwrap();
        assert_eq!(c.mesh.unwrap().mdns, None);
    }

    #[test]
    fn a_gateway_table_is_read_with_defaults_and_a_relative_ca_file_resolves() {
        let text = format!(
            "{FULL}{MESH}[gateway]\norigin = \"https://o.example/fleet/\"\nca_file = \"ca.pem\"\n"
        );
        let c = NodeConfig::parse(&text, Path::new("/etc/meshota")).unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.poll_interval_secs, 300);
        assert_eq!(g.ca_file.as_deref(), Some(Path::new("/etc/meshota/ca.pem")));
    }

    #[test]
    fn a_gateway_origin_that_is_not_http_or_a_zero_interval_is_refused_by_field() {
        let text = format!("{FULL}{MESH}[gateway]\norigin = \"ftp://o\"\n");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("gateway.origin"), "{e}");
        let text =
            format!("{FULL}{MESH}[gateway]\norigin = \"http://o/\"\npoll_interval_secs = 0\n");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("gateway.poll_interval_secs"), "{e}");
    }

    #[test]
    fn certificate_admission_replaces_open_and_allow_and_resolves_its_paths() {
        let certs = "[mesh.certificate]\nroot = \"ca/root.crt\"\nchain = \"device.crt\"\n";
        // With `open = true` as well: two rules, refused.
        let err =
            NodeConfig::parse(&format!("{FULL}{MESH}{certs}"), Path::new("/etc/m")).unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let alone = format!("{FULL}{}{certs}", MESH.replace("open = true\n", ""));
        let c = NodeConfig::parse(&alone, Path::new("/etc/m")).unwrap();
        let cc = c.mesh.unwrap().certificate.unwrap();
        assert_eq!(cc.root, Path::new("/etc/m/ca/root.crt"));
        assert_eq!(cc.chain, Path::new("/etc/m/device.crt"));
        assert_eq!(cc.crl, None);
    }

    #[test]
    fn an_mdns_fleet_label_that_cannot_be_a_txt_value_is_refused() {
        for bad in ["", "a=b", &"x".repeat(64)] {
            let text = format!("{FULL}{MESH}[mesh.mdns]\nfleet = \"{bad}\"\n");
            let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
            assert!(e.contains("mesh.mdns.fleet"), "{bad:?}: {e}");
        }
        let text = format!("{FULL}{MESH}[mesh.mdns]\nport = 0\n");
        let e = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(e.contains("mesh.mdns.port"), "{e}");
    }

    const RADIO: &str = "\n[radio]\nbackend = \"medium\"\nmesh_key_file = \"radio.key\"\n\n[radio.medium]\nsocket = \"../medium.sock\"\nnode = 3\n";

    #[test]
    fn a_radio_table_parses_with_defaults_and_resolves_its_paths() {
        let c = NodeConfig::parse(&format!("{FULL}{MESH}{RADIO}"), Path::new("/n")).unwrap();
        let r = c.radio.unwrap();
        assert_eq!(r.backend, RadioBackend::Medium);
        assert_eq!(r.region, "EU868");
        assert_eq!((r.frequency_hz, r.data_rate), (869_525_000, 5));
        assert_eq!(r.mesh_key_file, Path::new("/n/radio.key"));
        assert!(r.relay, "a relay unless told otherwise");
        let m = r.medium.unwrap();
        assert_eq!(
            (m.socket.as_path(), m.node),
            (Path::new("/n/../medium.sock"), 3)
        );
    }

    #[test]
    fn relay_false_makes_the_radio_a_leaf_and_a_non_boolean_is_refused() {
        let leaf = RADIO.replace("[radio]\n", "[radio]\nrelay = false\n");
        let c = NodeConfig::parse(&format!("{FULL}{MESH}{leaf}"), Path::new("/n")).unwrap();
        assert!(!c.radio.unwrap().relay);
        let bad = RADIO.replace("[radio]\n", "[radio]\nrelay = \"no\"\n");
        let e = NodeConfig::parse(&format!("{FULL}{MESH}{bad}"), Path::new("/")).unwrap_err();
        assert!(e.contains("relay"), "{e}");
    }

    #[test]
    fn a_radio_table_without_its_backend_table_or_mesh_or_with_another_backend_is_refused() {
        let e = NodeConfig::parse(&format!("{FULL}{RADIO}"), Path::new("/")).unwrap_err();
        assert!(e.contains("[mesh]"), "{e}");
        let bare = RADIO.split("\n[radio.medium]").next().unwrap();
        let e = NodeConfig::parse(&format!("{FULL}{MESH}{bare}"), Path::new("/")).unwrap_err();
        assert!(e.contains("[radio.medium]"), "{e}");
        let sx = bare.replace("\"medium\"", "\"sx126x\"");
        let e = NodeConfig::parse(&format!("{FULL}{MESH}{sx}"), Path::new("/")).unwrap_err();
        assert!(e.contains("[radio.sx126x]"), "{e}");
        let other = RADIO.replace("\"medium\"", "\"wifi\"");
        let e = NodeConfig::parse(&format!("{FULL}{MESH}{other}"), Path::new("/")).unwrap_err();
        assert!(e.contains("wifi") && e.contains("medium"), "{e}");
    }
}
