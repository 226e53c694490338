#!/usr/bin/env bash
# LoRa airtime benchmark (issue #8) in the deterministic simulator, EU868
# (g3 sub-band 869.525 MHz, 10 % duty cycle; DR5 = SF7/125 kHz, 222-byte
# frames; 14 dBm, log-distance path loss, 10 % extra frame loss, collisions
# with 6 dB capture, listen before talk). For each scenario (line:5,
# random:50, grid:200) and payload (20 KiB, 100 KiB), one run of
#   meshota sim --lora --topology T --payload-bytes N --seed S --json --baseline
# which measures, in the same medium and seed:
#   - the coded broadcast (mesh::radio): total airtime, airtime per node,
#     time to full convergence;
#   - the broadcast bound: the payload once per node of a greedy connected
#     dominating set (goal: coded <= 1.5x the bound);
#   - the unicast baseline: per-neighbour transfers with acknowledgements
#     and retransmission (goal on random:50: baseline >= 3x coded).
# A second table splits the coded run's airtime by frame kind (seconds,
# frames in brackets) and gives the bundle's share of a broadcast bound
# (bundle_bound_airtime_s: the bundle once per CDS node; not in the bound).
# Then, for each scenario, a patch release (issue #8 items 7 and 9): every
# node runs v1, node 0 holds v2 and a ~20 KiB patch from v1 (v2's image is
# ten times larger), once fetched by patch
#   meshota sim --lora --patch --topology T --payload-bytes 20480 --seed S --json
# and once by v2's chunks the nodes lack (--patch-as-chunks), same seed.
# Then the same ~20 KiB patch of a large image (--image-bytes, default
# 32 MiB: a large release, its chunk index sent as a delta against v1's,
# unchanged chunks left in the stores) against the run above as baseline.
# Before it, a planned-backbone table: each scenario with --relays cds (the
# bound's own dominating set as the only relays; every other node a leaf)
# and --relays plan (what `meshota radio plan` gives: that set plus the
# relays that keep every node within 2 hops of its shortest path) beside
# the elected senders' run of the same seed.
# Figures go to stdout as markdown (paste under "## LoRa" in BENCHMARKS.md);
# progress to stderr. Every run is bounded in virtual time (6 h) and steps.
# Usage: benches/lora.sh [--seed S] [--payloads "20480 102400"] [--topologies "line:5 random:50 grid:200"] [--no-patch] [--large-image-bytes N]
# (--payloads "" runs the patch table only.)
# Env: MESHOTA_BIN (default: build $CARGO_TARGET_DIR/release/meshota),
#      CARGO_TARGET_DIR (default /work/target-bench if writable, else REPO/target).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SEED=1
PAYLOADS="20480 102400"
TOPOLOGIES="line:5 random:50 grid:200"
PATCH=1
LARGE=33554432
while (($#)); do
    case $1 in
    --seed) SEED=$2; shift 2 ;;
    --payloads) PAYLOADS=$2; shift 2 ;;
    --topologies) TOPOLOGIES=$2; shift 2 ;;
    --no-patch) PATCH=0; shift ;;
    --large-image-bytes) LARGE=$2; shift 2 ;;
    *) echo "usage: $0 [--seed S] [--payloads \"N ...\"] [--topologies \"T ...\"] [--no-patch] [--large-image-bytes N]" >&2; exit 2 ;;
    esac
done
log() { echo "lora.sh: $*" >&2; }

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
command -v python3 >/dev/null || { echo "lora.sh: needs python3 (to read the JSON)" >&2; exit 2; }

