//! `meshota provision image|apply` through the binary: signed, sealed,
//! deterministic squashfs images built from the registry, read by Debian's
//! `unsquashfs`, and installed on a device only when every check passes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod common;
#[path = "../../gateway/tests/common/mosquitto.rs"]
mod mosquitto;
#[path = "../../gateway/tests/common/process.rs"]
mod process;
use common::{ok, run, stderr};

const HWID: &str = "10000000abcdef01";
const HWID2: &str = "10000000abcdef02";
const ISSUED: &str = "2026-11-20T00:00:00Z";
const SECRET: &str = "psk = \"correct horse battery staple\"\n";

/// `unsquashfs`, which scripts/test.sh installs (Debian squashfs-tools).
fn unsquashfs() -> &'static str {
    for p in [
        "/usr/bin/unsquashfs",
        "/usr/sbin/unsquashfs",
        "/bin/unsquashfs",
    ] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("unsquashfs not found: install squashfs-tools (scripts/test.sh does)");
}

fn device(dir: &Path, id: &str, hwid: &str, out: &str) {
    ok(
        dir,
        &[
            "provision",
            "keygen",
            "--device-id",
            id,
            "--hardware",
            "rpi4",
            "--hwid",
            hwid,
            "--out",
            out,
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "sign",
            "--ca",
            "factory",
            "--csr",
            &format!("{out}/device.csr"),
            "--out",
            &format!("{out}/device.crt"),
            "--hwid",
            hwid,
            "--kem-pub",
            &format!("{out}/kem.pub"),
        ],
    );
}

/// A trust root with provisioning key `k/prov` (scope `prov_scope`), root
/// and intermediate CAs, devices pump-1 (`dev/`) and pump-2 (`dev2/`),
/// configuration and secret directories, and pump-1's node config
/// (`node/node.toml`, keys in `dev/`).
fn station(dir: &Path, prov_scope: &str) {
    ok(dir, &["keys", "generate", "--out", "k", "--name", "root"]);
    ok(dir, &["keys", "generate", "--out", "k", "--name", "prov"]);
    ok(
        dir,
        &[
            "trust",
            "init",
            "--root-key",
            "k/root.pub",
            "--threshold",
            "1",
            "--provisioning-key",
            &format!("k/prov.pub{prov_scope}"),
            "--sign",
            "k/root.key",
            "--out",
            "trust.mota",
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "ca",
            "root",
            "--name",
            "Acme Root",
            "--out",
            "root",
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            "Acme Factory",
            "--out",
            "factory",
        ],
    );
    device(dir, "pump-1", HWID, "dev");
    device(dir, "pump-2", HWID2, "dev2");
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/mesh.toml"), "peers = []\n").unwrap();
    std::fs::create_dir_all(dir.join("secret")).unwrap();
    std::fs::write(dir.join("secret/wifi.conf"), SECRET).unwrap();
    let node = dir.join("node");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(
        node.join("node.toml"),
        r#"hardware = "rpi4"
channel = "stable"
trust_root = "../trust.mota"
data_dir = "state"

[provision]
keys = "../dev"

[device]
install_record = "state/install.rec"

[device.slot_a]
path = "disk.img"
size = 4096

[device.slot_b]
path = "disk.img"
offset = 4096

[device.boot]
kind = "simulated"
records = "state/boot.rec"
"#,
    )
    .unwrap();
}

fn image_args<'a>(hwid: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "provision",
        "image",
        "--registry",
        "factory",
        "--hwid",
        hwid,
        "--out",
        out,
        "--config-dir",
        "conf",
        "--secret-dir",
        "secret",
        "--machine-id",
        "--key",
        "k/prov.key",
        "--trust-root",
        "trust.mota",
    ];
    if !extra.contains(&"--fleet") {
        v.extend_from_slice(&["--fleet", "north"]);
    }
    if !extra.contains(&"--issued") {
        v.extend_from_slice(&["--issued", ISSUED]);
    }
    v.extend_from_slice(extra);
    v
}

fn apply(dir: &Path, image: &str) -> std::process::Output {
    run(
        dir,
        &[
            "provision",
            "apply",
            "--image",
            image,
            "--config",
            "node/node.toml",
        ],
    )
}

fn rejected_apply(dir: &Path, image: &str) -> String {
    let o = apply(dir, image);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    stderr(&o)
}

fn installed(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join("node/state/provision/current").join(path)).unwrap()
}

