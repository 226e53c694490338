//! The medium server (`meshota testnet medium --dir D`): real daemons
//! exchange LoRa frames through one [`meshota_radios::Medium`] over a Unix
//! socket, in wall-clock time times a fixed scale.
//!
//! # What it enforces
//! The simulator's physics, from the same code: airtime from
//! `radios::lora`, log-distance path loss from the positions, the
//! simulator's medium constants (`meshota_sim::lora::scenario::medium_config`:
//! EU868, 14 dBm, exponent 3, capture at 6 dB, 10 % extra loss),
//! half duplex, collisions, and the duty-cycle checker, whose violations
//! it reports. Like the simulator's driver it does listen before talk for
//! every radio (channel activity detection of frames at >= 0 dB margin,
//! then a 0–200 ms random backoff after the frame).
//!
//! # Time
//! Virtual time is `wall time since start × time_scale` (µs); airtime,
//! frame ends and the duty-cycle checker all run on it, and a daemon's
//! radio driver runs its link on the same scale (it learns it from the
//! Welcome), so Trickle, backoffs and the duty-cycle budget are scaled
//! alike. A frame a node sends while its previous one is still on air
//! (its clock and ours differ by scheduling jitter) waits in its queue
//! until that frame ends; at most [`TX_QUEUE_MAX`] wait, further ones are
//! dropped and counted.
//!
//! # Files
//! `D/medium.json` ([`MediumSpec`], written by `testnet up --lora`),
//! `D/medium.sock`, and `D/medium-status.json` ([`MediumStatus`], written
//! every [`STATUS_INTERVAL`] and at exit).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_radios::{Channel, Loss, Medium, Micros, SeededRng};
use meshota_sim::lora::run::{CAD_BACKOFF_US, CAD_MARGIN_DB};
use meshota_sim::lora::scenario::{margin_db, medium_config};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::wire::{Msg, ReadError, read_msg};
use crate::failure::{AtPath, CmdResult, Failure};

/// The spec file in a testnet directory.
pub(crate) const SPEC_FILE: &str = "medium.json";
/// The status file in a testnet directory.
pub(crate) const STATUS_FILE: &str = "medium-status.json";
/// The socket in a testnet directory.
pub(crate) const SOCKET_FILE: &str = "medium.sock";
/// Frames one node may have waiting for the air.
pub(crate) const TX_QUEUE_MAX: usize = 4;
/// Messages queued toward one client before further ones are dropped.
const CLIENT_QUEUE: usize = 256;
/// How often the status file is written.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// Largest time scale.
pub(crate) const TIME_SCALE_MAX: u32 = 100;
/// Largest number of nodes on one medium.
pub(crate) const NODES_MAX: usize = 1024;
/// Largest spec file read.
const SPEC_BYTES_MAX: usize = 1 << 20;

/// What a medium server serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MediumSpec {
    /// Position (m) of each node, by index.
    pub(crate) positions: Vec<(f64, f64)>,
    /// Seed of losses and backoffs.
    pub(crate) seed: u64,
    /// Virtual µs per wall-clock µs (1..=[`TIME_SCALE_MAX`]).
    pub(crate) time_scale: u32,
}

/// What the status file says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MediumStatus {
    /// The server's pid.
    pub(crate) pid: u32,
    /// Nodes on the medium.
    pub(crate) nodes: usize,
    /// Which are connected now.
    pub(crate) connected: Vec<bool>,
    /// The time scale.
    pub(crate) time_scale: u32,
    /// Virtual seconds since the server started.
    pub(crate) virtual_seconds: f64,
    /// Frames put on the air.
    pub(crate) frames: u64,
    /// Receptions delivered intact.
    pub(crate) delivered: u64,
    /// Receptions lost to collisions, half duplex, noise.
    pub(crate) losses: [u64; 3],
    /// Transmissions deferred by listen before talk.
    pub(crate) cad_deferrals: u64,
    /// Frames dropped because the node's queue was full.
    pub(crate) queue_drops: u64,
    /// Frames the medium refused (none from a well-behaved node).
    pub(crate) refused: u64,
    /// Clients dropped for a protocol error.
    pub(crate) protocol_errors: u64,
    /// Airtime per node (µs, virtual).
    pub(crate) airtime_us: Vec<u64>,
    /// Duty-cycle violations the medium's checker saw (must be 0).
    pub(crate) duty_cycle_violations: usize,
    /// The first few, described.
    pub(crate) violations: Vec<String>,
}

