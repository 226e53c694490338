//! The daemon's radio driver: one sans-IO [`RadioLink`] fed from a radio
//! (the medium server's socket, or an SX126x) and the daemon's clock, and
//! the hand-over of releases between it and the QUIC core.
//!
//! # Driving the link
//! Received frames arrive as `Input::RadioFrame` and go to
//! [`RadioLink::handle_frame`]; after every turn of the daemon's loop
//! [`Daemon::radio_step`] runs the link's due timers, sends what
//! [`RadioLink::poll_transmit`] returns (already charged to the link's
//! duty-cycle budget) and acts on its events. The link's clock is the
//! daemon's monotonic clock in µs times the medium's time scale (1 on
//! real hardware).
//!
//! # Mixed QUIC + LoRa
//! The core is the node's one store of releases. A release the radio
//! completed (every chunk decoded and checked against the signed index) is
//! written to the chunk store and handed to the core (`add_release`,
//! `add_chunks`): the core verifies the manifest again, announces it to
//! QUIC peers, and, when it is the node's wanted release, emits
//! `InstallReady`, so the same install pipeline runs as for a release
//! fetched over QUIC. The other way, the newest release the core holds
//! whole (published here, fetched over QUIC, imported from a bundle) is
//! given to the link with [`RadioLink::add_release`], which verifies the
//! bundle and every chunk again, and the link announces and serves it.
//!
//! # Large releases
//! A release of more than `[radio] whole_release_bytes_max` of image
//! (default 1 MiB) crosses the radio by patch only, and its chunks stay
//! in the store: the link gets a bundle whose index is a delta against the base of the first patch the
//! manifest lists ([`bundle::encode_delta`]), the chunks that patch's
//! pieces produce (to serve plainly when a neighbour's piece fails), and
//! takes every other chunk as held in the store
//! ([`RadioLink::add_stored_release`]). A node fetching it hands the link
//! its installed release's chunk index ([`RadioLink::set_base_index`]) and
//! the ids of the chunks its store holds ([`RadioLink::add_stored_chunks`]),
//! and on completion writes only the chunks the link holds in memory. A
//! large release without a patch stays off the radio; one whose first
//! listed patch (index and every piece) or base chunk index the store
//! lacks waits (`radio.to_radio_deferred`) and is tried again every
//! [`HAND_OVER_RETRY`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use meshota_blobstore::patch::PatchIndex;
use meshota_blobstore::{ChunkIndex, ChunkStore};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::{Hash, PatchRef};
use meshota_mesh::radio::{LinkEvent, PieceJob, RadioLink, bundle};
use meshota_radios::{Micros, ShortId};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Daemon, Input};
use crate::config::{RadioBackend, RadioConfig};
use crate::radio::wire::{Msg, ReadError, read_msg};
use crate::radio::{RadioSettings, RadioSetupError};

/// How long a release that cannot be handed to the link yet (a large
/// release whose patch or base index the store lacks) waits before the
/// next try.
const HAND_OVER_RETRY: Duration = Duration::from_secs(10);
/// Salts a derived short id is tried with before the daemon gives up and
/// leaves the clash to the operator.
const SHORT_ID_SALTS: u8 = 8;
/// The file in the data directory that keeps the salt of a derived short
/// id moved after a clash (decimal), so a restart keeps the id.
const SHORT_ID_SALT_FILE: &str = "radio-short-id-salt";

/// Derives the short id again with the salt a former clash left
/// ([`SHORT_ID_SALT_FILE`]), when the id is derived. A missing, unreadable
/// or out-of-range file leaves salt 0.
pub(super) fn restore_short_id_salt(settings: &mut RadioSettings, data_dir: &std::path::Path) {
    let Some((key, salt)) = &mut settings.derived_short_id else {
        return;
    };
    let saved = read_limited(&data_dir.join(SHORT_ID_SALT_FILE), 8)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u8>().ok())
        .filter(|s| *s < SHORT_ID_SALTS);
    if let Some(s) = saved {
        *salt = s;
        settings.short_id = ShortId::derive(key, s);
    }
}
/// Frames queued toward the radio before further ones are dropped (the
/// link sends one at a time; its retries recover a drop).
const RADIO_TX_QUEUE: usize = 16;
/// How long the medium server may take to answer the hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Own transmissions remembered for the last-hour airtime in the status.
const SENT_RECORDS_MAX: usize = 20_000;

