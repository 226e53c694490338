//! The unicast baseline: how a naive mesh moves a release over LoRa. Each
//! node that holds the release announces it (the same Trickle timer as the
//! coded link); a node that lacks it asks the first holder it hears; the
//! holder sends the bundle and the image to that one neighbour as numbered
//! unicast frames, stop-and-wait: each frame is acknowledged, and sent
//! again when its acknowledgement does not come. A holder serves its
//! askers one after another. Every frame asks the node's duty-cycle
//! budget first, as in the coded link.

use std::collections::{BTreeMap, VecDeque};

use meshota_manifest::Hash;
use meshota_mesh::radio::msg::{Announce, ReleaseKey};
use meshota_mesh::trickle::Trickle;
use meshota_mesh::{SeededRng, Timestamp, TrickleConfig};
use meshota_radios::{
    DutyCycleBudget, EU868, FrameCodec, FrameKind, Header, Medium, Micros, ShortId,
};

use super::run::{EngineOutcome, LoraOptions, MESH_KEY, Scene, Station, drive};
use super::scenario::{self, airtime_us};
use crate::Error;
use crate::rng::SimRng;

/// Bytes of a data frame's header: sequence number and frame count (u16 LE).
const DATA_HEADER: usize = 4;
/// Transmissions of one frame before the holder gives up on the asker.
pub const TRIES_MAX: u32 = 8;
/// Askers a holder queues.
pub const QUEUE_MAX: usize = 16;
/// An asker that heard no data for this long asks again (µs).
pub const REQUEST_RETRY_US: u64 = 10 * Micros::SECOND;

struct Session {
    peer: ShortId,
    seq: u16,
    tries: u32,
    deadline: Option<Micros>,
    due: bool,
}

/// One node of the baseline.
pub struct UnicastNode {
    me: ShortId,
    codec: FrameCodec,
    budget: DutyCycleBudget,
    rng: SeededRng,
    trickle: Trickle,
    release: Hash,
    bundle_len: usize,
    blob: Option<Vec<u8>>,
    parts: Vec<Option<Vec<u8>>>,
    completed: bool,
    server: Option<ShortId>,
    /// Requests per holder that brought no data: a weak link; the asker
    /// moves on to a holder with fewer.
    failures: BTreeMap<ShortId, u32>,
    holders: std::collections::BTreeSet<ShortId>,
    heard_server: bool,
    asked: bool,
    request_at: Option<Micros>,
    request_due: bool,
    announce_due: bool,
    ack_due: Option<(ShortId, u16)>,
    queue: VecDeque<(ShortId, u16)>,
    session: Option<Session>,
    busy_until: Micros,
    freq_hz: u32,
}

impl UnicastNode {
    fn per_frame(&self) -> usize {
        self.codec.max_payload() - DATA_HEADER
    }

    fn total(&self, blob_len: usize) -> u16 {
        u16::try_from(blob_len.div_ceil(self.per_frame())).unwrap_or(u16::MAX)
    }

    fn frame(&self, kind: FrameKind, dst: ShortId, payload: &[u8]) -> Option<Vec<u8>> {
        let h = Header {
            kind,
            src: self.me,
            dst,
            msg_id: 0,
            frag_index: 0,
            frag_count: 1,
        };
        self.codec.encode(&h, payload).ok()
    }

    fn has(&self) -> bool {
        self.blob.is_some()
    }

    fn next_frame(&mut self, now: Micros) -> Option<Vec<u8>> {
        if let Some((dst, seq)) = self.ack_due.take() {
            return self.frame(FrameKind::Progress, dst, &seq.to_le_bytes());
        }
        if let (Some(s), Some(blob)) = (self.session.as_mut(), self.blob.as_ref()) {
            if s.due {
                s.due = false;
                let per = self.codec.max_payload() - DATA_HEADER;
                let total = u16::try_from(blob.len().div_ceil(per)).unwrap_or(u16::MAX);
                let from = usize::from(s.seq) * per;
                let data = blob.get(from..(from + per).min(blob.len()))?;
                let mut p = s.seq.to_le_bytes().to_vec();
                p.extend_from_slice(&total.to_le_bytes());
                p.extend_from_slice(data);
                let peer = s.peer;
                let airtime = airtime_us(p.len() + meshota_radios::frame::OVERHEAD);
                s.deadline = Some(now.plus(airtime + airtime_us(14) + 250_000));
                return self.frame(FrameKind::Message, peer, &p);
            }
        }
        if self.announce_due {
            self.announce_due = false;
            let a = Announce {
                release: ReleaseKey::of(&self.release),
                security_version: crate::fixture::TARGET_SECURITY_VERSION,
                complete: self.has(),
                pieces: false,
                fetching: false,
                needy: 0,
                leaf: false,
            };
            return self.frame(FrameKind::Announce, ShortId::BROADCAST, &a.encode());
        }
        if self.request_due {
            self.request_due = false;
            let server = self.server?;
            let first_missing = self.parts.iter().position(Option::is_none).unwrap_or(0);
            let from = u16::try_from(first_missing).unwrap_or(0);
            self.heard_server = false;
            self.asked = true;
            return self.frame(FrameKind::Request, server, &from.to_le_bytes());
        }
        None
    }

