#!/usr/bin/env bash
# meshota quickstart: keys -> trust root -> signed release -> verify, then
# show that a tampered manifest and a rollback are rejected.
#
# Usage: bash scripts/quickstart.sh [WORKDIR]
# Uses $MESHOTA if set, otherwise builds the binary with cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${MESHOTA:-}" ]]; then
    cargo build --quiet --release -p meshota-node --manifest-path "$here/Cargo.toml"
    MESHOTA="${CARGO_TARGET_DIR:-$here/target}/release/meshota"
fi
work="${1:-$(mktemp -d -t meshota-quickstart.XXXXXX)}"
mkdir -p "$work"
cd "$work"
step() { printf '\n== %s\n' "$*"; }

step "1. keys: one root key, one release key"
"$MESHOTA" keys generate --out keys --name root
"$MESHOTA" keys generate --out keys --name release

step "2. trust root: root threshold 1, the release key may sign for hardware rpi4"
"$MESHOTA" trust init --root-key keys/root.pub --threshold 1 \
    --release-key 'keys/release.pub;hardware=rpi4' \
    --sign keys/root.key --out trust.mota
"$MESHOTA" trust show trust.mota

step "3. a 4 MiB image and its signed release manifest"
head -c 4194304 /dev/urandom > rootfs.img
"$MESHOTA" release create --trust trust.mota --key keys/release.key \
    --image rootfs.img --hardware rpi4 --version 1.0.0 --security-version 1 \
    --store store --out release-1.0.0.mota
"$MESHOTA" release inspect release-1.0.0.mota

step "4. verify it as an rpi4 device with nothing installed (exit 0)"
"$MESHOTA" release verify --trust trust.mota --hardware rpi4 release-1.0.0.mota

step "5. a tampered copy is rejected (exit 1)"
cp release-1.0.0.mota tampered.mota
# Change the signed version string 1.0.0 to 9.9.9, as an attacker would.
offset=$(grep -obUa '1\.0\.0' tampered.mota | head -n1 | cut -d: -f1)
printf '9.9.9' | dd of=tampered.mota bs=1 seek="$offset" conv=notrunc status=none
set +e
"$MESHOTA" release verify --trust trust.mota tampered.mota
tampered=$?
step "6. a device already on security version 1 refuses it as a rollback (exit 1)"
"$MESHOTA" release verify --trust trust.mota --hardware rpi4 \
    --installed-security-version 1 release-1.0.0.mota
rollback=$?
set -e
if [[ $tampered -ne 1 || $rollback -ne 1 ]]; then
    echo "quickstart: expected exit 1 for the tampered manifest and the rollback, got $tampered and $rollback" >&2
    exit 1
fi
printf '\nquickstart finished in %s\n' "$work"
