#!/usr/bin/env bash
# Mesh benchmarks on loopback, each against a bound or a baseline measured in
# this same script:
#   1. swarm: N=16 `meshota node run` daemons (the testnet topology: a ring
#      plus chords), a 64 MiB image, every node's upload capped at
#      U = 4 MiB/s by its own rate limiter. Time from `node publish` at
#      node 0 until every node holds the whole image, as a ratio to the
#      lower bound S/U and to one central server with upload U serving the
#      other N-1 nodes ((N-1)*S/U). Goal <= 1.3x S/U.
#   2. two nodes, no caps: time until node 1 holds a 64 MiB image published
#      at node 0, against `curl` of the same file from nginx on loopback.
#      Goal >= 1.0x nginx.
# Figures go to stdout as markdown (paste under "## Mesh" in BENCHMARKS.md);
# progress goes to stderr. Every process the script starts is killed on
# every exit path (trap). Bounded: each wait has a timeout; the whole run
# takes a few minutes.
# Usage: benches/mesh.sh [--nodes N] [--size MIB] [--upload BYTES_PER_SEC] [--runs R] [--swarm-only | --pair-only]
# Env: MESHOTA_BIN (default: build $CARGO_TARGET_DIR/release/meshota),
#      CARGO_TARGET_DIR (default /work/target-bench if writable, else REPO/target).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
NODES=16
SIZE_MIB=64
UPLOAD=$((4 * 1024 * 1024))
RUNS=5            # two-node runs (and nginx downloads); best and median reported
POLL=0.25         # status poll interval, swarm
SWARM_TIMEOUT=300 # seconds; a central server would take (N-1)*S/U = 240 s
PAIR_TIMEOUT=120
ONLY=""
while (($#)); do
    case $1 in
    --nodes) NODES=$2; shift 2 ;;
    --size) SIZE_MIB=$2; shift 2 ;;
    --upload) UPLOAD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --swarm-only) ONLY=swarm; shift ;;
    --pair-only) ONLY=pair; shift ;;
    *) echo "usage: $0 [--nodes N] [--size MIB] [--upload BYTES_PER_SEC] [--runs R] [--swarm-only | --pair-only]" >&2; exit 2 ;;
    esac
done

log() { echo "[mesh.sh] $*" >&2; }
now() { date +%s.%N; }
# parenthesised: a bare `>` would redirect to a file; %.6f, not awk's
# default %.6g, which rounds epoch seconds to 10,000 s
calc() { awk "BEGIN { printf \"%.6f\\n\", ($1) }"; }

