#!/usr/bin/env bash
# Blobstore benchmarks, each against a baseline run in this same script:
#   1. ingest throughput of a 256 MiB image vs `casync make` (goal >= 1.5x)
#   2. assembly throughput and peak RSS for a 1 GiB image (goal < 64 MiB)
#   3. delta bytes for esbuild linux-x64 0.23.0->0.23.1 and 0.23.1->0.24.0
#      vs bsdiff, xdelta3 -e -9, zstd -19 --long=27 --patch-from, zstd -19
#   4. patches on the same pairs: fetch_bytes vs the bsdiff 4.3 patch (goal
#      <= 0.9x), creation time and peak RSS vs bsdiff, apply time and peak
#      RSS vs bspatch; then creation and apply on a synthetic image of
#      PATCH_MIB MiB (apply goal: peak RSS <= 16 MiB for 1 GiB)
# Figures go to stdout as markdown (paste under "## Blobstore" in
# BENCHMARKS.md). Inputs and scratch live in $MESHOTA_BENCH_CACHE
# (default /var/cache/meshota-bench), outside the repository.
# Usage: benches/blobstore.sh [--quick] [--patches]
#   --quick: 64 MiB / 256 MiB images (and a 256 MiB synthetic patch image)
#   --patches: run section 4 only
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MESHOTA_BENCH_CACHE:-/var/cache/meshota-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
INGEST_MIB=256
ASSEMBLE_MIB=1024
PATCH_MIB=1024
ONLY_PATCHES=0
for arg in "$@"; do
    case $arg in
        --quick) INGEST_MIB=64; ASSEMBLE_MIB=256; PATCH_MIB=256 ;;
        --patches) ONLY_PATCHES=1 ;;
        *) echo "usage: $0 [--quick] [--patches]" >&2; exit 2 ;;
    esac
done
RUNS=3

log() { echo "[blobstore.sh] $*" >&2; }

# --- tools -----------------------------------------------------------------
missing=()
for pair in casync:casync bsdiff:bsdiff bspatch:bsdiff xdelta3:xdelta3 zstd:zstd /usr/bin/time:time npm:npm; do
    cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

# --- inputs ----------------------------------------------------------------
ESB=$CACHE/esbuild
mkdir -p "$ESB" "$CACHE/work"
declare -A SHA256=(
    [0.23.0]=67b5fe9a9913237e215d99c87295b47493c48ef160fa87c4b17c83e89650e440
    [0.23.1]=2b59309c23de8066466519c8b1cdb2efb28b0869a2f6fce2fcd86f7f4e7ed9ba
    [0.24.0]=e7ed3f09090b864987027411d34b6b522b2090d83c811f712033e07a587d2275
)
for v in 0.23.0 0.23.1 0.24.0; do
    tgz=$ESB/esbuild-linux-x64-$v.tgz
    [[ -f $tgz ]] || (cd "$ESB" && npm pack --silent "@esbuild/linux-x64@$v" >/dev/null)
    echo "${SHA256[$v]}  $tgz" | sha256sum -c --quiet - || { log "sha256 mismatch for $tgz"; exit 1; }
    if [[ ! -f $ESB/esbuild-$v ]]; then
        rm -rf "$ESB/x" && mkdir -p "$ESB/x" && tar -xzf "$tgz" -C "$ESB/x"
        cp "$ESB/x/package/bin/esbuild" "$ESB/esbuild-$v"
    fi
done

W=$CACHE/work
make_image() { # NAME MIB: the first MIB MiB of a name-sorted tar of /usr (real files, deterministic per machine)
    local out=$W/$1 bytes=$(($2 * 1024 * 1024))
    if [[ ! -f $out || $(stat -c %s "$out") -ne $bytes ]]; then
        (tar -cf - --sort=name /usr 2>/dev/null || true) | head -c "$bytes" >"$out"
    fi
    [[ $(stat -c %s "$out") -eq $bytes ]] || { log "could not build $out"; exit 1; }
}
if ((!ONLY_PATCHES)); then
make_image img-ingest "$INGEST_MIB"
make_image img-assemble "$ASSEMBLE_MIB"
fi

# --- build -----------------------------------------------------------------
log "building blobstore-bench (release)"
(cd "$REPO" && cargo build -q --release -p meshota-blobstore --bin blobstore-bench)
BENCH=$CARGO_TARGET_DIR/release/blobstore-bench
json() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
secs_of() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
best() { sort -g | head -1; }
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

