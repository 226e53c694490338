#!/usr/bin/env bash
# Gateway origin sync on loopback against a baseline measured in this same
# script: a fresh gateway syncs one release (a 64 MiB pseudo-random image
# published with `meshota publish`) from nginx, timed from `gateway run`
# until its status shows the sync done; the baseline is `curl` of the same
# image as one file from the same nginx. Reported as the ratio sync / curl
# (the price of per-object requests, hashing, and durable store writes),
# with the requests and bytes the sync made.
# Figures go to stdout as markdown; progress to stderr. Every process the
# script starts is killed on every exit path (trap); every wait is bounded.
# Usage: benches/gateway.sh [--size MIB] [--runs R]
# Env: MESHOTA_BIN (default: build $CARGO_TARGET_DIR/release/meshota),
#      CARGO_TARGET_DIR (default /work/target-bench if writable, else REPO/target).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=64
RUNS=3
TIMEOUT=300
while (($#)); do
    case $1 in
    --size) SIZE_MIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [--size MIB] [--runs R]" >&2; exit 2 ;;
    esac
done

log() { echo "[gateway.sh] $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\\n\", ($1) }"; }

W=$(mktemp -d /tmp/meshota-gwbench.XXXXXX)
GW_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null || true
    if [[ -f $W/nginx/nginx.pid ]]; then kill "$(cat "$W/nginx/nginx.pid")" 2>/dev/null || true; fi
    sleep 0.3
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx"
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null 2>&1 ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- the origin ----------------------------------------------------------------
cd "$W"
"$M" testnet up --nodes 1 --dir tn --base-port 0 --image-size $((SIZE_MIB + 16)) >/dev/null
"$M" testnet down --dir tn >/dev/null
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >image.img
"$M" release create --trust tn/trust.mota --key tn/keys/release.key --image image.img \
    --hardware testnet --version 1.0.0 --security-version 10 --store pub --out v1.mota >/dev/null
"$M" publish --store pub --release v1.mota --to www --trust tn/trust.mota --key tn/keys/release.key >&2
cp image.img www/image.img
mkdir -p nginx/tmp
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""; [[ $(id -u) -eq 0 ]] && user="user root;"
cat >nginx/nginx.conf <<EOF
worker_processes 1;
$user
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $W/nginx/tmp; proxy_temp_path $W/nginx/tmp; fastcgi_temp_path $W/nginx/tmp;
    uwsgi_temp_path $W/nginx/tmp; scgi_temp_path $W/nginx/tmp;
    server { listen 127.0.0.1:$port; root $W/www; }
}
EOF
"$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/catalog.mota" && break; sleep 0.05; done

# --- baseline: curl of the image ---------------------------------------------
curl_best=""
for ((r = 0; r < RUNS; r++)); do
    t0=$(now); curl -s -o /dev/null "http://127.0.0.1:$port/image.img"; t1=$(now)
    t=$(calc "$t1 - $t0")
    if [[ -z $curl_best ]] || (($(awk "BEGIN{print ($t < $curl_best)}"))); then curl_best=$t; fi
done
log "curl best of $RUNS: $curl_best s"

# --- a fresh gateway syncs ------------------------------------------------------
cfg=tn/node-0/node.toml
printf '\n[gateway]\norigin = "http://127.0.0.1:%s/"\npoll_interval_secs = 3600\n' "$port" >>"$cfg"
cp -a --sparse=always tn pristine   # each run starts from this fresh node
sync_best=""; requests=""; bytes=""
for ((r = 0; r < RUNS; r++)); do
    rm -rf tn && cp -a --sparse=always pristine tn
    t0=$(now)
    "$M" gateway run --config "$cfg" >/dev/null 2>"$W/gw.log" &
    GW_PID=$!
    deadline=$(($(date +%s) + TIMEOUT))
    while :; do
        s=$("$M" node status --json --config "$cfg" 2>/dev/null || true)
        if [[ -n $s ]] && [[ $(jq -r '.gateway.last_sync.ok // empty' <<<"$s") == true ]]; then break; fi
        if [[ -n $s ]] && [[ $(jq -r '.gateway.last_sync.ok // empty' <<<"$s") == false ]]; then
            log "sync failed: $(jq -c .gateway.last_sync <<<"$s")"; exit 1
        fi
        (($(date +%s) < deadline)) || { log "no sync after $TIMEOUT s"; exit 1; }
        sleep 0.05
    done
    t1=$(now)
    requests=$(jq .gateway.last_sync.requests <<<"$s")
    bytes=$(jq .gateway.last_sync.bytes_fetched <<<"$s")
    "$M" node stop --config "$cfg" >/dev/null 2>&1 || kill "$GW_PID"
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
    t=$(calc "$t1 - $t0")
    log "sync run $r: $t s ($requests requests, $bytes bytes)"
    if [[ -z $sync_best ]] || (($(awk "BEGIN{print ($t < $sync_best)}"))); then sync_best=$t; fi
done

echo "| measure | value |"
echo "| --- | --- |"
echo "| image | $SIZE_MIB MiB, pseudo-random |"
echo "| curl of the image from nginx (best of $RUNS) | $curl_best s |"
echo "| fresh gateway sync from nginx, start to done (best of $RUNS) | $sync_best s |"
echo "| ratio sync / curl | $(calc "$sync_best / $curl_best")x |"
echo "| requests, bytes fetched by the sync | $requests, $bytes |"