# --- cleanup: every process started here, on every exit path --------------
W=$(mktemp -d /tmp/meshota-bench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    if [[ -f $W/nginx/nginx.pid ]]; then kill "$(cat "$W/nginx/nginx.pid")" 2>/dev/null || true; fi
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- binaries ------------------------------------------------------------------
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    if [[ -w /work ]]; then CARGO_TARGET_DIR=/work/target-bench; else CARGO_TARGET_DIR=$REPO/target; fi
fi
export CARGO_TARGET_DIR
if [[ -z ${MESHOTA_BIN:-} ]]; then
    log "cargo build --release -p meshota-node (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release -q -p meshota-node)
    MESHOTA_BIN=$CARGO_TARGET_DIR/release/meshota
fi
M=$MESHOTA_BIN
[[ -x $M ]] || { log "no binary at $M"; exit 1; }
# The QUIC transport alone (tests/src/bin/quic_bench.rs): part 2's ceiling.
if [[ -z ${MESHOTA_QUIC_BENCH:-} && $ONLY != swarm ]]; then
    log "cargo build --release -p meshota-tests --bin meshota-quic-bench"
    (cd "$REPO" && cargo build --release -q -p meshota-tests --bin meshota-quic-bench)
    MESHOTA_QUIC_BENCH=$CARGO_TARGET_DIR/release/meshota-quic-bench
fi

# --- nginx (baseline of part 2) ---------------------------------------------
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx"
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null 2>&1 ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- helpers -----------------------------------------------------------------
IMG=$W/image.img
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$IMG"
SIZE=$(stat -c %s "$IMG")

testnet() { # DIR N: a stopped testnet of N nodes whose slots fit the image
    "$M" testnet up --nodes "$2" --dir "$1" --base-port 0 --image-size $((SIZE_MIB + 16)) >/dev/null
    "$M" testnet down --dir "$1" >/dev/null
}
cap_upload() { # DIR I BYTES: [mesh] is the last table of node.toml
    echo "upload_bytes_per_sec = $3" >>"$1/node-$2/node.toml"
}
start_daemons() { # DIR N
    local i
    for ((i = 0; i < $2; i++)); do
        "$M" node run --config "$1/node-$i/node.toml" >/dev/null 2>"$1/node-$i/bench.log" &
        PIDS+=($!)
    done
}
status() { # DIR I -> one line of JSON, or nothing
    "$M" node status --json --config "$1/node-$2/node.toml" 2>/dev/null | tr -d '\n' || true
}
statuses() { # DIR N -> N lines "i <json>", fetched in parallel
    local i
    for ((i = 0; i < $2; i++)); do
        (s=$(status "$1" "$i"); echo "$i ${s:-null}" >"$1/st.$i") &
    done
    wait_children
    for ((i = 0; i < $2; i++)); do cat "$1/st.$i"; done
}
wait_children() { # wait for the status subshells only, not the daemons
    local j
    for j in $(jobs -pr); do
        case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" 2>/dev/null || true ;; esac
    done
}
wait_up() { # DIR N: every control socket answers and every node has a peer
    local deadline=$(($(date +%s) + 60)) ok
    while :; do
        ok=$(statuses "$1" "$2" | cut -d' ' -f2- | jq -s '[.[] | select(. != null and .peers >= 1)] | length')
        [[ $ok -eq $2 ]] && return 0
        (($(date +%s) < deadline)) || { log "daemons not up after 60 s ($ok of $2)"; return 1; }
        sleep 0.5
    done
}
sign() { # DIR VERSION -> manifest path
    "$M" release create --trust "$1/trust.mota" --key "$1/keys/release.key" --image "$IMG" \
        --hardware testnet --version "$2" --security-version 10 --out "$1/bench-$2.mota" >/dev/null
    echo "$1/bench-$2.mota"
}
# jq filter: per node, "holds" (every chunk of the release, or installed it)
# and "confirmed" (runs it confirmed).
JQ_STATE='def holds($r): (.wanted != null and .wanted.release == $r and .wanted.total_chunks > 0
                             and .wanted.have_chunks == .wanted.total_chunks)
                        or .installed.release == $r;
          def conf($r): .installed.release == $r and .slot.state == "confirmed" and .state == "confirmed";'
# jq over the lines of `statuses`: "i holds confirmed" per answering node
JQ_TICK="$JQ_STATE"'
    capture("^(?<i>[0-9]+) (?<j>.*)$") | .i as $i | (.j | fromjson) as $s
    | select($s != null) | "\($i) \($s | holds($r)) \($s | conf($r))"'