if [[ -n ${PAYLOADS// /} ]]; then
echo "| scenario | payload | converged | time to converge (s) | airtime total (s) | per node (s) | max node (s) | bound (s) | coded / bound | baseline (s) | baseline / coded | duty-cycle violations | wall (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
fi
KINDS=""
for payload in $PAYLOADS; do
    for topo in $TOPOLOGIES; do
        log "sim --lora --topology $topo --payload-bytes $payload --seed $SEED --baseline"
        start=$(date +%s.%N)
        # Exit 1 means "did not converge": still a figure to report.
        json=$("$M" sim --lora --topology "$topo" --payload-bytes "$payload" --seed "$SEED" --json --baseline 2>/dev/null) || true
        end=$(date +%s.%N)
        if [[ -z $json ]]; then
            echo "| $topo | $payload | error | | | | | | | | | | |"
            KINDS+="| $topo | $payload | error | | | | | | | | | |"$'\n'
            continue
        fi
        WALL=$(python3 -c "print(f'{$end - $start:.1f}')") python3 -c '
import json, os, sys
r = json.loads(sys.argv[1])
kib = r["payload_bytes"] / 1024
vd = r.get("baseline_duty_cycle_violations")
print("| {t} | {kib:g} KiB | {c} | {v:.0f} | {a:.1f} | {p:.2f} | {m:.1f} | {b:.1f} | {ab:.2f}x | {bl:.1f} (converged: {bc}, {bvs:.0f} s) | {bx:.2f}x | {dv} / baseline {bdv} | {w} |".format(
    t=r["topology"], kib=kib, c="yes" if r["converged"] else "NO",
    v=r["virtual_seconds"], a=r["airtime_total_s"], p=r["airtime_per_node_s"],
    m=r["airtime_max_node_s"], b=r["bound_airtime_s"], ab=r["airtime_vs_bound"],
    bl=r["baseline_airtime_s"], bc="yes" if r["baseline_converged"] else "NO",
    bvs=r["baseline_virtual_seconds"], bx=r["baseline_vs_coded"],
    dv=r["duty_cycle_violations"], bdv=vd, w=os.environ["WALL"]))
' "$json"
        KINDS+=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
s = r.get("airtime_by_kind_s", {}); f = r.get("frames_by_kind", {})
kinds = ["announce", "request", "bundle", "symbol", "progress", "repair", "other"]
cell = lambda k: "{:.1f} ({})".format(s.get(k, 0.0), f.get(k, 0))
print("| {t} | {kib:g} KiB | {a:.1f} | {cells} | {bb:.1f} | {b:.1f} |".format(
    t=r["topology"], kib=r["payload_bytes"] / 1024, a=r["airtime_total_s"],
    cells=" | ".join(cell(k) for k in kinds),
    bb=r.get("bundle_bound_airtime_s", 0.0), b=r["bound_airtime_s"]))
' "$json")$'\n'
    done
done
if [[ -n $KINDS ]]; then
    echo
    echo "Coded airtime by frame kind, seconds (frames):"
    echo
    echo "| scenario | payload | airtime total (s) | announce | request | bundle | symbol | progress | repair | other | bundle bound (s) | bound (s) |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$KINDS"
fi

if [[ -n ${PAYLOADS// /} ]]; then
    echo
    echo "Planned backbones, every other node a leaf; same seed. cds: only the bound's dominating set serves. plan: meshota radio plan's backbone (that set plus the relays that keep every node within 2 hops of its shortest path):"
    echo
    echo "| scenario | payload | relays | converged | time to converge (s) | airtime total (s) | bound (s) | coded / bound | elected senders' coded / bound |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for payload in $PAYLOADS; do
        for topo in $TOPOLOGIES; do
            elected=$("$M" sim --lora --topology "$topo" --payload-bytes "$payload" --seed "$SEED" --json 2>/dev/null) || true
            for relays in cds plan; do
                log "sim --lora --relays $relays --topology $topo --payload-bytes $payload --seed $SEED"
                planned=$("$M" sim --lora --relays "$relays" --topology "$topo" --payload-bytes "$payload" --seed "$SEED" --json 2>/dev/null) || true
                if [[ -z $planned || -z $elected ]]; then
                    echo "| $topo | $payload | $relays: error | | | | | | |"
                    continue
                fi
                python3 -c '
import json, sys
p = json.loads(sys.argv[1]); e = json.loads(sys.argv[2])
conv = "yes" if p["converged"] else "NO ({} of {} nodes in 6 h)".format(p["converged_nodes"], p["honest_nodes"])
print("| {t} | {kib:g} KiB | {r}: {rn} of {n} | {c} | {v:.0f} | {a:.1f} | {b:.1f} | {ab:.2f}x | {eb:.2f}x |".format(
    t=p["topology"], kib=p["payload_bytes"] / 1024, r=p["relays"], rn=p["relay_nodes"], n=p["honest_nodes"], c=conv,
    v=p["virtual_seconds"], a=p["airtime_total_s"], b=p["bound_airtime_s"], ab=p["airtime_vs_bound"],
    eb=e["airtime_vs_bound"]))
' "$planned" "$elected"
            done
        done
    done
fi

((PATCH)) || exit 0
[[ -z ${PAYLOADS// /} ]] || echo
echo "| scenario | patch (B) | v2 image (B) | v2 chunks v1 lacks (B) | nodes by patch / chunks / both | by patch: time (s) | by patch: airtime (s) | bound (s) | by chunks: time (s) | by chunks: airtime (s) | bound (s) | chunks / patch airtime | duty-cycle violations |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for topo in $TOPOLOGIES; do
    log "sim --lora --patch --topology $topo --payload-bytes 20480 --seed $SEED (and --patch-as-chunks)"
    bypatch=$("$M" sim --lora --patch --topology "$topo" --payload-bytes 20480 --seed "$SEED" --json 2>/dev/null) || true
    bychunks=$("$M" sim --lora --patch --patch-as-chunks --topology "$topo" --payload-bytes 20480 --seed "$SEED" --json 2>/dev/null) || true
    if [[ -z $bypatch || -z $bychunks ]]; then
        echo "| $topo | error | | | | | | | | | | | |"
        continue
    fi
    python3 -c '
import json, sys
p = json.loads(sys.argv[1]); c = json.loads(sys.argv[2])
conv = lambda r: "" if r["converged"] else " (NOT converged: {} of {} nodes)".format(r["converged_nodes"], r["honest_nodes"])
print("| {t} | {pb} | {ib} | {nb} | {bp} / {bc} / {bm} | {v:.0f}{cp} | {a:.1f} | {b:.1f} | {vc:.0f}{cc} | {ac:.1f} | {bcb:.1f} | {x:.2f}x{more} | {dv} / {dc} |".format(
    t=p["topology"], pb=p["patch_bytes"], ib=p["image_bytes"], nb=p["new_chunk_bytes"],
    bp=p["installed_by_patch"], bc=p["installed_by_chunks"], bm=p["installed_mixed"],
    v=p["virtual_seconds"], cp=conv(p), a=p["airtime_total_s"], b=p["bound_airtime_s"],
    vc=c["virtual_seconds"], cc=conv(c), ac=c["airtime_total_s"], bcb=c["bound_airtime_s"],
    x=c["airtime_total_s"] / max(p["airtime_total_s"], 1e-9), more="" if c["converged"] else " or more",
    dv=p["duty_cycle_violations"], dc=c["duty_cycle_violations"]))
' "$bypatch" "$bychunks"
done

echo
echo "| scenario | v2 image (B) | chunks | bundle (B) | index as delta | most chunks in a node's radio memory | time (s) | airtime (s) | bound (s) | airtime / bound | airtime / small-image run's | duty-cycle violations |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for topo in $TOPOLOGIES; do
    log "sim --lora --patch --topology $topo --payload-bytes 20480 --seed $SEED (and --image-bytes $LARGE)"
    small=$("$M" sim --lora --patch --topology "$topo" --payload-bytes 20480 --seed "$SEED" --json 2>/dev/null) || true
    large=$("$M" sim --lora --patch --image-bytes "$LARGE" --topology "$topo" --payload-bytes 20480 --seed "$SEED" --json 2>/dev/null) || true
    if [[ -z $small || -z $large ]]; then
        echo "| $topo | error | | | | | | | | | | |"
        continue
    fi
    python3 -c '
import json, sys
s = json.loads(sys.argv[1]); l = json.loads(sys.argv[2])
conv = lambda r: "" if r["converged"] else " (NOT converged: {} of {} nodes)".format(r["converged_nodes"], r["honest_nodes"])
for r, base in ((s, None), (l, s)):
    print("| {t} | {ib} | {c} | {bb} | {d} | {m} | {v:.0f}{cv} | {a:.1f} | {b:.1f} | {ab:.2f}x | {x} | {dv} |".format(
        t=r["topology"], ib=r["image_bytes"], c=r["chunks"], bb=r["bundle_bytes"],
        d="yes" if r.get("index_delta") else "no", m=r.get("chunks_in_memory_max", ""),
        v=r["virtual_seconds"], cv=conv(r), a=r["airtime_total_s"], b=r["bound_airtime_s"],
        ab=r["airtime_total_s"] / max(r["bound_airtime_s"], 1e-9),
        x="(baseline)" if base is None else "{:.3f}x".format(r["airtime_total_s"] / max(base["airtime_total_s"], 1e-9)),
        dv=r["duty_cycle_violations"]))
' "$small" "$large"
done
