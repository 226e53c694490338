//! A deterministic in-memory network of protocol cores, for tests: one
//! virtual clock, per-link latency, per-node chunk stores, and hooks for
//! misbehaving nodes. Every run is bounded in events and virtual time.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

pub mod radio;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use meshota_blobstore::{ChunkIndex, ChunkRef, DEFAULT_PARAMS, index_reader};
use meshota_manifest::{
    Component, Hash, ReleaseManifest, RolloutPolicy, SecretKey, SignedDocument, TrustRoot,
    UnixTime, Verified,
};
use meshota_mesh::{
    Action, Config, Event, Installed, Limits, Node, PeerId, Timestamp, TrickleConfig, wire,
};

/// A dev trust root with one root key and one unrestricted release key.
pub use meshota_testkit::DevTrust as Keys;

/// The dev trust root of seed 1 (root key `[1; 32]`, release key `[2; 32]`).
pub fn keys() -> Keys {
    meshota_testkit::dev_trust(1)
}

/// Deterministic pseudo-random image bytes.
pub fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

pub struct Published {
    pub manifest: Vec<u8>,
    pub index: Vec<u8>,
    pub chunks: BTreeMap<Hash, Vec<u8>>,
    pub id: Hash,
    pub image_hash: Hash,
}

/// Chunks `img` and signs a manifest for it with `key`.
pub fn publish(key: &SecretKey, img: &[u8], hardware: &str, security_version: u64) -> Published {
    let index = index_reader(img, &DEFAULT_PARAMS).unwrap();
    let index_bytes = index.encode().unwrap();
    let mut chunks = BTreeMap::new();
    let mut off = 0usize;
    for ChunkRef { hash, len } in index.chunks() {
        chunks.insert(*hash, img[off..off + *len as usize].to_vec());
        off += *len as usize;
    }
    let body = ReleaseManifest {
        product: "test".into(),
        hardware: hardware.into(),
        channel: "stable".into(),
        version: format!("1.0.{security_version}"),
        security_version,
        created: UnixTime(1_790_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: index.total_size(),
            image_hash: index.image_hash(),
            chunk_index: Hash::of(&index_bytes),
            chunking: *index.params(),
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[key]).unwrap();
    Published {
        manifest: doc.encode().unwrap(),
        index: index_bytes,
        chunks,
        id: doc.id(),
        image_hash: index.image_hash(),
    }
}

/// How a node misbehaves when it serves chunks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behaviour {
    Honest,
    CorruptChunks,
}

pub struct SimNode {
    pub core: Node,
    pub store: BTreeMap<Hash, Vec<u8>>,
    pub indexes: BTreeMap<Hash, Vec<u8>>,
    pub installed: Vec<Hash>,
    pub behaviour: Behaviour,
    pub timer: Option<Timestamp>,
    pub bytes_in: u64,
    /// The image in the node's active slot (the base patches apply to).
    pub base: Option<Vec<u8>>,
    /// Pieces that failed when the node applied a patch.
    pub pieces_failed: u64,
    /// Patches applied (one `ApplyPatch` each).
    pub patches_applied: u64,
}

pub struct Net {
    pub now: Timestamp,
    pub nodes: Vec<SimNode>,
    /// (node, peer id at node) -> (other node, peer id at other node)
    links: BTreeMap<(usize, u64), (usize, u64)>,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize, EventBox)>>,
    seq: u64,
    pub latency_ms: u64,
    pub events: u64,
    pub trace: Vec<String>,
}

/// Wrapper so events can sit in the heap (ordered by time and sequence only).
#[derive(Debug, Clone)]
pub struct EventBox(pub Event);
impl PartialEq for EventBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for EventBox {}
impl PartialOrd for EventBox {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for EventBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

pub fn node_key(i: usize) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1000).to_le_bytes());
    SecretKey::from_seed(seed, "node").unwrap()
}

pub fn config(i: usize, hardware: &str, limits: Limits) -> Config {
    Config {
        node_id: node_key(i).id(),
        hardware: hardware.into(),
        channel: "stable".into(),
        seed: 42 + i as u64,
        limits,
        trickle: TrickleConfig::IP,
        wall_clock_at_zero: None,
    }
}

impl Net {
    pub fn new(n: usize, trust: &Verified<TrustRoot>, hardware: &str, limits: Limits) -> Self {
        Self::with_installed(n, trust, hardware, limits, Installed::default())
    }

