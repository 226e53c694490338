//! Node positions for the LoRa scenarios, the radio settings they share,
//! and the graph of usable links (for the broadcast bound).

use core::fmt;
use core::str::FromStr;

use meshota_radios::{
    Bandwidth, Channel, EU868, LoraParams, MediumConfig, Micros, SpreadingFactor,
};

use crate::Error;
use crate::rng::SimRng;

/// Spacing (m) of neighbours on the line and the grid: an SNR margin of
/// about 3 dB at SF7/125 kHz with the EU868 medium defaults (PER ~5 %).
pub const SPACING_M: f64 = 3_000.0;
/// A link is usable (an edge of the bound's graph) when its SNR margin
/// over the demodulation floor is at least this (PER ≤ 12 %).
pub const USABLE_MARGIN_DB: f64 = 2.0;
/// Side (m) of the square the random geometric graph's nodes fall in.
pub const RANDOM_SIDE_M: f64 = 13_000.0;
/// Draws of random positions before giving up on a connected graph.
pub const RANDOM_DRAWS_MAX: u32 = 500;
/// The EU868 sub-band g3 (869.4–869.65 MHz, 10 % duty cycle, 500 mW),
/// where LoRa meshes run: centre frequency.
pub const FREQ_HZ: u32 = 869_525_000;
/// The EU868 data rate used: DR5, SF7/125 kHz, frames up to 222 bytes.
pub const DATA_RATE: u8 = 5;
/// Extra independent frame loss per frame and receiver in every scenario.
pub const FRAME_LOSS: f64 = 0.10;

/// One of the scenarios of `meshota sim --lora --topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraTopology {
    /// `line:H`: H hops, H + 1 nodes [`SPACING_M`] apart; node 0 at one end.
    Line(usize),
    /// `random:N`: N nodes uniformly in a [`RANDOM_SIDE_M`] square, drawn
    /// until the usable links connect them.
    Random(usize),
    /// `grid:N`: N nodes row-major on a square-ish grid [`SPACING_M`] apart.
    Grid(usize),
}

/// Largest scenario (nodes).
pub const LORA_NODES_MAX: usize = 1_000;

impl LoraTopology {
    /// Nodes in the scenario.
    #[must_use]
    pub const fn nodes(self) -> usize {
        match self {
            Self::Line(h) => h + 1,
            Self::Random(n) | Self::Grid(n) => n,
        }
    }
}

impl fmt::Display for LoraTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(h) => write!(f, "line:{h}"),
            Self::Random(n) => write!(f, "random:{n}"),
            Self::Grid(n) => write!(f, "grid:{n}"),
        }
    }
}

impl FromStr for LoraTopology {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::UnknownTopology(s.into());
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().map_err(|_| bad())?;
        let t = match kind {
            "line" => Self::Line(n),
            "random" => Self::Random(n),
            "grid" => Self::Grid(n),
            _ => return Err(bad()),
        };
        let nodes = t.nodes();
        if !(2..=LORA_NODES_MAX).contains(&nodes) {
            return Err(Error::OutOfRange {
                what: "LoRa nodes",
                value: nodes as u64,
                min: 2,
                max: LORA_NODES_MAX as u64,
            });
        }
        Ok(t)
    }
}

/// The medium every scenario uses: EU868 defaults plus [`FRAME_LOSS`].
#[must_use]
pub const fn medium_config() -> MediumConfig {
    let mut c = MediumConfig::eu868();
    c.extra_loss = FRAME_LOSS;
    c
}

/// The channel every node sends on, by default.
#[must_use]
pub const fn channel() -> Channel {
    channel_at(FREQ_HZ)
}

/// The scenarios' modulation on `freq_hz`.
#[must_use]
pub const fn channel_at(freq_hz: u32) -> Channel {
    Channel {
        freq_hz,
        params: LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125),
    }
}

/// The EU868 sub-band g1 (868.0–868.6 MHz, 1 % duty cycle): 868.1 MHz.
pub const FREQ_G1_HZ: u32 = 868_100_000;

/// SNR margin (dB) of a frame over `distance_m` (the medium's model).
#[must_use]
pub fn margin_db(config: &MediumConfig, params: LoraParams, distance_m: f64) -> f64 {
    let rssi = config.tx_power_dbm - config.path_loss_db(distance_m);
    let noise = -174.0 + 10.0 * f64::from(params.bw.hz()).log10() + config.noise_figure_db;
    rssi - noise - params.sf.snr_floor_db()
}

/// Undirected usable links (`a < b`) among `positions`.
#[must_use]
pub fn usable_links(positions: &[(f64, f64)]) -> Vec<Vec<usize>> {
    let cfg = medium_config();
    let params = channel().params;
    let n = positions.len();
    let mut adj = vec![Vec::new(); n];
    for a in 0..n {
        for b in (a + 1)..n {
            let d = (positions[a].0 - positions[b].0).hypot(positions[a].1 - positions[b].1);
            if margin_db(&cfg, params, d) >= USABLE_MARGIN_DB {
                adj[a].push(b);
                adj[b].push(a);
            }
        }
    }
    adj
}

fn connected(adj: &[Vec<usize>]) -> bool {
    let mut seen = vec![false; adj.len()];
    let mut stack = vec![0usize];
    while let Some(v) = stack.pop() {
        if seen.get(v).copied().unwrap_or(true) {
            continue;
        }
        seen[v] = true;
        stack.extend(adj[v].iter().copied());
    }
    seen.iter().all(|&s| s)
}

/// Positions (m) of the scenario's nodes, node 0 first.
///
/// # Errors
/// [`Error::Fixture`] when no connected random graph was drawn within
/// [`RANDOM_DRAWS_MAX`] draws.
pub fn positions(topology: LoraTopology, seed: u64) -> Result<Vec<(f64, f64)>, Error> {
    match topology {
        LoraTopology::Line(h) => Ok((0..=h).map(|i| (i as f64 * SPACING_M, 0.0)).collect()),
        LoraTopology::Grid(n) => {
            let w = crate::topology::grid_width(n);
            Ok((0..n)
                .map(|i| ((i % w) as f64 * SPACING_M, (i / w) as f64 * SPACING_M))
                .collect())
        }
        LoraTopology::Random(n) => {
            let mut rng = SimRng::stream(seed, 0x10ca);
            let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            for _ in 0..RANDOM_DRAWS_MAX {
                let p: Vec<(f64, f64)> = (0..n)
                    .map(|_| (unit() * RANDOM_SIDE_M, unit() * RANDOM_SIDE_M))
                    .collect();
                if connected(&usable_links(&p)) {
                    return Ok(p);
                }
            }
            Err(Error::Fixture(format!(
                "no connected random graph of {n} nodes in {RANDOM_DRAWS_MAX} draws"
            )))
        }
    }
}

/// Airtime (µs) of one frame of `len` bytes on [`channel`].
#[must_use]
pub fn airtime_us(len: usize) -> u64 {
    channel().params.time_on_air_us(len).unwrap_or(u64::MAX)
}

/// Seconds from microseconds, for reports.
#[must_use]
pub fn seconds(us: u64) -> f64 {
    us as f64 / Micros::SECOND as f64
}

/// The largest frame at [`DATA_RATE`] in EU868.
#[must_use]
pub fn frame_len() -> usize {
    EU868.frame_limit(&[DATA_RATE]).unwrap_or(51)
}
