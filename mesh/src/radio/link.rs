//! The radio link state machine of one node (see the module doc of
//! [`crate::radio`] for the protocol).
//!
//! # Driving it
//! - [`RadioLink::handle_frame`] for every frame the radio received;
//! - [`RadioLink::handle_timeout`] when [`RadioLink::poll_timeout`] has come;
//! - [`RadioLink::poll_transmit`] after either: a frame to put on the air
//!   now, already charged to the duty-cycle budget (so the driver must send
//!   it, and the node never exceeds its duty cycle);
//! - [`RadioLink::poll_event`] for what the driver should act on.
//!
//! Time is [`Micros`] passed in; randomness comes from the seed in
//! [`RadioConfig`].

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use meshota_manifest::{Hash, InstallPolicy, TrustRoot, Verified};
use meshota_radios::{
    DutyCycleBudget, FrameCodec, FrameKind, Header, Micros, ObjectEncoder, ShortId, symbol_size_for,
};

use super::bundle::{self, Pieces};
use super::carried::{Carried, ChunkSlot};
pub use super::config::{RadioConfig, RadioTiming};
use super::error::RadioError;
use super::msg::{Announce, ManifestRequest, PayloadRequest, TAG_LEN, tag_of};
pub use super::report::{LinkEvent, LinkStats};
use crate::rng::SeededRng;
use crate::time::Timestamp;
use crate::trickle::Trickle;

#[derive(Debug, Default, Clone)]
struct Neighbour {
    announced: Option<Announce>,
    complete_at: Option<Micros>,
    symbols_at: Option<Micros>,
    adopted_at: Option<Micros>,
    asked_at: Option<Micros>,
    /// Our requests to it that went unanswered in a row (no fragment or
    /// symbol from it before we asked again): a weak link.
    failures: u32,
    /// Last fragment or symbol heard from it.
    served_at: Option<Micros>,
    /// The count of needy neighbours in its last announcement: how many
    /// nodes a burst of its would reach that still need the release.
    coverage: u8,
    /// When it last showed that it lacks our release or some chunk of it
    /// (an announcement, a request); `None` once it announced itself
    /// complete or when it runs something newer.
    needy_at: Option<Micros>,
    /// Link quality: message id of its last unfragmented frame heard, and
    /// frames heard out of frames it sent since we first heard it (halved
    /// past [`QUALITY_WINDOW`], so recent frames weigh most).
    last_seq: Option<u8>,
    heard: u32,
    sent: u32,
}

impl Neighbour {
    /// Takes the message id of an unfragmented frame heard from it.
    fn hear_seq(&mut self, id: u8) {
        match self.last_seq {
            None => {
                // One frame heard, no gap known yet: count it as one of
                // two (a weak link until a second frame says otherwise).
                self.heard = 1;
                self.sent = 2;
            }
            Some(last) => {
                let gap = u32::from(id.wrapping_sub(last));
                if gap == 0 {
                    return;
                }
                self.heard += 1;
                self.sent += gap;
            }
        }
        self.last_seq = Some(id);
        if self.sent > QUALITY_WINDOW {
            self.heard = self.heard.div_ceil(2);
            self.sent = self.sent.div_ceil(2);
        }
    }

    /// Whether we hear at least [`STRONG_PERCENT`] of its frames: a burst
    /// of its would reach us, and one of ours it.
    fn strong(&self) -> bool {
        self.sent > 0 && self.heard * 100 >= self.sent * STRONG_PERCENT
    }
}

#[derive(Debug)]
struct Fetch {
    id: Hash,
    security_version: u64,
    server: ShortId,
    pieces: Pieces,
    failures: u32,
}

/// One node's LoRa link. Invariants: every frame it returns from
/// [`RadioLink::poll_transmit`] was admitted by its [`DutyCycleBudget`]
/// and is at most `frame_len` bytes; it carries, relays and serves only a
/// release whose bundle verified; a chunk is held only when its bytes hash
/// to the id in the signed index.
#[derive(Debug)]
pub struct RadioLink {
    config: RadioConfig,
    codec: FrameCodec,
    budget: DutyCycleBudget,
    rng: SeededRng,
    trust: Verified<TrustRoot>,
    trickle: Trickle,
    symbol_size: u16,
    installed: (Hash, u64),
    carried: Option<Carried>,
    fetch: Option<Fetch>,
    rejected: BTreeSet<Hash>,
    neighbours: BTreeMap<ShortId, Neighbour>,
    busy_until: Micros,
    quiet_until: Micros,
    budget_wait: Option<Micros>,
    pending: Option<Vec<u8>>,
    announce_due: bool,
    request_due: bool,
    request_at: Option<Micros>,
    /// The neighbour last asked, and when.
    asked: Option<(ShortId, Micros)>,
    burst_at: Option<Micros>,
    bursting: bool,
    /// Neighbours that asked us for symbols since our last burst, and when
    /// the first did.
    askers: BTreeSet<ShortId>,
    round_start: Micros,
    pieces_out: BTreeSet<u8>,
    want: Vec<u32>,
    next_chunk: usize,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
    /// The latest time handed in (for choices made without a `now`).
    clock: Micros,
    /// Message id of our next unfragmented frame.
    seq: u8,
}

