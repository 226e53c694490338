//! `meshota publish` and `meshota gateway run` end to end: the binary
//! writes an origin, a real nginx on loopback serves it, a gateway node of
//! a testnet syncs it and the mesh installs it. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "../../gateway/tests/common/mosquitto.rs"]
mod mosquitto;
#[path = "../../gateway/tests/common/nginx.rs"]
mod nginx;
#[path = "../../gateway/tests/common/process.rs"]
mod process;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Down, init_trust, meshota, ok, run, stderr};
use mosquitto::{Mosquitto, free_port};
use nginx::Nginx;
use serde_json::Value;

fn write_image(path: &Path, len: u32, mul: u32) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(mul) >> 11) as u8)
        .collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn publish_writes_an_origin_once_and_a_second_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    init_trust(dir, "k/rel.pub");
    write_image(&dir.join("v1.img"), 300_000, 2_654_435_761);
    ok(
        dir,
        &[
            "release",
            "create",
            "--trust",
            "trust.mota",
            "--key",
            "k/rel.key",
            "--image",
            "v1.img",
            "--hardware",
            "rpi4",
            "--version",
            "1.0.0",
            "--security-version",
            "1",
            "--store",
            "store",
            "--out",
            "v1.mota",
        ],
    );
    let args = [
        "publish",
        "--store",
        "store",
        "--release",
        "v1.mota",
        "--to",
        "origin",
        "--trust",
        "trust.mota",
        "--key",
        "k/rel.key",
        "--json",
    ];
    let first: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    assert_eq!(first["catalog_sequence"], 1);
    assert_eq!(first["catalog_written"], true);
    assert!(first["objects_written"].as_u64().unwrap() > 3, "{first}");
    assert!(dir.join("origin/catalog.mota").exists());
    let again: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    assert_eq!(again["objects_written"], 0);
    assert_eq!(again["objects_present"], first["objects_written"]);
    assert_eq!(again["catalog_written"], false);

    // A key the trust root does not list: exit 1, named, nothing written.
    ok(dir, &["keys", "generate", "--out", "k", "--name", "other"]);
    let o = run(
        dir,
        &[
            "publish",
            "--store",
            "store",
            "--release",
            "v1.mota",
            "--to",
            "origin2",
            "--trust",
            "trust.mota",
            "--key",
            "k/other.key",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown key"), "{}", stderr(&o));
    assert!(!dir.join("origin2").exists());
}

/// Runs `testnet down` on drop.
fn status(cfg: &Path) -> Option<Value> {
    let o = std::process::Command::new(meshota())
        .args([
            "node",
            "status",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// Every node of the testnet in `tn` runs `version` confirmed (bounded:
/// 120 s). `testnet status --watch` follows `testnet publish`, not the
/// origin, so this polls each node's status.
fn wait_all_confirmed(tn: &Path, nodes: usize, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states: Vec<(String, String)> = (0..nodes)
            .map(|i| {
                let s = status(&tn.join(format!("node-{i}/node.toml"))).unwrap_or_default();
                (
                    s["installed"]["version"]
                        .as_str()
                        .unwrap_or("-")
                        .to_string(),
                    s["state"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect();
        if states
            .iter()
            .all(|(v, st)| v == version && st == "confirmed")
        {
            return;
        }
        assert!(Instant::now() < deadline, "after 120 s: {states:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A subscriber to `meshota/<fleet>/#` on its own thread and runtime;
/// returns (topic, payload) pairs on a channel once subscribed.
fn subscribe(port: u16, fleet: &str) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let topic = format!("meshota/{fleet}/#");
    std::thread::spawn(move || {
        let mut opts = MqttOptions::new("dashboard", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(opts, 16);
        client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed within 10 s");
    rx
}

/// Publishes one QoS 1 message and waits for its PUBACK (bounded).
fn notify(port: u16, topic: &str, payload: &[u8]) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("release-engineer", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 4);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for ev in conn.iter() {
        if matches!(ev, Ok(Event::Incoming(Packet::PubAck(_)))) {
            return;
        }
        assert!(Instant::now() < deadline, "no PUBACK for the notification");
    }
}

#[test]
fn nginx_origin_to_gateway_to_a_four_node_mesh_all_confirmed_with_reports_on_mosquitto() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let tn = root.join("tn");
    let ds = tn.to_str().unwrap();
    ok(
        root,
        &[
            "testnet",
            "up",
            "--nodes",
            "4",
            "--dir",
            ds,
            "--base-port",
            "0",
            "--image-size",
            "1",
        ],
    );
    let _guard = Down(tn.clone());
    ok(root, &["testnet", "down", "--dir", ds]);

    // The release engineer's side: create, publish, serve with nginx.
    let create = |img: &str, version: &str, sv: &str, out: &str| {
        ok(
            root,
            &[
                "release",
                "create",
                "--trust",
                "tn/trust.mota",
                "--key",
                "tn/keys/release.key",
                "--image",
                img,
                "--hardware",
                "testnet",
                "--version",
                version,
                "--security-version",
                sv,
                "--store",
                "pub-store",
                "--out",
                out,
            ],
        );
        ok(
            root,
            &[
                "publish",
                "--store",
                "pub-store",
                "--release",
                out,
                "--to",
                "origin",
                "--trust",
                "tn/trust.mota",
                "--key",
                "tn/keys/release.key",
            ],
        );
    };
    write_image(&root.join("v1.img"), 400_000, 2_246_822_519);
    create("v1.img", "1.0.0", "10", "v1.mota");
    let nginx = Nginx::start(&root.join("origin"), "");
    let broker = Mosquitto::start(free_port());
    let fleet = "north";
    let dashboard = subscribe(broker.port, fleet);

    // Node 0 becomes the gateway: [gateway] and [gateway.mqtt] in its
    // config. The poll interval is an hour: after the first poll at start,
    // only an MQTT notification makes it look again.
    let cfg0 = tn.join("node-0/node.toml");
    let mut text = std::fs::read_to_string(&cfg0).unwrap();
    text.push_str(&format!(
        "\n[gateway]\norigin = \"{}\"\npoll_interval_secs = 3600\n\n[gateway.mqtt]\nbroker = \"{}\"\nfleet = \"{fleet}\"\n",
        nginx.url(),
        broker.addr(),
    ));
    std::fs::write(&cfg0, text).unwrap();
    ok(root, &["testnet", "up", "--dir", ds]);
    wait_all_confirmed(&tn, 4, "1.0.0");

    let s = status(&cfg0).unwrap();
    let g = &s["gateway"];
    assert_eq!(g["releases_injected"], 1, "{s:#}");
    assert_eq!(g["last_sync"]["ok"], true, "{s:#}");
    assert_eq!(g["last_sync"]["catalog_sequence"], 1, "{s:#}");
    // Chunks came from nginx once each.
    let log = nginx.access_log();
    let chunk_gets: Vec<&str> = log
        .iter()
        .filter(|l| l.starts_with("/chunks/"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<_> = chunk_gets.iter().collect();
    assert!(!chunk_gets.is_empty());
    assert_eq!(
        chunk_gets.len(),
        distinct.len(),
        "no chunk fetched twice: {log:?}"
    );

    // The dashboard sees a report from every node on 1.0.0, and a summary
    // counting four nodes on it.
    let node_ids: Vec<String> = (0..4)
        .map(|i| {
            status(&tn.join(format!("node-{i}/node.toml"))).unwrap()["node_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut on_v1 = std::collections::BTreeSet::new();
    let mut summary_ok = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_v1.len() < 4 || !summary_ok {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((topic, payload)) = dashboard.recv_timeout(left) else {
            panic!(
                "after 60 s: reports on 1.0.0 from {on_v1:?}, summary ok {summary_ok}; gateway {:#}",
                status(&cfg0).unwrap()["gateway"]
            );
        };
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if topic == format!("meshota/{fleet}/summary") {
            summary_ok = v["versions"]["1.0.0"] == 4;
        } else if v["installed_version"] == "1.0.0" {
            let node = v["node"].as_str().unwrap().to_string();
            assert_eq!(topic, format!("meshota/{fleet}/{node}/report"));
            assert!(node_ids.contains(&node), "{node}");
            assert!(
                v["document"].as_str().unwrap().starts_with("4d4f544101"),
                "MOTA v1 header"
            );
            on_v1.insert(node);
        }
    }

    // Release 2.0.0: published to the origin, announced on MQTT; the
    // gateway syncs at once (its next poll is an hour away).
    let mut v2 = std::fs::read(root.join("v1.img")).unwrap();
    v2[100_000..140_000].fill(7);
    std::fs::write(root.join("v2.img"), v2).unwrap();
    create("v2.img", "2.0.0", "11", "v2.mota");
    // A notification reaches the gateway only once its subscription is
    // acknowledged (the status says so).
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&cfg0).unwrap()["gateway"]["mqtt"]["subscribed"] != true {
        assert!(Instant::now() < deadline, "the gateway never subscribed");
        std::thread::sleep(Duration::from_millis(100));
    }
    notify(
        broker.port,
        &format!("meshota/{fleet}/releases"),
        b"{\"version\":\"2.0.0\"}",
    );
    wait_all_confirmed(&tn, 4, "2.0.0");
    let s = status(&cfg0).unwrap();
    assert_eq!(s["gateway"]["releases_injected"], 2, "{s:#}");
    assert_eq!(s["gateway"]["mqtt"]["notifications"], 1, "{s:#}");
    assert_eq!(s["gateway"]["last_sync"]["catalog_sequence"], 2, "{s:#}");

    // `gateway sync` asks for a poll now; a plain node refuses it.
    let before = s["gateway"]["syncs"].as_u64().unwrap();
    ok(
        root,
        &["gateway", "sync", "--config", cfg0.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&cfg0).unwrap()["gateway"]["syncs"].as_u64().unwrap() <= before {
        assert!(Instant::now() < deadline, "no poll after `gateway sync`");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cfg1 = tn.join("node-1/node.toml");
    let o = run(
        root,
        &["gateway", "sync", "--config", cfg1.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a gateway"), "{}", stderr(&o));
}

/// A one-node testnet in `root/tn`, made and stopped (its guard stops it
/// again if a test restarts it); the node's config.
fn one_stopped_node(root: &Path) -> (std::path::PathBuf, Down) {
    let tn = root.join("tn");
    let (_, guard) = common::testnet_up(&tn, 1, &[]);
    ok(root, &["testnet", "down", "--dir", tn.to_str().unwrap()]);
    (tn.join("node-0/node.toml"), guard)
}

#[test]
fn gateway_run_refuses_a_config_without_a_gateway_table_or_with_an_unreadable_ca_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (cfg, _guard) = one_stopped_node(root);
    let cfgs = cfg.to_str().unwrap();

    let o = run(root, &["gateway", "run", "--config", cfgs]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no [gateway] table"),
        "{}",
        stderr(&o)
    );

    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[gateway]\norigin = \"https://127.0.0.1:9/\"\nca_file = \"missing-ca.pem\"\n");
    std::fs::write(&cfg, text).unwrap();
    let o = run(root, &["gateway", "run", "--config", cfgs]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("node.toml") && e.contains("missing-ca.pem"),
        "{e}"
    );
}

#[test]
fn node_stop_ends_a_gateway_whose_origin_sync_hangs() {
    // An origin that accepts and then never answers: the gateway's first
    // sync waits on it (up to its 120 s request timeout).
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", origin.local_addr().unwrap());
    let (accepted, accepted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: at most 8 connections, each held until the test ends.
        for conn in origin.incoming().take(8) {
            held.push(conn);
            let _ = accepted.send(());
        }
    });

    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (cfg, _guard) = one_stopped_node(root);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[gateway]\norigin = \"{url}\"\nrequest_timeout_secs = 120\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    ok(root, &["testnet", "up", "--dir", "tn"]);
    accepted_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the gateway polls its origin at start");

    let out = ok(root, &["node", "stop", "--config", cfg.to_str().unwrap()]);
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    let pid = answer["pid"].as_u64().unwrap();
    assert!(
        !common::alive(pid),
        "`node stop` returned while the gateway (pid {pid}) still runs"
    );
}
