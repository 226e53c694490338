//! `D/testnet.json`: what `testnet up` built and started (nodes, ports,
//! pids, paths) and what `testnet publish` published, so the other testnet
//! commands (and people) can find everything. Every path in it is absolute.

use std::path::{Path, PathBuf};

use meshota_manifest::fs::{read_limited, write_atomic};
use serde::{Deserialize, Serialize};

use crate::failure::{AtPath, CmdResult, Failure};

/// The file name of the state file inside a testnet directory.
pub(crate) const STATE_FILE: &str = "testnet.json";

/// The `format` value of a state file this binary writes and reads.
pub(crate) const FORMAT: &str = "meshota-testnet/1";

/// Largest state file read, in bytes.
const MAX_STATE_BYTES: usize = 4 << 20;

/// A testnet: its configuration, its nodes and its releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TestnetState {
    /// Always [`FORMAT`].
    pub(crate) format: String,
    /// The testnet directory.
    pub(crate) dir: PathBuf,
    /// Hardware class of every node and release.
    pub(crate) hardware: String,
    /// Channel of every node and release.
    pub(crate) channel: String,
    /// The image size the slots were sized for, in MiB.
    pub(crate) image_size_mib: u64,
    /// Bytes of each A/B slot file.
    pub(crate) slot_bytes: u64,
    /// The trust root every node anchors on.
    pub(crate) trust_root: PathBuf,
    /// The dev release key (unencrypted; a testnet key, never a real one).
    pub(crate) release_key: PathBuf,
    /// The release every node was provisioned with.
    pub(crate) initial: ReleaseRecord,
    /// Releases published with `testnet publish`, oldest first.
    pub(crate) releases: Vec<ReleaseRecord>,
    /// The nodes, by index.
    pub(crate) nodes: Vec<NodeRecord>,
    /// The simulated LoRa medium (`testnet up --lora`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lora: Option<LoraRecord>,
}

/// The radio side of a `--lora` testnet: its medium server and which nodes
/// are on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoraRecord {
    /// `line` or `grid`.
    pub(crate) topology: String,
    /// With `--mixed K`: nodes 0..K are on QUIC (node K-1 on both).
    pub(crate) mixed: Option<usize>,
    /// Testnet indexes of the nodes on the radio, in medium order.
    pub(crate) radio_nodes: Vec<usize>,
    /// Those of them that are leaves (`relay = false`).
    #[serde(default)]
    pub(crate) leaves: Vec<usize>,
    /// Virtual µs per wall-clock µs of the medium (and the nodes' links).
    pub(crate) time_scale: u32,
    /// `[radio] whole_release_bytes_max` written for every radio node
    /// (`None`: the daemon's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) whole_release_bytes_max: Option<u64>,
    /// The medium server's socket.
    pub(crate) socket: PathBuf,
    /// The medium server's log.
    pub(crate) log: PathBuf,
    /// The medium server's pid while the testnet is up.
    pub(crate) pid: Option<u32>,
}

/// One node of a testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    /// Index (0 is where releases are injected).
    pub(crate) id: usize,
    /// The node id: its device key id, 64 hex digits.
    pub(crate) node_id: String,
    /// The node's directory.
    pub(crate) dir: PathBuf,
    /// Its node config file.
    pub(crate) config: PathBuf,
    /// Its control socket.
    pub(crate) socket: PathBuf,
    /// Where its daemon's stdout and stderr go.
    pub(crate) log: PathBuf,
    /// Its QUIC listen address.
    pub(crate) listen: String,
    /// The peers it dials.
    pub(crate) peers: Vec<String>,
    /// The daemon's process id while the testnet is up.
    pub(crate) pid: Option<u32>,
}

/// A release signed for the testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReleaseRecord {
    /// Semver version.
    pub(crate) version: String,
    /// Anti-rollback security version.
    pub(crate) security_version: u64,
    /// The release id (manifest id), hex.
    pub(crate) release: String,
    /// The signed manifest file.
    pub(crate) manifest: PathBuf,
    /// The image file.
    pub(crate) image: PathBuf,
    /// Image size in bytes.
    pub(crate) size: u64,
    /// When it was published (Unix seconds).
    pub(crate) published_at: u64,
}

impl TestnetState {
    /// The state file of the testnet in `dir`.
    pub(crate) fn path_in(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads the state file of the testnet in `dir`.
    ///
    /// # Errors
    /// No state file (not a testnet directory), unreadable, not this format.
    pub(crate) fn load(dir: &Path) -> CmdResult<Self> {
        let path = Self::path_in(dir);
        if !path.exists() {
            return Err(Failure::file(
                dir,
                format!(
                    "not a testnet directory (no {STATE_FILE}); create one with `meshota testnet up`"
                ),
            ));
        }
        let bytes = read_limited(&path, MAX_STATE_BYTES)?;
        let s: Self = serde_json::from_slice(&bytes).at(&path)?;
        if s.format != FORMAT {
            return Err(Failure::file(
                &path,
                format!("format {:?} is not {FORMAT:?}", s.format),
            ));
        }
        Ok(s)
    }

    /// Writes the state file (atomically).
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn save(&self) -> CmdResult {
        let path = Self::path_in(&self.dir);
        let text = serde_json::to_vec_pretty(self).at(&path)?;
        write_atomic(&path, &text, 0o644)?;
        Ok(())
    }

    /// The newest published release, else the initial one: what every node
    /// should end up confirmed on.
    pub(crate) fn target(&self) -> &ReleaseRecord {
        self.releases.last().unwrap_or(&self.initial)
    }

    /// The highest security version signed so far.
    pub(crate) fn last_security_version(&self) -> u64 {
        self.releases
            .iter()
            .map(|r| r.security_version)
            .chain([self.initial.security_version])
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn release(version: &str, sv: u64) -> ReleaseRecord {
        ReleaseRecord {
            version: version.to_string(),
            security_version: sv,
            release: "ab".repeat(32),
            manifest: PathBuf::from("/t/m.mota"),
            image: PathBuf::from("/t/i.img"),
            size: 10,
            published_at: 0,
        }
    }

    fn state(dir: &Path) -> TestnetState {
        TestnetState {
            format: FORMAT.to_string(),
            dir: dir.to_path_buf(),
            hardware: "testnet".to_string(),
            channel: "stable".to_string(),
            image_size_mib: 1,
            slot_bytes: 1 << 20,
            trust_root: dir.join("trust.mota"),
            release_key: dir.join("keys/release.key"),
            initial: release("0.1.0", 1),
            releases: vec![],
            nodes: vec![],
            lora: None,
        }
    }

    #[test]
    fn the_state_file_round_trips_and_tracks_the_security_version() {
        let d = tempfile::tempdir().unwrap();
        let mut s = state(d.path());
        assert_eq!(s.last_security_version(), 1);
        assert_eq!(s.target().version, "0.1.0");
        s.releases.push(release("1.0.0", 5));
        s.releases.push(release("1.0.1", 3));
        assert_eq!(s.last_security_version(), 5);
        assert_eq!(s.target().version, "1.0.1");
        s.save().unwrap();
        assert_eq!(TestnetState::load(d.path()).unwrap(), s);
    }

    #[test]
    fn a_directory_without_a_state_file_is_not_a_testnet() {
        let d = tempfile::tempdir().unwrap();
        let e = TestnetState::load(d.path()).unwrap_err();
        assert!(e.message.contains("not a testnet"), "{}", e.message);
    }
}
