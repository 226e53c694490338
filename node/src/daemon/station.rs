//! USB station mode: the daemon watches a directory (a stick's mount
//! point). On the stick:
//!
//! - `NAME.bundle`: imported (verified completely first, as `bundle
//!   import` does); the outcome is written beside it as
//!   `NAME.bundle.result.json`.
//! - `NAME.want` (a want list written in the field by `bundle want`): its
//!   node reports enter the mesh (toward gateways and MQTT), and the
//!   station writes `NAME.reply.bundle`: the newest release it holds
//!   completely for the want list's hardware and channel that is newer
//!   than what the field runs, minus the chunks the field holds. The
//!   outcome goes to `NAME.want.result.json`.
//!
//! A file is taken once its size and modification time stayed the same
//! for one poll interval (a copy in progress is not read), and never again
//! while its result file exists: delete the result to have it redone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::config::StationConfig;

/// A file on the stick ready to be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A bundle to import.
    Bundle(PathBuf),
    /// A want list to answer.
    Want(PathBuf),
}

/// Where a file's outcome is written.
pub(crate) fn result_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".result.json");
    file.with_file_name(name)
}

/// Where the answer to a want list is written.
pub(crate) fn reply_path(want: &Path) -> PathBuf {
    want.with_extension("reply.bundle")
}

/// Writes a file's outcome (atomically, as every write to the stick).
pub(crate) fn write_result(file: &Path, outcome: &serde_json::Value) {
    let path = result_path(file);
    let text = format!("{outcome:#}\n");
    if let Err(e) = meshota_manifest::fs::write_atomic(&path, text.as_bytes(), 0o644) {
        tracing::error!("station: {e}");
    }
}

fn classify(path: &Path) -> Option<Found> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None; // temporary files, ours and other writers'
    }
    if name.ends_with(".reply.bundle") {
        return None; // our own answers
    }
    if name.ends_with(".bundle") {
        Some(Found::Bundle(path.to_path_buf()))
    } else if name.ends_with(".want") {
        Some(Found::Want(path.to_path_buf()))
    } else {
        None
    }
}

/// Polls `cfg.dir` until the receiver is gone, sending each stable,
/// unhandled file once.
pub(crate) async fn watch(cfg: StationConfig, tx: mpsc::Sender<Found>) {
    let mut last: BTreeMap<PathBuf, (u64, Option<SystemTime>)> = BTreeMap::new();
    let mut sent: BTreeMap<PathBuf, (u64, Option<SystemTime>)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_ms));
    loop {
        tick.tick().await;
        let Ok(entries) = std::fs::read_dir(&cfg.dir) else {
            last.clear(); // not mounted now
            continue;
        };
        let mut now = BTreeMap::new();
        for e in entries.flatten() {
            let path = e.path();
            let Some(found) = classify(&path) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            let stamp = (meta.len(), meta.modified().ok());
            now.insert(path.clone(), stamp);
            let stable = last.get(&path) == Some(&stamp);
            if stable && sent.get(&path) != Some(&stamp) && !result_path(&path).exists() {
                sent.insert(path, stamp);
                if tx.send(found).await.is_err() {
                    return;
                }
            }
        }
        sent.retain(|p, _| now.contains_key(p));
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bundles_and_want_lists_are_taken_never_our_replies_or_temporaries() {
        let d = Path::new("/stick");
        assert_eq!(
            classify(&d.join("site-7.bundle")),
            Some(Found::Bundle(d.join("site-7.bundle")))
        );
        assert_eq!(
            classify(&d.join("field.want")),
            Some(Found::Want(d.join("field.want")))
        );
        assert_eq!(classify(&d.join("field.reply.bundle")), None);
        assert_eq!(classify(&d.join(".x.bundle.ab12.part")), None);
        assert_eq!(classify(&d.join("notes.txt")), None);
        assert_eq!(
            result_path(&d.join("a.bundle")),
            d.join("a.bundle.result.json")
        );
        assert_eq!(
            reply_path(&d.join("field.want")),
            d.join("field.reply.bundle")
        );
    }
}
