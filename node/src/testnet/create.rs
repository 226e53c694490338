//! Building a testnet directory: dev keys and trust root, per-node device
//! keys, file slots, node configs with a `[mesh]` table, and every node
//! provisioned with an initial release so it boots a confirmed slot.
//!
//! Layout of `D`:
//!
//! ```text
//! D/testnet.json               state (nodes, ports, pids, releases)
//! D/trust.mota                 the dev trust root
//! D/keys/{root,release}.{key,pub}
//! D/images/, D/releases/       images and signed manifests
//! D/node-<i>/node.toml         node config ([mesh] included)
//! D/node-<i>/keys/node.{key,pub}   device key
//! D/node-<i>/slot-a.img, slot-b.img
//! D/node-<i>/state/, store/    data dir (install record, boot records), chunk store
//! D/node-<i>/node.sock, node.log
//! ```

use std::fs::File;
use std::io::BufReader;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use meshota_blobstore::{DEFAULT_PARAMS, index_reader};
use meshota_manifest::fs::write_atomic;
use meshota_manifest::{
    Component, Expiration, InstallPolicy, Protection, ReleaseKey, ReleaseManifest, RolloutPolicy,
    RootKey, Scope, SecretKey, SignedDocument, TrustRoot,
};

use crate::config::NodeConfig;
use crate::device::{ImageSource, Node, install_failure};
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::load_secret;
use crate::radio::medium::{MediumSpec, SOCKET_FILE};
use crate::testnet::image;
use crate::testnet::state::{FORMAT, LoraRecord, NodeRecord, ReleaseRecord, TestnetState};
use crate::testnet::topology;
use crate::timefmt::now;

/// Hardware class of every testnet node.
pub(crate) const HARDWARE: &str = "testnet";
/// Channel of every testnet node.
pub(crate) const CHANNEL: &str = "stable";
/// Size of the initial image every node is provisioned with.
const INITIAL_IMAGE_BYTES: u64 = 256 * 1024;
/// Version of the initial image.
const INITIAL_VERSION: &str = "0.1.0";
/// Longest control socket path a Unix socket address holds (`sun_path`).
const MAX_SOCKET_PATH: usize = 107;
/// Most nodes a testnet may have.
pub(crate) const MAX_NODES: usize = 128;

/// What `testnet up` builds.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Number of nodes.
    pub(crate) nodes: usize,
    /// The testnet directory.
    pub(crate) dir: PathBuf,
    /// First UDP port (node i listens on base + i); 0 picks free ports.
    pub(crate) base_port: u16,
    /// The largest image the slots must hold, in MiB.
    pub(crate) image_size_mib: u64,
    /// Nodes on the simulated LoRa medium (`--lora`), if any.
    pub(crate) lora: Option<LoraPlan>,
}

/// How the nodes of a `--lora` testnet sit on the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoraLayout {
    /// In a line, neighbours 3 km apart (the simulator's `line:H`).
    Line,
    /// Row-major on a square-ish grid, 3 km pitch (`grid:N`).
    Grid,
}

impl LoraLayout {
    /// The name `--lora-topology` takes.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Grid => "grid",
        }
    }
}

/// The radio part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoraPlan {
    /// Positions of the radio nodes.
    pub(crate) layout: LoraLayout,
    /// `Some(K)`: nodes 0..K are on QUIC and K-1..N on the radio (node
    /// K-1 on both); `None`: every node on the radio only.
    pub(crate) mixed: Option<usize>,
    /// Virtual µs per wall-clock µs of the medium.
    pub(crate) time_scale: u32,
    /// Seed of the medium's losses.
    pub(crate) seed: u64,
    /// Testnet indexes of the radio nodes that are leaves (`relay =
    /// false`: they never serve their radio neighbours).
    pub(crate) leaves: Vec<usize>,
    /// `[radio] whole_release_bytes_max` of every radio node (the
    /// daemon's default when `None`).
    pub(crate) whole_release_bytes_max: Option<u64>,
}

