//! A simulated LoRa medium, sans-IO: the caller passes virtual time in and
//! reads receptions out; randomness comes from one seed.
//!
//! # Model
//! - **Links.** Path loss per ordered pair of nodes, from positions
//!   (log-distance: `PL(d) = PL(d0) + 10 n log10(d / d0)`) or given as an
//!   explicit matrix. Received power is `tx_power - PL`.
//! - **Noise and loss.** The noise floor is `-174 dBm/Hz + 10 log10(BW) +
//!   NF`. A frame's SNR margin over its spreading factor's demodulation
//!   floor ([`SpreadingFactor::snr_floor_db`]) gives its packet error rate,
//!   a logistic curve `1 / (1 + exp(margin / slope))`: 50 % at the floor,
//!   under 1 % five slopes above it. An optional extra loss
//!   ([`MediumConfig::extra_loss`]) is drawn independently per frame and
//!   receiver. A receiver more than [`RANGE_MARGIN_DB`] below the floor is
//!   out of range: it neither hears nor is disturbed.
//! - **Half duplex.** A node that transmits during any part of a frame
//!   does not receive that frame. A node cannot start a frame while its
//!   previous one is on air ([`Error::RadioBusy`]).
//! - **Collisions.** Frames that overlap in time at a receiver, on the same
//!   frequency, spreading factor and bandwidth, destroy each other. With
//!   capture on, a frame survives when it is at least
//!   [`MediumConfig::capture_db`] stronger than the sum of its
//!   interferers. Different spreading factors are treated as orthogonal.
//! - **Duty cycle.** Every transmission is shown to a
//!   [`DutyCycleChecker`]; the medium does not refuse a node that breaks
//!   its duty cycle (that is the node's budget's job), it reports it.
//!
//! # Time and order
//! Frames are resolved when their end time has passed ([`Medium::advance`]),
//! in (end, transmission order), receivers in index order: one seed, one
//! trace.

use alloc::vec::Vec;

use crate::Error;
use crate::dutycycle::{DutyCycleChecker, Violation};
use crate::lora::LoraParams;
#[cfg(doc)]
use crate::lora::SpreadingFactor;
use crate::region::Region;
use crate::rng::SeededRng;
use crate::time::Micros;

/// How far below the demodulation floor (dB) a signal still counts as in
/// range (heard as interference and possibly, by luck, decoded).
pub const RANGE_MARGIN_DB: f64 = 10.0;

/// Physical constants of the medium.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediumConfig {
    /// The region whose duty cycles the checker enforces.
    pub region: Region,
    /// Transmit power of every node (dBm).
    pub tx_power_dbm: f64,
    /// Path loss at the reference distance (dB).
    pub reference_loss_db: f64,
    /// The reference distance (m).
    pub reference_m: f64,
    /// Path-loss exponent `n` (2 free space, 2.7–3.5 outdoors).
    pub exponent: f64,
    /// Receiver noise figure (dB).
    pub noise_figure_db: f64,
    /// Width of the packet-error curve (dB per e-fold).
    pub per_slope_db: f64,
    /// Capture threshold (dB): `Some(6.0)` lets a frame 6 dB stronger than
    /// its interferers survive; `None` means every overlap destroys both.
    pub capture_db: Option<f64>,
    /// Extra independent loss per frame and receiver, in `[0, 1]`.
    pub extra_loss: f64,
}

impl MediumConfig {
    /// EU868 with 14 dBm radios, 1 m reference loss of 31.2 dB (free space
    /// at 868 MHz), exponent 3.0, 6 dB noise figure, a 1 dB error curve,
    /// capture at 6 dB and no extra loss.
    #[must_use]
    pub const fn eu868() -> Self {
        Self {
            region: crate::region::EU868,
            tx_power_dbm: 14.0,
            reference_loss_db: 31.2,
            reference_m: 1.0,
            exponent: 3.0,
            noise_figure_db: 6.0,
            per_slope_db: 1.0,
            capture_db: Some(6.0),
            extra_loss: 0.0,
        }
    }

    /// Path loss (dB) over `distance_m`.
    #[must_use]
    pub fn path_loss_db(&self, distance_m: f64) -> f64 {
        let d = distance_m.max(self.reference_m);
        self.reference_loss_db + 10.0 * self.exponent * libm::log10(d / self.reference_m)
    }
}

/// What a transmission is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Centre frequency (Hz).
    pub freq_hz: u32,
    /// Modulation and packet settings.
    pub params: LoraParams,
}

/// Why a receiver did not get a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// The receiver was transmitting during the frame.
    HalfDuplex,
    /// Another frame overlapped it on the same channel and SF.
    Collision,
    /// Lost to noise (the packet error rate) or the extra loss.
    Noise,
}

/// One frame at one in-range receiver, delivered or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Reception {
    /// Transmission number (order of [`Medium::transmit`] calls).
    pub frame: u64,
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// When the frame ended (it is delivered then).
    pub at: Micros,
    /// Received power (dBm).
    pub rssi_dbm: f64,
    /// The bytes, or why they were lost.
    pub outcome: Result<Vec<u8>, Loss>,
}

