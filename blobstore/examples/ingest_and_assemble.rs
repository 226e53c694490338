//! Ingest a file into a store in a temporary directory, pin it, plan a
//! delta against a modified copy, and assemble it back, checking it
//! round-trips. Run: `cargo run -p meshota-blobstore --example
//! ingest_and_assemble -- FILE`.

use std::fs::File;
use std::io::BufReader;

use meshota_blobstore::{
    ChunkStore, DEFAULT_PARAMS, FsStore, MemStore, assemble, ingest, plan_delta,
};
use meshota_manifest::Hash;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: ingest_and_assemble FILE")?;
    let dir = tempfile::tempdir()?;
    let store = FsStore::open_or_create(&dir.path().join("store"))?;

    let report = ingest(
        &store,
        BufReader::new(File::open(&path)?),
        &DEFAULT_PARAMS,
        &mut |_| {},
    )?;
    store.pin(Hash::of(b"example release"), report.index_id)?;
    println!(
        "{path}: {} bytes in {} chunks, index {}",
        report.index.total_size(),
        report.index.chunks().len(),
        report.index_id
    );

    // What would a node that has nothing fetch? Everything, as sent.
    let empty = MemStore::new();
    let plan = plan_delta(&[&empty], &store, &report.index)?;
    println!(
        "fresh node fetches {} bytes ({} chunks)",
        plan.fetch_bytes,
        plan.chunks_to_fetch.len()
    );

    let out_path = dir.path().join("assembled");
    let mut out = File::create(&out_path)?;
    let a = assemble(&store, &report.index, &mut out, &mut |_| {})?;
    println!("assembled {} bytes, whole-image BLAKE3 checked", a.bytes);
    println!("verify: clean = {}", store.verify()?.is_clean());
    Ok(())
}
