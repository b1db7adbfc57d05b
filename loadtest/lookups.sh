#!/usr/bin/env bash
# Point-lookup load benchmark (BENCHMARKS.md, "Point lookups under load"): the demo's data
# served by a release `veritrace serve`, 200 wrk connections doing GET /v1/events/{id} on
# random ids, paced at 2,000 and 4,000 lookups/s and then saturated, before and after
# `veritrace compact --full-merge`.
#
# usage: loadtest/lookups.sh [EVENTS] [DATA_DIR]     (defaults: 1000000, /tmp/vt-lookups)
# needs: wrk (Debian package), a release build (cargo build --release -p veritrace)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000000}"
DATA="${2:-/tmp/vt-lookups}"
DURATION="${DURATION:-30s}"
. loadtest/common.sh

if [ ! -d "$DATA/batches" ]; then
  "$BIN" demo --events "$EVENTS" --data "$DATA" --no-serve >/dev/null
fi
IDS="$(mktemp)"
trap 'rm -f "$IDS"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
# 20,000 ids spread over the whole data set, percent-encoded for the path.
"$BIN" sql --data "$DATA" --format csv \
  "SELECT event_id FROM events ORDER BY md5(event_id) LIMIT 20000" 2>/dev/null \
  | tail -n +2 | python3 -c 'import sys, urllib.parse; [print(urllib.parse.quote(l.strip(), safe="")) for l in sys.stdin]' > "$IDS"
echo "== $(wc -l < "$IDS") ids; $(ls "$DATA"/events | wc -l) batch files, $(ls "$DATA"/compacted 2>/dev/null | grep -c parquet || true) compacted files"

run() {
  local label="$1"
  local log
  log="$(mktemp)"
  "$BIN" serve --data "$DATA" --listen 127.0.0.1:0 --flight-listen 127.0.0.1:0 2>"$log" &
  PID=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr="$(grep -o 'http://[0-9.:]*' "$log" | head -1 | sed 's|http://||')" || true
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; exit 1; }
  # Warm-up (first lookups load each file's metadata and index), then the measured run.
  IDS="$IDS" wrk -t2 -c50 -d5s -s loadtest/wrk/lookups.lua "http://$addr" >/dev/null
  # Paced (open loop): 200 connections asking 2,000 and 4,000 times a second in all.
  for rate in ${RATES:-2000 4000}; do
    echo "== $label: RATE=$rate wrk -t2 -c200 -d$DURATION --latency"
    RATE="$rate" THREADS=2 IDS="$IDS" wrk -t2 -c200 -d"$DURATION" --latency -s loadtest/wrk/lookups.lua "http://$addr"
  done
  # Saturated (closed loop): each connection asks again as soon as it is answered.
  echo "== $label: wrk -t2 -c200 -d$DURATION --latency (saturated)"
  IDS="$IDS" wrk -t2 -c200 -d"$DURATION" --latency -s loadtest/wrk/lookups.lua "http://$addr"
  echo "server threads: $(ls /proc/$PID/task | wc -l), RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  rm -f "$log"
}

run "freshly sealed batch files"
"$BIN" compact --data "$DATA" --min-files 1 --full-merge --grace-secs 0 >/dev/null
run "after compact --full-merge"