impl MediumStatus {
    /// Reads `D/medium-status.json`, if the testnet has one.
    pub(crate) fn load(dir: &Path) -> Option<Self> {
        let bytes = read_limited(&dir.join(STATUS_FILE), SPEC_BYTES_MAX).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

impl MediumSpec {
    /// Reads and checks `D/medium.json`.
    ///
    /// # Errors
    /// Unreadable, not this format, no nodes, bad scale.
    pub(crate) fn load(dir: &Path) -> CmdResult<Self> {
        let path = dir.join(SPEC_FILE);
        let bytes = read_limited(&path, SPEC_BYTES_MAX)?;
        let s: Self = serde_json::from_slice(&bytes).at(&path)?;
        if s.positions.is_empty() || s.positions.len() > NODES_MAX {
            return Err(Failure::file(
                &path,
                format!("{} nodes; 1 to {NODES_MAX} allowed", s.positions.len()),
            ));
        }
        if !(1..=TIME_SCALE_MAX).contains(&s.time_scale) {
            return Err(Failure::file(
                &path,
                format!("time_scale {} is not 1 to {TIME_SCALE_MAX}", s.time_scale),
            ));
        }
        if s.positions
            .iter()
            .any(|p| !p.0.is_finite() || !p.1.is_finite())
        {
            return Err(Failure::file(&path, "a position is not a finite number"));
        }
        Ok(s)
    }

    /// Writes `D/medium.json`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn save(&self, dir: &Path) -> CmdResult {
        let path = dir.join(SPEC_FILE);
        let text = serde_json::to_vec_pretty(self).at(&path)?;
        write_atomic(&path, &text, 0o644)?;
        Ok(())
    }
}

/// What a client task tells the central task.
enum Event {
    Hello {
        node: u16,
        conn: u64,
        out: mpsc::Sender<Msg>,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    Transmit {
        node: usize,
        channel: Channel,
        frame: Vec<u8>,
    },
    Gone {
        node: usize,
        conn: u64,
        protocol_error: bool,
    },
}

struct Server {
    spec: MediumSpec,
    medium: Medium,
    start: Instant,
    rng: SeededRng,
    clients: Vec<Option<(u64, mpsc::Sender<Msg>)>>,
    queues: Vec<VecDeque<(Channel, Vec<u8>)>>,
    not_before: Vec<u64>,
    own_busy: Vec<u64>,
    /// Frames on air: sender, end, channel.
    on_air: Vec<(usize, u64, Channel)>,
    status: MediumStatus,
}

impl Server {
    fn vnow(&self) -> u64 {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        us.saturating_mul(u64::from(self.spec.time_scale))
    }

    /// Whether node `i`'s channel activity detection sees `j`'s frames.
    fn senses(&self, j: usize, i: usize, channel: &Channel) -> bool {
        let (a, b) = (self.spec.positions[j], self.spec.positions[i]);
        let d = (a.0 - b.0).hypot(a.1 - b.1);
        i != j && margin_db(&medium_config(), channel.params, d) >= CAD_MARGIN_DB
    }

