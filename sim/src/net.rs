//! The simulation engine: nodes, modelled links, faults, attackers and the
//! event loop.
//!
//! # Time
//! One virtual clock in milliseconds (the cores' [`Timestamp`]); link
//! serialisation is computed in microseconds and rounded up on arrival.
//! Events are ordered by (time, insertion sequence): no ties, no hash-map
//! iteration, so one seed gives one order.
//!
//! # Links
//! Each undirected link has a bandwidth, a latency and a jitter (drawn per
//! link from the seed). A direction sends one message at a time: a message
//! departs when the previous one has been serialised (`len / bandwidth`),
//! then arrives after the latency plus a random jitter, so messages can
//! overtake each other (reordering). Links model a reliable transport (QUIC
//! streams): a lost transmission costs a retransmission timeout and is sent
//! again; after [`RETRANSMISSIONS_MAX`] losses in a row the connection
//! fails, both cores see the link go down, and it reconnects after
//! [`RECONNECT_MS`]. Messages in flight on a link that goes down are lost.
//!
//! # Faults
//! Partitions take every link between the two halves down at
//! [`PARTITION_START_MS`] and up at [`PARTITION_HEAL_MS`]. A crashed node
//! loses its core, its timers and its links; it keeps its [`Store`] and its
//! installed release, and restarts with a fresh core fed its stored
//! releases and chunks (`add_release`, `add_chunks`), as the daemon does.
//!
//! # Attackers
//! A malicious node runs a real core (so it speaks the protocol) with one
//! [`Attack`]; its driver corrupts, forges, replays or floods.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;

use meshota_manifest::{Hash, ReleaseManifest, SignedDocument};
use meshota_mesh::{
    Action, Config, Event, Installed, Limits, Node, PeerId, Stats, Timestamp, TrickleConfig, wire,
};

use crate::fixture::{CHANNEL, Fixture, HARDWARE, INSTALLED_SECURITY_VERSION, node_id};
use crate::options::{EVENTS_PER_NODE_MAX, Options, VIRTUAL_MS_MAX};
use crate::report::{Report, Stop};
use crate::rng::SimRng;
use crate::safety::{Store, check_install};
use crate::{Error, topology};

/// Slowest link, bytes per second (1 MiB/s).
pub const BANDWIDTH_MIN_BYTES_PER_SEC: u64 = 1 << 20;
/// Fastest link, bytes per second (8 MiB/s).
pub const BANDWIDTH_MAX_BYTES_PER_SEC: u64 = 8 << 20;
/// Shortest one-way latency.
pub const LATENCY_MIN_MS: u64 = 5;
/// Longest one-way latency (before jitter).
pub const LATENCY_MAX_MS: u64 = 50;
/// Largest extra random delay per message (reordering).
pub const JITTER_MAX_MS: u64 = 20;
/// Smallest retransmission timeout after a lost transmission.
pub const RTO_MIN_MS: u64 = 200;
/// Lost transmissions of one message in a row before its connection fails.
pub const RETRANSMISSIONS_MAX: u32 = 8;
/// Delay before a link that failed or was closed by a ban reconnects.
pub const RECONNECT_MS: u64 = 30_000;
/// Random extra delay added to each reconnection.
pub const RECONNECT_JITTER_MS: u64 = 5_000;
/// When the partition (`--partition`) starts.
pub const PARTITION_START_MS: u64 = 500;
/// When the partition heals.
pub const PARTITION_HEAL_MS: u64 = 90_000;
/// Earliest crash of a crashing node.
pub const CRASH_AT_MIN_MS: u64 = 200;
/// Latest crash of a crashing node.
pub const CRASH_AT_MAX_MS: u64 = 20_000;
/// Shortest time a crashed node stays down.
pub const DOWNTIME_MIN_MS: u64 = 1_000;
/// Longest time a crashed node stays down.
pub const DOWNTIME_MAX_MS: u64 = 30_000;
/// How often a malicious node repeats its attack on every link.
pub const ATTACK_PERIOD_MS: u64 = 5_000;
/// Most attack messages (forged, replayed or junk) one malicious node sends
/// over a run: floods are bounded.
pub const ATTACK_MESSAGES_MAX: u32 = 512;
/// Junk messages a flooder sends per link per attack.
pub const FLOOD_BURST: u32 = 8;
/// Largest junk message.
pub const JUNK_BYTES_MAX: u64 = 1024;
/// Actions drained from one core in one go (a core that never stops
/// producing actions is a bug; the run stops).
pub const ACTIONS_PER_DRAIN_MAX: u32 = 1_000_000;
/// Unconverged nodes described in the report.
pub const STUCK_MAX: usize = 16;
/// Safety violations kept verbatim in the report (all are counted).
pub const VIOLATIONS_MAX: usize = 64;