/// A transmission the medium accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its number.
    pub frame: u64,
    /// Its airtime (µs).
    pub airtime_us: u64,
    /// When it ends.
    pub end: Micros,
}

#[derive(Debug, Clone)]
struct Frame {
    id: u64,
    from: usize,
    channel: Channel,
    start: u64,
    end: u64,
    payload: Vec<u8>,
    resolved: bool,
}

impl Frame {
    fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }

    fn same_channel(&self, other: &Self) -> bool {
        self.channel.freq_hz == other.channel.freq_hz
            && self.channel.params.sf == other.channel.params.sf
            && self.channel.params.bw == other.channel.params.bw
    }
}

/// The shared radio medium of `n` nodes. Invariants: `now` never goes
/// backwards; every frame is resolved exactly once, after its end; the same
/// seed and the same calls give the same receptions.
#[derive(Debug, Clone)]
pub struct Medium {
    config: MediumConfig,
    nodes: usize,
    /// Path loss (dB) from row to column; `None`: no link.
    loss_db: Vec<Option<f64>>,
    frames: Vec<Frame>,
    next_id: u64,
    now: Micros,
    busy_until: Vec<u64>,
    rng: SeededRng,
    checker: DutyCycleChecker,
    airtime_us: Vec<u64>,
}

impl Medium {
    /// Nodes at `positions` (metres), path loss from distance.
    #[must_use]
    pub fn with_positions(config: MediumConfig, positions: &[(f64, f64)], seed: u64) -> Self {
        let n = positions.len();
        let mut loss = Vec::with_capacity(n * n);
        for (i, a) in positions.iter().enumerate() {
            for (j, b) in positions.iter().enumerate() {
                loss.push((i != j).then(|| {
                    let d = libm::hypot(a.0 - b.0, a.1 - b.1);
                    config.path_loss_db(d)
                }));
            }
        }
        Self::build(config, n, loss, seed)
    }

    /// Nodes joined by an explicit matrix of path losses (dB), row-major
    /// from sender to receiver; `None` means no link. The diagonal is ignored.
    ///
    /// # Errors
    /// [`Error::LinkMatrixSize`] when the matrix is not `nodes × nodes`.
    pub fn with_link_matrix(
        config: MediumConfig,
        nodes: usize,
        loss_db: Vec<Option<f64>>,
        seed: u64,
    ) -> Result<Self, Error> {
        if loss_db.len() != nodes * nodes {
            return Err(Error::LinkMatrixSize {
                got: loss_db.len(),
                nodes,
            });
        }
        Ok(Self::build(config, nodes, loss_db, seed))
    }

    fn build(config: MediumConfig, nodes: usize, loss_db: Vec<Option<f64>>, seed: u64) -> Self {
        Self {
            config,
            nodes,
            loss_db,
            frames: Vec::new(),
            next_id: 0,
            now: Micros(0),
            busy_until: alloc::vec![0; nodes],
            rng: SeededRng::new(seed),
            checker: DutyCycleChecker::new(config.region),
            airtime_us: alloc::vec![0; nodes],
        }
    }

    /// Number of nodes.
    #[must_use]
    pub const fn nodes(&self) -> usize {
        self.nodes
    }

