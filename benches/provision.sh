#!/usr/bin/env bash
# Provisioning benchmark: `meshota provision batch` on N devices (keys
# generated per device: ML-DSA-65 + ML-KEM-768, certificate signed, five
# files written with fsync on 16 writer threads, registry committed),
# against a baseline run in this same script: the same per-device work in
# Python `cryptography` (OpenSSL's ML-DSA / ML-KEM: keys, an ML-DSA-65
# certificate from the same intermediate, the same files with fsync), one
# process, one thread.
# Goal (issue #9): >= 100 devices/s on this machine.
# Figures go to stdout as markdown (paste under "## Provisioning" in
# BENCHMARKS.md). Scratch lives in a temporary directory.
# Usage: benches/provision.sh [N]   (default 2000 devices; 3 runs each)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
N=${1:-2000}
RUNS=3
PY=${MESHOTA_PYTHON:-$REPO/.venv/bin/python}
log() { echo "[provision.sh] $*" >&2; }

[[ -x $PY ]] || { log "no Python with cryptography >= 50 at $PY: run scripts/test.sh once, or set MESHOTA_PYTHON"; exit 1; }
log "building meshota (release)"
cargo build --release -q -p meshota-node --manifest-path "$REPO/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/meshota

W=$(mktemp -d -t meshota-prov-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
"$BIN" provision ca root --name "Bench Root" --out root >/dev/null
"$BIN" provision ca intermediate --root root --name "Bench Factory" --out factory >/dev/null
{
    echo "hardware_id,hardware_class"
    for ((i = 0; i < N; i++)); do printf 'BENCH%08d,rpi4\n' "$i"; done
} >devices.csv

cat >baseline.py <<'EOF'
import datetime, os, sys, time
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.x509.oid import NameOID

n, inter_cert_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# meshota's CA key file is its own format; an ML-DSA-65 stand-in key costs the same to sign with.
inter_key = mldsa.MLDSA65PrivateKey.generate()
inter = x509.load_pem_x509_certificate(open(inter_cert_file, "rb").read())
now = datetime.datetime.now(datetime.timezone.utc)

def write(path, data, mode):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, data); os.fsync(fd); os.close(fd)
    os.rename(tmp, path)

start = time.perf_counter()
for i in range(n):
    d = f"{out}/py-{i}"
    os.makedirs(d, exist_ok=True)
    sk = mldsa.MLDSA65PrivateKey.generate()
    kem = mlkem.MLKEM768PrivateKey.generate()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "rpi4"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"py-{i}"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{i:010x}"),
    ])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(inter.subject)
        .public_key(sk.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(sk.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter_key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:meshota:device:py-{i}")]), critical=False)
        .sign(inter_key, None))
    pem = serialization.Encoding.PEM
    write(f"{d}/identity.key", sk.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    write(f"{d}/identity.pub", sk.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    write(f"{d}/kem.key", kem.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    write(f"{d}/kem.pub", kem.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    write(f"{d}/device.crt", cert.public_bytes(pem) + inter.public_bytes(pem), 0o644)
    dfd = os.open(d, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
print(f"{n / (time.perf_counter() - start):.1f}")
EOF

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

meshota_run() { # THREADS -> "devices/s p50 p99"
    rm -rf out factory/registry.redb
    "$BIN" provision batch --ca factory --devices devices.csv --out out --json --threads "$1" |
        "$PY" -c 'import json,sys; s=json.load(sys.stdin); assert s["succeeded"]==s["devices"]; print("%.1f %.2f %.2f" % (s["devices_per_second"], s["p50_ms"], s["p99_ms"]))'
}

declare -A RATE P50 P99
for threads in 1 2; do
    rates=() p50s=() p99s=()
    for ((r = 0; r < RUNS; r++)); do
        read -r rate p50 p99 < <(meshota_run "$threads")
        log "meshota, $threads thread(s), run $r: $rate devices/s (p50 $p50 ms, p99 $p99 ms)"
        rates+=("$rate") p50s+=("$p50") p99s+=("$p99")
    done
    RATE[$threads]=$(printf '%s\n' "${rates[@]}" | median)
    P50[$threads]=$(printf '%s\n' "${p50s[@]}" | median)
    P99[$threads]=$(printf '%s\n' "${p99s[@]}" | median)
done

py_rates=()
for ((r = 0; r < RUNS; r++)); do
    rm -rf pyout && mkdir pyout
    rate=$("$PY" baseline.py "$N" factory/ca.crt pyout)
    log "python cryptography baseline, run $r: $rate devices/s"
    py_rates+=("$rate")
done
PY_RATE=$(printf '%s\n' "${py_rates[@]}" | median)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "### Batch provisioning, $N devices (median of $RUNS runs; $(nproc) CPUs, $(uname -m))"
echo
echo "| run | devices/s | per device p50 | p99 | vs goal 100/s | vs Python baseline |"
echo "| --- | --- | --- | --- | --- | --- |"
for threads in 1 2; do
    echo "| meshota provision batch, $threads thread(s) | ${RATE[$threads]} | ${P50[$threads]} ms | ${P99[$threads]} ms | $(ratio "${RATE[$threads]}" 100)x | $(ratio "${RATE[$threads]}" "$PY_RATE")x |"
done
echo "| Python cryptography 50 baseline, 1 thread | $PY_RATE | | | $(ratio "$PY_RATE" 100)x | 1.00x |"
