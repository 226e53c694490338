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
    DutyCycleBudget, FrameCodec, FrameKind, Header, Micros, ObjectDecoder, ObjectEncoder, Progress,
    ShortId, symbol_size_for,
};

use super::bundle::{self, Pieces};

mod large;
use super::carried::{
    Carried, ChunkSlot, PATCH_INDEX_BYTES_MAX, PIECE_MISMATCHES_MAX, PatchPart, PieceOutcome,
};
pub use super::config::{RadioConfig, RadioTiming};
use super::error::RadioError;
use super::msg::{Announce, ManifestRequest, PayloadRequest, ReleaseKey, TAG_LEN};
use super::patch::{PieceJob, PieceOutput};
pub use super::report::{LinkEvent, LinkStats, NeighbourLink, PatchBlobs};
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
    /// Last patch index fragment or piece symbol heard from it.
    pieces_at: Option<Micros>,
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
    /// Frames whose message id was behind the last one's, halved every
    /// [`CLASH_HALVING_US`]: one sender numbers its frames forward, so
    /// several mean two nodes use this short id.
    regressions: u32,
    /// When `regressions` was last halved.
    halved_at: Micros,
    /// Whether it was told its short id seems shared (once).
    clash_noticed: bool,
}

impl Neighbour {
    /// Takes the message id of an unfragmented frame heard from it.
    /// Returns whether its frames now look like two senders' (the first
    /// time only).
    fn hear_seq(&mut self, now: Micros, id: u8) -> bool {
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
                    return false;
                }
                self.heard += 1;
                self.sent += gap;
                if gap > 128 {
                    // Behind the last id: a restart, or another sender.
                    self.regressions += 1;
                }
            }
        }
        self.last_seq = Some(id);
        if self.sent > QUALITY_WINDOW {
            self.heard = self.heard.div_ceil(2);
            self.sent = self.sent.div_ceil(2);
        }
        while now.since(self.halved_at) >= CLASH_HALVING_US {
            self.halved_at = self.halved_at.plus(CLASH_HALVING_US);
            self.regressions /= 2;
            if self.regressions == 0 {
                self.halved_at = now;
            }
        }
        if self.regressions >= CLASH_REGRESSIONS && !self.clash_noticed {
            self.clash_noticed = true;
            return true;
        }
        false
    }

    /// Its frames heard out of its frames sent, in percent (0 before any).
    fn heard_percent(&self) -> u8 {
        let percent = (u64::from(self.heard) * 100)
            .checked_div(u64::from(self.sent))
            .unwrap_or(0);
        u8::try_from(percent.min(100)).unwrap_or(100)
    }

    /// Whether we hear at least [`STRONG_PERCENT`] of its frames: a burst
    /// of its would reach us, and one of ours it.
    fn strong(&self) -> bool {
        self.sent > 0 && self.heard * 100 >= self.sent * STRONG_PERCENT
    }
}

#[derive(Debug)]
struct Fetch {
    id: ReleaseKey,
    security_version: u64,
    server: ShortId,
    pieces: Pieces,
    failures: u32,
    /// When we first heard a node that holds its bundle (not one that
    /// only fetches it too).
    holder_since: Option<Micros>,
}

