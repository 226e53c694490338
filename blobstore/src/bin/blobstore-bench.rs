//! The operations `benches/blobstore.sh` measures, one per subcommand, each
//! printing one JSON line with its own wall time:
//!
//! - `ingest STORE FILE`: chunk, compress and store FILE (pins its index).
//! - `assemble STORE INDEX_HEX OUT`: stream the image into OUT.
//! - `delta OLD NEW [AVG_KIB]`: plan OLD→NEW (bytes as sent).
//! - `params OLD NEW`: the delta plan for several average chunk sizes.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

use meshota_blobstore::ops::delta_plan_image;
use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, assemble, ingest};
use meshota_manifest::{ChunkingParams, Hash};

type Res = Result<(), Box<dyn std::error::Error>>;

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

fn params_for(avg_kib: u32) -> ChunkingParams {
    let avg = avg_kib * 1024;
    ChunkingParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg * 4,
        ..DEFAULT_PARAMS
    }
}

fn cmd_ingest(store: &Path, file: &Path) -> Res {
    let t = Instant::now();
    let s = FsStore::open_or_create(store)?;
    let f = BufReader::with_capacity(1 << 20, File::open(file)?);
    let r = ingest(&s, f, &DEFAULT_PARAMS, &mut |_| {})?;
    s.pin(r.index_id, r.index_id)?;
    let secs = t.elapsed().as_secs_f64();
    let size = r.index.total_size();
    println!(
        "{{\"op\":\"ingest\",\"bytes\":{size},\"secs\":{secs:.3},\"mib_per_s\":{:.1},\"chunks\":{},\"new_chunks\":{},\"new_stored_bytes\":{},\"index\":\"{}\"}}",
        mib_s(size, secs),
        r.index.chunks().len(),
        r.new_chunks,
        r.new_stored_bytes,
        r.index_id.to_hex()
    );
    Ok(())
}

fn cmd_assemble(store: &Path, index: &str, out: &Path) -> Res {
    let t = Instant::now();
    let s = FsStore::open(store)?;
    let idx = s.get_index(&Hash::from_hex(index)?)?;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let r = assemble(&s, &idx, &mut w, &mut |_| {})?;
    drop(w);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"op\":\"assemble\",\"bytes\":{},\"secs\":{secs:.3},\"mib_per_s\":{:.1}}}",
        r.bytes,
        mib_s(r.bytes, secs)
    );
    Ok(())
}

fn cmd_delta(old: &Path, new: &Path, avg_kib: Option<u32>) -> Res {
    let params = avg_kib.map_or(DEFAULT_PARAMS, params_for);
    let t = Instant::now();
    let plan = delta_plan_image(&[PathBuf::from(old)], new, None, &params)?;
    let secs = t.elapsed().as_secs_f64();
    let json = plan.to_json();
    let inner = json.trim_start_matches('{').trim_end_matches('}');
    println!(
        "{{\"op\":\"delta\",\"avg_kib\":{},\"secs\":{secs:.3},{inner}}}",
        params.avg_size / 1024
    );
    Ok(())
}

fn main() -> Res {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["ingest", store, file] => cmd_ingest(Path::new(store), Path::new(file)),
        ["assemble", store, index, out] => cmd_assemble(Path::new(store), index, Path::new(out)),
        ["delta", old, new] => cmd_delta(Path::new(old), Path::new(new), None),
        ["delta", old, new, avg] => cmd_delta(Path::new(old), Path::new(new), Some(avg.parse()?)),
        ["params", old, new] => {
            for avg in [4, 8, 16, 32, 64, 128] {
                cmd_delta(Path::new(old), Path::new(new), Some(avg))?;
            }
            Ok(())
        }
        _ => Err("usage: blobstore-bench ingest STORE FILE | assemble STORE INDEX OUT | delta OLD NEW [AVG_KIB] | params OLD NEW".into()),
    }
}