impl RadioLink {
    /// A link at `now` for a node running release `installed` (id and
    /// security version).
    ///
    /// # Errors
    /// [`RadioError::Frame`] when the frame length cannot carry frames.
    pub fn new(
        config: RadioConfig,
        trust: Verified<TrustRoot>,
        installed: (Hash, u64),
        now: Micros,
    ) -> Result<Self, RadioError> {
        let codec = FrameCodec::new(&config.mesh_key, config.frame_len)?;
        let size = symbol_size_for(codec.max_payload());
        let symbol_size = u16::try_from(size).map_err(|_| RadioError::Malformed {
            what: "config",
            reason: "symbol size",
        })?;
        let mut rng = SeededRng::new(config.seed);
        let trickle = Trickle::new(config.trickle, ms(now), &mut rng);
        Ok(Self {
            budget: DutyCycleBudget::new(config.region),
            codec,
            rng,
            trust,
            trickle,
            symbol_size,
            installed,
            carried: None,
            fetch: None,
            rejected: BTreeSet::new(),
            neighbours: BTreeMap::new(),
            busy_until: now,
            quiet_until: now,
            budget_wait: None,
            pending: None,
            announce_due: false,
            request_due: false,
            request_at: None,
            asked: None,
            burst_at: None,
            bursting: false,
            askers: BTreeSet::new(),
            round_start: now,
            pieces_out: BTreeSet::new(),
            want: Vec::new(),
            next_chunk: 0,
            events: VecDeque::new(),
            stats: LinkStats::default(),
            clock: now,
            seq: 0,
            config,
        })
    }

    /// Gives the link a release it holds whole (the origin, or a node that
    /// got it over another link): the bundle is verified and every chunk
    /// checked against the index before it is served.
    ///
    /// # Errors
    /// The bundle's verification errors; [`RadioError::Index`] when a chunk
    /// is missing or does not hash to its id.
    pub fn add_release(
        &mut self,
        now: Micros,
        bundle_bytes: Vec<u8>,
        chunks: &[Vec<u8>],
    ) -> Result<(), RadioError> {
        let verified = bundle::verify(bundle_bytes, None, &self.trust, &self.policy())?;
        if chunks.len() != verified.chunks.len() {
            return Err(RadioError::Index(
                "chunk count differs from the index".into(),
            ));
        }
        let mut carried = Carried::new(verified, self.symbol_size)?;
        for (i, bytes) in chunks.iter().enumerate() {
            if Hash::of(bytes) != carried.bundle.chunks[i].hash {
                return Err(RadioError::Index(alloc::format!(
                    "chunk {i} does not hash to its id"
                )));
            }
            carried.slots[i] = ChunkSlot::Held(bytes.clone());
        }
        carried.held = chunks.len();
        self.events.push_back(LinkEvent::ReleaseComplete {
            release: carried.bundle.id,
        });
        self.want = alloc::vec![0; carried.slots.len()];
        self.carried = Some(carried);
        self.fetch = None;
        self.trickle.reset(ms(now), &mut self.rng);
        Ok(())
    }

    fn policy(&self) -> InstallPolicy<'_> {
        InstallPolicy {
            hardware: None,
            installed_security_version: None,
            expiration: self.config.expiration,
        }
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The release carried (verified), if any.
    #[must_use]
    pub fn release(&self) -> Option<Hash> {
        self.carried.as_ref().map(|c| c.bundle.id)
    }