/// What a malicious node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attack {
    /// Holds the whole release from time zero, advertises it, and serves
    /// every chunk with a flipped byte.
    CorruptChunks,
    /// Pushes a manifest signed by a key the trust root does not list.
    ForgedManifests,
    /// Pushes validly signed manifests at the installed security version
    /// (the running release, and another one), and holds and serves the
    /// other one's chunks: installing it would be a rollback.
    ReplayedManifests,
    /// Sends bounded bursts of undecodable bytes, summaries of unknown
    /// releases and requests for unknown chunks.
    Flood,
}

impl Attack {
    const ALL: [Self; 4] = [
        Self::CorruptChunks,
        Self::ForgedManifests,
        Self::ReplayedManifests,
        Self::Flood,
    ];
}

/// A node's part in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows the protocol; must stay safe and converge.
    Honest,
    /// Attacks.
    Malicious(Attack),
}

#[derive(Debug)]
struct SimNode {
    /// `None` while crashed.
    core: Option<Node>,
    /// Bumped on each crash, so events for a dead core are dropped.
    incarnation: u32,
    role: Role,
    timer: Option<Timestamp>,
    store: Store,
    installed: Installed,
    links: Vec<usize>,
    /// Counters of cores that crashed.
    stats_before: Stats,
    attack_messages: u32,
    crashes: u32,
}

#[derive(Debug)]
struct Link {
    ends: [usize; 2],
    up: bool,
    epoch: u32,
    bandwidth: u64,
    latency_ms: u64,
    jitter_ms: u64,
    /// Per direction (from `ends[0]`, from `ends[1]`): when the sender is
    /// free again, in microseconds.
    busy_until_us: [u64; 2],
    reconnect_pending: bool,
    crosses_partition: bool,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        link: usize,
        to: usize,
        epoch: u32,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        incarnation: u32,
        at: Timestamp,
    },
    /// One end learns its link is up.
    LinkUp {
        node: usize,
        link: usize,
        epoch: u32,
    },
    /// One end learns its link is down.
    LinkDown {
        node: usize,
        link: usize,
        incarnation: u32,
    },
    /// A link tries to come up again.
    Reconnect {
        link: usize,
    },
    /// A connection gave up on a message.
    LinkFail {
        link: usize,
        epoch: u32,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    PartitionStart,
    PartitionHeal,
    Attack {
        node: usize,
        incarnation: u32,
    },
}

struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One run: build it with [`Sim::new`], run it with [`Sim::run`].
/// Invariant: everything it does is a function of its [`Options`].
pub struct Sim {
    options: Options,
    fixture: Fixture,
    nodes: Vec<SimNode>,
    links: Vec<Link>,
    queue: BinaryHeap<Reverse<Item>>,
    seq: u64,
    now: u64,
    net_rng: SimRng,
    trace: blake3::Hasher,
    partitioned: bool,
    /// Honest nodes connected to the seed through honest nodes.
    required: Vec<bool>,
    required_left: usize,
    converged_at: Option<u64>,
    events: u64,
    messages: u64,
    bytes: u64,
    dropped: u64,
    link_failures: u64,
    disconnects: u64,
    invalid_installs: u64,
    corrupt_stores: u64,
    duplicate_chunk_stores: u64,
    installs: u64,
    restarts: u64,
    violations: Vec<String>,
    stalled: bool,
}

impl core::fmt::Debug for Sim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim")
            .field("options", &self.options)
            .field("now", &self.now)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

fn core_config(options: &Options, node: usize, incarnation: u32) -> Config {
    let mut r = SimRng::stream(
        options.seed,
        0xc0de ^ ((node as u64) << 16) ^ u64::from(incarnation),
    );
    Config {
        node_id: node_id(node),
        hardware: HARDWARE.into(),
        channel: CHANNEL.into(),
        seed: r.next_u64(),
        limits: Limits::DEFAULT,
        trickle: TrickleConfig::IP,
        wall_clock_at_zero: None,
    }
}

