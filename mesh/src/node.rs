//! The protocol core of one node: a state machine fed [`Event`]s with the
//! current time, handing back [`Action`]s.

use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::ops::Bound;

use meshota_blobstore::ChunkIndex;
use meshota_manifest::{
    Expiration, Hash, InstallPolicy, KeyId, NodeReport, ReleaseManifest, RolloutAction,
    RolloutCommand, SignedDocument, TrustRoot, UnixTime, Verified,
};

use crate::config::Config;
use crate::event::{Action, Event, Offence, PeerId};
use crate::patch::{PIECE_ATTEMPTS, PatchFetch, PatchIndexed, Phase};
use crate::peer::{Peer, Request};
use crate::release::{Indexed, Release, cohort};
use crate::rng::SeededRng;
use crate::time::Timestamp;
use crate::trickle::Trickle;
use crate::wire::Message;
use crate::{Bitmap, Error};

/// What the node runs now, as its boot pipeline last confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Installed {
    /// The running release's manifest id, if it came through meshota.
    pub release: Option<Hash>,
    /// The confirmed security version for the node's (hardware, channel).
    pub security_version: Option<u64>,
    /// BLAKE3 of the image in the confirmed slot, when known: the base a
    /// listed patch must be from for this node to fetch it.
    pub image_hash: Option<Hash>,
}

/// Counters for status pages, metrics and the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes sent (encoded messages).
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Chunks fetched and verified.
    pub chunks_fetched: u64,
    /// Bytes of fetched chunks.
    pub chunk_bytes_fetched: u64,
    /// Patch blobs (patch indexes and pieces) fetched and hash-checked.
    pub patch_blobs_fetched: u64,
    /// Their bytes.
    pub patch_bytes_fetched: u64,
    /// Target chunks the driver produced from patches and reported.
    pub patch_chunks_produced: u64,
    /// Patch fetches that ended without applying anything (no index
    /// found, a patch index for another base or target, every piece given
    /// up).
    pub patch_fallbacks: u64,
    /// Chunks served (asked of the driver).
    pub chunks_served: u64,
    /// Chunk requests answered `Busy` (upload backlogged).
    pub busy_answers: u64,
    /// Chunks rejected for a bad hash.
    pub corrupt_chunks: u64,
    /// Manifests rejected.
    pub rejected_manifests: u64,
    /// Peers banned.
    pub bans: u64,
}

/// A token bucket holding at most one second of budget.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: u64,
    tokens: u64,
    updated: Timestamp,
}

impl Bucket {
    fn new(rate: u64, now: Timestamp) -> Self {
        Self {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let add = self.rate.saturating_mul(now.since(self.updated)) / 1000;
        if add > 0 {
            self.tokens = (self.tokens + add).min(self.rate.max(1));
            self.updated = now;
        }
    }

    /// Takes `n` tokens if available. A request larger than the bucket is
    /// allowed when the bucket is full, so big chunks are never stuck.
    fn take(&mut self, n: u64, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens >= n || self.tokens >= self.rate {
            self.tokens = self.tokens.saturating_sub(n);
            true
        } else {
            false
        }
    }

    /// When `n` tokens (or a full bucket) will be there.
    fn ready_at(&self, n: u64) -> Timestamp {
        let need = n.min(self.rate).saturating_sub(self.tokens);
        Timestamp(self.updated.0 + need.saturating_mul(1000).div_ceil(self.rate.max(1)))
    }
}

/// Per-chunk fetch bookkeeping for retries.
#[derive(Debug, Clone, Copy, Default)]
struct Retry {
    failures: u32,
    not_before: Timestamp,
}

/// Seed-side distribution defers duplicates of a release only while some
/// chunk of it went out for the first time within this many milliseconds.
pub const FRESH_DEMAND_MS: u64 = 1_000;

/// The protocol core of one node. See the crate docs for the contract.
#[derive(Debug)]
pub struct Node {
    config: Config,
    trust: Verified<TrustRoot>,
    installed: Installed,
    rng: SeededRng,
    releases: BTreeMap<Hash, Release>,
    /// Every chunk this node holds (store or seeded image).
    held: BTreeSet<Hash>,
    peers: BTreeMap<PeerId, Peer>,
    banned: BTreeMap<KeyId, Timestamp>,
    rejected: VecDeque<Hash>,
    /// Manifests requested and from whom.
    pending_manifests: BTreeMap<Hash, (PeerId, Timestamp)>,
    /// Chunk indexes requested (index id) and from whom.
    pending_indexes: BTreeMap<Hash, (PeerId, Timestamp)>,
    retries: BTreeMap<Hash, Retry>,
    next_request: u32,
    trickle: Trickle,
    have_flush_at: Option<Timestamp>,
    upload: Option<Bucket>,
    download: Option<Bucket>,
    serve_queue: VecDeque<(PeerId, u32, Hash, u32)>,
    /// Per chunk: the last peer it was uploaded to, and when (for
    /// `Limits::super_seed_ms`). Holds only chunks this node holds.
    uploaded: BTreeMap<Hash, (PeerId, Timestamp)>,
    /// The event being handled is a chunk arriving: scheduling may wait
    /// until `freed_slots` makes a batch worth the scan.
    chunk_event: bool,
    /// Request slots freed by answers since the last full schedule.
    freed_slots: usize,
    /// The chunk length the download budget last refused, if it did.
    download_blocked: Option<u32>,
    reports: BTreeMap<KeyId, (u64, Vec<u8>)>,
    /// The patch fetch of the wanted release, once its index is known.
    patch_fetch: Option<PatchFetch>,
    actions: VecDeque<Action>,
    armed: Option<Timestamp>,
    stats: Stats,
    now: Timestamp,
}

impl Node {
    /// A node with a verified trust root and what it runs now.
    #[must_use]
    pub fn new(
        config: Config,
        trust: Verified<TrustRoot>,
        installed: Installed,
        now: Timestamp,
    ) -> Self {
        let mut rng = SeededRng::new(config.seed);
        let trickle = Trickle::new(config.trickle, now, &mut rng);
        let upload = config
            .limits
            .upload_bytes_per_sec
            .map(|r| Bucket::new(r, now));
        let download = config
            .limits
            .download_bytes_per_sec
            .map(|r| Bucket::new(r, now));
        let mut node = Self {
            config,
            trust,
            installed,
            rng,
            releases: BTreeMap::new(),
            held: BTreeSet::new(),
            peers: BTreeMap::new(),
            banned: BTreeMap::new(),
            rejected: VecDeque::new(),
            pending_manifests: BTreeMap::new(),
            pending_indexes: BTreeMap::new(),
            retries: BTreeMap::new(),
            next_request: 0,
            trickle,
            have_flush_at: None,
            upload,
            download,
            serve_queue: VecDeque::new(),
            uploaded: BTreeMap::new(),
            chunk_event: false,
            freed_slots: 0,
            download_blocked: None,
            reports: BTreeMap::new(),
            patch_fetch: None,
            actions: VecDeque::new(),
            armed: None,
            stats: Stats::default(),
            now,
        };
        node.rearm();
        node
    }

    // ------------------------------------------------------------ queries

    /// The next action for the driver, if any.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the core next needs [`Event::Timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    /// This node's id.
    #[must_use]
    pub const fn node_id(&self) -> KeyId {
        self.config.node_id
    }

    /// Counters.
    #[must_use]
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What the node runs.
    #[must_use]
    pub const fn running(&self) -> Installed {
        self.installed
    }

    /// Ids of the verified releases held, ascending.
    #[must_use]
    pub fn releases(&self) -> Vec<Hash> {
        self.releases.keys().copied().collect()
    }

    /// A held release's verified manifest.
    #[must_use]
    pub fn manifest(&self, id: &Hash) -> Option<&Verified<ReleaseManifest>> {
        self.releases.get(id).map(|r| &r.manifest)
    }

    /// Chunks held and total chunks of a release, once its index is known.
    #[must_use]
    pub fn progress(&self, id: &Hash) -> Option<(usize, usize)> {
        let ix = self.releases.get(id)?.index.as_ref()?;
        Some((ix.have.count(), ix.have.len()))
    }

