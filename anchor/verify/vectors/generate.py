#!/usr/bin/env python3
"""Regenerates the proof test vectors in this directory (see README.md).

    export CARGO_TARGET_DIR=$HOME/.cache/veritrace/target CARGO_INCREMENTAL=0
    cargo build --workspace -j1
    python3 anchor/verify/vectors/generate.py

The valid documents are written by the real `veritrace` binary (a small data directory:
a participant and a device registered, five plain events, one signed event and one signed
event with private fields): three proof bundles, a trace certificate and a query
certificate. Each invalid document is one of them with exactly one change,
made below. Every vector is then run through the real `veritrace-verify --json` and must
give the outcome this script expects, or the script fails and writes nothing. The
manifest (vectors.json) records the outcomes; `cargo test --test vectors` checks them
again with the library API.

Only the standard library; no network. The files change on every run (keys, times).
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# A GS1 GTIN with a valid check digit (processors/EVENTS.md's example).
GTIN = "09506000134352"
LOT_A = f"(01){GTIN}(10)LOT-A"
B1 = f"(01){GTIN}(21)B1"
P1 = f"(01){GTIN}(21)P1"

PLAIN_EVENTS = [
    {"event_id": "vec:prod:lot-a", "event_type": "production",
     "event_time": "2026-11-20T08:00:00Z", "trace_code": LOT_A,
     "participant": {"id": "plant-1", "name": "Plant 1", "role": "manufacturer"},
     "quantity": {"value": 250, "unit": "kg"}},
    {"event_id": "vec:prod:b1", "event_type": "production",
     "event_time": "2026-11-20T09:00:00Z", "trace_code": B1,
     "participant": {"id": "plant-1", "role": "manufacturer"}, "site": "plant-1/line-1"},
    {"event_id": "vec:asm:p1", "event_type": "assembly",
     "event_time": "2026-11-20T10:00:00Z", "trace_code": P1, "inputs": [LOT_A, B1],
     "participant": {"id": "plant-1", "role": "assembler"}, "operator": "op-3"},
    # Rejected (bad GTIN check digit): the batch covers 3 records, 2 of them accepted.
    {"event_id": "vec:bad", "event_type": "production",
     "event_time": "2026-11-20T10:10:00Z", "trace_code": "(01)09506000134353(21)B2",
     "participant": {"id": "plant-1", "role": "manufacturer"}},
    {"event_id": "vec:qc:p1", "event_type": "quality_check",
     "event_time": "2026-11-20T10:30:00.250+01:00",
     "trace_code": "https://id.gs1.org/01/9506000134352/21/P1", "result": "pass",
     "participant": {"id": "plant-1", "role": "inspector"}, "operator": "inspector-17",
     "attributes": {"torque_nm": 12.5, "standard": "GB/T 19001"}},
    {"event_id": "vec:wh:p1", "event_type": "warehouse_in",
     "event_time": "2026-11-20T12:00:00Z", "trace_code": P1,
     "participant": {"id": "plant-1", "role": "warehouse"}, "site": "plant-1/wh"},
]

SIGNED_EVENT = {
    "event_id": "vec:qc:b1", "event_type": "quality_check",
    "event_time": "2026-11-20T09:30:00Z", "trace_code": B1, "result": "pass",
    "participant": {"id": "plant-1", "role": "inspector"}, "device_id": "press-07"}

# The query of the query certificate: P1's events, each row checked against its event.
ROWS_SQL = (f"SELECT event_id, event_type, trace_code FROM events WHERE trace_code = '{P1}' "
            "ORDER BY event_id")

PRIVATE_EVENT = {
    "event_id": "vec:sale:p1", "event_type": "sale", "event_time": "2026-11-21T09:00:00Z",
    "trace_code": P1, "participant": {"id": "plant-1", "role": "manufacturer"},
    "counterparty": {"id": "cust-9", "name": "Example Customer", "role": "customer"},
    "attributes": {"price": 1299.5, "currency": "EUR"}}


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def jsonl(path, events):
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")


def make_valid(vt, work):
    """Runs the pipeline; returns the documents and the ledger text."""
    data = os.path.join(work, "data")
    keys = {}
    for name, alg in [("root", "EdDSA"), ("admin", "EdDSA"), ("device", "ES256")]:
        path = os.path.join(work, f"{name}.key")
        keys[name] = path
        run([vt, "keys", "generate", "--alg", alg, "--out", path])
    with open(keys["root"]) as f:
        root_public = json.load(f)["public"]
    config = os.path.join(work, "veritrace.toml")
    with open(config, "w") as f:
        # Three records a batch: an epoch of two batches, so the epoch path is not empty.
        f.write(f'data-dir = "{data}"\n[pipeline]\nstream = "vectors"\npartitions = 1\n'
                f'batch-max-records = 3\n[signatures]\nroot-key = "{root_public}"\n'
                'policy = "record"\n')
    vt_ = [vt, "--config", config]
    run(vt_ + ["participant", "register", "--root-key", keys["root"], "--id", "plant-1",
               "--name", "Plant 1", "--role", "manufacturer", "--admin-key", keys["admin"]])
    run(vt_ + ["device", "register", "--admin-key", keys["admin"], "--participant",
               "plant-1", "--id", "press-07", "--kind", "plc_gateway", "--key",
               keys["device"]])
    plain = os.path.join(work, "events.jsonl")
    jsonl(plain, PLAIN_EVENTS)
    run(vt_ + ["ingest", "file", plain])
    for name, event, extra in [("signed", SIGNED_EVENT, []),
                               ("private", PRIVATE_EVENT,
                                ["--private", "attributes.price",
                                 "--private", "counterparty.name"])]:
        src = os.path.join(work, f"{name}.jsonl")
        jsonl(src, [event])
        jws = os.path.join(work, f"{name}.jws")
        with open(jws, "w") as f:
            f.write(run(vt_ + ["sign", "--key", keys["device"], "--issuer", "press-07"]
                        + extra + [src]))
        run(vt_ + ["ingest", "file", jws])
    out = {}
    for name, args in [
        ("proof-1", ["proof", "vec:prod:b1", "--out", "{path}"]),
        ("proof-2", ["proof", "vec:qc:b1", "--out", "{path}"]),
        ("proof-2-disclosure", ["proof", "vec:sale:p1", "--disclose", "attributes.price",
                                "--out", "{path}"]),
        ("certificate", ["trace", P1, "--backward", "--format", "json", "--certificate",
                         "{path}"]),
        ("rows", ["sql", "--format", "json", "--certificate", "{path}", ROWS_SQL]),
    ]:
        path = os.path.join(work, f"{name}.json")
        run(vt_ + [path if a == "{path}" else a for a in args])
        with open(path) as f:
            out[name] = json.load(f)
    # The log: the sizes of its checkpoints, a bundle against the last one, a COSE receipt
    # and a consistency proof.
    sizes = [r["log_size"] for r in json.loads(run(vt_ + [
        "sql", "--format", "json", "SELECT log_size FROM epochs ORDER BY epoch_id"]))]
    later = os.path.join(work, "proof-1-later.json")
    receipt = os.path.join(work, "receipt-1.cbor")
    run(vt_ + ["proof", "vec:prod:b1", "--checkpoint", str(sizes[-1]), "--out", later,
               "--receipt", receipt])
    with open(later) as f:
        out["proof-1-later"] = json.load(f)
    with open(receipt, "rb") as f:
        out["receipt-1"] = f.read()
    out["consistency"] = json.loads(run(vt_ + ["consistency", "--from", str(sizes[0])]))
    out["sizes"] = sizes
    with open(os.path.join(data, "ledger", "local.jsonl")) as f:
        ledger = f.read()
    return out, ledger


def flip(hex_digest, at=0):
    """The digest with one bit of byte `at` flipped."""
    b = bytearray(bytes.fromhex(hex_digest))
    b[at] ^= 0x01
    return b.hex()


def jcs_ascii(v):
    """RFC 8785 for documents of ASCII keys, strings and integers (what the events we
    recompute hold): sorted keys, no whitespace."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(event):
    return hashlib.sha256(b"\x00" + jcs_ascii(event)).hexdigest()