    /// Resolves ended frames (delivering what arrived intact) and starts
    /// every queued frame whose sender is free and hears a clear channel.
    fn pump(&mut self) {
        let now = self.vnow();
        match self.medium.advance(Micros(now)) {
            Ok(receptions) => {
                for r in receptions {
                    match r.outcome {
                        Ok(frame) => {
                            self.status.delivered += 1;
                            if let Some((_, out)) = self.clients.get(r.to).and_then(Option::as_ref)
                            {
                                #[allow(clippy::cast_possible_truncation)]
                                let rssi_dbm = r.rssi_dbm.round().clamp(-32768.0, 32767.0) as i16;
                                // A full queue drops the frame: the client
                                // is not reading, as a radio that missed it.
                                let _ = out.try_send(Msg::Receive { rssi_dbm, frame });
                            }
                        }
                        Err(Loss::Collision) => self.status.losses[0] += 1,
                        Err(Loss::HalfDuplex) => self.status.losses[1] += 1,
                        Err(Loss::Noise) => self.status.losses[2] += 1,
                    }
                }
            }
            Err(e) => tracing::error!("medium: {e}"),
        }
        self.on_air.retain(|(_, end, _)| *end > now);
        for i in 0..self.queues.len() {
            let Some((channel, _)) = self.queues[i].front() else {
                continue;
            };
            let channel = *channel;
            if now < self.not_before[i] || now < self.own_busy[i] {
                continue;
            }
            let busy = self
                .on_air
                .iter()
                .filter(|(j, end, c)| {
                    *end > now && c.freq_hz == channel.freq_hz && self.senses(*j, i, c)
                })
                .map(|(_, end, _)| *end)
                .max();
            if let Some(end) = busy {
                self.not_before[i] = end + self.rng.next_u64() % CAD_BACKOFF_US;
                self.status.cad_deferrals += 1;
                continue;
            }
            let Some((channel, frame)) = self.queues[i].pop_front() else {
                continue;
            };
            match self.medium.transmit(Micros(now), i, channel, frame) {
                Ok(sent) => {
                    self.status.frames += 1;
                    self.own_busy[i] = sent.end.0;
                    self.on_air.push((i, sent.end.0, channel));
                }
                Err(e) => {
                    self.status.refused += 1;
                    tracing::warn!(node = i, "frame refused by the medium: {e}");
                }
            }
        }
    }

    /// The next virtual time something is due.
    fn next_wake(&self) -> Option<u64> {
        let mut t = self.medium.next_event().map(|m| m.0);
        for (i, q) in self.queues.iter().enumerate() {
            if !q.is_empty() {
                let at = self.not_before[i].max(self.own_busy[i]);
                t = Some(t.map_or(at, |x| x.min(at)));
            }
        }
        t
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Hello {
                node,
                conn,
                out,
                reply,
            } => {
                let i = usize::from(node);
                let answer = match self.clients.get_mut(i) {
                    None => Err(format!(
                        "node {node} is not on the medium ({} nodes)",
                        self.spec.positions.len()
                    )),
                    Some(Some(_)) => Err(format!("node {node} is already connected")),
                    Some(slot) => {
                        *slot = Some((conn, out));
                        tracing::info!(node, "connected");
                        Ok(self.spec.time_scale)
                    }
                };
                let _ = reply.send(answer);
            }
            Event::Transmit {
                node,
                channel,
                frame,
            } => {
                if let Some(q) = self.queues.get_mut(node) {
                    if q.len() >= TX_QUEUE_MAX {
                        self.status.queue_drops += 1;
                    } else {
                        q.push_back((channel, frame));
                    }
                }
            }
            Event::Gone {
                node,
                conn,
                protocol_error,
            } => {
                if protocol_error {
                    self.status.protocol_errors += 1;
                }
                if let Some(slot) = self.clients.get_mut(node) {
                    if slot.as_ref().is_some_and(|(c, _)| *c == conn) {
                        *slot = None;
                        if let Some(q) = self.queues.get_mut(node) {
                            q.clear();
                        }
                        tracing::info!(node, "disconnected");
                    }
                }
            }
        }
    }

