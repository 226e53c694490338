//! Coded broadcast over LoRa frames: airtime against the lossless bound,
//! and coding CPU time against hashing the same object.
//!
//! For each payload size, data rate and loss rate, one sender broadcasts an
//! object as RaptorQ symbols (source symbols first, then repair symbols)
//! to `RECEIVERS` receivers, each losing every frame independently with the
//! given probability (seeded), until every receiver has decoded and
//! verified it. Reported:
//! - `frames / K`: frames sent per source symbol;
//! - airtime of those frames, and its ratio to two bounds: the lossless
//!   bound (the payload cut into full frames with no symbol header, each
//!   sent once) and the loss bound (lossless bound / (1 - loss): the least
//!   any scheme needs on average for one receiver);
//! - encode and decode CPU time as a ratio to one BLAKE3 hash of the object
//!   (the check every receiver does anyway), measured in this process.
//!
//! Run: `cargo run --release -p meshota-radios --example coding_airtime`
//! (benches/radios.sh does this). Output: markdown on stdout.
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock
#![allow(clippy::cast_precision_loss)]

use std::time::Instant;

use meshota_radios::{
    EU868, FrameCodec, ObjectDecoder, ObjectEncoder, SeededRng, frame::OVERHEAD, symbol_size_for,
};

const RECEIVERS: usize = 10;
const SEEDS: u64 = 5;

struct Run {
    frames: u64,
    k: u64,
}

fn broadcast(data: &[u8], symbol_size: usize, loss: f64, seed: u64) -> Result<Run, String> {
    let mut enc = ObjectEncoder::new(data, symbol_size).map_err(|e| e.to_string())?;
    let info = *enc.info();
    let mut decoders: Vec<ObjectDecoder> = (0..RECEIVERS)
        .map(|_| ObjectDecoder::new(info))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut rng = SeededRng::new(seed);
    let k = u64::from(info.source_symbols());
    let mut frames = 0u64;
    let mut queue = enc.source_symbols().into_iter();
    // Bounded: four times K frames at most.
    while frames < 4 * k {
        let symbol = match queue.next() {
            Some(s) => s,
            None => {
                queue = enc.repair_symbols(32).into_iter();
                continue;
            }
        };
        frames += 1;
        for d in &mut decoders {
            if !d.is_complete() && !rng.chance(loss) {
                d.push(&symbol).map_err(|e| e.to_string())?;
            }
        }
        if decoders.iter().all(ObjectDecoder::is_complete) {
            return Ok(Run { frames, k });
        }
    }
    Err(format!("not decoded after {frames} frames"))
}

fn main() -> Result<(), String> {
    println!(
        "| payload | data rate (frame) | loss | frames / K (mean of {SEEDS} seeds, max) | airtime s | vs lossless bound | vs loss bound |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut cpu = Vec::new();
    for &len in &[20 * 1024usize, 100 * 1024] {
        let mut data_rng = SeededRng::new(len as u64);
        let data: Vec<u8> = (0..len).map(|_| data_rng.next_u64() as u8).collect();
        for &dr in &[0u8, 5] {
            let limit = EU868.frame_limit(&[dr]).map_err(|e| e.to_string())?;
            let codec = FrameCodec::new(&[0; 32], limit).map_err(|e| e.to_string())?;
            let size = symbol_size_for(codec.max_payload());
            let params = EU868.data_rate(dr).map_err(|e| e.to_string())?.params();
            let frame_len = OVERHEAD + 8 + size;
            let frame_us = params
                .time_on_air_us(frame_len)
                .map_err(|e| e.to_string())?;
            let full_us = params.time_on_air_us(limit).map_err(|e| e.to_string())?;
            let bound_frames = len.div_ceil(codec.max_payload()) as f64;
            let bound_s = bound_frames * full_us as f64 / 1e6;
            for &loss in &[0.0, 0.1, 0.3] {
                let mut ratios = Vec::new();
                let mut frames_total = 0u64;
                for seed in 0..SEEDS {
                    let run = broadcast(&data, size, loss, seed)?;
                    ratios.push(run.frames as f64 / run.k as f64);
                    frames_total += run.frames;
                }
                let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
                let max = ratios.iter().copied().fold(0.0, f64::max);
                let airtime_s = frames_total as f64 / SEEDS as f64 * frame_us as f64 / 1e6;
                println!(
                    "| {} KiB | DR{dr} ({limit} B) | {:.0}% | {mean:.3} ({max:.3}) | {airtime_s:.1} | {:.2}x | {:.2}x |",
                    len / 1024,
                    loss * 100.0,
                    airtime_s / bound_s,
                    airtime_s / (bound_s / (1.0 - loss)),
                );
            }
            // CPU: encode (all source + K/10 repair) and one decode from
            // source symbols with 10% replaced by repair, against BLAKE3.
            let t = Instant::now();
            let hash = blake3::hash(&data);
            let hash_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut enc = ObjectEncoder::new(&data, size).map_err(|e| e.to_string())?;
            let source = enc.source_symbols();
            let repair = enc.repair_symbols(source.len() as u32 / 10 + 8);
            let encode_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut dec = ObjectDecoder::new(*enc.info()).map_err(|e| e.to_string())?;
            let mut done = false;
            for s in source.iter().skip(source.len() / 10).chain(repair.iter()) {
                if dec.push(s).map_err(|e| e.to_string())?.is_some() {
                    done = true;
                    break;
                }
            }
            let decode_s = t.elapsed().as_secs_f64();
            if !done || enc.info().id != *hash.as_bytes() {
                return Err("decode for the CPU measurement failed".into());
            }
            cpu.push((len, dr, size, hash_s, encode_s, decode_s));
        }
    }
    println!();
    println!(
        "| payload | symbol size | BLAKE3 (baseline) | encode | decode (10% repair) | encode / BLAKE3 | decode / BLAKE3 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (len, dr, size, h, e, d) in cpu {
        println!(
            "| {} KiB, DR{dr} | {size} B | {:.1} µs | {:.2} ms | {:.2} ms | {:.0}x | {:.0}x |",
            len / 1024,
            h * 1e6,
            e * 1e3,
            d * 1e3,
            e / h,
            d / h
        );
    }
    Ok(())
}
