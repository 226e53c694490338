#!/usr/bin/env bash
# Radio coding benchmark (radios/examples/coding_airtime.rs): one sender
# broadcasts a 20 KiB and a 100 KiB object as RaptorQ symbols in EU868
# frames (DR0: 51 B, DR5: 222 B) to 10 receivers that each lose every frame
# with probability 0, 10 % or 30 % (seeded, 5 seeds), until all of them
# have decoded and verified it. Reports frames per source symbol and the
# airtime as ratios to the lossless bound (the payload in full frames, each
# sent once) and the loss bound (lossless / (1 - loss)); then encode and
# decode CPU time as ratios to one BLAKE3 hash of the object, measured in
# the same process. Airtime figures are exact for a given seed; CPU times
# depend on load.
# Figures go to stdout as markdown (paste under "## Radios" in BENCHMARKS.md).
# Usage: benches/radios.sh
# Env: CARGO_TARGET_DIR (default /work/target-bench if writable, else REPO/target).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    if mkdir -p /work/target-bench 2>/dev/null; then
        export CARGO_TARGET_DIR=/work/target-bench
    else
        export CARGO_TARGET_DIR=$REPO/target
    fi
fi
cd "$REPO"
echo "radios.sh: building the example (release)" >&2
cargo build --release --locked -p meshota-radios --example coding_airtime >&2
echo "Command: \`benches/radios.sh\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1-3 /proc/loadavg)."
echo
"$CARGO_TARGET_DIR/release/examples/coding_airtime"