    /// Whether the carried release is held whole.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.carried.as_ref().is_some_and(Carried::complete)
    }

    /// The carried release's image (its chunks in index order), when whole.
    #[must_use]
    pub fn payload(&self) -> Option<Vec<u8>> {
        let c = self.carried.as_ref().filter(|c| c.complete())?;
        let mut out = Vec::new();
        for s in &c.slots {
            if let ChunkSlot::Held(b) = s {
                out.extend_from_slice(b);
            }
        }
        Some(out)
    }

    /// Short ids of the neighbours whose frames authenticated.
    pub fn neighbours(&self) -> impl Iterator<Item = ShortId> + '_ {
        self.neighbours.keys().copied()
    }

    /// A one-line description of the link's state, for reports of nodes
    /// that did not converge.
    #[must_use]
    pub fn describe(&self) -> String {
        let carried = self.carried.as_ref().map_or_else(
            || "no release".into(),
            |c| {
                alloc::format!(
                    "release {} {}/{} chunks",
                    c.bundle.id.short(),
                    c.held,
                    c.slots.len()
                )
            },
        );
        let fetch = self.fetch.as_ref().map_or_else(String::new, |f| {
            let held = f.pieces.held().map_or(0, |p| p.count());
            alloc::format!(
                ", fetching {} from {:?} ({held} pieces)",
                f.id.short(),
                f.server
            )
        });
        alloc::format!(
            "{:?}: {carried}{fetch}, source {:?}, {} neighbours, request_at {:?}, sent {} frames ({} requests, {} pieces, {} symbols)",
            self.config.short_id,
            self.choose_source(self.clock),
            self.neighbours.len(),
            self.request_at,
            self.stats.frames_sent,
            self.stats.sent_requests,
            self.stats.sent_pieces,
            self.stats.sent_symbols,
        )
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn state(&self) -> Announce {
        match &self.carried {
            Some(c) => Announce {
                release: c.bundle.id,
                security_version: c.bundle.security_version,
                complete: c.complete(),
                needy: self.needy_neighbours(),
            },
            None => Announce {
                release: self.installed.0,
                security_version: self.installed.1,
                complete: true,
                needy: 0,
            },
        }
    }

    /// Neighbours heard lacking the carried release or some of its chunks
    /// within [`NEEDY_FRESH_US`] (saturating at 255).
    fn needy_neighbours(&self) -> u8 {
        let now = self.clock;
        let n = self
            .neighbours
            .values()
            .filter(|n| n.strong() && n.needy_at.is_some_and(|t| now.since(t) < NEEDY_FRESH_US))
            .count();
        u8::try_from(n).unwrap_or(u8::MAX)
    }

    /// A neighbour that asked us stopped needing us (it asked another
    /// source, or announced itself complete): when no asker is left, a
    /// burst not yet started is called off.
    fn drop_asker(&mut self, who: ShortId) {
        if !self.askers.remove(&who) || !self.askers.is_empty() || self.bursting {
            return;
        }
        self.want.iter_mut().for_each(|w| *w = 0);
        if self.pieces_out.is_empty() {
            self.burst_at = None;
        }
        self.stats.bursts_suppressed += 1;
    }

    fn backoff(&mut self, max_us: u64) -> u64 {
        self.rng.range(0, max_us.max(1))
    }

    fn needy(&self) -> bool {
        self.fetch.is_some() || self.carried.as_ref().is_some_and(|c| !c.complete())
    }

    /// Asks again after the channel is quiet (a burst is going on, or a
    /// neighbour's request will be answered).
    fn postpone_request(&mut self, now: Micros) {
        if !self.needy() {
            return;
        }
        let b = self.backoff(self.config.timing.request_backoff_us);
        let at = now.plus(self.config.timing.quiet_us + b);
        self.request_at = Some(self.request_at.map_or(at, |r| r.max(at)));
        self.request_due = false;
    }

    fn schedule_request(&mut self, now: Micros) {
        if self.request_at.is_none() && !self.request_due {
            let b = self.backoff(self.config.timing.request_backoff_us);
            self.request_at = Some(now.plus(b).max(self.quiet_until));
        }
    }

    fn schedule_burst(&mut self, now: Micros) {
        if self.burst_at.is_none() {
            // Bundle answers: a sixteenth of the symbol backoff (8 s).
            let b = self.backoff(self.config.timing.burst_backoff_us / 16);
            self.burst_at = Some(now.plus(b));
        }
    }

    /// Takes one received frame.
    pub fn handle_frame(&mut self, now: Micros, bytes: &[u8]) {
        self.clock = self.clock.max(now);
        self.stats.frames_heard += 1;
        let frame = match self.codec.decode(bytes) {
            Ok(f) => f,
            Err(meshota_radios::Error::BadMac) => {
                self.stats.frames_bad_mac += 1;
                return;
            }
            Err(_) => {
                self.stats.frames_malformed += 1;
                return;
            }
        };
        let h = frame.header;
        if h.src == self.config.short_id || h.src == ShortId::BROADCAST {
            self.stats.frames_malformed += 1;
            return;
        }
        let n = self.neighbours.entry(h.src).or_default();
        if h.kind != FrameKind::Message {
            n.hear_seq(h.msg_id);
        }
        let result = match h.kind {
            FrameKind::Announce => {
                Announce::decode(frame.payload).map(|a| self.on_announce(now, h.src, a))
            }
            FrameKind::Request => ManifestRequest::decode(frame.payload)
                .map(|r| self.on_manifest_request(now, &h, &r)),
            FrameKind::Message => self.on_piece(now, &h, frame.payload),
            FrameKind::Symbol => self.on_symbol(now, h.src, frame.payload),
            FrameKind::Progress => self.on_payload_request(now, &h, frame.payload),
        };
        if result.is_err() {
            self.stats.frames_malformed += 1;
        }
    }

    fn on_announce(&mut self, now: Micros, src: ShortId, a: Announce) {
        let mine = self.state();
        let asked_recently = self
            .neighbours
            .get(&src)
            .and_then(|n| n.asked_at)
            .is_some_and(|t| now.since(t) < self.config.timing.stale_neighbour_us);
        let n = self.neighbours.entry(src).or_default();
        let previous = n.announced.replace(a);
        if a.complete {
            n.complete_at = Some(now);
        }
        n.coverage = a.needy;
        let lacks = if a.release == mine.release {
            !a.complete
        } else {
            a.security_version < mine.security_version
        };
        n.needy_at = lacks.then_some(now);
        if a.release == mine.release && a.complete {
            self.drop_asker(src);
        }
        if a.release == mine.release {
            self.trickle.hear_consistent();
        } else if a.security_version > mine.security_version {
            // Newer than ours: we fetch it (or refused it); announcing our
            // older release sooner would tell nobody anything new, and our
            // requests show the holders that we lack it.
        } else if previous.map(|p| p.release) != Some(a.release) || !asked_recently {
            self.trickle.reset(ms(now), &mut self.rng);
        }
        if a.release == mine.release && a.complete && !mine.complete {
            self.schedule_request(now);
        }
        if a.security_version > mine.security_version && !self.rejected.contains(&a.release) {
            let replace = match &self.fetch {
                None => true,
                Some(f) => a.security_version > f.security_version,
            };
            if replace {
                let piece = bundle::piece_len(self.codec.max_payload());
                self.fetch = Some(Fetch {
                    id: a.release,
                    security_version: a.security_version,
                    server: src,
                    pieces: Pieces::new(piece),
                    failures: 0,
                });
                self.request_at = None;
                self.request_due = false;
                self.schedule_request(now);
            }
        }
    }

    fn on_manifest_request(&mut self, now: Micros, h: &Header, r: &ManifestRequest) {
        let mine = self.carried.as_ref().map(|c| c.tag);
        if mine == Some(r.tag) {
            let n = self.neighbours.entry(h.src).or_default();
            n.asked_at = Some(now);
            n.needy_at = Some(now);
        }
        let fetching = self.fetch.as_ref().map(|f| tag_of(&f.id));
        if fetching == Some(r.tag) && h.dst != self.config.short_id {
            // Its answer is broadcast: wait for it, and ask the same
            // holder next time if we hear that holder too.
            let heard = self.neighbours.get(&h.dst).is_some_and(|n| n.failures == 0);
            if heard {
                if let Some(n) = self.neighbours.get_mut(&h.dst) {
                    n.adopted_at = Some(now);
                }
                if let Some(f) = self.fetch.as_mut() {
                    f.server = h.dst;
                }
            }
            self.stats.requests_postponed += 1;
            self.postpone_request(now);
        }
        let Some(c) = &self.carried else {
            return;
        };
        if h.dst != self.config.short_id || c.tag != r.tag {
            return;
        }
        let count = c
            .bundle
            .bytes
            .len()
            .div_ceil(bundle::piece_len(self.codec.max_payload()).max(1));
        let held = r.held.as_ref().filter(|p| p.len() == count);
        for i in 0..count {
            if !held.is_some_and(|p| p.get(i)) {
                if let Ok(i) = u8::try_from(i) {
                    self.pieces_out.insert(i);
                }
            }
        }
        self.schedule_burst(now);
    }

    fn on_piece(&mut self, now: Micros, h: &Header, payload: &[u8]) -> Result<(), RadioError> {
        if payload.len() < TAG_LEN {
            return Err(RadioError::Truncated { what: "piece" });
        }
        let (tag, data) = payload.split_at(TAG_LEN);
        self.quiet_until = self.quiet_until.max(now.plus(self.config.timing.quiet_us));
        if self.carried.as_ref().is_some_and(|c| c.tag == tag) {
            // Another holder sent this piece: ours would repeat it.
            self.pieces_out.remove(&h.frag_index);
            return Ok(());
        }
        let Some(f) = self.fetch.as_mut() else {
            return Ok(());
        };
        if tag_of(&f.id) != tag {
            return Ok(());
        }
        if !f.pieces.accept(h.frag_index, h.frag_count, data) {
            return Err(RadioError::Malformed {
                what: "piece",
                reason: "inconsistent with the fragments held",
            });
        }
        self.stats.sources.insert(h.src);
        if let Some(n) = self.neighbours.get_mut(&h.src) {
            n.served_at = Some(now);
            n.failures = 0;
        }
        let Some(f) = self.fetch.as_mut() else {
            return Ok(());
        };
        if !f.pieces.is_complete() {
            self.postpone_request(now);
            return Ok(());
        }
        let id = f.id;
        let bytes = f.pieces.assemble().unwrap_or_default();
        match bundle::verify(bytes, Some(&id), &self.trust, &self.policy())
            .and_then(|b| Carried::new(b, self.symbol_size))
        {
            Ok(carried) => {
                self.want = alloc::vec![0; carried.slots.len()];
                self.pieces_out.clear();
                self.carried = Some(carried);
                self.fetch = None;
                self.request_at = None;
                self.request_due = false;
                self.events
                    .push_back(LinkEvent::ManifestVerified { release: id });
                self.trickle.reset(ms(now), &mut self.rng);
                self.schedule_request(now);
            }
            Err(error) => {
                self.stats.bundle_failures += 1;
                self.events
                    .push_back(LinkEvent::BundleRejected { release: id, error });
                if let Some(f) = self.fetch.as_mut() {
                    f.pieces.clear();
                    f.failures += 1;
                    if f.failures >= self.config.timing.bundle_failures_max {
                        self.rejected.insert(id);
                        self.fetch = None;
                    }
                }
                self.postpone_request(now);
            }
        }
        Ok(())
    }

    fn on_symbol(&mut self, now: Micros, src: ShortId, payload: &[u8]) -> Result<(), RadioError> {
        self.quiet_until = self.quiet_until.max(now.plus(self.config.timing.quiet_us));
        let Some(c) = self.carried.as_mut() else {
            return Ok(());
        };
        let Some(tag) = payload.get(..TAG_LEN) else {
            return Err(RadioError::Truncated { what: "symbol" });
        };
        let Some(i) = c.chunk_tags.iter().position(|t| t == tag) else {
            return Ok(());
        };
        let n = self.neighbours.entry(src).or_default();
        n.symbols_at = Some(now);
        n.served_at = Some(now);
        n.failures = 0;
        if !self.bursting && self.want.iter().any(|&w| w > 0) {
            // Another source is already sending this release's symbols.
            self.want.iter_mut().for_each(|w| *w = 0);
            self.askers.clear();
            if self.pieces_out.is_empty() {
                self.burst_at = None;
            }
            self.stats.bursts_suppressed += 1;
        }
        let mut result = Ok(());
        if let ChunkSlot::Missing { decoder, symbols } = &mut c.slots[i] {
            if let Some(esi) = payload.get(4..8) {
                symbols.insert(u32::from_be_bytes([esi[0], esi[1], esi[2], esi[3]]));
            }
            match decoder.push(payload) {
                Ok(Some(bytes)) => {
                    c.slots[i] = ChunkSlot::Held(bytes);
                    c.held += 1;
                    self.stats.sources.insert(src);
                }
                Ok(None) => {}
                Err(meshota_radios::Error::DecodedObjectMismatch) => {
                    symbols.clear();
                    self.stats.chunk_failures += 1;
                }
                Err(e) => {
                    if matches!(e, meshota_radios::Error::MalformedSymbol { .. }) {
                        symbols.clear();
                    }
                    result = Err(RadioError::Frame(e));
                }
            }
        }
        if c.complete() {
            let release = c.bundle.id;
            self.events
                .push_back(LinkEvent::ReleaseComplete { release });
            self.request_at = None;
            self.request_due = false;
            self.trickle.reset(ms(now), &mut self.rng);
        } else {
            self.postpone_request(now);
        }
        result
    }

    fn on_payload_request(
        &mut self,
        now: Micros,
        h: &Header,
        payload: &[u8],
    ) -> Result<(), RadioError> {
        let Some(c) = self.carried.as_ref() else {
            return Ok(());
        };
        let r = PayloadRequest::decode(payload, c.slots.len())?;
        if r.tag != c.tag {
            return Ok(());
        }
        let complete = c.complete();
        let n = self.neighbours.entry(h.src).or_default();
        n.asked_at = Some(now);
        n.needy_at = Some(now);
        let me = self.config.short_id;
        if h.dst != me {
            if complete {
                // It chose another source: that one serves it.
                self.drop_asker(h.src);
            }
            // A neighbour asked a source: if we hear that source too, its
            // burst will serve us; ask it (later) rather than another.
            if !complete {
                if let Some(n) = self.neighbours.get_mut(&h.dst) {
                    if n.complete_at.is_some() || n.symbols_at.is_some() {
                        n.adopted_at = Some(now);
                        self.stats.requests_postponed += 1;
                        // About the wait of a source asked twice (32 s).
                        self.postpone_request(now.plus(self.config.timing.burst_backoff_us / 4));
                    }
                }
            }
            return Ok(());
        }
        let Some(c) = self.carried.as_ref().filter(|c| c.complete()) else {
            return Ok(());
        };
        let div = self.config.timing.margin_div.max(1);
        for (k, j) in r.held.missing().enumerate() {
            let need = r
                .needs
                .get(k)
                .copied()
                .unwrap_or_else(|| c.infos[j].source_symbols())
                .min(c.infos[j].source_symbols().saturating_mul(2));
            let burst = need + need / div + 1;
            if let Some(w) = self.want.get_mut(j) {
                *w = (*w).max(burst);
            }
        }
        if self.askers.is_empty() {
            self.round_start = now;
        }
        self.askers.insert(h.src);
        let askers = self.askers.len() as u64;
        let wait = self.backoff(self.config.timing.burst_backoff_us) / (askers * askers);
        let at = self.round_start.plus(wait).max(now);
        if !self.bursting {
            self.burst_at = Some(self.burst_at.map_or(at, |b| b.min(at)));
        }
        Ok(())
    }

    /// Before asking again: a neighbour we asked that sent nothing since
    /// is a weak link; after a few, ask another that holds the release.
    fn note_unanswered(&mut self) {
        let Some((peer, at)) = self.asked else {
            return;
        };
        if let Some(n) = self.neighbours.get_mut(&peer) {
            if n.served_at.is_none_or(|t| t < at) {
                n.failures = n.failures.saturating_add(1);
            }
        }
        let Some(f) = self.fetch.as_ref() else {
            return;
        };
        let id = f.id;
        let server = f.server;
        let best = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.announced.is_some_and(|a| a.release == id))
            .min_by_key(|(_, n)| n.failures)
            .map(|(k, n)| (*k, n.failures));
        let current = self
            .neighbours
            .get(&server)
            .map_or(u32::MAX, |n| n.failures);
        if let Some((k, failures)) = best {
            if failures < current {
                if let Some(f) = self.fetch.as_mut() {
                    f.server = k;
                }
            }
        }
    }

    /// The source to ask for symbols: the fewest unanswered requests;
    /// then one that sent us symbols within [`STICKY_US`] (its burst is
    /// serving our neighbours too); then the one that announced the most
    /// needy neighbours (a greedy set cover: askers gather on the holder
    /// that covers most, and holders nobody asks stay silent); then the
    /// latest heard sending, adopted from a neighbour's request, or
    /// announcing itself complete.
    fn choose_source(&self, now: Micros) -> Option<ShortId> {
        let mine = self.carried.as_ref()?.bundle.id;
        self.neighbours
            .iter()
            .filter(|(_, n)| {
                n.symbols_at.is_some()
                    || n.announced.is_some_and(|a| a.release == mine && a.complete)
            })
            .max_by_key(|(_, n)| {
                (
                    core::cmp::Reverse(n.failures),
                    n.strong(),
                    n.symbols_at.is_some_and(|t| now.since(t) < STICKY_US),
                    n.coverage,
                    n.symbols_at,
                    n.adopted_at,
                    n.complete_at,
                )
            })
            .map(|(id, _)| *id)
    }

    /// The holder to ask for the bundle being fetched: the fewest
    /// unanswered requests, then the most needy neighbours announced, then
    /// the one a neighbour just asked; the current server on a tie.
    fn choose_server(&self, f: &Fetch) -> ShortId {
        self.neighbours
            .iter()
            .filter(|(_, n)| n.announced.is_some_and(|a| a.release == f.id))
            .max_by_key(|(k, n)| {
                (
                    core::cmp::Reverse(n.failures),
                    n.strong(),
                    n.coverage,
                    n.adopted_at,
                    **k == f.server,
                )
            })
            .map_or(f.server, |(k, _)| *k)
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Micros) {
        self.clock = self.clock.max(now);
        if now.0 >= self.trickle.deadline().0.saturating_mul(1_000)
            && self
                .trickle
                .on_timeout(Timestamp(now.0 / 1_000), &mut self.rng)
        {
            self.announce_due = true;
        }
        if self.request_at.is_some_and(|r| now >= r) {
            self.request_at = None;
            if now < self.quiet_until {
                let b = self.backoff(self.config.timing.request_backoff_us);
                self.request_at = Some(self.quiet_until.plus(b));
            } else if self.needy() {
                self.note_unanswered();
                self.request_due = true;
                // Back off exponentially while the holder asked last stays
                // silent (a weak link, or a holder waiting for its budget).
                let silent = self
                    .asked
                    .and_then(|(peer, _)| self.neighbours.get(&peer))
                    .map_or(0, |n| n.failures.min(4));
                let retry = self.config.timing.request_retry_us << silent;
                let b = self.backoff(self.config.timing.request_backoff_us);
                self.request_at = Some(now.plus(retry + b));
            }
        }
    }

    /// When the link next needs [`RadioLink::handle_timeout`] and
    /// [`RadioLink::poll_transmit`]. Always some time (the Trickle timer
    /// runs for ever).
    #[must_use]
    pub fn poll_timeout(&self) -> Micros {
        let mut t = Micros(self.trickle.deadline().0.saturating_mul(1_000));
        if let Some(r) = self.request_at {
            t = t.min(r);
        }
        if self.pending.is_some() {
            t = t.min(
                self.busy_until
                    .max(self.budget_wait.unwrap_or(self.busy_until)),
            );
        } else {
            if self.announce_due || self.request_due {
                t = t.min(self.busy_until.max(self.quiet_until));
            }
            if let Some(b) = self.burst_at {
                t = t.min(self.busy_until.max(b));
            }
        }
        t
    }

    /// A frame to transmit at `now`, already charged to the duty-cycle
    /// budget, or `None` (the radio is busy, the budget says wait, or there
    /// is nothing to send).
    pub fn poll_transmit(&mut self, now: Micros) -> Option<Vec<u8>> {
        self.clock = self.clock.max(now);
        if now < self.busy_until {
            return None;
        }
        let frame = match self.pending.take() {
            Some(f) => f,
            None => self.next_frame(now)?,
        };
        let freq = self.config.channel.freq_hz;
        let Ok(airtime) = self.config.channel.params.time_on_air_us(frame.len()) else {
            self.stats.frames_malformed += 1;
            return None;
        };
        match self.budget.earliest(now, freq, airtime) {
            Ok(at) if at <= now => {}
            Ok(at) => {
                self.stats.budget_waits += 1;
                self.budget_wait = Some(at);
                self.pending = Some(frame);
                return None;
            }
            Err(_) => return None,
        }
        if self.budget.try_transmit(now, freq, airtime).is_err() {
            self.pending = Some(frame);
            return None;
        }
        self.budget_wait = None;
        self.busy_until = now.plus(airtime);
        self.stats.frames_sent += 1;
        self.stats.airtime_us += airtime;
        Some(frame)
    }

    fn encode(
        &mut self,
        kind: FrameKind,
        dst: ShortId,
        index: u8,
        count: u8,
        p: &[u8],
    ) -> Option<Vec<u8>> {
        // Unfragmented frames are numbered in sequence so that neighbours
        // can tell how many they missed (link quality); the bundle's
        // fragments keep message id 0 (one message, sent piecemeal).
        let msg_id = if kind == FrameKind::Message {
            0
        } else {
            let id = self.seq;
            self.seq = self.seq.wrapping_add(1);
            id
        };
        let header = Header {
            kind,
            src: self.config.short_id,
            dst,
            msg_id,
            frag_index: index,
            frag_count: count,
        };
        self.codec.encode(&header, p).ok()
    }

    fn next_frame(&mut self, now: Micros) -> Option<Vec<u8>> {
        if now >= self.quiet_until {
            if self.announce_due {
                self.announce_due = false;
                let a = self.state().encode();
                self.stats.sent_announces += 1;
                return self.encode(FrameKind::Announce, ShortId::BROADCAST, 0, 1, &a);
            }
            if self.request_due {
                self.request_due = false;
                if let Some(server) = self.fetch.as_ref().map(|f| self.choose_server(f)) {
                    if let Some(f) = self.fetch.as_mut() {
                        f.server = server;
                    }
                }
                if let Some((f, to)) = self.build_request() {
                    self.stats.sent_requests += 1;
                    self.asked = Some((to, now));
                    return Some(f);
                }
            }
        }
        if self.burst_at.is_some_and(|t| now >= t) {
            if let Some(f) = self.next_piece() {
                self.bursting = true;
                return Some(f);
            }
            if let Some(f) = self.next_symbol() {
                if !self.bursting {
                    self.stats.bursts += 1;
                }
                self.bursting = true;
                return Some(f);
            }
            self.burst_at = None;
            self.bursting = false;
            self.askers.clear();
        }
        None
    }

    fn build_request(&mut self) -> Option<(Vec<u8>, ShortId)> {
        if let Some(f) = &self.fetch {
            let r = ManifestRequest {
                tag: tag_of(&f.id),
                held: f.pieces.held(),
            };
            let server = f.server;
            let frame = self.encode(FrameKind::Request, server, 0, 1, &r.encode())?;
            return Some((frame, server));
        }
        let c = self.carried.as_ref().filter(|c| !c.complete())?;
        let src = self.choose_source(self.clock)?;
        let mut needs = Vec::new();
        for (i, s) in c.slots.iter().enumerate() {
            if let ChunkSlot::Missing { symbols, .. } = s {
                let k = c.infos[i].source_symbols();
                let distinct = u32::try_from(symbols.len()).unwrap_or(u32::MAX);
                needs.push(k.saturating_sub(distinct).max(1));
            }
        }
        let r = PayloadRequest {
            tag: c.tag,
            held: c.held_bitmap()?,
            needs,
        };
        let bytes = r.encode(self.codec.max_payload());
        let frame = self.encode(FrameKind::Progress, src, 0, 1, &bytes)?;
        Some((frame, src))
    }

    fn next_piece(&mut self) -> Option<Vec<u8>> {
        let c = self.carried.as_ref()?;
        let i = self.pieces_out.pop_first()?;
        let per = bundle::piece_len(self.codec.max_payload()).max(1);
        let count = u8::try_from(c.bundle.bytes.len().div_ceil(per)).ok()?;
        let from = usize::from(i) * per;
        let data = c
            .bundle
            .bytes
            .get(from..(from + per).min(c.bundle.bytes.len()))?;
        let mut payload = c.tag.to_vec();
        payload.extend_from_slice(data);
        self.stats.sent_pieces += 1;
        self.encode(FrameKind::Message, ShortId::BROADCAST, i, count, &payload)
    }

    fn next_symbol(&mut self) -> Option<Vec<u8>> {
        let chunks = self.want.len();
        let j = (0..chunks)
            .map(|k| (self.next_chunk + k) % chunks.max(1))
            .find(|&j| self.want[j] > 0)?;
        self.next_chunk = (j + 1) % chunks.max(1);
        let c = self.carried.as_mut()?;
        if c.encoders[j].is_none() {
            let ChunkSlot::Held(bytes) = &c.slots[j] else {
                self.want[j] = 0;
                return None;
            };
            let mut enc = ObjectEncoder::new(bytes, usize::from(self.symbol_size)).ok()?;
            // Start at a random repair symbol so that two sources heard by
            // one receiver rarely repeat each other.
            let k = c.infos[j].source_symbols();
            let skip = u32::try_from(self.rng.range(0, u64::from(k) * 4)).unwrap_or(0);
            let _ = enc.repair_symbols(skip);
            c.encoders[j] = Some(enc);
        }
        let symbol = c.encoders[j].as_mut()?.repair_symbols(1).pop()?;
        self.want[j] -= 1;
        self.stats.sent_symbols += 1;
        self.encode(FrameKind::Symbol, ShortId::BROADCAST, 0, 1, &symbol)
    }
}

/// A neighbour's need counts towards our announced coverage this long
/// after it last showed it (µs; Trickle's largest interval).
const NEEDY_FRESH_US: u64 = 600 * Micros::SECOND;
/// Link-quality memory: past this many frames sent, the counts halve.
const QUALITY_WINDOW: u32 = 32;
/// A neighbour is a strong link when we hear at least this share of its
/// frames (%): about 1 dB of SNR margin with 10 % extra loss.
const STRONG_PERCENT: u32 = 60;
/// A source whose symbols we heard this recently is asked again first
/// (µs): its next burst serves its other askers too.
const STICKY_US: u64 = 60 * Micros::SECOND;

fn ms(now: Micros) -> Timestamp {
    Timestamp(now.0 / 1_000)
}
