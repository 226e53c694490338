//! The mesh daemon (`meshota node run`): one protocol core driven by the
//! QUIC driver, with the chunk store and the A/B install pipeline.
//!
//! One task owns all state (the core, the store handle, the peer table);
//! peer connections, the dialers, the acceptor and the control socket are
//! tasks that talk to it over a channel. Installs run on a blocking thread.
//! Chunks the core asks to store are kept in memory and written in batches
//! (one durable commit per batch); until a batch is written, requests for
//! its chunks are served from memory. After a crash the core restarts from
//! what the store holds, so verified chunks are never fetched twice.
//! With a `[radio]` table the same task drives a LoRa radio link and
//! hands releases between it and the core (`radio.rs`).

mod admission;
mod base_indexes;
pub(crate) mod control;
mod discovery;
mod gateway;
mod metrics;
pub(crate) mod patch;
mod radio;
mod station;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshota_blobstore::{ChunkIndex, ChunkStore, DEFAULT_PARAMS, FsStore, ingest};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::MAX_MANIFEST_BYTES;
use meshota_manifest::{
    Hash, InstallOutcome, KeyId, NodeReport, ReleaseManifest, SecretKey, SignedDocument, SlotState,
    TrustRoot, UnixTime, Verified,
};
use meshota_mesh::quic::{Admission, PeerConn, QuicEndpoint};
use meshota_mesh::{
    Action, Config, Event, Installed, Limits, PeerId, Timestamp, TrickleConfig, wire,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::cmd::boot::{after_boot, simulated_reboot};
use crate::cmd::install::install_release;
use crate::config::{MeshConfig, RebootMode};
use crate::device::{ImageSource, Node};
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::load_secret;
use crate::timefmt::now;
use control::Request;

/// Chunks held in memory before a batch is written.
const FLUSH_BYTES: usize = 8 << 20;
/// Chunks held in memory while a batch is being written, before the
/// central task waits for that write (bounds memory when the disk is
/// slower than the network).
const PENDING_MAX_BYTES: usize = 4 * FLUSH_BYTES;
/// Longest a stored chunk waits in memory before its batch is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Messages queued toward one peer before further ones are dropped (the
/// core's timeouts and retries recover from drops).
const PEER_QUEUE: usize = 4096;
/// Inputs queued toward the central task.
const INPUT_QUEUE: usize = 8192;

/// Fetched chunks on their way to the store, by id.
type Batch = Arc<BTreeMap<Hash, Vec<u8>>>;
/// The blocking task writing a batch, and its outcome.
type Writer = tokio::task::JoinHandle<Result<(), String>>;

/// What the central task is told.
enum Input {
    PeerUp {
        conn: PeerConn,
        initiated: bool,
        done: Option<oneshot::Sender<()>>,
    },
    PeerMsg {
        peer: PeerId,
        bytes: Vec<u8>,
    },
    PeerDown {
        peer: PeerId,
    },
    Control {
        req: Request,
        reply: oneshot::Sender<serde_json::Value>,
    },
    InstallDone {
        release: Hash,
        result: Result<InstallResult, String>,
    },
    Discovered(discovery::Found),
    /// The background write of batch `seq` finished.
    Flushed {
        seq: u64,
        result: Result<(), String>,
    },
    /// An origin sync finished (gateway only).
    OriginSynced(Result<meshota_gateway::origin::SyncReport, String>),
    /// The USB station found a file to handle.
    Station(station::Found),
    /// A bundle import (on a blocking thread) finished.
    BundleImported {
        result: Result<meshota_sneakernet::Imported, String>,
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// The radio received a frame.
    RadioFrame(Vec<u8>),
    /// The radio's connection ended (the reason).
    RadioDown(String),
    /// A patch was applied (or could not be).
    PatchDone {
        release: Hash,
        patch: Hash,
        result: Result<patch::Applied, String>,
    },
}

/// Patch counters for the status object (the core counts fetches).
#[derive(Default)]
struct PatchCounters {
    pieces_applied: u64,
    pieces_failed: u64,
    chunks_produced: u64,
    last_error: Option<String>,
}

enum InstallResult {
    Confirmed {
        security_version: u64,
        version: String,
    },
    RebootDue,
}

enum Out {
    Msg(Vec<u8>),
    Close(String),
}

struct PeerHandle {
    node: KeyId,
    tx: mpsc::Sender<Out>,
    initiated: bool,
    remote: std::net::SocketAddr,
    /// Held while connected: dropping it wakes the dialer.
    _done: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Installing,
    RebootDue,
    Failed(String),
}

struct Daemon {
    node: Arc<Node>,
    mesh: MeshConfig,
    trust: Verified<TrustRoot>,
    key: Arc<SecretKey>,
    core: meshota_mesh::Node,
    store: Arc<FsStore>,
    store_dir: PathBuf,
    manifests_dir: PathBuf,
    start: Instant,
    peers: HashMap<PeerId, PeerHandle>,
    next_peer: u64,
    pending: BTreeMap<Hash, Vec<u8>>,
    pending_bytes: usize,
    /// The batch being written on a blocking thread (at most one), still
    /// served from memory until its commit returns.
    flushing: Option<(u64, Batch, Writer)>,
    /// Sequence number of the last background write started.
    flush_seq: u64,
    phase: Phase,
    installed_version: Option<String>,
    inputs: mpsc::Sender<Input>,
    listen: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
    shutdown: bool,
    endpoint: Arc<QuicEndpoint>,
    /// Our mDNS instance name when discovery runs.
    mdns_instance: Option<String>,
    /// Peers found over mDNS that this node dials, by instance name.
    discovered: BTreeMap<String, Dialled>,
    /// Gateway duties (`meshota gateway run`), none for a plain node.
    gateway: Option<gateway::GatewayState>,
    patches: PatchCounters,
    /// The LoRa radio (`[radio]`), if configured.
    radio: Option<radio::RadioDriver>,
    /// The confirmed slot's chunk index, once seeded: the base a large
    /// release's index delta is rebuilt against on the radio.
    seeded_index: Option<ChunkIndex>,
    /// The chunk indexes of the images this node ran (on disk): a
    /// publisher that installed its own large release, even after a
    /// restart, still finds the base's index to write the release's index
    /// delta against.
    base_indexes: base_indexes::BaseIndexes,
}

/// A discovered peer and the dialer that keeps a connection to it.
struct Dialled {
    node: KeyId,
    addr: std::net::SocketAddr,
    dialer: tokio::task::JoinHandle<()>,
}

/// The confirmed slot as seeded: its name, the chunks of its index the
/// store can serve (as blobs or from the slot in place), how many chunks
/// were seeded, and its chunk index.
struct SeededSlot {
    slot: String,
    held: Vec<Hash>,
    chunks: u64,
    index: ChunkIndex,
}

fn reboot_mode(node: &Node, mesh: &MeshConfig) -> RebootMode {
    mesh.reboot
        .unwrap_or(if node.config.boot_kind() == "simulated" {
            RebootMode::Simulated
        } else {
            RebootMode::External
        })
}

/// Runs the daemon until `shutdown` or a signal; with `as_gateway`, also
/// the gateway duties of the config's `[gateway]` table (required then).
pub(crate) fn run(config_path: &std::path::Path, as_gateway: bool) -> CmdResult {
    let node = Arc::new(Node::load(config_path)?);
    if as_gateway && node.config.gateway.is_none() {
        return Err(Failure::file(
            config_path,
            "has no [gateway] table; `gateway run` needs one (see docs/gateway.md)",
        ));
    }
    let mesh = node.config.mesh.clone().ok_or_else(|| {
        Failure::file(
            config_path,
            "has no [mesh] table; `node run` needs one (see docs/daemon.md)",
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::rejected(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(run_async(node, mesh, as_gateway));
    // Blocking work still under way (an origin sync waiting on the network,
    // a background store flush) is left behind rather than waited for: the
    // store is crash-safe, and the next start resumes. An install is not
    // among it: `run_async` waits for that.
    rt.shutdown_timeout(SHUTDOWN_LEFTOVERS);
    result
}

/// How long a stopping daemon waits for blocking work still under way.
const SHUTDOWN_LEFTOVERS: Duration = Duration::from_secs(2);

fn load_state(node: &Node) -> CmdResult<(Installed, Option<String>)> {
    let mut dev = node.open_device()?;
    let record = dev.record().map_err(|e| node.device_failure("start", &e))?;
    let slot = record.confirmed;
    let version = record.slots[slot.index()]
        .as_ref()
        .map(|i| i.version.clone());
    let path = node.config.slot_manifest_path(slot);
    let doc = read_limited(&path, MAX_MANIFEST_BYTES)
        .ok()
        .and_then(|b| SignedDocument::<ReleaseManifest>::decode(&b).ok());
    let release = doc.as_ref().map(SignedDocument::id);
    // The confirmed slot's image: the base a listed patch must be from.
    // (A slot that does not hold it is caught when a patch is applied:
    // the base is hashed first.)
    let image_hash = doc.as_ref().and_then(|d| {
        let body = d.unverified_body();
        body.components
            .iter()
            .find(|c| c.name == node.config.component)
            .or_else(|| body.components.first())
            .map(|c| c.image_hash)
    });
    Ok((
        Installed {
            release,
            security_version: Some(record.security_counter),
            image_hash,
        },
        version,
    ))
}

async fn run_async(node: Arc<Node>, mesh: MeshConfig, as_gateway: bool) -> CmdResult {
    let trust = node.trust()?;
    let key = Arc::new(load_secret(&mesh.device_key)?);
    let store_dir = node.config.store_dir_or_default();
    std::fs::create_dir_all(&node.config.data_dir).at(&node.config.data_dir)?;
    let store = Arc::new(FsStore::open_or_create(&store_dir).at(&store_dir)?);
    let manifests_dir = node.config.data_dir.join("manifests");
    std::fs::create_dir_all(&manifests_dir).at(&manifests_dir)?;

    // Settle a pending trial first (testnets: the previous run may have
    // stopped between the simulated reboot and the confirm).
    if reboot_mode(&node, &mesh) == RebootMode::Simulated {
        let n = node.clone();
        let outcome = tokio::task::spawn_blocking(move || after_boot(&n))
            .await
            .map_err(|e| Failure::rejected(e.to_string()))?;
        if let Err(f) = outcome {
            tracing::warn!("after-boot check at start: {}", f.message);
        }
    }
    let (installed, installed_version) = load_state(&node)?;

    let mut credentials = Vec::new();
    let admission = if mesh.open {
        Admission::Open
    } else if let Some(c) = &mesh.certificate {
        let (check, own) = admission::certified(c, key.public())?;
        credentials = own;
        Admission::Certified(check)
    } else {
        let mut set = std::collections::BTreeSet::new();
        for id in &mesh.allow {
            let mut out = [0u8; 32];
            hex::decode_to_slice(id, &mut out).map_err(|_| {
                Failure::file(&node.path, format!("bad key id {id:?} in mesh.allow"))
            })?;
            set.insert(KeyId(out));
        }
        Admission::AllowList(set)
    };
    let endpoint = Arc::new(
        QuicEndpoint::bind_with_credentials(
            mesh.listen,
            (*key).clone(),
            node.config.hardware.clone(),
            admission,
            credentials,
        )
        .map_err(|e| Failure::file(&node.path, format!("cannot listen on {}: {e}", mesh.listen)))?,
    );
    let listen = endpoint.local_addr().map_err(Failure::rejected)?;

    let start = Instant::now();
    let seed = mesh
        .seed
        .unwrap_or_else(|| u64::from_le_bytes(key.id().0[..8].try_into().unwrap_or([0; 8])));
    let limits = Limits {
        upload_bytes_per_sec: mesh.upload_bytes_per_sec,
        download_bytes_per_sec: mesh.download_bytes_per_sec,
        ..Limits::DEFAULT
    };
    let config = Config {
        node_id: key.id(),
        hardware: node.config.hardware.clone(),
        channel: node.config.channel.clone(),
        seed,
        limits,
        trickle: TrickleConfig::IP,
        wall_clock_at_zero: if node.config.ignore_expiry {
            None
        } else {
            Some(now())
        },
    };
    let radio_installed = (
        installed.release.unwrap_or_else(|| Hash::of(&[])),
        installed.security_version.unwrap_or(0),
    );
    let core = meshota_mesh::Node::new(config, trust.clone(), installed, Timestamp(0));
    let (tx, mut rx) = mpsc::channel(INPUT_QUEUE);
    let mut d = Daemon {
        node: node.clone(),
        mesh: mesh.clone(),
        trust,
        key,
        core,
        store,
        store_dir,
        manifests_dir,
        start,
        peers: HashMap::new(),
        next_peer: 0,
        pending: BTreeMap::new(),
        pending_bytes: 0,
        flushing: None,
        flush_seq: 0,
        phase: Phase::Idle,
        installed_version,
        inputs: tx.clone(),
        listen,
        metrics: None,
        shutdown: false,
        endpoint: endpoint.clone(),
        mdns_instance: None,
        discovered: BTreeMap::new(),
        gateway: None,
        patches: PatchCounters::default(),
        radio: None,
        seeded_index: None,
        base_indexes: base_indexes::BaseIndexes::new(&node.config.data_dir),
    };
    d.load_store()?;
    d.seed_active_slot();
    // The radio, when configured: an absent or refusing radio stops the
    // start (a typed error naming the cause), it is never skipped.
    if let Some(rc) = node.config.radio.clone() {
        let fail = |e: crate::radio::RadioSetupError| Failure::file(&node.path, e);
        let mut settings = crate::radio::settings(&rc, &d.key.id().0).map_err(fail)?;
        radio::restore_short_id_salt(&mut settings, &node.config.data_dir);
        let transport = radio::connect(&rc, &settings, tx.clone())
            .await
            .map_err(fail)?;
        let driver = radio::RadioDriver::new(
            settings,
            rc.backend,
            transport,
            d.trust.clone(),
            radio_installed,
            node.config.hardware.clone(),
            node.config.expiration(),
        )
        .map_err(fail)?;
        tracing::info!(backend = ?rc.backend, "radio running");
        d.radio = Some(driver);
        d.radio_base_changed();
    }

    // Control socket.
    let sock = node.config.control_socket();
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).at(&sock)?;
    // Each control connection holds a clone of `answering` until its
    // answer is written; shutdown waits for them (see below).
    let (answering, mut answered) = mpsc::channel::<()>(1);
    let control = tokio::spawn(control_loop(listener, tx.clone(), answering));
    if let Some(addr) = mesh.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::file(&node.path, format!("cannot serve metrics on {addr}: {e}"))
        })?;
        d.metrics = l.local_addr().ok();
        tokio::spawn(metrics::serve(l, tx.clone()));
    }
    // Gateway: the origin loop.
    if let Some(cfg) = node.config.gateway.clone().filter(|_| as_gateway) {
        let (trigger, triggers) = mpsc::channel(gateway::TRIGGER_QUEUE);
        let state_dir = node.config.data_dir.join("gateway");
        let mqtt = match &cfg.mqtt {
            Some(m) => {
                let path = state_dir.join("mqtt-outbox.redb");
                let outbox =
                    Arc::new(meshota_gateway::mqtt::Outbox::open(&path, m.queue_max).at(&path)?);
                let wake = Arc::new(tokio::sync::Notify::new());
                let link = meshota_gateway::mqtt::Link::new(
                    m.clone(),
                    &d.key.id().to_hex(),
                    outbox.clone(),
                    wake.clone(),
                    trigger.clone(),
                );
                let status = link.status();
                tokio::spawn(link.run());
                // Whatever a previous run left queued goes out first.
                wake.notify_one();
                Some(gateway::MqttSide {
                    fleet: m.fleet.clone(),
                    gateway: d.key.id(),
                    outbox,
                    wake,
                    link: status,
                    reports: BTreeMap::new(),
                })
            }
            None => None,
        };
        d.gateway = Some(gateway::GatewayState {
            origin: cfg.origin.clone(),
            trigger: Some(trigger),
            mqtt,
            ..gateway::GatewayState::default()
        });
        let origin = meshota_gateway::origin::http::Origin::new(
            &cfg.origin_config(),
            &state_dir.join("partial"),
        )
        .map_err(|e| Failure::file(&node.path, e))?;
        let job = gateway::OriginLoop {
            interval: cfg.poll_interval(),
            origin,
            store: d.store.clone(),
            trust: d.trust.clone(),
            expiration: node.config.expiration(),
            state_dir,
        };
        tokio::spawn(job.run(tx.clone(), triggers));
    }
    // Acceptor and dialers.
    tokio::spawn(accept_loop(endpoint.clone(), tx.clone()));
    for addr in &mesh.peers {
        tokio::spawn(dial_loop(endpoint.clone(), *addr, tx.clone()));
    }
    // USB station: files on the stick become inputs.
    if let Some(cfg) = node.config.station.clone() {
        let (found_tx, mut found_rx) = mpsc::channel(16);
        tracing::info!(dir = %cfg.dir.display(), "USB station watching");
        tokio::spawn(station::watch(cfg, found_tx));
        let inputs = tx.clone();
        tokio::spawn(async move {
            while let Some(f) = found_rx.recv().await {
                if inputs.send(Input::Station(f)).await.is_err() {
                    break;
                }
            }
        });
    }
    // LAN discovery: kept alive (and unregistered on drop) until shutdown.
    let _discovery = match &mesh.mdns {
        Some(cfg) => {
            let (found_tx, mut found_rx) = mpsc::channel(64);
            let disc = discovery::Discovery::start(cfg, d.core.node_id(), listen, found_tx)
                .map_err(|e| Failure::file(&node.path, e))?;
            tracing::info!(instance = disc.fullname(), "mDNS discovery running");
            d.mdns_instance = Some(disc.fullname().to_string());
            let inputs = tx.clone();
            tokio::spawn(async move {
                while let Some(f) = found_rx.recv().await {
                    if inputs.send(Input::Discovered(f)).await.is_err() {
                        break;
                    }
                }
            });
            Some(disc)
        }
        None => None,
    };
    tracing::info!(node = %d.core.node_id().to_hex(), %listen, "meshota node running");
    println!(
        "meshota node {} listening on {listen}",
        d.core.node_id().short()
    );

    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::rejected(e.to_string()))?;
    // Created once, like `sigterm`: a `ctrl_c()` future made afresh on each
    // turn of the loop misses a SIGINT that arrives while the loop is busy.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::rejected(e.to_string()))?;
    d.drain_actions();
    while !d.shutdown {
        let deadline = d
            .core
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| Duration::from_millis(t.0));
        let sleep = tokio::time::sleep_until((d.start + deadline).into());
        let radio_at = d.radio.as_ref().map(radio::RadioDriver::deadline);
        let radio_sleep = async move {
            match radio_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = rx.recv() => match input {
                Some(i) => d.input(i),
                None => break,
            },
            () = sleep => {
                let now = d.now();
                d.core.handle(now, Event::Timeout);
            }
            () = radio_sleep => {}
            _ = flush.tick() => d.flush_in_background(),
            _ = sigint.recv() => d.shutdown = true,
            _ = sigterm.recv() => d.shutdown = true,
        }
        d.drain_actions();
        if d.radio.is_some() {
            d.radio_step();
            d.drain_actions();
        }
    }
    // An install under way ends first: stopping in the middle would be
    // safe (as a power cut is) but would throw its work away. Requests
    // that arrive meanwhile are answered "daemon stopping".
    if matches!(d.phase, Phase::Installing) {
        tracing::info!("stopping once the install under way ends");
        while let Some(input) = rx.recv().await {
            if let Input::InstallDone { release, result } = input {
                d.install_done(release, result);
                break;
            }
        }
    }
    d.flush();
    for p in d.peers.values() {
        let _ = p.tx.try_send(Out::Close("shutting down".into()));
    }
    endpoint.close();
    // Let the close frames reach the peers (bounded), so they drop the link
    // now rather than at their idle timeout.
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let _ = std::fs::remove_file(&sock);
    // Answer every control connection before the runtime goes: `node stop`
    // gets its `{"ok": true}`, and a request still queued gets "daemon
    // stopping" (dropping `rx` drops its reply sender) instead of EOF.
    control.abort();
    let _ = control.await;
    drop(rx);
    let _ = tokio::time::timeout(CONTROL_DRAIN, answered.recv()).await;
    tracing::info!("meshota node stopped");
    Ok(())
}