impl LoraPlan {
    /// (nodes on QUIC, testnet indexes of the nodes on the radio) for a
    /// testnet of `n` nodes.
    ///
    /// # Errors
    /// A `--mixed` that leaves fewer than 2 radio nodes or no QUIC node; a
    /// leaf that is not a radio node.
    pub(crate) fn split(&self, n: usize) -> CmdResult<(usize, Vec<usize>)> {
        let (quic, radio): (usize, Vec<usize>) = match self.mixed {
            None => (0, (0..n).collect()),
            Some(k) if (1..n).contains(&k) => (k, (k - 1..n).collect()),
            Some(k) => {
                return Err(Failure::usage(format!(
                    "--mixed {k} with {n} nodes: K must be 1 to {} (nodes 0..K on QUIC, K-1..N on the radio)",
                    n.saturating_sub(1)
                )));
            }
        };
        if let Some(&leaf) = self.leaves.iter().find(|l| !radio.contains(l)) {
            return Err(Failure::usage(format!(
                "--leaves {leaf}: node {leaf} is not on the radio (radio nodes {radio:?})"
            )));
        }
        Ok((quic, radio))
    }

    /// The radio nodes that can be leaves under the backbone `meshota
    /// radio plan` would give this medium (its usable links, from the
    /// first radio node, where releases enter the radio; detours of at
    /// most [`meshota_sim::lora::PLAN_MAX_DETOUR`] hops), as testnet
    /// indexes.
    ///
    /// # Errors
    /// As [`LoraPlan::split`], or positions that cannot be laid out.
    pub(crate) fn planned_leaves(&self, n: usize) -> CmdResult<Vec<usize>> {
        let (_, radio) = self.split(n)?;
        let positions = self.positions(radio.len())?;
        let adj = meshota_sim::lora::scenario::usable_links(&positions);
        let b = meshota_radios::backbone::plan(&adj, 0, meshota_sim::lora::PLAN_MAX_DETOUR);
        Ok(b.leaves.iter().map(|&i| radio[i]).collect())
    }

    /// Positions (m) of `m` radio nodes in this plan's layout.
    fn positions(&self, m: usize) -> CmdResult<Vec<(f64, f64)>> {
        use meshota_sim::lora::LoraTopology;
        if m < 2 {
            return Err(Failure::usage(format!(
                "a --lora testnet needs at least 2 nodes on the radio, not {m}"
            )));
        }
        let topology = match self.layout {
            LoraLayout::Line => LoraTopology::Line(m - 1),
            LoraLayout::Grid => LoraTopology::Grid(m),
        };
        meshota_sim::lora::scenario::positions(topology, self.seed)
            .map_err(|e| Failure::usage(format!("--lora-topology {}: {e}", self.layout.name())))
    }
}

/// The `[radio]` table of a testnet node on the medium: the testnet's mesh
/// key, EU868 g3 (869.525 MHz, 10 %), DR5 (SF7/125 kHz), as the simulator;
/// `relay = false` for a leaf.
pub(crate) fn radio_toml(
    socket: &Path,
    node: usize,
    relay: bool,
    whole_release_bytes_max: Option<u64>,
) -> String {
    let whole = whole_release_bytes_max
        .map(|n| format!("whole_release_bytes_max = {n}\n"))
        .unwrap_or_default();
    format!(
        r#"
[radio]
relay = {relay}
{whole}backend = "medium"
mesh_key_file = "../radio.key"
region = "EU868"
frequency_hz = 869525000
data_rate = 5

[radio.medium]
socket = "{}"
node = {node}
"#,
        socket.display()
    )
}

/// Whether `dir` holds nothing (or does not exist).
pub(crate) fn is_empty_or_missing(dir: &Path) -> CmdResult<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Failure::file(dir, e)),
    }
}

/// The `n` UDP ports of the testnet on 127.0.0.1: `base..base+n` (each
/// checked free), or with `base == 0` ports the system picks as free.
pub(crate) fn pick_ports(n: usize, base: u16) -> CmdResult<Vec<u16>> {
    if base == 0 {
        // Hold every socket until all are picked, so no port is picked twice.
        let socks = (0..n)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::rejected(format!("cannot pick free UDP ports: {e}")))?;
        return socks
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::rejected(format!("cannot pick free UDP ports: {e}")));
    }
    let last = u64::from(base) + n as u64 - 1;
    if n == 0 || last > u64::from(u16::MAX) {
        return Err(Failure::usage(format!(
            "--base-port {base} with {n} nodes runs past port 65535"
        )));
    }
    let ports: Vec<u16> = (0..n)
        .filter_map(|i| base.checked_add(u16::try_from(i).ok()?))
        .collect();
    for &p in &ports {
        UdpSocket::bind(("127.0.0.1", p)).map_err(|e| {
            Failure::rejected(format!(
                "UDP port 127.0.0.1:{p} is not free ({e}); pick another --base-port, or 0 for free ports"
            ))
        })?;
    }
    Ok(ports)
}