/// The radio side of a daemon.
pub(super) struct RadioDriver {
    pub(super) link: RadioLink,
    settings: RadioSettings,
    backend: RadioBackend,
    start: Instant,
    time_scale: u64,
    tx: mpsc::Sender<Vec<u8>>,
    /// Releases the radio completed and handed to the core.
    to_core: BTreeSet<Hash>,
    /// Releases the core held whole and handed to the link (or tried to).
    to_radio: BTreeSet<Hash>,
    /// Releases the core holds whole that the link cannot take yet (a
    /// large release whose first listed patch or its base's chunk index
    /// the store lacks), each with the time of its next try.
    deferred: BTreeMap<Hash, Instant>,
    /// Own frames: (when, airtime µs), the last hour's.
    sent: VecDeque<(Micros, u64)>,
    tx_dropped: u64,
    down: Option<String>,
    /// Times the derived short id was derived again after a clash.
    short_id_changes: u64,
}

/// What a connected radio gives the driver: where frames go, and the
/// time scale.
pub(super) struct Transport {
    tx: mpsc::Sender<Vec<u8>>,
    time_scale: u32,
}

/// Connects the radio `cfg` names: received frames become
/// `Input::RadioFrame` on `inputs`.
///
/// # Errors
/// The backend's [`RadioSetupError`]: an unreachable or refusing medium
/// server, a build without `sx126x`, a radio that does not initialise.
pub(super) async fn connect(
    cfg: &RadioConfig,
    settings: &RadioSettings,
    inputs: mpsc::Sender<Input>,
) -> Result<Transport, RadioSetupError> {
    match cfg.backend {
        RadioBackend::Medium => {
            // The config reader refuses `medium` without its table.
            let Some(m) = cfg.medium.as_ref() else {
                return Err(RadioSetupError::MediumProtocol {
                    path: std::path::PathBuf::from("[radio.medium]"),
                    reason: "the table is missing".into(),
                });
            };
            connect_medium(&m.socket, m.node, settings, inputs).await
        }
        RadioBackend::Sx126x => connect_sx126x(cfg, settings, inputs),
    }
}