    /// Per chunk ordinal of a release's index: whether this node or a
    /// connected peer (by its last advertised bitmap) holds it. `None`
    /// until the index is known. What a want list carries to the operator.
    #[must_use]
    pub fn mesh_holdings(&self, id: &Hash) -> Option<Bitmap> {
        let ix = self.releases.get(id)?.index.as_ref()?;
        let mut out = ix.have.clone();
        for peer in self.peers.values() {
            if let Some(theirs) = peer.have.get(id) {
                for i in 0..out.len().min(theirs.len()) {
                    if theirs.get(i) {
                        out.set(i);
                    }
                }
            }
        }
        Some(out)
    }

    /// The latest signed report of every node heard from (this one
    /// included), as gossiped: what a want list carries back.
    pub fn reports(&self) -> impl Iterator<Item = &[u8]> {
        self.reports.values().map(|(_, bytes)| bytes.as_slice())
    }

    /// The release this node would install next, if any.
    #[must_use]
    pub fn wanted(&self) -> Option<Hash> {
        self.wanted_release()
    }

    /// Whether a chunk is held.
    #[must_use]
    pub fn holds(&self, hash: &Hash) -> bool {
        self.held.contains(hash)
    }

    /// Manifest requests outstanding (bounded by
    /// [`crate::Limits::pending_manifests`]).
    #[must_use]
    pub fn pending_manifest_requests(&self) -> usize {
        self.pending_manifests.len()
    }

    /// Number of connected peers.
    #[must_use]
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    // ---------------------------------------------------- local changes

    /// Adds a release from a local source (publisher, bundle import, the
    /// node's own store at start-up). The manifest is verified like one
    /// from a peer; the index, if given, must match it.
    ///
    /// # Errors
    /// [`Error::Release`] naming the rule the manifest or index broke.
    pub fn add_release(
        &mut self,
        now: Timestamp,
        manifest: &[u8],
        index: Option<&[u8]>,
    ) -> Result<Hash, Error> {
        self.now = now;
        let id = self
            .accept_manifest(manifest)
            .map_err(|e| Error::Release(e.to_string()))?;
        if let Some(ix) = index {
            self.accept_index(id, ix)
                .map_err(|e| Error::Release(e.to_string()))?;
        }
        self.after_change();
        Ok(id)
    }

    /// Marks chunks as held (from the store at start-up, or a seeded image).
    pub fn add_chunks(&mut self, now: Timestamp, hashes: impl IntoIterator<Item = Hash>) {
        self.now = now;
        for h in hashes {
            self.gain_chunk(h);
        }
        self.after_change();
    }

    /// Adds a patch index blob from a local source (the store at start-up,
    /// a publisher): a held manifest must list it (by its hash), for the
    /// base it names. The node then serves it and its bitmap.
    ///
    /// # Errors
    /// [`Error::Release`] when no held manifest lists it, or it is not the
    /// patch the manifest describes.
    pub fn add_patch_index(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Hash, Error> {
        self.now = now;
        let id = self.accept_patch_index(bytes).map_err(Error::Release)?;
        self.after_change();
        Ok(id)
    }

    /// The patch fetch of the wanted release: the patch id and whether it
    /// is still under way (`None` when the node fetches chunks only).
    #[must_use]
    pub fn patch_in_progress(&self) -> Option<(Hash, bool)> {
        let f = self.patch_fetch.as_ref()?;
        Some((f.patch?, f.phase != Phase::Off))
    }

    /// The boot pipeline confirmed `release` with `security_version`.
    pub fn installed(&mut self, now: Timestamp, release: Hash, security_version: u64) {
        self.now = now;
        let image_hash = self
            .releases
            .get(&release)
            .and_then(|r| r.manifest.components.first())
            .map(|c| c.image_hash);
        self.installed = Installed {
            release: Some(release),
            security_version: Some(security_version),
            image_hash,
        };
        self.patch_fetch = None;
        self.trickle.reset(now, &mut self.rng);
        self.after_change();
    }

    /// Publishes this node's own signed report (or one from a bundle).
    pub fn publish_report(&mut self, now: Timestamp, bytes: Vec<u8>) {
        self.now = now;
        self.accept_report(None, bytes);
        self.after_change();
    }

    /// Applies a signed rollout command from a local source.
    ///
    /// # Errors
    /// [`Error::Release`] when it fails verification.
    pub fn add_rollout_command(&mut self, now: Timestamp, bytes: &[u8]) -> Result<(), Error> {
        self.now = now;
        self.accept_rollout(None, bytes)
            .map_err(|e| Error::Release(e.to_string()))?;
        self.after_change();
        Ok(())
    }

    // ------------------------------------------------------------ events

    /// Feeds one event at time `now`; actions queue up for [`Node::poll`].
    pub fn handle(&mut self, now: Timestamp, event: Event) {
        self.now = now;
        self.chunk_event = false;
        match event {
            Event::LinkUp { peer, node } => self.link_up(peer, node),
            Event::LinkDown { peer } => self.drop_peer(peer),
            Event::Message { peer, bytes } => self.message(peer, &bytes),
            Event::Timeout => self.timeout(),
            Event::PatchApplied {
                release,
                patch,
                produced,
            } => self.patch_applied(release, patch, produced),
            Event::StoreFailed { hash } | Event::ServeFailed { hash, .. } => {
                self.lose_chunk(hash);
                if let Event::ServeFailed { peer, request, .. } = event {
                    self.send(peer, &Message::NoChunk { request, hash });
                }
            }
        }
        self.after_change();
    }

    fn after_change(&mut self) {
        self.plan_patch();
        self.check_install_ready();
        self.schedule();
        self.rearm();
    }

    // ------------------------------------------------------------ helpers

    fn expiration(&self) -> Expiration {
        match self.config.wall_clock_at_zero {
            Some(base) => Expiration::Enforce {
                now: UnixTime(base.0 + self.now.0 / 1000),
            },
            None => Expiration::dangerous_ignore(),
        }
    }

    fn send(&mut self, peer: PeerId, msg: &Message) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        if let Ok(bytes) = msg.encode() {
            self.stats.messages_sent += 1;
            self.stats.bytes_sent += bytes.len() as u64;
            self.actions.push_back(Action::Send { peer, bytes });
        }
    }

    fn broadcast(&mut self, msg: &Message, except: Option<PeerId>) {
        let peers: Vec<PeerId> = self
            .peers
            .keys()
            .copied()
            .filter(|p| Some(*p) != except)
            .collect();
        for p in peers {
            self.send(p, msg);
        }
    }

    fn summary(&self) -> Message {
        Message::Summary {
            releases: self
                .releases
                .iter()
                .filter(|(_, r)| !r.revoked)
                .map(|(id, _)| *id)
                .collect(),
            installed: self.installed.release,
        }
    }

    fn penalise(&mut self, peer: PeerId, offence: Offence) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.points = p.points.saturating_add(offence.points());
        let (node, points) = (p.node, p.points);
        self.actions.push_back(Action::Penalised {
            node,
            offence,
            points,
        });
        if points >= self.config.limits.ban_threshold {
            let until = Timestamp(self.now.0 + self.config.limits.ban_ms);
            self.banned.insert(node, until);
            self.stats.bans += 1;
            self.actions.push_back(Action::Disconnect {
                peer,
                node,
                until,
                reason: offence,
            });
            self.drop_peer(peer);
        }
    }

    fn link_up(&mut self, peer: PeerId, node: KeyId) {
        if let Some(until) = self.banned.get(&node).copied() {
            if self.now < until {
                self.actions.push_back(Action::Disconnect {
                    peer,
                    node,
                    until,
                    reason: Offence::MalformedMessage,
                });
                return;
            }
            self.banned.remove(&node);
        }
        self.peers.insert(peer, Peer::new(node));
        let s = self.summary();
        self.send(peer, &s);
    }

    fn drop_peer(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        for r in self.releases.values_mut() {
            r.subscribers.remove(&peer);
        }
        self.pending_manifests.retain(|_, (p, _)| *p != peer);
        self.pending_indexes.retain(|_, (p, _)| *p != peer);
        self.serve_queue.retain(|(p, ..)| *p != peer);
    }

