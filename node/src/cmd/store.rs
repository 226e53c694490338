//! `meshota store …`: ingest images into a chunk store, list, verify and
//! garbage-collect it. Thin wrappers over `meshota_blobstore::ops`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use meshota_blobstore::{DEFAULT_PARAMS, ops};

use crate::failure::{AtPath, CmdResult, Failure};

/// Chunk store maintenance.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCmd {
    /// Chunk FILE into the store (created if DIR is missing or empty) and pin its index.
    Ingest(IngestArgs),
    /// Show counts, sizes and pins (and with --chunks every chunk).
    Ls(LsArgs),
    /// Re-hash every chunk; quarantine bad ones. Exit 1 unless clean.
    Verify(StoreArgs),
    /// Remove chunks and indexes no release pins.
    Gc(StoreArgs),
}

/// Arguments of `store ingest`.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The image to ingest.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `store ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// List every chunk too.
    #[arg(long)]
    chunks: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `store verify` and `store gc`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: StoreCmd) -> CmdResult {
    match cmd {
        StoreCmd::Ingest(a) => ingest(&a),
        StoreCmd::Ls(a) => ls(&a),
        StoreCmd::Verify(a) => verify(&a),
        StoreCmd::Gc(a) => gc(&a),
    }
}

/// A one-line progress display on stderr when it is a terminal.
pub(crate) fn progress(label: &'static str) -> impl FnMut(u64, u64) {
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
            eprint!("\r{label} {} / {} MiB ({pct}%)", done >> 20, total >> 20);
            if done >= total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

fn ingest(a: &IngestArgs) -> CmdResult {
    let mut bar = progress("ingest");
    let r = ops::store_ingest(&a.store, &a.file, &DEFAULT_PARAMS, &mut bar).at(&a.store)?;
    if a.json {
        let v = serde_json::json!({
            "index": r.index_id.to_hex(),
            "size": r.index.total_size(),
            "image_hash": r.index.image_hash().to_hex(),
            "chunks": r.index.chunks().len(),
            "new_chunks": r.new_chunks,
            "new_stored_bytes": r.new_stored_bytes,
        });
        println!("{v:#}");
    } else {
        println!("chunk index  {}", r.index_id);
        println!(
            "image        {} bytes, BLAKE3 {}",
            r.index.total_size(),
            r.index.image_hash()
        );
        println!(
            "chunks       {} ({} new, {} bytes stored)",
            r.index.chunks().len(),
            r.new_chunks,
            r.new_stored_bytes
        );
    }
    Ok(())
}

fn ls(a: &LsArgs) -> CmdResult {
    let l = ops::store_ls(&a.store).at(&a.store)?;
    let s = l.stats;
    if a.json {
        let mut v = serde_json::json!({
            "chunks": s.chunks,
            "raw_bytes": s.raw_bytes,
            "stored_bytes": s.stored_bytes,
            "disk_bytes": s.disk_bytes,
            "seeded_chunks": s.seeded_chunks,
            "indexes": s.indexes,
            "pins": l.pins.iter().map(|(r, i)| serde_json::json!({"release": r.to_hex(), "index": i.to_hex()})).collect::<Vec<_>>(),
        });
        if a.chunks {
            v["chunk_list"] = l
                .chunks
                .iter()
                .map(|(h, i)| serde_json::json!({"id": h.to_hex(), "raw_len": i.raw_len, "stored_len": i.stored_len}))
                .collect();
        }
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "chunks       {} ({} bytes, {} at rest, {} on disk)",
        s.chunks, s.raw_bytes, s.stored_bytes, s.disk_bytes
    );
    println!("indexes      {}", s.indexes);
    println!("seeded       {} chunks", s.seeded_chunks);
    for (r, i) in &l.pins {
        println!("pin          release {}  index {}", r.short(), i.short());
    }
    if a.chunks {
        for (h, i) in &l.chunks {
            println!("{h}  {:>8} {:>8}", i.raw_len, i.stored_len);
        }
    }
    Ok(())
}

fn verify(a: &StoreArgs) -> CmdResult {
    let r = ops::store_verify(&a.store).at(&a.store)?;
    if a.json {
        let hex = |v: &[meshota_manifest::Hash]| v.iter().map(|h| h.to_hex()).collect::<Vec<_>>();
        let v = serde_json::json!({
            "clean": r.is_clean(),
            "chunks_checked": r.chunks_checked,
            "bad_chunks": hex(&r.bad_chunks),
            "stale_seeds": hex(&r.stale_seeds),
            "bad_indexes": hex(&r.bad_indexes),
        });
        println!("{v:#}");
    } else {
        println!("checked      {} chunks", r.chunks_checked);
        for h in &r.bad_chunks {
            println!("quarantined  {h} (corrupt; moved to quarantine/)");
        }
        for h in &r.stale_seeds {
            println!("dropped      {h} (seeded file changed)");
        }
        for h in &r.bad_indexes {
            println!("removed      index {h} (does not decode)");
        }
    }
    if r.is_clean() {
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "{}: {} corrupt chunks quarantined, {} stale seed entries, {} bad indexes",
            a.store.display(),
            r.bad_chunks.len(),
            r.stale_seeds.len(),
            r.bad_indexes.len()
        )))
    }
}

fn gc(a: &StoreArgs) -> CmdResult {
    let r = ops::store_gc(&a.store).at(&a.store)?;
    if a.json {
        let v = serde_json::json!({
            "chunks_removed": r.chunks_removed,
            "bytes_removed": r.bytes_removed,
            "indexes_removed": r.indexes_removed,
            "packs_compacted": r.packs_compacted,
        });
        println!("{v:#}");
    } else {
        println!(
            "removed      {} chunks ({} bytes), {} indexes; {} packs compacted",
            r.chunks_removed, r.bytes_removed, r.indexes_removed, r.packs_compacted
        );
    }
    Ok(())
}
