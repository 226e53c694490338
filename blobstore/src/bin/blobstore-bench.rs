//! The operations `benches/blobstore.sh` measures, one per subcommand, each
//! printing one JSON line with its own wall time:
//!
//! - `ingest STORE FILE`: chunk, compress and store FILE (pins its index).
//! - `assemble STORE INDEX_HEX OUT`: stream the image into OUT.
//! - `delta OLD NEW [AVG_KIB]`: plan OLD→NEW (bytes as sent).
//! - `params OLD NEW`: the delta plan for several average chunk sizes.
//! - `patch OLD NEW [PIECE_KIB [LEVEL]]`: make a patch OLD→NEW in memory
//!   (creation time, patch bytes) and plan with it (`fetch_bytes`).
//! - `synth OLD NEW MIB`: write a synthetic MIB MiB image and a next release
//!   of it (operands shifted every 3 KiB, as relinked code), streaming.
//! - `patch-make STORE OLD NEW`: ingest NEW into STORE, make and pin a
//!   patch from OLD; prints the patch and target index ids.
//! - `patch-fetch ORIGIN NODE PATCH_HEX INDEX_HEX`: copy the target index,
//!   the patch index and its pieces from ORIGIN into a new store NODE (what
//!   the mesh would deliver), so the next step is measured alone.
//! - `patch-apply NODE BASE PATCH_HEX INDEX_HEX`: rebuild the target's
//!   chunks into NODE from BASE and the patch's pieces (the install path).
//!
//! Patch creation and application print `peak_rss_kib` (getrusage of this
//! process) as well as their time.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

use std::io::Write;

use meshota_blobstore::ops::{delta_plan_image, delta_plan_image_patched};
use meshota_blobstore::patch::{PatchIndex, PatchOptions, create_patch, rebuild_from_patch};
use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, assemble, index_reader, ingest};
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

/// Peak resident set size of this process so far, in KiB (Linux
/// `VmHWM`, as `/usr/bin/time -v` reports it).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn cmd_patch(old: &Path, new: &Path, piece_kib: Option<usize>, level: Option<i32>) -> Res {
    let mut opts = PatchOptions::default();
    if let Some(k) = piece_kib {
        opts.piece_output_bytes = k * 1024;
    }
    if let Some(l) = level {
        opts.zstd_level = l;
    }
    let t = Instant::now();
    let (plan, build) =
        delta_plan_image_patched(&[PathBuf::from(old)], new, &DEFAULT_PARAMS, &opts)?;
    let secs = t.elapsed().as_secs_f64();
    let (pieces, dropped, patch_bytes) = build.as_ref().map_or((0, 0, 0), |b| {
        (b.index.pieces().len(), b.pieces_dropped, b.patch_bytes)
    });
    let json = plan.to_json();
    let inner = json.trim_start_matches('{').trim_end_matches('}');
    println!(
        "{{\"op\":\"patch\",\"piece_kib\":{},\"level\":{},\"secs\":{secs:.3},\"peak_rss_kib\":{},\"pieces\":{pieces},\"pieces_dropped\":{dropped},\"patch_bytes\":{patch_bytes},{inner}}}",
        opts.piece_output_bytes / 1024,
        opts.zstd_level,
        peak_rss_kib()
    );
    Ok(())
}

/// xorshift32 bytes shaped like code: short repeated opcodes, random operands.
struct Synth(u32, u64);

impl Synth {
    fn byte(&mut self) -> u8 {
        let i = self.1;
        self.1 += 1;
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        if i % 16 < 6 {
            (i % 7) as u8
        } else {
            (self.0 >> 24) as u8
        }
    }
}

fn cmd_synth(old: &Path, new: &Path, mib: u64) -> Res {
    let mut o = std::io::BufWriter::with_capacity(1 << 20, File::create(old)?);
    let mut n = std::io::BufWriter::with_capacity(1 << 20, File::create(new)?);
    let mut g = Synth(0x9e37_79b9, 0);
    let mut block = vec![0u8; 3 * 1024];
    for _ in 0..(mib << 20) / block.len() as u64 {
        block.iter_mut().for_each(|b| *b = g.byte());
        o.write_all(&block)?;
        let v = u32::from_le_bytes([block[100], block[101], block[102], block[103]]);
        block[100..104].copy_from_slice(&v.wrapping_add(0x40).to_le_bytes());
        n.write_all(&block)?;
    }
    o.flush()?;
    n.flush()?;
    Ok(())
}

