#!/usr/bin/env bash
# Authentication on request throughput (BENCHMARKS.md, "Access control: the visibility filter
# and authentication"): the demo's data, compacted into one sorted run, served by a release
# `veritrace serve`; 200 wrk connections doing GET /v1/events/{id} on the same ids in four
# configurations, each paced at 2,000 lookups/s and then saturated:
#   anonymous   no token file: anonymous admin (loopback, `[auth] anonymous = "auto"`)
#   analyst     an analyst API token as `Authorization: Bearer` (Scope::Data)
#   participant a participant token (its scoped engine and the visibility check of lookups)
#   analyst+audit  the analyst token with the audit log on (the default; the others run with
#               VERITRACE__AUTH__AUDIT=false)
# The ids are ones the participant may see (its own events), so all four answer 200 to the
# same requests. The configurations run ROUNDS times, interleaved, to show the drift.
#
# usage: loadtest/auth.sh [EVENTS] [DATA_DIR]     (defaults: 1000000, /tmp/vt-auth)
#        PARTICIPANT=ID (default: the participant of the most events), DURATION=30s,
#        RATES="2000" (paced runs before the saturated one), ROUNDS=2
# needs: wrk (Debian package), a release build (cargo build --release -p veritrace)
# The tokens go to a temporary token file (VERITRACE__AUTH__TOKENS_FILE), removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000000}"
DATA="${2:-/tmp/vt-auth}"
DURATION="${DURATION:-30s}"
ROUNDS="${ROUNDS:-2}"
. loadtest/common.sh

if [ ! -d "$DATA/batches" ]; then
  "$BIN" demo --events "$EVENTS" --data "$DATA" --no-serve >/dev/null
  "$BIN" compact --data "$DATA" --min-files 1 --full-merge --grace-secs 0 >/dev/null
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
export VERITRACE__AUTH__TOKENS_FILE="$TMP/tokens.json"

if [ -z "${PARTICIPANT:-}" ]; then
  PARTICIPANT="$("$BIN" sql --data "$DATA" --format csv \
    "SELECT participant_id, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 1" 2>/dev/null \
    | sed -n 2p | cut -d, -f1)"
fi
IDS="$TMP/ids"
# 20,000 of the participant's events, percent-encoded for the path.
"$BIN" sql --data "$DATA" --format csv \
  "SELECT event_id FROM events WHERE participant_id = '$PARTICIPANT' OR counterparty_id = '$PARTICIPANT' ORDER BY md5(event_id) LIMIT 20000" 2>/dev/null \
  | tail -n +2 | python3 -c 'import sys, urllib.parse; [print(urllib.parse.quote(l.strip(), safe="")) for l in sys.stdin]' > "$IDS"
echo "== participant $PARTICIPANT; $(wc -l < "$IDS") of its event ids; $(ls "$DATA"/compacted 2>/dev/null | grep -c parquet || true) compacted files"

run() {
  local label="$1" token="$2" audit="$3"
  local log hdr=()
  log="$TMP/serve.log"
  [ -n "$token" ] && hdr=(-H "Authorization: Bearer $token")
  VERITRACE__AUTH__AUDIT="$audit" "$BIN" serve --data "$DATA" --listen 127.0.0.1:0 --flight-listen 127.0.0.1:0 2>"$log" &
  PID=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr="$(grep -o 'http://[0-9.:]*' "$log" | head -1 | sed 's|http://||')" || true
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; exit 1; }
  # Warm-up (first lookups load each file's metadata and index), then the measured runs.
  IDS="$IDS" wrk -t2 -c50 -d5s "${hdr[@]}" -s loadtest/wrk/lookups.lua "http://$addr" >/dev/null
  for rate in ${RATES:-2000}; do
    echo "== $label: RATE=$rate wrk -t2 -c200 -d$DURATION --latency"
    RATE="$rate" THREADS=2 IDS="$IDS" wrk -t2 -c200 -d"$DURATION" --latency "${hdr[@]}" -s loadtest/wrk/lookups.lua "http://$addr"
  done
  echo "== $label: wrk -t2 -c200 -d$DURATION --latency (saturated)"
  IDS="$IDS" wrk -t2 -c200 -d"$DURATION" --latency "${hdr[@]}" -s loadtest/wrk/lookups.lua "http://$addr"
  echo "server threads: $(ls /proc/$PID/task | wc -l), RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

for round in $(seq 1 "$ROUNDS"); do
  rm -f "$VERITRACE__AUTH__TOKENS_FILE"
  run "round $round, anonymous admin, no tokens, audit off" "" false
  ANALYST="$("$BIN" tokens create --data "$DATA" --role analyst --name "auth.sh analyst")"
  SEES="$("$BIN" tokens create --data "$DATA" --role participant --participant "$PARTICIPANT" --name "auth.sh participant")"
  run "round $round, analyst token, audit off" "$ANALYST" false
  run "round $round, participant $PARTICIPANT token, audit off" "$SEES" false
  run "round $round, analyst token, audit on" "$ANALYST" true
done
