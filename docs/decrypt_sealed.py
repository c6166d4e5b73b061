#!/usr/bin/env python3
"""Decrypt one record of a Symbiont encrypted dataset with `cryptography`.

An interoperability check of docs/FORMATS.md ("Sealed batches",
"Encrypted datasets"), written from the documented format alone:

    symbi run prog.symbi --input p=data.csv --persist-encrypted store/
    symbi keys export-data-key KEY_ID --out key.hex
    python3 docs/decrypt_sealed.py store/ key.hex [LINE]

prints, as JSON, the sealed record with source line LINE (default: the
first sealed record whose batch the key opens).
"""

import json
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SYMBIONT-SEALED v1\n"
AAD_DOMAIN = b"symbiont-sealed-batch v1"
SUBKEY_INFO = b"symbiont sealed-batch subkey v2"


def u32(b, at):
    return struct.unpack_from("<I", b, at)[0]


def lp(b):
    """A byte string prefixed with its 4-byte little-endian length."""
    return struct.pack("<I", len(b)) + b


def frames(data, count):
    assert data[: len(MAGIC)] == MAGIC, "not an encrypted dataset"
    at = len(MAGIC)
    for _ in range(count):
        n = u32(data, at)
        yield data[at + 4 : at + 4 + n]
        at += 4 + n


def decode(plain, ids, fields):
    at, out = 0, []
    for line in ids:
        rec = {"line": line}
        for name in fields:
            tag = plain[at]
            at += 1
            if tag == 0:
                v = None
            elif tag in (1, 2):
                v = tag == 2
            elif tag == 3:
                v = struct.unpack_from("<q", plain, at)[0]
                at += 8
            elif tag == 4:
                v = struct.unpack_from("<d", plain, at)[0]
                at += 8
            elif tag == 5:
                n = u32(plain, at)
                v = plain[at + 4 : at + 4 + n].decode("utf-8")
                at += 4 + n
            else:
                raise ValueError(f"unknown value tag {tag}")
            rec[name] = v
        out.append(rec)
    assert at == len(plain), "trailing bytes in the plaintext"
    return out


def main():
    store, key_file = sys.argv[1], sys.argv[2]
    want = int(sys.argv[3]) if len(sys.argv) > 3 else None
    manifest = json.load(open(f"{store}/manifest.json"))
    fields = [f["name"] for f in manifest["fields"]]
    key = bytes.fromhex(open(key_file).read().strip())
    key_id = None
    data = open(f"{store}/batches.bin", "rb").read()

    aad_prefix = AAD_DOMAIN + lp(manifest["dataset"].encode())
    aad_prefix += struct.pack("<I", len(fields)) + b"".join(lp(f.encode()) for f in fields)

    for frame in frames(data, manifest["frames"]):
        if frame[0] != 1:  # 0: clear batch of public records
            continue
        batch = frame[1:]
        version, lane = batch[0], batch[1]
        key_id = batch[2:18]
        if version == 2:
            salt, at = batch[18:50], 50
            aes_key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=salt, info=SUBKEY_INFO + key_id
            ).derive(key)
        else:
            assert version == 1, f"sealed batch version {version}"
            aes_key, at = key, 18
        nonce = batch[at : at + 12]
        n = u32(batch, at + 12)
        header_end = at + 16 + 8 * n
        ids = struct.unpack_from(f"<{n}Q", batch, at + 16)
        if want is not None and want not in ids:
            continue
        length = u32(batch, header_end)
        body = batch[header_end + 4 :]
        assert len(body) == length + 16
        try:
            plain = AESGCM(aes_key).decrypt(nonce, body, aad_prefix + batch[:header_end])
        except Exception:
            if want is not None:
                raise SystemExit(f"key does not open the batch of line {want} (key id {key_id.hex()})")
            continue
        records = decode(plain, ids, fields)
        rec = next(r for r in records if want is None or r["line"] == want)
        rec["_lane"] = lane
        rec["_key_id"] = key_id.hex()
        print(json.dumps(rec))
        return
    raise SystemExit("no sealed record found for this key")


if __name__ == "__main__":
    main()