/// Bytes of each slot file for images up to `mib` MiB: the image plus a
/// quarter and 1 MiB of headroom, rounded up to 4 KiB.
pub(crate) fn slot_bytes(mib: u64) -> u64 {
    let image = mib.saturating_mul(1 << 20);
    let raw = image
        .saturating_add(image / 4)
        .saturating_add(1 << 20)
        .max(INITIAL_IMAGE_BYTES * 2);
    raw.div_ceil(4096).saturating_mul(4096)
}

/// The node config of a testnet node, without its `[mesh]` table (the part
/// `slots provision` reads). Paths are relative to the node's directory.
pub(crate) fn device_toml() -> String {
    format!(
        r#"# Written by `meshota testnet up`. Paths are relative to this file.
hardware = "{HARDWARE}"
channel = "{CHANNEL}"
trust_root = "../trust.mota"
data_dir = "state"
store_dir = "store"

[device]
install_record = "state/install.rec"
trial_boots = 2

[device.slot_a]
path = "slot-a.img"

[device.slot_b]
path = "slot-b.img"

[device.boot]
kind = "simulated"
records = "state/boot.rec"

[device.health]
command = ["true"]
timeout_ms = 10000
"#
    )
}

/// The `[mesh]` table of a testnet node (docs/daemon.md): open admission,
/// the simulated reboot, loopback listen address and the peers it dials.
pub(crate) fn mesh_toml(listen: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        r#"
[mesh]
device_key = "keys/node.key"
listen = "{listen}"
peers = [{}]
open = true
control_socket = "node.sock"
reboot = "simulated"
"#,
        peers.join(", ")
    )
}

fn random_seed() -> CmdResult<[u8; 32]> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out)
        .map_err(|e| Failure::rejected(format!("the system RNG failed: {e}")))?;
    Ok(out)
}

/// Generates a key pair into `dir/name.{key,pub}` (plain secret, 0600).
fn new_key(dir: &Path, name: &str) -> CmdResult<(SecretKey, PathBuf)> {
    std::fs::create_dir_all(dir).at(dir)?;
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    let key = SecretKey::from_seed(random_seed()?, name).at(&key_path)?;
    write_atomic(
        &key_path,
        &key.secret_key_file(Protection::None).at(&key_path)?,
        0o600,
    )?;
    write_atomic(&pub_path, &key.public_key_file().at(&pub_path)?, 0o644)?;
    Ok((key, key_path))
}