    fn set_now(&mut self, now: Micros) -> Result<(), Error> {
        if now < self.now {
            return Err(Error::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        self.now = now;
        Ok(())
    }

    /// Node `from` starts sending `payload` on `channel` at `now`.
    ///
    /// # Errors
    /// [`Error::TimeWentBackwards`], [`Error::UnknownNode`],
    /// [`Error::RadioBusy`] while its previous frame is on air, and the
    /// airtime errors of [`LoraParams::time_on_air_us`]. Nothing is sent
    /// on error.
    pub fn transmit(
        &mut self,
        now: Micros,
        from: usize,
        channel: Channel,
        payload: Vec<u8>,
    ) -> Result<Sent, Error> {
        if from >= self.nodes {
            return Err(Error::UnknownNode { node: from });
        }
        let airtime_us = channel.params.time_on_air_us(payload.len())?;
        self.set_now(now)?;
        if self.busy_until[from] > now.0 {
            return Err(Error::RadioBusy {
                node: from,
                until: Micros(self.busy_until[from]),
            });
        }
        let end = now.0 + airtime_us;
        self.busy_until[from] = end;
        self.airtime_us[from] += airtime_us;
        self.checker.observe(from, now, channel.freq_hz, airtime_us);
        let id = self.next_id;
        self.next_id += 1;
        self.frames.push(Frame {
            id,
            from,
            channel,
            start: now.0,
            end,
            payload,
            resolved: false,
        });
        Ok(Sent {
            frame: id,
            airtime_us,
            end: Micros(end),
        })
    }

    /// When the next frame on air ends (the next time [`Medium::advance`]
    /// has something to report), if any.
    #[must_use]
    pub fn next_event(&self) -> Option<Micros> {
        self.frames
            .iter()
            .filter(|f| !f.resolved)
            .map(|f| Micros(f.end))
            .min()
    }

    /// Resolves every frame that has ended by `now`: one [`Reception`] per
    /// in-range receiver, in (end, frame, receiver) order.
    ///
    /// # Errors
    /// [`Error::TimeWentBackwards`].
    pub fn advance(&mut self, now: Micros) -> Result<Vec<Reception>, Error> {
        self.set_now(now)?;
        let mut due: Vec<usize> = (0..self.frames.len())
            .filter(|&i| !self.frames[i].resolved && self.frames[i].end <= now.0)
            .collect();
        due.sort_by_key(|&i| (self.frames[i].end, self.frames[i].id));
        let mut out = Vec::new();
        for i in due {
            self.resolve(i, &mut out);
            self.frames[i].resolved = true;
        }
        // Keep only frames that may still overlap an unresolved or future one.
        let keep_from = self
            .frames
            .iter()
            .filter(|f| !f.resolved)
            .map(|f| f.start)
            .min()
            .unwrap_or(now.0)
            .min(now.0);
        self.frames.retain(|f| !f.resolved || f.end > keep_from);
        Ok(out)
    }

    fn rssi(&self, from: usize, to: usize) -> Option<f64> {
        self.loss_db[from * self.nodes + to].map(|pl| self.config.tx_power_dbm - pl)
    }

    fn resolve(&mut self, index: usize, out: &mut Vec<Reception>) {
        let f = self.frames[index].clone();
        for to in 0..self.nodes {
            if to == f.from {
                continue;
            }
            let Some(rssi) = self.rssi(f.from, to) else {
                continue;
            };
            let margin = self.margin_db(rssi, f.channel.params);
            if margin < -RANGE_MARGIN_DB {
                continue;
            }
            // Draw both chances for every in-range receiver, so one frame's
            // fate does not shift the random stream of the next.
            let per = 1.0 / (1.0 + libm::exp(margin / self.config.per_slope_db));
            let noise_loss = self.rng.chance(per) | self.rng.chance(self.config.extra_loss);
            let half_duplex = self.frames.iter().any(|g| g.from == to && g.overlaps(&f));
            let outcome = if half_duplex {
                Err(Loss::HalfDuplex)
            } else if self.collided(&f, to, rssi) {
                Err(Loss::Collision)
            } else if noise_loss {
                Err(Loss::Noise)
            } else {
                Ok(f.payload.clone())
            };
            out.push(Reception {
                frame: f.id,
                from: f.from,
                to,
                at: Micros(f.end),
                rssi_dbm: rssi,
                outcome,
            });
        }
    }

    /// SNR margin (dB) of a signal at `rssi_dbm` over the demodulation
    /// floor of `params`.
    fn margin_db(&self, rssi_dbm: f64, params: LoraParams) -> f64 {
        let noise_dbm =
            -174.0 + 10.0 * libm::log10(f64::from(params.bw.hz())) + self.config.noise_figure_db;
        rssi_dbm - noise_dbm - params.sf.snr_floor_db()
    }

    /// Whether frame `f` is destroyed at `to` by overlapping frames.
    fn collided(&self, f: &Frame, to: usize, rssi: f64) -> bool {
        let mut interference_mw = 0.0;
        let mut any = false;
        for g in &self.frames {
            if g.id == f.id || g.from == to || !g.overlaps(f) || !g.same_channel(f) {
                continue;
            }
            let Some(g_rssi) = self.rssi(g.from, to) else {
                continue;
            };
            if self.margin_db(g_rssi, g.channel.params) < -RANGE_MARGIN_DB {
                continue;
            }
            any = true;
            interference_mw += libm::pow(10.0, g_rssi / 10.0);
        }
        if !any {
            return false;
        }
        match self.config.capture_db {
            Some(threshold) => rssi - 10.0 * libm::log10(interference_mw) < threshold,
            None => true,
        }
    }

    /// Every duty-cycle violation seen so far (none for nodes that follow
    /// their [`crate::DutyCycleBudget`]).
    #[must_use]
    pub fn duty_cycle_violations(&self) -> &[Violation] {
        self.checker.violations()
    }

    /// Total airtime (µs) of node `node`'s transmissions so far (0 for an
    /// unknown node).
    #[must_use]
    pub fn airtime_us(&self, node: usize) -> u64 {
        self.airtime_us.get(node).copied().unwrap_or(0)
    }

    /// Whether frames sent with `params` from `from` reach `to` at all
    /// (within [`RANGE_MARGIN_DB`] of the demodulation floor).
    #[must_use]
    pub fn in_range(&self, from: usize, to: usize, params: LoraParams) -> bool {
        if from >= self.nodes || to >= self.nodes || from == to {
            return false;
        }
        self.rssi(from, to)
            .is_some_and(|rssi| self.margin_db(rssi, params) >= -RANGE_MARGIN_DB)
    }
}

#[cfg(test)]
#[path = "medium_tests.rs"]
mod tests;