if ((!ONLY_PATCHES)); then
echo "## Blobstore"
echo
echo "Measured by \`benches/blobstore.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(casync --version | head -1), $(zstd --version | sed 's/.*v/zstd v/; s/,.*//'). Best of $RUNS runs; inputs read from the page cache."
echo

# --- 1. ingest vs casync -----------------------------------------------------
# Wall time and CPU time (user+sys) per run; best of INGEST_RUNS. On a shared
# machine the CPU-time ratio is the steadier figure; both are reported.
INGEST_RUNS=5
IMG=$W/img-ingest
cat "$IMG" >/dev/null
bytes=$(stat -c %s "$IMG")
timed() { /usr/bin/time -f "%e %U %S" "$@" 2>&1 >/dev/null | tail -1; }
declare -A WALL CPU
for _ in $(seq $INGEST_RUNS); do
    for tool in ours cas cas16; do
        rm -rf "$W/st-$tool" && mkdir -p "$W/st-$tool"
        case $tool in
            ours) t=$(timed "$BENCH" ingest "$W/st-$tool" "$IMG") ;;
            cas) t=$(timed casync make --store="$W/st-$tool" "$W/img.caibx" "$IMG") ;;
            cas16) t=$(timed casync make --chunk-size=4096:16384:65536 --store="$W/st-$tool" "$W/img16.caibx" "$IMG") ;;
        esac
        read -r wall user sys <<<"$t"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
        WALL[$tool]="${WALL[$tool]:-} $wall"
        CPU[$tool]="${CPU[$tool]:-} $cpu"
    done
done
bestof() { tr ' ' '\n' <<<"$1" | grep . | sort -g | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a/b}'; }
cw=$(bestof "${WALL[cas]}") cc=$(bestof "${CPU[cas]}")
echo "### Ingest, ${INGEST_MIB} MiB image (first ${INGEST_MIB} MiB of \`tar --sort=name /usr\`; \`zstd -3\` of the whole image: $(zstd -3 -T1 -c "$IMG" | wc -c) B)"
echo
echo "Best of $INGEST_RUNS runs each, tools interleaved; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| tool | command | wall s | CPU s | MiB/s (wall) | speed vs casync (wall) | speed vs casync (CPU) | store bytes on disk |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
row() { # TOOL LABEL COMMAND
    local w c
    w=$(bestof "${WALL[$1]}") c=$(bestof "${CPU[$1]}")
    echo "| $2 | \`$3\` | $w | $c | $(mibs "$bytes" "$w") | $(ratio "$cw" "$w") | $(ratio "$cc" "$c") | $(du -sb "$W/st-$1" | cut -f1) |"
}
row ours "meshota blobstore (16 KiB avg, zstd -3 per chunk)" "blobstore-bench ingest ST IMG"
row cas "casync (default: 64 KiB avg, zstd)" "casync make --store=ST IMG.caibx IMG"
row cas16 "casync (16 KiB avg, zstd)" "casync make --chunk-size=4096:16384:65536 --store=ST IMG.caibx IMG"
echo

# --- 2. assembly of a 1 GiB image --------------------------------------------
IMG=$W/img-assemble
rm -rf "$W/sa"
ing=$("$BENCH" ingest "$W/sa" "$IMG")
idx=$(sed -n 's/.*"index":"\([0-9a-f]*\)".*/\1/p' <<<"$ing")
runs=()
rss=0
for _ in $(seq $RUNS); do
    rm -f "$W/out.img"
    out=$( { /usr/bin/time -v "$BENCH" assemble "$W/sa" "$idx" "$W/out.img" >"$W/asm.json"; } 2>&1 )
    runs+=("$(json secs <"$W/asm.json")")
    r=$(sed -n 's/.*Maximum resident set size (kbytes): //p' <<<"$out")
    ((r > rss)) && rss=$r
