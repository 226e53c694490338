//! An adversarial mesh peer, as a real process: it holds a genuine signed
//! release and proves a genuine device key, but serves every chunk with one
//! byte flipped. Honest nodes must ban it and converge anyway.
//!
//! Usage: `meshota-adversary TRUST MANIFEST IMAGE PEER_ADDR...`
//! It dials each peer, runs for at most 120 s, and prints one line per
//! link it lost (a ban shows as a closed link).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, MemStore, ingest};
use meshota_manifest::{Expiration, SecretKey, SignedDocument, TrustRoot};
use meshota_mesh::quic::{Admission, QuicEndpoint};
use meshota_mesh::{
    Action, Config, Event, Installed, Limits, Node, PeerId, Timestamp, TrickleConfig, wire,
};
use tokio::sync::mpsc;

/// The longest the adversary runs.
const LIFETIME: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: meshota-adversary TRUST MANIFEST IMAGE PEER_ADDR...");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("adversary: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("adversary: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let trust_doc =
        SignedDocument::<TrustRoot>::decode(&read(&args[0])?).map_err(|e| e.to_string())?;
    let trust = TrustRoot::verify_initial(&trust_doc, Expiration::dangerous_ignore())
        .map_err(|e| e.to_string())?;
    let manifest = read(&args[1])?;
    let image = read(&args[2])?;
    let peers: Vec<SocketAddr> = args[3..]
        .iter()
        .map(|a| a.parse().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<_, _>>()?;

    let store = MemStore::new();
    let report = ingest(&store, image.as_slice(), &DEFAULT_PARAMS, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let index_bytes = report.index.encode().map_err(|e| e.to_string())?;

    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    seed[8] = 0xad;
    let key = SecretKey::from_seed(seed, "adversary").map_err(|e| e.to_string())?;
    let ep = QuicEndpoint::bind(
        "127.0.0.1:0".parse().map_err(|_| "addr")?,
        SecretKey::from_seed(seed, "adversary").map_err(|e| e.to_string())?,
        "any".into(),
        Admission::Open,
    )
    .map_err(|e| e.to_string())?;
    let config = Config {
        node_id: key.id(),
        hardware: "adversary".into(),
        channel: "none".into(),
        seed: 1,
        limits: Limits::DEFAULT,
        trickle: TrickleConfig::IP,
        wall_clock_at_zero: None,
    };
    let start = Instant::now();
    let now = || Timestamp(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let mut core = Node::new(config, trust, Installed::default(), now());
    core.add_release(now(), &manifest, Some(&index_bytes))
        .map_err(|e| e.to_string())?;
    core.add_chunks(now(), report.index.chunks().iter().map(|c| c.hash));

    let (tx, mut rx) = mpsc::channel::<(u64, Option<Vec<u8>>)>(1024);
    let mut outs = Vec::new();
    for (i, addr) in peers.iter().enumerate() {
        let mut conn = ep
            .connect(*addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let (otx, mut orx) = mpsc::channel::<Vec<u8>>(1024);
        outs.push(otx);
        let tx = tx.clone();
        let id = i as u64;
        core.handle(
            now(),
            Event::LinkUp {
                peer: PeerId(id),
                node: conn.peer_id(),
            },
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = conn.recv() => match m {
                        Ok(Some(b)) => { if tx.send((id, Some(b.to_vec()))).await.is_err() { break } }
                        _ => break,
                    },
                    o = orx.recv() => match o {
                        Some(b) => { if conn.send(&b).await.is_err() { break } }
                        None => break,
                    },
                }
            }
            let _ = tx.send((id, None)).await;
        });
    }
    let mut open = peers.len();
    while start.elapsed() < LIFETIME && open > 0 {
        while let Some(a) = core.poll() {
            match a {
                Action::Send { peer, bytes } => {
                    if let Some(o) = outs.get(peer.0 as usize) {
                        let _ = o.try_send(bytes);
                    }
                }
                Action::ServeChunk {
                    peer,
                    request,
                    hash,
                } => {
                    if let Ok(mut data) = store.get(&hash) {
                        data[0] ^= 0xff; // the lie
                        if let (Ok(bytes), Some(o)) = (
                            wire::chunk_response(request, hash, data),
                            outs.get(peer.0 as usize),
                        ) {
                            let _ = o.try_send(bytes);
                        }
                    }
                }
                _ => {}
            }
        }
        let deadline = core
            .poll_timeout()
            .map_or(1000, |t| t.0.saturating_sub(now().0))
            .min(1000);
        tokio::select! {
            m = rx.recv() => match m {
                Some((peer, Some(bytes))) => core.handle(now(), Event::Message { peer: PeerId(peer), bytes }),
                Some((peer, None)) => {
                    open -= 1;
                    println!("link {peer} closed");
                    core.handle(now(), Event::LinkDown { peer: PeerId(peer) });
                }
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(deadline)) => core.handle(now(), Event::Timeout),
        }
    }
    println!("adversary done: {open} link(s) still open");
    Ok(())
}
