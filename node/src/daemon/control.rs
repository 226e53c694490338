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
        /// Absolute path of a store holding the patch blobs the manifest
        /// lists (as `release create --store DIR --previous` leaves them):
        /// they are copied into the node's store and served.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patch_store: Option<std::path::PathBuf>,
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
    /// Gateway only: poll the origin now instead of at the next interval.
    Sync,
}

/// Sends a shutdown request to the daemon at `socket` and, once it
/// accepted, waits until the daemon closes the connection, which it does
/// by exiting (at most `exit_timeout`). Returns the answer.
///
/// # Errors
/// A message naming the socket when the daemon does not answer, refuses,
/// or still runs after `exit_timeout`.
pub(crate) fn shutdown_and_wait(
    socket: &Path,
    timeout: Duration,
    exit_timeout: Duration,
) -> Result<serde_json::Value, String> {
    let s = connect(socket, &Request::Shutdown, timeout)?;
    let mut reader = BufReader::new(s.take(MAX_ANSWER_BYTES));
    let answer = read_answer(socket, &mut reader)?;
    if answer["ok"] != true {
        return Ok(answer);
    }
    reader
        .get_ref()
        .get_ref()
        .set_read_timeout(Some(exit_timeout))
        .map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => Ok(answer),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "{}: the daemon (pid {}) accepted the stop but still runs after {} s",
                socket.display(),
                answer["pid"],
                exit_timeout.as_secs()
            ))
        }
        // A reset is a close too.
        Err(_) => Ok(answer),
    }
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
    let s = connect(socket, req, timeout)?;
    read_answer(socket, &mut BufReader::new(s.take(MAX_ANSWER_BYTES)))
}

/// Connects to `socket` with `timeout` on reads and writes and sends `req`.
fn connect(socket: &Path, req: &Request, timeout: Duration) -> Result<UnixStream, String> {
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
    Ok(s)
}

/// Reads one answer line.
fn read_answer(socket: &Path, reader: &mut impl BufRead) -> Result<serde_json::Value, String> {
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    serde_json::from_str(&answer).map_err(|e| format!("{}: bad answer: {e}", socket.display()))
}
