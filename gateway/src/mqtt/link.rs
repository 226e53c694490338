//! The MQTT link: one task that keeps a session with the broker, sends the
//! outbox's messages with QoS 1, removes each on its PUBACK, and turns
//! messages on the releases topic into sync triggers.
//!
//! Each (re)connection is a fresh rumqttc client and event loop, so the
//! outbox is the only record of what is unacknowledged: after a broken
//! session, everything still queued is sent again, in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use super::outbox::{Key, Message, Outbox};
use super::topics;

/// Messages handed to the client and not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 64;
/// Requests the client's channel holds (above [`MAX_IN_FLIGHT`] plus the
/// subscription).
const REQUEST_CAP: usize = 2 * MAX_IN_FLIGHT;
/// Largest MQTT packet sent or accepted (a report with its signed document
/// is about 8 KiB of JSON).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

fn default_fleet() -> String {
    "default".to_string()
}
const fn default_keep_alive() -> u64 {
    30
}
const fn default_retry() -> u64 {
    2
}
const fn default_queue_max() -> u64 {
    100_000
}

/// The `[gateway.mqtt]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker, `host:port` (plain TCP; `1883` is MQTT's port).
    pub broker: String,
    /// Fleet label: the second level of every topic (default `default`).
    #[serde(default = "default_fleet")]
    pub fleet: String,
    /// MQTT client id (default `meshota-<node id, 16 hex>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive in seconds (default 30).
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Seconds between reconnection attempts (default 2).
    #[serde(default = "default_retry")]
    pub retry_secs: u64,
    /// Most reports kept on disk while the broker is unreachable (default
    /// 100,000); past it the oldest are dropped and counted.
    #[serde(default = "default_queue_max")]
    pub queue_max: u64,
}

impl MqttConfig {
    /// Checks the values a parser cannot.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.host_port()?;
        if !topics::valid_fleet(&self.fleet) {
            return Err(format!(
                "field `gateway.mqtt.fleet`: {:?} must be 1 to 64 bytes without `/`, `+`, `#`",
                self.fleet
            ));
        }
        if self.keep_alive_secs == 0 || self.retry_secs == 0 || self.queue_max == 0 {
            return Err(
                "fields `gateway.mqtt.keep_alive_secs`, `retry_secs` and `queue_max` must be at least 1"
                    .to_string(),
            );
        }
        Ok(())
    }

    fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = self.broker.rsplit_once(':').ok_or_else(|| {
            format!(
                "field `gateway.mqtt.broker`: {:?} is not host:port",
                self.broker
            )
        })?;
        let port: u16 = port.parse().map_err(|_| {
            format!(
                "field `gateway.mqtt.broker`: {:?} has no valid port",
                self.broker
            )
        })?;
        Ok((host.trim_matches(['[', ']']).to_string(), port))
    }
}

/// What the link reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Whether a session with the broker is up.
    pub connected: bool,
    /// Whether the broker acknowledged, on this session, the subscription
    /// to release notifications: only then does a notification reach us.
    pub subscribed: bool,
    /// Messages acknowledged by the broker since start.
    pub delivered: u64,
    /// Release notifications received since start.
    pub notifications: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// The MQTT link of one gateway.
pub struct Link {
    cfg: MqttConfig,
    client_id: String,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    trigger: mpsc::Sender<()>,
    status: Arc<Mutex<LinkStatus>>,
}