/// Signs a manifest for `image` with the testnet's release key, checks it
/// against the trust root and writes it to `out`.
pub(crate) fn sign_release(
    trust_root: &Path,
    release_key: &Path,
    image: &Path,
    version: &str,
    security_version: u64,
    out: &Path,
) -> CmdResult<ReleaseRecord> {
    semver::Version::parse(version)
        .map_err(|e| Failure::usage(format!("version {version:?} is not semver: {e}")))?;
    let trust = crate::cmd::trust::load_trust(trust_root, Expiration::Enforce { now: now() })?;
    let key = load_secret(release_key)?;
    let f = File::open(image).at(image)?;
    let index = index_reader(BufReader::with_capacity(1 << 20, f), &DEFAULT_PARAMS).at(image)?;
    let index_id = index.id().at(image)?;
    let body = ReleaseManifest {
        product: "meshota-testnet".to_string(),
        hardware: HARDWARE.to_string(),
        channel: CHANNEL.to_string(),
        version: version.to_string(),
        security_version,
        created: now(),
        components: vec![Component {
            name: "rootfs".to_string(),
            slot: "rootfs".to_string(),
            size: index.total_size(),
            image_hash: index.image_hash(),
            chunk_index: index_id,
            chunking: *index.params(),
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[&key]).at(out)?;
    let policy = InstallPolicy {
        hardware: Some(HARDWARE),
        installed_security_version: None,
        expiration: Expiration::Enforce { now: now() },
    };
    trust
        .verify_manifest(&doc, &policy)
        .map_err(|e| Failure::file(out, format!("not written: {e}")))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    write_atomic(out, &doc.encode().at(out)?, 0o644)?;
    Ok(ReleaseRecord {
        version: version.to_string(),
        security_version,
        release: doc.id().to_hex(),
        manifest: out.to_path_buf(),
        image: image.to_path_buf(),
        size: index.total_size(),
        published_at: now().0,
    })
}

/// Writes the dev keys and the trust root; returns (trust root, release key).
fn make_trust(dir: &Path) -> CmdResult<(PathBuf, PathBuf)> {
    let keys = dir.join("keys");
    let (root, _) = new_key(&keys, "root")?;
    let (release, release_path) = new_key(&keys, "release")?;
    let body = TrustRoot::with_one_key_each(
        RootKey {
            name: "testnet-root".to_string(),
            key: root.public().clone(),
        },
        ReleaseKey {
            name: "testnet-release".to_string(),
            key: release.public().clone(),
            scope: Scope {
                hardware: vec![HARDWARE.to_string()],
                channels: vec![],
            },
            expires: None,
        },
    );
    let path = dir.join("trust.mota");
    let doc = SignedDocument::sign(body, &[&root]).at(&path)?;
    TrustRoot::verify_initial(&doc, Expiration::Enforce { now: now() })
        .map_err(|e| Failure::file(&path, format!("not written: {e}")))?;
    write_atomic(&path, &doc.encode().at(&path)?, 0o644)?;
    Ok((path, release_path))
}

/// Creates a slot file of `bytes` (sparse).
fn slot_file(path: &Path, bytes: u64) -> CmdResult {
    let f = File::create(path).at(path)?;
    f.set_len(bytes).at(path)?;
    Ok(())
}

/// Builds node `i`: directories, device key, slot files, config; then
/// provisions it with the initial release. Returns its record (no pid).
fn make_node(
    state_dir: &Path,
    i: usize,
    listen: &str,
    peers: Vec<String>,
    slot_bytes: u64,
    initial: &ReleaseRecord,
    radio: Option<String>,
) -> CmdResult<NodeRecord> {
    let dir = state_dir.join(format!("node-{i}"));
    for sub in ["state", "store"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).at(&p)?;
    }
    let (key, _) = new_key(&dir.join("keys"), "node")?;
    slot_file(&dir.join("slot-a.img"), slot_bytes)?;
    slot_file(&dir.join("slot-b.img"), slot_bytes)?;
    let config_path = dir.join("node.toml");
    let socket = dir.join("node.sock");
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Failure::file(
            &socket,
            format!(
                "the control socket path is longer than {MAX_SOCKET_PATH} bytes; \
                 use a shorter testnet directory"
            ),
        ));
    }
    let device = device_toml();
    write_atomic(
        &config_path,
        format!(
            "{device}{}{}",
            mesh_toml(listen, &peers),
            radio.unwrap_or_default()
        )
        .as_bytes(),
        0o644,
    )?;
    // Provision from the device part of the config, so this does not depend
    // on the config reader knowing `[mesh]`.
    let config = NodeConfig::parse(&device, &dir)
        .map_err(|e| Failure::file(&config_path, format!("bad node config: {e}")))?;
    let node = Node {
        path: config_path.clone(),
        config,
    };
    provision(&node, initial)?;
    Ok(NodeRecord {
        id: i,
        node_id: key.id().to_hex(),
        log: dir.join("node.log"),
        config: config_path,
        socket,
        listen: listen.to_string(),
        peers,
        pid: None,
        dir,
    })
}

/// `slots provision` of the initial release into slot A.
fn provision(node: &Node, release: &ReleaseRecord) -> CmdResult {
    let trust = node.trust()?;
    let doc = crate::cmd::release::read_manifest(&release.manifest)?;
    let (component, img) = node.verify_release(&trust, &release.manifest, &doc)?;
    let mut dev = node.open_device()?;
    let source = ImageSource::File(release.image.clone());
    let opts = node.config.device.install_options();
    let slot = meshota_boot::SlotId::A;
    source.with_reader(&component, |reader| {
        dev.provision(slot, &img, reader, &opts)
            .map_err(|e| install_failure(node, &release.manifest, &source, &e))
    })?;
    node.save_slot_manifest(slot, &doc)
}

