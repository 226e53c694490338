//! LoRa radios for real processes: the `[radio]` settings a daemon starts
//! its radio driver with (`crate::daemon::radio`), the medium server's
//! socket protocol ([`wire`]) and the server itself ([`medium`], run as
//! `meshota testnet medium`). ARCHITECTURE.md, "LoRa in the daemon".

pub(crate) mod medium;
pub(crate) mod wire;

use std::path::{Path, PathBuf};

use meshota_radios::{Channel, EU868, Region, ShortId, US915};

use crate::config::RadioConfig;

/// Why a daemon's radio could not start. Each is reported at start-up and
/// the daemon exits: a radio that is configured but absent is an error,
/// not a silent QUIC-only node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RadioSetupError {
    /// `radio.region` names no region this build knows.
    #[error("radio.region {0:?} is not EU868 or US915")]
    UnknownRegion(String),
    /// `radio.data_rate` is not in the region's table.
    #[error("radio.data_rate {dr} is not a data rate of {region}")]
    DataRate {
        /// The index given.
        dr: u8,
        /// The region.
        region: &'static str,
    },
    /// `radio.frequency_hz` lies in none of the region's sub-bands.
    #[error("radio.frequency_hz {hz} is in no sub-band of {region}")]
    Frequency {
        /// The frequency given.
        hz: u32,
        /// The region.
        region: &'static str,
    },
    /// The mesh key file is missing or not 64 hex digits.
    #[error("mesh key file {}: {reason}", .path.display())]
    MeshKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The medium server's socket cannot be reached.
    #[error(
        "medium socket {}: {source} (is the medium server running? `meshota testnet up --lora` starts one)",
        .path.display()
    )]
    MediumSocket {
        /// The socket.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The medium server answered the hello with a refusal.
    #[error("medium server {} refused node {node}: {reason}", .path.display())]
    MediumRefused {
        /// The socket.
        path: PathBuf,
        /// Our index.
        node: u16,
        /// Its reason.
        reason: String,
    },
    /// The medium server's answer was not a welcome.
    #[error("medium server {}: {reason}", .path.display())]
    MediumProtocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `backend = "sx126x"` in a build without the feature.
    #[cfg_attr(feature = "sx126x", allow(dead_code))]
    #[error(
        "radio.backend = \"sx126x\" but this meshota was built without the `sx126x` feature \
         (cargo build -p meshota-node --features sx126x)"
    )]
    Sx126xNotBuilt,
    /// The SX126x did not initialise.
    #[cfg_attr(not(feature = "sx126x"), allow(dead_code))]
    #[error("sx126x radio: {0}")]
    Hardware(String),
    /// The radio link refused its configuration.
    #[error("radio link: {0}")]
    Link(#[from] meshota_mesh::radio::RadioError),
}

/// The radio settings resolved from `[radio]`: region rules, channel,
/// frame size, key and identity.
#[derive(Clone)]
pub(crate) struct RadioSettings {
    /// The region whose duty cycles the link's budget enforces.
    pub(crate) region: Region,
    /// Frequency and modulation of every frame.
    pub(crate) channel: Channel,
    /// Largest frame (the data rate's limit, cut to the dwell time).
    pub(crate) frame_len: usize,
    /// The sub-band's name (`g3`).
    pub(crate) sub_band: &'static str,
    /// Airtime allowed per hour in the sub-band (µs).
    pub(crate) budget_per_hour_us: u64,
    /// The mesh key.
    pub(crate) mesh_key: [u8; 32],
    /// Our short id.
    pub(crate) short_id: ShortId,
    /// The device key the short id was derived from, with the salt used
    /// (0 at start); `None` when `[radio] short_id` sets it. A derived id
    /// that a neighbour turns out to share is derived again with the next
    /// salt.
    pub(crate) derived_short_id: Option<(Vec<u8>, u8)>,
    /// Seed of the link's random choices.
    pub(crate) seed: u64,
    /// Whether the node serves neighbours (`relay = true`, the default)
    /// or only receives (a leaf).
    pub(crate) relay: bool,
    /// Largest release image sent whole; larger ones go by patch only,
    /// their chunks left in the store.
    pub(crate) whole_release_bytes_max: u64,
}

/// Reads the mesh key file: 64 hex digits, whitespace around them ignored.
///
/// # Errors
/// [`RadioSetupError::MeshKey`].
pub(crate) fn read_mesh_key(path: &Path) -> Result<[u8; 32], RadioSetupError> {
    let bad = |reason: String| RadioSetupError::MeshKey {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = meshota_manifest::fs::read_limited(path, 4096).map_err(|e| bad(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not text".into()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| bad("not 64 hex digits (32 bytes)".into()))?;
    Ok(key)
}

/// Resolves `[radio]` for the node whose device key id is `node_id`.
///
/// # Errors
/// Region, data rate, frequency and mesh key errors.
pub(crate) fn settings(
    cfg: &RadioConfig,
    node_id: &[u8; 32],
) -> Result<RadioSettings, RadioSetupError> {
    let region = match cfg.region.to_ascii_uppercase().as_str() {
        "EU868" => EU868,
        "US915" => US915,
        _ => return Err(RadioSetupError::UnknownRegion(cfg.region.clone())),
    };
    let dr = region
        .data_rate(cfg.data_rate)
        .map_err(|_| RadioSetupError::DataRate {
            dr: cfg.data_rate,
            region: region.name,
        })?;
    let (_, band) = region
        .sub_band(cfg.frequency_hz)
        .map_err(|_| RadioSetupError::Frequency {
            hz: cfg.frequency_hz,
            region: region.name,
        })?;
    let frame_len =
        region
            .frame_limit(&[cfg.data_rate])
            .map_err(|_| RadioSetupError::DataRate {
                dr: cfg.data_rate,
                region: region.name,
            })?;
    let mesh_key = read_mesh_key(&cfg.mesh_key_file)?;
    let short_id = cfg
        .short_id
        .map_or_else(|| ShortId::derive(node_id, 0), ShortId);
    let derived_short_id = cfg.short_id.is_none().then(|| (node_id.to_vec(), 0));
    let seed = cfg.seed.unwrap_or_else(|| {
        let mut s = [0u8; 8];
        s.copy_from_slice(&node_id[8..16]);
        u64::from_le_bytes(s)
    });
    Ok(RadioSettings {
        region,
        channel: Channel {
            freq_hz: cfg.frequency_hz,
            params: dr.params(),
        },
        frame_len,
        sub_band: band.name,
        budget_per_hour_us: band.airtime_per_hour_us(),
        mesh_key,
        short_id,
        derived_short_id,
        seed,
        relay: cfg.relay,
        whole_release_bytes_max: cfg.whole_release_bytes_max,
    })
}