    fn start_next_session(&mut self) {
        if self.session.is_none() {
            if let Some((peer, seq)) = self.queue.pop_front() {
                self.session = Some(Session {
                    peer,
                    seq,
                    tries: 0,
                    deadline: None,
                    due: true,
                });
            }
        }
    }
}

impl Station for UnicastNode {
    fn handle_frame(&mut self, now: Micros, bytes: &[u8]) {
        let Ok(f) = self.codec.decode(bytes) else {
            return;
        };
        let h = f.header;
        if Some(h.src) == self.server {
            self.heard_server = true;
        }
        match h.kind {
            FrameKind::Announce => {
                let Ok(a) = Announce::decode(f.payload) else {
                    return;
                };
                if self.has() {
                    if !a.complete {
                        self.trickle.reset(Timestamp(now.0 / 1_000), &mut self.rng);
                    }
                } else if a.complete && a.release.names(&self.release) && self.server.is_none() && {
                    self.holders.insert(h.src);
                    let f = |k: &ShortId| self.failures.get(k).copied().unwrap_or(0);
                    let least = self.holders.iter().map(f).min().unwrap_or(0);
                    f(&h.src) <= least
                } {
                    self.server = Some(h.src);
                    let b = self.rng.range(0, 1_000_000);
                    self.request_at = Some(now.plus(b));
                } else if !a.complete || !a.release.names(&self.release) {
                    self.trickle.hear_consistent();
                }
            }
            FrameKind::Request if h.dst == self.me && self.has() => {
                let Ok(from) = <[u8; 2]>::try_from(f.payload) else {
                    return;
                };
                let from = u16::from_le_bytes(from);
                let busy = self.session.as_ref().is_some_and(|s| s.peer == h.src);
                if !busy
                    && !self.queue.iter().any(|(p, _)| *p == h.src)
                    && self.queue.len() < QUEUE_MAX
                {
                    self.queue.push_back((h.src, from));
                }
                self.start_next_session();
            }
            FrameKind::Message if h.dst == self.me && !self.has() => {
                if f.payload.len() < DATA_HEADER {
                    return;
                }
                let seq = u16::from_le_bytes([f.payload[0], f.payload[1]]);
                let total = usize::from(u16::from_le_bytes([f.payload[2], f.payload[3]]));
                if self.parts.len() != total {
                    self.parts = vec![None; total];
                }
                if let Some(slot) = self.parts.get_mut(usize::from(seq)) {
                    *slot = Some(f.payload[DATA_HEADER..].to_vec());
                }
                self.ack_due = Some((h.src, seq));
                self.request_at = Some(now.plus(REQUEST_RETRY_US));
                if !self.parts.is_empty() && self.parts.iter().all(Option::is_some) {
                    let blob: Vec<u8> = self.parts.iter().flatten().flatten().copied().collect();
                    self.parts.clear();
                    self.blob = Some(blob);
                    self.request_at = None;
                    self.trickle.reset(Timestamp(now.0 / 1_000), &mut self.rng);
                }
            }
            FrameKind::Progress if h.dst == self.me => {
                if f.payload.len() != 2 {
                    return;
                }
                let seq = u16::from_le_bytes([f.payload[0], f.payload[1]]);
                let total = self.blob.as_ref().map_or(0, |b| self.total(b.len()));
                let mut done = false;
                if let Some(s) = self.session.as_mut() {
                    if s.peer == h.src && s.seq == seq {
                        s.seq += 1;
                        s.tries = 0;
                        s.deadline = None;
                        s.due = true;
                        done = s.seq >= total;
                    }
                }
                if done {
                    self.session = None;
                    self.start_next_session();
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Micros) {
        if now.0 >= self.trickle.deadline().0 * 1_000
            && self
                .trickle
                .on_timeout(Timestamp(now.0 / 1_000), &mut self.rng)
        {
            self.announce_due = true;
        }
        if self.request_at.is_some_and(|r| now >= r) && !self.has() {
            if self.asked && !self.heard_server {
                // Nothing at all from the holder since we asked: a weak
                // link (a busy holder is still heard serving others).
                if let Some(server) = self.server.take() {
                    *self.failures.entry(server).or_insert(0) += 1;
                }
                self.asked = false;
            }
            self.heard_server = false;
            self.request_due = true;
            self.request_at = Some(now.plus(REQUEST_RETRY_US));
        }
        let mut drop_session = false;
        if let Some(s) = self.session.as_mut() {
            if s.deadline.is_some_and(|d| now >= d) {
                s.deadline = None;
                s.tries += 1;
                s.due = true;
                drop_session = s.tries >= TRIES_MAX;
            }
        }
        if drop_session {
            self.session = None;
            self.start_next_session();
        }
    }

    fn poll_timeout(&self) -> Micros {
        let mut t = Micros(self.trickle.deadline().0 * 1_000);
        if let Some(r) = self.request_at {
            t = t.min(r);
        }
        if let Some(s) = &self.session {
            if let Some(d) = s.deadline {
                t = t.min(d);
            }
            if s.due {
                t = t.min(self.busy_until);
            }
        }
        if self.ack_due.is_some() || self.announce_due || self.request_due {
            t = t.min(self.busy_until);
        }
        t
    }

    fn poll_transmit(&mut self, now: Micros) -> Option<Vec<u8>> {
        if now < self.busy_until {
            return None;
        }
        let frame = self.next_frame(now)?;
        let airtime = airtime_us(frame.len());
        let freq = self.freq_hz;
        if self.budget.try_transmit(now, freq, airtime).is_err() {
            // Over budget: drop this frame; retransmission timers send it
            // again later (and the budget refuses again until it allows).
            if let Some(s) = self.session.as_mut() {
                s.deadline = self.budget.earliest(now, freq, airtime).ok();
            }
            return None;
        }
        self.busy_until = now.plus(airtime);
        Some(frame)
    }

    fn describe(&self) -> String {
        format!(
            "{:?}: has {}, {}/{} frames, server {:?}, failures {:?}, session {:?}, queue {}, request_at {:?}",
            self.me,
            self.has(),
            self.parts.iter().filter(|p| p.is_some()).count(),
            self.parts.len(),
            self.server,
            self.failures,
            self.session.as_ref().map(|s| (s.peer, s.seq, s.tries)),
            self.queue.len(),
            self.request_at,
        )
    }

    fn take_completed(&mut self) -> Option<Vec<u8>> {
        if self.completed {
            return None;
        }
        let image = self.blob.as_ref()?.get(self.bundle_len..)?.to_vec();
        self.completed = true;
        Some(image)
    }
}

/// Runs the baseline on `positions` (node 0 holds the release).
///
/// # Errors
/// As [`drive`].
pub fn run(
    o: &LoraOptions,
    positions: &[(f64, f64)],
    bundle: &[u8],
    chunks: &[Vec<u8>],
    image_hash: &Hash,
) -> Result<EngineOutcome, Error> {
    let medium_seed = SimRng::stream(o.seed, 0x3ed1).next_u64();
    let mut medium = Medium::with_positions(scenario::medium_config(), positions, medium_seed);
    let mut blob = bundle.to_vec();
    for c in chunks {
        blob.extend_from_slice(c);
    }
    let release = Hash::of(bundle);
    let required: Vec<usize> = (0..positions.len()).collect();
    let joins = vec![0u64; positions.len()];
    let mut make = |i: usize, now: Micros| -> Result<Box<dyn Station>, Error> {
        let codec = FrameCodec::new(&MESH_KEY, scenario::frame_len())
            .map_err(|e| Error::Core(e.to_string()))?;
        let mut rng = SeededRng::new(SimRng::stream(o.seed, 0xba5e + i as u64).next_u64());
        let trickle = Trickle::new(TrickleConfig::LORA, Timestamp(now.0 / 1_000), &mut rng);
        Ok(Box::new(UnicastNode {
            me: ShortId::derive(crate::fixture::node_id(i).0.as_slice(), 0),
            codec,
            budget: DutyCycleBudget::new(EU868),
            rng,
            trickle,
            release,
            bundle_len: bundle.len(),
            blob: (i == 0).then(|| blob.clone()),
            parts: Vec::new(),
            completed: false,
            server: None,
            failures: BTreeMap::new(),
            holders: std::collections::BTreeSet::new(),
            heard_server: false,
            asked: false,
            request_at: None,
            request_due: false,
            announce_due: false,
            ack_due: None,
            queue: VecDeque::new(),
            session: None,
            busy_until: now,
            freq_hz: o.freq_hz,
        }))
    };
    let scene = Scene {
        freq_hz: o.freq_hz,
        positions,
        seed: o.seed,
        joins: &joins,
        required: &required,
        image_hash,
    };
    drive(&mut medium, &scene, &mut make)
}