/// Builds the testnet directory `plan.dir` (which must be empty or
/// missing) and writes its state file; starts nothing.
pub(crate) fn create(plan: &Plan) -> CmdResult<TestnetState> {
    if plan.nodes == 0 || plan.nodes > MAX_NODES {
        return Err(Failure::usage(format!(
            "--nodes {} must be 1 to {MAX_NODES}",
            plan.nodes
        )));
    }
    if plan.image_size_mib == 0 || plan.image_size_mib > 4096 {
        return Err(Failure::usage(format!(
            "--image-size {} MiB must be 1 to 4096",
            plan.image_size_mib
        )));
    }
    if !is_empty_or_missing(&plan.dir)? {
        return Err(Failure::file(
            &plan.dir,
            "is not empty and not a testnet; refusing to build a testnet in it",
        ));
    }
    let ports = pick_ports(plan.nodes, plan.base_port)?;
    std::fs::create_dir_all(&plan.dir).at(&plan.dir)?;
    let dir = std::fs::canonicalize(&plan.dir).at(&plan.dir)?;
    let (trust_root, release_key) = make_trust(&dir)?;
    let images = dir.join("images");
    std::fs::create_dir_all(&images).at(&images)?;
    let v0 = images.join(format!("{INITIAL_VERSION}.img"));
    image::write(&v0, INITIAL_IMAGE_BYTES, &image::Pattern::base(0x7e57_0000))?;
    let initial = sign_release(
        &trust_root,
        &release_key,
        &v0,
        INITIAL_VERSION,
        1,
        &dir.join("releases").join(format!("{INITIAL_VERSION}.mota")),
    )?;
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let (quic_nodes, radio_nodes) = match &plan.lora {
        Some(l) => l.split(plan.nodes)?,
        None => (plan.nodes, Vec::new()),
    };
    let lora = match &plan.lora {
        Some(l) => Some(make_medium(&dir, l, &radio_nodes)?),
        None => None,
    };
    let links = topology::links(quic_nodes);
    let slot_bytes = slot_bytes(plan.image_size_mib);
    let mut nodes = Vec::with_capacity(plan.nodes);
    for (i, &port) in ports.iter().enumerate() {
        let peers = if i < quic_nodes {
            topology::dials(&links, i)
                .into_iter()
                .map(|j| addr(ports[j]))
                .collect()
        } else {
            Vec::new()
        };
        let radio = match (&lora, radio_nodes.iter().position(|&r| r == i)) {
            (Some(l), Some(at)) => Some(radio_toml(
                &l.socket,
                at,
                !l.leaves.contains(&i),
                l.whole_release_bytes_max,
            )),
            _ => None,
        };
        nodes.push(make_node(
            &dir,
            i,
            &addr(port),
            peers,
            slot_bytes,
            &initial,
            radio,
        )?);
    }
    let state = TestnetState {
        format: FORMAT.to_string(),
        dir,
        hardware: HARDWARE.to_string(),
        channel: CHANNEL.to_string(),
        image_size_mib: plan.image_size_mib,
        slot_bytes,
        trust_root,
        release_key,
        initial,
        releases: vec![],
        nodes,
        lora,
    };
    state.save()?;
    Ok(state)
}