impl Sim {
    /// Builds the fleet, its links and its faults from `options`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for bad options; [`Error::Fixture`] or
    /// [`Error::Core`] if the signed world cannot be set up.
    pub fn new(options: &Options) -> Result<Self, Error> {
        options.validate()?;
        let n = options.nodes;
        let size = usize::try_from(options.size_kib * 1024).unwrap_or(usize::MAX);
        let fixture = Fixture::new(options.seed, size)?;

        // Roles: node 0 is the honest seed; malicious nodes are drawn from
        // the rest and given the attacks in turn.
        let mut roles = vec![Role::Honest; n];
        let mut role_rng = SimRng::stream(options.seed, 0x501e);
        let mut others: Vec<usize> = (1..n).collect();
        for i in (1..others.len()).rev() {
            let j = role_rng.index(i + 1);
            others.swap(i, j);
        }
        let bad = others.len() * options.malicious_percent as usize / 100;
        for (k, &i) in others.iter().take(bad).enumerate() {
            roles[i] = Role::Malicious(Attack::ALL[k % Attack::ALL.len()]);
        }

        let mut topo_rng = SimRng::stream(options.seed, 0x7090);
        let pairs = topology::links(options.topology, n, &mut topo_rng);
        let mut link_rng = SimRng::stream(options.seed, 0x1177);
        let half = n / 2;
        let links: Vec<Link> = pairs
            .iter()
            .map(|&(a, b)| Link {
                ends: [a, b],
                up: false,
                epoch: 0,
                bandwidth: link_rng
                    .between(BANDWIDTH_MIN_BYTES_PER_SEC, BANDWIDTH_MAX_BYTES_PER_SEC),
                latency_ms: link_rng.between(LATENCY_MIN_MS, LATENCY_MAX_MS),
                jitter_ms: link_rng.between(0, JITTER_MAX_MS),
                busy_until_us: [0, 0],
                reconnect_pending: false,
                crosses_partition: (a < half) != (b < half),
            })
            .collect();

        let mut nodes: Vec<SimNode> = (0..n)
            .map(|i| SimNode {
                core: None,
                incarnation: 0,
                role: roles[i],
                timer: None,
                store: Store::default(),
                installed: Installed {
                    release: Some(fixture.installed.id),
                    security_version: Some(INSTALLED_SECURITY_VERSION),
                    // The fixture's releases list no patches.
                    image_hash: None,
                },
                links: Vec::new(),
                stats_before: Stats::default(),
                attack_messages: 0,
                crashes: 0,
            })
            .collect();
        for (l, link) in links.iter().enumerate() {
            nodes[link.ends[0]].links.push(l);
            nodes[link.ends[1]].links.push(l);
        }

        // Liveness target: honest nodes reachable from node 0 over links
        // between honest nodes.
        let mut required = vec![false; n];
        let mut stack = vec![0usize];
        required[0] = true;
        let mut guard = 0usize;
        while let Some(i) = stack.pop() {
            guard += 1;
            if guard > n {
                break;
            }
            for &l in &nodes[i].links {
                let j = links[l].ends[0] + links[l].ends[1] - i;
                if !required[j] && nodes[j].role == Role::Honest {
                    required[j] = true;
                    stack.push(j);
                }
            }
        }
        let required_left = required.iter().filter(|r| **r).count();

        let mut sim = Self {
            options: options.clone(),
            fixture,
            nodes,
            links,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            net_rng: SimRng::stream(options.seed, 0x4e7),
            trace: blake3::Hasher::new(),
            partitioned: false,
            required,
            required_left,
            converged_at: None,
            events: 0,
            messages: 0,
            bytes: 0,
            dropped: 0,
            link_failures: 0,
            disconnects: 0,
            invalid_installs: 0,
            corrupt_stores: 0,
            duplicate_chunk_stores: 0,
            installs: 0,
            restarts: 0,
            violations: Vec::new(),
            stalled: false,
        };
        sim.setup(&mut role_rng)?;
        Ok(sim)
    }