# --- 1. swarm ------------------------------------------------------------------
swarm() {
    local D=$W/swarm i
    log "swarm: $NODES nodes, $SIZE_MIB MiB, upload cap $UPLOAD B/s each"
    testnet "$D" "$NODES"
    for ((i = 0; i < NODES; i++)); do cap_upload "$D" "$i" "$UPLOAD"; done
    start_daemons "$D" "$NODES"
    wait_up "$D" "$NODES"
    local m; m=$(sign "$D" 9.0.0)
    sleep 2 # let every link come up and the first summaries pass
    LOAD_SWARM=$(cut -d' ' -f1-3 /proc/loadavg)
    local t0 t1 rel
    t0=$(now)
    rel=$("$M" node publish --config "$D/node-0/node.toml" --manifest "$m" --image "$IMG" | grep -oE '[0-9a-f]{64}' | head -1)
    t1=$(now)
    [[ -n $rel ]] || { log "publish printed no release id"; exit 1; }
    HOLD=() CONF=()
    local deadline; deadline=$(calc "$t0 + $SWARM_TIMEOUT")
    local t idx h c held
    while :; do
        while read -r idx h c; do
            [[ $h == true && -z ${HOLD[$idx]:-} ]] && HOLD[$idx]=pending
            [[ $c == true && -z ${CONF[$idx]:-} ]] && CONF[$idx]=pending
        done < <(statuses "$D" "$NODES" | jq -R -r --arg r "$rel" "$JQ_TICK")
        # the time after every answer came in: an upper bound for each new one
        t=$(calc "$(now) - $t0")
        for idx in "${!HOLD[@]}"; do [[ ${HOLD[$idx]} == pending ]] && HOLD[$idx]=$t; done
        for idx in "${!CONF[@]}"; do [[ ${CONF[$idx]} == pending ]] && CONF[$idx]=$t; done
        echo "$t ${#HOLD[@]} ${#CONF[@]}" >>"$W/swarm-progress"
        ((${#HOLD[@]} == NODES && ${#CONF[@]} == NODES)) && break
        if [[ $(calc "$t0 + $t > $deadline") != 0.000000 ]]; then
            log "swarm: timed out after ${SWARM_TIMEOUT}s: ${#HOLD[@]} hold, ${#CONF[@]} confirmed"
            break
        fi
        sleep "$POLL"
    done
    SW_PUBLISH=$(calc "$t1 - $t0")
    SW_HOLD_N=${#HOLD[@]} SW_CONF_N=${#CONF[@]}
    SW_HOLD=$(printf '%s\n' "${HOLD[@]}" | sort -g | tail -1)
    SW_CONF=$(printf '%s\n' "${CONF[@]:-0}" | sort -g | tail -1)
    SW_HOLD_MED=$(printf '%s\n' "${HOLD[@]}" | sort -g | sed -n "$(((${#HOLD[@]} + 1) / 2))p")
    SW_FIRST=$(for ((i = 1; i < NODES; i++)); do echo "${HOLD[$i]:-}"; done | grep . | sort -g | head -1)
    SW_PER_NODE=$(for ((i = 0; i < NODES; i++)); do printf '%s=%.1f ' "$i" "${HOLD[$i]:-nan}"; done)
    # traffic: bytes each node uploaded and fetched
    SW_TRAFFIC=$(statuses "$D" "$NODES" | cut -d' ' -f2- | jq -s -r '[.[] | select(. != null)] |
        "chunk bytes fetched total \(([.[].chunk_bytes_fetched] | add) / 1048576 | floor) MiB; chunks served per node: \([.[].chunks_served] | map(tostring) | join(" ")); peers: \([.[].peers] | map(tostring) | join(" "))"')
    for ((i = NODES - 1; i >= 0; i--)); do
        kill "${PIDS[-1]}" 2>/dev/null || true
        wait "${PIDS[-1]}" 2>/dev/null || true
        unset 'PIDS[-1]'
    done
}

# --- 2. two nodes vs nginx ---------------------------------------------------
pair_once() { # RUN; appends "from_publish_start from_publish_return publish_secs" to PAIR
    local D=$W/pair-$1
    testnet "$D" 2
    start_daemons "$D" 2
    wait_up "$D" 2
    local m; m=$(sign "$D" 9.0.0)
    sleep 1
    local t0 t1 t2 tf="" rel js h have
    t0=$(now)
    rel=$("$M" node publish --config "$D/node-0/node.toml" --manifest "$m" --image "$IMG" | grep -oE '[0-9a-f]{64}' | head -1)
    t1=$(now)
    local deadline=$(($(date +%s) + PAIR_TIMEOUT))
    while :; do
        js=$(status "$D" 1)
        if [[ -n $js ]]; then
            read -r h have <<<"$(jq -r --arg r "$rel" "$JQ_STATE"' "\(holds($r)) \(.wanted.have_chunks // 0)"' <<<"$js")"
            [[ -z $tf && $have -gt 0 ]] && tf=$(now)
            if [[ $h == true ]]; then
                t2=$(now)
                break
            fi
        fi
        (($(date +%s) < deadline)) || { log "pair: node 1 did not get the image in ${PAIR_TIMEOUT}s"; exit 1; }
        sleep 0.02
    done
    PAIR_FETCHED=$(jq -r '.chunk_bytes_fetched' <<<"$js")
    kill "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
    wait "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
    unset 'PIDS[-1]'
    unset 'PIDS[-1]'
    rm -rf "$D"
    [[ -n $tf ]] || tf=$t1
    PAIR+=("$(calc "$t2 - $t0") $(calc "$t2 - $t1") $(calc "$t1 - $t0") $(calc "$t2 - $tf") $(calc "$tf - $t1")")
}

nginx_run() { # fills NGX with the seconds of each download
    local N=$W/nginx port
    mkdir -p "$N/www" "$N/tmp"
    ln "$IMG" "$N/www/image.img"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$N/nginx.conf" <<EOF
daemon off;
worker_processes 1;
user $(id -un);
pid $N/nginx.pid;
error_log $N/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $N/tmp; proxy_temp_path $N/tmp; fastcgi_temp_path $N/tmp;
    uwsgi_temp_path $N/tmp; scgi_temp_path $N/tmp;
    server { listen 127.0.0.1:$port; root $N/www; }
}
EOF
    "$NGINX" -c "$N/nginx.conf" -p "$N" 2>>"$N/error.log" &
    PIDS+=($!)
    local deadline=$(($(date +%s) + 10))
    until curl -sf -o /dev/null "http://127.0.0.1:$port/image.img" 2>/dev/null; do
        (($(date +%s) < deadline)) || { log "nginx did not answer"; cat "$N/error.log" >&2; exit 1; }
        sleep 0.1
    done
    local r
    NGX=()
    for ((r = 0; r < RUNS; r++)); do
        NGX+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/image.img")")
    done
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
}

# --- run ---------------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $ONLY != pair ]]; then
    swarm
    log "swarm: all hold at ${SW_HOLD}s, all confirmed at ${SW_CONF}s; per node: $SW_PER_NODE; $SW_TRAFFIC"
fi
[[ $ONLY == swarm ]] && exit 0

LOAD_PAIR=$(cut -d' ' -f1-3 /proc/loadavg)
PAIR=()
for ((r = 0; r < RUNS; r++)); do
    pair_once "$r"
    log "pair run $r: ${PAIR[-1]} (from publish start, from publish return, publish, from first chunk, first chunk after publish return)"
done
nginx_run
log "nginx: ${NGX[*]} s"
QUIC=()
for ((r = 0; r < RUNS; r++)); do
    QUIC+=("$("$MESHOTA_QUIC_BENCH" "$SIZE_MIB" 20 | jq -r .seconds)")
done
log "quic alone: ${QUIC[*]} s"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------
MIB=$SIZE_MIB
SU=$(calc "$SIZE / $UPLOAD")
central=$(calc "($NODES - 1) * $SIZE / $UPLOAD")
central_n=$(calc "$NODES * $SIZE / $UPLOAD")
med() { sort -g | sed -n "$((($1 + 1) / 2))p"; }
pair_start=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f1 | med "$RUNS")
pair_ret=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f2 | med "$RUNS")
pair_pub=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f3 | med "$RUNS")
pair_best=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f2 | sort -g | head -1)
pair_xfer=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f4 | med "$RUNS")
pair_xfer_best=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f4 | sort -g | head -1)
pair_disc=$(printf '%s\n' "${PAIR[@]}" | cut -d' ' -f5 | med "$RUNS")
ngx_med=$(printf '%s\n' "${NGX[@]}" | med "$RUNS")
ngx_best=$(printf '%s\n' "${NGX[@]}" | sort -g | head -1)
quic_med=$(printf '%s\n' "${QUIC[@]}" | med "$RUNS")
quic_best=$(printf '%s\n' "${QUIC[@]}" | sort -g | head -1)
f() { python3 -c "print(f'{$1:$2}')"; }

