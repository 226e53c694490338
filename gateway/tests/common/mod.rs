//! Test fixtures for the gateway: keys and a trust root, releases ingested
//! into a store, and a real nginx serving an origin directory on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, FsStore, ingest};
use meshota_manifest::trust::{ReleaseKey, RootKey, Scope};
use meshota_manifest::{
    Component, Expiration, ReleaseManifest, RolloutPolicy, SecretKey, SignedDocument, TrustRoot,
    UnixTime, Verified,
};

/// A dev trust root with one root key and one unrestricted release key.
pub struct Keys {
    pub root: SecretKey,
    pub release: SecretKey,
    pub trust: Verified<TrustRoot>,
}

pub fn keys() -> Keys {
    let root = SecretKey::from_seed([1; 32], "root").unwrap();
    let release = SecretKey::from_seed([2; 32], "release").unwrap();
    let body = TrustRoot {
        version: 1,
        expires: None,
        root_keys: vec![RootKey {
            name: "root".into(),
            key: root.public().clone(),
        }],
        root_threshold: 1,
        release_keys: vec![ReleaseKey {
            name: "release".into(),
            key: release.public().clone(),
            scope: Scope::default(),
            expires: None,
        }],
        release_threshold: 1,
        revoked: vec![],
    };
    let doc = SignedDocument::sign(body, &[&root]).unwrap();
    let trust = TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).unwrap();
    Keys {
        root,
        release,
        trust,
    }
}

/// Deterministic pseudo-random bytes (xorshift), `len` long.
pub fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Ingests `img` into `store`, pins it, and returns the signed manifest's
/// encoding for `version`.
pub fn release(store: &FsStore, keys: &Keys, img: &[u8], version: &str, sv: u64) -> Vec<u8> {
    let report = ingest(store, img, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let body = ReleaseManifest {
        product: "sensor".into(),
        hardware: "rpi4".into(),
        channel: "stable".into(),
        version: version.into(),
        security_version: sv,
        created: UnixTime(1_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: img.len() as u64,
            image_hash: report.index.image_hash(),
            chunk_index: report.index_id,
            chunking: DEFAULT_PARAMS,
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[&keys.release]).unwrap();
    store.pin(doc.id(), report.index_id).unwrap();
    doc.encode().unwrap()
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nginx is not installed: run scripts/test.sh, which installs it");
}

/// A real nginx serving `root` on a free loopback port, with its own
/// config, logs and pid file in a temporary directory; stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx serving `root`; `extra` is added inside the `server`
    /// block (e.g. a `location` with `limit_rate`).
    pub fn start(root: &Path, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path();
        std::fs::create_dir_all(n.join("tmp")).unwrap();
        let port = free_port();
        // As root, workers would switch to `nobody`, who cannot read the
        // test's private temporary directories.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "daemon off;\nmaster_process off;\n{user}\npid {n}/nginx.pid;\nerror_log {n}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               log_format origin '$request_uri $status \"$http_range\" $body_bytes_sent';\n\
               access_log {n}/access.log origin;\n\
               client_body_temp_path {n}/tmp; proxy_temp_path {n}/tmp; fastcgi_temp_path {n}/tmp;\n\
               uwsgi_temp_path {n}/tmp; scgi_temp_path {n}/tmp;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; {extra} }}\n\
             }}\n",
            n = n.display(),
            root = root.display(),
        );
        std::fs::write(n.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(n.join("nginx.conf"))
            .arg("-p")
            .arg(n)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}: {}",
                std::fs::read_to_string(me.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// The origin's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The access log lines so far: `URI STATUS "RANGE" BODY_BYTES`.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
