//! Reading every node's status and showing a testnet's progress: one line
//! per node, a live view redrawn in place on a terminal, plain lines
//! (printed when something changes) otherwise.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::testnet::control;
use crate::testnet::state::{ReleaseRecord, TestnetState};

/// Width of a progress bar, in characters.
const BAR: usize = 24;

/// What the watch and summaries need from a node's status object
/// (docs/daemon.md), or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeView {
    /// Index in the testnet.
    pub(crate) id: usize,
    /// The daemon's `state`, or `down` when its socket does not answer.
    pub(crate) state: String,
    /// Installed release id (hex), if any.
    pub(crate) installed_release: Option<String>,
    /// Installed version, if any.
    pub(crate) installed_version: Option<String>,
    /// The booted slot (`A`/`B`).
    pub(crate) booted: Option<String>,
    /// The booted slot's state (`confirmed`/`trial`).
    pub(crate) slot_state: Option<String>,
    /// The wanted release: (version, have chunks, total chunks).
    pub(crate) wanted: Option<(String, u64, u64)>,
    /// Connected peers.
    pub(crate) peers: u64,
    /// Chunk bytes fetched from peers.
    pub(crate) chunk_bytes_fetched: u64,
    /// The last failure, if any.
    pub(crate) last_failure: Option<String>,
    /// The raw status object (null when down).
    pub(crate) raw: Value,
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::to_string)
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        match v.get(p) {
            Some(x) => v = x,
            None => return 0,
        }
    }
    v.as_u64().unwrap_or(0)
}

impl NodeView {
    /// From a status object; missing fields read as absent or 0.
    pub(crate) fn from_status(id: usize, s: Value) -> Self {
        let wanted = s.get("wanted").filter(|w| !w.is_null()).map(|w| {
            (
                str_at(w, &["version"]).unwrap_or_default(),
                u64_at(w, &["have_chunks"]),
                u64_at(w, &["total_chunks"]),
            )
        });
        Self {
            id,
            state: str_at(&s, &["state"]).unwrap_or_else(|| "unknown".to_string()),
            installed_release: str_at(&s, &["installed", "release"]),
            installed_version: str_at(&s, &["installed", "version"]),
            booted: str_at(&s, &["slot", "booted"]),
            slot_state: str_at(&s, &["slot", "state"]),
            wanted,
            peers: u64_at(&s, &["peers"]),
            chunk_bytes_fetched: u64_at(&s, &["chunk_bytes_fetched"]),
            last_failure: str_at(&s, &["last_failure"]),
            raw: s,
        }
    }

    /// A node whose control socket did not answer.
    pub(crate) fn down(id: usize, why: String) -> Self {
        Self {
            id,
            state: "down".to_string(),
            installed_release: None,
            installed_version: None,
            booted: None,
            slot_state: None,
            wanted: None,
            peers: 0,
            chunk_bytes_fetched: 0,
            last_failure: Some(why),
            raw: Value::Null,
        }
    }

    /// Whether the node runs `target` from a confirmed slot and says so.
    pub(crate) fn converged_on(&self, target: &ReleaseRecord) -> bool {
        let release_matches = match &self.installed_release {
            Some(r) => r.eq_ignore_ascii_case(&target.release),
            None => self.installed_version.as_deref() == Some(target.version.as_str()),
        };
        self.state == "confirmed"
            && self.slot_state.as_deref() == Some("confirmed")
            && release_matches
    }

