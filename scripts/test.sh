#!/usr/bin/env bash
# Runs meshota's whole test suite on a fresh Debian machine: installs the
# system packages and the Python checker the tests use, then runs every
# test of the workspace.
#
# Usage: bash scripts/test.sh [extra cargo test args]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# --- System packages the tests drive as the real other side. -------------
#   fw_printenv / fw_setenv   libubootenv-tool   U-Boot environment interop
#   grub-editenv              grub-common        GRUB environment interop
#   unsquashfs                squashfs-tools     provisioning images
#   mosquitto                 mosquitto          MQTT re-provision triggers
#   python3 -m venv           python3-venv       the independent verifier
#   nginx                     nginx              the gateway's HTTP origin
#   mosquitto                 mosquitto          the gateway's MQTT broker
#   openssl                   openssl            a certificate for the HTTPS origin test
declare -A tool_pkg=(
    [fw_printenv]=libubootenv-tool
    [fw_setenv]=libubootenv-tool
    [grub-editenv]=grub-common
    [unsquashfs]=squashfs-tools
    [nginx]=nginx
    [mosquitto]=mosquitto
    [openssl]=openssl
)
missing=()
for tool in "${!tool_pkg[@]}"; do
    # nginx and mosquitto live in /usr/sbin, not on every user's PATH.
    command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("${tool_pkg[$tool]}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# mosquitto lives in /usr/sbin, which a non-root PATH may lack.
[[ -x /usr/sbin/mosquitto || -x /usr/bin/mosquitto ]] || missing+=(mosquitto)
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "test.sh: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- The independent verifier: Python cryptography >= 50 (ML-DSA). --------
venv="$root/.venv"
if ! "$venv/bin/python" -c 'import cryptography, blake3, sys; sys.exit(int(cryptography.__version__.split(".")[0]) < 50)' 2>/dev/null; then
    echo "test.sh: creating $venv with cryptography>=50"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export MESHOTA_PYTHON="$venv/bin/python"
"$MESHOTA_PYTHON" tests/python/selftest_verify_manifest.py

# --- The Rust suite. -------------------------------------------------------
log="$(mktemp -t meshota-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The radios crate's SX126x backend is behind the `sx126x` feature (it pulls
# lora-phy, spidev and gpiocdev, so the default build leaves it out): build
# it as a Raspberry Pi user would, then run its tests against the mock SPI
# device (only those: the crate's other tests ran above).
cargo build -p meshota-radios --features sx126x --locked 2>&1 | tee -a "$log"
((PIPESTATUS[0] == 0)) || status=1
cargo test -p meshota-radios --features sx126x --locked --lib sx126x:: 2>&1 | tee -a "$log"
((PIPESTATUS[0] == 0)) || status=1
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
