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

use meshota_blobstore::FsStore;
use meshota_gateway::GatewayConfig;
use meshota_gateway::origin::http::Origin;
use meshota_gateway::origin::{SyncOptions, SyncReport, sync};
use meshota_manifest::{Expiration, TrustRoot, Verified};
use serde_json::json;
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
}

impl GatewayState {
    /// The `gateway` member of the status object.
    pub(crate) fn status(&self) -> serde_json::Value {
        json!({
            "origin": self.origin,
            "syncs": self.syncs,
            "releases_injected": self.injected,
            "last_sync": self.last,
        })
    }

    /// Records a sync's outcome.
    pub(crate) fn record(&mut self, result: &Result<SyncReport, String>) {
        self.syncs += 1;
        let time = meshota_manifest::UnixTime(now().0).to_string();
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

/// What the origin loop needs.
pub(crate) struct OriginLoop {
    pub(crate) cfg: GatewayConfig,
    pub(crate) store: Arc<FsStore>,
    pub(crate) trust: Verified<TrustRoot>,
    pub(crate) expiration: Expiration,
    pub(crate) state_dir: PathBuf,
}

impl OriginLoop {
    /// Polls the origin now, then every `poll_interval`, or sooner on a
    /// trigger; each result goes to the central task. Ends when the
    /// daemon's input channel closes.
    pub(crate) async fn run(self, inputs: mpsc::Sender<Input>, mut trigger: mpsc::Receiver<()>) {
        let interval = self.cfg.poll_interval();
        let mut origin =
            match Origin::new(&self.cfg.origin_config(), &self.state_dir.join("partial")) {
                Ok(o) => Some(o),
                Err(e) => {
                    let _ = inputs.send(Input::OriginSynced(Err(e.to_string()))).await;
                    None
                }
            };
        let me = Arc::new(self);
        while let Some(o) = origin.take() {
            let job = me.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut o = o;
                let opts = SyncOptions {
                    trust: &job.trust,
                    expiration: job.expiration,
                    state_dir: &job.state_dir,
                };
                let r = sync(&mut o, &*job.store, &opts).map_err(|e| e.to_string());
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