    /// Progress towards `target` in 0..=1: 1 when converged, the chunk
    /// fraction while fetching it, 0 otherwise.
    pub(crate) fn progress(&self, target: &ReleaseRecord) -> f64 {
        if self.converged_on(target) {
            return 1.0;
        }
        match &self.wanted {
            Some((v, have, total)) if *v == target.version && *total > 0 => {
                // Fetching done but not yet confirmed stays just below full.
                ((*have as f64) / (*total as f64)).min(0.99)
            }
            _ => {
                // Over the radio: the link's progress on the target.
                let r = self.raw.get("radio").filter(|r| {
                    r.get("release")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(&target.release))
                });
                match r {
                    Some(r) if u64_at(r, &["total_chunks"]) > 0 => {
                        (u64_at(r, &["have_chunks"]) as f64 / u64_at(r, &["total_chunks"]) as f64)
                            .min(0.99)
                    }
                    _ => 0.0,
                }
            }
        }
    }

    /// One line: node, state, bar, percentage, installed version and slot,
    /// peers and bytes fetched.
    pub(crate) fn line(&self, target: &ReleaseRecord) -> String {
        let p = self.progress(target);
        let filled = ((p * BAR as f64).round() as usize).min(BAR);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR - filled));
        let installed = match (&self.installed_version, &self.booted, &self.slot_state) {
            (Some(v), Some(b), Some(s)) => format!("{v} ({b}, {s})"),
            (Some(v), _, _) => v.clone(),
            _ => "-".to_string(),
        };
        let mut line = format!(
            "node-{:<3} {:<11} [{bar}] {:>3}%  {:<22} peers {:<2} fetched {}",
            self.id,
            self.state,
            (p * 100.0).floor() as u64,
            installed,
            self.peers,
            human_bytes(self.chunk_bytes_fetched),
        );
        if let Some(r) = self.raw.get("radio").filter(|r| !r.is_null()) {
            line.push_str(&format!(
                "  radio {}/{} chunks, {} neighbours, airtime {:.1} s",
                u64_at(r, &["have_chunks"]),
                u64_at(r, &["total_chunks"]),
                r.get("neighbours")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                u64_at(r, &["airtime_us"]) as f64 / 1e6,
            ));
        }
        if self.state == "failed" || self.state == "down" {
            if let Some(f) = &self.last_failure {
                line.push_str(&format!("  ({f})"));
            }
        }
        line
    }

    /// The node in a JSON summary: id, node id, versions, slot state, bytes.
    pub(crate) fn summary_json(&self) -> Value {
        json!({
            "id": self.id,
            "node_id": self.raw.get("node_id").cloned().unwrap_or(Value::Null),
            "state": self.state,
            "installed_version": self.installed_version,
            "installed_release": self.installed_release,
            "slot": self.booted,
            "slot_state": self.slot_state,
            "chunk_bytes_fetched": self.chunk_bytes_fetched,
            "last_failure": self.last_failure,
        })
    }
}

/// `n` bytes as `12.3 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How long a live view waits for one node's status before showing it
/// `down` (the view refreshes, so a slow answer costs one frame).
pub(crate) const WATCH_STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a one-shot `testnet status` waits for each node: a daemon
/// busy flushing its store or ingesting an image answers late, not never.
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Every node's status now (a node that does not answer within `timeout`
/// is `down`).
pub(crate) fn poll(state: &TestnetState, timeout: Duration) -> Vec<NodeView> {
    state
        .nodes
        .iter()
        .map(|n| match control::status(&n.socket, timeout) {
            Ok(s) => NodeView::from_status(n.id, s),
            Err(e) => NodeView::down(n.id, e),
        })
        .collect()
}

/// Whether every node runs `target` confirmed.
pub(crate) fn all_converged(views: &[NodeView], target: &ReleaseRecord) -> bool {
    !views.is_empty() && views.iter().all(|v| v.converged_on(target))
}

/// The outcome of [`watch`].
#[derive(Debug)]
pub(crate) struct Watched {
    /// Every node converged before the timeout.
    pub(crate) converged: bool,
    /// How long it took (or the timeout).
    pub(crate) elapsed: Duration,
    /// The last statuses read.
    pub(crate) views: Vec<NodeView>,
}