cat <<EOF
Command: \`benches/mesh.sh\` (release build; loopback; $(nproc) cores;
load average $LOAD_START at the start, $LOAD_PAIR before part 2, $LOAD_END at the end).
Image: $MIB MiB of random bytes (no duplicate chunks).
EOF
if [[ $ONLY != pair ]]; then
cat <<EOF

### 1. Swarm: $NODES daemons, each upload capped at U = $(f "$UPLOAD/1048576" .0f) MiB/s

Topology: the testnet's ring plus chords (node/src/testnet/topology.rs);
peers per node: ${SW_TRAFFIC##*peers: }.
Times from the start of \`node publish\` at node 0 (the publish itself, which
ingests the image into node 0's store, took $(f "$SW_PUBLISH" .2f) s).

| measure | time | / (S/U = $(f "$SU" .0f) s) | / central server (N-1)·S/U = $(f "$central" .0f) s |
| --- | --- | --- | --- |
| first other node holds the image | $(f "$SW_FIRST" .1f) s | $(f "$SW_FIRST/$SU" .2f)× | $(f "$SW_FIRST/$central" .3f)× |
| median node holds it | $(f "$SW_HOLD_MED" .1f) s | $(f "$SW_HOLD_MED/$SU" .2f)× | $(f "$SW_HOLD_MED/$central" .3f)× |
| **all $SW_HOLD_N/$NODES nodes hold it** | **$(f "$SW_HOLD" .1f) s** | **$(f "$SW_HOLD/$SU" .2f)×** | **$(f "$SW_HOLD/$central" .3f)×** |
| all $SW_CONF_N/$NODES installed and confirmed | $(f "$SW_CONF" .1f) s | $(f "$SW_CONF/$SU" .2f)× | $(f "$SW_CONF/$central" .3f)× |

(With N = $NODES clients instead of N-1, the central server takes $(f "$central_n" .0f) s.)
Per node, seconds until it holds the image: $SW_PER_NODE
Traffic: ${SW_TRAFFIC%%; peers:*}.
EOF
fi
cat <<EOF

### 2. Two nodes, no caps, vs nginx on loopback

| transfer of $MIB MiB | time (median of $RUNS) | MiB/s | best |
| --- | --- | --- | --- |
| mesh, node 0 → node 1, from \`node publish\` returning to node 1 holding every chunk | $(f "$pair_ret" .2f) s | $(f "$MIB/$pair_ret" .0f) | $(f "$MIB/$pair_best" .0f) MiB/s |
| of which discovery (summary, manifest, index) until node 1's first chunk | $(f "$pair_disc" .2f) s | | |
| mesh, node 1's first chunk to its last (the transfer itself) | $(f "$pair_xfer" .2f) s | $(f "$MIB/$pair_xfer" .0f) | $(f "$MIB/$pair_xfer_best" .0f) MiB/s |
| mesh, from \`node publish\` starting (adds node 0's ingest, $(f "$pair_pub" .2f) s) | $(f "$pair_start" .2f) s | $(f "$MIB/$pair_start" .0f) | |
| nginx $($NGINX -v 2>&1 | sed 's/.*nginx\///') + \`curl -o /dev/null\` | $(f "$ngx_med" .3f) s | $(f "$MIB/$ngx_med" .0f) | $(f "$MIB/$ngx_best" .0f) MiB/s |
| the QUIC transport alone (\`meshota-quic-bench $MIB 20\`: one connection, 20 KiB messages, no store, no hashing) | $(f "$quic_med" .3f) s | $(f "$MIB/$quic_med" .0f) | $(f "$MIB/$quic_best" .0f) MiB/s |

Ratio mesh/nginx (median throughput): **$(f "$ngx_med/$pair_ret" .3f)×** from publish return,
$(f "$ngx_med/$pair_xfer" .3f)× for the transfer phase alone, $(f "$ngx_med/$pair_start" .3f)× from publish start.
QUIC alone / nginx: $(f "$ngx_med/$quic_med" .3f)× (the ceiling of any transfer over this transport);
mesh transfer phase / QUIC alone: $(f "$quic_med/$pair_xfer" .3f)×.
Raw runs (from publish start, from publish return, publish, first→last chunk, discovery): $(printf '[%s] ' "${PAIR[@]}")
nginx runs (s): ${NGX[*]}
QUIC-alone runs (s): ${QUIC[*]}
EOF
