//! MQTT payloads: JSON, one object per message.
//!
//! Report (`meshota/<fleet>/<node>/report`):
//! `{"node", "hardware", "installed_version", "installed_release",
//! "security_version", "slot", "slot_state", "last_install", "counter",
//! "time", "document"}` where `document` is the signed report (MOTA kind 4)
//! in hex, so a consumer can verify the node's signature itself.
//!
//! Summary (`meshota/<fleet>/summary`, retained): `{"gateway", "time",
//! "nodes", "confirmed", "failed", "versions": {version: count},
//! "catalog_sequence"}` over the newest report of each node the gateway
//! has seen.

use std::collections::BTreeMap;

use meshota_manifest::{InstallOutcome, KeyId, NodeReport, SlotState};
use serde_json::{Value, json};

/// The JSON of one report; `document` is its signed encoding.
#[must_use]
pub fn report(r: &NodeReport, document: &[u8]) -> Vec<u8> {
    let (slot, state) = match &r.slot_state {
        SlotState::Confirmed { slot } => (slot.clone(), "confirmed"),
        SlotState::Trial { slot, .. } => (slot.clone(), "trial"),
        _ => (String::new(), "unknown"),
    };
    json!({
        "node": r.node_id.to_hex(),
        "hardware": r.hardware,
        "installed_version": r.installed_version,
        "installed_release": r.installed_release.map(|h| h.to_hex()),
        "security_version": r.security_version,
        "slot": slot,
        "slot_state": state,
        "last_install": outcome(&r.last_install),
        "counter": r.counter,
        "time": r.time.map(|t| t.0),
        "document": hex::encode(document),
    })
    .to_string()
    .into_bytes()
}

fn outcome(o: &InstallOutcome) -> Value {
    match o {
        InstallOutcome::None => json!({"outcome": "none"}),
        InstallOutcome::Confirmed { release } => {
            json!({"outcome": "confirmed", "release": release.to_hex()})
        }
        InstallOutcome::RolledBack { release, reason } => {
            json!({"outcome": "rolled_back", "release": release.to_hex(), "reason": reason})
        }
        InstallOutcome::Failed { release, reason } => {
            json!({"outcome": "failed", "release": release.to_hex(), "reason": reason})
        }
        _ => json!({"outcome": "unknown"}),
    }
}

/// The fleet summary over the newest report per node.
#[must_use]
pub fn summary(
    gateway: &KeyId,
    time: u64,
    reports: &BTreeMap<KeyId, NodeReport>,
    catalog_sequence: Option<u64>,
) -> Vec<u8> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut confirmed = 0;
    let mut failed = 0;
    for r in reports.values() {
        *versions
            .entry(r.installed_version.clone().unwrap_or_else(|| "-".into()))
            .or_default() += 1;
        match r.last_install {
            InstallOutcome::Confirmed { .. } => confirmed += 1,
            InstallOutcome::Failed { .. } | InstallOutcome::RolledBack { .. } => failed += 1,
            _ => {}
        }
    }
    json!({
        "gateway": gateway.to_hex(),
        "time": time,
        "nodes": reports.len(),
        "confirmed": confirmed,
        "failed": failed,
        "versions": versions,
        "catalog_sequence": catalog_sequence,
    })
    .to_string()
    .into_bytes()
}