def upper_digests(b):
    """Every Digest field of a bundle in upper case (strings that are not Digests stay)."""
    b["leaf"]["hash"] = b["leaf"]["hash"].upper()
    b["leaf"]["audit_path"] = [h.upper() for h in b["leaf"]["audit_path"]]
    for k in ("root", "prev_root"):
        b["batch"][k] = b["batch"][k].upper()
    b["epoch"]["root"] = b["epoch"]["root"].upper()
    b["epoch"]["audit_path"] = [h.upper() for h in b["epoch"]["audit_path"]]
    e = b["anchor"]["ledger_entry"]
    for k in ("root", "prev_entry_hash"):
        e[k] = e[k].upper()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "../../../target"))
    ap.add_argument("--bin-dir", default=os.path.join(target, "debug"),
                    help="where veritrace and veritrace-verify are (default: "
                         "$CARGO_TARGET_DIR/debug)")
    args = ap.parse_args()
    vt = os.path.join(args.bin_dir, "veritrace")
    vv = os.path.join(args.bin_dir, "veritrace-verify")
    for b in (vt, vv):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: cargo build --workspace -j1 first")

    work = tempfile.mkdtemp(prefix="vt-vectors-")
    try:
        docs, ledger = make_valid(vt, work)
        files, vectors = build(docs, ledger)
        check(vv, work, files, vectors, ledger)
        write(files, vectors, ledger)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(docs, ledger):
    """The files (path -> text) and the manifest entries."""
    p1, p2, p2d, cert, rows = (docs["proof-1"], docs["proof-2"], docs["proof-2-disclosure"],
                               docs["certificate"], docs["rows"])
    lines = ledger.splitlines(keepends=True)
    public_key = json.loads(lines[0])["public_key"]
    files = {}
    vectors = []

    def doc(path, value, text=None):
        files[path] = text if text is not None else json.dumps(value, indent=2) + "\n"

    def vector(path, kind, change, expect, base=None, ledger="ledger.jsonl", key=None,
               anchored=None, event=None, problem=None):
        v = {"file": path, "kind": kind}
        if base:
            v["derived_from"] = base
        v["change"] = change
        v["ledger"] = ledger
        if key is not None:
            v["key"] = key
        v["expect"] = expect
        if anchored is not None:
            v["anchored"] = anchored
        if event is not None:
            v["event"] = event
        if problem is not None:
            v["problem"] = problem
        vectors.append(v)

    # -- valid documents, as written --
    doc("valid/proof-1.json", p1)
    vector("valid/proof-1.json", "bundle",
           "none: `veritrace proof vec:prod:b1` (format 1, leaf 1 of 3, batch 0 of 2 in its epoch)",
           "valid", anchored=True)
    vector("valid/proof-1.json", "bundle", "none; verified without --ledger or --key",
           "valid", ledger=None, anchored=False)
    vector("valid/proof-1.json", "bundle", "none; verified with --key (the ledger's key) only",
           "valid", ledger=None, key=public_key, anchored=True)
    vector("valid/proof-1.json", "bundle",
           "none; verified with --key set to another Ed25519 key", "wrong_key",
           key="00" * 32)
    doc("valid/proof-2.json", p2)
    vector("valid/proof-2.json", "bundle",
           "none: `veritrace proof vec:qc:b1` (format 2: a JWS signed by device press-07, "
           "its key's registration with its own proof)", "valid", anchored=True)
    doc("valid/proof-2-disclosure.json", p2d)
    vector("valid/proof-2-disclosure.json", "bundle",
           "none: `veritrace proof vec:sale:p1 --disclose attributes.price` (format 2, two "
           "private fields, one disclosed)", "valid", anchored=True)
    doc("valid/certificate.json", cert)
    vector("valid/certificate.json", "certificate",
           "none: `veritrace trace '(01)09506000134352(21)P1' --backward --certificate`",
           "valid", anchored=True)
    vector("valid/certificate.json", "certificate", "none; verified without --ledger",
           "valid", ledger=None, anchored=False)
    doc("valid/rows.json", rows)
    vector("valid/rows.json", "rows",
           f"none: `veritrace sql --certificate FILE \"{ROWS_SQL}\"` (a query certificate: "
           "P1's events, among them a signed one, proven as format 1 bundles)",
           "valid", anchored=True)

    # -- variants that still verify --
    def variant(name, base, change, fn, expect="valid", kind="bundle", **kw):
        d = copy.deepcopy(base)
        fn(d)
        path = f"{'valid' if expect == 'valid' else 'invalid'}/{name}.json"
        doc(path, d)
        src = {id(p1): "valid/proof-1.json", id(p2): "valid/proof-2.json",
               id(p2d): "valid/proof-2-disclosure.json", id(cert): "valid/certificate.json",
               id(rows): "valid/rows.json"}
        vector(path, kind, change, expect, base=src[id(base)], **kw)

    variant("proof-1-upper-case-digests", p1,
            "every digest field (leaf, paths, roots, prev_root, the ledger entry's root and "
            "prev_entry_hash) in upper-case hex", upper_digests, anchored=True)

    def sealed(b):
        b["status"] = "sealed"
        del b["epoch"], b["anchor"]
    variant("proof-1-sealed", p1, "epoch and anchor removed, status sealed", sealed,
            anchored=False)

    def epoch_only(b):
        b["status"] = "sealed"
        del b["anchor"]
    variant("proof-1-epoch-not-anchored", p1, "anchor removed, status sealed", epoch_only,
            anchored=False)

    evm = {"backend": "evm", "receipt": {
        "chain_id": 31337, "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "tx_hash": "0x" + "ab" * 32, "block_number": 7, "block_hash": "0x" + "cd" * 32,
        "log_index": 0}}
    variant("proof-1-evm-receipt", p1,
            "anchor replaced by a well-formed EVM receipt (not checked without --rpc)",
            lambda b: b.__setitem__("anchor", copy.deepcopy(evm)), anchored=False)
    variant("proof-2-no-registration", p2, "signed.registration removed",
            lambda b: b["signed"].pop("registration"), anchored=True)
    doc("valid/ledger-torn-tail.jsonl", None,
        text=ledger + lines[-1][: len(lines[-1]) // 2])
    vector("valid/proof-1.json", "bundle",
           "none; the ledger has a torn last line (half an entry, no newline), which is ignored",
           "valid", ledger="valid/ledger-torn-tail.jsonl", anchored=True)

    # -- invalid bundles: one change each --
    def inv(name, base, change, fn, expect, **kw):
        variant(name, base, change, fn, expect=expect, **kw)

    def set_(path, value):
        def f(b):
            *parents, last = path
            for k in parents:
                b = b[k]
            b[last] = value(b[last]) if callable(value) else value
        return f

    inv("leaf-hash-flipped", p1, "leaf.hash: one bit of its first byte flipped",
        set_(["leaf", "hash"], flip), "root_mismatch")
    inv("event-field-changed", p1, "event.site changed (plant-1/line-1 -> plant-1/line-2)",
        set_(["event", "site"], "plant-1/line-2"), "root_mismatch")

    def event_and_leaf(b):
        assert leaf_hash(b["event"]) == b["leaf"]["hash"], "jcs_ascii is not JCS here"
        b["event"]["site"] = "plant-1/line-2"
        b["leaf"]["hash"] = leaf_hash(b["event"])
    inv("event-changed-leaf-recomputed", p1,
        "event.site changed and leaf.hash recomputed to match: the path no longer reaches "
        "the batch root", event_and_leaf, "root_mismatch")
    inv("audit-path-too-short", p1, "leaf.audit_path: last hash removed",
        set_(["leaf", "audit_path"], lambda p: p[:-1]), "bad_path")
    inv("audit-path-too-long", p1, "leaf.audit_path: a hash appended",
        set_(["leaf", "audit_path"], lambda p: p + [p[-1]]), "bad_path")
    inv("audit-path-hash-flipped", p1, "leaf.audit_path[0]: one bit flipped",
        set_(["leaf", "audit_path"], lambda p: [flip(p[0])] + p[1:]), "root_mismatch")
    inv("leaf-index-wrong", p1, "leaf.index 1 -> 0 (still inside the tree)",
        set_(["leaf", "index"], 0), "root_mismatch")
    inv("leaf-index-outside", p1, "leaf.index set to batch.size (3)",
        set_(["leaf", "index"], p1["batch"]["size"]), "bad_path")
    inv("batch-root-changed", p1, "batch.root: one bit flipped",
        set_(["batch", "root"], flip), "root_mismatch")
    inv("batch-offsets-inconsistent", p1,
        "batch.first_offset 0 -> 1: offsets 1..=2 cannot hold records 3",
        set_(["batch", "first_offset"], 1), "inconsistent")
    inv("batch-records-below-size", p1,
        "batch.records 3 -> 1: fewer records than accepted events (size 2)",
        set_(["batch", "records"], 1), "inconsistent")
    inv("batch-offset-changed", p1,
        "batch.last_offset 2 -> 3 (still consistent with records): the header no longer "
        "hashes to the epoch leaf", set_(["batch", "last_offset"], 3), "root_mismatch")
    inv("batch-id-changed", p1,
        "batch.batch_id without its zero padding (vectors-p0-0-2): the header is committed "
        "whole", set_(["batch", "batch_id"], "vectors-p0-0-2"), "root_mismatch")
    inv("epoch-root-changed", p1, "epoch.root: one bit flipped",
        set_(["epoch", "root"], flip), "root_mismatch")
    inv("epoch-path-hash-flipped", p1, "epoch.audit_path[0]: one bit flipped",
        set_(["epoch", "audit_path"], lambda p: [flip(p[0])] + p[1:]), "root_mismatch")
    inv("epoch-batch-index-wrong", p1, "epoch.batch_index 0 -> 1",
        set_(["epoch", "batch_index"], 1), "root_mismatch")
    inv("epoch-batch-count-wrong", p1,
        "epoch.batch_count 2 -> 3: the epoch path is one hash short for 3 leaves",
        set_(["epoch", "batch_count"], 3), "bad_path")
    inv("epoch-id-disagrees", p1,
        "epoch.epoch_id 2 -> 1: the ledger entry is for epoch 2",
        set_(["epoch", "epoch_id"], 1), "inconsistent")
    inv("ledger-entry-batch-count-disagrees", p1,
        "anchor.ledger_entry.batch_count 2 -> 3: the epoch proof says 2",
        set_(["anchor", "ledger_entry", "batch_count"], 3), "inconsistent")
    inv("ledger-entry-root-changed", p1, "anchor.ledger_entry.root: one bit flipped",
        set_(["anchor", "ledger_entry", "root"], flip), "root_mismatch")
    inv("ledger-entry-signature-changed", p1,
        "anchor.ledger_entry.signature: one bit of its first byte flipped",
        set_(["anchor", "ledger_entry", "signature"],
             lambda s: flip(s[:64]) + s[64:]), "bad_signature")
    inv("ledger-entry-time-changed", p1,
        "anchor.ledger_entry.anchored_at changed (the signature covers it)",
        set_(["anchor", "ledger_entry", "anchored_at"], "2000-01-01T00:00:00.000Z"),
        "bad_signature")
    inv("ledger-entry-public-key-upper-case", p1,
        "anchor.ledger_entry.public_key in upper-case hex: the signed text changes",
        set_(["anchor", "ledger_entry", "public_key"], str.upper), "bad_signature")
    # The identity point as the key and as R, s = 0: [s]B - [k]A = R holds for every message,
    # so a verifier that does not refuse weak keys takes this for a good signature.
    inv("ledger-entry-weak-key", p1,
        "anchor.ledger_entry.public_key set to the identity point (small order) and signature "
        "to R = identity, s = 0, which verify for any message unless weak keys are refused; "
        "verified without --ledger or --key",
        lambda b: b["anchor"]["ledger_entry"].update({
            "public_key": "01" + "00" * 31, "signature": "01" + "00" * 63}),
        "bad_signature", ledger=None)
    inv("ledger-entry-signature-upper-case", p1,
        "anchor.ledger_entry.signature in upper-case hex: the signature verifies, but the "
        "receipt is no longer the ledger's entry",
        set_(["anchor", "ledger_entry", "signature"], str.upper), "ledger")
    inv("anchored-without-receipt", p1, "anchor removed, status left anchored",
        lambda b: b.pop("anchor"), "inconsistent")
    inv("anchored-without-epoch", p1, "epoch removed, status and anchor left",
        lambda b: b.pop("epoch"), "inconsistent")
    inv("receipt-but-sealed", p1, "status anchored -> sealed, receipt left",
        set_(["status"], "sealed"), "inconsistent")
    inv("status-unknown", p1, "status set to pending", set_(["status"], "pending"),
        "malformed")
    inv("unsupported-format", p1, "format set to veritrace.proof/3",
        set_(["format"], "veritrace.proof/3"), "unsupported_format")
    # The format decides the shape: an unknown version is refused as such, whatever it holds.
    inv("unsupported-format-new-member", p1,
        "format set to veritrace.proof/3 and a top-level member added (which format 3 might "
        "define)", lambda b: b.update({"format": "veritrace.proof/3", "comment": "added"}),
        "unsupported_format")
    inv("unknown-field", p1, "a top-level field comment added",
        set_(["comment"], "added"), "malformed")
    inv("digest-too-short", p1, "leaf.hash: last hex digit removed (63 digits)",
        set_(["leaf", "hash"], lambda h: h[:-1]), "bad_hash")
    inv("digest-not-hex", p1, "batch.prev_root: first digit replaced by g",
        set_(["batch", "prev_root"], lambda h: "g" + h[1:]), "bad_hash")
    inv("digest-path-not-hex", p1, "epoch.audit_path[0]: last digit replaced by x",
        set_(["epoch", "audit_path"], lambda p: [p[0][:-1] + "x"] + p[1:]), "bad_hash")
    inv("digest-not-a-string", p1, "leaf.hash replaced by the number 0 (a type error)",
        set_(["leaf", "hash"], 0), "malformed")
    inv("unsafe-integer", p1, "event.version 1 -> 9007199254740993 (2^53 + 1)",
        set_(["event", "version"], 9007199254740993), "unsafe_integer")
    inv("unsafe-integer-beyond-64-bit", p1,
        "event.version 1 -> 18446744073709551616 (2^64: beyond 64 bits, its double is written "
        "18446744073709552000)", set_(["event", "version"], 2 ** 64), "unsafe_integer")
    inv("evm-receipt-bad-shape", p1,
        "anchor replaced by an EVM receipt whose contract lacks its 0x prefix",
        lambda b: b.__setitem__("anchor", {**evm, "receipt": {
            **evm["receipt"], "contract": evm["receipt"]["contract"][2:]}}), "malformed")
    # Duplicate key: text, since a JSON library keeps only one of the two.
    text = json.dumps(p1, indent=2) + "\n"
    dup = text.replace('"site": "plant-1/line-1"',
                       '"site": "plant-1/line-1",\n    "site": "plant-1/line-2"', 1)
    assert dup != text
    doc("invalid/duplicate-key.json", None, text=dup)
    vector("invalid/duplicate-key.json", "bundle",
           "event.site given twice (plant-1/line-1, then plant-1/line-2)", "duplicate_key",
           base="valid/proof-1.json")
    inv("format-2-unsigned-event", p1,
        "format 1 -> veritrace.proof/2 on an event without a signature (and without a "
        "signed statement)", set_(["format"], "veritrace.proof/2"), "inconsistent")
    inv("format-2-statement-on-unsigned-event", p1,
        "format 1 -> veritrace.proof/2, and proof-2's signed statement added: the event "
        "records no signature",
        lambda b: b.update({"format": "veritrace.proof/2",
                            "signed": copy.deepcopy(p2["signed"])}), "inconsistent")
    inv("format-1-with-statement", p2,
        "format 2 -> veritrace.proof/1, signed left: format 1 carries no statement",
        set_(["format"], "veritrace.proof/1"), "inconsistent")
    inv("format-2-without-statement", p2,
        "signed removed: a format 2 bundle carries its statement",
        lambda b: b.pop("signed"), "inconsistent")

    # Format 2.
    def envelope(b):
        e = b["signed"]["envelope"]
        b["signed"]["envelope"] = e[:-4] + ("AAAA" if e[-4:] != "AAAA" else "BBBB")
    inv("envelope-changed", p2, "signed.envelope: its last 4 base64url characters replaced",
        envelope, "bad_envelope")
    other_key = p2["signed"]["registration"]["event"]["attributes"].get("key")

    def signer_key(b):
        # The device record's key is the signer's; the participant's admin key is another.
        reg = b["signed"]["registration"]["signed"]["registration"]["event"]["attributes"]
        assert reg["admin_key"] != other_key
        b["signed"]["signer_key"] = reg["admin_key"]
    inv("signer-key-other", p2,
        "signed.signer_key replaced by the participant's admin key (another key id)",
        signer_key, "wrong_key")
    inv("registration-changed", p2,
        "signed.registration.event.attributes.kind changed (the registration's own leaf)",
        set_(["signed", "registration", "event", "attributes", "kind"], "sensor"),
        "root_mismatch")

    def disclosure(b):
        b["disclosures"][0]["value"] = 999
    inv("disclosure-value-changed", p2d, "disclosures[0].value 1299.5 -> 999", disclosure,
        "bad_disclosure")

    def salt(b):
        b["disclosures"][0]["salt"] = b["disclosures"][0]["salt"][:-2]
    inv("disclosure-salt-short", p2d, "disclosures[0].salt: 15 bytes", salt,
        "bad_disclosure")

    # Ledgers: the valid bundle against a damaged ledger file.
    doc("invalid/ledger-truncated.jsonl", None, text="".join(lines[:2]))
    vector("valid/proof-1.json", "bundle",
           "none; the ledger file holds only epochs 0 and 1 (the receipt is epoch 2's)",
           "ledger", ledger="invalid/ledger-truncated.jsonl")
    doc("invalid/ledger-gap.jsonl", None, text="".join(lines[:1] + lines[2:]))
    vector("valid/proof-1.json", "bundle",
           "none; the ledger file lacks its second line (epoch 1)", "ledger",
           ledger="invalid/ledger-gap.jsonl")
    # A certificate and a query certificate check the ledger file once for all their
    # events: a damaged file still fails every event.
    vector("valid/certificate.json", "certificate",
           "none; the ledger file lacks its second line (epoch 1)", "ledger",
           ledger="invalid/ledger-gap.jsonl", event=cert["events"][0]["event"]["event_id"])
    vector("valid/rows.json", "rows",
           "none; the ledger file holds only epochs 0 and 1", "ledger",
           ledger="invalid/ledger-truncated.jsonl", event=rows["events"][-1]["event"]["event_id"])
    e1 = json.loads(lines[1])
    e1["anchored_at"] = "2000-01-01T00:00:00.000Z"
    doc("invalid/ledger-entry-altered.jsonl", None,
        text="".join(lines[:1] + [json.dumps(e1, separators=(",", ":")) + "\n"] + lines[2:]))
    vector("valid/proof-1.json", "bundle",
           "none; the ledger file's epoch 1 entry has another anchored_at (its signature "
           "no longer verifies)", "bad_signature", ledger="invalid/ledger-entry-altered.jsonl")

    # Certificates.
    def events_of(c, event_id):
        return [i for i, e in enumerate(c["events"]) if e["event"]["event_id"] == event_id]

    def moved(c):
        c["events"][events_of(c, "vec:prod:lot-a")[0]]["node"] = B1
    inv("certificate-event-moved", cert,
        "the event vec:prod:lot-a listed under node B1 instead of LOT-A", moved,
        "trace_problem", kind="certificate", problem="is listed under")

    def link_removed(c):
        del c["events"][events_of(c, "vec:asm:p1")[0]]
    inv("certificate-link-event-removed", cert,
        "the assembly vec:asm:p1, which links LOT-A and B1 to P1, removed", link_removed,
        "trace_problem", kind="certificate", problem="which the certificate does not hold")

    def wrong_from(c):
        node = next(n for n in c["trace"]["nodes"] if n["code"] == LOT_A)
        node["from"] = B1
    inv("certificate-link-wrong", cert,
        "node LOT-A said to be reached from B1 (the assembly puts it into P1)", wrong_from,
        "trace_problem", kind="certificate", problem="does not link")

    def duplicated(c):
        c["events"].append(copy.deepcopy(c["events"][events_of(c, "vec:wh:p1")[0]]))
    inv("certificate-event-twice", cert, "the event vec:wh:p1 listed twice", duplicated,
        "trace_problem", kind="certificate", problem="appears twice")

    def root_not_first(c):
        c["trace"]["nodes"].reverse()
    inv("certificate-root-not-first", cert, "trace.nodes in reverse order", root_not_first,
        "trace_problem", kind="certificate", problem="the first node is not the root")

    def window(c):
        node = next(n for n in c["trace"]["nodes"] if n["code"] == B1)
        node["windows"] = [{"from": "2026-11-21T00:00:00.000Z", "to": None}]
    inv("certificate-event-outside-window", cert,
        "node B1 given the window from 2026-11-21: its production (2026-11-20) lies outside",
        window, "trace_problem", kind="certificate", problem="lies outside the times")

    def event_changed(c):
        c["events"][events_of(c, "vec:wh:p1")[0]]["event"]["site"] = "plant-1/other"
    inv("certificate-event-changed", cert, "the event vec:wh:p1's site changed",
        event_changed, "root_mismatch", kind="certificate", event="vec:wh:p1")

    def batch_removed(c):
        bid = c["events"][events_of(c, "vec:qc:b1")[0]]["batch_id"]
        del c["batches"][bid]
    inv("certificate-batch-removed", cert,
        "the batch of vec:qc:b1 removed from batches", batch_removed, "inconsistent",
        kind="certificate", event="vec:qc:b1")
    # The trace's own shape: nodes as a breadth-first walk lists them.
    def node(c, code):
        return next(n for n in c["trace"]["nodes"] if n["code"] == code)

    inv("certificate-node-depth-wrong", cert, "node LOT-A's depth 1 -> 2 (it is reached from "
        "the root)", lambda c: node(c, LOT_A).update({"depth": 2}), "trace_problem",
        kind="certificate", problem="which it is reached from, has depth 0")
    inv("certificate-node-depth-zero", cert, "node B1's depth 1 -> 0",
        lambda c: node(c, B1).update({"depth": 0}), "trace_problem", kind="certificate",
        problem="has depth 0, but only the root has")
    inv("certificate-node-from-unknown", cert,
        "node LOT-A said to be reached from (01)09506000134352(21)X9, not a node of the trace",
        lambda c: node(c, LOT_A).update({"from": f"(01){GTIN}(21)X9"}), "trace_problem",
        kind="certificate", problem="which is not a node listed before it")
    vector("invalid/certificate-link-wrong.json", "certificate",
           "node LOT-A said to be reached from B1, which is listed after it", "trace_problem",
           base="valid/certificate.json", problem="which is not a node listed before it")
    inv("certificate-node-twice", cert, "node B1 listed a second time, at the end",
        lambda c: c["trace"]["nodes"].append(copy.deepcopy(node(c, B1))), "trace_problem",
        kind="certificate", problem="is listed twice")
    inv("certificate-direction-unknown", cert, "trace.direction backward -> sideways",
        set_(["trace", "direction"], "sideways"), "trace_problem", kind="certificate",
        problem="is neither backward nor forward")
    inv("certificate-root-linked", cert,
        "the root given a link: via_event vec:asm:p1, from LOT-A",
        lambda c: c["trace"]["nodes"][0].update({"via_event": "vec:asm:p1", "from": LOT_A}),
        "trace_problem", kind="certificate", problem="has a link")
    # A format's name decides the kind of document; a version this verifier does not read
    # is refused as such, not read as another kind.
    inv("certificate-format", cert,
        "format set to veritrace.certificate/2 (a version this verifier does not read)",
        set_(["format"], "veritrace.certificate/2"), "unsupported_format", kind="certificate")
    inv("rows-format", rows,
        "format set to veritrace.rows/2 (a version this verifier does not read)",
        set_(["format"], "veritrace.rows/2"), "unsupported_format", kind="rows")

    # Query certificates.
    def row_changed(c):
        r = next(r for r in c["rows"] if "event_type" in r["values"])
        r["values"]["event_type"] = "recall"
    inv("rows-value-changed", rows, "a row's event_type changed to recall (a checked column)",
        row_changed, "trace_problem", kind="rows", problem="but its event says")

    def receipt_removed(c):
        del c["anchors"][min(c["anchors"], key=int)]
    variant("certificate-receipt-removed", cert,
            "the first epoch receipt removed from anchors: its events verify as sealed",
            receipt_removed, kind="certificate", anchored=False)

    # -- the log (PROOFS.md 3.4, 4.7, 4.8) --
    sizes = docs["sizes"]
    doc("valid/proof-1-later-checkpoint.json", docs["proof-1-later"])
    vector("valid/proof-1-later-checkpoint.json", "bundle",
           f"none: `veritrace proof vec:prod:b1 --checkpoint {sizes[-1]}` (the batch header "
           f"proven into the log of {sizes[-1]} leaves, the last epoch's anchor)",
           "valid", anchored=True)
    later = docs["proof-1-later"]

    def later_inv(name, change, fn, expect):
        d = copy.deepcopy(later)
        fn(d)
        doc(f"invalid/{name}.json", d)
        vector(f"invalid/{name}.json", "bundle", change, expect,
               base="valid/proof-1-later-checkpoint.json")
    later_inv("later-checkpoint-size-changed",
              "epoch.batch_count (the log size) one smaller: the path still computes the "
              "root for leaf 0 of this tree (RFC 9162 paths of the first leaf do not show the "
              "size), so the receipt's size catches it",
              lambda b: b["epoch"].__setitem__("batch_count", b["epoch"]["batch_count"] - 1),
              "inconsistent")
    later_inv("later-checkpoint-other-epoch",
              "epoch.epoch_id changed to the epoch the batch was sealed in; the receipt is "
              "the later epoch's", lambda b: b["epoch"].__setitem__("epoch_id", 0),
              "inconsistent")

    rc = docs["receipt-1"]
    files["valid/receipt-1.cbor"] = rc
    vector("valid/receipt-1.cbor", "receipt",
           "none: `veritrace proof vec:prod:b1 --receipt FILE` (a COSE receipt: the batch "
           f"header in the log of {sizes[-1]} leaves, the event in its batch), --key given",
           "valid", ledger=None, key=public_key, anchored=True)
    vector("valid/receipt-1.cbor", "receipt", "none; the key taken from --ledger", "valid",
           anchored=True)
    vector("valid/receipt-1.cbor", "receipt", "none; no --key and no --ledger", "wrong_key",
           ledger=None)
    vector("valid/receipt-1.cbor", "receipt", "none; --key set to another key",
           "wrong_key", ledger=None, key="00" * 32)

    def receipt_inv(name, change, data, expect):
        files[f"invalid/{name}.cbor"] = data
        vector(f"invalid/{name}.cbor", "receipt", change, expect,
               base="valid/receipt-1.cbor", ledger=None, key=public_key)
    sig_flipped = bytearray(rc)
    sig_flipped[-1] ^= 0x01
    receipt_inv("receipt-signature-flipped", "the signature's last byte flipped",
                bytes(sig_flipped), "bad_signature")
    entry_at = rc.find(b'"batch_id":"')
    assert entry_at > 0, "the receipt carries the entry"
    entry_changed = bytearray(rc)
    i = rc.find(b'"seq":', entry_at) + len(b'"seq":')
    entry_changed[i] = ord("7") if rc[i] != ord("7") else ord("8")
    receipt_inv("receipt-entry-changed",
                "the entry's seq digit changed: the proof gives another root, which the "
                "signature does not cover", bytes(entry_changed), "bad_signature")
    event_at = rc.find(b'"event_id":"vec:prod:b1"')
    assert event_at > 0, "the receipt carries the event"
    event_changed = bytearray(rc)
    event_changed[event_at + len(b'"event_id":"vec:prod:')] = ord("c")
    receipt_inv("receipt-event-changed",
                "the event's id changed (b1 -> c1): it no longer proves into the batch root",
                bytes(event_changed), "root_mismatch")

    cons = docs["consistency"]
    doc("valid/consistency.json", cons)
    vector("valid/consistency.json", "consistency",
           f"none: `veritrace consistency --from {sizes[0]}` (to the log's size, "
           f"{cons['to']['size']}): valid, resting on the node's roots", "valid",
           ledger=None, anchored=False)

    def cons_inv(name, change, fn, expect):
        d = copy.deepcopy(cons)
        fn(d)
        doc(f"invalid/{name}.json", d)
        vector(f"invalid/{name}.json", "consistency", change, expect,
               base="valid/consistency.json", ledger=None)
    if cons["proof"]:
        cons_inv("consistency-hash-flipped", "proof[0]: one bit flipped",
                 lambda d: d["proof"].__setitem__(0, flip(d["proof"][0])), "root_mismatch")
        cons_inv("consistency-proof-short", "proof: last hash removed",
                 lambda d: d["proof"].pop(), "bad_path")
    cons_inv("consistency-old-root-changed", "from.root: one bit flipped",
             lambda d: d["from"].__setitem__("root", flip(d["from"]["root"])),
             "root_mismatch")
    cons_inv("consistency-shrinks", "from and to swapped: a log that shrank",
             lambda d: d.update({"from": d["to"], "to": d["from"]}), "bad_path")
    return files, vectors


def check(vv, work, files, vectors, ledger):
    """Runs veritrace-verify on every vector; exits on any unexpected outcome."""
    tmp = os.path.join(work, "vectors")
    for path, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(tmp, path)), exist_ok=True)
        with open(os.path.join(tmp, path), "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
    with open(os.path.join(tmp, "ledger.jsonl"), "w") as f:
        f.write(ledger)
    bad = []
    for v in vectors:
        args = [vv, "--json"]
        if v["ledger"]:
            args += ["--ledger", os.path.join(tmp, v["ledger"])]
        if "key" in v:
            args += ["--key", v["key"]]
        p = subprocess.run(args + [os.path.join(tmp, v["file"])], capture_output=True,
                           text=True)
        try:
            out = json.loads(p.stdout)
        except ValueError:
            bad.append((v, p.returncode, p.stdout + p.stderr))
            continue
        ok = outcome_matches(v, p.returncode, out)
        if not ok:
            bad.append((v, p.returncode, json.dumps(out)[:600]))
    if bad:
        for v, rc, out in bad:
            print(f"UNEXPECTED {v['file']} ({v['change']}): expected {v['expect']}, "
                  f"exit {rc}: {out}", file=sys.stderr)
        sys.exit(1)


def outcome_matches(v, rc, out):
    if v["expect"] == "valid":
        return rc == (0 if v["anchored"] else 3) and out["valid"] and \
            out["anchored"] == v["anchored"]
    if rc != 1 or out["valid"]:
        return False
    if v["expect"] == "trace_problem":
        return any(v["problem"] in p for p in out["problems"])
    if "event" in v:
        return any(e["event_id"] == v["event"] and e.get("code") == v["expect"]
                   for e in out["events"])
    return out.get("code") == v["expect"]


def write(files, vectors, ledger):
    for sub in ("valid", "invalid"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    for path, text in files.items():
        full = os.path.join(HERE, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
    with open(os.path.join(HERE, "ledger.jsonl"), "w") as f:
        f.write(ledger)
    manifest = {
        "about": "Veritrace proof test vectors: see README.md; regenerate with generate.py",
        "ledger": "ledger.jsonl",
        "ledger_public_key": json.loads(ledger.splitlines()[0])["public_key"],
        "vectors": vectors,
    }
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    print(f"{len(vectors)} vectors, {len(files) + 1} files written to {HERE}")


if __name__ == "__main__":
    main()
