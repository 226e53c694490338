#!/usr/bin/env bash
# Sneakernet benchmark: how long a stick takes at each end, against a
# baseline run in this same script on the same files: `cp` of the bundle
# (what copying it onto the stick costs on this disk, fsynced).
#
# One release of SIZE MiB (pseudo-random, incompressible: the worst case for
# chunk compression) in an operator's store, then:
#   export          `bundle export` (trust root, manifest, index, chunks; fsync, rename)
#   export sealed   the same, encrypted to one ML-KEM-768 recipient
#   verify          `bundle verify` (every record, signature and reference; writes nothing)
#   import          `bundle import` into a fresh offline node (verify pass + commit pass)
#   import sealed   the same for the encrypted bundle
# Figures go to stdout as markdown (paste under "## Sneakernet" in
# BENCHMARKS.md): seconds (median of RUNS), MiB/s of image, and the ratio
# to the `cp` baseline.
# Usage: benches/sneakernet.sh [SIZE_MIB]   (default 256; 3 runs each)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
SIZE=${1:-256}
RUNS=3
log() { echo "[sneakernet.sh] $*" >&2; }

log "building meshota (release)"
cargo build --release -q -p meshota-node --manifest-path "$REPO/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/meshota
export MESHOTA_NO_PROGRESS=1

W=$(mktemp -d -t meshota-sneakernet-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
"$BIN" keys generate --out k --name root >/dev/null
"$BIN" keys generate --out k --name rel >/dev/null
"$BIN" keys generate --kem --out k --name field >/dev/null
"$BIN" trust init --root-key k/root.pub --threshold 1 --release-key k/rel.pub \
    --sign k/root.key --out trust.mota >/dev/null
head -c $((SIZE << 20)) /dev/urandom >v1.img
head -c $((1 << 20)) /dev/urandom >v0.img
"$BIN" release create --trust trust.mota --key k/rel.key --image v0.img --hardware bench \
    --version 0.1.0 --security-version 1 --store ops --out v0.mota >/dev/null
"$BIN" release create --trust trust.mota --key k/rel.key --image v1.img --hardware bench \
    --version 1.0.0 --security-version 2 --store ops --out v1.mota >/dev/null

# A fresh offline node with file slots, provisioned with v0.
node() {
    rm -rf "$1"
    mkdir -p "$1/state"
    truncate -s $((2 * (SIZE + 8) << 20)) "$1/disk.img"
    cat >"$1/node.toml" <<EOF
hardware = "bench"
channel = "stable"
trust_root = "../trust.mota"
data_dir = "state"
store_dir = "store"

[device]
install_record = "state/install.rec"

[device.slot_a]
path = "disk.img"
size = $(((SIZE + 8) << 20))

[device.slot_b]
path = "disk.img"
offset = $(((SIZE + 8) << 20))

[device.boot]
kind = "simulated"
records = "state/boot.rec"

[bundle]
kem_key = "../k/field.kem.key"
EOF
    "$BIN" slots provision --config "$1/node.toml" --manifest v0.mota --store ops >/dev/null
}

# Median wall seconds of RUNS runs of "$@" (a `prep` function runs before each, untimed).
prep() { :; }
median() {
    local times=()
    for ((r = 0; r < RUNS; r++)); do
        prep
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc -l)")
    done
    printf '%s\n' "${times[@]}" | sort -g | sed -n "$(((RUNS + 1) / 2))p"
}

cp_sync() { cp "$1" "$2" && sync -f "$2"; }

"$BIN" bundle export --store ops --release v1.mota --trust trust.mota --out plain.bundle >/dev/null
log "baseline: cp of the bundle"
base=$(median cp_sync plain.bundle copy.bundle)
log "export"
t_export=$(median "$BIN" bundle export --store ops --release v1.mota --trust trust.mota --out plain.bundle)
log "export sealed"
t_sealed=$(median "$BIN" bundle export --store ops --release v1.mota --trust trust.mota \
    --encrypt-to k/field.kem.pub --out sealed.bundle)
log "verify"
t_verify=$(median "$BIN" bundle verify --trust trust.mota plain.bundle)
log "import"
prep() { node n1; }
t_import=$(median "$BIN" bundle import --config n1/node.toml plain.bundle)
log "import sealed"
prep() { node n2; }
t_import_sealed=$(median "$BIN" bundle import --config n2/node.toml sealed.bundle)

bytes=$(stat -c %s plain.bundle)
echo "Bundle of one ${SIZE} MiB release ($(echo "$bytes / 1048576" | bc) MiB file), median of $RUNS runs, $(nproc) cores:"
echo
echo "| step | seconds | MiB/s of image | time / cp baseline |"
echo "| --- | --- | --- | --- |"
row() { printf '| %s | %.2f | %.0f | %.2f× |\n' "$1" "$2" "$(echo "$SIZE / $2" | bc -l)" "$(echo "$2 / $base" | bc -l)"; }
row "cp of the bundle, fsynced (baseline)" "$base"
row "bundle export" "$t_export"
row "bundle export --encrypt-to (1 recipient)" "$t_sealed"
row "bundle verify" "$t_verify"
row "bundle import (offline node: verify + commit)" "$t_import"
row "bundle import, encrypted" "$t_import_sealed"
