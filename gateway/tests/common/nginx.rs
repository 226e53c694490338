//! A real nginx on loopback for tests: a free port, its own config, access
//! log and pid file in a temporary directory, stopped on drop. Shared by
//! the gateway's and the node's tests (`#[path]` include).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

// The includer declares `process` (process.rs) beside this module.
#[allow(unused_imports)] // a re-export for the includers that use it
pub use super::process::free_port;
use super::process::{installed, is_root, wait_listening};

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
        Self::start_with(root, extra, None)
    }

    /// Like [`Nginx::start`], serving HTTPS with `tls` = (certificate,
    /// key) PEM files when given.
    pub fn start_with(root: &Path, extra: &str, tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path();
        std::fs::create_dir_all(n.join("tmp")).unwrap();
        let port = free_port();
        // As root, workers would switch to `nobody`, who cannot read the
        // test's private temporary directories.
        let user = if is_root() { "user root;" } else { "" };
        let (ssl, certs) = match tls {
            Some((cert, key)) => (
                " ssl",
                format!(
                    "ssl_certificate {}; ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("", String::new()),
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\n{user}\npid {n}/nginx.pid;\nerror_log {n}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               log_format origin '$request_uri $status \"$http_range\" $body_bytes_sent';\n\
               access_log {n}/access.log origin;\n\
               client_body_temp_path {n}/tmp; proxy_temp_path {n}/tmp; fastcgi_temp_path {n}/tmp;\n\
               uwsgi_temp_path {n}/tmp; scgi_temp_path {n}/tmp;\n\
               server {{ listen 127.0.0.1:{port}{ssl}; {certs} root {root}; {extra} }}\n\
             }}\n",
            n = n.display(),
            root = root.display(),
        );
        std::fs::write(n.join("nginx.conf"), conf).unwrap();
        let child = Command::new(installed("nginx"))
            .arg("-c")
            .arg(n.join("nginx.conf"))
            .arg("-p")
            .arg(n)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Self { child, port, dir };
        wait_listening(port, "nginx", &me.dir.path().join("error.log"));
        me
    }

    /// The origin's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The origin's base URL over TLS.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
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