/// Writes the medium's spec (positions of the radio nodes) and the
/// testnet's mesh key; returns the record of the medium server to run.
fn make_medium(dir: &Path, l: &LoraPlan, radio_nodes: &[usize]) -> CmdResult<LoraRecord> {
    let positions = l.positions(radio_nodes.len())?;
    MediumSpec {
        positions,
        seed: l.seed,
        time_scale: l.time_scale,
    }
    .save(dir)?;
    let key = dir.join("radio.key");
    write_atomic(&key, hex::encode(random_seed()?).as_bytes(), 0o600)?;
    let socket = dir.join(SOCKET_FILE);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Failure::file(
            &socket,
            format!(
                "the medium socket path is longer than {MAX_SOCKET_PATH} bytes; use a shorter testnet directory"
            ),
        ));
    }
    Ok(LoraRecord {
        topology: l.layout.name().to_string(),
        mixed: l.mixed,
        radio_nodes: radio_nodes.to_vec(),
        leaves: l.leaves.clone(),
        time_scale: l.time_scale,
        whole_release_bytes_max: l.whole_release_bytes_max,
        socket,
        log: dir.join("medium.log"),
        pid: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_device_part_of_a_node_config_is_accepted_by_the_config_reader() {
        let c = NodeConfig::parse(&device_toml(), Path::new("/t/node-0")).unwrap();
        assert_eq!(c.hardware, HARDWARE);
        assert_eq!(c.boot_kind(), "simulated");
        assert_eq!(c.store_dir.as_deref(), Some(Path::new("/t/node-0/store")));
        assert_eq!(c.trust_root, Path::new("/t/node-0/../trust.mota"));
        assert_eq!(c.device.health.unwrap().command, vec!["true".to_string()]);
    }

    #[test]
    fn the_mesh_table_is_open_simulated_and_lists_the_peers() {
        let t = mesh_toml("127.0.0.1:7400", &["127.0.0.1:7401".to_string()]);
        let v: toml::Table = toml::from_str(&t).unwrap();
        let m = v["mesh"].as_table().unwrap();
        assert_eq!(m["listen"].as_str(), Some("127.0.0.1:7400"));
        assert_eq!(m["open"].as_bool(), Some(true));
        assert_eq!(m["reboot"].as_str(), Some("simulated"));
        assert_eq!(m["device_key"].as_str(), Some("keys/node.key"));
        let peers = m["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1);
        assert!(!m.contains_key("allow"));
    }

    #[test]
    fn a_planned_backbone_makes_leaves_of_the_radio_nodes_off_it() {
        let line = LoraPlan {
            layout: LoraLayout::Line,
            mixed: None,
            time_scale: 1,
            seed: 1,
            leaves: Vec::new(),
            whole_release_bytes_max: None,
        };
        // 0 - 1 - 2 - 3 from node 0: 0, 1 and 2 relay.
        assert_eq!(line.planned_leaves(4).unwrap(), [3]);
        // Nodes 0 and 1 on QUIC, 1..4 on the radio from node 1 (the
        // forwarder): 1 and 2 relay.
        let mixed = LoraPlan {
            mixed: Some(2),
            ..line.clone()
        };
        assert_eq!(mixed.planned_leaves(4).unwrap(), [3]);
        // A 5 x 5 grid from its corner: the plan covers every node.
        let grid = LoraPlan {
            layout: LoraLayout::Grid,
            ..line
        };
        let leaves = grid.planned_leaves(25).unwrap();
        assert!(leaves.len() >= 10 && !leaves.contains(&0), "{leaves:?}");
    }

    #[test]
    fn slots_hold_the_image_with_headroom() {
        assert!(slot_bytes(32) > 32 << 20);
        assert_eq!(slot_bytes(32) % 4096, 0);
        assert!(slot_bytes(1) >= INITIAL_IMAGE_BYTES);
    }

    #[test]
    fn free_ports_are_distinct_and_an_overflowing_base_port_is_refused() {
        let p = pick_ports(5, 0).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 5);
        assert!(pick_ports(10, 65530).is_err());
    }

    #[test]
    fn a_testnet_directory_holds_provisioned_nodes_and_a_state_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tn");
        let s = create(&Plan {
            nodes: 3,
            dir: dir.clone(),
            base_port: 0,
            image_size_mib: 1,
            lora: None,
        })
        .unwrap();
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(TestnetState::load(&dir).unwrap(), s);
        for n in &s.nodes {
            assert!(n.dir.join("state/slot-A.mota").exists());
            let text = std::fs::read_to_string(&n.config).unwrap();
            assert!(text.contains("[mesh]"));
            assert_eq!(n.node_id.len(), 64);
            // The whole file, [mesh] included, is a valid node config.
            let node = Node::load(&n.config).unwrap();
            let mesh = node.config.mesh.as_ref().unwrap();
            assert!(mesh.open);
            assert_eq!(mesh.listen.to_string(), n.listen);
            let st = node.open_device().unwrap().record().unwrap();
            assert_eq!(st.confirmed, meshota_boot::SlotId::A);
        }
        let again = create(&Plan {
            nodes: 3,
            dir,
            base_port: 0,
            image_size_mib: 1,
            lora: None,
        });
        assert!(again.unwrap_err().message.contains("not empty"));
    }
}
