"""Reads Veritrace's published Delta tables with the deltalake package (delta-rs), a reader
that is not ours, and prints what it sees as one JSON object:

    {"events": {"version": V, "rows": N, "distinct": D, "files": F}, "rejected": {...}, ...}

Every column of every table is read (not only counted), so a column whose type the Delta
schema misstates fails here as it would in Spark or Trino.

usage: delta_tables.py DATA_DIR

DATA_DIR may be s3://bucket/prefix: the store is then the one the AWS_* variables name
(AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
"""

import json
import os
import sys

import pyarrow.compute as pc
from deltalake import DeltaTable

KEYS = {"events": "event_id", "rejected": "offset", "edges": "event_id"}
ROOTS = {"events": "", "rejected": "rejected", "edges": "edges"}


def main():
    data = sys.argv[1].rstrip("/")
    options = None
    if data.startswith("s3://"):
        options = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    out = {}
    for table, sub in ROOTS.items():
        root = f"{data}/{sub}" if sub else data
        dt = DeltaTable(root, storage_options=options)
        t = dt.to_pyarrow_table()
        key = KEYS[table]
        ident = t.column(key)
        if table == "rejected":
            # A rejected record is one input record: stream, partition and offset.
            ident = pc.binary_join_element_wise(
                pc.cast(t.column("stream"), "string"),
                pc.cast(t.column("partition"), "string"),
                pc.cast(t.column("offset"), "string"),
                ":",
            )
        if table == "edges":
            ident = pc.binary_join_element_wise(
                t.column("event_id"), t.column("parent"), t.column("child"), ">"
            )
        out[table] = {
            "version": dt.version(),
            "rows": t.num_rows,
            "distinct": pc.count_distinct(ident).as_py(),
            "files": len(dt.file_uris()),
        }
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # Skip the interpreter's teardown: the native thread pools of pyarrow and delta-rs can
    # abort at exit ("terminate called without an active exception", seen once in CI) after
    # the answer is complete.
    os._exit(0)
