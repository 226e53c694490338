//! Crash safety: SIGKILL a child doing ingest/put/pin/unpin/GC at many
//! seeded moments; after each kill the store must open, verify clean, and
//! hold everything the child had acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshota_blobstore::{ChunkStore, FsStore};
use meshota_manifest::Hash;

/// Kills per run; each is a different moment drawn from the seed.
const KILLS: u64 = 30;
/// Hard cap on the whole test's wall time.
const TIME_LIMIT: Duration = Duration::from_secs(240);

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the child acknowledged, replayed from its log.
fn acknowledged(log: &str) -> (BTreeMap<Hash, Hash>, BTreeSet<Hash>) {
    let mut pinned = BTreeMap::new();
    let mut puts = BTreeSet::new();
    for line in log.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        // A torn last line (killed mid-write) is ignored: not acknowledged.
        let hash = |i: usize| parts.get(i).and_then(|s| Hash::from_hex(s).ok());
        match parts.first().copied() {
            Some("pin") => {
                if let (Some(r), Some(i)) = (hash(1), hash(2)) {
                    pinned.insert(r, i);
                }
            }
            Some("put") => {
                if let Some(h) = hash(1) {
                    puts.insert(h);
                }
            }
            Some("unpin-start") => {
                if let Some(r) = hash(1) {
                    pinned.remove(&r);
                }
            }
            Some("gc-start") => puts.clear(),
            _ => {}
        }
    }
    (pinned, puts)
}

#[test]
fn store_survives_sigkill_at_seeded_moments_of_ingest_put_and_gc() {
    let seed: u64 = std::env::var("MESHOTA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_123);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let log_path = dir.path().join("acks.log");
    let started = Instant::now();
    let mut rng = seed;
    let mut checked_pins = 0usize;
    for kill in 0..KILLS {
        assert!(
            started.elapsed() < TIME_LIMIT,
            "seed {seed}: time limit after {kill} kills"
        );
        let delay = Duration::from_millis(20 + splitmix(&mut rng) % 400);
        let mut child = Command::new(env!("CARGO_BIN_EXE_blobstore-torture"))
            .arg(&store_dir)
            .arg(&log_path)
            .arg((seed ^ kill).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let store = FsStore::open(&store_dir)
            .unwrap_or_else(|e| panic!("seed {seed} kill {kill}: store does not reopen: {e}"));
        let report = store.verify().unwrap();
        assert!(
            report.is_clean(),
            "seed {seed} kill {kill}: verify found {report:?}"
        );
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let (pinned, puts) = acknowledged(&log);
        for (rel, index_id) in &pinned {
            let index = store.get_index(index_id).unwrap_or_else(|e| {
                panic!("seed {seed} kill {kill}: pinned index of {rel:?} lost: {e}")
            });
            let missing = store.missing(&index).unwrap();
            assert!(
                missing.is_empty(),
                "seed {seed} kill {kill}: {} chunks of {rel:?} lost",
                missing.len()
            );
        }
        for h in &puts {
            assert!(
                store.get(h).is_ok(),
                "seed {seed} kill {kill}: acknowledged put {h:?} lost"
            );
        }
        checked_pins = checked_pins.max(pinned.len());
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let gcs = log.lines().filter(|l| *l == "gc-start").count();
    eprintln!(
        "seed {seed}: {KILLS} kills, {} log lines, {gcs} GCs, up to {checked_pins} live pins checked",
        log.lines().count()
    );
    assert!(gcs > 0, "the child never reached a GC: raise the delays");
    assert!(
        checked_pins > 0,
        "the child never got to acknowledge a pin: raise the delays"
    );
}