done
cmp -s "$IMG" "$W/out.img" || { log "assembled image differs"; exit 1; }
a=$(printf '%s\n' "${runs[@]}" | best)
abytes=$(stat -c %s "$IMG")
cat "$IMG" >/dev/null
cp_s=$(secs_of cp "$IMG" "$W/copy.img")
rm -f "$W/copy.img" "$W/out.img"
echo "### Assembly, ${ASSEMBLE_MIB} MiB image (first ${ASSEMBLE_MIB} MiB of \`tar --sort=name /usr\`)"
echo
echo "| measure | value |"
echo "| --- | --- |"
echo "| ingest of the image (\`blobstore-bench ingest\`) | $(json secs <<<"$ing") s, $(json mib_per_s <<<"$ing") MiB/s, $(json chunks <<<"$ing") chunks |"
echo "| assembly to a file (\`blobstore-bench assemble ST INDEX OUT\`, read + zstd decode + BLAKE3 per chunk + whole-image BLAKE3) | $a s, $(mibs "$abytes" "$a") MiB/s |"
echo "| peak RSS of assembly (\`/usr/bin/time -v\`, max of $RUNS runs) | $((rss / 1024)) MiB ($rss KiB); goal < 64 MiB |"
echo "| baseline: \`cp IMG OUT\` of the same image | $cp_s s, $(mibs "$abytes" "$cp_s") MiB/s |"
echo

