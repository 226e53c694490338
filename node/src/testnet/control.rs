//! A client of a node daemon's control socket (docs/daemon.md): one JSON
//! line per connection, answered by one JSON line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Largest answer read from a control socket, in bytes.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// Sends `request` to the control socket at `socket` and returns the answer.
///
/// # Errors
/// Connecting, writing or reading failed or timed out (`timeout` bounds
/// each read and write), or the answer is not one line of JSON.
pub(crate) fn request(socket: &Path, request: &Value, timeout: Duration) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket timeout: {e}"))?;
    let mut line = request.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())
        .and_then(|()| s.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    BufReader::new((&s).take(MAX_ANSWER_BYTES))
        .read_line(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.trim().is_empty() {
        return Err("the daemon closed the connection without an answer".to_string());
    }
    serde_json::from_str(answer.trim()).map_err(|e| format!("answer is not JSON: {e}"))
}

/// `{"cmd":"status"}`.
pub(crate) fn status(socket: &Path, timeout: Duration) -> Result<Value, String> {
    request(socket, &json!({"cmd": "status"}), timeout)
}

/// `{"cmd":"shutdown"}`; `Ok` when the daemon said `ok`.
pub(crate) fn shutdown(socket: &Path, timeout: Duration) -> Result<(), String> {
    let a = request(socket, &json!({"cmd": "shutdown"}), timeout)?;
    ok_or_error(&a).map(|_| ())
}

/// `{"cmd":"publish",...}`; returns the release id the daemon reports.
pub(crate) fn publish(
    socket: &Path,
    manifest: &Path,
    image: &Path,
    timeout: Duration,
) -> Result<String, String> {
    let req = json!({
        "cmd": "publish",
        "manifest": manifest.display().to_string(),
        "image": image.display().to_string(),
    });
    let a = request(socket, &req, timeout)?;
    let a = ok_or_error(&a)?;
    Ok(a.get("release")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// The answer when it says `"ok": true`, else its `error`.
fn ok_or_error(a: &Value) -> Result<&Value, String> {
    if a.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(a);
    }
    Err(a
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| format!("the daemon answered {a}"), str::to_string))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::net::UnixListener;

    use super::*;

    /// Serves one connection: reads a line, answers `answer`.
    fn serve_once(dir: &Path, answer: &'static str) -> std::thread::JoinHandle<String> {
        let path = dir.join("c.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            (&s).write_all(answer.as_bytes()).unwrap();
            line
        })
    }

    #[test]
    fn a_request_is_one_json_line_and_the_answer_one_json_line() {
        let d = tempfile::tempdir().unwrap();
        let h = serve_once(d.path(), "{\"ok\":true,\"release\":\"ab\"}\n");
        let r = publish(
            &d.path().join("c.sock"),
            Path::new("/m.mota"),
            Path::new("/i"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r, "ab");
        let sent: Value = serde_json::from_str(&h.join().unwrap()).unwrap();
        assert_eq!(sent["cmd"], "publish");
        assert_eq!(sent["manifest"], "/m.mota");
    }

    #[test]
    fn a_refusal_carries_the_daemons_error() {
        let d = tempfile::tempdir().unwrap();
        let h = serve_once(d.path(), "{\"ok\":false,\"error\":\"bad manifest\"}\n");
        let e = shutdown(&d.path().join("c.sock"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(e, "bad manifest");
        h.join().unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        assert!(status(&d.path().join("none.sock"), Duration::from_secs(1)).is_err());
    }
}
