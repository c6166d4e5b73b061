#!/usr/bin/env python3
"""Independent RFC 6962 / RFC 9162 proof checker for Symbiont audit logs.

Reads the JSON that `symbi audit prove` or `symbi audit consistency` prints
on standard input and checks it with nothing but Python's hashlib:

    symbi audit prove 3 --log audit.log | python3 docs/rfc6962_verify.py
    symbi audit consistency 24 --log audit.log | python3 docs/rfc6962_verify.py

For an inclusion proof the leaf hash is recomputed from the entry's bytes.
Prints "inclusion ok" / "consistency ok" and exits 0, or says what failed
and exits 1. (It checks the Merkle proofs; the checkpoint signatures are
checked by `symbi audit verify` or any C2SP signed-note verifier.)
"""
import base64
import hashlib
import json
import sys


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2."""
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if old_size & (old_size - 1) == 0:
        proof = [old_root] + proof
    if not proof:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def main():
    doc = json.load(sys.stdin)
    proof = [bytes.fromhex(h) for h in doc["proof"]]
    if "index" in doc:
        leaf = leaf_hash(base64.b64decode(doc["entry"]))
        if leaf.hex() != doc["leaf_hash"]:
            print("inclusion FAILED: the entry does not hash to leaf_hash")
            return 1
        ok = verify_inclusion(leaf, doc["index"], doc["tree_size"], proof, bytes.fromhex(doc["root"]))
        print("inclusion ok" if ok else "inclusion FAILED")
    else:
        ok = verify_consistency(doc["old_size"], doc["new_size"], bytes.fromhex(doc["old_root"]),
                                bytes.fromhex(doc["new_root"]), proof)
        print("consistency ok" if ok else "consistency FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
