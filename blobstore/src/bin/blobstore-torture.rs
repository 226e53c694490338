//! Crash-test driver for the filesystem store: performs seeded random
//! ingests, puts, pins, unpins and GCs on `STORE` until killed (or
//! `MAX_OPS`), appending to `LOG` one line per operation *after* it
//! returned (`pin REL INDEX`, `put HASH`) or *before* it started
//! (`unpin-start REL`, `gc-start`). `tests/crash.rs` kills it with SIGKILL
//! and checks every acknowledged operation against the reopened store.
//!
//! Usage: `blobstore-torture STORE LOG SEED`

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, ingest};
use meshota_manifest::Hash;

/// Operations before the driver stops on its own.
const MAX_OPS: u32 = 5_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An image made of blocks drawn from a small shared pool, so images share
/// chunks and GC has work to do.
fn image(rng: &mut Rng) -> Vec<u8> {
    let blocks = 4 + rng.below(40);
    let mut out = Vec::new();
    for _ in 0..blocks {
        let kind = rng.below(24);
        let mut x = Rng(kind * 7919 + 1);
        let len = 8_192 + (kind as usize) * 4_096;
        out.extend((0..len).map(|i| {
            if i % 3 == 0 {
                (x.next() >> 7) as u8
            } else {
                kind as u8
            }
        }));
        let fresh = rng.below(4_000) as usize;
        out.extend((0..fresh).map(|_| rng.next() as u8));
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store_dir, log_path, seed] = args.as_slice() else {
        return Err("usage: blobstore-torture STORE LOG SEED".into());
    };
    let mut rng = Rng(seed.parse()?);
    let store = FsStore::open_or_create(&PathBuf::from(store_dir))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut released: Vec<Hash> = store.pins()?.into_iter().map(|(r, _)| r).collect();
    for op in 0..MAX_OPS {
        match rng.below(10) {
            0..=3 => {
                let img = image(&mut rng);
                let r = ingest(&store, img.as_slice(), &DEFAULT_PARAMS, &mut |_| {})?;
                let rel = Hash::of(&[seed.as_bytes(), &op.to_le_bytes()].concat());
                store.pin(rel, r.index_id)?;
                writeln!(log, "pin {} {}", rel.to_hex(), r.index_id.to_hex())?;
                released.push(rel);
            }
            4..=6 => {
                let len = 1 + rng.below(100_000) as usize;
                let b: Vec<u8> = (0..len)
                    .map(|i| if i % 2 == 0 { rng.next() as u8 } else { 7 })
                    .collect();
                let h = Hash::of(&b);
                store.put(h, &b)?;
                writeln!(log, "put {}", h.to_hex())?;
            }
            7 => {
                if !released.is_empty() {
                    let i = rng.below(released.len() as u64) as usize;
                    let rel = released.swap_remove(i);
                    writeln!(log, "unpin-start {}", rel.to_hex())?;
                    store.unpin(rel)?;
                }
            }
            _ => {
                writeln!(log, "gc-start")?;
                store.gc()?;
            }
        }
    }
    Ok(())
}
