#!/usr/bin/env python3
"""Self-test for verify_manifest.py that needs no meshota binary.

Generates ML-DSA-65 keys with `cryptography`, writes meshota public key files
and signed documents in the documented layout (its own small encoder, not the
verifier's parser), and runs verify_manifest.py as a subprocess, checking the
exit status: 0 for a good signature, 1 for everything else.

Run:  python selftest_verify_manifest.py      (exits non-zero on any failure)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import blake3
from cryptography.hazmat.primitives.asymmetric import mldsa

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFIER = os.path.join(HERE, "verify_manifest.py")

KINDS = {1: "trust-root", 2: "release-manifest", 3: "rollout-command", 4: "node-report"}


# ---- an independent encoder for the meshota layout --------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def header(kind: int, version: int = 1) -> bytes:
    return b"MOTA" + bytes([version, kind])


def public_key_file(raw_pk: bytes, name: str = "selftest key", algorithm: int = 1) -> bytes:
    nb = name.encode()
    return header(16) + bytes([algorithm]) + varint(len(nb)) + nb + varint(len(raw_pk)) + raw_pk


def key_id(raw_pk: bytes) -> bytes:
    return blake3.blake3(raw_pk).digest()


def signed_document(kind: int, body: bytes, entries: list[tuple[bytes, bytes]]) -> bytes:
    out = header(kind) + varint(len(body)) + body + varint(len(entries))
    for kid, sig in entries:
        assert len(kid) == 32
        out += kid + varint(len(sig)) + sig
    return out


def context(kind: int) -> bytes:
    return ("meshota/v1/" + KINDS[kind]).encode()


# ---- harness ----------------------------------------------------------------

class Harness:
    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.passed = 0
        self.failed = 0
        self.n = 0

    def write(self, data: bytes) -> str:
        self.n += 1
        path = os.path.join(self.tmp, f"f{self.n}.bin")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def check(self, name: str, doc: bytes, key: bytes, want: int, extra: list[str] | None = None,
              expect_text: str | None = None) -> None:
        cmd = [sys.executable, VERIFIER, "--manifest", self.write(doc),
               "--public-key", self.write(key)] + (extra or [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        out = p.stdout + p.stderr
        ok = p.returncode == want and (expect_text is None or expect_text in out)
        if ok:
            self.passed += 1
            last = out.strip().splitlines()[-1] if out.strip() else ""
            print(f"ok   {name}: exit {p.returncode} | {last}")
        else:
            self.failed += 1
            print(f"FAIL {name}: exit {p.returncode}, wanted {want}"
                  + (f" with {expect_text!r} in output" if expect_text else ""))
            print("     " + out.replace("\n", "\n     "))


def main() -> int:
    sk = mldsa.MLDSA65PrivateKey.generate()
    pk = sk.public_key().public_bytes_raw()
    other = mldsa.MLDSA65PrivateKey.generate()
    other_pk = other.public_key().public_bytes_raw()
    assert len(pk) == 1952

    body = b"\x01\x02release body bytes \xff" * 7 + bytes(range(256))
    kind = 2
    sig = sk.sign(body, context(kind))
    assert len(sig) == 3309
    good = signed_document(kind, body, [(key_id(pk), sig)])
    keyfile = public_key_file(pk)

    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(tmp)

        h.check("valid release manifest", good, keyfile, 0, expect_text="OK:")

        flipped = bytearray(good)
        body_at = 6 + len(varint(len(body)))
        flipped[body_at + 10] ^= 0x01
        h.check("one body byte flipped", bytes(flipped), keyfile, 1, expect_text="does NOT verify")

        for k in KINDS:
            s = sk.sign(body, context(k))
            h.check(f"kind {k} ({KINDS[k]}) with its context",
                    signed_document(k, body, [(key_id(pk), s)]), keyfile, 0)
        h.check("signed as release-manifest, framed as trust-root",
                signed_document(1, body, [(key_id(pk), sig)]), keyfile, 1)
        h.check("--context matching what was signed",
                signed_document(1, body, [(key_id(pk), sig)]), keyfile, 0,
                extra=["--context", "meshota/v1/release-manifest"])
        h.check("--context wrong", good, keyfile, 1, extra=["--context", "meshota/v1/trust-root"])

        sig_bytes = bytearray(sig)
        sig_bytes[100] ^= 0x80
        h.check("one signature byte flipped",
                signed_document(kind, body, [(key_id(pk), bytes(sig_bytes))]), keyfile, 1)

        other_sig = other.sign(body, context(kind))
        h.check("two signers, ours second",
                signed_document(kind, body, [(key_id(other_pk), other_sig), (key_id(pk), sig)]),
                keyfile, 0)
        h.check("signed only by another key", signed_document(kind, body, [(key_id(other_pk), other_sig)]),
                keyfile, 1, expect_text="no signature")
        h.check("no signatures", signed_document(kind, body, []), keyfile, 1, expect_text="no signature")
        h.check("other key's signature under our key id",
                signed_document(kind, body, [(key_id(pk), other_sig)]), keyfile, 1)
        h.check("duplicate key id: first entry counts (bad first)",
                signed_document(kind, body, [(key_id(pk), bytes(sig_bytes)), (key_id(pk), sig)]),
                keyfile, 1)

        h.check("trailing byte after signatures", good + b"\x00", keyfile, 1, expect_text="trailing")
        h.check("truncated document", good[:-1], keyfile, 1, expect_text="truncated")
        h.check("bad magic", b"MOTX" + good[4:], keyfile, 1, expect_text="magic")
        h.check("format version 2", good[:4] + b"\x02" + good[5:], keyfile, 1, expect_text="version")
        h.check("public key file as manifest", keyfile, keyfile, 1, expect_text="not a signed document")
        n = len(body)
        overlong = (header(kind) + bytes([(n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, 0x00])
                    + body + varint(1) + key_id(pk) + varint(len(sig)) + sig)
        h.check("non-canonical varint length", overlong, keyfile, 1, expect_text="non-canonical")

        h.check("bare 1952-byte key file", good, pk, 0)
        h.check("key file with trailing byte", good, keyfile + b"\x00", 1, expect_text="trailing")
        h.check("key file algorithm 2", good, public_key_file(pk, algorithm=2), 1, expect_text="algorithm")
        h.check("secret-key kind as key file", good, header(17) + keyfile[6:], 1, expect_text="kind 17")
        h.check("other key's file", good, public_key_file(other_pk), 1, expect_text="no signature")
        p = subprocess.run([sys.executable, VERIFIER, "--manifest", h.write(good)],
                           capture_output=True, text=True)
        if p.returncode == 1:
            h.passed += 1
            print("ok   usage error exits 1")
        else:
            h.failed += 1
            print(f"FAIL usage error exited {p.returncode}")

        print(f"{h.passed} passed, {h.failed} failed")
        return 0 if h.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