async fn connect_medium(
    path: &std::path::Path,
    node: u16,
    settings: &RadioSettings,
    inputs: mpsc::Sender<Input>,
) -> Result<Transport, RadioSetupError> {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|source| RadioSetupError::MediumSocket {
            path: path.to_path_buf(),
            source,
        })?;
    let (mut r, mut w) = stream.into_split();
    let protocol = |reason: String| RadioSetupError::MediumProtocol {
        path: path.to_path_buf(),
        reason,
    };
    w.write_all(&Msg::Hello { node }.encode())
        .await
        .map_err(|e| protocol(format!("sending hello: {e}")))?;
    let answer = tokio::time::timeout(HELLO_TIMEOUT, read_msg(&mut r))
        .await
        .map_err(|_| protocol(format!("no answer within {} s", HELLO_TIMEOUT.as_secs())))?;
    let time_scale = match answer {
        Ok(Msg::Welcome { time_scale }) => time_scale,
        Ok(Msg::Refused { reason }) => {
            return Err(RadioSetupError::MediumRefused {
                path: path.to_path_buf(),
                node,
                reason,
            });
        }
        Ok(other) => return Err(protocol(format!("answered {other:?}, not a welcome"))),
        Err(e) => return Err(protocol(e.to_string())),
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(RADIO_TX_QUEUE);
    let channel = settings.channel;
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if w.write_all(&Msg::Transmit { channel, frame }.encode())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let why = loop {
            match read_msg(&mut r).await {
                Ok(Msg::Receive { frame, .. }) => {
                    if inputs.send(Input::RadioFrame(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(Msg::Refused { reason }) => break format!("medium server refused: {reason}"),
                Ok(other) => break format!("medium server sent {other:?}"),
                Err(ReadError::Wire(e)) => break format!("medium server: {e}"),
                Err(ReadError::Io(e)) => break format!("medium socket: {e}"),
            }
        };
        let _ = inputs.send(Input::RadioDown(why)).await;
    });
    Ok(Transport { tx, time_scale })
}

#[cfg(not(feature = "sx126x"))]
fn connect_sx126x(
    _cfg: &RadioConfig,
    _settings: &RadioSettings,
    _inputs: mpsc::Sender<Input>,
) -> Result<Transport, RadioSetupError> {
    Err(RadioSetupError::Sx126xNotBuilt)
}

/// The SX126x on a blocking thread: it sends what the link hands it, and
/// between frames listens (single receive; a frame to send waits for the
/// receive to end, at most the adapters' 10 s edge wait).
#[cfg(feature = "sx126x")]
fn connect_sx126x(
    cfg: &RadioConfig,
    settings: &RadioSettings,
    inputs: mpsc::Sender<Input>,
) -> Result<Transport, RadioSetupError> {
    use meshota_radios::sx126x::{HatConfig, open};
    let Some(hw) = cfg.sx126x.as_ref() else {
        return Err(RadioSetupError::Hardware("no [radio.sx126x] table".into()));
    };
    let hat = HatConfig {
        spi_path: hw.spidev.clone(),
        spi_speed_hz: hw.spi_speed_hz,
        gpio_chip: hw.gpio_chip.clone(),
        nss_line: hw.nss_line,
        reset_line: hw.reset_line,
        busy_line: hw.busy_line,
        dio1_line: hw.dio1_line,
        tcxo_1v8: hw.tcxo_1v8,
        use_dcdc: hw.use_dcdc,
        tx_power_dbm: hw.tx_power_dbm,
    };
    let mut radio = open(&hat).map_err(|e| RadioSetupError::Hardware(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(RADIO_TX_QUEUE);
    let channel = settings.channel;
    std::thread::Builder::new()
        .name("sx126x".into())
        .spawn(move || {
            let mut buf = [0u8; 255];
            loop {
                match rx.try_recv() {
                    Ok(frame) => {
                        let sent =
                            meshota_radios::sx126x::block_on(radio.transmit(&channel, &frame));
                        if let Err(e) = sent {
                            tracing::warn!("sx126x transmit: {e}");
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                match meshota_radios::sx126x::block_on(radio.receive(&channel, &mut buf)) {
                    Ok((len, _rssi)) => {
                        let frame = buf[..len.min(buf.len())].to_vec();
                        if inputs.blocking_send(Input::RadioFrame(frame)).is_err() {
                            return;
                        }
                    }
                    // A receive timeout is an error of the adapter: listen again.
                    Err(e) => tracing::debug!("sx126x receive: {e}"),
                }
            }
        })
        .map_err(|e| RadioSetupError::Hardware(format!("cannot start the radio thread: {e}")))?;
    Ok(Transport { tx, time_scale: 1 })
}

impl RadioDriver {
    /// A link for a node running `installed`, over `transport`.
    ///
    /// # Errors
    /// [`RadioSetupError::Link`] when the link refuses the settings.
    pub(super) fn new(
        settings: RadioSettings,
        backend: RadioBackend,
        transport: Transport,
        trust: meshota_manifest::Verified<meshota_manifest::TrustRoot>,
        installed: (Hash, u64),
        hardware: String,
        expiration: meshota_manifest::Expiration,
    ) -> Result<Self, RadioSetupError> {
        let config = meshota_mesh::radio::RadioConfig {
            mesh_key: settings.mesh_key,
            short_id: settings.short_id,
            channel: settings.channel,
            region: settings.region,
            frame_len: settings.frame_len,
            trickle: meshota_mesh::TrickleConfig::LORA,
            timing: meshota_mesh::radio::RadioTiming::LORA,
            seed: settings.seed,
            hardware: Some(hardware),
            expiration,
            relay: settings.relay,
        };
        let start = Instant::now();
        let link = RadioLink::new(config, trust, installed, Micros(0))?;
        Ok(Self {
            link,
            settings,
            backend,
            start,
            time_scale: u64::from(transport.time_scale.max(1)),
            tx: transport.tx,
            to_core: BTreeSet::new(),
            to_radio: BTreeSet::new(),
            deferred: BTreeMap::new(),
            sent: VecDeque::new(),
            tx_dropped: 0,
            down: None,
            short_id_changes: 0,
        })
    }

    /// The link's clock: daemon time (µs) times the time scale.
    pub(super) fn now(&self) -> Micros {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Micros(us.saturating_mul(self.time_scale))
    }

    /// When the link next needs a step, on the daemon's clock.
    pub(super) fn deadline(&self) -> Instant {
        let at = self.link.poll_timeout().0.div_ceil(self.time_scale);
        self.start + Duration::from_micros(at)
    }

    /// The radio's connection ended: the link keeps its state, sends
    /// nothing more, and the status says why.
    pub(super) fn transport_down(&mut self, why: String) {
        tracing::error!("radio down: {why}");
        self.down = Some(why);
    }

    fn airtime_last_hour(&mut self, now: Micros) -> u64 {
        while self
            .sent
            .front()
            .is_some_and(|(t, _)| now.since(*t) > Micros::HOUR)
        {
            self.sent.pop_front();
        }
        self.sent.iter().map(|(_, a)| a).sum()
    }

    /// The `radio` object of the status.
    pub(super) fn status(&mut self) -> serde_json::Value {
        let now = self.now();
        let last_hour = self.airtime_last_hour(now);
        let s = self.link.stats().clone();
        let carried = self.link.release();
        let (have, total) = self.link.chunk_progress().unwrap_or((0, 0));
        let p = self.settings.channel.params;
        json!({
            "backend": match self.backend { RadioBackend::Medium => "medium", RadioBackend::Sx126x => "sx126x" },
            "connected": self.down.is_none(),
            "down_reason": self.down,
            "short_id": format!("{:04x}", self.settings.short_id.0),
            "short_id_changes": self.short_id_changes,
            "relay": self.settings.relay,
            "region": self.settings.region.name,
            "sub_band": self.settings.sub_band,
            "frequency_hz": self.settings.channel.freq_hz,
            "sf": p.sf.number(),
            "bw_khz": p.bw.hz() / 1000,
            "frame_len": self.settings.frame_len,
            "time_scale": self.time_scale,
            "neighbours": self.link.neighbours().map(|n| format!("{:04x}", n.0)).collect::<Vec<_>>(),
            "neighbour_links": self.link.neighbour_links().map(|n| json!({
                "short_id": format!("{:04x}", n.id.0),
                "heard_percent": n.heard_percent,
                "strong": n.strong,
                "leaf": n.leaf,
            })).collect::<Vec<_>>(),
            "release": carried.map(|h| h.to_hex()),
            "complete": self.link.is_complete(),
            "have_chunks": have,
            "total_chunks": total,
            "chunks_in_memory": self.link.held_chunks().count(),
            "index_delta": self.link.bundle().is_some_and(|b| b.is_delta()),
            "whole_release_bytes_max": self.settings.whole_release_bytes_max,
            "airtime_us": s.airtime_us,
            "airtime_last_hour_us": last_hour,
            "budget_per_hour_us": self.settings.budget_per_hour_us,
            "frames_heard": s.frames_heard,
            "frames_bad_mac": s.frames_bad_mac,
            "frames_malformed": s.frames_malformed,
            "frames_own_id": s.frames_own_id,
            "clash_notices_sent": s.clash_notices_sent,
            "clash_notices_heard": s.clash_notices_heard,
            "frames_sent": s.frames_sent,
            "frames_dropped": self.tx_dropped,
            "announces": s.sent_announces,
            "requests": s.sent_requests,
            "pieces": s.sent_pieces,
            "symbols": s.sent_symbols,
            "budget_waits": s.budget_waits,
            "bundle_failures": s.bundle_failures,
            "chunk_failures": s.chunk_failures,
            "chunks_decoded": s.chunks_decoded,
            "chunks_supplied": s.chunks_supplied,
            "chunks_from_pieces": s.chunks_from_pieces,
            "pieces_applied": s.pieces_applied,
            "piece_failures": s.piece_failures,
            "to_core": self.to_core.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            "to_radio": self.to_radio.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            "to_radio_deferred": self.deferred.keys().map(Hash::to_hex).collect::<Vec<_>>(),
            "state": self.link.describe(),
        })
    }
}

impl Daemon {
    /// A frame the radio received.
    pub(super) fn radio_frame(&mut self, frame: &[u8]) {
        if let Some(r) = &mut self.radio {
            let now = r.now();
            r.link.handle_frame(now, frame);
        }
    }

    /// Runs the link's due timers, sends its frames, and acts on its
    /// events; then offers the core's newest whole release to it.
    pub(super) fn radio_step(&mut self) {
        let mut events = Vec::new();
        {
            let Some(r) = &mut self.radio else {
                return;
            };
            let now = r.now();
            if now >= r.link.poll_timeout() {
                r.link.handle_timeout(now);
            }
            if r.down.is_none() {
                while let Some(frame) = r.link.poll_transmit(now) {
                    let airtime = r
                        .settings
                        .channel
                        .params
                        .time_on_air_us(frame.len())
                        .unwrap_or(0);
                    if r.sent.len() >= SENT_RECORDS_MAX {
                        r.sent.pop_front();
                    }
                    r.sent.push_back((now, airtime));
                    if r.tx.try_send(frame).is_err() {
                        r.tx_dropped += 1;
                    }
                }
            }
            while let Some(e) = r.link.poll_event() {
                events.push(e);
            }
        }
        for e in events {
            match e {
                LinkEvent::ManifestVerified { release } => {
                    tracing::info!(release = %release.short(), "radio: bundle verified");
                    self.radio_supply_chunks();
                }
                LinkEvent::ApplyPiece(job) => self.radio_apply_piece(job),
                LinkEvent::BundleRejected { release, error } => {
                    tracing::warn!(release = %release.short(), "radio: bundle rejected: {error}");
                }
                LinkEvent::ReleaseComplete { release } => self.radio_to_core(release),
                LinkEvent::ShortIdShared { short_id } => self.radio_short_id_shared(short_id),
                other => tracing::debug!("radio: {other:?}"),
            }
        }
        self.core_to_radio();
    }

    /// A neighbour uses our short id. A derived id is derived again with
    /// the next salt and given to the link (at most [`SHORT_ID_SALTS`]
    /// times); a configured one is left to the operator.
    fn radio_short_id_shared(&mut self, shared: ShortId) {
        let Some(r) = &mut self.radio else {
            return;
        };
        let next = match &mut r.settings.derived_short_id {
            Some((key, salt)) if *salt + 1 < SHORT_ID_SALTS => {
                *salt += 1;
                ShortId::derive(key, *salt)
            }
            Some(_) => {
                tracing::warn!(
                    "radio: a neighbour also uses short id {:04x}, and {SHORT_ID_SALTS} derived ids have clashed: set `short_id` in the [radio] table",
                    shared.0
                );
                return;
            }
            None => {
                tracing::warn!(
                    "radio: a neighbour also uses short id {:04x}: neighbours take the two for one node and this node drops its frames; set another `short_id` in the [radio] table of one of them",
                    shared.0
                );
                return;
            }
        };
        r.settings.short_id = next;
        r.link.change_short_id(next);
        r.short_id_changes += 1;
        let salt = r.settings.derived_short_id.as_ref().map_or(0, |(_, s)| *s);
        let path = self.node.config.data_dir.join(SHORT_ID_SALT_FILE);
        if let Err(e) = write_atomic(&path, salt.to_string().as_bytes(), 0o644) {
            tracing::warn!(
                "radio: the new short id's salt not saved ({e}): after a restart the node clashes once more"
            );
        }
        tracing::warn!(
            "radio: a neighbour also uses short id {:04x}; this node now uses {:04x} (derived again from its key)",
            shared.0,
            next.0
        );
    }

    /// Tells the link the confirmed slot's image: the base a release's
    /// patch must be from for the link to fetch pieces instead of chunks;
    /// and, when the store holds its chunk index, that index (a large
    /// release's bundle carries its index as a delta against it). Called
    /// at start and after every confirmed install.
    pub(super) fn radio_base_changed(&mut self) {
        let Some(image) = self.core.running().image_hash else {
            return;
        };
        let base = self
            .index_of_image(&image)
            .and_then(|i| bundle::BaseIndex::new(i).ok());
        if let Some(r) = &mut self.radio {
            match base {
                Some(b) => r.link.set_base_index(b),
                None => r.link.set_base_image(image),
            }
        }
    }

    /// The chunk index of `image`: the seeded slot's, one of an image
    /// this node ran before (`base_indexes`), or from a release the core
    /// holds whose component is that image, when the store has it.
    fn index_of_image(&self, image: &Hash) -> Option<ChunkIndex> {
        if let Some(i) = self
            .seeded_index
            .as_ref()
            .filter(|i| i.image_hash() == *image)
        {
            return Some(i.clone());
        }
        let base_indexes = self.base_indexes.clone();
        if let Some(i) = tokio::task::block_in_place(|| base_indexes.find(image)) {
            return Some(i);
        }
        let store = self.store.clone();
        self.core.releases().iter().find_map(|id| {
            let comp = self.core.manifest(id)?.components.first()?;
            if comp.image_hash != *image {
                return None;
            }
            let index_id = comp.chunk_index;
            tokio::task::block_in_place(|| store.get_index(&index_id)).ok()
        })
    }

    /// On a verified bundle: the chunks of its index the store already
    /// holds (the installed image's, mostly) go to the link, which then
    /// fetches only the others (or the pieces that make them). For a large
    /// release only their ids go: the bytes stay in the store.
    fn radio_supply_chunks(&mut self) {
        let Some(r) = &self.radio else {
            return;
        };
        let Some(b) = r.link.bundle() else {
            return;
        };
        let store = self.store.clone();
        let size: u64 = b.chunks().iter().map(|c| u64::from(c.len)).sum();
        if b.is_delta() || size > r.settings.whole_release_bytes_max {
            // Each distinct chunk looked up once; none is read. (A store
            // error holds none: they are fetched by patch instead.)
            let index = std::sync::Arc::clone(b.index());
            let held: Vec<Hash> = tokio::task::block_in_place(|| {
                let Ok(absent) = store.missing(&index) else {
                    return Vec::new();
                };
                let absent: BTreeSet<Hash> = absent.into_iter().map(|c| c.hash).collect();
                distinct_chunks(&index)
                    .filter(|h| !absent.contains(h))
                    .collect()
            });
            if let Some(r) = &mut self.radio {
                let now = r.now();
                let new = r.link.add_stored_chunks(now, &held);
                tracing::debug!(new, "radio: chunks the store holds marked held");
            }
            return;
        }
        let index = std::sync::Arc::clone(b.index());
        // Each distinct chunk read once; one the store lacks is fetched.
        let held = tokio::task::block_in_place(|| {
            distinct_chunks(&index)
                .filter_map(|h| store.get(&h).ok())
                .collect::<Vec<_>>()
        });
        if let Some(r) = &mut self.radio {
            let now = r.now();
            let new = r.link.add_chunks(now, &held);
            tracing::debug!(new, "radio: chunks the store holds handed to the link");
        }
    }

    /// A decoded patch piece: applied against the confirmed slot (the link
    /// checks every produced chunk against the signed index again).
    fn radio_apply_piece(&mut self, job: PieceJob) {
        let output = match super::patch::SlotRegion::confirmed(&self.node) {
            Ok(base) => tokio::task::block_in_place(|| job.apply(&base)),
            Err(e) => job.failed(e),
        };
        if let Err(e) = &output.chunks {
            tracing::warn!(piece = output.position, "radio: patch piece failed: {e}");
        }
        if let Some(r) = &mut self.radio {
            let now = r.now();
            r.link.piece_applied(now, output);
        }
    }

    /// The patch blobs (index and pieces) of `release` the store holds,
    /// for the link to serve: the first listed patch held whole.
    fn patch_for_radio(&self, release: &Hash) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let m = self.core.manifest(release)?;
        m.patches.iter().find_map(|p| self.patch_blobs(p))
    }

    /// Patch `p`'s index blob and pieces, when the store holds all of them.
    fn patch_blobs(&self, p: &PatchRef) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let store = self.store.clone();
        tokio::task::block_in_place(|| {
            let index_bytes = store.get(&p.patch).ok()?;
            let index = PatchIndex::decode(&index_bytes).ok()?;
            let pieces = index
                .pieces()
                .iter()
                .map(|piece| store.get(&piece.hash).ok())
                .collect::<Option<Vec<_>>>()?;
            Some((index_bytes, pieces))
        })
    }

    fn core_holds_whole(&self, id: &Hash) -> bool {
        self.core.progress(id).is_some_and(|(h, t)| h == t)
    }

    /// A release the radio completed: chunks and index into the store,
    /// manifest and chunks to the core (which installs it when wanted and
    /// serves it to QUIC peers).
    fn radio_to_core(&mut self, release: Hash) {
        if self.core_holds_whole(&release) {
            return;
        }
        let Some(r) = &mut self.radio else {
            return;
        };
        let Some(b) = r.link.bundle() else {
            return;
        };
        let (manifest, index_bytes) = (b.manifest_bytes().to_vec(), b.index_bytes().to_vec());
        // The chunks in the link's memory: all of them, or (a large release)
        // those it fetched; the others are in the store already.
        let held: Vec<(Hash, Vec<u8>)> =
            r.link.held_chunks().map(|(h, b)| (h, b.to_vec())).collect();
        r.to_core.insert(release);
        // The patch it fetched (pieces applied or not), kept in the store
        // and pinned: after a restart the node serves it again.
        let patch: Vec<(Hash, Vec<u8>)> = r
            .link
            .patch_blobs()
            .map(|p| {
                std::iter::once((p.id, p.index.to_vec()))
                    .chain(p.pieces.into_iter().map(|(id, b)| (id, b.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        let result = (|| -> Result<(), String> {
            let index = ChunkIndex::decode(&index_bytes).map_err(|e| e.to_string())?;
            let items: Vec<(Hash, &[u8])> = held.iter().map(|(h, b)| (*h, b.as_slice())).collect();
            let store = self.store.clone();
            tokio::task::block_in_place(|| -> Result<(), String> {
                store.put_batch(&items).map_err(|e| e.to_string())?;
                // Each distinct chunk looked up once (a duplicate is
                // checked once).
                let missing = store.missing(&index).map_err(|e| e.to_string())?;
                if let Some(c) = missing.first() {
                    return Err(format!(
                        "{} chunks neither decoded nor in the store (first {})",
                        missing.len(),
                        c.hash.short()
                    ));
                }
                store.put_index(&index).map_err(|e| e.to_string())?;
                let blobs: Vec<(Hash, &[u8])> =
                    patch.iter().map(|(h, b)| (*h, b.as_slice())).collect();
                store
                    .put_batch(&blobs)
                    .map_err(|e| format!("storing the patch: {e}"))?;
                Ok(())
            })?;
            let now = self.now();
            let id = self
                .core
                .add_release(now, &manifest, Some(&index_bytes))
                .map_err(|e| e.to_string())?;
            let index_id = index.id().map_err(|e| e.to_string())?;
            self.store
                .pin(id, index_id)
                .map_err(|e| format!("pinning: {e}"))?;
            if let (false, Some(m)) = (patch.is_empty(), self.core.manifest(&id)) {
                tokio::task::block_in_place(|| super::patch::pin_held_patches(&store, id, m))
                    .map_err(|e| format!("pinning the patch: {e}"))?;
            }
            self.core
                .add_chunks(now, index.chunks().iter().map(|c| c.hash));
            Ok(())
        })();
        match result {
            Ok(()) => {
                tracing::info!(release = %release.short(), "radio: release complete, handed to the mesh core");
            }
            Err(e) => tracing::error!(release = %release.short(), "radio: release not stored: {e}"),
        }
    }

    /// The newest release the core holds whole, if newer than what the
    /// link carries: handed to the link (once per release).
    fn core_to_radio(&mut self) {
        let Some(r) = &self.radio else {
            return;
        };
        let carried_sv = r.link.bundle().map(|b| b.security_version);
        let carried = r.link.release();
        let wall = Instant::now();
        let best = self
            .core
            .releases()
            .into_iter()
            .filter(|id| Some(*id) != carried && !r.to_radio.contains(id))
            .filter(|id| r.deferred.get(id).is_none_or(|at| wall >= *at))
            .filter(|id| self.core_holds_whole(id))
            .filter_map(|id| Some((self.core.manifest(&id)?.security_version, id)))
            .max();
        let Some((sv, id)) = best else {
            return;
        };
        if carried_sv.is_some_and(|c| c >= sv) {
            return;
        }
        if let Some(r) = &mut self.radio {
            r.to_radio.insert(id);
        }
        match self.release_for_radio(&id) {
            Ok(release) => {
                let Some(r) = &mut self.radio else {
                    return;
                };
                r.deferred.remove(&id);
                let now = r.now();
                let (added, patch) = match release {
                    ForRadio::Whole { bundle, chunks } => {
                        (r.link.add_release(now, bundle, &chunks), None)
                    }
                    ForRadio::Stored {
                        bundle,
                        base,
                        held,
                        patch,
                    } => (
                        r.link.add_stored_release(now, bundle, Some(&base), &held),
                        Some(patch),
                    ),
                };
                match added {
                    Ok(()) => {
                        tracing::info!(release = %id.short(), "radio: serving a release the mesh core holds");
                        if let Some((index, pieces)) = patch.or_else(|| self.patch_for_radio(&id)) {
                            let Some(r) = &mut self.radio else {
                                return;
                            };
                            match r.link.add_patch(now, index, &pieces) {
                                Ok(()) => {
                                    tracing::info!(release = %id.short(), "radio: serving its patch")
                                }
                                Err(e) => {
                                    tracing::warn!(release = %id.short(), "radio: patch not taken by the link: {e}")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(release = %id.short(), "radio: release not taken by the link: {e}")
                    }
                }
            }
            Err(HandOver::NotYet(e)) => {
                let Some(r) = &mut self.radio else {
                    return;
                };
                r.to_radio.remove(&id);
                if r.deferred.insert(id, wall + HAND_OVER_RETRY).is_none() {
                    tracing::info!(release = %id.short(), "radio: release not handed over yet, retried every {} s: {e}", HAND_OVER_RETRY.as_secs());
                }
            }
            Err(HandOver::Never(e)) => {
                if let Some(r) = &mut self.radio {
                    r.deferred.remove(&id);
                }
                tracing::warn!(release = %id.short(), "radio: release not handed over: {e}");
            }
        }
    }

    /// What the link gets for a release the core holds whole: up to
    /// `whole_release_bytes_max` of image, the bundle and every chunk;
    /// above, the delta bundle and the chunks of its first patch's pieces
    /// (see "Large releases" above). Chunks come from memory (not yet
    /// written) or the store.
    fn release_for_radio(&mut self, id: &Hash) -> Result<ForRadio, HandOver> {
        let never = |e: &dyn std::fmt::Display| HandOver::Never(e.to_string());
        let m = self
            .core
            .manifest(id)
            .ok_or(HandOver::Never("no manifest".into()))?;
        let manifest = m.encode().map_err(|e| never(&e))?;
        let comp = m
            .components
            .first()
            .ok_or(HandOver::Never("no component".into()))?;
        let index_id = comp.chunk_index;
        let store = self.store.clone();
        let index =
            tokio::task::block_in_place(|| store.get_index(&index_id)).map_err(|e| never(&e))?;
        let whole_max = self
            .radio
            .as_ref()
            .map_or(0, |r| r.settings.whole_release_bytes_max);
        if comp.size > whole_max {
            let first =
                m.patches
                    .iter()
                    .find(|p| p.component == comp.name)
                    .ok_or(HandOver::Never(
                        "a large release without a patch stays off the radio".into(),
                    ))?;
            let base_image = first.base_image_hash;
            let (patch_bytes, pieces) = self.patch_blobs(first).ok_or(HandOver::NotYet(
                "the store lacks the first listed patch whole (index and pieces), by which a large release crosses the radio".into(),
            ))?;
            let patch = PatchIndex::decode(&patch_bytes).map_err(|e| never(&e))?;
            let base = self.index_of_image(&base_image).ok_or(HandOver::NotYet(
                "the store lacks the chunk index of the first listed patch's base".into(),
            ))?;
            let bundle = bundle::encode_delta(&manifest, &base, &index).map_err(|e| never(&e))?;
            let base = bundle::BaseIndex::new(base).map_err(|e| never(&e))?;
            let held = patch
                .chunks_made(&index)
                .iter()
                .map(|h| self.chunk_bytes(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(HandOver::Never)?;
            return Ok(ForRadio::Stored {
                bundle,
                base,
                held,
                patch: (patch_bytes, pieces),
            });
        }
        let index_bytes = index.encode().map_err(|e| never(&e))?;
        let bundle = bundle::encode(&manifest, &index_bytes).map_err(|e| never(&e))?;
        let chunks = index
            .chunks()
            .iter()
            .map(|c| self.chunk_bytes(&c.hash))
            .collect::<Result<Vec<_>, _>>()
            .map_err(HandOver::Never)?;
        Ok(ForRadio::Whole { bundle, chunks })
    }

    /// A chunk the core holds: from memory (not yet written) or the store.
    fn chunk_bytes(&self, hash: &Hash) -> Result<Vec<u8>, String> {
        let in_memory = self.pending.get(hash).or_else(|| {
            self.flushing
                .as_ref()
                .and_then(|(_, batch, _)| batch.get(hash))
        });
        match in_memory {
            Some(d) => Ok(d.clone()),
            None => tokio::task::block_in_place(|| self.store.get(hash)).map_err(|e| e.to_string()),
        }
    }
}

/// A release the core holds whole, as the link takes it.
enum ForRadio {
    /// Up to `whole_release_bytes_max` of image: its bundle and every
    /// chunk, in index order.
    Whole {
        bundle: Vec<u8>,
        chunks: Vec<Vec<u8>>,
    },
    /// A large release: its bundle with the index as a delta against
    /// `base`, the chunks its first listed patch's pieces produce (the
    /// rest stay in the store), and that patch (index blob and pieces),
    /// without which no neighbour could fetch it.
    Stored {
        bundle: Vec<u8>,
        base: bundle::BaseIndex,
        held: Vec<Vec<u8>>,
        patch: (Vec<u8>, Vec<Vec<u8>>),
    },
}

/// The chunk ids of `index`, each once, in first-appearance order.
fn distinct_chunks(index: &ChunkIndex) -> impl Iterator<Item = Hash> + '_ {
    let mut seen = BTreeSet::new();
    index
        .chunks()
        .iter()
        .map(|c| c.hash)
        .filter(move |h| seen.insert(*h))
}

/// Why a release the core holds whole was not handed to the link.
enum HandOver {
    /// Not now: the store lacks something it may gain (a large release's
    /// patch, its base's chunk index). Tried again after
    /// [`HAND_OVER_RETRY`].
    NotYet(String),
    /// Never (a large release without a patch, a release the link or the
    /// store refuses): not tried again.
    Never(String),
}
