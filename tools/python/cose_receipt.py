"""Checks a Veritrace COSE receipt (RFC 9942, RFC 9162_SHA256) with code nobody here wrote:
pycose verifies the COSE_Sign1 signature, cbor2 reads the structure, and the RFC 9162 root
is recomputed here from the entry and the inclusion proof, straight from the RFC's text.

usage: cose_receipt.py RECEIPT.cbor PUBLIC_KEY_HEX
prints one JSON line: {"valid": bool, "tree_size", "leaf_index", "root", "error"}
"""

import hashlib
import json
import sys

import cbor2
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message


def root_from_path(leaf, index, size, path):
    # RFC 9162 section 2.1.3.2.
    if index >= size:
        raise ValueError("leaf index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("path too long")
        if fn & 1 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if fn & 1 == 0:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("path too short")
    return r


def main():
    data = open(sys.argv[1], "rb").read()
    key = OKPKey(crv=Ed25519, x=bytes.fromhex(sys.argv[2]))
    out = {"valid": False}
    try:
        raw = cbor2.loads(data)
        sign1 = raw.value if isinstance(raw, cbor2.CBORTag) else raw
        protected = cbor2.loads(sign1[0])
        unprotected = sign1[1]
        assert protected[395] == 1, "vds is not RFC9162_SHA256"
        size, index, path = cbor2.loads(unprotected[396][-1][0])
        entry = unprotected["veritrace.entry"]
        root = root_from_path(hashlib.sha256(b"\x00" + entry).digest(), index, size, path)
        # pycose reads the message itself; the detached payload is the root.
        msg = Sign1Message.decode(data)
        msg.payload = root
        msg.key = key
        out = {
            "valid": bool(msg.verify_signature()),
            "tree_size": size,
            "leaf_index": index,
            "root": root.hex(),
        }
    except Exception as e:  # a failed check is the answer, not a crash
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


main()
