"""The DuckDB side of `veritrace-loadtest traces`: the same four questions over the same
Parquet files, traces as recursive CTEs with Veritrace's semantics (each object once, the
events of every object reached plus the transformation events crossed). Prints JSON with
row counts and cold/warm times.

usage: duckdb_traces.py '{"events": [...], "edges": [...], "product": ..., "raw": ..., "repeat": 5, "cold_repeat": 3}'
       duckdb_traces.py @input.json
"""

import json
import statistics
import sys
import time

import duckdb


def trace_sql(code: str, backward: bool) -> str:
    near, far = ("child", "parent") if backward else ("parent", "child")
    code = code.replace("'", "''")
    return f"""
    WITH RECURSIVE walk(node, depth) AS (
        SELECT '{code}'::VARCHAR, 0
        UNION
        SELECT e.{far}, w.depth + 1 FROM edges e JOIN walk w ON e.{near} = w.node
    ),
    nodes AS (SELECT node, min(depth) AS depth FROM walk GROUP BY node),
    crossed AS (SELECT DISTINCT e.event_id FROM edges e JOIN nodes n ON e.{near} = n.node)
    SELECT count(*) FROM (
        SELECT v.event_id FROM events v JOIN nodes n ON v.trace_code = n.node
        UNION ALL
        SELECT v.event_id FROM events v JOIN crossed x ON v.event_id = x.event_id
        WHERE v.trace_code IS NULL OR v.trace_code NOT IN (SELECT node FROM nodes)
    )
    """


def main() -> int:
    arg = sys.argv[1]
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            arg = f.read()
    inp = json.loads(arg)
    files = lambda key: "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in inp[key]) + "]"
    product = inp["product"].replace("'", "''")
    questions = [
        f"SELECT count(*) FROM (SELECT * FROM events WHERE trace_code = '{product}')",
        trace_sql(inp["product"], True),
        trace_sql(inp["raw"], False),
        "SELECT count(*) FROM (SELECT event_type, site, count(*) FROM events GROUP BY event_type, site)",
    ]
    out = []
    for q in questions:
        # Cold: the median of fresh connections answering their first question.
        colds = []
        for i in range(inp.get("cold_repeat", 1)):
            if i:
                con.close()
            t = time.perf_counter()
            con = duckdb.connect()
            con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({files('events')})")
            con.execute(f"CREATE VIEW edges AS SELECT * FROM read_parquet({files('edges')})")
            rows = con.execute(q).fetchone()[0]
            colds.append((time.perf_counter() - t) * 1e3)
        cold = statistics.median(colds)
        warm = []
        for _ in range(inp["repeat"]):
            t = time.perf_counter()
            con.execute(q).fetchone()
            warm.append((time.perf_counter() - t) * 1e3)
        con.close()
        out.append({"rows": rows, "cold_ms": cold, "warm_ms": statistics.median(warm)})
    json.dump({"duckdb": duckdb.__version__, "questions": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