async fn accept_loop(ep: Arc<QuicEndpoint>, tx: mpsc::Sender<Input>) {
    while let Some(r) = ep.accept().await {
        match r {
            Ok(conn) => {
                if tx
                    .send(Input::PeerUp {
                        conn,
                        initiated: false,
                        done: None,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => tracing::warn!("incoming connection refused: {e}"),
        }
    }
}

async fn dial_loop(ep: Arc<QuicEndpoint>, addr: std::net::SocketAddr, tx: mpsc::Sender<Input>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match ep.connect(addr).await {
            Ok(conn) => {
                let (done_tx, done_rx) = oneshot::channel();
                if tx
                    .send(Input::PeerUp {
                        conn,
                        initiated: true,
                        done: Some(done_tx),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = done_rx.await;
                backoff = Duration::from_millis(200);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(
                e @ (meshota_mesh::quic::QuicError::NotAdmitted { .. }
                | meshota_mesh::quic::QuicError::NotCertified { .. }),
            ) => {
                // The peer answered and proved its key, but this node's
                // admission rule refuses it: an operator wants to know.
                tracing::warn!(%addr, "dialled peer refused: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                tracing::debug!(%addr, "dial failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// One peer connection: a reader that hands messages to the central task,
/// and a writer that sends what the central task queues. They run apart:
/// a send can wait for the peer's stream credit, which comes back only as
/// the peer reads, so one task doing both could deadlock with a peer doing
/// the same.
async fn peer_task(
    peer: PeerId,
    mut conn: PeerConn,
    mut rx: mpsc::Receiver<Out>,
    tx: mpsc::Sender<Input>,
) {
    let sender = conn.sender();
    let mut writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Msg(b) => {
                    if let Err(e) = sender.send(&b).await {
                        tracing::debug!("send to peer {} failed: {e}", peer.0);
                        break;
                    }
                }
                Out::Close(reason) => {
                    sender.close(&reason);
                    break;
                }
            }
        }
    });
    loop {
        tokio::select! {
            m = conn.recv() => match m {
                Ok(Some(b)) => {
                    if tx.send(Input::PeerMsg { peer, bytes: b.to_vec() }).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("peer {} closed: {e}", peer.0);
                    break;
                }
            },
            _ = &mut writer => break,
        }
    }
    writer.abort();
    let _ = tx.send(Input::PeerDown { peer }).await;
}

/// How long a stopping daemon waits for control answers still being written.
const CONTROL_DRAIN: Duration = Duration::from_secs(2);

/// Serves the control socket. Each connection's task holds a clone of
/// `answering` until its answer is written, so the daemon can wait for them.
async fn control_loop(
    listener: UnixListener,
    tx: mpsc::Sender<Input>,
    answering: mpsc::Sender<()>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        let answering = answering.clone();
        tokio::spawn(async move {
            let _answering = answering;
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(r.take(control::MAX_REQUEST_BYTES));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let mut stop = false;
            let answer = match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    stop = matches!(req, Request::Shutdown);
                    let (reply, wait) = oneshot::channel();
                    let stopping = json!({"ok": false, "error": "daemon stopping"});
                    if tx.send(Input::Control { req, reply }).await.is_err() {
                        stopping
                    } else {
                        wait.await.unwrap_or(stopping)
                    }
                }
                Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
            };
            let mut text = answer.to_string();
            text.push('\n');
            let _ = w.write_all(text.as_bytes()).await;
            if stop && answer["ok"] == true {
                // The requester reads on until the connection closes: the
                // socket is never closed here, so it closes when this
                // process exits (its store, ports and files released).
                std::mem::forget(w);
            }
        });
    }
}

impl Daemon {
    fn now(&self) -> Timestamp {
        Timestamp(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Feeds the core what the store already holds: releases, indexes,
    /// chunks. Verified chunks are therefore never fetched again.
    fn load_store(&mut self) -> CmdResult {
        let now = self.now();
        let mut loaded = 0;
        if let Ok(entries) = std::fs::read_dir(&self.manifests_dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().and_then(|x| x.to_str()) != Some("mota") {
                    continue;
                }
                let Ok(bytes) = read_limited(&path, MAX_MANIFEST_BYTES) else {
                    continue;
                };
                let index = SignedDocument::<ReleaseManifest>::decode(&bytes)
                    .ok()
                    .and_then(|d| {
                        d.unverified_body()
                            .components
                            .first()
                            .map(|c| c.chunk_index)
                    })
                    .and_then(|id| self.store.get_index(&id).ok())
                    .and_then(|ix| ix.encode().ok());
                match self.core.add_release(now, &bytes, index.as_deref()) {
                    Ok(_) => loaded += 1,
                    Err(e) => tracing::warn!("{}: not loaded: {e}", path.display()),
                }
            }
        }
        // Patch indexes held (published here, or fetched before a restart).
        let releases = self.core.releases();
        self.load_patch_indexes(now, &releases);
        let chunks = self.store.list().at(&self.store_dir)?;
        let n = chunks.len();
        self.core
            .add_chunks(now, chunks.into_iter().map(|(h, _)| h));
        tracing::info!(releases = loaded, chunks = n, "loaded the store");
        Ok(())
    }

    /// Hands the core every patch index the store holds for `releases`
    /// (at start, and after a bundle import brought some).
    fn load_patch_indexes(&mut self, now: Timestamp, releases: &[Hash]) {
        let patch_ids: Vec<Hash> = releases
            .iter()
            .filter_map(|id| self.core.manifest(id))
            .flat_map(|m| m.patches.iter().map(|p| p.patch))
            .collect();
        for id in patch_ids {
            if let Ok(bytes) = self.store.get(&id) {
                if let Err(e) = self.core.add_patch_index(now, &bytes) {
                    tracing::warn!(patch = %id.short(), "not loaded: {e}");
                }
            }
        }
    }

    /// Serves the confirmed slot's image in place (`Node::seed_confirmed_slot`):
    /// its chunks count as held without a copy in the store. Best effort: a
    /// slot that cannot be read is logged and skipped.
    fn seed_active_slot(&mut self) {
        let node = self.node.clone();
        let store = self.store.clone();
        let result = tokio::task::block_in_place(move || -> Result<Option<SeededSlot>, String> {
            let Some(seeded) = node.seed_confirmed_slot(&store).map_err(|f| f.message)? else {
                return Ok(None); // nothing installed there by meshota
            };
            // The store's own `missing`: each distinct chunk looked up once,
            // and a metadata error reported rather than read as "absent".
            let missing: std::collections::BTreeSet<Hash> = store
                .missing(&seeded.index)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|c| c.hash)
                .collect();
            let held: Vec<Hash> = seeded
                .index
                .chunks()
                .iter()
                .map(|c| c.hash)
                .filter(|h| !missing.contains(h))
                .collect();
            Ok(Some(SeededSlot {
                slot: seeded.slot.name().to_string(),
                held,
                chunks: seeded.chunks,
                index: seeded.index,
            }))
        });
        match result {
            Ok(Some(SeededSlot {
                slot,
                held,
                chunks: seeded,
                index,
            })) => {
                tracing::info!(slot, seeded, "serving the active slot in place");
                let now = self.now();
                self.core.add_chunks(now, held);
                let base_indexes = self.base_indexes.clone();
                if let Err(e) = tokio::task::block_in_place(|| base_indexes.remember(&index)) {
                    tracing::warn!("the running image's chunk index not remembered: {e}");
                }
                self.seeded_index = Some(index);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("active slot not seeded: {e}"),
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::PeerUp {
                conn,
                initiated,
                done,
            } => self.peer_up(conn, initiated, done),
            Input::PeerMsg { peer, bytes } => self.core.handle(now, Event::Message { peer, bytes }),
            Input::PeerDown { peer } => {
                if self.peers.remove(&peer).is_some() {
                    self.core.handle(now, Event::LinkDown { peer });
                }
            }
            Input::Control {
                req: Request::ImportBundle { bundle, kem_key },
                reply,
            } => self.import_bundle(bundle, kem_key, reply),
            Input::Control { req, reply } => {
                let answer = self.control(req);
                let _ = reply.send(answer);
            }
            Input::BundleImported { result, reply } => self.bundle_imported(result, reply),
            Input::Station(station::Found::Bundle(path)) => {
                let (reply, answer) = oneshot::channel();
                let key = self.node.config.bundle.kem_key.clone();
                self.import_bundle(path.clone(), key, reply);
                tokio::spawn(async move {
                    let outcome = answer.await.unwrap_or_else(
                        |_| json!({"ok": false, "error": "the daemon stopped mid-import"}),
                    );
                    station::write_result(&path, &outcome);
                });
            }
            Input::Station(station::Found::Want(path)) => self.station_want(path),
            Input::InstallDone { release, result } => self.install_done(release, result),
            Input::Discovered(found) => self.discovered(found),
            Input::Flushed { seq, result } => self.flushed(seq, result),
            Input::OriginSynced(result) => self.origin_synced(result),
            Input::PatchDone {
                release,
                patch,
                result,
            } => self.patch_done(release, patch, result),
            Input::RadioFrame(frame) => self.radio_frame(&frame),
            Input::RadioDown(why) => {
                if let Some(r) = &mut self.radio {
                    r.transport_down(why);
                }
            }
        }
    }

    /// Injects the releases an origin sync completed: their chunks are in
    /// the store (verified and pinned by the sync), so the core learns the
    /// manifest, the index and the chunks, and announces the release.
    fn origin_synced(&mut self, result: Result<meshota_gateway::origin::SyncReport, String>) {
        let mut injected = 0;
        if let Ok(report) = &result {
            for r in &report.new_releases {
                match self.inject(&r.manifest, &r.indexes) {
                    Ok(()) => {
                        injected += 1;
                        tracing::info!(release = %r.release.short(), version = %r.version, "injected from the origin");
                    }
                    Err(e) => tracing::error!(release = %r.release.short(), "not injected: {e}"),
                }
            }
        }
        if let Some(g) = &mut self.gateway {
            g.record(&result);
            g.injected += injected;
        }
    }

    /// Hands a verified release whose chunks the store holds to the core.
    fn inject(&mut self, manifest: &[u8], indexes: &[Hash]) -> Result<(), String> {
        let store = self.store.clone();
        let loaded: Vec<ChunkIndex> = tokio::task::block_in_place(|| {
            indexes
                .iter()
                .map(|id| store.get_index(id).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()
        })?;
        let first = loaded
            .first()
            .map(ChunkIndex::encode)
            .transpose()
            .map_err(|e| e.to_string())?;
        let now = self.now();
        self.core
            .add_release(now, manifest, first.as_deref())
            .map_err(|e| e.to_string())?;
        for ix in &loaded {
            self.core
                .add_chunks(now, ix.chunks().iter().map(|c| c.hash));
        }
        Ok(())
    }

    /// Starts (or stops) dialling a peer mDNS announced. Static peers and
    /// already-dialled addresses are left alone.
    fn discovered(&mut self, found: discovery::Found) {
        match found {
            discovery::Found::Up {
                instance,
                node,
                addrs,
            } => {
                let Some(&addr) = addrs.first() else {
                    return;
                };
                if self.mesh.peers.contains(&addr)
                    || self
                        .discovered
                        .get(&instance)
                        .is_some_and(|d| d.addr == addr)
                {
                    return;
                }
                tracing::info!(%instance, node = %node.short(), %addr, "discovered over mDNS");
                let dialer =
                    tokio::spawn(dial_loop(self.endpoint.clone(), addr, self.inputs.clone()));
                if let Some(old) = self
                    .discovered
                    .insert(instance, Dialled { node, addr, dialer })
                {
                    old.dialer.abort();
                }
            }
            discovery::Found::Down { instance } => {
                if let Some(old) = self.discovered.remove(&instance) {
                    tracing::info!(%instance, "mDNS instance gone: no longer dialled");
                    old.dialer.abort();
                }
            }
        }
    }

    fn peer_up(&mut self, conn: PeerConn, initiated: bool, done: Option<oneshot::Sender<()>>) {
        let node = conn.peer_id();
        let me = self.core.node_id();
        if node == me {
            conn.close("connected to itself");
            return;
        }
        // One connection per pair: keep the one the smaller id initiated.
        if let Some((&old, h)) = self.peers.iter().find(|(_, h)| h.node == node) {
            let new_preferred = (me < node) == initiated;
            if !new_preferred {
                conn.close("duplicate connection");
                return;
            }
            let _ = h.tx.try_send(Out::Close("duplicate connection".into()));
            self.peers.remove(&old);
            self.core.handle(self.now(), Event::LinkDown { peer: old });
        }
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let remote = conn.remote_addr();
        tracing::info!(peer = peer.0, node = %node.short(), %remote, initiated, "peer up");
        tokio::spawn(peer_task(peer, conn, rx, self.inputs.clone()));
        self.peers.insert(
            peer,
            PeerHandle {
                node,
                tx,
                initiated,
                remote,
                _done: done,
            },
        );
        self.core.handle(self.now(), Event::LinkUp { peer, node });
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.core.poll() {
            self.act(a);
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Send { peer, bytes } => {
                if let Some(p) = self.peers.get(&peer) {
                    if p.tx.try_send(Out::Msg(bytes)).is_err() {
                        tracing::debug!("queue to peer {} full: message dropped", peer.0);
                    }
                }
            }
            Action::Disconnect {
                peer, node, reason, ..
            } => {
                tracing::warn!(node = %node.short(), ?reason, "peer banned");
                if let Some(p) = self.peers.remove(&peer) {
                    let _ = p.tx.try_send(Out::Close(format!("banned: {reason:?}")));
                }
            }
            Action::Penalised {
                node,
                offence,
                points,
            } => tracing::info!(node = %node.short(), ?offence, points, "peer penalised"),
            Action::StoreManifest { id, bytes } => {
                let path = self.manifests_dir.join(format!("{}.mota", id.to_hex()));
                if let Err(e) = write_atomic(&path, &bytes, 0o644) {
                    tracing::error!("{e}");
                }
            }
            Action::StoreIndex { id, bytes } => match ChunkIndex::decode(&bytes) {
                Ok(ix) => {
                    if let Err(e) = self.store.put_index(&ix) {
                        tracing::error!("storing index {}: {e}", id.short());
                    }
                    // Pin it under its release, so `store gc` keeps the
                    // release's chunks.
                    let releases: Vec<Hash> = self
                        .core
                        .releases()
                        .into_iter()
                        .filter(|r| {
                            self.core.manifest(r).is_some_and(|m| {
                                m.components.first().is_some_and(|c| c.chunk_index == id)
                            })
                        })
                        .collect();
                    for r in releases {
                        if let Err(e) = self.store.pin(r, id) {
                            tracing::error!("pinning release {}: {e}", r.short());
                        }
                    }
                }
                Err(e) => tracing::error!("index {}: {e}", id.short()),
            },
            Action::StoreChunk { hash, data } => {
                self.pending_bytes += data.len();
                self.pending.insert(hash, data);
                if self.pending_bytes >= PENDING_MAX_BYTES {
                    self.flush();
                } else if self.pending_bytes >= FLUSH_BYTES {
                    self.flush_in_background();
                }
            }
            Action::ServeChunk {
                peer,
                request,
                hash,
            } => {
                let in_memory = self.pending.get(&hash).or_else(|| {
                    self.flushing
                        .as_ref()
                        .and_then(|(_, batch, _)| batch.get(&hash))
                });
                let data = match in_memory {
                    Some(d) => Ok(d.clone()),
                    None => self.store.get(&hash),
                };
                let now = self.now();
                match data
                    .map_err(|e| e.to_string())
                    .and_then(|d| wire::chunk_response(request, hash, d).map_err(|e| e.to_string()))
                {
                    Ok(bytes) => self.act(Action::Send { peer, bytes }),
                    Err(e) => {
                        tracing::warn!("cannot serve chunk {}: {e}", hash.short());
                        self.core.handle(
                            now,
                            Event::ServeFailed {
                                peer,
                                request,
                                hash,
                            },
                        );
                    }
                }
            }
            Action::InstallReady { release } => self.start_install(release),
            Action::ApplyPatch { release, patch } => self.start_patch(release, patch),
            Action::ReportReceived { bytes } => {
                if let Ok(doc) = SignedDocument::<NodeReport>::decode(&bytes) {
                    let r = doc.unverified_body();
                    tracing::info!(node = %r.node_id.short(), counter = r.counter, "node report");
                }
                if let Some(g) = &mut self.gateway {
                    let seq = g.catalog_sequence;
                    if let Some(m) = &mut g.mqtt {
                        tokio::task::block_in_place(|| m.report(&bytes, seq));
                    }
                }
            }
            Action::ArmTimer { .. } => {}
            Action::Note { text } => tracing::info!("{text}"),
        }
    }

    /// Starts writing the chunks held in memory as one durable batch on a
    /// blocking thread, unless a write is already running (the next batch
    /// then waits for it). The central task keeps serving them from memory
    /// meanwhile; [`Input::Flushed`] reports the commit.
    fn flush_in_background(&mut self) {
        if self.pending.is_empty() || self.flushing.is_some() {
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.pending));
        self.pending_bytes = 0;
        let store = self.store.clone();
        let inputs = self.inputs.clone();
        let writing = batch.clone();
        self.flush_seq += 1;
        let seq = self.flush_seq;
        let task = tokio::task::spawn_blocking(move || {
            let items: Vec<(Hash, &[u8])> =
                writing.iter().map(|(h, d)| (*h, d.as_slice())).collect();
            let result = store
                .put_batch(&items)
                .map(|_| ())
                .map_err(|e| format!("writing {} chunks: {e}", items.len()));
            let _ = inputs.blocking_send(Input::Flushed {
                seq,
                result: result.clone(),
            });
            result
        });
        self.flushing = Some((seq, batch, task));
    }

    /// A background write finished (its `Flushed` input).
    fn flushed(&mut self, seq: u64, result: Result<(), String>) {
        // A write `flush` already waited for and settled reports late.
        if self.flushing.as_ref().is_none_or(|f| f.0 != seq) {
            return;
        }
        if let Some((_, batch, _)) = self.flushing.take() {
            self.settle(&batch, result);
        }
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush_in_background();
        }
    }

    /// On a failed write the core forgets the batch's chunks (they are
    /// fetched again), except those fetched anew since.
    fn settle(&mut self, batch: &Batch, result: Result<(), String>) {
        if let Err(e) = result {
            tracing::error!("{e}");
            let now = self.now();
            for hash in batch.keys() {
                if !self.pending.contains_key(hash) {
                    self.core.handle(now, Event::StoreFailed { hash: *hash });
                }
            }
        }
    }

    /// Writes every chunk held in memory and returns once it is durable:
    /// the same background writes, waited for here.
    fn flush(&mut self) {
        loop {
            if let Some((_, batch, task)) = self.flushing.take() {
                let handle = tokio::runtime::Handle::current();
                let result = tokio::task::block_in_place(|| handle.block_on(task))
                    .unwrap_or_else(|e| Err(format!("chunk writer failed: {e}")));
                self.settle(&batch, result);
            }
            if self.pending.is_empty() {
                return;
            }
            self.flush_in_background();
        }
    }

    /// Applies a patch on a blocking thread once every fetched piece is
    /// durable; [`Input::PatchDone`] reports.
    fn start_patch(&mut self, release: Hash, patch: Hash) {
        self.flush();
        let Some(m) = self.core.manifest(&release) else {
            return;
        };
        let manifest = ReleaseManifest::clone(m);
        tracing::info!(release = %release.short(), patch = %patch.short(), "applying a patch against the active slot");
        let node = self.node.clone();
        let store = self.store.clone();
        let tx = self.inputs.clone();
        let task =
            tokio::task::spawn_blocking(move || patch::apply(&node, &store, &manifest, patch));
        // Awaited apart, so a task that fails still reports: the core
        // defers the patch's chunks until it hears back.
        tokio::spawn(async move {
            let result = task
                .await
                .unwrap_or_else(|e| Err(format!("the patch task failed: {e}")));
            let _ = tx
                .send(Input::PatchDone {
                    release,
                    patch,
                    result,
                })
                .await;
        });
    }

    fn patch_done(&mut self, release: Hash, patch: Hash, result: Result<patch::Applied, String>) {
        let produced = match result {
            Ok(a) => {
                self.patches.pieces_applied += a.pieces_applied;
                self.patches.pieces_failed += a.failures.len() as u64;
                self.patches.chunks_produced += a.chunks_produced;
                for f in &a.failures {
                    tracing::warn!(patch = %patch.short(), "{f}; its chunks are fetched plainly");
                }
                if let Some(f) = a.failures.last() {
                    self.patches.last_error = Some(f.clone());
                }
                tracing::info!(
                    patch = %patch.short(),
                    pieces = a.pieces_applied,
                    chunks = a.chunks_produced,
                    "patch applied"
                );
                // Its blobs are durable (flushed before the apply): pinned
                // under the release, a store GC keeps what peers on the
                // base can fetch from us.
                if let Some(m) = self.core.manifest(&release) {
                    let store = self.store.clone();
                    if let Err(e) =
                        tokio::task::block_in_place(|| patch::pin_held_patches(&store, release, m))
                    {
                        tracing::warn!(patch = %patch.short(), "patch not pinned: {e}");
                    }
                }
                a.held
            }
            Err(e) => {
                tracing::warn!(patch = %patch.short(), "patch not applied: {e}; fetching chunks instead");
                self.patches.last_error = Some(e);
                Vec::new()
            }
        };
        let now = self.now();
        self.core.handle(
            now,
            Event::PatchApplied {
                release,
                patch,
                produced,
            },
        );
    }

    fn start_install(&mut self, release: Hash) {
        self.flush();
        let Some(m) = self.core.manifest(&release) else {
            return;
        };
        let doc = m.to_document();
        self.phase = Phase::Installing;
        tracing::info!(release = %release.short(), version = %m.version, "installing");
        let node = self.node.clone();
        let trust = self.trust.clone();
        let store = self.store.clone();
        let store_dir = self.store_dir.clone();
        let path = self
            .manifests_dir
            .join(format!("{}.mota", release.to_hex()));
        let mode = reboot_mode(&self.node, &self.mesh);
        let tx = self.inputs.clone();
        tokio::task::spawn_blocking(move || {
            let result = install_pipeline(&node, &trust, &path, &doc, store, store_dir, mode);
            let _ = tx.blocking_send(Input::InstallDone { release, result });
        });
    }

    fn install_done(&mut self, release: Hash, result: Result<InstallResult, String>) {
        let now = self.now();
        match result {
            Ok(InstallResult::Confirmed {
                security_version,
                version,
            }) => {
                tracing::info!(release = %release.short(), %version, security_version, "confirmed");
                self.phase = Phase::Idle;
                self.installed_version = Some(version);
                self.core.installed(now, release, security_version);
                self.seed_active_slot();
                self.radio_base_changed();
                self.publish_report(InstallOutcome::Confirmed { release });
            }
            Ok(InstallResult::RebootDue) => {
                tracing::info!(release = %release.short(), "installed: reboot due");
                self.phase = Phase::RebootDue;
            }
            Err(reason) => {
                tracing::error!(release = %release.short(), "install failed: {reason}");
                self.phase = Phase::Failed(reason.clone());
                let reason: String = reason.chars().take(120).collect();
                self.publish_report(InstallOutcome::Failed { release, reason });
            }
        }
    }

    fn publish_report(&mut self, last_install: InstallOutcome) {
        let installed = self.core.running();
        // The confirmed slot, as the device record has it.
        let node = self.node.clone();
        let slot = tokio::task::block_in_place(|| {
            node.open_device().ok().and_then(|mut d| d.record().ok())
        })
        .map_or_else(|| "unknown".to_string(), |r| r.confirmed.name().to_string());
        let report = NodeReport {
            node_id: self.key.id(),
            device_key: self.key.public().clone(),
            hardware: self.node.config.hardware.clone(),
            installed_version: self.installed_version.clone(),
            installed_release: installed.release,
            security_version: installed.security_version.unwrap_or(0),
            slot_state: SlotState::Confirmed { slot },
            last_install,
            counter: u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(0),
            time: Some(now()),
        };
        if let Ok(doc) = SignedDocument::sign(report, &[&self.key]) {
            if let Ok(bytes) = doc.encode() {
                let now = self.now();
                self.core.publish_report(now, bytes);
            }
        }
    }

    fn control(&mut self, req: Request) -> serde_json::Value {
        match req {
            Request::Status => self.status(),
            Request::Shutdown => {
                self.shutdown = true;
                // The connection stays open until this process exits
                // (`control_loop`): `node stop` waits for that.
                json!({"ok": true, "pid": std::process::id()})
            }
            Request::Sync => match self.gateway.as_ref().and_then(|g| g.trigger.as_ref()) {
                Some(t) => {
                    // A full queue means a poll is already due: same effect.
                    let _ = t.try_send(());
                    json!({"ok": true})
                }
                None => json!({"ok": false, "error": "not a gateway (run `meshota gateway run`)"}),
            },
            Request::ImportBundle { .. } => {
                json!({"ok": false, "error": "bundle imports are handled by import_bundle"})
            }
            Request::Want { out } => match self.write_want(&out) {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e}),
            },
            Request::Publish {
                manifest,
                image,
                patch_store,
            } => match self.publish(&manifest, &image, patch_store.as_deref()) {
                Ok(id) => json!({"ok": true, "release": id.to_hex()}),
                Err(e) => json!({"ok": false, "error": e}),
            },
        }
    }

    /// Imports a bundle on a blocking thread (the central task keeps
    /// serving peers meanwhile); [`Daemon::bundle_imported`] announces it.
    fn import_bundle(
        &mut self,
        bundle: PathBuf,
        kem_key: Option<PathBuf>,
        reply: oneshot::Sender<serde_json::Value>,
    ) {
        let node = self.node.clone();
        let trust = self.trust.clone();
        let store = self.store.clone();
        let sv = self.core.running().security_version.unwrap_or(0);
        let tx = self.inputs.clone();
        tracing::info!(bundle = %bundle.display(), "importing a bundle");
        tokio::task::spawn_blocking(move || {
            let result = (|| {
                let key = match &kem_key {
                    Some(p) => Some(crate::cmd::bundle::load_kem_key(p).map_err(|f| f.message)?),
                    None => None,
                };
                crate::cmd::bundle::import_into(
                    &node.config,
                    &trust,
                    sv,
                    key.as_ref(),
                    &*store,
                    &bundle,
                    &mut |_, _, _| {},
                )
                .map_err(|e| e.to_string())
            })();
            let _ = tx.blocking_send(Input::BundleImported { result, reply });
        });
    }

    /// Feeds an import's releases and chunks to the core (which announces
    /// them to peers and, for a wanted release, starts the install).
    fn bundle_imported(
        &mut self,
        result: Result<meshota_sneakernet::Imported, String>,
        reply: oneshot::Sender<serde_json::Value>,
    ) {
        let answer = match result {
            Ok(imported) => {
                let now = self.now();
                for r in &imported.releases {
                    let index = (!r.index.is_empty()).then_some(r.index.as_slice());
                    if let Err(e) = self.core.add_release(now, &r.manifest, index) {
                        tracing::warn!(release = %r.id.short(), "imported but not taken by the mesh: {e}");
                    }
                }
                // Patch indexes the bundle carried (they travel as chunks):
                // the core plans with them as with ones fetched.
                let ids: Vec<Hash> = imported.releases.iter().map(|r| r.id).collect();
                self.load_patch_indexes(now, &ids);
                self.core.add_chunks(now, imported.chunks.iter().copied());
                tracing::info!(
                    releases = imported.releases.len(),
                    new_chunks = imported.new_chunks,
                    "bundle imported"
                );
                crate::cmd::bundle::imported_json(&imported)
            }
            Err(e) => {
                tracing::warn!("bundle rejected: {e}");
                json!({"ok": false, "error": e})
            }
        };
        let _ = reply.send(answer);
    }

    /// Answers a want list found by the USB station: its reports enter
    /// the mesh, and the newest complete release newer than the field's
    /// is written back as `NAME.reply.bundle`, minus what the field holds
    /// (station.rs has the rules).
    fn station_want(&mut self, path: PathBuf) {
        let want = match read_limited(&path, meshota_sneakernet::want::MAX_WANT_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|b| meshota_sneakernet::WantList::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(w) => w,
            Err(e) => {
                station::write_result(&path, &json!({"ok": false, "error": e}));
                return;
            }
        };
        let now = self.now();
        for r in &want.reports {
            self.core.publish_report(now, r.clone());
        }
        let newest = self
            .core
            .releases()
            .into_iter()
            .filter_map(|id| {
                let m = self.core.manifest(&id)?;
                let (have, total) = self.core.progress(&id)?;
                (m.hardware == want.hardware
                    && m.channel == want.channel
                    && m.security_version > want.security_version
                    && have == total)
                    .then_some((m.security_version, m.clone()))
            })
            .max_by_key(|(sv, _)| *sv);
        let Some((_, manifest)) = newest else {
            station::write_result(
                &path,
                &json!({"ok": true, "reports": want.reports.len(), "reply": null,
                        "reason": "no complete release newer than the field's"}),
            );
            return;
        };
        self.flush();
        let store = self.store.clone();
        let trust_file = self.node.config.trust_root.clone();
        tracing::info!(version = %manifest.version, want = %path.display(), "station: writing a reply bundle");
        tokio::task::spawn_blocking(move || {
            let out = station::reply_path(&path);
            let outcome = (|| -> Result<serde_json::Value, String> {
                let trust =
                    read_limited(&trust_file, meshota_manifest::limits::MAX_TRUST_ROOT_BYTES)
                        .map_err(|e| e.to_string())?;
                let spec = meshota_sneakernet::ExportSpec {
                    trust_root: Some(&trust),
                    manifests: vec![manifest.encode().map_err(|e| e.to_string())?],
                    want: Some(&want),
                    recipients: Vec::new(),
                };
                let report = meshota_sneakernet::export(&*store, &spec, &out, &mut |_| {})
                    .map_err(|e| e.to_string())?;
                Ok(json!({
                    "ok": true,
                    "reports": want.reports.len(),
                    "reply": out.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "version": manifest.version,
                    "export": report,
                }))
            })();
            let outcome = outcome.unwrap_or_else(|e| json!({"ok": false, "error": e}));
            station::write_result(&path, &outcome);
        });
    }

    /// Writes what this node and its peers hold, with the reports it
    /// heard, to `out` (atomically).
    fn write_want(&mut self, out: &std::path::Path) -> Result<(), String> {
        let installed = self.core.running();
        let mut releases = Vec::new();
        let mut installed_image = None;
        let mut installed_index = None;
        for id in self.core.releases() {
            let Some(m) = self.core.manifest(&id) else {
                continue;
            };
            if Some(id) == installed.release {
                let c = m
                    .components
                    .iter()
                    .find(|c| c.name == self.node.config.component)
                    .or_else(|| m.components.first());
                installed_image = c.map(|c| c.image_hash);
                installed_index = c.map(|c| c.chunk_index);
            }
            let (Some(c), Some(held)) = (m.components.first(), self.core.mesh_holdings(&id)) else {
                continue;
            };
            let n = u32::try_from(held.len()).unwrap_or(u32::MAX);
            let mut r = meshota_sneakernet::WantRelease::new(id, c.chunk_index, n);
            for i in 0..held.len() {
                if held.get(i) {
                    r.set(i);
                }
            }
            releases.push(r);
        }
        let w = crate::cmd::bundle::want_list(
            &self.node.config,
            crate::cmd::bundle::WantHead {
                node: self.key.id().to_hex(),
                trust_version: self.trust.body().version,
                installed_release: installed.release,
                installed_image,
                installed_index,
                security_version: installed.security_version.unwrap_or(0),
            },
            releases,
            self.core.reports().map(<[u8]>::to_vec).collect(),
        );
        let bytes = w.encode().map_err(|e| e.to_string())?;
        write_atomic(out, &bytes, 0o644).map_err(|e| e.to_string())
    }

    fn publish(
        &mut self,
        manifest: &std::path::Path,
        image: &std::path::Path,
        patch_store: Option<&std::path::Path>,
    ) -> Result<Hash, String> {
        let bytes = read_limited(manifest, MAX_MANIFEST_BYTES).map_err(|e| e.to_string())?;
        let doc = SignedDocument::<ReleaseManifest>::decode(&bytes)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        let file = std::fs::File::open(image).map_err(|e| format!("{}: {e}", image.display()))?;
        let store = self.store.clone();
        let params = doc
            .unverified_body()
            .components
            .first()
            .map_or(DEFAULT_PARAMS, |c| c.chunking);
        let report = tokio::task::block_in_place(|| {
            ingest(
                &*store,
                std::io::BufReader::with_capacity(1 << 20, file),
                &params,
                &mut |_| {},
            )
        })
        .map_err(|e| format!("{}: {e}", image.display()))?;
        let index_bytes = report.index.encode().map_err(|e| e.to_string())?;
        // Patch blobs first, checked against the manifest and the index, so
        // a bad patch store refuses the publish before the release is
        // announced.
        let copied = match patch_store {
            Some(from) => {
                let body = doc.unverified_body().clone();
                let target = &report.index;
                tokio::task::block_in_place(|| patch::import(&store, from, &body, target))?
            }
            None => Vec::new(),
        };
        let now = self.now();
        let id = self
            .core
            .add_release(now, &bytes, Some(&index_bytes))
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        self.store
            .pin(id, report.index_id)
            .map_err(|e| format!("pinning the release: {e}"))?;
        if !copied.is_empty() {
            let body = doc.unverified_body();
            tokio::task::block_in_place(|| patch::pin_held_patches(&store, id, body))
                .map_err(|e| format!("pinning the patches: {e}"))?;
        }
        self.core
            .add_chunks(now, report.index.chunks().iter().map(|c| c.hash));
        for p in copied {
            // Checked by `import` as the core checks it: not expected to fail.
            if let Err(e) = self.core.add_patch_index(now, &p.index) {
                tracing::warn!("patch index not served: {e}");
                continue;
            }
            self.core.add_chunks(now, p.blobs);
        }
        tracing::info!(release = %id.short(), "published");
        Ok(id)
    }

    fn status(&mut self) -> serde_json::Value {
        let radio = self.radio.as_mut().map(radio::RadioDriver::status);
        let stats = *self.core.stats();
        let installed = self.core.running();
        let wanted = self.core.wanted().map(|id| {
            let (have, total) = self.core.progress(&id).unwrap_or((0, 0));
            json!({
                "release": id.to_hex(),
                "version": self.core.manifest(&id).map(|m| m.version.clone()),
                "have_chunks": have,
                "total_chunks": total,
            })
        });
        let node = self.node.clone();
        let slot = tokio::task::block_in_place(|| {
            node.open_device().ok().and_then(|mut d| d.status().ok())
        });
        let store_stats = tokio::task::block_in_place(|| self.store.stats().ok());
        let (booted, slot_state, tries) = match &slot {
            Some(s) => {
                let booted = s.booted.unwrap_or(s.record.confirmed);
                let trial = s.record.pending.as_ref().is_some_and(|p| p.slot == booted);
                (
                    Some(booted.name().to_string()),
                    if trial { "trial" } else { "confirmed" },
                    s.boot.slot(booted).tries_left,
                )
            }
            None => (None, "unknown", None),
        };
        let last_failure = match &self.phase {
            Phase::Failed(r) => Some(r.clone()),
            _ => slot
                .as_ref()
                .and_then(|s| s.record.last_failure.as_ref())
                .map(|f| crate::device::reason_text(&f.reason).1),
        };
        let state = match (&self.phase, &wanted) {
            (Phase::Installing, _) => "installing",
            (Phase::RebootDue, _) => "installing",
            (Phase::Failed(_), _) => "failed",
            (Phase::Idle, Some(_)) => "fetching",
            (Phase::Idle, None) if installed.release.is_some() => "confirmed",
            (Phase::Idle, None) => "idle",
        };
        json!({
            "node_id": self.core.node_id().to_hex(),
            "hardware": self.node.config.hardware,
            "listen": self.listen.to_string(),
            "metrics_listen": self.metrics.map(|a| a.to_string()),
            "peers": self.peers.len(),
            "peer_list": self.peers.values().map(|p| json!({
                "node": p.node.to_hex(), "remote": p.remote.to_string(), "initiated": p.initiated,
            })).collect::<Vec<_>>(),
            "mdns": self.mdns_instance.as_ref().map(|instance| json!({
                "instance": instance,
                "dialling": self.discovered.iter().map(|(name, d)| json!({
                    "instance": name, "node": d.node.to_hex(), "addr": d.addr.to_string(),
                })).collect::<Vec<_>>(),
            })),
            "state": state,
            "wanted": wanted,
            "installed": {
                "release": installed.release.map(|h| h.to_hex()),
                "version": self.installed_version,
                "security_version": installed.security_version,
            },
            "slot": {"booted": booted, "state": slot_state, "tries_left": tries},
            "last_failure": last_failure,
            "releases": self.core.releases().iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
            "store": store_stats.map(|st| json!({
                "chunks": st.chunks,
                "seeded_chunks": st.seeded_chunks,
                "indexes": st.indexes,
            })),
            "bytes_in": stats.bytes_received,
            "bytes_out": stats.bytes_sent,
            "chunk_bytes_fetched": stats.chunk_bytes_fetched,
            "patch_bytes_fetched": stats.patch_bytes_fetched,
            "patch_blobs_fetched": stats.patch_blobs_fetched,
            "patch_pieces_applied": self.patches.pieces_applied,
            "patch_pieces_failed": self.patches.pieces_failed,
            "patch_chunks_produced": self.patches.chunks_produced,
            "patch_fallbacks": stats.patch_fallbacks,
            "patch_last_error": self.patches.last_error,
            "chunks_fetched": stats.chunks_fetched,
            "chunks_served": stats.chunks_served,
            "busy_answers": stats.busy_answers,
            "messages_in": stats.messages_received,
            "messages_out": stats.messages_sent,
            "bans": stats.bans,
            "gateway": self.gateway.as_ref().map(gateway::GatewayState::status),
            "radio": radio,
            "time": UnixTime(now().0).to_string(),
        })
    }
}

/// Install, then (simulated bootloader) reboot and run the after-boot
/// decision. Runs on a blocking thread.
fn install_pipeline(
    node: &Node,
    trust: &Verified<TrustRoot>,
    path: &std::path::Path,
    doc: &SignedDocument<ReleaseManifest>,
    store: Arc<FsStore>,
    store_dir: PathBuf,
    mode: RebootMode,
) -> Result<InstallResult, String> {
    let source = ImageSource::Open(store, store_dir);
    let (_, image) = install_release(node, trust, path, doc, &source).map_err(|f| f.message)?;
    if mode == RebootMode::External {
        return Ok(InstallResult::RebootDue);
    }
    simulated_reboot(node).map_err(|f| f.message)?;
    match after_boot(node).map_err(|f| f.message)? {
        meshota_boot::install::BootOutcome::Confirmed {
            security_counter, ..
        } => Ok(InstallResult::Confirmed {
            security_version: security_counter,
            version: image.version,
        }),
        meshota_boot::install::BootOutcome::RolledBack { failure, reboot } => {
            if reboot {
                let _ = simulated_reboot(node);
                let _ = after_boot(node);
            }
            Err(format!(
                "rolled back: {}",
                crate::device::reason_text(&failure.reason).1
            ))
        }
        other => Err(format!("unexpected state after the reboot: {other:?}")),
    }
}
