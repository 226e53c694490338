//! The control socket: one JSON request line in, one JSON answer line out
//! (docs/daemon.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest request line accepted.
pub(crate) const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Largest answer a client reads.
pub(crate) const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// A request to a running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub(crate) enum Request {
    /// The status object.
    Status,
    /// Verify, ingest and announce a release.
    Publish {
        /// Absolute path of the signed manifest.
        manifest: std::path::PathBuf,
        /// Absolute path of the image.
        image: std::path::PathBuf,
    },
    /// Verify a sneakernet bundle completely, commit it, announce its releases.
    #[serde(rename = "import-bundle")]
    ImportBundle {
        /// Absolute path of the bundle.
        bundle: std::path::PathBuf,
        /// Absolute path of the ML-KEM-768 private key, for an encrypted bundle.
        kem_key: Option<std::path::PathBuf>,
    },
    /// Write a want list (what this node and its peers hold, plus reports).
    Want {
        /// Absolute path of the file to write.
        out: std::path::PathBuf,
    },
    /// Graceful exit.
    Shutdown,
}

/// Sends one request to the daemon at `socket` and returns its answer.
///
/// # Errors
/// A message naming the socket when the daemon does not answer.
pub(crate) fn call(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "{}: no daemon answers ({e}); is `meshota node run` running with this config?",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut answer = String::new();
    BufReader::new(s.take(MAX_ANSWER_BYTES))
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    serde_json::from_str(&answer).map_err(|e| format!("{}: bad answer: {e}", socket.display()))
}