    fn setup(&mut self, role_rng: &mut SimRng) -> Result<(), Error> {
        let n = self.nodes.len();
        // Seeded holdings: node 0 and corrupt servers hold the release,
        // replayers hold the rollback release.
        for i in 0..n {
            let seeded = match self.nodes[i].role {
                Role::Honest if i == 0 => Some(self.fixture.target.clone()),
                Role::Malicious(Attack::CorruptChunks) => Some(self.fixture.target.clone()),
                Role::Malicious(Attack::ReplayedManifests) => Some(self.fixture.rollback.clone()),
                _ => None,
            };
            if let Some(p) = seeded {
                let s = &mut self.nodes[i].store;
                s.manifests.insert(p.id, p.manifest.clone());
                let ix = Hash::of(&p.index);
                s.indexes.insert(ix, p.index.clone());
                for (h, d) in &p.chunks {
                    s.chunks.insert(*h, Rc::clone(d));
                }
            }
        }
        for i in 0..n {
            self.start_core(i)?;
        }
        for l in 0..self.links.len() {
            self.try_link_up(l);
        }
        if self.options.partition {
            self.push(PARTITION_START_MS, Ev::PartitionStart);
            self.push(PARTITION_HEAL_MS, Ev::PartitionHeal);
        }
        // Crashes: honest nodes other than the seed.
        let mut crash_rng = SimRng::stream(self.options.seed, 0xc4a5);
        let candidates: Vec<usize> = (1..n)
            .filter(|&i| self.nodes[i].role == Role::Honest)
            .collect();
        let crashing = candidates.len() * self.options.crash_percent as usize / 100;
        let mut picked = candidates;
        for i in (1..picked.len()).rev() {
            let j = crash_rng.index(i + 1);
            picked.swap(i, j);
        }
        for &i in picked.iter().take(crashing) {
            let at = crash_rng.between(CRASH_AT_MIN_MS, CRASH_AT_MAX_MS);
            self.push(at, Ev::Crash { node: i });
        }
        for i in 0..n {
            if matches!(self.nodes[i].role, Role::Malicious(_)) {
                let at = role_rng.between(0, ATTACK_PERIOD_MS);
                self.push(
                    at,
                    Ev::Attack {
                        node: i,
                        incarnation: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// A fresh core for node `i`, fed what its store holds.
    fn start_core(&mut self, i: usize) -> Result<(), Error> {
        let now = Timestamp(self.now);
        let node = &mut self.nodes[i];
        let mut core = Node::new(
            core_config(&self.options, i, node.incarnation),
            self.fixture.trust.clone(),
            node.installed,
            now,
        );
        for (id, bytes) in &node.store.manifests {
            let index = SignedDocument::<ReleaseManifest>::decode(bytes)
                .ok()
                .and_then(|d| {
                    d.unverified_body()
                        .components
                        .first()
                        .map(|c| c.chunk_index)
                })
                .and_then(|ix| node.store.indexes.get(&ix));
            core.add_release(now, bytes, index.map(Vec::as_slice))
                .map_err(|e| Error::Core(format!("node {i}, release {}: {e}", id.short())))?;
        }
        core.add_chunks(now, node.store.chunks.keys().copied());
        node.core = Some(core);
        node.timer = None;
        self.drain(i);
        Ok(())
    }

    // ------------------------------------------------------------ queue

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn other_end(&self, link: usize, i: usize) -> usize {
        let [a, b] = self.links[link].ends;
        if a == i { b } else { a }
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    fn try_link_up(&mut self, l: usize) {
        let [a, b] = self.links[l].ends;
        let link = &self.links[l];
        if link.up
            || (self.partitioned && link.crosses_partition)
            || !self.alive(a)
            || !self.alive(b)
        {
            return;
        }
        let now_us = self.now * 1000;
        let link = &mut self.links[l];
        link.up = true;
        link.epoch = link.epoch.wrapping_add(1);
        link.busy_until_us = [now_us, now_us];
        let epoch = link.epoch;
        self.push(
            self.now,
            Ev::LinkUp {
                node: a,
                link: l,
                epoch,
            },
        );
        self.push(
            self.now,
            Ev::LinkUp {
                node: b,
                link: l,
                epoch,
            },
        );
    }

    fn take_down(&mut self, l: usize) {
        let link = &mut self.links[l];
        if !link.up {
            return;
        }
        link.up = false;
        link.epoch = link.epoch.wrapping_add(1);
        for node in link.ends {
            let incarnation = self.nodes[node].incarnation;
            self.push(
                self.now,
                Ev::LinkDown {
                    node,
                    link: l,
                    incarnation,
                },
            );
        }
    }

    fn schedule_reconnect(&mut self, l: usize) {
        if self.links[l].reconnect_pending {
            return;
        }
        self.links[l].reconnect_pending = true;
        let at = self.now + RECONNECT_MS + self.net_rng.between(0, RECONNECT_JITTER_MS);
        self.push(at, Ev::Reconnect { link: l });
    }

    // ------------------------------------------------------------ cores

    fn feed(&mut self, i: usize, ev: Event) {
        let now = Timestamp(self.now);
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle(now, ev);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        for _ in 0..ACTIONS_PER_DRAIN_MAX {
            let Some(a) = self.nodes[i].core.as_mut().and_then(Node::poll) else {
                return;
            };
            self.act(i, a);
        }
        self.stalled = true;
    }

    fn act(&mut self, i: usize, a: Action) {
        match a {
            Action::Send { peer, bytes } => self.transmit(i, peer_link(peer), bytes),
            Action::ServeChunk {
                peer,
                request,
                hash,
            } => {
                let Some(d) = self.nodes[i].store.chunks.get(&hash) else {
                    let ev = Event::ServeFailed {
                        peer,
                        request,
                        hash,
                    };
                    let now = Timestamp(self.now);
                    if let Some(core) = self.nodes[i].core.as_mut() {
                        core.handle(now, ev);
                    }
                    return;
                };
                let mut data = d.to_vec();
                if self.nodes[i].role == Role::Malicious(Attack::CorruptChunks) {
                    if let Some(b) = data.first_mut() {
                        *b ^= 0xff;
                    }
                }
                if let Ok(bytes) = wire::chunk_response(request, hash, data) {
                    self.transmit(i, peer_link(peer), bytes);
                }
            }
            Action::StoreChunk { hash, data } => self.store_chunk(i, hash, &data),
            Action::StoreManifest { id, bytes } => {
                self.nodes[i].store.manifests.insert(id, bytes);
            }
            Action::StoreIndex { id, bytes } => {
                self.nodes[i].store.indexes.insert(id, bytes);
            }
            Action::InstallReady { release } => self.install(i, release),
            // Patches are not modelled (the fixture's releases list none):
            // report nothing produced, so the chunks are fetched plainly.
            Action::ApplyPatch { release, patch } => {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle(
                        Timestamp(self.now),
                        Event::PatchApplied {
                            release,
                            patch,
                            produced: Vec::new(),
                        },
                    );
                }
            }
            Action::Disconnect { peer, .. } => {
                self.disconnects += 1;
                let l = peer_link(peer);
                if l < self.links.len() {
                    self.take_down(l);
                    self.schedule_reconnect(l);
                }
            }
            Action::ArmTimer { at } => {
                self.nodes[i].timer = Some(at);
                let incarnation = self.nodes[i].incarnation;
                self.push(
                    at.0.max(self.now),
                    Ev::Timer {
                        node: i,
                        incarnation,
                        at,
                    },
                );
            }
            Action::Penalised { .. } | Action::ReportReceived { .. } | Action::Note { .. } => {}
        }
    }

    fn store_chunk(&mut self, i: usize, hash: Hash, data: &[u8]) {
        let shared = self
            .fixture
            .chunk(&hash)
            .filter(|d| d.as_ref() == data)
            .map(Rc::clone);
        let stored = match shared {
            Some(d) => d,
            None => {
                if Hash::of(data) != hash {
                    self.corrupt_stores += 1;
                    self.violation(format!(
                        "node {i} was told to store chunk {} with bytes that do not hash to it",
                        hash.short()
                    ));
                }
                Rc::from(data)
            }
        };
        if self.nodes[i].store.chunks.insert(hash, stored).is_some() {
            self.duplicate_chunk_stores += 1;
        }
    }

    fn install(&mut self, i: usize, release: Hash) {
        let node = &self.nodes[i];
        match check_install(
            &self.fixture.trust,
            &node.store,
            node.installed.security_version,
            &release,
        ) {
            Ok(sv) => {
                self.installs += 1;
                let node = &mut self.nodes[i];
                let first = node.installed.release != Some(release);
                node.installed = Installed {
                    release: Some(release),
                    security_version: Some(sv),
                    image_hash: None,
                };
                let now = Timestamp(self.now);
                if let Some(core) = node.core.as_mut() {
                    core.installed(now, release, sv);
                }
                if first && release == self.fixture.target.id && self.required[i] {
                    self.required_left = self.required_left.saturating_sub(1);
                    if self.required_left == 0 {
                        self.converged_at = Some(self.now);
                    }
                }
            }
            Err(e) => {
                self.invalid_installs += 1;
                self.violation(format!(
                    "t={} ms node {i} ({:?}): {e}",
                    self.now, self.nodes[i].role
                ));
            }
        }
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(text);
        }
    }

    // ------------------------------------------------------------ links

    /// Puts `bytes` on link `l` from node `i`: serialisation, latency,
    /// jitter, retransmissions.
    fn transmit(&mut self, i: usize, l: usize, bytes: Vec<u8>) {
        let Some(link) = self.links.get_mut(l) else {
            return;
        };
        if !link.up {
            self.dropped += 1;
            return;
        }
        let (dir, to) = if link.ends[0] == i {
            (0, link.ends[1])
        } else {
            (1, link.ends[0])
        };
        let len = bytes.len() as u64;
        self.messages += 1;
        self.bytes += len;
        let serialise_us = (len * 1_000_000).div_ceil(link.bandwidth.max(1));
        let depart = link.busy_until_us[dir].max(self.now * 1000) + serialise_us;
        link.busy_until_us[dir] = depart;
        let latency_us = link.latency_ms * 1000;
        let mut arrive = depart + latency_us + self.net_rng.between(0, link.jitter_ms * 1000);
        let rto_us = (RTO_MIN_MS * 1000).max(3 * latency_us);
        let epoch = link.epoch;
        let loss = self.options.loss_percent;
        let mut lost = 0;
        while loss > 0 && self.net_rng.percent(loss) {
            lost += 1;
            arrive += rto_us;
            if lost >= RETRANSMISSIONS_MAX {
                self.push(arrive.div_ceil(1000), Ev::LinkFail { link: l, epoch });
                return;
            }
        }
        self.push(
            arrive.div_ceil(1000),
            Ev::Deliver {
                link: l,
                to,
                epoch,
                bytes,
            },
        );
    }

    // ------------------------------------------------------------ attacks

    fn attack_link(&mut self, i: usize, l: usize) {
        let Role::Malicious(attack) = self.nodes[i].role else {
            return;
        };
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let manifest = |bytes: &[u8]| {
            wire::Message::Manifest {
                bytes: bytes.to_vec(),
            }
            .encode()
            .ok()
        };
        match attack {
            Attack::CorruptChunks => {}
            Attack::ForgedManifests => msgs.extend(manifest(&self.fixture.forged.manifest)),
            Attack::ReplayedManifests => {
                msgs.extend(manifest(&self.fixture.installed.manifest));
                msgs.extend(manifest(&self.fixture.rollback.manifest));
            }
            Attack::Flood => {
                for k in 0..FLOOD_BURST {
                    let m = match k % 3 {
                        0 => {
                            let len = self.net_rng.between(1, JUNK_BYTES_MAX);
                            Some((0..len).map(|_| self.net_rng.next_u64() as u8).collect())
                        }
                        1 => wire::Message::Summary {
                            releases: (0..4).map(|_| self.random_hash()).collect(),
                            installed: None,
                        }
                        .encode()
                        .ok(),
                        _ => wire::Message::GetChunk {
                            request: k,
                            hash: self.random_hash(),
                        }
                        .encode()
                        .ok(),
                    };
                    msgs.extend(m);
                }
            }
        }
        for m in msgs {
            if self.nodes[i].attack_messages >= ATTACK_MESSAGES_MAX {
                return;
            }
            self.nodes[i].attack_messages += 1;
            self.transmit(i, l, m);
        }
    }

    fn random_hash(&mut self) -> Hash {
        let mut h = [0u8; 32];
        for c in h.chunks_mut(8) {
            c.copy_from_slice(&self.net_rng.next_u64().to_le_bytes());
        }
        Hash(h)
    }

    // ------------------------------------------------------------ loop

    fn hash_event(&mut self, at: u64, tag: u8, node: usize, extra: &[u8]) {
        self.trace.update(&at.to_le_bytes());
        self.trace.update(&[tag]);
        self.trace.update(&(node as u64).to_le_bytes());
        self.trace.update(&(extra.len() as u64).to_le_bytes());
        self.trace.update(extra);
    }

    fn step(&mut self, ev: Ev) -> Result<(), Error> {
        let at = self.now;
        match ev {
            Ev::Deliver {
                link,
                to,
                epoch,
                bytes,
            } => {
                self.hash_event(at, 1, to, &bytes);
                let l = &self.links[link];
                if !l.up || l.epoch != epoch || !self.alive(to) {
                    self.dropped += 1;
                    return Ok(());
                }
                self.feed(
                    to,
                    Event::Message {
                        peer: PeerId(link as u64),
                        bytes,
                    },
                );
            }
            Ev::Timer {
                node,
                incarnation,
                at: t,
            } => {
                let n = &self.nodes[node];
                if n.incarnation != incarnation || n.timer != Some(t) || n.core.is_none() {
                    return Ok(());
                }
                self.hash_event(at, 2, node, &[]);
                self.feed(node, Event::Timeout);
            }
            Ev::LinkUp { node, link, epoch } => {
                self.hash_event(at, 3, node, &(link as u64).to_le_bytes());
                let l = &self.links[link];
                if !l.up || l.epoch != epoch || !self.alive(node) {
                    return Ok(());
                }
                let other = self.other_end(link, node);
                self.feed(
                    node,
                    Event::LinkUp {
                        peer: PeerId(link as u64),
                        node: node_id(other),
                    },
                );
                if self.links[link].up && self.links[link].epoch == epoch {
                    self.attack_link(node, link);
                }
            }
            Ev::LinkDown {
                node,
                link,
                incarnation,
            } => {
                self.hash_event(at, 4, node, &(link as u64).to_le_bytes());
                if self.nodes[node].incarnation == incarnation {
                    self.feed(
                        node,
                        Event::LinkDown {
                            peer: PeerId(link as u64),
                        },
                    );
                }
            }
            Ev::Reconnect { link } => {
                self.hash_event(at, 5, 0, &(link as u64).to_le_bytes());
                self.links[link].reconnect_pending = false;
                self.try_link_up(link);
            }
            Ev::LinkFail { link, epoch } => {
                self.hash_event(at, 6, 0, &(link as u64).to_le_bytes());
                if self.links[link].epoch == epoch && self.links[link].up {
                    self.link_failures += 1;
                    self.take_down(link);
                    self.schedule_reconnect(link);
                }
            }
            Ev::Crash { node } => {
                self.hash_event(at, 7, node, &[]);
                let n = &mut self.nodes[node];
                let Some(core) = n.core.take() else {
                    return Ok(());
                };
                add_stats(&mut n.stats_before, core.stats());
                n.incarnation += 1;
                n.crashes += 1;
                n.timer = None;
                let links = n.links.clone();
                for l in links {
                    self.take_down(l);
                }
                let down = self.net_rng.between(DOWNTIME_MIN_MS, DOWNTIME_MAX_MS);
                self.push(self.now + down, Ev::Restart { node });
            }
            Ev::Restart { node } => {
                self.hash_event(at, 8, node, &[]);
                self.restarts += 1;
                self.start_core(node)?;
                let links = self.nodes[node].links.clone();
                for l in links {
                    self.try_link_up(l);
                }
                if matches!(self.nodes[node].role, Role::Malicious(_)) {
                    let incarnation = self.nodes[node].incarnation;
                    self.push(self.now, Ev::Attack { node, incarnation });
                }
            }
            Ev::PartitionStart => {
                self.hash_event(at, 9, 0, &[]);
                self.partitioned = true;
                for l in 0..self.links.len() {
                    if self.links[l].crosses_partition {
                        self.take_down(l);
                    }
                }
            }
            Ev::PartitionHeal => {
                self.hash_event(at, 10, 0, &[]);
                self.partitioned = false;
                for l in 0..self.links.len() {
                    if self.links[l].crosses_partition {
                        self.try_link_up(l);
                    }
                }
            }
            Ev::Attack { node, incarnation } => {
                self.hash_event(at, 11, node, &[]);
                let n = &self.nodes[node];
                if n.incarnation != incarnation
                    || n.core.is_none()
                    || n.attack_messages >= ATTACK_MESSAGES_MAX
                {
                    return Ok(());
                }
                let links = n.links.clone();
                for l in links {
                    if self.links[l].up {
                        self.attack_link(node, l);
                    }
                }
                self.push(
                    self.now + ATTACK_PERIOD_MS,
                    Ev::Attack { node, incarnation },
                );
            }
        }
        Ok(())
    }

    /// Runs until every required node installed the release, virtual time
    /// reaches [`VIRTUAL_MS_MAX`], or [`EVENTS_PER_NODE_MAX`] events per
    /// node were processed; then reports.
    ///
    /// # Errors
    /// [`Error::Core`] if a restarted core refuses its own stored release.
    pub fn run(mut self) -> Result<Report, Error> {
        let events_max = EVENTS_PER_NODE_MAX.saturating_mul(self.nodes.len() as u64);
        let stop = loop {
            if self.converged_at.is_some() {
                break Stop::Converged;
            }
            if self.stalled {
                break Stop::EventLimit;
            }
            if self.events >= events_max {
                break Stop::EventLimit;
            }
            let Some(Reverse(item)) = self.queue.pop() else {
                break Stop::QueueEmpty;
            };
            if item.at > VIRTUAL_MS_MAX {
                self.now = VIRTUAL_MS_MAX;
                break Stop::VirtualTimeLimit;
            }
            self.events += 1;
            self.now = self.now.max(item.at);
            self.step(item.ev)?;
        };
        Ok(self.report(stop))
    }

    fn report(&self, stop: Stop) -> Report {
        let mut stats = Stats::default();
        for n in &self.nodes {
            add_stats(&mut stats, &n.stats_before);
            if let Some(c) = &n.core {
                add_stats(&mut stats, c.stats());
            }
        }
        let target = self.fixture.target.id;
        let converged_nodes = self
            .nodes
            .iter()
            .zip(&self.required)
            .filter(|(n, r)| **r && n.installed.release == Some(target))
            .count();
        let malicious = self
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Malicious(_)))
            .count();
        let chunks = self.fixture.target.chunks.len();
        let o = &self.options;
        Report {
            converged: self.converged_at.is_some(),
            virtual_seconds: self.converged_at.unwrap_or(self.now) as f64 / 1000.0,
            bytes: self.bytes,
            messages: self.messages,
            invalid_installs: self.invalid_installs,
            corrupt_stores: self.corrupt_stores,
            nodes: self.nodes.len(),
            honest_nodes: self.nodes.len() - malicious,
            malicious_nodes: malicious,
            required_nodes: self.required.iter().filter(|r| **r).count(),
            converged_nodes,
            links: self.links.len(),
            image_bytes: o.size_kib * 1024,
            chunks,
            chunk_bytes_fetched: stats.chunk_bytes_fetched,
            chunks_fetched: stats.chunks_fetched,
            duplicate_chunk_stores: self.duplicate_chunk_stores,
            installs: self.installs,
            messages_dropped: self.dropped,
            link_failures: self.link_failures,
            disconnects: self.disconnects,
            bans: stats.bans,
            corrupt_chunks_rejected: stats.corrupt_chunks,
            rejected_manifests: stats.rejected_manifests,
            crashes: self.nodes.iter().map(|n| u64::from(n.crashes)).sum(),
            restarts: self.restarts,
            events: self.events,
            stop,
            trace_hash: Hash(*self.trace.finalize().as_bytes()).to_hex(),
            seed: o.seed,
            topology: o.topology.name().into(),
            malicious_percent: o.malicious_percent,
            loss_percent: o.loss_percent,
            crash_percent: o.crash_percent,
            partition: o.partition,
            size_kib: o.size_kib,
            replay: o.replay_command(),
            violations: self.violations.clone(),
            stuck: self.stuck(),
        }
    }

    /// What the first required nodes that did not converge hold and want.
    fn stuck(&self) -> Vec<String> {
        let target = self.fixture.target.id;
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| self.required[*i] && n.installed.release != Some(target))
            .take(STUCK_MAX)
            .map(|(i, n)| match &n.core {
                None => format!("node {i}: crashed"),
                Some(c) => format!(
                    "node {i}: {} releases, wants {:?}, target progress {:?}, {} peers of {} links",
                    c.releases().len(),
                    c.wanted().map(|h| h.short()),
                    c.progress(&target),
                    c.peer_count(),
                    n.links.len()
                ),
            })
            .collect()
    }
}

const fn peer_link(peer: PeerId) -> usize {
    peer.0 as usize
}

fn add_stats(total: &mut Stats, s: &Stats) {
    total.messages_sent += s.messages_sent;
    total.bytes_sent += s.bytes_sent;
    total.messages_received += s.messages_received;
    total.bytes_received += s.bytes_received;
    total.chunks_fetched += s.chunks_fetched;
    total.chunk_bytes_fetched += s.chunk_bytes_fetched;
    total.chunks_served += s.chunks_served;
    total.corrupt_chunks += s.corrupt_chunks;
    total.rejected_manifests += s.rejected_manifests;
    total.bans += s.bans;
}

/// Runs one simulation from `options`.
///
/// # Errors
/// As [`Sim::new`] and [`Sim::run`].
pub fn run(options: &Options) -> Result<Report, Error> {
    Sim::new(options)?.run()
}
