#!/usr/bin/env python3
"""Independent writer of the pacsgate object formats v3 and v2, from storage/FORMAT.md only
(Python `cryptography`: AES-256-GCM, HKDF-SHA256). Writes pge-vectors.json, which
storage/tests/pge_vectors.rs decrypts with the Rust reader. Deterministic: every random
field is derived from the vector's name, so re-running reproduces the committed file.

    python3 storage/tests/vectors/pge_reference.py > storage/tests/vectors/pge-vectors.json
"""
import base64
import hashlib
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89PGE"
SEG = 65536


def det(name, what, n):
    return hashlib.sha256(f"{name}/{what}".encode()).digest()[:n]


def pattern(n):
    return bytes((i * 31 + i // 7) % 256 for i in range(n))


def segments(plain):
    if not plain:
        return [b""]
    return [plain[i:i + SEG] for i in range(0, len(plain), SEG)]


def seal_segments(key, prefix, aad, plain):
    segs = segments(plain)
    out = b""
    for i, chunk in enumerate(segs):
        last = 1 if i == len(segs) - 1 else 0
        nonce = prefix + struct.pack(">I", i) + bytes([last])
        out += AESGCM(key).encrypt(nonce, chunk, aad)
    return out


def v3(name, kek, key_id, uuid, content_type, plain):
    dek, salt = det(name, "dek", 32), det(name, "salt", 16)
    prefix, wrap_nonce = det(name, "prefix", 7), det(name, "wrap-nonce", 12)
    fixed = MAGIC + bytes([3, 2, 16, 0]) + struct.pack(">Q", len(plain)) + prefix + b"\0"
    wrap_aad = b"pacsgate-storage v3 data key" + struct.pack(">I", key_id)
    blob = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, wrap_aad)
    header = (fixed + salt + struct.pack(">I", content_type) + struct.pack(">I", key_id)
              + struct.pack(">H", len(blob)) + blob)
    object_key = HKDF(hashes.SHA256(), 32, salt, b"pacsgate-storage v3 object key").derive(dek)
    aad = header[:44] + struct.pack(">H", len(uuid)) + uuid.encode()
    return header + seal_segments(object_key, prefix, aad, plain), object_key


def v2(name, kek, key_id, plain):
    dek, prefix, wrap_nonce = det(name, "dek", 32), det(name, "prefix", 7), det(name, "wrap-nonce", 12)
    fixed = MAGIC + bytes([2, 1, 16, 0]) + struct.pack(">Q", len(plain)) + prefix + b"\0"
    wrap_aad = fixed + struct.pack(">I", key_id)
    header = wrap_aad + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, wrap_aad)
    return header + seal_segments(dek, prefix, fixed, plain)


def main():
    kek1 = bytes(range(32))
    kek7 = hashlib.sha256(b"pacsgate master key 7").digest()
    cases = [
        ("v3-short-dicom", 3, kek1, 1, "17dfc0b5-8b18-4a3c-9d2e-0123456789ab", 1, b"DICM pacsgate v3 test vector"),
        ("v3-empty", 3, kek1, 1, "00000000-0000-4000-8000-000000000000", 1, b""),
        ("v3-two-segments-unbound-type", 3, kek7, 7, "a1b2c3d4-e5f6-4789-abcd-ef0123456789", 0, pattern(SEG + 10)),
        ("v3-user-attachment", 3, kek7, 7, "fedcba98-7654-4321-8fed-cba987654321", 1025, b"user-defined attachment"),
        ("v2-legacy", 2, kek1, 1, "0badc0de-0000-4000-8000-0123456789ab", None, pattern(1000)),
    ]
    vectors = []
    for name, version, kek, key_id, uuid, content_type, plain in cases:
        entry = {
            "name": name, "version": version, "key_id": key_id,
            "master_key_base64": base64.b64encode(kek).decode(),
            "uuid": uuid, "content_type": content_type,
            "plaintext_len": len(plain), "plaintext_sha256": hashlib.sha256(plain).hexdigest(),
        }
        if len(plain) <= 64:
            entry["plaintext_hex"] = plain.hex()
        if version == 3:
            obj, object_key = v3(name, kek, key_id, uuid, content_type, plain)
            entry["object_key_hex"] = object_key.hex()
        else:
            obj = v2(name, kek, key_id, plain)
        entry["object_base64"] = base64.b64encode(obj).decode()
        vectors.append(entry)
    json.dump({
        "format": "pacsgate object format v3 (and legacy v2), storage/FORMAT.md",
        "generator": "storage/tests/vectors/pge_reference.py (independent Python implementation)",
        "plaintext": "given as length and SHA-256; short ones are the literal strings in the generator, long ones bytes (i*31 + i//7) mod 256",
        "vectors": vectors,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