/// Requests in a row a patch source may leave unanswered before the link
/// asks for chunks instead.
const PATCH_SOURCE_SILENCES_MAX: u32 = 3;

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
    /// The installed image's hash, when the driver applies patch pieces
    /// against it ([`RadioLink::set_base_image`]).
    base_image: Option<Hash>,
    /// The installed release's chunk index, against which a large
    /// release's index delta is rebuilt ([`RadioLink::set_base_index`]).
    base_index: Option<bundle::BaseIndex>,
    carried: Option<Carried>,
    fetch: Option<Fetch>,
    rejected: BTreeSet<ReleaseKey>,
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
    /// The askers our last bundle burst served, and until when their
    /// payload requests skip the election (it was just held).
    served_bundle: (BTreeSet<ShortId>, Micros),
    /// This burst sent bundle fragments.
    burst_had_bundle: bool,
    round_start: Micros,
    pieces_out: BTreeSet<u8>,
    /// The most bundle fragments one asker of this round lacks: when the
    /// union of their losses (`pieces_out`) is larger, the burst sends this
    /// many repair fragments (plus a margin) instead.
    bundle_need: usize,
    /// Bundle repair fragments still to send in this burst.
    repairs_out: usize,
    /// Number of our next bundle repair fragment (random start, so two
    /// holders heard by one receiver rarely repeat each other).
    next_repair: u8,
    /// The repair encoder of the carried bundle, made at its first use.
    repair_encoder: Option<([u8; TAG_LEN], meshota_radios::RepairEncoder)>,
    /// Patch index fragments to send.
    patch_out: BTreeSet<u8>,
    want: Vec<u32>,
    next_chunk: usize,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
    /// [`LinkEvent::ShortIdShared`] was reported for the current short id.
    own_id_reported: bool,
    /// Neighbours to tell that their short id seems shared.
    notices: VecDeque<ShortId>,
    /// The latest time handed in (for choices made without a `now`).
    clock: Micros,
    /// Message id of our next unfragmented frame.
    seq: u8,
    /// Symbols heard before we could use them (the bundle or the patch
    /// index naming their object not verified yet), oldest first, at most
    /// [`EARLY_SYMBOLS_MAX`]: replayed once their object is known.
    early: VecDeque<(ShortId, Vec<u8>)>,
    /// The release last reported complete: completion is news once per
    /// release, however many of its symbols are heard afterwards.
    reported: Option<Hash>,
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
            base_image: None,
            base_index: None,
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
            served_bundle: (BTreeSet::new(), now),
            burst_had_bundle: false,
            round_start: now,
            pieces_out: BTreeSet::new(),
            bundle_need: 0,
            repairs_out: 0,
            next_repair: 0,
            repair_encoder: None,
            patch_out: BTreeSet::new(),
            want: Vec::new(),
            next_chunk: 0,
            events: VecDeque::new(),
            stats: LinkStats::default(),
            own_id_reported: false,
            notices: VecDeque::new(),
            clock: now,
            seq: 0,
            early: VecDeque::new(),
            reported: None,
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
        let verified = bundle::verify(
            bundle_bytes,
            None,
            &self.trust,
            &self.policy(),
            self.base_index.as_ref(),
        )?;
        if chunks.len() != verified.chunks().len() {
            return Err(RadioError::Index(
                "chunk count differs from the index".into(),
            ));
        }
        let mut carried = Carried::new(verified, self.symbol_size)?;
        for (i, bytes) in chunks.iter().enumerate() {
            if Hash::of(bytes) != carried.bundle.chunks()[i].hash {
                return Err(RadioError::Index(alloc::format!(
                    "chunk {i} does not hash to its id"
                )));
            }
            carried.slots[i] = ChunkSlot::Held(bytes.clone());
        }
        carried.held = chunks.len();
        self.carry_complete(now, carried);
        Ok(())
    }

    /// Carries `carried`, held whole (in memory or the node's store), in
    /// place of whatever the link carried or fetched.
    fn carry_complete(&mut self, now: Micros, carried: Carried) {
        let release = carried.bundle.id;
        self.want = alloc::vec![0; carried.slots.len()];
        self.carried = Some(carried);
        self.fetch = None;
        self.completed(now, release);
    }

    /// Gives the link another short id, for frames sent from now on: the
    /// driver's answer to [`LinkEvent::ShortIdShared`] (a node whose id was
    /// derived from its key derives the next one). A neighbour already
    /// known under the new id is forgotten (it would be the same clash),
    /// and a clash of the new id is reported again. Neighbours learn the
    /// new id from the next frame; the old one ages out of their tables.
    pub fn change_short_id(&mut self, id: ShortId) {
        self.config.short_id = id;
        self.neighbours.remove(&id);
        self.own_id_reported = false;
    }

    /// Tells the link the hash of the image the node has installed (its
    /// confirmed slot's), and so that the driver answers
    /// [`LinkEvent::ApplyPiece`] with [`RadioLink::piece_applied`]. A
    /// release whose manifest lists a patch from this image is then fetched
    /// by patch (see [`super::patch`]); without it the link fetches chunks.
    /// Takes effect for releases verified afterwards. The driver must
    /// answer every job (with [`PieceJob::failed`] when it cannot run it):
    /// the chunks of a piece being applied are not fetched plainly. A base
    /// index of another image ([`RadioLink::set_base_index`]) is dropped:
    /// delta bundles against it are no longer for this node.
    pub fn set_base_image(&mut self, image_hash: Hash) {
        self.base_image = Some(image_hash);
        if self
            .base_index
            .as_ref()
            .is_some_and(|b| b.index().image_hash() != image_hash)
        {
            self.base_index = None;
        }
    }

    /// Gives the link the patch blobs of the release it carries (the
    /// origin, or a node that got them over another link), so it serves
    /// them; a node fetching by this patch also gets an
    /// [`LinkEvent::ApplyPiece`] per piece. One patch per carried release
    /// (a second is refused). `index` must hash to a patch id the manifest
    /// lists (no longer than its signed size) and name the release's chunk
    /// index; `pieces` are the index's pieces in order, each hashing to its
    /// entry.
    ///
    /// # Errors
    /// [`RadioError::Index`] when there is no carried release, the patch is
    /// not listed, or a check fails.
    pub fn add_patch(
        &mut self,
        now: Micros,
        index: Vec<u8>,
        pieces: &[Vec<u8>],
    ) -> Result<(), RadioError> {
        let symbol_size = self.symbol_size;
        let fragment = bundle::piece_len(self.codec.max_payload());
        let c = self
            .carried
            .as_mut()
            .ok_or_else(|| RadioError::Index("no release carried".into()))?;
        let id = Hash::of(&index);
        let size = c
            .bundle
            .manifest
            .body()
            .patches
            .iter()
            .find(|r| r.patch == id)
            .map(|r| r.size)
            .ok_or_else(|| RadioError::Index("patch not listed by the manifest".into()))?;
        if c.patch.as_ref().is_some_and(|p| p.index.is_some()) {
            return Err(RadioError::Index("a patch is already carried".into()));
        }
        let fetching = c.patch.as_ref().is_some_and(|p| p.id == id && p.fetching);
        c.patch = Some(PatchPart::new(id, size, fetching, fragment));
        let n = match c.set_patch_index(index, symbol_size) {
            Ok(n) => n,
            Err(e) => {
                c.patch = None;
                return Err(e);
            }
        };
        if pieces.len() != n {
            c.patch = None;
            return Err(RadioError::Index(
                "piece count differs from the patch index".into(),
            ));
        }
        for (i, bytes) in pieces.iter().enumerate() {
            let j = c.chunks + i;
            if Hash::of(bytes).as_bytes() != &c.infos[j].id {
                c.slots.truncate(c.chunks);
                c.infos.truncate(c.chunks);
                c.chunk_tags.truncate(c.chunks);
                c.encoders.truncate(c.chunks);
                c.patch = None;
                return Err(RadioError::Index(alloc::format!(
                    "piece {i} does not hash to its id"
                )));
            }
        }
        for (i, bytes) in pieces.iter().enumerate() {
            c.slots[c.chunks + i] = ChunkSlot::Held(bytes.clone());
            // A node on the base that got the blobs another way applies
            // them like pieces it decoded.
            if let Some(job) = piece_job(c, i, bytes) {
                self.events.push_back(LinkEvent::ApplyPiece(job));
            }
        }
        self.want.resize(c.slots.len(), 0);
        self.trickle.reset(ms(now), &mut self.rng);
        Ok(())
    }

    /// Gives the link chunks the node already holds (its store, its
    /// installed image): those of the carried release's index are kept
    /// (each checked against it) and not fetched. Call it on
    /// [`LinkEvent::ManifestVerified`]. Returns how many were new.
    pub fn add_chunks(&mut self, now: Micros, chunks: &[Vec<u8>]) -> usize {
        let Some(c) = self.carried.as_mut() else {
            return 0;
        };
        let by_hash = c.positions_by_hash();
        let new: usize = chunks
            .iter()
            .filter_map(|bytes| c.hold_bytes(&by_hash, bytes))
            .sum();
        self.stats.chunks_supplied += new as u64;
        self.after_gain(now);
        new
    }

    /// Takes the output of a [`PieceJob`] the driver ran. Every chunk is
    /// checked against the signed index; the piece's chunks are kept only
    /// if all match, otherwise the piece counts as failed and its chunks
    /// are fetched plainly. Outputs for another release, patch or a piece
    /// not being applied are ignored.
    pub fn piece_applied(&mut self, now: Micros, output: PieceOutput) {
        let Some(c) = self.carried.as_mut() else {
            return;
        };
        if c.bundle.id != output.release {
            return;
        }
        let Some(p) = c.patch.as_ref().filter(|p| p.id == output.patch) else {
            return;
        };
        let Some((index, _)) = &p.index else {
            return;
        };
        let i = output.position as usize;
        let Some(piece) = index.pieces().get(i).copied() else {
            return;
        };
        if p.outcomes.get(i) != Some(&PieceOutcome::Applying) {
            return;
        }
        let refs = c.bundle.chunks().get(piece.ordinals()).unwrap_or_default();
        let ok = match &output.chunks {
            Ok(chunks) => {
                chunks.len() == refs.len()
                    && !refs.is_empty()
                    && chunks.iter().zip(refs).all(|(b, r)| Hash::of(b) == r.hash)
            }
            Err(_) => false,
        };
        let outcome = if ok {
            let mut made = 0u64;
            if let Ok(chunks) = output.chunks {
                for (o, bytes) in piece.ordinals().zip(chunks) {
                    if c.hold_chunk(o, bytes) {
                        made += 1;
                    }
                }
            }
            self.stats.pieces_applied += 1;
            self.stats.chunks_from_pieces += made;
            PieceOutcome::Applied
        } else {
            self.stats.piece_failures += 1;
            PieceOutcome::Failed
        };
        if let Some(p) = c.patch.as_mut() {
            p.outcomes[i] = outcome;
        }
        self.after_gain(now);
    }

    /// After objects were gained outside a symbol (supplied chunks, applied
    /// pieces): completion, or the next request.
    fn after_gain(&mut self, now: Micros) {
        let Some(c) = self.carried.as_ref() else {
            return;
        };
        if c.complete() {
            let release = c.bundle.id;
            self.completed(now, release);
        } else {
            self.schedule_request(now);
        }
    }

    /// The carried release is whole: the first time, report it, stop
    /// asking, announce it soon, and drop the symbols kept for later; then
    /// nothing (a symbol, chunk or piece gained afterwards is not news).
    fn completed(&mut self, now: Micros, release: Hash) {
        if self.reported.replace(release) == Some(release) {
            return;
        }
        self.events
            .push_back(LinkEvent::ReleaseComplete { release });
        self.request_at = None;
        self.request_due = false;
        self.early.clear();
        self.trickle.reset(ms(now), &mut self.rng);
    }

    /// Sets up the patch a node on the base fetches, if the manifest lists
    /// one from its installed image.
    fn plan_patch(&self, c: &mut Carried) {
        let Some(base) = self.base_image else {
            return;
        };
        let body = c.bundle.manifest.body();
        let Some(comp) = body.components.first() else {
            return;
        };
        if comp.image_hash == base {
            return;
        }
        let Some(r) = body.patches.iter().find(|r| {
            r.base_image_hash == base
                && r.component == comp.name
                && r.size <= PATCH_INDEX_BYTES_MAX as u64
        }) else {
            return;
        };
        let fragment = bundle::piece_len(self.codec.max_payload());
        c.patch = Some(PatchPart::new(r.patch, r.size, true, fragment));
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

    /// The carried release's image (its chunks in index order), when whole
    /// and every chunk is in the link's memory (`None` when some are held
    /// in the node's store: see [`RadioLink::held_chunks`]).
    #[must_use]
    pub fn payload(&self) -> Option<Vec<u8>> {
        let c = self
            .carried
            .as_ref()
            .filter(|c| c.complete() && !c.any_stored())?;
        let mut out = Vec::new();
        for s in &c.slots[..c.chunks] {
            if let ChunkSlot::Held(b) = s {
                out.extend_from_slice(b);
            }
        }
        Some(out)
    }

    /// The carried release's verified bundle (signed manifest and chunk
    /// index, as relayed), if any: what a driver stores beside
    /// [`RadioLink::payload`] to hand the release to another link.
    #[must_use]
    pub fn bundle(&self) -> Option<&bundle::VerifiedBundle> {
        self.carried.as_ref().map(|c| &c.bundle)
    }

    /// Chunks held and chunks in the carried release, if any.
    #[must_use]
    pub fn chunk_progress(&self) -> Option<(usize, usize)> {
        self.carried.as_ref().map(|c| (c.held, c.chunks))
    }

    /// The patch of the carried release this link holds whole, each blob
    /// checked against its signed hash when it was taken. For the driver
    /// to keep (a store outlives the link's memory), so that after a
    /// restart `add_patch` can serve it again. `None` while any piece is
    /// missing, or with no patch.
    #[must_use]
    pub fn patch_blobs(&self) -> Option<PatchBlobs<'_>> {
        self.carried.as_ref()?.patch_blobs()
    }

    /// Short ids of the neighbours whose frames authenticated.
    pub fn neighbours(&self) -> impl Iterator<Item = ShortId> + '_ {
        self.neighbours.keys().copied()
    }

    /// What this link measured of each neighbour whose frames
    /// authenticated, in short id order.
    pub fn neighbour_links(&self) -> impl Iterator<Item = NeighbourLink> + '_ {
        self.neighbours.iter().map(|(id, n)| NeighbourLink {
            id: *id,
            heard_percent: n.heard_percent(),
            strong: n.strong(),
            leaf: n.announced.is_some_and(|a| a.leaf),
        })
    }

    /// A one-line description of the link's state, for reports of nodes
    /// that did not converge.
    #[must_use]
    pub fn describe(&self) -> String {
        let carried = self.carried.as_ref().map_or_else(
            || "no release".into(),
            |c| {
                let patch = c.patch.as_ref().map_or_else(String::new, |p| {
                    let held = (c.chunks..c.slots.len()).filter(|&j| c.is_held(j)).count();
                    alloc::format!(
                        ", patch {} {} index, {held}/{} pieces{}",
                        p.id.short(),
                        if p.index.is_some() { "with" } else { "without" },
                        p.piece_count(),
                        if p.fetching { " (fetching)" } else { "" }
                    )
                });
                alloc::format!(
                    "release {} {}/{} chunks{patch}",
                    c.bundle.id.short(),
                    c.held,
                    c.chunks
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
        match (&self.carried, &self.fetch) {
            (Some(c), _) => Announce {
                release: ReleaseKey::of(&c.bundle.id),
                security_version: c.bundle.security_version,
                complete: c.complete(),
                pieces: c.holds_patch(),
                fetching: false,
                // A leaf covers nobody: it serves nothing.
                needy: if self.config.relay {
                    self.needy_neighbours()
                } else {
                    0
                },
                leaf: !self.config.relay,
            },
            // Fetching: the release we know of, so that neighbours that
            // hold it hear a node that lacks it (not an older release that
            // would reset their Trickle timers again and again), and
            // neighbours with older releases learn of it.
            (None, Some(f)) => Announce {
                release: f.id,
                security_version: f.security_version,
                complete: false,
                pieces: false,
                fetching: true,
                needy: 0,
                leaf: !self.config.relay,
            },
            (None, None) => Announce {
                release: ReleaseKey::of(&self.installed.0),
                security_version: self.installed.1,
                complete: true,
                pieces: false,
                fetching: false,
                needy: 0,
                leaf: !self.config.relay,
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
        self.pieces_out.clear();
        self.bundle_need = 0;
        self.repairs_out = 0;
        if self.patch_out.is_empty() {
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
        if h.src == self.config.short_id {
            // Not ours (a radio does not hear itself): a neighbour shares
            // our id. Its frames would pass for our own; drop them.
            self.stats.frames_own_id += 1;
            self.report_own_id_shared();
            return;
        }
        if h.src == ShortId::BROADCAST {
            self.stats.frames_malformed += 1;
            return;
        }
        let n = self.neighbours.entry(h.src).or_default();
        if h.kind != FrameKind::Message && n.hear_seq(now, h.msg_id) {
            self.notices.push_back(h.src);
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
            FrameKind::Repair => self.on_repair(now, &h, frame.payload),
            FrameKind::Notice => self.on_notice(&h, frame.payload),
        };
        if result.is_err() {
            self.stats.frames_malformed += 1;
        }
    }

    /// A notice to us: two nodes seem to use our short id (a neighbour
    /// heard our frames numbered as if from two senders). Reported as a
    /// clash, as when we hear our id ourselves.
    fn on_notice(&mut self, h: &Header, payload: &[u8]) -> Result<(), RadioError> {
        if payload != [NOTICE_ID_SHARED] {
            return Err(RadioError::Malformed {
                what: "notice",
                reason: "unknown notice",
            });
        }
        if h.dst == self.config.short_id && self.report_own_id_shared() {
            self.stats.clash_notices_heard += 1;
        }
        Ok(())
    }

    /// Reports [`LinkEvent::ShortIdShared`] for the current short id,
    /// once; returns whether it did now.
    fn report_own_id_shared(&mut self) -> bool {
        if self.own_id_reported {
            return false;
        }
        self.own_id_reported = true;
        self.events.push_back(LinkEvent::ShortIdShared {
            short_id: self.config.short_id,
        });
        true
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
        if a.is_source() {
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
            // Consistent only with a neighbour in our state and role: a
            // holder that hears nodes still lacking the release keeps
            // announcing (they wait for a complete holder), and leaves do
            // not quiet a relay (needy nodes never ask them).
            if a.complete == mine.complete && a.fetching == mine.fetching && a.leaf == mine.leaf {
                self.trickle.hear_consistent();
            }
        } else if a.security_version > mine.security_version {
            // Newer than ours: we fetch it (or refused it); announcing our
            // older release sooner would tell nobody anything new, and our
            // requests show the holders that we lack it.
        } else if previous.map(|p| p.release) != Some(a.release) || !asked_recently {
            self.trickle.reset(ms(now), &mut self.rng);
        }
        if a.release == mine.release && a.is_source() && !mine.complete {
            self.schedule_request(now);
        }
        if let Some(f) = self.fetch.as_mut().filter(|f| f.id == a.release) {
            if a.serves() && f.holder_since.is_none() {
                f.holder_since = Some(now);
            }
            if a.is_source() {
                self.schedule_request(now);
            }
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
                    holder_since: a.serves().then_some(now),
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
            if h.dst != self.config.short_id {
                // It chose another holder: that one serves it.
                self.drop_asker(h.src);
            }
        }
        let fetching = self.fetch.as_ref().map(|f| f.id.tag());
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
        self.on_patch_index_request(now, h, r);
        let Some(c) = &self.carried else {
            return;
        };
        if h.dst != self.config.short_id || c.tag != r.tag || !self.config.relay {
            // Not asked, another release, or a leaf (which serves nothing).
            return;
        }
        let count = c
            .bundle
            .bytes
            .len()
            .div_ceil(bundle::piece_len(self.codec.max_payload()).max(1));
        let held = r.held.as_ref().filter(|p| p.len() == count);
        let mut missing = 0;
        for i in 0..count {
            if !held.is_some_and(|p| p.get(i)) {
                missing += 1;
                if let Ok(i) = u8::try_from(i) {
                    self.pieces_out.insert(i);
                }
            }
        }
        self.bundle_need = self.bundle_need.max(missing);
        if c.complete() {
            // A source: the bundle goes out in an elected burst, like
            // symbols, so that one source serves a neighbourhood both.
            self.join_round(now, h.src);
        } else {
            self.schedule_burst(now);
        }
    }

    /// A request for the patch index blob: wait for its broadcast answer if
    /// we fetch the same, serve it if asked and held. A complete holder
    /// answers in a round of the election like a bundle request, so the
    /// asker stays among those its bundle burst served and its piece
    /// request is answered without a second election.
    fn on_patch_index_request(&mut self, now: Micros, h: &Header, r: &ManifestRequest) {
        let me = self.config.short_id;
        let Some(c) = &self.carried else {
            return;
        };
        let Some(p) = c.patch.as_ref().filter(|p| p.tag == r.tag) else {
            return;
        };
        match &p.index {
            None if h.dst != me && p.fetching => {
                self.stats.requests_postponed += 1;
                self.postpone_request(now);
            }
            Some((_, bytes)) if h.dst == me && self.config.relay => {
                let count = bytes
                    .len()
                    .div_ceil(bundle::piece_len(self.codec.max_payload()).max(1));
                let held = r.held.as_ref().filter(|p| p.len() == count);
                for i in 0..count {
                    if !held.is_some_and(|p| p.get(i)) {
                        if let Ok(i) = u8::try_from(i) {
                            self.patch_out.insert(i);
                        }
                    }
                }
                self.neighbours.entry(h.src).or_default().asked_at = Some(now);
                if c.complete() {
                    self.join_round(now, h.src);
                } else {
                    self.schedule_burst(now);
                }
            }
            _ => {}
        }
    }

    /// A fragment of the patch index: collected by a node fetching the
    /// patch, verified once whole (hash against the manifest's patch id,
    /// size, base and target) before any piece is asked for.
    fn on_patch_fragment(
        &mut self,
        now: Micros,
        h: &Header,
        data: &[u8],
    ) -> Result<(), RadioError> {
        let symbol_size = self.symbol_size;
        let Some(c) = self.carried.as_mut() else {
            return Ok(());
        };
        let Some(p) = c.patch.as_mut() else {
            return Ok(());
        };
        if p.index.is_some() {
            // Another holder sent this fragment: ours would repeat it.
            self.patch_out.remove(&h.frag_index);
            return Ok(());
        }
        if !p.fetching {
            return Ok(());
        }
        if !p.fragments.accept(h.frag_index, h.frag_count, data) {
            return Err(RadioError::Malformed {
                what: "patch index fragment",
                reason: "inconsistent with the fragments held",
            });
        }
        if let Some(n) = self.neighbours.get_mut(&h.src) {
            n.served_at = Some(now);
            n.pieces_at = Some(now);
            n.failures = 0;
        }
        if !p.fragments.is_complete() {
            self.postpone_request(now);
            return Ok(());
        }
        let bytes = p.fragments.assemble().unwrap_or_default();
        p.fragments.clear();
        match c.set_patch_index(bytes, symbol_size) {
            Ok(_) => {
                self.want.resize(c.slots.len(), 0);
                self.request_at = None;
                self.request_due = false;
                self.schedule_request(now);
                self.replay_early(now);
            }
            Err(_) => {
                if let Some(p) = c.patch.as_mut() {
                    p.index_failures += 1;
                    if p.index_failures >= self.config.timing.bundle_failures_max {
                        // Give the patch up: fetch chunks.
                        p.fetching = false;
                    }
                }
                self.stats.bundle_failures += 1;
                self.postpone_request(now);
            }
        }
        Ok(())
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
        if self
            .carried
            .as_ref()
            .and_then(|c| c.patch.as_ref())
            .is_some_and(|p| p.tag == tag)
        {
            return self.on_patch_fragment(now, h, data);
        }
        let Some(f) = self.fetch.as_mut() else {
            return Ok(());
        };
        if f.id.tag() != tag {
            return Ok(());
        }
        if !f.pieces.accept(h.frag_index, h.frag_count, data) {
            return Err(RadioError::Malformed {
                what: "piece",
                reason: "inconsistent with the fragments held",
            });
        }
        self.bundle_gained(now, h.src);
        Ok(())
    }

    /// A repair fragment of a bundle: another holder is serving (ours
    /// would repeat its work), or one for the bundle we fetch.
    fn on_repair(&mut self, now: Micros, h: &Header, payload: &[u8]) -> Result<(), RadioError> {
        let Some(tag) = payload.get(..TAG_LEN) else {
            return Err(RadioError::Truncated { what: "repair" });
        };
        let (head, symbol) = bundle::RepairHead::decode(&payload[TAG_LEN..])?;
        self.quiet_until = self.quiet_until.max(now.plus(self.config.timing.quiet_us));
        if self.carried.as_ref().is_some_and(|c| c.tag == tag) {
            self.repairs_out = self.repairs_out.saturating_sub(1);
            return Ok(());
        }
        let Some(f) = self.fetch.as_mut().filter(|f| f.id.tag() == tag) else {
            return Ok(());
        };
        if !f.pieces.accept_repair(head, symbol) {
            return Err(RadioError::Malformed {
                what: "repair",
                reason: "inconsistent with the fragments held",
            });
        }
        self.bundle_gained(now, h.src);
        Ok(())
    }

    /// After a fragment or repair fragment of the bundle we fetch from
    /// `src`: once it can be assembled, verify it and carry the release.
    fn bundle_gained(&mut self, now: Micros, src: ShortId) {
        self.stats.sources.insert(src);
        if let Some(n) = self.neighbours.get_mut(&src) {
            n.served_at = Some(now);
            n.failures = 0;
        }
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        if !f.pieces.is_complete() {
            self.postpone_request(now);
            return;
        }
        let id = f.id;
        let bytes = f.pieces.assemble().unwrap_or_default();
        match bundle::verify(
            bytes,
            Some(&id),
            &self.trust,
            &self.policy(),
            self.base_index.as_ref(),
        )
        .and_then(|b| Carried::new(b, self.symbol_size))
        {
            Ok(mut carried) => {
                let verified = carried.bundle.id;
                self.plan_patch(&mut carried);
                self.want = alloc::vec![0; carried.slots.len()];
                self.pieces_out.clear();
                self.carried = Some(carried);
                self.fetch = None;
                self.request_at = None;
                self.request_due = false;
                self.events
                    .push_back(LinkEvent::ManifestVerified { release: verified });
                self.trickle.reset(ms(now), &mut self.rng);
                self.schedule_request(now);
                self.replay_early(now);
            }
            Err(error) => {
                self.stats.bundle_failures += 1;
                // A delta against a base we lack will not verify from any
                // holder: the release is not for us by radio.
                let other_base = matches!(error, RadioError::OtherBase { .. });
                self.events
                    .push_back(LinkEvent::BundleRejected { release: id, error });
                if let Some(f) = self.fetch.as_mut() {
                    f.pieces.clear();
                    f.failures += 1;
                    if other_base || f.failures >= self.config.timing.bundle_failures_max {
                        self.rejected.insert(id);
                        self.fetch = None;
                    }
                }
                self.postpone_request(now);
            }
        }
    }

    /// Keeps a symbol we cannot use yet, while we fetch something.
    fn keep_early(&mut self, src: ShortId, payload: &[u8]) {
        if !self.needy() {
            return;
        }
        if self.early.len() >= EARLY_SYMBOLS_MAX {
            self.early.pop_front();
        }
        self.early.push_back((src, payload.to_vec()));
    }

    /// Feeds the kept symbols whose object is now known to their decoders.
    fn replay_early(&mut self, now: Micros) {
        let Some(c) = self.carried.as_ref() else {
            return;
        };
        let (known, unknown): (VecDeque<_>, VecDeque<_>) = core::mem::take(&mut self.early)
            .into_iter()
            .partition(|(_, p)| {
                p.get(..TAG_LEN)
                    .is_some_and(|tag| c.chunk_tags.iter().any(|t| t == tag))
            });
        self.early = unknown;
        for (src, payload) in known {
            let _ = self.on_symbol(now, src, &payload);
        }
    }

    fn on_symbol(&mut self, now: Micros, src: ShortId, payload: &[u8]) -> Result<(), RadioError> {
        self.quiet_until = self.quiet_until.max(now.plus(self.config.timing.quiet_us));
        let Some(tag) = payload.get(..TAG_LEN) else {
            return Err(RadioError::Truncated { what: "symbol" });
        };
        let Some(c) = self.carried.as_mut() else {
            self.keep_early(src, payload);
            return Ok(());
        };
        let Some(i) = c.chunk_tags.iter().position(|t| t == tag) else {
            self.keep_early(src, payload);
            return Ok(());
        };
        let n = self.neighbours.entry(src).or_default();
        n.symbols_at = Some(now);
        n.served_at = Some(now);
        n.failures = 0;
        if i >= c.chunks {
            n.pieces_at = Some(now);
        }
        if !self.bursting && self.want.iter().any(|&w| w > 0) {
            // Another source is already sending this release's symbols.
            self.want.iter_mut().for_each(|w| *w = 0);
            self.askers.clear();
            if self.pieces_out.is_empty() && self.patch_out.is_empty() {
                self.burst_at = None;
            }
            self.stats.bursts_suppressed += 1;
        }
        let mut result = Ok(());
        let info = c.infos[i];
        if let ChunkSlot::Missing { decoder, symbols } = &mut c.slots[i] {
            if let Some(esi) = meshota_radios::coding::symbol_esi(payload) {
                symbols.insert(esi);
            }
            let pushed = match decoder {
                Some(d) => d.push(payload),
                None => ObjectDecoder::new(info).and_then(|d| decoder.insert(d).push(payload)),
            };
            match pushed {
                Ok(Some(bytes)) if i < c.chunks => {
                    c.slots[i] = ChunkSlot::Held(bytes);
                    c.held += 1;
                    self.stats.chunks_decoded += 1;
                    self.stats.sources.insert(src);
                }
                Ok(Some(bytes)) => {
                    self.stats.pieces_decoded += 1;
                    self.stats.sources.insert(src);
                    if let Some(job) = piece_job(c, i - c.chunks, &bytes) {
                        self.events.push_back(LinkEvent::ApplyPiece(job));
                    }
                    c.slots[i] = ChunkSlot::Held(bytes);
                }
                Ok(None) => {}
                Err(meshota_radios::Error::DecodedObjectMismatch) => {
                    symbols.clear();
                    self.stats.chunk_failures += 1;
                    if i >= c.chunks {
                        let k = i - c.chunks;
                        if let Some(p) = c.patch.as_mut() {
                            if let Some(m) = p.mismatches.get_mut(k) {
                                *m += 1;
                                if *m >= PIECE_MISMATCHES_MAX
                                    && p.outcomes.get(k) == Some(&PieceOutcome::Pending)
                                {
                                    p.outcomes[k] = PieceOutcome::Failed;
                                    self.stats.piece_failures += 1;
                                }
                            }
                        }
                    }
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
            self.completed(now, release);
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
        let tag = PayloadRequest::set_tag(payload)?;
        let Some(set) = c.set_of(&tag) else {
            // Another release, or a patch whose index we do not hold.
            return Ok(());
        };
        let pieces = set.start > 0;
        let r = PayloadRequest::decode(payload, set.len())?;
        let complete = c.complete();
        let serves = if pieces { c.holds_patch() } else { complete };
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
        if !serves || !self.config.relay {
            return Ok(());
        }
        // Several needy neighbours will hear the burst: it must cover the
        // unluckiest of them.
        let div = if self.needy_neighbours() >= 2 {
            self.config.timing.margin_div_shared
        } else {
            self.config.timing.margin_div
        }
        .max(1);
        for (k, j) in r.held.missing().enumerate() {
            let j = set.start + j;
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
        self.join_round(now, h.src);
        Ok(())
    }

    /// `asker` asked us, a source: the burst waits the burst backoff
    /// divided by the square of the askers so far, times a random factor
    /// in [1/2, 1), so the source that covers the most askers goes first
    /// (never behind one with fewer askers, whatever the draw). A lone
    /// source (one asker, no other needy neighbour known) waits
    /// `lone_wait_factor` times that: a burst serving one node is the last
    /// resort, so a neighbour of the asker that covers more can go first
    /// (the asker then asks it, and we drop the asker).
    fn join_round(&mut self, now: Micros, asker: ShortId) {
        if self.askers.is_empty() {
            self.round_start = now;
        }
        self.askers.insert(asker);
        let askers = self.askers.len() as u64;
        let mut span = self.config.timing.burst_backoff_us / (askers * askers);
        if askers == 1 && self.needy_neighbours() <= 1 {
            span = span.saturating_mul(self.config.timing.lone_wait_factor.max(1));
        }
        if self.served_bundle.0.contains(&asker) && now < self.served_bundle.1 {
            // We just won this neighbourhood's election for the bundle:
            // its payload requests need not hold another.
            span = span.min(self.config.timing.burst_backoff_us / 16);
        }
        let wait = span / 2 + self.backoff(span / 2);
        let at = self.round_start.plus(wait).max(now);
        if !self.bursting {
            self.burst_at = Some(self.burst_at.map_or(at, |b| b.min(at)));
        }
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
            .filter(|(_, n)| n.announced.is_some_and(|a| a.release == id && a.serves()))
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
        let mine = ReleaseKey::of(&self.carried.as_ref()?.bundle.id);
        self.neighbours
            .iter()
            .filter(|(_, n)| {
                n.symbols_at.is_some()
                    || n.announced
                        .is_some_and(|a| a.release == mine && a.is_source())
            })
            .max_by_key(|(_, n)| {
                (
                    n.strong(),
                    core::cmp::Reverse(n.failures),
                    n.served_at.is_some_and(|t| now.since(t) < STICKY_US),
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
            .filter(|(_, n)| n.announced.is_some_and(|a| a.release == f.id && a.serves()))
            .max_by_key(|(k, n)| {
                (
                    n.strong(),
                    core::cmp::Reverse(n.failures),
                    n.announced.is_some_and(|a| a.is_source()),
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
            if !self.notices.is_empty() {
                t = t.min(self.busy_until);
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
        if let Some(to) = self.notices.pop_front() {
            self.stats.clash_notices_sent += 1;
            return self.encode(FrameKind::Notice, to, 0, 1, &[NOTICE_ID_SHARED]);
        }
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
                self.burst_had_bundle = true;
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
            if core::mem::take(&mut self.burst_had_bundle) {
                self.served_bundle = (
                    core::mem::take(&mut self.askers),
                    now.plus(SERVED_BUNDLE_US),
                );
            }
            self.askers.clear();
            self.bundle_need = 0;
            self.repairs_out = 0;
        }
        None
    }

    fn build_request(&mut self) -> Option<(Vec<u8>, ShortId)> {
        if let Some(f) = &self.fetch {
            let complete_holder = self
                .neighbours
                .get(&f.server)
                .and_then(|n| n.announced)
                .is_some_and(|a| a.release == f.id && a.is_source());
            let patient = f
                .holder_since
                .is_none_or(|t| self.clock.since(t) < BUNDLE_PATIENCE_US);
            if !complete_holder && patient {
                // Only holders that are still fetching are heard: wait for
                // one that can serve the symbols too.
                return None;
            }
            let r = ManifestRequest {
                tag: f.id.tag(),
                held: f.pieces.held(),
            };
            let server = f.server;
            let frame = self.encode(FrameKind::Request, server, 0, 1, &r.encode())?;
            return Some((frame, server));
        }
        let c = self.carried.as_ref().filter(|c| !c.complete())?;
        // By patch first, from a neighbour that holds it: its index, then
        // the pieces still wanted; then the chunks no piece produced.
        let patch_src = self.choose_patch_source();
        if let (Some(p), Some(src)) = (c.patch.as_ref().filter(|p| p.fetching), patch_src) {
            if p.index.is_none() {
                let r = ManifestRequest {
                    tag: p.tag,
                    held: p.fragments.held(),
                };
                let frame = self.encode(FrameKind::Request, src, 0, 1, &r.encode())?;
                return Some((frame, src));
            }
            let wanted: BTreeSet<usize> = c.wanted_pieces().into_iter().collect();
            if !wanted.is_empty() {
                let set = c.chunks..c.slots.len();
                let r = PayloadRequest {
                    tag: p.tag,
                    held: not_needed(set.clone(), |j| !wanted.contains(&(j - c.chunks)))?,
                    needs: needs_of(c, set, |j| wanted.contains(&(j - c.chunks))),
                };
                let bytes = r.encode(self.codec.max_payload());
                let frame = self.encode(FrameKind::Progress, src, 0, 1, &bytes)?;
                return Some((frame, src));
            }
        }
        let src = self.choose_source(self.clock)?;
        // Chunks a piece will produce wait for it (when a patch source is
        // heard, or the piece is being applied).
        let waits = |j: usize| c.awaits_piece(j, patch_src.is_some());
        let set = 0..c.chunks;
        let needs = needs_of(c, set.clone(), |j| !c.is_held(j) && !waits(j));
        if needs.is_empty() {
            return None;
        }
        let r = PayloadRequest {
            tag: c.tag,
            held: not_needed(set, |j| c.is_held(j) || waits(j))?,
            needs,
        };
        let bytes = r.encode(self.codec.max_payload());
        let frame = self.encode(FrameKind::Progress, src, 0, 1, &bytes)?;
        Some((frame, src))
    }

    /// The neighbour to ask for the patch: one that announced it holds the
    /// patch, or that we heard sending its fragments or pieces, chosen by
    /// the same preferences as [`Self::choose_source`] (a strong link, the
    /// fewest unanswered requests, the one that just served us, the most
    /// needy neighbours announced), so the patch's senders are elected
    /// like the chunks'. When the
    /// release lists several patches, an announcer may hold another base's:
    /// one that left our last [`PATCH_SOURCE_SILENCES_MAX`] requests
    /// unanswered is then passed over (and complete neighbours asked for
    /// chunks if no other holder is heard).
    fn choose_patch_source(&self) -> Option<ShortId> {
        let c = self.carried.as_ref()?;
        let mine = ReleaseKey::of(&c.bundle.id);
        let several = c.bundle.manifest.body().patches.len() > 1;
        self.neighbours
            .iter()
            .filter(|(_, n)| {
                (!several || n.failures < PATCH_SOURCE_SILENCES_MAX)
                    && (n.pieces_at.is_some()
                        || n.announced
                            .is_some_and(|a| a.release == mine && a.pieces && !a.leaf))
            })
            .max_by_key(|(_, n)| {
                (
                    n.strong(),
                    core::cmp::Reverse(n.failures),
                    n.served_at.is_some_and(|t| self.clock.since(t) < STICKY_US),
                    n.coverage,
                    n.pieces_at,
                    n.adopted_at,
                    n.complete_at,
                )
            })
            .map(|(id, _)| *id)
    }

    fn next_piece(&mut self) -> Option<Vec<u8>> {
        if self.repairs_out == 0 && !self.pieces_out.is_empty() {
            // Askers lost different fragments: when the union of their
            // losses is larger than the largest loss (plus the margin
            // symbols get), repair fragments serve them all for less.
            let need = self.bundle_need;
            let coded = need + need / self.config.timing.margin_div.max(1) as usize + 1;
            if self.pieces_out.len() > coded {
                self.repairs_out = coded;
                self.pieces_out.clear();
            }
        }
        if self.repairs_out > 0 {
            return self.next_repair_fragment();
        }
        let c = self.carried.as_ref()?;
        let Some(i) = self.pieces_out.pop_first() else {
            return self.next_patch_fragment();
        };
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

    fn next_repair_fragment(&mut self) -> Option<Vec<u8>> {
        let per = bundle::piece_len(self.codec.max_payload()).max(1);
        let c = self.carried.as_ref()?;
        let tag = c.tag;
        let len = u16::try_from(c.bundle.bytes.len()).ok()?;
        if self.repair_encoder.as_ref().is_none_or(|(t, _)| *t != tag) {
            let enc = meshota_radios::RepairEncoder::new(&c.bundle.bytes, per).ok()?;
            self.repair_encoder = Some((tag, enc));
            self.next_repair = u8::try_from(self.rng.range(0, 256)).unwrap_or(0);
        }
        let (_, enc) = self.repair_encoder.as_ref()?;
        let head = bundle::RepairHead {
            count: u8::try_from(enc.count()).ok()?,
            r: self.next_repair,
            len,
        };
        let mut payload = tag.to_vec();
        payload.extend_from_slice(&head.encode());
        payload.extend_from_slice(&enc.repair(head.r));
        self.next_repair = self.next_repair.wrapping_add(1);
        self.repairs_out = self.repairs_out.saturating_sub(1);
        self.stats.sent_pieces += 1;
        self.stats.sent_repairs += 1;
        self.encode(FrameKind::Repair, ShortId::BROADCAST, 0, 1, &payload)
    }

    fn next_patch_fragment(&mut self) -> Option<Vec<u8>> {
        let p = self.carried.as_ref()?.patch.as_ref()?;
        let (_, bytes) = p.index.as_ref()?;
        let i = self.patch_out.pop_first()?;
        let per = bundle::piece_len(self.codec.max_payload()).max(1);
        let count = u8::try_from(bytes.len().div_ceil(per)).ok()?;
        let from = usize::from(i) * per;
        let data = bytes.get(from..(from + per).min(bytes.len()))?;
        let mut payload = p.tag.to_vec();
        payload.extend_from_slice(data);
        self.stats.sent_pieces += 1;
        self.stats.sent_patch_fragments += 1;
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
            // Start at a random point of the repair space so that two
            // sources heard by one receiver almost never repeat each other.
            let start = self
                .rng
                .range(0, u64::from(ObjectEncoder::REPAIR_START_MAX));
            enc.repair_from(u32::try_from(start).unwrap_or(0));
            c.encoders[j] = Some(enc);
        }
        let symbol = c.encoders[j].as_mut()?.repair_symbols(1).pop()?;
        self.want[j] -= 1;
        self.stats.sent_symbols += 1;
        if j >= c.chunks {
            self.stats.sent_piece_symbols += 1;
        }
        self.encode(FrameKind::Symbol, ShortId::BROADCAST, 0, 1, &symbol)
    }
}

/// The bitmap of a request over `set`: bit set for each object the asker
/// does not need (held, or waiting for something else).
fn not_needed(set: core::ops::Range<usize>, skip: impl Fn(usize) -> bool) -> Option<Progress> {
    let mut p = Progress::new(set.len()).ok()?;
    for (k, j) in set.enumerate() {
        if skip(j) {
            p.set(k);
        }
    }
    Some(p)
}

/// Symbols still needed by each object of `set` that `need` selects, in
/// order: source symbols less the distinct symbols held.
fn needs_of(c: &Carried, set: core::ops::Range<usize>, need: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut out = Vec::new();
    for j in set {
        if !need(j) {
            continue;
        }
        let distinct = match &c.slots[j] {
            ChunkSlot::Missing { symbols, .. } => u32::try_from(symbols.len()).unwrap_or(u32::MAX),
            ChunkSlot::Held(_) | ChunkSlot::Stored => 0,
        };
        out.push(c.infos[j].source_symbols().saturating_sub(distinct).max(1));
    }
    out
}

/// The job for piece `k` just decoded, when this node fetches by the
/// patch and was waiting for it (marks it applying).
fn piece_job(c: &mut Carried, k: usize, bytes: &[u8]) -> Option<PieceJob> {
    let release = c.bundle.id;
    let target = alloc::sync::Arc::clone(c.bundle.index());
    let p = c.patch.as_mut().filter(|p| p.fetching)?;
    if p.outcomes.get(k) != Some(&PieceOutcome::Pending) {
        return None;
    }
    let (index, _) = p.index.as_ref()?;
    let piece = *index.pieces().get(k)?;
    let job = PieceJob::new(
        release,
        p.id,
        u32::try_from(k).ok()?,
        piece,
        bytes.into(),
        index.clone(),
        target,
    );
    p.outcomes[k] = PieceOutcome::Applying;
    Some(job)
}
/// A neighbour's need counts towards our announced coverage this long
/// after it last showed it (µs; Trickle's largest interval).
const NEEDY_FRESH_US: u64 = 600 * Micros::SECOND;
/// After a bundle burst, its askers' payload requests within this long (µs)
/// are answered after a short wait, not a new election.
const SERVED_BUNDLE_US: u64 = 120 * Micros::SECOND;
/// Symbols kept before their object is known (about 110 KB at SF7).
const EARLY_SYMBOLS_MAX: usize = 512;
/// A node fetching a bundle asks a holder that is still fetching the
/// payload only after hearing no complete holder this long (µs).
const BUNDLE_PATIENCE_US: u64 = 600 * Micros::SECOND;
/// Link-quality memory: past this many frames sent, the counts halve.
const QUALITY_WINDOW: u32 = 32;
/// Message ids behind the last one (a restart makes one), halved every
/// [`CLASH_HALVING_US`], after which a neighbour's frames are taken for
/// two senders'.
const CLASH_REGRESSIONS: u32 = 3;
/// How often a neighbour's count of backward message ids is halved (an
/// hour: three restarts of one node within it are rare, two senders
/// interleave at every frame).
const CLASH_HALVING_US: u64 = 3_600 * Micros::SECOND;
/// The payload of a [`FrameKind::Notice`] telling its receiver that two
/// nodes seem to use its short id.
const NOTICE_ID_SHARED: u8 = 1;
/// A neighbour is a strong link when we hear at least this share of its
/// frames (%): about 1 dB of SNR margin with 10 % extra loss.
const STRONG_PERCENT: u32 = 60;
/// A source whose symbols we heard this recently is asked again first
/// (µs): its next burst serves its other askers too.
const STICKY_US: u64 = 60 * Micros::SECOND;

fn ms(now: Micros) -> Timestamp {
    Timestamp(now.0 / 1_000)
}