fn cmd_patch_make(store: &Path, old: &Path, new: &Path) -> Res {
    let s = FsStore::open_or_create(store)?;
    let nf = File::open(new)?;
    let r = ingest(
        &s,
        BufReader::with_capacity(1 << 20, &nf),
        &DEFAULT_PARAMS,
        &mut |_| {},
    )?;
    s.pin(r.index_id, r.index_id)?;
    let of = File::open(old)?;
    let base_index = index_reader(BufReader::with_capacity(1 << 20, &of), &DEFAULT_PARAMS)?;
    let t = Instant::now();
    let build = create_patch(
        &s,
        &of,
        &base_index,
        &nf,
        &r.index,
        &PatchOptions::default(),
    )?
    .ok_or("no patch: it would not beat the chunks")?;
    let secs = t.elapsed().as_secs_f64();
    let pin = s.put_index(&build.pin)?;
    s.pin(build.id, pin)?;
    println!(
        "{{\"op\":\"patch-make\",\"secs\":{secs:.3},\"peak_rss_kib\":{},\"pieces\":{},\"patch_bytes\":{},\"replaced_bytes\":{},\"patch\":\"{}\",\"index\":\"{}\"}}",
        peak_rss_kib(),
        build.index.pieces().len(),
        build.patch_bytes,
        build.replaced_bytes,
        build.id.to_hex(),
        r.index_id.to_hex()
    );
    Ok(())
}

fn cmd_patch_fetch(origin: &Path, node: &Path, patch: &str, index: &str) -> Res {
    let o = FsStore::open(origin)?;
    let n = FsStore::open_or_create(node)?;
    let target = o.get_index(&Hash::from_hex(index)?)?;
    let pid = Hash::from_hex(patch)?;
    let p = PatchIndex::load(&o, &pid, u64::MAX)?;
    n.put_index(&target)?;
    n.put(pid, &o.get(&pid)?)?;
    let mut bytes = 0u64;
    for piece in p.pieces() {
        let b = o.get(&piece.hash)?;
        bytes += b.len() as u64;
        n.put(piece.hash, &b)?;
    }
    println!(
        "{{\"op\":\"patch-fetch\",\"pieces\":{},\"piece_bytes\":{bytes}}}",
        p.pieces().len()
    );
    Ok(())
}

fn cmd_patch_apply(store: &Path, base: &Path, patch: &str, index: &str) -> Res {
    let t = Instant::now();
    let s = FsStore::open(store)?;
    let target = s.get_index(&Hash::from_hex(index)?)?;
    let patch = PatchIndex::load(&s, &Hash::from_hex(patch)?, u64::MAX)?;
    let base = File::open(base)?;
    let r = rebuild_from_patch(&s, &target, &patch, &base, &mut |_, _| {})?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"op\":\"patch-apply\",\"secs\":{secs:.3},\"peak_rss_kib\":{},\"bytes\":{},\"pieces_applied\":{},\"failed\":{},\"chunks_produced\":{},\"bytes_produced\":{},\"still_missing\":{}}}",
        peak_rss_kib(),
        target.total_size(),
        r.pieces_applied,
        r.failed.len(),
        r.chunks_produced,
        r.bytes_produced,
        r.still_missing.len()
    );
    if !r.failed.is_empty() {
        return Err(format!("{} pieces failed: {:?}", r.failed.len(), r.failed[0].error).into());
    }
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
        ["patch", old, new] => cmd_patch(Path::new(old), Path::new(new), None, None),
        ["patch", old, new, kib] => cmd_patch(Path::new(old), Path::new(new), Some(kib.parse()?), None),
        ["patch", old, new, kib, level] => cmd_patch(
            Path::new(old),
            Path::new(new),
            Some(kib.parse()?),
            Some(level.parse()?),
        ),
        ["synth", old, new, mib] => cmd_synth(Path::new(old), Path::new(new), mib.parse()?),
        ["patch-make", store, old, new] => {
            cmd_patch_make(Path::new(store), Path::new(old), Path::new(new))
        }
        ["patch-fetch", origin, node, patch, index] => {
            cmd_patch_fetch(Path::new(origin), Path::new(node), patch, index)
        }
        ["patch-apply", store, base, patch, index] => {
            cmd_patch_apply(Path::new(store), Path::new(base), patch, index)
        }
        _ => Err("usage: blobstore-bench ingest STORE FILE | assemble STORE INDEX OUT | delta OLD NEW [AVG_KIB] | params OLD NEW | patch OLD NEW [PIECE_KIB [LEVEL]] | synth OLD NEW MIB | patch-make STORE OLD NEW | patch-fetch ORIGIN NODE PATCH INDEX | patch-apply NODE BASE PATCH INDEX".into()),
    }
}