    fn remember_rejected(&mut self, id: Hash) {
        if self.rejected.len() >= self.config.limits.rejected_ids {
            self.rejected.pop_front();
        }
        self.rejected.push_back(id);
    }

    // ------------------------------------------------------- messages

    fn message(&mut self, peer: PeerId, bytes: &[u8]) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.stats.messages_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(_) => return self.penalise(peer, Offence::MalformedMessage),
        };
        self.chunk_event = matches!(msg, Message::Chunk { .. });
        match msg {
            Message::Summary { releases, .. } => self.on_summary(peer, releases),
            Message::GetManifest { id } => {
                if let Some(r) = self.releases.get(&id).filter(|r| !r.revoked) {
                    let bytes = r.manifest_bytes.clone();
                    self.send(peer, &Message::Manifest { bytes });
                }
            }
            Message::Manifest { bytes } => self.on_manifest(peer, &bytes),
            Message::GetIndex { id } => {
                let found = self
                    .releases
                    .values()
                    .filter_map(|r| r.index.as_ref())
                    .find(|ix| ix.id == id)
                    .map(|ix| ix.bytes.clone())
                    .or_else(|| self.patch_index_bytes(&id));
                if let Some(bytes) = found {
                    self.send(peer, &Message::Index { bytes });
                }
            }
            Message::Index { bytes } => self.on_index(peer, &bytes),
            Message::GetHave { release } if self.is_patch(&release) => {
                self.on_get_patch_have(peer, release);
            }
            Message::Have { release, bitmap } if self.is_patch(&release) => {
                self.on_patch_have(peer, release, bitmap);
            }
            Message::GetHave { release } => {
                if let Some(r) = self.releases.get_mut(&release) {
                    r.subscribers.insert(peer);
                    if let Some(ix) = &r.index {
                        let bitmap = ix.have.as_bytes().to_vec();
                        self.send(peer, &Message::Have { release, bitmap });
                    }
                }
            }
            Message::Have { release, bitmap } => self.on_have(peer, release, &bitmap),
            Message::HaveMore { release, ordinals } => {
                if let Some(b) = self
                    .peers
                    .get_mut(&peer)
                    .and_then(|p| p.have.get_mut(&release))
                {
                    for o in ordinals {
                        b.set(o as usize);
                    }
                }
            }
            Message::GetChunk { request, hash } => self.on_get_chunk(peer, request, hash),
            Message::Chunk {
                request,
                hash,
                data,
            } => self.on_chunk(peer, request, hash, data),
            Message::NoChunk { request, hash } => self.on_no_chunk(peer, request, hash),
            Message::Busy { request, hash } => self.on_busy(peer, request, hash),
            Message::Report { bytes } => self.accept_report(Some(peer), bytes),
            Message::Rollout { bytes } => {
                if self.accept_rollout(Some(peer), &bytes).is_err() {
                    self.penalise(peer, Offence::BadManifest);
                }
            }
        }
    }

    fn on_summary(&mut self, peer: PeerId, releases: Vec<Hash>) {
        let ours: Vec<Hash> = match self.summary() {
            Message::Summary { releases, .. } => releases,
            _ => Vec::new(),
        };
        if ours == releases {
            self.trickle.hear_consistent();
        } else {
            self.trickle.reset(self.now, &mut self.rng);
        }
        let timeout = self.config.limits.request_timeout_ms;
        for id in &releases {
            if self.releases.contains_key(id) || self.rejected.contains(id) {
                continue;
            }
            let stale = self
                .pending_manifests
                .get(id)
                .is_none_or(|(_, at)| self.now.since(*at) > timeout);
            if stale {
                let full = self.pending_manifests.len() >= self.config.limits.pending_manifests;
                if full && !self.pending_manifests.contains_key(id) {
                    // Bounded: the rest are asked for on a later summary.
                    break;
                }
                self.pending_manifests.insert(*id, (peer, self.now));
                self.send(peer, &Message::GetManifest { id: *id });
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.summary = releases;
        }
        self.ask_availability();
    }

    /// Asks every peer that lists a release we fetch for its bitmap, once.
    fn ask_availability(&mut self) {
        let fetching: Vec<Hash> = self
            .releases
            .iter()
            .filter(|(_, r)| r.index.is_some() && !r.complete())
            .map(|(id, _)| *id)
            .collect();
        // The wanted patch: asked of every peer listing its release; the
        // ones holding its index answer.
        let patch = self
            .patch_fetch
            .as_ref()
            .filter(|f| f.phase != Phase::Off)
            .and_then(|f| Some((f.release, f.patch?)));
        let mut asks = Vec::new();
        for (pid, p) in &mut self.peers {
            for id in &fetching {
                if p.summary.contains(id) && p.asked_have.insert(*id) {
                    asks.push((*pid, *id));
                }
            }
            if let Some((release, patch)) = patch {
                if p.summary.contains(&release) && p.asked_have.insert(patch) {
                    asks.push((*pid, patch));
                }
            }
        }
        for (pid, release) in asks {
            self.send(pid, &Message::GetHave { release });
        }
    }

    /// Verifies and inserts a manifest; returns its id.
    fn accept_manifest(&mut self, bytes: &[u8]) -> Result<Hash, meshota_manifest::Error> {
        let doc = SignedDocument::<ReleaseManifest>::decode(bytes)?;
        let id = doc.id();
        if self.releases.contains_key(&id) {
            return Ok(id);
        }
        let policy = InstallPolicy {
            hardware: None,
            installed_security_version: None,
            expiration: self.expiration(),
        };
        let verified = self.trust.verify_manifest(&doc, &policy)?;
        let encoded = verified.encode()?;
        self.actions.push_back(Action::StoreManifest {
            id,
            bytes: encoded.clone(),
        });
        self.releases.insert(id, Release::new(verified, encoded));
        self.evict_releases();
        self.trickle.reset(self.now, &mut self.rng);
        Ok(id)
    }

    fn evict_releases(&mut self) {
        while self.releases.len() > self.config.limits.releases {
            let victim = self
                .releases
                .iter()
                .filter(|(id, _)| Some(**id) != self.installed.release)
                .min_by_key(|(id, r)| (r.manifest.security_version, **id))
                .map(|(id, _)| *id);
            match victim {
                Some(v) => {
                    self.releases.remove(&v);
                }
                None => break,
            }
        }
    }

    fn on_manifest(&mut self, peer: PeerId, bytes: &[u8]) {
        match self.accept_manifest(bytes) {
            Ok(id) => {
                self.pending_manifests.remove(&id);
                self.request_index_for(id, peer);
            }
            Err(_) => {
                self.stats.rejected_manifests += 1;
                if let Ok(doc) = SignedDocument::<ReleaseManifest>::decode(bytes) {
                    let id = doc.id();
                    self.pending_manifests.remove(&id);
                    self.remember_rejected(id);
                }
                self.penalise(peer, Offence::BadManifest);
            }
        }
    }

    /// Fetch decisions start from the index: ask `peer` for it when the
    /// release is one this node wants.
    fn request_index_for(&mut self, id: Hash, peer: PeerId) {
        if self.wanted_release() != Some(id) {
            return;
        }
        let Some(r) = self.releases.get(&id) else {
            return;
        };
        if r.index.is_some() {
            return;
        }
        let Some(ix) = r.index_id() else {
            return;
        };
        let stale = self
            .pending_indexes
            .get(&ix)
            .is_none_or(|(_, at)| self.now.since(*at) > self.config.limits.request_timeout_ms);
        if stale {
            self.pending_indexes.insert(ix, (peer, self.now));
            self.send(peer, &Message::GetIndex { id: ix });
        }
    }

    /// Checks an index against release `id`'s manifest and installs it.
    fn accept_index(&mut self, id: Hash, bytes: &[u8]) -> Result<(), String> {
        let index_id = Hash::of(bytes);
        let r = self.releases.get(&id).ok_or("unknown release")?;
        let comp = r
            .manifest
            .components
            .first()
            .ok_or("release has no component")?;
        if comp.chunk_index != index_id {
            return Err(alloc::format!(
                "index {} is not the manifest's {}",
                index_id.short(),
                comp.chunk_index.short()
            ));
        }
        let index = ChunkIndex::decode(bytes).map_err(|e| e.to_string())?;
        if index.image_hash() != comp.image_hash || index.total_size() != comp.size {
            return Err("index does not describe the manifest's image".into());
        }
        if r.index.is_none() {
            self.actions.push_back(Action::StoreIndex {
                id: index_id,
                bytes: bytes.to_vec(),
            });
            let indexed = Indexed::new(index, bytes.to_vec(), index_id, &self.held);
            if let Some(r) = self.releases.get_mut(&id) {
                r.index = Some(indexed);
            }
        }
        self.pending_indexes.remove(&index_id);
        self.ask_availability();
        Ok(())
    }

    fn on_index(&mut self, peer: PeerId, bytes: &[u8]) {
        let index_id = Hash::of(bytes);
        if self.is_patch(&index_id) {
            return self.on_patch_index(bytes);
        }
        let target = self
            .releases
            .iter()
            .find(|(_, r)| r.index.is_none() && r.index_id() == Some(index_id))
            .map(|(id, _)| *id);
        let Some(id) = target else {
            // Unasked for, or for a release we dropped: ignore.
            return;
        };
        if self.accept_index(id, bytes).is_err() {
            self.penalise(peer, Offence::BadIndex);
        }
    }

    fn on_have(&mut self, peer: PeerId, release: Hash, bitmap: &[u8]) {
        let Some(len) = self
            .releases
            .get(&release)
            .and_then(|r| r.index.as_ref())
            .map(|ix| ix.have.len())
        else {
            return;
        };
        match Bitmap::from_bytes(bitmap, len) {
            Some(b) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.have.insert(release, b);
                }
            }
            None => self.penalise(peer, Offence::BadBitmap),
        }
    }

    fn chunk_len(&self, hash: &Hash) -> Option<u32> {
        self.releases
            .values()
            .filter_map(|r| r.index.as_ref())
            .find_map(|ix| ix.chunk_len(hash))
            .or_else(|| {
                self.releases
                    .values()
                    .flat_map(|r| r.patches.values())
                    .filter_map(|p| p.index.as_ref())
                    .find_map(|pi| pi.piece_len(hash))
            })
    }

    fn on_get_chunk(&mut self, peer: PeerId, request: u32, hash: Hash) {
        if !self.held.contains(&hash) {
            self.send(peer, &Message::NoChunk { request, hash });
            return;
        }
        let len = self.chunk_len(&hash).unwrap_or(0);
        let defer = self.defer_duplicate(peer, &hash);
        if !defer && self.serve_queue.is_empty() && self.upload_allows(len) {
            self.serve(peer, request, hash);
        } else if defer || self.serve_queue_full(len) {
            self.stats.busy_answers += 1;
            self.send(peer, &Message::Busy { request, hash });
        } else {
            self.serve_queue.push_back((peer, request, hash, len));
            self.note_upload(peer, hash);
        }
    }

    /// Seed-side distribution: at a capped origin of a release (it holds
    /// every chunk and fetched none), a chunk that went (or is queued to
    /// go) to another peer within `super_seed_ms` waits while peers still
    /// ask for chunks of the release that never went out (one did within
    /// [`FRESH_DEMAND_MS`]), so the capped upload carries chunks its peers
    /// lack and they pass on the rest. Without that demand duplicates are
    /// served: a star's leaves can only get them from here, and a release
    /// can hold chunks no peer will ask for (they have them from an older
    /// one). Relays never defer: a chunk they pass on is needed on every
    /// side.
    fn defer_duplicate(&self, peer: PeerId, hash: &Hash) -> bool {
        let window = self.config.limits.super_seed_ms;
        if self.upload.is_none() || window == 0 {
            return false;
        }
        let recent = self
            .uploaded
            .get(hash)
            .is_some_and(|(to, at)| *to != peer && self.now.since(*at) < window);
        recent
            && self.releases.values().any(|r| {
                r.index.as_ref().is_some_and(|ix| {
                    !ix.fetched_any
                        && ix.have.is_full()
                        && ix.ordinals.contains_key(hash)
                        && ix
                            .first_upload_at
                            .is_some_and(|t| self.now.since(t) < FRESH_DEMAND_MS)
                })
            })
    }

    /// Whether one more request of `len` bytes would wait too long: the
    /// queue is at its count limit, or the upload cap would take more
    /// than a quarter of the request timeout to reach it (a request the
    /// peer abandons is upload budget wasted, and counts as a timeout
    /// against us there).
    fn serve_queue_full(&self, len: u32) -> bool {
        let limits = &self.config.limits;
        if self.serve_queue.len() >= limits.serve_queue {
            return true;
        }
        let Some(rate) = limits.upload_bytes_per_sec else {
            return false;
        };
        let queued: u64 =
            self.serve_queue.iter().map(|q| u64::from(q.3)).sum::<u64>() + u64::from(len);
        queued.saturating_mul(1000) / rate.max(1) > limits.request_timeout_ms / 4
    }

    /// Records that `hash` is going to `peer` (queued or sent), and its
    /// first upload in every release that lists it.
    fn note_upload(&mut self, peer: PeerId, hash: Hash) {
        if self.config.limits.super_seed_ms == 0 {
            return;
        }
        if self.uploaded.insert(hash, (peer, self.now)).is_none() {
            let now = self.now;
            for r in self.releases.values_mut() {
                if let Some(ix) = r
                    .index
                    .as_mut()
                    .filter(|ix| ix.ordinals.contains_key(&hash))
                {
                    ix.first_upload_at = Some(now);
                }
            }
        }
    }

    fn upload_allows(&mut self, len: u32) -> bool {
        let now = self.now;
        self.upload
            .as_mut()
            .is_none_or(|b| b.take(u64::from(len), now))
    }

    fn serve(&mut self, peer: PeerId, request: u32, hash: Hash) {
        self.stats.chunks_served += 1;
        self.note_upload(peer, hash);
        self.actions.push_back(Action::ServeChunk {
            peer,
            request,
            hash,
        });
    }

    fn drain_serve_queue(&mut self) {
        while let Some(&(peer, request, hash, len)) = self.serve_queue.front() {
            if !self.upload_allows(len) {
                break;
            }
            self.serve_queue.pop_front();
            if self.held.contains(&hash) {
                self.serve(peer, request, hash);
            } else {
                self.send(peer, &Message::NoChunk { request, hash });
            }
        }
    }

    fn on_chunk(&mut self, peer: PeerId, request: u32, hash: Hash, data: Vec<u8>) {
        let Some(req) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.in_flight.remove(&request))
        else {
            return; // late answer to an abandoned or endgame-duplicate request
        };
        self.freed_slots += 1;
        if req.hash != hash || Hash::of(&data) != hash {
            self.stats.corrupt_chunks += 1;
            self.fail_chunk(req.hash);
            // It does not really have it: stop asking it.
            self.forget_peer_has(peer, req.hash);
            return self.penalise(peer, Offence::CorruptChunk);
        }
        if self.held.contains(&hash) {
            return;
        }
        if self.is_piece(&hash) {
            self.stats.patch_blobs_fetched += 1;
            self.stats.patch_bytes_fetched += data.len() as u64;
            if let Some(f) = self.patch_fetch.as_mut() {
                f.progress_at = self.now;
            }
        } else {
            self.stats.chunks_fetched += 1;
            self.stats.chunk_bytes_fetched += data.len() as u64;
        }
        for r in self.releases.values_mut() {
            if let Some(ix) = r
                .index
                .as_mut()
                .filter(|ix| ix.ordinals.contains_key(&hash))
            {
                ix.fetched_any = true;
            }
        }
        self.retries.remove(&hash);
        self.actions.push_back(Action::StoreChunk { hash, data });
        self.gain_chunk(hash);
    }

    fn on_no_chunk(&mut self, peer: PeerId, request: u32, hash: Hash) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.in_flight.remove(&request).is_none() {
            return;
        }
        self.forget_peer_has(peer, hash);
        self.fail_chunk(hash);
    }

    /// The peer holds the chunk but will not send it now: free the slot
    /// and back off on the chunk, but keep believing the peer has it.
    fn on_busy(&mut self, peer: PeerId, request: u32, hash: Hash) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.in_flight.remove(&request).is_none() {
            return;
        }
        // Not a failure of the chunk: a short pause, no escalation.
        let r = self.retries.entry(hash).or_default();
        r.not_before = Timestamp(self.now.0 + self.config.limits.retry_base_ms);
    }

    /// Clears `hash` from every availability bitmap `peer` sent, at the
    /// chunk's ordinals in each bitmap's own release.
    fn forget_peer_has(&mut self, peer: PeerId, hash: Hash) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for (rid, b) in &mut p.have {
            if let Some(ix) = self.releases.get(rid).and_then(|r| r.index.as_ref()) {
                for &o in ix.ordinals.get(&hash).into_iter().flatten() {
                    b.clear(o as usize);
                }
            }
            let piece = self
                .releases
                .values()
                .filter_map(|r| r.patches.get(rid)?.index.as_ref())
                .find_map(|pi| pi.positions.get(&hash));
            for &o in piece.into_iter().flatten() {
                b.clear(o as usize);
            }
        }
    }

    fn fail_chunk(&mut self, hash: Hash) {
        let r = self.retries.entry(hash).or_default();
        r.failures = r.failures.saturating_add(1);
        let backoff = self
            .config
            .limits
            .retry_base_ms
            .saturating_mul(1u64 << r.failures.min(16).saturating_sub(1))
            .min(self.config.limits.retry_max_ms);
        r.not_before = Timestamp(self.now.0 + backoff);
    }

    fn gain_chunk(&mut self, hash: Hash) {
        self.held.insert(hash);
        let mut gained = false;
        for r in self.releases.values_mut() {
            if let Some(ix) = &mut r.index {
                if let Some(ords) = ix.ordinals.get(&hash) {
                    for &o in ords {
                        if ix.have.set(o as usize) {
                            r.unannounced.push(o);
                            gained = true;
                        }
                    }
                }
            }
        }
        for r in self.releases.values_mut() {
            for ps in r.patches.values_mut() {
                if let Some(pi) = &mut ps.index {
                    for &o in pi.positions.get(&hash).into_iter().flatten() {
                        if pi.have.set(o as usize) {
                            ps.unannounced.push(o);
                            gained = true;
                        }
                    }
                }
            }
        }
        if gained && self.have_flush_at.is_none() {
            self.have_flush_at = Some(Timestamp(self.now.0 + self.config.limits.have_flush_ms));
        }
    }

    fn lose_chunk(&mut self, hash: Hash) {
        self.held.remove(&hash);
        self.uploaded.remove(&hash);
        for r in self.releases.values_mut() {
            if let Some(ix) = &mut r.index {
                for &o in ix.ordinals.get(&hash).into_iter().flatten() {
                    ix.have.clear(o as usize);
                }
            }
            r.install_announced = r.install_announced && r.complete();
            for pi in r.patches.values_mut().filter_map(|p| p.index.as_mut()) {
                for &o in pi.positions.get(&hash).into_iter().flatten() {
                    pi.have.clear(o as usize);
                }
            }
        }
    }

    fn accept_report(&mut self, from: Option<PeerId>, bytes: Vec<u8>) {
        let Ok(doc) = SignedDocument::<NodeReport>::decode(&bytes) else {
            if let Some(p) = from {
                self.penalise(p, Offence::MalformedMessage);
            }
            return;
        };
        let r = doc.unverified_body();
        let newer = self
            .reports
            .get(&r.node_id)
            .is_none_or(|(c, _)| r.counter > *c);
        if !newer {
            return;
        }
        if !self.reports.contains_key(&r.node_id)
            && self.reports.len() >= self.config.limits.reports
        {
            return;
        }
        // Checked only when it would be kept: a report signed by another
        // key than the one it carries could otherwise take a node's id and,
        // with a higher counter, shadow its real reports everywhere.
        if NodeReport::verify_self(&doc).is_err() {
            if let Some(p) = from {
                self.penalise(p, Offence::BadReport);
            }
            return;
        }
        self.reports.insert(r.node_id, (r.counter, bytes.clone()));
        self.actions.push_back(Action::ReportReceived {
            bytes: bytes.clone(),
        });
        self.broadcast(&Message::Report { bytes }, from);
    }

    fn accept_rollout(
        &mut self,
        from: Option<PeerId>,
        bytes: &[u8],
    ) -> Result<(), meshota_manifest::Error> {
        let doc = SignedDocument::<RolloutCommand>::decode(bytes)?;
        let cmd = self.trust.verify_rollout_command(&doc, self.expiration())?;
        let Some(r) = self.releases.get_mut(&cmd.release) else {
            return Ok(()); // unknown release: nothing to apply (yet)
        };
        if cmd.hardware != r.manifest.hardware || cmd.channel != r.manifest.channel {
            return Ok(());
        }
        if cmd.sequence <= r.rollout_sequence {
            return Ok(());
        }
        r.rollout_sequence = cmd.sequence;
        match cmd.action {
            RolloutAction::AdvanceStage { stage } => r.stage = r.stage.max(stage),
            RolloutAction::Halt => r.halted = true,
            RolloutAction::Resume => r.halted = false,
            RolloutAction::Revoke => r.revoked = true,
            _ => {}
        }
        self.broadcast(
            &Message::Rollout {
                bytes: bytes.to_vec(),
            },
            from,
        );
        Ok(())
    }

    // ----------------------------------------------------- decisions

    /// Whether this node is admitted to `r`'s rollout now.
    fn admitted(&self, id: &Hash, r: &Release) -> bool {
        if r.halted || r.revoked {
            return false;
        }
        let stages = &r.manifest.rollout.stages;
        if stages.is_empty() {
            return true;
        }
        let idx = (r.stage as usize).min(stages.len() - 1);
        cohort(&self.config.node_id, id) < stages[idx].cohort_percent
    }

    /// The newest release for this node's hardware and channel, above its
    /// installed security version, admitted by its rollout.
    fn wanted_release(&self) -> Option<Hash> {
        self.releases
            .iter()
            .filter(|(id, r)| {
                let m = &r.manifest;
                m.hardware == self.config.hardware
                    && m.channel == self.config.channel
                    && self
                        .installed
                        .security_version
                        .is_none_or(|v| m.security_version > v)
                    && Some(**id) != self.installed.release
                    && self.admitted(id, r)
            })
            .max_by_key(|(id, r)| (r.manifest.security_version, **id))
            .map(|(id, _)| *id)
    }

    fn check_install_ready(&mut self) {
        let Some(id) = self.wanted_release() else {
            return;
        };
        if let Some(r) = self.releases.get_mut(&id) {
            if r.complete() && !r.install_announced {
                r.install_announced = true;
                self.actions.push_back(Action::InstallReady { release: id });
            }
        }
    }

    /// Rarest-first chunk requests for the wanted release, within per-peer
    /// in-flight limits and the download budget; duplicates only in the
    /// endgame.
    fn schedule(&mut self) {
        let Some(id) = self.wanted_release() else {
            return;
        };
        self.request_patch_index();
        let Some(r) = self.releases.get(&id) else {
            return;
        };
        let Some(ix) = &r.index else {
            // Ask the peers that list the release for its index, in turn
            // (the one after the peer asked last): a peer that carries the
            // manifest may not hold the index (a relay, or a node still
            // fetching), and never answers for it.
            let last = r
                .index_id()
                .and_then(|ix| self.pending_indexes.get(&ix))
                .map(|(p, _)| *p);
            let lists = |(_, p): &(&PeerId, &Peer)| p.summary.contains(&id);
            let after_last = last.and_then(|l| {
                self.peers
                    .range((Bound::Excluded(l), Bound::Unbounded))
                    .find(lists)
            });
            let peer = after_last
                .or_else(|| self.peers.iter().find(lists))
                .map(|(pid, _)| *pid);
            if let Some(p) = peer {
                self.request_index_for(id, p);
            }
            return;
        };
        if ix.have.is_full() {
            return;
        }
        let limit = self.config.limits.in_flight_per_peer;
        // A chunk answer frees one slot: rescanning the release for each
        // would be quadratic. Wait until a batch of slots is free, unless
        // the release is nearly done (then every slot counts).
        let batch = (limit / 4).max(1);
        let remaining = ix.have.len() - ix.have.count();
        let chunk_event = core::mem::take(&mut self.chunk_event);
        if chunk_event && self.freed_slots < batch && remaining > limit * self.peers.len().max(1) {
            return;
        }
        self.freed_slots = 0;
        let has_room =
            |peers: &BTreeMap<PeerId, Peer>| peers.values().any(|p| p.in_flight.len() < limit);
        if !has_room(&self.peers) {
            // Every peer is at its in-flight limit: no request can be made.
            // (Checked first: this runs after every event, and the work
            // below is linear in the chunks of the release.)
            self.download_blocked = None;
            return;
        }
        // Missing chunks, each once, with their availability set (the
        // release), first ordinal and length; chunks a patch piece will
        // produce wait. Then the pieces of the patch being fetched, in
        // their own set (the patch id).
        let fetch = self.patch_fetch.as_ref().filter(|f| f.release == id);
        let mut missing: Vec<(Hash, Hash, usize, u32)> = Vec::new();
        for (h, ords) in &ix.ordinals {
            let o = ords.first().copied().unwrap_or(0) as usize;
            if !ix.have.get(o) && !fetch.is_some_and(|f| f.defers(h)) {
                let len = ix.index.chunks().get(o).map_or(0, |c| c.len);
                missing.push((*h, id, o, len));
            }
        }
        if let Some((
            patch,
            Phase::Pieces {
                chosen, abandoned, ..
            },
        )) = fetch.and_then(|f| Some((f.patch?, &f.phase)))
        {
            for (pos, piece) in chosen {
                if !self.held.contains(&piece.hash) && !abandoned.contains(&piece.hash) {
                    missing.push((piece.hash, patch, *pos as usize, piece.size));
                }
            }
        }

        // Outstanding requests per chunk.
        let mut asked: BTreeMap<Hash, Vec<PeerId>> = BTreeMap::new();
        for (pid, p) in &self.peers {
            for req in p.in_flight.values() {
                asked.entry(req.hash).or_default().push(*pid);
            }
        }
        let endgame = missing.iter().all(|(h, ..)| asked.contains_key(h));
        let per_chunk = if endgame {
            self.config.limits.requests_per_chunk_endgame.max(1)
        } else {
            1
        };
        // Rarity: how many peers advertise the chunk. Taken in ascending
        // order, lazily: the heap is built in linear time and the loop below
        // usually stops after a few chunks, when every peer is full.
        let salt = self.config.seed;
        let mut order: BinaryHeap<_> = missing
            .iter()
            .map(|&(h, set, o, len)| {
                let holders = self
                    .peers
                    .values()
                    .filter(|p| p.have.get(&set).is_some_and(|b| b.get(o)))
                    .count();
                let tie = u64::from_le_bytes([
                    h.0[0], h.0[1], h.0[2], h.0[3], h.0[4], h.0[5], h.0[6], h.0[7],
                ]) ^ salt;
                (holders, tie, h, set, o, len)
            })
            .filter(|(holders, ..)| *holders > 0)
            .map(Reverse)
            .collect();
        let now = self.now;
        self.download_blocked = None;
        let timeout = self.config.limits.request_timeout_ms;
        while let Some(Reverse((_, _, hash, set, o, len))) = order.pop() {
            if !has_room(&self.peers) {
                break;
            }
            if self.retries.get(&hash).is_some_and(|r| r.not_before > now) {
                continue;
            }
            let already = asked.get(&hash).map_or(0, Vec::len);
            if already >= per_chunk {
                continue;
            }
            // The least-loaded holder not already asked for this chunk.
            let choice = self
                .peers
                .iter()
                .filter(|(pid, p)| {
                    p.in_flight.len() < limit
                        && p.have.get(&set).is_some_and(|b| b.get(o))
                        && !asked.get(&hash).is_some_and(|v| v.contains(pid))
                })
                .min_by_key(|(pid, p)| (p.in_flight.len(), **pid))
                .map(|(pid, _)| *pid);
            let Some(pid) = choice else {
                continue;
            };
            if let Some(b) = self.download.as_mut() {
                if !b.take(u64::from(len), now) {
                    self.download_blocked = Some(len);
                    break;
                }
            }
            let request = self.next_request;
            self.next_request = self.next_request.wrapping_add(1);
            if let Some(p) = self.peers.get_mut(&pid) {
                p.in_flight.insert(
                    request,
                    Request {
                        hash,
                        deadline: Timestamp(now.0 + timeout),
                    },
                );
            }
            asked.entry(hash).or_default().push(pid);
            self.send(pid, &Message::GetChunk { request, hash });
        }
    }

    // ---------------------------------------------------------- patches

    /// How long a patch fetch may wait for its index or pieces without
    /// progress before it gives up what it waits for.
    const fn patch_stall_ms(&self) -> u64 {
        self.config.limits.request_timeout_ms.saturating_mul(2)
    }

    /// Whether `id` is a patch some held manifest lists.
    fn is_patch(&self, id: &Hash) -> bool {
        self.releases.values().any(|r| r.patches.contains_key(id))
    }

    /// Whether `hash` is a piece of a held patch index.
    fn is_piece(&self, hash: &Hash) -> bool {
        self.releases
            .values()
            .flat_map(|r| r.patches.values())
            .filter_map(|p| p.index.as_ref())
            .any(|pi| pi.positions.contains_key(hash))
    }

    fn patch_index_bytes(&self, id: &Hash) -> Option<Vec<u8>> {
        self.releases
            .values()
            .filter_map(|r| r.patches.get(id)?.index.as_ref())
            .map(|pi| pi.bytes.clone())
            .next()
    }

    /// A peer asks for a patch's bitmap: answered when this node holds the
    /// patch index; the peer hears of new pieces either way.
    fn on_get_patch_have(&mut self, peer: PeerId, patch: Hash) {
        let mut bitmap = None;
        for r in self.releases.values_mut() {
            if let Some(ps) = r.patches.get_mut(&patch) {
                ps.subscribers.insert(peer);
                if let Some(pi) = &ps.index {
                    bitmap = Some(pi.have.as_bytes().to_vec());
                }
            }
        }
        if let Some(bitmap) = bitmap {
            self.send(
                peer,
                &Message::Have {
                    release: patch,
                    bitmap,
                },
            );
        }
    }

    /// A patch bitmap: checked against the patch index if held, else kept
    /// as a hint (the peer holds the index: ask it) until the index comes.
    fn on_patch_have(&mut self, peer: PeerId, patch: Hash, bitmap: Vec<u8>) {
        let len = self
            .releases
            .values()
            .find_map(|r| r.patches.get(&patch)?.index.as_ref())
            .map(|pi| pi.have.len());
        match len {
            Some(len) => match Bitmap::from_bytes(&bitmap, len) {
                Some(b) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.have.insert(patch, b);
                    }
                }
                None => self.penalise(peer, Offence::BadBitmap),
            },
            None => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.patch_hints.insert(patch, bitmap);
                }
                self.request_patch_index();
            }
        }
    }

    /// A patch index blob arrived: accepted when a held manifest lists its
    /// hash (so its bytes are the signer's) and it matches that entry.
    fn on_patch_index(&mut self, bytes: &[u8]) {
        let id = Hash::of(bytes);
        if self.patch_index_bytes(&id).is_some() {
            return;
        }
        self.pending_indexes.remove(&id);
        match self.accept_patch_index(bytes) {
            Ok(_) => {
                self.stats.patch_blobs_fetched += 1;
                self.stats.patch_bytes_fetched += bytes.len() as u64;
                self.actions.push_back(Action::StoreChunk {
                    hash: id,
                    data: bytes.to_vec(),
                });
                self.gain_chunk(id);
                if let Some(f) = self.patch_fetch.as_mut() {
                    f.progress_at = self.now;
                }
            }
            Err(reason) => self.give_up_patch(id, &reason),
        }
    }

    /// Ends the wanted release's fetch of patch `id`, if it is the one
    /// under way: every chunk is fetched plainly from now on.
    fn give_up_patch(&mut self, id: Hash, reason: &str) {
        let Some(f) = self.patch_fetch.as_mut() else {
            return;
        };
        if f.patch != Some(id) || f.phase == Phase::Off {
            return;
        }
        f.phase = Phase::Off;
        self.stats.patch_fallbacks += 1;
        self.actions.push_back(Action::Note {
            text: alloc::format!(
                "patch {}: {reason}; fetching its chunks instead",
                id.short()
            ),
        });
    }

    /// Files a patch index under every held release that lists it. Checks:
    /// no longer than the manifest's size, decodes, and names the base the
    /// manifest lists it under (a patch for another base is refused here,
    /// before any piece is fetched).
    fn accept_patch_index(&mut self, bytes: &[u8]) -> Result<Hash, String> {
        let id = Hash::of(bytes);
        let mut listed = false;
        let mut subscribers = BTreeSet::new();
        let mut have = None;
        for r in self.releases.values_mut() {
            let Some(ps) = r.patches.get_mut(&id) else {
                continue;
            };
            listed = true;
            if ps.index.is_some() {
                continue;
            }
            if bytes.len() as u64 > ps.size {
                return Err(alloc::format!(
                    "patch index of {} bytes, the manifest says {}",
                    bytes.len(),
                    ps.size
                ));
            }
            let index =
                meshota_blobstore::patch::PatchIndex::decode(bytes).map_err(|e| e.to_string())?;
            if index.base_image_hash() != ps.base_image_hash {
                return Err(alloc::format!(
                    "patch index is from base {}, the manifest lists it for base {}",
                    index.base_image_hash().short(),
                    ps.base_image_hash.short()
                ));
            }
            let pi = PatchIndexed::new(index, bytes.to_vec(), &self.held);
            have = Some(pi.have.clone());
            subscribers.extend(ps.subscribers.iter().copied());
            ps.index = Some(pi);
        }
        if !listed {
            return Err("no held manifest lists it".into());
        }
        // Peers that hinted: check their bitmaps now.
        if let Some(have) = &have {
            let len = have.len();
            let hinted: Vec<(PeerId, Vec<u8>)> = self
                .peers
                .iter_mut()
                .filter_map(|(pid, p)| Some((*pid, p.patch_hints.remove(&id)?)))
                .collect();
            for (pid, bytes) in hinted {
                match Bitmap::from_bytes(&bytes, len) {
                    Some(b) => {
                        if let Some(p) = self.peers.get_mut(&pid) {
                            p.have.insert(id, b);
                        }
                    }
                    None => self.penalise(pid, Offence::BadBitmap),
                }
            }
            // Peers that asked before we held it get the bitmap now.
            for pid in subscribers {
                let bitmap = have.as_bytes().to_vec();
                self.send(
                    pid,
                    &Message::Have {
                        release: id,
                        bitmap,
                    },
                );
            }
        }
        Ok(id)
    }

    /// Asks for the wanted patch's index: from a peer that sent a bitmap
    /// for it (it holds the index), the one after the peer asked last.
    fn request_patch_index(&mut self) {
        let Some(f) = self.patch_fetch.as_ref() else {
            return;
        };
        let (Phase::Index, Some(patch)) = (&f.phase, f.patch) else {
            return;
        };
        if self.patch_index_bytes(&patch).is_some() {
            return;
        }
        let timeout = self.config.limits.request_timeout_ms;
        let last = match self.pending_indexes.get(&patch) {
            Some((_, at)) if self.now.since(*at) <= timeout => return,
            Some((p, _)) => Some(*p),
            None => None,
        };
        let hinted = |(_, p): &(&PeerId, &Peer)| p.patch_hints.contains_key(&patch);
        let after_last = last.and_then(|l| {
            self.peers
                .range((Bound::Excluded(l), Bound::Unbounded))
                .find(hinted)
        });
        let peer = after_last
            .or_else(|| self.peers.iter().find(hinted))
            .map(|(pid, _)| *pid);
        if let Some(p) = peer {
            self.pending_indexes.insert(patch, (p, self.now));
            self.send(p, &Message::GetIndex { id: patch });
        }
    }

    /// Moves the wanted release's patch fetch along (see [`Phase`]).
    fn plan_patch(&mut self) {
        let Some(id) = self.wanted_release() else {
            self.patch_fetch = None;
            return;
        };
        let Some(r) = self.releases.get(&id) else {
            return;
        };
        let Some(ix) = &r.index else {
            return; // nothing is planned before the chunk index
        };
        let now = self.now;
        if self.patch_fetch.as_ref().is_none_or(|f| f.release != id) {
            let patch = self.installed.image_hash.and_then(|base| {
                r.patches
                    .iter()
                    .find(|(_, p)| p.base_image_hash == base)
                    .map(|(pid, _)| *pid)
            });
            let phase = if patch.is_some() && !ix.have.is_full() {
                Phase::Index
            } else {
                Phase::Off
            };
            let asks = phase != Phase::Off;
            self.patch_fetch = Some(PatchFetch {
                release: id,
                patch,
                phase,
                progress_at: now,
            });
            if asks {
                self.ask_availability();
            }
        }
        let stalled = self
            .patch_fetch
            .as_ref()
            .is_some_and(|f| now.since(f.progress_at) > self.patch_stall_ms());
        let Some(f) = self.patch_fetch.as_ref() else {
            return;
        };
        let Some(patch) = f.patch else {
            return;
        };
        match &f.phase {
            Phase::Index => {
                if self.patch_index_bytes(&patch).is_some() {
                    self.choose_pieces(id, patch);
                } else if stalled {
                    self.give_up_patch(patch, "no peer served its index in time");
                }
            }
            Phase::Pieces {
                chosen, abandoned, ..
            } => {
                let give_up: Vec<(u32, Hash)> = chosen
                    .iter()
                    .filter(|(_, p)| !self.held.contains(&p.hash) && !abandoned.contains(&p.hash))
                    .filter(|(_, p)| {
                        stalled
                            || self
                                .retries
                                .get(&p.hash)
                                .is_some_and(|r| r.failures >= PIECE_ATTEMPTS)
                    })
                    .map(|(pos, p)| (*pos, p.hash))
                    .collect();
                let pending = chosen
                    .iter()
                    .filter(|(_, p)| !self.held.contains(&p.hash) && !abandoned.contains(&p.hash))
                    .count();
                if !give_up.is_empty() {
                    self.abandon_pieces(&give_up);
                }
                if pending == give_up.len() {
                    self.start_apply(id, patch);
                }
            }
            Phase::Applying { .. } | Phase::Off => {}
        }
    }

    /// Runs the planner `delta plan` uses on what this node holds (sizes
    /// as raw chunk lengths: what is sent is not known before fetching) and
    /// starts fetching the chosen pieces, or gives the patch up.
    fn choose_pieces(&mut self, release: Hash, patch: Hash) {
        let Some(r) = self.releases.get(&release) else {
            return;
        };
        let (Some(ix), Some(pi)) = (
            &r.index,
            r.patches.get(&patch).and_then(|p| p.index.as_ref()),
        ) else {
            return;
        };
        if let Err(e) = pi.index.check_target(&ix.index, &ix.id) {
            let reason = e.to_string();
            return self.give_up_patch(patch, &reason);
        }
        let mut lacking: BTreeMap<Hash, u64> = BTreeMap::new();
        for (h, ords) in &ix.ordinals {
            let o = ords.first().copied().unwrap_or(0) as usize;
            if !ix.have.get(o) {
                let len = ix.index.chunks().get(o).map_or(0, |c| c.len);
                lacking.insert(*h, u64::from(len));
            }
        }
        let held = &self.held;
        let choice = meshota_blobstore::choose_pieces(
            &ix.index,
            &pi.index,
            &|h: &Hash| lacking.get(h).copied(),
            &mut |h: &Hash| Ok(held.contains(h)),
        );
        let Ok(choice) = choice else {
            return self.give_up_patch(patch, "planning failed");
        };
        let plain: u64 = lacking
            .iter()
            .filter(|(h, _)| !choice.produced.contains(*h))
            .map(|(_, l)| *l)
            .sum();
        let chunk_plan: u64 = lacking.values().sum();
        if choice.produced.is_empty() || choice.piece_bytes + plain >= chunk_plan {
            return self.give_up_patch(patch, "not cheaper than the chunks this node lacks");
        }
        let chosen: Vec<(u32, meshota_blobstore::patch::PieceRef)> = choice
            .pieces_to_fetch
            .iter()
            .filter_map(|p| Some((*pi.positions.get(&p.hash)?.first()?, *p)))
            .collect();
        let now = self.now;
        if let Some(f) = self.patch_fetch.as_mut() {
            f.phase = Phase::Pieces {
                chosen,
                covered: choice.produced,
                abandoned: BTreeSet::new(),
            };
            f.progress_at = now;
        }
        self.actions.push_back(Action::Note {
            text: alloc::format!(
                "patch {}: fetching {} pieces ({} bytes) instead of {} bytes of chunks",
                patch.short(),
                choice.pieces_to_fetch.len(),
                choice.piece_bytes,
                chunk_plan - plain
            ),
        });
    }

    /// Gives pieces up: their chunks are fetched plainly from now on.
    fn abandon_pieces(&mut self, pieces: &[(u32, Hash)]) {
        let Some(f) = self.patch_fetch.as_mut() else {
            return;
        };
        let Some(r) = self.releases.get(&f.release) else {
            return;
        };
        let (Some(ix), Some(pi)) = (
            &r.index,
            f.patch
                .and_then(|p| r.patches.get(&p))
                .and_then(|p| p.index.as_ref()),
        ) else {
            return;
        };
        if let Phase::Pieces {
            covered, abandoned, ..
        } = &mut f.phase
        {
            for (pos, hash) in pieces {
                abandoned.insert(*hash);
                let Some(piece) = pi.index.pieces().get(*pos as usize) else {
                    continue;
                };
                for c in ix.index.chunks().get(piece.ordinals()).unwrap_or_default() {
                    covered.remove(&c.hash);
                }
            }
        }
        f.progress_at = self.now;
    }

    /// Every chosen piece is held or given up: hand the patch to the
    /// driver, or give it up when nothing is left for it to produce.
    fn start_apply(&mut self, release: Hash, patch: Hash) {
        let Some(f) = self.patch_fetch.as_mut() else {
            return;
        };
        let covered = match &mut f.phase {
            Phase::Pieces { covered, .. } => core::mem::take(covered),
            _ => return,
        };
        if covered.is_empty() {
            return self.give_up_patch(patch, "every piece was given up");
        }
        f.phase = Phase::Applying { covered };
        f.progress_at = self.now;
        self.actions
            .push_back(Action::ApplyPatch { release, patch });
    }

    /// The driver applied the patch: its produced chunks are held; every
    /// chunk still missing is fetched plainly.
    fn patch_applied(&mut self, release: Hash, patch: Hash, produced: Vec<Hash>) {
        let ours = self.patch_fetch.as_ref().is_some_and(|f| {
            f.release == release
                && f.patch == Some(patch)
                && matches!(f.phase, Phase::Applying { .. })
        });
        if !ours {
            return;
        }
        let mut gained = 0u64;
        for h in produced {
            if !self.held.contains(&h) {
                gained += 1;
            }
            self.gain_chunk(h);
        }
        self.stats.patch_chunks_produced += gained;
        if let Some(f) = self.patch_fetch.as_mut() {
            f.phase = Phase::Off;
        }
        if gained == 0 {
            self.stats.patch_fallbacks += 1;
        }
    }

    // ---------------------------------------------------------- timers

    fn timeout(&mut self) {
        let now = self.now;
        // Manifest requests that went unanswered: forget them and count a
        // timeout against the peer that advertised the id.
        let timeout_ms = self.config.limits.request_timeout_ms;
        let stale: Vec<(Hash, PeerId)> = self
            .pending_manifests
            .iter()
            .filter(|(_, (_, at))| now.since(*at) > timeout_ms)
            .map(|(id, (p, _))| (*id, *p))
            .collect();
        let mut late_peers = BTreeSet::new();
        for (id, peer) in stale {
            self.pending_manifests.remove(&id);
            late_peers.insert(peer);
        }
        for peer in late_peers {
            self.penalise(peer, Offence::Timeout);
        }
        // Anti-entropy.
        if now >= self.trickle.deadline() && self.trickle.on_timeout(now, &mut self.rng) {
            let s = self.summary();
            self.broadcast(&s, None);
        }
        // Request deadlines.
        let mut expired: Vec<(PeerId, u32, Hash)> = Vec::new();
        for (pid, p) in &self.peers {
            for (req, r) in &p.in_flight {
                if r.deadline <= now {
                    expired.push((*pid, *req, r.hash));
                }
            }
        }
        for (pid, req, hash) in expired {
            if let Some(p) = self.peers.get_mut(&pid) {
                p.in_flight.remove(&req);
            }
            self.fail_chunk(hash);
            self.penalise(pid, Offence::Timeout);
        }
        // Announce new chunks.
        if self.have_flush_at.is_some_and(|t| t <= now) {
            self.have_flush_at = None;
            let mut out = Vec::new();
            for (id, r) in &mut self.releases {
                if r.unannounced.is_empty() {
                    continue;
                }
                let ords = core::mem::take(&mut r.unannounced);
                for chunk in ords.chunks(crate::wire::MAX_HAVE_ORDINALS) {
                    for p in &r.subscribers {
                        out.push((*p, *id, chunk.to_vec()));
                    }
                }
            }
            for r in self.releases.values_mut() {
                for (pid, ps) in &mut r.patches {
                    if ps.unannounced.is_empty() {
                        continue;
                    }
                    let ords = core::mem::take(&mut ps.unannounced);
                    for chunk in ords.chunks(crate::wire::MAX_HAVE_ORDINALS) {
                        for p in &ps.subscribers {
                            out.push((*p, *pid, chunk.to_vec()));
                        }
                    }
                }
            }
            for (p, release, ordinals) in out {
                self.send(p, &Message::HaveMore { release, ordinals });
            }
        }
        self.drain_serve_queue();
        self.banned.retain(|_, until| *until > now);
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let mut t = self.trickle.deadline();
        let mut consider = |x: Timestamp| {
            if x < t {
                t = x;
            }
        };
        for p in self.peers.values() {
            for r in p.in_flight.values() {
                consider(r.deadline);
            }
        }
        if let Some(f) = self.have_flush_at {
            consider(f);
        }
        if let Some(f) = self
            .patch_fetch
            .as_ref()
            .filter(|f| matches!(f.phase, Phase::Index | Phase::Pieces { .. }))
        {
            consider(Timestamp(f.progress_at.0 + self.patch_stall_ms() + 1));
        }
        let timeout_ms = self.config.limits.request_timeout_ms;
        for (_, at) in self.pending_manifests.values() {
            consider(Timestamp(at.0 + timeout_ms + 1));
        }
        if let (Some(b), Some(&(_, _, _, len))) = (self.upload.as_ref(), self.serve_queue.front()) {
            consider(b.ready_at(u64::from(len)));
        }
        if let (Some(b), Some(len)) = (self.download.as_ref(), self.download_blocked) {
            consider(b.ready_at(u64::from(len)));
        }
        let now = self.now;
        for r in self.retries.values() {
            if r.not_before > now {
                consider(r.not_before);
            }
        }
        Some(t.max(now))
    }

    fn rearm(&mut self) {
        let next = self.next_deadline();
        if next != self.armed {
            self.armed = next;
            if let Some(at) = next {
                self.actions.push_back(Action::ArmTimer { at });
            }
        }
    }
}
