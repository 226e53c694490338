//! A real mosquitto broker on loopback for tests: a free port, its own
//! config and log in a temporary directory, stopped on drop. Shared by the
//! gateway's and the node's tests (`#[path]` include).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::process::{Child, Command, Stdio};

// The includer declares `process` (process.rs) beside this module.
#[allow(unused_imports)] // a re-export for the includers that use it
pub use super::process::free_port;
use super::process::{installed, is_root, wait_listening};

/// A running mosquitto; stopped on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto on `port` (pick one with [`free_port`]).
    pub fn start(port: u16) -> Self {
        Self::start_with(port, "persistence false\n")
    }

    /// Starts mosquitto on `port` keeping its sessions, subscriptions and
    /// queued messages in `state` (a directory): a broker stopped with
    /// [`Mosquitto::stop_gracefully`] and started again on the same
    /// `state` still holds them.
    pub fn start_persistent(port: u16, state: &std::path::Path) -> Self {
        Self::start_with(
            port,
            &format!(
                "persistence true\npersistence_location {}/\n",
                state.display()
            ),
        )
    }

    fn start_with(port: u16, persistence: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path();
        // As root, mosquitto would switch to the `mosquitto` user, who
        // cannot write the test's private log.
        let user = if is_root() { "user root\n" } else { "" };
        let conf = format!(
            "{user}listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}\
             log_dest file {n}/mosquitto.log\nlog_type all\n",
            n = n.display()
        );
        std::fs::write(n.join("mosquitto.conf"), conf).unwrap();
        let child = Command::new(installed("mosquitto"))
            .arg("-c")
            .arg(n.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Self { child, port, dir };
        wait_listening(port, "mosquitto", &me.dir.path().join("mosquitto.log"));
        me
    }

    /// Stops the broker as an operator would (SIGTERM: it saves its
    /// persistent state, if any, then exits), within 10 s.
    pub fn stop_gracefully(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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