# --- 3. delta bytes on real binaries -----------------------------------------
echo "### Delta bytes, esbuild linux-x64 (binary from \`npm pack @esbuild/linux-x64@V\`, sha256-checked)"
echo
echo "| pair | target size | blobstore fetch_bytes (dedupe only) | blobstore full_bytes | bsdiff | xdelta3 -e -9 | zstd -19 --long=27 --patch-from | zstd -19 full image |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for pair in 0.23.0:0.23.1 0.23.1:0.24.0; do
    old=$ESB/esbuild-${pair%%:*} new=$ESB/esbuild-${pair##*:}
    plan=$("$BENCH" delta "$old" "$new")
    bsdiff "$old" "$new" "$W/p.bsdiff"
    xdelta3 -e -9 -f -s "$old" "$new" "$W/p.xd3"
    zstd -q -f -19 --long=27 --patch-from="$old" "$new" -o "$W/p.zst" 2>/dev/null
    zstd -q -f -19 "$new" -o "$W/full.zst"
    full=$(stat -c %s "$W/full.zst")
    pct() { awk -v a="$1" -v b="$full" 'BEGIN{printf "%d (%.0f%%)", a, 100*a/b}'; }
    echo "| ${pair/:/ → } | $(stat -c %s "$new") | $(pct "$(json fetch_bytes <<<"$plan")") | $(pct "$(json full_bytes <<<"$plan")") | $(pct "$(stat -c %s "$W/p.bsdiff")") | $(pct "$(stat -c %s "$W/p.xd3")") | $(pct "$(stat -c %s "$W/p.zst")") | $full (100%) |"
done
echo
echo "Percentages are of the zstd -19 full image. Commands: \`blobstore-bench delta OLD NEW\`, \`bsdiff OLD NEW P\`, \`xdelta3 -e -9 -s OLD NEW P\`, \`zstd -19 --long=27 --patch-from=OLD NEW -o P\`, \`zstd -19 NEW\`."
fi # ONLY_PATCHES

# --- 4. patches ---------------------------------------------------------------
# Ours: `blobstore-bench patch OLD NEW` makes the patch in memory exactly as
# `meshota delta plan --make-patch` does (ingest NEW, index OLD, create, plan
# for a node holding OLD) and prints fetch_bytes; creation time and peak RSS
# are of that whole process. Apply: `patch-make` into an origin store,
# `patch-fetch` copies the patch into a fresh node store, and `patch-apply`
# (the install path, rebuild_from_patch) is timed alone.
tv() { # FILE CMD...: run CMD under /usr/bin/time -v, stdout to FILE; print "secs kib"
    local f=$1; shift
    local t
    t=$( { /usr/bin/time -v "$@" >"$f"; } 2>&1 )
    local e k
    e=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' <<<"$t" | awk -F: '{ if (NF == 3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    k=$(sed -n 's/.*Maximum resident set size (kbytes): //p' <<<"$t")
    echo "$e $k"
}
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([0-9a-f.]*\).*/\1/p" | head -1; }
mib_of() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo "### Patches, esbuild linux-x64 (goal: fetch_bytes <= 0.9x the bsdiff 4.3 patch)"
echo
echo "Measured by \`benches/blobstore.sh --patches\` on $(date -u +%Y-%m-%d), $(nproc) cores, load average at the start $(cut -d' ' -f1 /proc/loadavg). Creation and apply times are one run each (wall clock)."
echo
echo "| pair | chunk plan bytes | patch plan fetch_bytes | bsdiff 4.3 patch | fetch_bytes / bsdiff | pieces | creation s / peak RSS (ours) | creation s / peak RSS (bsdiff) | apply s / peak RSS (ours) | apply s / peak RSS (bspatch) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for pair in 0.23.0:0.23.1 0.23.1:0.24.0; do
    old=$ESB/esbuild-${pair%%:*} new=$ESB/esbuild-${pair##*:}
    read -r cs ck < <(tv "$W/patch.json" "$BENCH" patch "$old" "$new")
    read -r bs bk < <(tv /dev/null bsdiff "$old" "$new" "$W/p.bsdiff")
    rm -rf "$W/pt-origin" "$W/pt-node"
    "$BENCH" patch-make "$W/pt-origin" "$old" "$new" >"$W/make.json"
    pid=$(field patch <"$W/make.json") idx=$(field index <"$W/make.json")
    "$BENCH" patch-fetch "$W/pt-origin" "$W/pt-node" "$pid" "$idx" >/dev/null
    read -r as ak < <(tv "$W/apply.json" "$BENCH" patch-apply "$W/pt-node" "$old" "$pid" "$idx")
    read -r ps pk < <(tv /dev/null bspatch "$old" "$W/p.out" "$W/p.bsdiff")
    cmp -s "$W/p.out" "$new" || { log "bspatch output differs"; exit 1; }
    fetch=$(field fetch_bytes <"$W/patch.json")
    bsd=$(stat -c %s "$W/p.bsdiff")
    echo "| ${pair/:/ → } | $(field chunk_plan_bytes <"$W/patch.json") | $fetch | $bsd | $(awk -v a="$fetch" -v b="$bsd" 'BEGIN{printf "%.3fx", a/b}') | $(field pieces <"$W/patch.json") | $cs s / $(mib_of "$ck") MiB | $bs s / $(mib_of "$bk") MiB | $as s / $(mib_of "$ak") MiB | $ps s / $(mib_of "$pk") MiB |"
done
echo
echo "Commands: \`blobstore-bench patch OLD NEW\` (= \`meshota delta plan --from OLD --to NEW --make-patch\`), \`bsdiff OLD NEW P\`, \`blobstore-bench patch-make ORIGIN OLD NEW\` + \`patch-fetch ORIGIN NODE PATCH INDEX\` + \`patch-apply NODE OLD PATCH INDEX\` (timed), \`bspatch OLD OUT P\`, each under \`/usr/bin/time -v\`."
echo

# Synthetic large image: code-like bytes, an operand changed every 3 KiB
# (so every chunk is new and every piece applies), same length.
SYN_OLD=$W/syn-$PATCH_MIB-old SYN_NEW=$W/syn-$PATCH_MIB-new
[[ -f $SYN_NEW && $(stat -c %s "$SYN_NEW") -eq $((PATCH_MIB << 20)) ]] || "$BENCH" synth "$SYN_OLD" "$SYN_NEW" "$PATCH_MIB"
rm -rf "$W/ps-origin" "$W/ps-node"
read -r ms mk < <(tv "$W/make.json" "$BENCH" patch-make "$W/ps-origin" "$SYN_OLD" "$SYN_NEW")
pid=$(field patch <"$W/make.json") idx=$(field index <"$W/make.json")
"$BENCH" patch-fetch "$W/ps-origin" "$W/ps-node" "$pid" "$idx" >/dev/null
cat "$SYN_OLD" >/dev/null
read -r as ak < <(tv "$W/apply.json" "$BENCH" patch-apply "$W/ps-node" "$SYN_OLD" "$pid" "$idx")
echo "### Patches, synthetic ${PATCH_MIB} MiB image (\`blobstore-bench synth OLD NEW $PATCH_MIB\`)"
echo
echo "| measure | value |"
echo "| --- | --- |"
echo "| patch | $(field pieces <"$W/make.json") pieces, $(field patch_bytes <"$W/make.json") bytes replacing $(field replaced_bytes <"$W/make.json") bytes of chunks |"
echo "| creation (\`patch-make\`: ingest NEW into a store, index OLD, create; create alone $(field secs <"$W/make.json") s) | $ms s, peak RSS $(mib_of "$mk") MiB |"
echo "| apply (\`patch-apply\`: hash the base, apply every piece, store $(field chunks_produced <"$W/apply.json") chunks in the node store) | $as s, peak RSS $(mib_of "$ak") MiB ($ak KiB); goal <= 16 MiB |"
echo
