#!/usr/bin/env python3
"""Independent verifier for meshota signed documents.

Checks, without any meshota code, that a signed meshota document (trust root,
release manifest, rollout command or node report) carries a valid ML-DSA-65
signature by a given public key.  It uses the `cryptography` package
(>= 50, OpenSSL's ML-DSA) and `blake3`, and parses the wire format itself:

  header        b"MOTA", format version (1), kind byte
  signed doc    varint(len body) body, varint(n) then n x
                  { key_id: 32 bytes = BLAKE3(raw public key),
                    varint(len sig) sig (3309 bytes for ML-DSA-65) }
                nothing may follow
  public key    postcard struct { algorithm: u8 (1 = ML-DSA-65),
                                  name: varint len + UTF-8,
                                  key: varint len + 1952 raw bytes }
                nothing may follow

varint is unsigned LEB128 (postcard); like meshota, which re-encodes what it
decodes and rejects any difference, this script rejects non-canonical
(over-long) varints.

The signed message M is exactly the body bytes; the ML-DSA context string is
"meshota/v1/" + the kind's name unless --context overrides it.  Like meshota,
only the first signature entry carrying a given key id counts.

Usage:
  python verify_manifest.py --manifest FILE --public-key FILE [--context STR]

Exit status: 0 if the signature by that key verifies, 1 otherwise (including
unreadable or malformed input and usage errors).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

MAGIC = b"MOTA"
FORMAT_VERSION = 1
HEADER_LEN = 6

SIGNED_KINDS = {
    1: "trust-root",
    2: "release-manifest",
    3: "rollout-command",
    4: "node-report",
}
OTHER_KINDS = {16: "public-key", 17: "secret-key", 32: "chunk-index"}
KIND_PUBLIC_KEY = 16

ALGORITHM_ML_DSA_65 = 1
ML_DSA_65_PUBLIC_KEY_LEN = 1952
ML_DSA_65_SIGNATURE_LEN = 3309
KEY_ID_LEN = 32
CONTEXT_PREFIX = "meshota/v1/"


class FormatError(Exception):
    """The input is not a well-formed meshota file of the expected shape."""


def kind_name(kind: int) -> str:
    return SIGNED_KINDS.get(kind) or OTHER_KINDS.get(kind) or f"unknown kind {kind}"


def default_context(kind: int) -> bytes:
    return (CONTEXT_PREFIX + SIGNED_KINDS[kind]).encode()


class Reader:
    """Cursor over bytes with the postcard primitives meshota uses."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def fail(self, msg: str) -> FormatError:
        return FormatError(f"{self.what}: {msg} (at byte {self.pos})")

    def take(self, n: int, field: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.fail(
                f"truncated: {field} needs {n} bytes, {len(self.data) - self.pos} left"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def varint(self, field: str) -> int:
        """Unsigned LEB128, at most 10 bytes / 64 bits, canonical only."""
        start = self.pos
        value = 0
        for i in range(10):
            byte = self.u8(field)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i > 0 and byte == 0:
                    self.pos = start
                    raise self.fail(f"{field}: non-canonical (over-long) varint")
                if value >= 1 << 64:
                    self.pos = start
                    raise self.fail(f"{field}: varint exceeds 64 bits")
                return value
        self.pos = start
        raise self.fail(f"{field}: varint longer than 10 bytes")

    def length_prefixed(self, field: str) -> bytes:
        n = self.varint(f"length of {field}")
        return self.take(n, field)

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} trailing bytes after the payload")


def read_header(data: bytes, what: str) -> tuple[int, Reader]:
    if len(data) < HEADER_LEN:
        raise FormatError(f"{what}: {len(data)} bytes, shorter than the 6-byte header")
    if data[:4] != MAGIC:
        raise FormatError(f"{what}: bad magic {data[:4]!r} (expected b'MOTA')")
    if data[4] != FORMAT_VERSION:
        raise FormatError(
            f"{what}: format version {data[4]} (this verifier reads version {FORMAT_VERSION})"
        )
    r = Reader(data, what)
    r.pos = HEADER_LEN
    return data[5], r


@dataclass
class SignatureEntry:
    key_id: bytes
    signature: bytes


@dataclass
class SignedDocument:
    kind: int
    body: bytes
    signatures: list[SignatureEntry]


def parse_signed_document(data: bytes, what: str = "manifest") -> SignedDocument:
    kind, r = read_header(data, what)
    if kind not in SIGNED_KINDS:
        raise FormatError(
            f"{what}: kind {kind} ({kind_name(kind)}) is not a signed document "
            f"(expected one of {sorted(SIGNED_KINDS)})"
        )
    body = r.length_prefixed("body")
    n = r.varint("signature count")
    sigs = []
    for i in range(n):
        key_id = r.take(KEY_ID_LEN, f"key id of signature {i}")
        sig = r.length_prefixed(f"signature {i}")
        sigs.append(SignatureEntry(key_id, sig))
    r.expect_end()
    return SignedDocument(kind, body, sigs)


@dataclass
class PublicKeyFile:
    name: str | None
    key: bytes
    raw: bool  # True when the file was a bare 1952-byte key, not a meshota file


def parse_public_key_file(data: bytes, what: str = "public key") -> PublicKeyFile:
    if data[:4] != MAGIC and len(data) == ML_DSA_65_PUBLIC_KEY_LEN:
        return PublicKeyFile(None, data, True)
    kind, r = read_header(data, what)
    if kind != KIND_PUBLIC_KEY:
        raise FormatError(
            f"{what}: kind {kind} ({kind_name(kind)}), expected {KIND_PUBLIC_KEY} (public-key)"
        )
    algorithm = r.u8("algorithm")
    if algorithm != ALGORITHM_ML_DSA_65:
        raise FormatError(f"{what}: algorithm {algorithm}, expected {ALGORITHM_ML_DSA_65} (ML-DSA-65)")
    name_bytes = r.length_prefixed("name")
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{what}: name is not UTF-8: {e}") from None
    key = r.length_prefixed("key")
    r.expect_end()
    if len(key) != ML_DSA_65_PUBLIC_KEY_LEN:
        raise FormatError(
            f"{what}: key is {len(key)} bytes, an ML-DSA-65 public key is {ML_DSA_65_PUBLIC_KEY_LEN}"
        )
    return PublicKeyFile(name, key, False)


def key_id_of(public_key: bytes) -> bytes:
    import blake3

    return blake3.blake3(public_key).digest()


def verify_ml_dsa_65(public_key: bytes, message: bytes, context: bytes, signature: bytes) -> bool:
    """ML-DSA.Verify (FIPS 204, pure, external interface) via cryptography >= 50."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import mldsa

    pk = mldsa.MLDSA65PublicKey.from_public_bytes(public_key)
    try:
        pk.verify(signature, message, context)
    except InvalidSignature:
        return False
    return True


def run(manifest_path: str, key_path: str, context_override: str | None, out=print) -> bool:
    """Verify; print what was done; return True iff the key's signature verifies."""
    try:
        with open(manifest_path, "rb") as f:
            doc_bytes = f.read()
        with open(key_path, "rb") as f:
            key_bytes = f.read()
    except OSError as e:
        out(f"FAIL: cannot read input: {e}")
        return False

    try:
        pk = parse_public_key_file(key_bytes, f"public key {key_path}")
        doc = parse_signed_document(doc_bytes, f"manifest {manifest_path}")
    except FormatError as e:
        out(f"FAIL: {e}")
        return False

    kid = key_id_of(pk.key)
    if pk.raw:
        out(f"public key: raw {len(pk.key)}-byte ML-DSA-65 key from {key_path}")
    else:
        out(f"public key: {pk.name!r} (ML-DSA-65, {len(pk.key)} bytes) from {key_path}")
    out(f"key id (BLAKE3 of key): {kid.hex()}")
    out(
        f"document: {kind_name(doc.kind)} (kind {doc.kind}), body {len(doc.body)} bytes, "
        f"{len(doc.signatures)} signature(s)"
    )
    for i, s in enumerate(doc.signatures):
        mark = "  <- this key" if s.key_id == kid else ""
        out(f"  signature {i}: key id {s.key_id.hex()}, {len(s.signature)} bytes{mark}")

    if context_override is not None:
        context = context_override.encode("utf-8")
        if context != default_context(doc.kind):
            out(
                f"note: --context overrides the kind's context "
                f"{default_context(doc.kind).decode()!r}"
            )
    else:
        context = default_context(doc.kind)
    out(f"context: {context.decode('utf-8', 'replace')!r} ({len(context)} bytes)")
    if len(context) > 255:
        out("FAIL: ML-DSA context strings are at most 255 bytes")
        return False

    matches = [i for i, s in enumerate(doc.signatures) if s.key_id == kid]
    if not matches:
        out(f"FAIL: no signature in the document has key id {kid.hex()}")
        return False
    if len(matches) > 1:
        out(
            f"note: {len(matches)} signatures carry this key id; as in meshota only the "
            f"first (signature {matches[0]}) counts"
        )
    entry = doc.signatures[matches[0]]
    if len(entry.signature) != ML_DSA_65_SIGNATURE_LEN:
        out(
            f"FAIL: signature {matches[0]} is {len(entry.signature)} bytes, "
            f"an ML-DSA-65 signature is {ML_DSA_65_SIGNATURE_LEN}"
        )
        return False

    try:
        ok = verify_ml_dsa_65(pk.key, doc.body, context, entry.signature)
    except ValueError as e:  # e.g. a key the backend refuses
        out(f"FAIL: {e}")
        return False
    if ok:
        out(f"OK: signature {matches[0]} verifies (ML-DSA-65 over the {len(doc.body)} body bytes)")
    else:
        out(f"FAIL: signature {matches[0]} does NOT verify")
    return ok


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 1, not argparse's 2: "1 otherwise"
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(
        description="Verify a meshota signed document's ML-DSA-65 signature by one public key."
    )
    p.add_argument("--manifest", required=True, metavar="FILE",
                   help="signed meshota document (trust root, release manifest, rollout command, node report)")
    p.add_argument("--public-key", required=True, metavar="FILE",
                   help="meshota public key file (kind 16), or a bare 1952-byte ML-DSA-65 key")
    p.add_argument("--context", metavar="STR",
                   help='ML-DSA context string (default: "meshota/v1/<kind name>")')
    args = p.parse_args(argv)
    return 0 if run(args.manifest, args.public_key, args.context) else 1


if __name__ == "__main__":
    sys.exit(main())