    fn write_status(&mut self, path: &Path) {
        let n = self.spec.positions.len();
        self.status.connected = self.clients.iter().map(Option::is_some).collect();
        self.status.virtual_seconds = self.vnow() as f64 / 1e6;
        self.status.airtime_us = (0..n).map(|i| self.medium.airtime_us(i)).collect();
        let v = self.medium.duty_cycle_violations();
        self.status.duty_cycle_violations = v.len();
        self.status.violations = v.iter().take(10).map(|x| format!("{x:?}")).collect();
        match serde_json::to_vec_pretty(&self.status) {
            Ok(text) => {
                if let Err(e) = replace_status(path, &text) {
                    tracing::warn!("medium status {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!("medium status: {e}"),
        }
    }
}

/// Replaces the status file whole (a temporary file renamed over it, so a
/// reader sees the old or the new text). Not fsynced: the file is a view
/// rewritten every half second, and an fsync on the medium's only thread
/// would stall every node's frames behind the disk.
fn replace_status(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// One client connection: hello, then transmits until it goes.
async fn client(stream: UnixStream, conn: u64, events: mpsc::Sender<Event>) {
    let (mut r, mut w) = stream.into_split();
    let refuse = |reason: String| Msg::Refused { reason }.encode();
    let node = match read_msg(&mut r).await {
        Ok(Msg::Hello { node }) => node,
        Ok(_) => {
            let _ = w
                .write_all(&refuse("the first message must be a hello".into()))
                .await;
            return;
        }
        Err(ReadError::Wire(e)) => {
            let _ = w.write_all(&refuse(e.to_string())).await;
            return;
        }
        Err(ReadError::Io(_)) => return,
    };
    let (out, mut out_rx) = mpsc::channel::<Msg>(CLIENT_QUEUE);
    let (reply, answer) = oneshot::channel();
    if events
        .send(Event::Hello {
            node,
            conn,
            out,
            reply,
        })
        .await
        .is_err()
    {
        return;
    }
    match answer.await {
        Ok(Ok(time_scale)) => {
            if w.write_all(&Msg::Welcome { time_scale }.encode())
                .await
                .is_err()
            {
                return;
            }
        }
        Ok(Err(reason)) => {
            let _ = w.write_all(&refuse(reason)).await;
            return;
        }
        Err(_) => return,
    }
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if w.write_all(&m.encode()).await.is_err() {
                break;
            }
        }
    });
    let node = usize::from(node);
    let protocol_error = loop {
        match read_msg(&mut r).await {
            Ok(Msg::Transmit { channel, frame }) => {
                if events
                    .send(Event::Transmit {
                        node,
                        channel,
                        frame,
                    })
                    .await
                    .is_err()
                {
                    break false;
                }
            }
            Ok(other) => {
                tracing::warn!(node, "client sent {other:?}: dropped");
                break true;
            }
            Err(ReadError::Wire(e)) => {
                tracing::warn!(node, "client sent a bad message ({e}): dropped");
                break true;
            }
            Err(ReadError::Io(_)) => break false,
        }
    };
    writer.abort();
    let _ = events
        .send(Event::Gone {
            node,
            conn,
            protocol_error,
        })
        .await;
}

/// Runs the medium server of testnet `dir` until SIGTERM or SIGINT.
///
/// # Errors
/// A bad spec, or the socket cannot be bound.
pub(crate) fn serve(dir: &Path) -> CmdResult {
    let spec = MediumSpec::load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::rejected(format!("cannot start the runtime: {e}")))?;
    rt.block_on(serve_async(dir.to_path_buf(), spec))
}

async fn serve_async(dir: PathBuf, spec: MediumSpec) -> CmdResult {
    let sock = dir.join(SOCKET_FILE);
    let status_path = dir.join(STATUS_FILE);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).at(&sock)?;
    let n = spec.positions.len();
    let medium = Medium::with_positions(medium_config(), &spec.positions, spec.seed);
    let mut s = Server {
        rng: SeededRng::new(spec.seed ^ 0xcad),
        medium,
        start: Instant::now(),
        clients: (0..n).map(|_| None).collect(),
        queues: (0..n).map(|_| VecDeque::new()).collect(),
        not_before: vec![0; n],
        own_busy: vec![0; n],
        on_air: Vec::new(),
        status: MediumStatus {
            pid: std::process::id(),
            nodes: n,
            time_scale: spec.time_scale,
            ..MediumStatus::default()
        },
        spec,
    };
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let accept_tx = tx.clone();
    tokio::spawn(async move {
        let mut conn = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    conn += 1;
                    tokio::spawn(client(stream, conn, accept_tx.clone()));
                }
                Err(e) => {
                    tracing::warn!("medium accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    drop(tx);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::rejected(e.to_string()))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::rejected(e.to_string()))?;
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    tracing::info!(nodes = n, time_scale = s.spec.time_scale, socket = %sock.display(), "medium server running");
    println!("meshota medium: {n} nodes on {}", sock.display());
    loop {
        s.pump();
        let scale = u64::from(s.spec.time_scale);
        let wake = s
            .next_wake()
            .map(|v| s.start + Duration::from_micros(v.div_ceil(scale)));
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = rx.recv() => match e {
                Some(e) => s.event(e),
                None => break,
            },
            () = sleep => {}
            _ = status_tick.tick() => s.write_status(&status_path),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    s.write_status(&status_path);
    let _ = std::fs::remove_file(&sock);
    tracing::info!("medium server stopped");
    Ok(())
}