impl Link {
    /// A link for `cfg`; `node_hex` names the default client id. Wake it
    /// with `wake.notify_one()` after pushing to the outbox; it sends `()`
    /// on `trigger` for each release notification.
    #[must_use]
    pub fn new(
        cfg: MqttConfig,
        node_hex: &str,
        outbox: Arc<Outbox>,
        wake: Arc<Notify>,
        trigger: mpsc::Sender<()>,
    ) -> Self {
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("meshota-{}", node_hex.get(..16).unwrap_or(node_hex)));
        Self {
            cfg,
            client_id,
            outbox,
            wake,
            trigger,
            status: Arc::default(),
        }
    }

    /// A handle on the link's status, updated as it runs.
    #[must_use]
    pub fn status(&self) -> Arc<Mutex<LinkStatus>> {
        self.status.clone()
    }

    fn set(&self, f: impl FnOnce(&mut LinkStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Runs until the trigger channel closes (the daemon stopped).
    pub async fn run(self) {
        let Ok((host, port)) = self.cfg.host_port() else {
            return;
        };
        let releases = topics::releases(&self.cfg.fleet);
        let retry = Duration::from_secs(self.cfg.retry_secs);
        while !self.trigger.is_closed() {
            let mut opts = MqttOptions::new(&self.client_id, &host, port);
            opts.set_keep_alive(Duration::from_secs(self.cfg.keep_alive_secs))
                .set_clean_session(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
            let (client, mut events) = AsyncClient::new(opts, REQUEST_CAP);
            let mut session = Session::default();
            loop {
                tokio::select! {
                    ev = events.poll() => match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            self.set(|s| { s.connected = true; s.last_error = None; });
                            tracing::info!(broker = %self.cfg.broker, "MQTT connected");
                            let _ = client.try_subscribe(releases.clone(), QoS::AtLeastOnce);
                            session.connected = true;
                            self.fill(&client, &mut session);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            self.set(|s| s.subscribed = true);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == releases => {
                            let named = String::from_utf8_lossy(&p.payload).chars().take(200).collect::<String>();
                            tracing::info!(notification = %named, "release notification: syncing with the origin");
                            self.set(|s| s.notifications += 1);
                            let _ = self.trigger.try_send(());
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            if let Some(k) = session.handed.pop_front() {
                                session.in_flight.insert(pkid, k);
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(k) = session.in_flight.remove(&ack.pkid) {
                                match self.outbox.delivered(&k) {
                                    Ok(()) => self.set(|s| s.delivered += 1),
                                    Err(e) => tracing::error!("outbox: {e}"),
                                }
                                session.sent.remove(&k);
                                self.fill(&client, &mut session);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let text = e.to_string();
                            if session.connected {
                                tracing::warn!(broker = %self.cfg.broker, "MQTT connection lost: {text}");
                            }
                            self.set(|s| { s.connected = false; s.subscribed = false; s.last_error = Some(text); });
                            break;
                        }
                    },
                    () = self.wake.notified() => {
                        if session.connected {
                            self.fill(&client, &mut session);
                        }
                    }
                    () = self.trigger.closed() => return,
                }
            }
            drop(client);
            tokio::time::sleep(retry).await;
        }
    }

    /// Hands the client outbox messages not yet handed in this session, up
    /// to [`MAX_IN_FLIGHT`] unacknowledged.
    fn fill(&self, client: &AsyncClient, session: &mut Session) {
        let room = MAX_IN_FLIGHT.saturating_sub(session.sent.len());
        if room == 0 {
            return;
        }
        let mut next: Vec<Message> = match self.outbox.pending(session.last_seq, room) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("outbox: {e}");
                return;
            }
        };
        if next.len() < room {
            match self.outbox.latest() {
                Ok(l) => next.extend(
                    l.into_iter()
                        .filter(|m| !session.sent.contains(&m.key))
                        .take(room - next.len()),
                ),
                Err(e) => tracing::error!("outbox: {e}"),
            }
        }
        for m in next {
            let retain = matches!(m.key, Key::Latest(..));
            if client
                .try_publish(&m.topic, QoS::AtLeastOnce, retain, m.payload)
                .is_err()
            {
                break;
            }
            if let Key::Seq(s) = m.key {
                session.last_seq = s;
            }
            session.sent.insert(m.key.clone());
            session.handed.push_back(m.key);
        }
    }
}

/// One broker session's bookkeeping.
#[derive(Default)]
struct Session {
    connected: bool,
    /// Highest queued sequence handed to the client.
    last_seq: u64,
    /// Keys handed to the client, not yet acknowledged.
    sent: HashSet<Key>,
    /// Keys handed, waiting for their packet id (`Outgoing::Publish`), in order.
    handed: VecDeque<Key>,
    /// Packet id → key, waiting for PUBACK.
    in_flight: HashMap<u16, Key>,
}