    pub fn with_installed(
        n: usize,
        trust: &Verified<TrustRoot>,
        hardware: &str,
        limits: Limits,
        installed: Installed,
    ) -> Self {
        let nodes = (0..n)
            .map(|i| SimNode {
                core: Node::new(
                    config(i, hardware, limits),
                    trust.clone(),
                    installed,
                    Timestamp(0),
                ),
                store: BTreeMap::new(),
                indexes: BTreeMap::new(),
                installed: Vec::new(),
                behaviour: Behaviour::Honest,
                timer: None,
                bytes_in: 0,
                base: None,
                pieces_failed: 0,
                patches_applied: 0,
            })
            .collect();
        let mut net = Self {
            now: Timestamp(0),
            nodes,
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            latency_ms: 5,
            events: 0,
            trace: Vec::new(),
        };
        for i in 0..n {
            net.drain(i);
        }
        net
    }

    fn push(&mut self, at: Timestamp, node: usize, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, node, EventBox(ev))));
    }

    pub fn connect(&mut self, a: usize, b: usize) {
        let (pa, pb) = (b as u64, a as u64);
        self.links.insert((a, pa), (b, pb));
        self.links.insert((b, pb), (a, pa));
        let (na, nb) = (self.nodes[a].core_id(), self.nodes[b].core_id());
        self.push(
            self.now,
            a,
            Event::LinkUp {
                peer: PeerId(pa),
                node: nb,
            },
        );
        self.push(
            self.now,
            b,
            Event::LinkUp {
                peer: PeerId(pb),
                node: na,
            },
        );
    }

    /// Gives node `i` a whole release (as a publisher or gateway would).
    pub fn seed_release(&mut self, i: usize, p: &Published) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.core
            .add_release(now, &p.manifest, Some(&p.index))
            .unwrap();
        for (h, d) in &p.chunks {
            n.store.insert(*h, d.clone());
        }
        n.core.add_chunks(now, p.chunks.keys().copied());
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].core.poll() {
            self.act(i, a);
        }
    }

    fn act(&mut self, i: usize, a: Action) {
        match a {
            Action::Send { peer, bytes } => {
                if let Some(&(j, pj)) = self.links.get(&(i, peer.0)) {
                    let at = Timestamp(self.now.0 + self.latency_ms);
                    self.push(
                        at,
                        j,
                        Event::Message {
                            peer: PeerId(pj),
                            bytes,
                        },
                    );
                }
            }
            Action::ServeChunk {
                peer,
                request,
                hash,
            } => {
                let n = &self.nodes[i];
                let data = match (n.store.get(&hash), n.behaviour) {
                    (Some(d), Behaviour::Honest) => d.clone(),
                    (Some(d), Behaviour::CorruptChunks) => {
                        let mut d = d.clone();
                        d[0] ^= 0xff;
                        d
                    }
                    (None, _) => {
                        self.push(
                            self.now,
                            i,
                            Event::ServeFailed {
                                peer,
                                request,
                                hash,
                            },
                        );
                        return;
                    }
                };
                let bytes = wire::chunk_response(request, hash, data).unwrap();
                self.act(i, Action::Send { peer, bytes });
            }
            Action::StoreChunk { hash, data } => {
                self.nodes[i].bytes_in += data.len() as u64;
                self.nodes[i].store.insert(hash, data);
            }
            Action::StoreIndex { id, bytes } => {
                self.nodes[i].indexes.insert(id, bytes);
            }
            Action::InstallReady { release } => {
                let sv = self.nodes[i]
                    .core
                    .manifest(&release)
                    .unwrap()
                    .security_version;
                self.nodes[i].installed.push(release);
                let now = self.now;
                self.nodes[i].core.installed(now, release, sv);
                self.trace
                    .push(format!("{} node {i} installed {}", now.0, release.short()));
            }
            Action::Disconnect { peer, .. } => {
                if let Some((j, pj)) = self.links.remove(&(i, peer.0)) {
                    self.links.remove(&(j, pj));
                    self.push(self.now, j, Event::LinkDown { peer: PeerId(pj) });
                }
                self.trace
                    .push(format!("{} node {i} banned peer {}", self.now.0, peer.0));
            }
            Action::ArmTimer { at } => {
                self.nodes[i].timer = Some(at);
                self.push(at, i, Event::Timeout);
            }
            Action::ApplyPatch { release, patch } => {
                let produced = self.apply_patch(i, release, patch);
                self.push(
                    self.now,
                    i,
                    Event::PatchApplied {
                        release,
                        patch,
                        produced,
                    },
                );
            }
            Action::StoreManifest { .. }
            | Action::Penalised { .. }
            | Action::ReportReceived { .. }
            | Action::Note { .. } => {}
        }
    }

    /// Runs until `done` holds, at most `max_events` events and `max_ms`
    /// of virtual time. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        max_events: u64,
        max_ms: u64,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let mut count = 0;
        // `done` is checked before an event is taken, so an event is never
        // dropped when a run stops (a later run picks it up).
        while !done(self) {
            let Some(Reverse((at, seq, i, EventBox(ev)))) = self.queue.pop() else {
                break;
            };
            if count >= max_events || at.0 > max_ms {
                // Left for a later run.
                self.queue.push(Reverse((at, seq, i, EventBox(ev))));
                return false;
            }
            count += 1;
            self.events += 1;
            self.now = self.now.max(at);
            if matches!(ev, Event::Timeout) {
                // Only the latest armed timer counts.
                if self.nodes[i].timer != Some(at) {
                    continue;
                }
            }
            let now = self.now;
            self.nodes[i].core.handle(now, ev);
            self.drain(i);
        }
        done(self)
    }

    /// What a driver does on `ApplyPatch`: the library's
    /// `rebuild_from_patch` against the node's base, over a store holding
    /// what the node holds; produced chunks join the node's store. Returns
    /// the target chunks held afterwards.
    fn apply_patch(&mut self, i: usize, release: Hash, patch: Hash) -> Vec<Hash> {
        use meshota_blobstore::ChunkStore;
        use meshota_blobstore::patch::{PatchIndex, rebuild_from_patch};
        self.nodes[i].patches_applied += 1;
        let n = &self.nodes[i];
        let comp = n.core.manifest(&release).unwrap().components[0].clone();
        let target = ChunkIndex::decode(&n.indexes[&comp.chunk_index]).unwrap();
        let mem = meshota_blobstore::MemStore::new();
        for (h, d) in &n.store {
            mem.put(*h, d).unwrap();
        }
        let Ok(index) = PatchIndex::load(&mem, &patch, u64::MAX) else {
            return Vec::new();
        };
        let base = n.base.clone().unwrap_or_default();
        let Ok(report) = rebuild_from_patch(&mem, &target, &index, &base, &mut |_, _| {}) else {
            return Vec::new();
        };
        let n = &mut self.nodes[i];
        n.pieces_failed += report.failed.len() as u64;
        let mut held = Vec::new();
        for c in target.chunks() {
            if let Ok(d) = mem.get(&c.hash) {
                n.store.entry(c.hash).or_insert(d);
                held.push(c.hash);
            }
        }
        held
    }

    /// Delivers `msg` to node `i` as if sent by its peer at link `peer`
    /// (the link number at node `i`), now.
    pub fn inject(&mut self, i: usize, peer: u64, msg: &wire::Message) {
        let bytes = msg.encode().unwrap();
        self.push(
            self.now,
            i,
            Event::Message {
                peer: PeerId(peer),
                bytes,
            },
        );
    }

    /// Node `i` publishes `bytes` as its own signed report, now.
    pub fn publish_report(&mut self, i: usize, bytes: Vec<u8>) {
        let now = self.now;
        self.nodes[i].core.publish_report(now, bytes);
        self.drain(i);
    }

    /// The link number node `i` uses for its peer node `j`.
    pub fn link(&self, i: usize, j: usize) -> Option<u64> {
        self.links
            .iter()
            .find(|((n, _), (m, _))| *n == i && *m == j)
            .map(|((_, p), _)| *p)
    }

    /// The link number node `i` uses for its first peer.
    pub fn first_link(&self, i: usize) -> Option<u64> {
        self.links.keys().find(|(n, _)| *n == i).map(|(_, p)| *p)
    }

    pub fn all_installed(&self, id: Hash) -> bool {
        self.nodes.iter().all(|n| n.installed.contains(&id))
    }

    /// The image node `i` would assemble for release `p` from its store.
    pub fn assemble(&self, i: usize, p: &Published) -> Vec<u8> {
        let index = ChunkIndex::decode(&p.index).unwrap();
        let mut out = Vec::new();
        for c in index.chunks() {
            out.extend_from_slice(&self.nodes[i].store[&c.hash]);
        }
        out
    }
}

impl SimNode {
    pub fn core_id(&self) -> meshota_manifest::KeyId {
        self.core.node_id()
    }
}
