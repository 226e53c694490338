//! A real mosquitto broker on loopback for tests: a free port, its own
//! config and log in a temporary directory, stopped on drop. Shared by the
//! gateway's and the node's tests (`#[path]` include).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("mosquitto is not installed: run scripts/test.sh, which installs it");
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running mosquitto; stopped on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto on `port` (pick one with [`free_port`]).
    pub fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path();
        // As root, mosquitto would switch to the `mosquitto` user, who
        // cannot write the test's private log.
        let user = if is_root() { "user root\n" } else { "" };
        let conf = format!(
            "{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             log_dest file {n}/mosquitto.log\nlog_type all\n",
            n = n.display()
        );
        std::fs::write(n.join("mosquitto.conf"), conf).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(n.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}: {}",
                std::fs::read_to_string(me.dir.path().join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
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
