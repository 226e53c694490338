//! `GET /metrics` in the Prometheus text format, from the status object.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::Input;
use super::control::Request;

/// Largest request head read.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Serves metrics until the daemon's input channel closes.
pub(super) async fn serve(listener: TcpListener, tx: mpsc::Sender<Input>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; MAX_HEAD_BYTES];
            let mut len = 0;
            // Read until the end of the request head (bounded).
            while len < head.len() {
                match stream.read(&mut head[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&head[..len]);
            let response = if line.starts_with("GET /metrics ") {
                let (reply, wait) = oneshot::channel();
                if tx
                    .send(Input::Control {
                        req: Request::Status,
                        reply,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(status) = wait.await else { return };
                let body = render(&status);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// The Prometheus text exposition of a status object.
pub(super) fn render(s: &Value) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    metric("meshota_peers", "gauge", "Connected peers.", n(&s["peers"]));
    metric(
        "meshota_bytes_received_total",
        "counter",
        "Message bytes received.",
        n(&s["bytes_in"]),
    );
    metric(
        "meshota_bytes_sent_total",
        "counter",
        "Message bytes sent.",
        n(&s["bytes_out"]),
    );
    metric(
        "meshota_messages_received_total",
        "counter",
        "Messages received.",
        n(&s["messages_in"]),
    );
    metric(
        "meshota_messages_sent_total",
        "counter",
        "Messages sent.",
        n(&s["messages_out"]),
    );
    metric(
        "meshota_chunks_fetched_total",
        "counter",
        "Chunks fetched and verified.",
        n(&s["chunks_fetched"]),
    );
    metric(
        "meshota_chunk_bytes_fetched_total",
        "counter",
        "Bytes of chunks fetched.",
        n(&s["chunk_bytes_fetched"]),
    );
    metric(
        "meshota_patch_bytes_fetched_total",
        "counter",
        "Bytes of patch blobs (patch indexes and pieces) fetched.",
        n(&s["patch_bytes_fetched"]),
    );
    metric(
        "meshota_patch_pieces_applied_total",
        "counter",
        "Patch pieces applied whose every output chunk verified.",
        n(&s["patch_pieces_applied"]),
    );
    metric(
        "meshota_patch_pieces_failed_total",
        "counter",
        "Patch pieces discarded (their chunks were fetched plainly).",
        n(&s["patch_pieces_failed"]),
    );
    metric(
        "meshota_chunks_served_total",
        "counter",
        "Chunks served to peers.",
        n(&s["chunks_served"]),
    );
    metric(
        "meshota_chunk_requests_deferred_total",
        "counter",
        "Chunk requests answered Busy (upload backlogged, or a duplicate the origin deferred).",
        n(&s["busy_answers"]),
    );
    metric(
        "meshota_peer_bans_total",
        "counter",
        "Peers banned for misbehaviour.",
        n(&s["bans"]),
    );
    metric(
        "meshota_installed_security_version",
        "gauge",
        "Confirmed anti-rollback security version.",
        n(&s["installed"]["security_version"]),
    );
    metric(
        "meshota_wanted_chunks_held",
        "gauge",
        "Chunks held of the release being fetched.",
        n(&s["wanted"]["have_chunks"]),
    );
    metric(
        "meshota_wanted_chunks_total",
        "gauge",
        "Chunks of the release being fetched.",
        n(&s["wanted"]["total_chunks"]),
    );
    radio(&mut out, &s["radio"]);
    let state = s["state"].as_str().unwrap_or("unknown");
    out.push_str("# HELP meshota_state The node's state (1 for the current one).\n# TYPE meshota_state gauge\n");
    for st in ["idle", "fetching", "installing", "confirmed", "failed"] {
        out.push_str(&format!(
            "meshota_state{{state=\"{st}\"}} {}\n",
            u8::from(st == state)
        ));
    }
    out
}

/// The LoRa radio's series (`meshota_radio_*`), only for a node that
/// drives one: airtime against the duty-cycle budget, frames by fate,
/// what the link sent and decoded.
fn radio(out: &mut String, r: &Value) {
    if !r.is_object() {
        return;
    }
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let seconds = |k: &str| n(k) as f64 / 1e6;
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    let gauges: [(&str, &str, String); 6] = [
        (
            "meshota_radio_connected",
            "1 while the radio (or the medium server) is reachable.",
            u8::from(r["connected"].as_bool().unwrap_or(false)).to_string(),
        ),
        (
            "meshota_radio_relay",
            "1 for a relay, 0 for a leaf (serves nothing).",
            u8::from(r["relay"].as_bool().unwrap_or(true)).to_string(),
        ),
        (
            "meshota_radio_neighbours",
            "Radio neighbours heard.",
            r["neighbours"].as_array().map_or(0, Vec::len).to_string(),
        ),
        (
            "meshota_radio_airtime_last_hour_seconds",
            "Airtime spent in the last hour (the duty-cycle window).",
            seconds("airtime_last_hour_us").to_string(),
        ),
        (
            "meshota_radio_airtime_budget_per_hour_seconds",
            "Airtime the sub-band's duty cycle allows per hour.",
            seconds("budget_per_hour_us").to_string(),
        ),
        (
            "meshota_radio_release_complete",
            "1 when the release the radio carries is whole.",
            u8::from(r["complete"].as_bool().unwrap_or(false)).to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        metric(name, "gauge", help, value);
    }
    metric(
        "meshota_radio_airtime_seconds_total",
        "counter",
        "Airtime spent transmitting.",
        seconds("airtime_us").to_string(),
    );
    for (name, key, help) in [
        ("frames_sent", "frames_sent", "Frames transmitted."),
        (
            "frames_heard",
            "frames_heard",
            "Frames received with a good MAC.",
        ),
        (
            "frames_bad_mac",
            "frames_bad_mac",
            "Frames dropped for a bad MAC (another mesh key, or noise).",
        ),
        (
            "frames_malformed",
            "frames_malformed",
            "Authenticated frames that failed to parse.",
        ),
        (
            "frames_own_id",
            "frames_own_id",
            "Frames from a neighbour using this node's short id (dropped; a derived id moves to another, a configured one is the operator's to change).",
        ),
        (
            "clash_notices_sent",
            "clash_notices_sent",
            "Notices sent to a neighbour whose frames looked like two senders' (its short id shared by two nodes out of each other's range).",
        ),
        (
            "clash_notices_heard",
            "clash_notices_heard",
            "Notices heard that this node's short id seems shared.",
        ),
        (
            "short_id_changes",
            "short_id_changes",
            "Times the derived short id was derived again after a neighbour turned out to share it.",
        ),
        (
            "frames_dropped",
            "frames_dropped",
            "Frames the radio failed to transmit.",
        ),
        ("announces_sent", "announces", "Announcements sent."),
        (
            "requests_sent",
            "requests",
            "Bundle, patch index and payload requests sent.",
        ),
        (
            "fragments_sent",
            "pieces",
            "Bundle and patch index fragments sent (repair fragments included).",
        ),
        ("symbols_sent", "symbols", "Coded symbols sent."),
        (
            "budget_waits",
            "budget_waits",
            "Transmissions deferred by the duty-cycle budget.",
        ),
        (
            "bundle_failures",
            "bundle_failures",
            "Bundles that failed verification.",
        ),
        (
            "chunk_failures",
            "chunk_failures",
            "Decoded chunks that failed their hash.",
        ),
        (
            "chunks_decoded",
            "chunks_decoded",
            "Chunks decoded from symbols and verified.",
        ),
        (
            "pieces_applied",
            "pieces_applied",
            "Patch pieces applied over the radio.",
        ),
    ] {
        metric(
            &format!("meshota_radio_{name}_total"),
            "counter",
            help,
            n(key).to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_the_current_state() {
        let s = serde_json::json!({
            "peers": 3, "bytes_in": 10, "state": "fetching",
            "patch_bytes_fetched": 219, "patch_pieces_failed": 2,
            "wanted": {"have_chunks": 4, "total_chunks": 9},
            "installed": {"security_version": 7},
        });
        let text = render(&s);
        assert!(text.contains("meshota_peers 3\n"));
        assert!(text.contains("meshota_bytes_received_total 10\n"));
        assert!(text.contains("meshota_wanted_chunks_total 9\n"));
        assert!(text.contains("meshota_patch_bytes_fetched_total 219\n"));
        assert!(text.contains("meshota_patch_pieces_failed_total 2\n"));
        assert!(text.contains("meshota_patch_pieces_applied_total 0\n"));
        assert!(text.contains("meshota_installed_security_version 7\n"));
        assert!(text.contains("meshota_state{state=\"fetching\"} 1\n"));
        assert!(text.contains("meshota_state{state=\"idle\"} 0\n"));
        assert!(
            !text.contains("meshota_radio_"),
            "no radio, no radio series"
        );
    }

    #[test]
    fn a_node_with_a_radio_renders_its_airtime_budget_and_frames() {
        let s = serde_json::json!({
            "state": "confirmed",
            "radio": {
                "connected": true, "relay": false, "neighbours": ["0a01", "0b02"],
                "airtime_us": 12_500_000u64, "airtime_last_hour_us": 2_250_000u64,
                "budget_per_hour_us": 360_000_000u64, "complete": true,
                "frames_sent": 40, "frames_heard": 900, "frames_bad_mac": 3,
                "symbols": 0, "pieces": 0, "announces": 31, "chunks_decoded": 2,
                "short_id_changes": 1,
            },
        });
        let text = render(&s);
        for line in [
            "meshota_radio_airtime_seconds_total 12.5\n",
            "meshota_radio_airtime_last_hour_seconds 2.25\n",
            "meshota_radio_airtime_budget_per_hour_seconds 360\n",
            "meshota_radio_relay 0\n",
            "meshota_radio_connected 1\n",
            "meshota_radio_neighbours 2\n",
            "meshota_radio_frames_heard_total 900\n",
            "meshota_radio_frames_bad_mac_total 3\n",
            "meshota_radio_symbols_sent_total 0\n",
            "meshota_radio_announces_sent_total 31\n",
            "meshota_radio_chunks_decoded_total 2\n",
            "meshota_radio_short_id_changes_total 1\n",
            "# TYPE meshota_radio_frames_sent_total counter\n",
            "# TYPE meshota_radio_relay gauge\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