#[test]
fn image_is_byte_identical_across_processes_and_unsquashfs_extracts_its_files() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    // Two separate processes, same inputs (sealed files included).
    ok(dir, &image_args(HWID, "a.sqfs", &[]));
    ok(dir, &image_args(HWID, "b.sqfs", &[]));
    let a = std::fs::read(dir.join("a.sqfs")).unwrap();
    assert_eq!(a, std::fs::read(dir.join("b.sqfs")).unwrap());
    // A changed mutable input gives another image.
    std::fs::write(dir.join("conf/mesh.toml"), "peers = [\"10.0.0.1:7070\"]\n").unwrap();
    ok(dir, &image_args(HWID, "c.sqfs", &[]));
    assert_ne!(a, std::fs::read(dir.join("c.sqfs")).unwrap());

    // unsquashfs reads the signed file as it is (the trailer follows the
    // squashfs's bytes_used).
    let list = Command::new(unsquashfs())
        .args(["-l", "-n"])
        .arg(dir.join("a.sqfs"))
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listing = String::from_utf8_lossy(&list.stdout);
    for p in [
        "etc/hostname",
        "etc/serial-number",
        "etc/mqtt-client-id",
        "etc/mqtt-group-id",
        "etc/machine-id",
        "etc/meshota/device.crt",
        "etc/meshota/root.crt",
        "etc/meshota/config/mesh.toml",
        "etc/meshota/secret/wifi.conf",
    ] {
        assert!(
            listing.contains(&format!("squashfs-root/{p}\n")),
            "{p}:\n{listing}"
        );
    }
    let x = dir.join("x");
    let o = Command::new(unsquashfs())
        .args(["-n", "-no-xattrs", "-d"])
        .arg(&x)
        .arg(dir.join("a.sqfs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &str| std::fs::read_to_string(x.join(p)).unwrap();
    let serial = read("etc/serial-number");
    assert_eq!(serial.trim().len(), 10);
    assert!(
        ok(
            dir,
            &[
                "provision",
                "registry",
                "export",
                "--ca",
                "factory",
                "--format",
                "csv"
            ]
        )
        .contains(&format!("pump-1,{}", serial.trim()))
    );
    assert_eq!(read("etc/hostname"), "pump-1\n");
    assert_eq!(read("etc/mqtt-client-id"), "pump-1\n");
    assert_eq!(read("etc/mqtt-group-id"), "north\n");
    assert_eq!(read("etc/machine-id").trim().len(), 32);
    assert_eq!(read("etc/meshota/config/mesh.toml"), "peers = []\n");
    assert_eq!(
        read("etc/meshota/root.crt"),
        std::fs::read_to_string(dir.join("factory/root.crt")).unwrap()
    );
    // The sealed file is not readable without the device's key.
    let sealed = std::fs::read(x.join("etc/meshota/secret/wifi.conf")).unwrap();
    assert_eq!(sealed.len(), SECRET.len() + 16);
    assert!(!sealed.windows(5).any(|w| w == b"horse"));
    // The chain in the image verifies against the root, as on the device.
    let v = ok(
        dir,
        &[
            "provision",
            "verify",
            "--root",
            "factory/root.crt",
            x.join("etc/meshota/device.crt").to_str().unwrap(),
        ],
    );
    assert!(v.contains("valid: device pump-1"), "{v}");
}

#[test]
fn image_refuses_unknown_hardware_revoked_devices_and_keys_outside_their_scope() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=x86");
    // The provisioning key may not provision rpi4: nothing is written.
    let o = run(dir, &image_args(HWID, "s.sqfs", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("outside its scope"), "{}", stderr(&o));
    assert!(!dir.join("s.sqfs").exists());

    let o = run(dir, &image_args("feedface", "u.sqfs", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no device in the registry"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("u.sqfs").exists());

    ok(
        dir,
        &[
            "provision",
            "revoke",
            "--ca",
            "factory",
            "--device-id",
            "pump-1",
        ],
    );
    let o = run(dir, &image_args(HWID, "r.sqfs", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("pump-1 is revoked"), "{}", stderr(&o));
    assert!(!dir.join("r.sqfs").exists());
}

#[test]
fn apply_installs_and_decrypts_then_reprovisioning_with_changed_mutable_files_replaces_them() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    ok(dir, &image_args(HWID, "a.sqfs", &[]));
    let o = apply(dir, "a.sqfs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("first provisioning"));
    assert_eq!(installed(dir, "etc/hostname"), "pump-1\n");
    assert_eq!(installed(dir, "etc/mqtt-group-id"), "north\n");
    assert_eq!(
        installed(dir, "etc/meshota/config/mesh.toml"),
        "peers = []\n"
    );
    assert_eq!(installed(dir, "etc/meshota/secret/wifi.conf"), SECRET);
    let secret = dir.join("node/state/provision/current/etc/meshota/secret/wifi.conf");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Changed mutable files, a later image: installed; the old generation is gone.
    std::fs::write(dir.join("conf/mesh.toml"), "peers = [\"10.0.0.1:7070\"]\n").unwrap();
    std::fs::write(dir.join("secret/wifi.conf"), "psk = \"new\"\n").unwrap();
    ok(
        dir,
        &image_args(HWID, "b.sqfs", &["--issued", "2026-11-21T00:00:00Z"]),
    );
    let o = apply(dir, "b.sqfs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("re-provisioned"));
    assert_eq!(
        installed(dir, "etc/meshota/config/mesh.toml"),
        "peers = [\"10.0.0.1:7070\"]\n"
    );
    assert_eq!(
        installed(dir, "etc/meshota/secret/wifi.conf"),
        "psk = \"new\"\n"
    );
    assert_eq!(installed(dir, "etc/serial-number").trim().len(), 10);
    let gens: Vec<_> = std::fs::read_dir(dir.join("node/state/provision"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(gens.len(), 2, "current and one generation: {gens:?}");

    // The older image again: refused as a replay, nothing changes.
    let e = rejected_apply(dir, "a.sqfs");
    assert!(e.contains("before the installed image"), "{e}");
    assert_eq!(
        installed(dir, "etc/meshota/secret/wifi.conf"),
        "psk = \"new\"\n"
    );
}

#[test]
fn apply_refuses_a_tampered_image_and_installs_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    ok(dir, &image_args(HWID, "a.sqfs", &[]));
    let good = std::fs::read(dir.join("a.sqfs")).unwrap();
    // A byte of the squashfs part, a byte of the signed header, the end.
    let squash_len = good.len()
        - 12
        - u32::from_le_bytes(good[good.len() - 12..good.len() - 8].try_into().unwrap()) as usize;
    for (name, at, expect) in [
        ("t1.sqfs", 100, "not the ones signed"),
        ("t2.sqfs", squash_len + 40, "does not verify"),
        ("t3.sqfs", good.len() - 1, "MOTAPIMG"),
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(dir.join(name), &bad).unwrap();
        let e = rejected_apply(dir, name);
        assert!(e.contains(expect), "{name}: {e}");
        assert!(!dir.join("node/state/provision/current").exists(), "{name}");
    }
    // A bare squashfs (no signature) is refused too.
    std::fs::write(dir.join("bare.sqfs"), &good[..squash_len]).unwrap();
    let e = rejected_apply(dir, "bare.sqfs");
    assert!(e.contains("not a signed provisioning image"), "{e}");
}

#[test]
fn apply_refuses_an_image_for_another_device() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    ok(dir, &image_args(HWID2, "other.sqfs", &[]));
    let e = rejected_apply(dir, "other.sqfs");
    assert!(
        e.contains("not for this device") && e.contains("pump-2"),
        "{e}"
    );
    assert!(!dir.join("node/state/provision/current").exists());
}

#[test]
fn apply_refuses_an_image_for_another_hardware_class_than_the_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    ok(dir, &image_args(HWID, "a.sqfs", &[]));
    let cfg = dir.join("node/node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("hardware = \"rpi4\"", "hardware = \"x86\""),
    )
    .unwrap();
    let e = rejected_apply(dir, "a.sqfs");
    assert!(
        e.contains("hardware class \"rpi4\", this node is \"x86\""),
        "{e}"
    );
    assert!(!dir.join("node/state/provision/current").exists());
}

#[test]
fn apply_refuses_image_whose_immutable_field_differs_from_installed() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    station(dir, ";hardware=rpi4");
    ok(dir, &image_args(HWID, "a.sqfs", &[]));
    assert!(apply(dir, "a.sqfs").status.success());
    ok(
        dir,
        &image_args(
            HWID,
            "south.sqfs",
            &["--fleet", "south", "--issued", "2026-11-22T00:00:00Z"],
        ),
    );
    let e = rejected_apply(dir, "south.sqfs");
    assert!(
        e.contains("immutable field /etc/mqtt-group-id")
            && e.contains("\"north\"")
            && e.contains("\"south\""),
        "{e}"
    );
    assert_eq!(installed(dir, "etc/mqtt-group-id"), "north\n");
}

mod serving {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::common::{meshota, ok, run, stderr};
    use super::mosquitto::Mosquitto;
    use super::process::{free_port, wait_listening};
    use super::{HWID, image_args, installed, station};

    /// A child process killed when the test ends, pass or fail.
    struct Guard(Child);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn serve(dir: &Path) -> (Guard, u16) {
        let port = free_port();
        let child = Command::new(meshota())
            .args([
                "provision",
                "serve",
                "--registry",
                "factory",
                "--images",
                "images",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let g = Guard(child);
        wait_listening(port, "provision serve", &dir.join("no-log"));
        (g, port)
    }

    fn publish_image(dir: &Path, extra: &[&str]) {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        ok(dir, &image_args(HWID, "images/pump-1.sqfs", extra));
    }

    #[test]
    fn serve_answers_only_signed_fetches_of_registered_active_devices() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        station(dir, ";hardware=rpi4");
        publish_image(dir, &[]);
        let (_server, port) = serve(dir);
        let url = format!("http://127.0.0.1:{port}");
        let out = ok(
            dir,
            &[
                "provision",
                "fetch",
                "--server",
                &url,
                "--config",
                "node/node.toml",
            ],
        );
        assert!(out.contains("first provisioning"), "{out}");
        assert_eq!(installed(dir, "etc/hostname"), "pump-1\n");

        // No signature: refused, no image bytes.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"GET /v1/provision/image/pump-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
        assert!(resp.contains("x-meshota-device"), "{resp}");

        // Another device's key cannot fetch pump-1's image: pump-2 asks
        // for its own, which the server does not have, but is authenticated.
        std::fs::write(
            dir.join("node/node2.toml"),
            std::fs::read_to_string(dir.join("node/node.toml"))
                .unwrap()
                .replace("../dev\"", "../dev2\"")
                .replace("\"state\"", "\"state2\""),
        )
        .unwrap();
        let o = run(
            dir,
            &[
                "provision",
                "fetch",
                "--server",
                &url,
                "--config",
                "node/node2.toml",
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("404") && stderr(&o).contains("no image for pump-2"),
            "{}",
            stderr(&o)
        );

        // A revoked device is refused.
        ok(
            dir,
            &[
                "provision",
                "revoke",
                "--ca",
                "factory",
                "--device-id",
                "pump-1",
            ],
        );
        let o = run(
            dir,
            &[
                "provision",
                "fetch",
                "--server",
                &url,
                "--config",
                "node/node.toml",
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("403") && stderr(&o).contains("revoked"),
            "{}",
            stderr(&o)
        );
    }

    #[test]
    fn an_mqtt_reprovision_message_makes_the_device_fetch_its_new_image() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let broker = Mosquitto::start(free_port());
        let mport = broker.port;
        station(dir, ";hardware=rpi4");
        publish_image(dir, &[]);
        let (_server, port) = serve(dir);
        let mqtt = format!("127.0.0.1:{mport}");
        let mut child = Command::new(meshota())
            .args([
                "provision",
                "fetch",
                "--server",
                &format!("http://127.0.0.1:{port}"),
            ])
            .args(["--config", "node/node.toml", "--watch", "--mqtt", &mqtt])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _watcher = Guard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the device never subscribed");
            if line.contains("watching meshota/north/pump-1/reprovision") {
                break;
            }
        }
        assert_eq!(
            installed(dir, "etc/meshota/config/mesh.toml"),
            "peers = []\n"
        );

        std::fs::write(dir.join("conf/mesh.toml"), "peers = [\"10.0.0.9:7070\"]\n").unwrap();
        publish_image(dir, &["--issued", "2026-11-21T00:00:00Z"]);
        ok(
            dir,
            &[
                "provision",
                "notify",
                "--mqtt",
                &mqtt,
                "--fleet",
                "north",
                "--device",
                "pump-1",
            ],
        );
        let start = Instant::now();
        while installed(dir, "etc/meshota/config/mesh.toml") != "peers = [\"10.0.0.9:7070\"]\n" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the device did not re-provision"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