/// Polls every node until all run `target` confirmed or `timeout` passes,
/// showing progress on `out`: redrawn in place when `tty`, else a line per
/// node whenever its line's state or tenth of progress changes. `header`
/// is printed once above.
pub(crate) fn watch(
    state: &TestnetState,
    target: &ReleaseRecord,
    timeout: Duration,
    out: &mut dyn Write,
    tty: bool,
    header: &str,
) -> Watched {
    let start = Instant::now();
    let mut drawn = 0usize;
    let mut last: Vec<Option<(String, u64)>> = vec![None; state.nodes.len()];
    let _ = writeln!(out, "{header}");
    loop {
        let views = poll(state, WATCH_STATUS_TIMEOUT);
        let done = all_converged(&views, target);
        let elapsed = start.elapsed();
        if tty {
            if drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A");
            }
            for v in &views {
                let _ = writeln!(out, "\x1b[2K{}", v.line(target));
            }
            let _ = writeln!(
                out,
                "\x1b[2K{} of {} confirmed on {}  {:.1} s",
                views.iter().filter(|v| v.converged_on(target)).count(),
                views.len(),
                target.version,
                elapsed.as_secs_f64()
            );
            drawn = views.len() + 1;
        } else {
            for (v, seen) in views.iter().zip(last.iter_mut()) {
                let key = (v.state.clone(), (v.progress(target) * 10.0) as u64);
                if seen.as_ref() != Some(&key) {
                    let _ = writeln!(out, "{:>6.1}s {}", elapsed.as_secs_f64(), v.line(target));
                    *seen = Some(key);
                }
            }
        }
        let _ = out.flush();
        if done || elapsed >= timeout {
            return Watched {
                converged: done,
                elapsed,
                views,
            };
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    fn target() -> ReleaseRecord {
        ReleaseRecord {
            version: "2.0.0".to_string(),
            security_version: 3,
            release: "cd".repeat(32),
            manifest: PathBuf::from("/m"),
            image: PathBuf::from("/i"),
            size: 1,
            published_at: 0,
        }
    }

    fn status(state: &str, release: &str, slot_state: &str) -> Value {
        json!({
            "node_id": "ab".repeat(32),
            "state": state,
            "peers": 2,
            "wanted": {"release": "cd".repeat(32), "version": "2.0.0", "have_chunks": 5, "total_chunks": 20},
            "installed": {"release": release, "version": "2.0.0", "security_version": 3},
            "slot": {"booted": "B", "state": slot_state, "tries_left": 0},
            "last_failure": null,
            "chunk_bytes_fetched": 1_048_576,
        })
    }

    #[test]
    fn a_node_converges_only_when_confirmed_on_the_target_release() {
        let t = target();
        let ok = NodeView::from_status(0, status("confirmed", &"cd".repeat(32), "confirmed"));
        assert!(ok.converged_on(&t));
        assert!((ok.progress(&t) - 1.0).abs() < f64::EPSILON);
        let trial = NodeView::from_status(1, status("installing", &"cd".repeat(32), "trial"));
        assert!(!trial.converged_on(&t));
        let old = NodeView::from_status(2, status("confirmed", &"ee".repeat(32), "confirmed"));
        assert!(!old.converged_on(&t));
        let fetching = NodeView::from_status(3, status("fetching", &"ee".repeat(32), "confirmed"));
        assert!((fetching.progress(&t) - 0.25).abs() < 1e-9);
        assert!(!all_converged(&[ok.clone(), fetching], &t));
        assert!(all_converged(&[ok], &t));
        assert!(!all_converged(&[], &t));
    }

    #[test]
    fn a_line_shows_state_progress_version_and_bytes() {
        let t = target();
        let v = NodeView::from_status(3, status("fetching", &"ee".repeat(32), "confirmed"));
        let l = v.line(&t);
        assert!(l.starts_with("node-3"), "{l}");
        assert!(
            l.contains("fetching") && l.contains(" 25%") && l.contains("1.0 MiB"),
            "{l}"
        );
        let d = NodeView::down(4, "connect: refused".to_string());
        assert!(d.line(&t).contains("down") && d.line(&t).contains("refused"));
    }

    #[test]
    fn a_status_with_missing_fields_reads_as_absent_not_a_panic() {
        let v = NodeView::from_status(0, json!({"state": 5, "installed": null}));
        assert_eq!(v.state, "unknown");
        assert_eq!(v.installed_version, None);
        assert_eq!(v.chunk_bytes_fetched, 0);
        assert!(!v.converged_on(&target()));
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(33_554_432), "32.0 MiB");
    }
}
