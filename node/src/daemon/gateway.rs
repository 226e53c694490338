//! Gateway duties of the daemon (`meshota gateway run`): poll the HTTP
//! origin on an interval (or at once when triggered), and inject the
//! releases each sync completes into the mesh core.
//!
//! The sync itself (`meshota_gateway::origin::sync`) is blocking HTTP and
//! store work: it runs on a blocking thread with the daemon's own store
//! handle (redb allows one process), and its result comes back to the
//! central task as an input, like an install's.

use std::path::PathBuf;
use std::sync::Arc;

use std::collections::BTreeMap;
use std::sync::Mutex;

use meshota_blobstore::FsStore;
use meshota_gateway::mqtt::{LinkStatus, Outbox, payload, topics};
use meshota_gateway::origin::http::Origin;
use meshota_gateway::origin::{SyncOptions, SyncReport, sync};
use meshota_manifest::{Expiration, TrustRoot, Verified};
use meshota_manifest::{KeyId, NodeReport, SignedDocument};
use serde_json::json;
use tokio::sync::Notify;
use tokio::sync::mpsc;

use super::Input;
use crate::timefmt::now;

/// Triggers queued toward the origin loop (more than one pending trigger
/// means the same as one).
pub(crate) const TRIGGER_QUEUE: usize = 1;

/// What the status object shows about the gateway.
#[derive(Debug, Default)]
pub(crate) struct GatewayState {
    /// The origin polled.
    pub(crate) origin: String,
    /// Syncs finished (successful or not).
    pub(crate) syncs: u64,
    /// Releases injected into the mesh since start.
    pub(crate) injected: u64,
    /// The last sync's outcome as JSON.
    pub(crate) last: Option<serde_json::Value>,
    /// Asks the origin loop to poll now.
    pub(crate) trigger: Option<mpsc::Sender<()>>,
    /// Sequence of the catalog last synced.
    pub(crate) catalog_sequence: Option<u64>,
    /// The MQTT side, when `[gateway.mqtt]` is set.
    pub(crate) mqtt: Option<MqttSide>,
}

/// The daemon's end of the MQTT link: the outbox it fills, and the newest
/// report per node for the summary.
pub(crate) struct MqttSide {
    pub(crate) fleet: String,
    pub(crate) gateway: KeyId,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) link: Arc<Mutex<LinkStatus>>,
    /// Newest report per node (bounded by the core's own report limit:
    /// only reports the core accepted arrive here, each verified against
    /// the device key it carries).
    pub(crate) reports: BTreeMap<KeyId, NodeReport>,
}

impl std::fmt::Debug for MqttSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSide")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl MqttSide {
    /// Queues a report the core accepted (its own or a peer's) and the new
    /// summary, durably, and wakes the link.
    pub(crate) fn report(&mut self, bytes: &[u8], catalog_sequence: Option<u64>) {
        let Ok(doc) = SignedDocument::<NodeReport>::decode(bytes) else {
            return;
        };
        let r = doc.unverified_body().clone();
        if self
            .reports
            .get(&r.node_id)
            .is_some_and(|old| old.counter >= r.counter)
        {
            return;
        }
        let topic = topics::report(&self.fleet, &r.node_id.to_hex());
        if let Err(e) = self.outbox.push(&topic, &payload::report(&r, bytes)) {
            tracing::error!("MQTT outbox: {e}");
        }
        self.reports.insert(r.node_id, r);
        self.summary(catalog_sequence);
    }

    /// Replaces the queued summary with the current one.
    pub(crate) fn summary(&self, catalog_sequence: Option<u64>) {
        let body = payload::summary(&self.gateway, now().0, &self.reports, catalog_sequence);
        if let Err(e) = self.outbox.set_latest(&topics::summary(&self.fleet), &body) {
            tracing::error!("MQTT outbox: {e}");
        }
        self.wake.notify_one();
    }

    fn status(&self) -> serde_json::Value {
        let link = self.link.lock().map(|l| l.clone()).unwrap_or_default();
        json!({
            "fleet": self.fleet,
            "connected": link.connected,
            "subscribed": link.subscribed,
            "delivered": link.delivered,
            "notifications": link.notifications,
            "queued": self.outbox.len().ok(),
            "dropped": self.outbox.dropped().ok(),
            "last_error": link.last_error,
            "nodes_reported": self.reports.len(),
        })
    }
}

impl GatewayState {
    /// The `gateway` member of the status object.
    pub(crate) fn status(&self) -> serde_json::Value {
        json!({
            "origin": self.origin,
            "syncs": self.syncs,
            "releases_injected": self.injected,
            "last_sync": self.last,
            "mqtt": self.mqtt.as_ref().map(MqttSide::status),
        })
    }

    /// Records a sync's outcome.
    pub(crate) fn record(&mut self, result: &Result<SyncReport, String>) {
        self.syncs += 1;
        let time = meshota_manifest::UnixTime(now().0).to_string();
        if let Ok(r) = result {
            if self.catalog_sequence != Some(r.catalog_sequence) {
                self.catalog_sequence = Some(r.catalog_sequence);
                if let Some(m) = &self.mqtt {
                    m.summary(self.catalog_sequence);
                }
            }
        }
        self.last = Some(match result {
            Ok(r) => json!({
                "ok": true,
                "time": time,
                "catalog_sequence": r.catalog_sequence,
                "releases_listed": r.releases_listed,
                "new_releases": r.new_releases.iter().map(|n| json!({
                    "release": n.release.to_hex(), "version": n.version,
                })).collect::<Vec<_>>(),
                "chunks_fetched": r.chunks_fetched,
                "objects_fetched": r.fetch.objects,
                "bytes_fetched": r.fetch.bytes,
                "requests": r.fetch.requests,
                "resumed": r.fetch.resumed,
            }),
            Err(e) => json!({"ok": false, "time": time, "error": e}),
        });
    }
}

/// What the origin loop needs. The HTTP client is made at start (by the
/// caller), so an unusable setting (bad URL, unreadable CA file) stops the
/// daemon with a message naming the config instead of failing every poll.
pub(crate) struct OriginLoop {
    pub(crate) interval: std::time::Duration,
    pub(crate) origin: Origin,
    pub(crate) store: Arc<FsStore>,
    pub(crate) trust: Verified<TrustRoot>,
    pub(crate) expiration: Expiration,
    pub(crate) state_dir: PathBuf,
}

impl OriginLoop {
    /// Polls the origin now, then every `interval`, or sooner on a
    /// trigger; each result goes to the central task. Ends when the
    /// daemon's input channel closes.
    pub(crate) async fn run(self, inputs: mpsc::Sender<Input>, mut trigger: mpsc::Receiver<()>) {
        let Self {
            interval,
            origin,
            store,
            trust,
            expiration,
            state_dir,
        } = self;
        let shared = Arc::new((store, trust, state_dir));
        let mut origin = Some(origin);
        while let Some(o) = origin.take() {
            let job = shared.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut o = o;
                let (store, trust, state_dir) = &*job;
                let opts = SyncOptions {
                    trust,
                    expiration,
                    state_dir,
                };
                let r = sync(&mut o, &**store, &opts).map_err(|e| e.to_string());
                (o, r)
            })
            .await;
            let Ok((o, result)) = done else { return };
            origin = Some(o);
            if let Err(e) = &result {
                tracing::warn!("origin sync failed: {e}");
            }
            if inputs.send(Input::OriginSynced(result)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                t = trigger.recv() => if t.is_none() { tokio::time::sleep(interval).await },
            }
        }
    }
}
