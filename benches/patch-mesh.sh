#!/usr/bin/env bash
# Patches through real daemons: what a node running esbuild linux-x64
# 0.23.0 fetches over the mesh to install 0.23.1 (and 0.23.1 -> 0.24.0),
# with the release's patch (`release create --previous`, handed to node 0
# with `node publish --patch-store`) against the baseline run in the same
# script: the same release signed without a patch, fetched as chunks.
# Also printed: `delta plan`'s figures for the pair and the bsdiff 4.3 patch.
#
# Each case is a fresh 2-node testnet on loopback: the old version is
# published with `testnet publish` and both nodes install it; then the new
# one is published at node 0 and node 1's status counts what it fetched
# (`patch_bytes_fetched`, `chunk_bytes_fetched`, minus their values after
# the old version's install). Bytes do not depend on
# load; the seconds printed are wall clock on a shared machine.
#
# Usage: benches/patch-mesh.sh   (needs the esbuild binaries that
# benches/blobstore.sh downloads and sha256-checks into
# $MESHOTA_BENCH_CACHE/esbuild; run that script once first)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MESHOTA_BENCH_CACHE:-/var/cache/meshota-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ESB=$CACHE/esbuild
log() { echo "[patch-mesh.sh] $*" >&2; }

for v in 0.23.0 0.23.1 0.24.0; do
    [[ -f $ESB/esbuild-$v ]] || { log "$ESB/esbuild-$v missing: run benches/blobstore.sh --patches first"; exit 1; }
done
for t in bsdiff jq; do
    command -v "$t" >/dev/null || { log "$t missing (apt-get install bsdiff jq)"; exit 1; }
done

log "cargo build --release -p meshota-node"
(cd "$REPO" && cargo build --release -q -p meshota-node)
M=$CARGO_TARGET_DIR/release/meshota

W=$(mktemp -d)
TN=""
cleanup() {
    [[ -n $TN ]] && "$M" testnet down --dir "$TN" >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

wait_confirmed() { # TN NODE VERSION: at most 300 s
    local deadline=$((SECONDS + 300)) s
    while ((SECONDS < deadline)); do
        s=$("$M" node status --config "$1/node-$2/node.toml" --json 2>/dev/null || true)
        if [[ $(jq -r '.installed.version + " " + .slot.state' <<<"$s" 2>/dev/null) == "$3 confirmed" ]]; then
            echo "$s"
            return 0
        fi
        sleep 0.5
    done
    log "node $2 of $1 did not confirm $3"
    return 1
}

# run_case OLD NEW PATCHED(1|0): prints "patch_bytes chunk_bytes seconds"
# (called without a subshell, so the EXIT trap can stop its testnet)
run_case() {
    local old=$1 new=$2 patched=$3 d=$W/case-$1-$2-$3
    mkdir -p "$d"
    TN=$d/tn
    "$M" testnet up --nodes 2 --dir "$TN" --base-port 0 --image-size 16 >/dev/null
    "$M" testnet publish --dir "$TN" "$ESB/esbuild-$old" --version "$old" >/dev/null
    # Counters are since the daemon started: subtract the old install's.
    local before
    before=$(wait_confirmed "$TN" 1 "$old")
    local trust key hw ch sv
    trust=$(jq -r .trust_root "$TN/testnet.json")
    key=$(jq -r .release_key "$TN/testnet.json")
    hw=$(jq -r .hardware "$TN/testnet.json")
    ch=$(jq -r .channel "$TN/testnet.json")
    sv=$(jq -r '.releases[-1].security_version' "$TN/testnet.json")
    local common=(--trust "$trust" --key "$key" --hardware "$hw" --channel "$ch" --store "$d/pub")
    "$M" release create "${common[@]}" --image "$ESB/esbuild-$old" --version "$old" \
        --security-version "$sv" --out "$d/old.mota" >/dev/null
    local prev=() patch_store=()
    if ((patched)); then
        prev=(--previous "$d/old.mota")
        patch_store=(--patch-store "$d/pub")
    fi
    "$M" release create "${common[@]}" --image "$ESB/esbuild-$new" --version "$new" \
        --security-version $((sv + 1)) "${prev[@]}" --out "$d/new.mota" >/dev/null
    if ((patched)); then
        "$M" delta plan --from "$ESB/esbuild-$old" --to "$d/new.mota" --store "$d/pub" --json >"$d/plan.json"
    fi
    local t0=$SECONDS s
    "$M" node publish --config "$TN/node-0/node.toml" --manifest "$d/new.mota" \
        --image "$ESB/esbuild-$new" "${patch_store[@]}" >/dev/null
    s=$(wait_confirmed "$TN" 1 "$new")
    echo "$(($(jq .patch_bytes_fetched <<<"$s") - $(jq .patch_bytes_fetched <<<"$before")))" \
        "$(($(jq .chunk_bytes_fetched <<<"$s") - $(jq .chunk_bytes_fetched <<<"$before")))" \
        "$((SECONDS - t0))"
    "$M" testnet down --dir "$TN" >/dev/null
    TN=""
}

echo "### Patches over the mesh (real daemons, esbuild linux-x64)"
echo
echo "Measured by \`benches/patch-mesh.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, load average at the start $(cut -d' ' -f1 /proc/loadavg); commit $(cd "$REPO" && git rev-parse --short HEAD)."
echo
echo "| pair | node 1 fetched, chunks only (baseline) | node 1 fetched with the patch: patch + chunk bytes | ratio to the baseline | delta plan fetch_bytes / chunk_plan_bytes | bsdiff 4.3 patch | mesh bytes / bsdiff | s from publish to confirmed (patch / chunks) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for pair in 0.23.0:0.23.1 0.23.1:0.24.0; do
    old=${pair%%:*} new=${pair##*:}
    log "$old -> $new: chunks only"
    run_case "$old" "$new" 0 >"$W/out"
    read -r _ base_chunks base_s <"$W/out"
    log "$old -> $new: with the patch"
    run_case "$old" "$new" 1 >"$W/out"
    read -r p_bytes c_bytes p_s <"$W/out"
    plan=$W/case-$old-$new-1/plan.json
    bsdiff "$ESB/esbuild-$old" "$ESB/esbuild-$new" "$W/bsdiff.patch"
    bs=$(stat -c %s "$W/bsdiff.patch")
    total=$((p_bytes + c_bytes))
    echo "| $old → $new | $base_chunks | $p_bytes + $c_bytes = $total | $(echo "scale=3; $total / $base_chunks" | bc) | $(jq -r '"\(.fetch_bytes) / \(.chunk_plan_bytes)"' "$plan") | $bs | $(echo "scale=3; $total / $bs" | bc) | $p_s / $base_s |"
done
