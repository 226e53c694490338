//! The QUIC transport alone, as the mesh uses it: two endpoints on
//! loopback (aws-lc-rs, X25519MLKEM768, ML-DSA channel binding), one
//! connection, messages of one size sent through `PeerSender` and read
//! through `PeerConn::recv`, no store, no hashing, no protocol core. It is
//! the ceiling any meshota transfer over QUIC can reach on this machine;
//! `benches/mesh.sh` reports it beside the daemons and nginx.
//!
//! Usage: `meshota-quic-bench [TOTAL_MIB [MESSAGE_KIB]]` (default 64, 20).
//! Prints one JSON object: bytes, messages, seconds, mib_per_s.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshota_manifest::SecretKey;
use meshota_mesh::quic::{Admission, QuicEndpoint};

/// The whole run must finish within this.
const LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let total_mib = args.first().copied().unwrap_or(64);
    let message_kib = args.get(1).copied().unwrap_or(20);
    if total_mib == 0 || message_kib == 0 || message_kib > 4096 {
        eprintln!("usage: meshota-quic-bench [TOTAL_MIB [MESSAGE_KIB (1-4096)]]");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshota-quic-bench: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(async { tokio::time::timeout(LIMIT, run(total_mib, message_kib)).await }) {
        Ok(Ok(line)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("meshota-quic-bench: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("meshota-quic-bench: not done within {} s", LIMIT.as_secs());
            ExitCode::from(1)
        }
    }
}

async fn run(total_mib: u64, message_kib: u64) -> Result<String, String> {
    let key = |n: u8| SecretKey::from_seed([n; 32], "bench").map_err(|e| e.to_string());
    let (a, b) = (key(1)?, key(2)?);
    let ids: BTreeSet<_> = [a.id(), b.id()].into_iter().collect();
    let addr = "127.0.0.1:0".parse().map_err(|_| "address")?;
    let bind = |k: SecretKey| {
        QuicEndpoint::bind(addr, k, "bench".into(), Admission::AllowList(ids.clone()))
            .map_err(|e| e.to_string())
    };
    let (ea, eb) = (bind(a)?, bind(b)?);
    let server = eb.local_addr().map_err(|e| e.to_string())?;
    let (ca, cb) = tokio::join!(ea.connect(server), eb.accept());
    let ca = ca.map_err(|e| e.to_string())?;
    let mut cb = cb.ok_or("no connection")?.map_err(|e| e.to_string())?;
    let len = usize::try_from(message_kib * 1024).map_err(|_| "size")?;
    let count = (total_mib * 1024).div_ceil(message_kib);
    let sender = ca.sender();
    let start = Instant::now();
    let send = tokio::spawn(async move {
        let message = vec![0x5a_u8; len];
        for _ in 0..count {
            sender.send(&message).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    let mut bytes = 0u64;
    for _ in 0..count {
        let m = cb
            .recv()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("connection closed early")?;
        bytes += m.len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    send.await.map_err(|e| e.to_string())??;
    drop(ca);
    Ok(format!(
        "{{\"bytes\":{bytes},\"messages\":{count},\"seconds\":{seconds:.6},\"mib_per_s\":{:.1}}}",
        bytes as f64 / 1_048_576.0 / seconds
    ))
}
