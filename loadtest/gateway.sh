#!/usr/bin/env bash
# Gateway load benchmark (BENCHMARKS.md, "The gateway under load"): a release
# `veritrace gateway` under `enforce`, publishing to a tansu broker on this machine, loaded
# by wrk from a second process with signed requests:
#   - one Ed25519 JWS event per request,
#   - one ES256 JWS event per request,
#   - a bundle of 100 events under one ES256 signature per request.
# Each request is verified against the identity registry and answered 202 only after Kafka
# (acks=all) acknowledged its records.
#
# usage: loadtest/gateway.sh            (DURATION=30s CONNECTIONS=64 by default)
# needs: wrk (Debian package), a release build (cargo build --release -p veritrace) and the
# tansu broker scripts/test builds ($VERITRACE_TANSU or ~/.cache/veritrace/tansu-0.6.0).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-30s}"
CONNECTIONS="${CONNECTIONS:-64}"
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/veritrace/target}/release/veritrace"
TANSU="${VERITRACE_TANSU:-$HOME/.cache/veritrace/tansu-0.6.0/bin/tansu}"
[ -x "$BIN" ] || { echo "no release binary at $BIN: cargo build --release -p veritrace" >&2; exit 2; }
[ -x "$TANSU" ] || { echo "no tansu at $TANSU: run scripts/test once (it builds it)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The broker.
KPORT="$(free_port)"
(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine memory://tansu/ \
  >/dev/null 2>"$WORK/broker.log") &
PIDS+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" topics create --brokers "127.0.0.1:$KPORT" --partitions 2 >/dev/null

# The registry: root, one participant, two devices (Ed25519 and P-256).
DATA="$WORK/data"
NOW="$(date +%s)"
"$BIN" keys generate --alg EdDSA --out "$WORK/root.key" >/dev/null
ROOT_PUB="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["public"])' "$WORK/root.key")"
export VERITRACE__SIGNATURES__ROOT_KEY="$ROOT_PUB"
"$BIN" keys generate --alg EdDSA --out "$WORK/admin.key" >/dev/null
"$BIN" keys generate --alg EdDSA --out "$WORK/ed.key" >/dev/null
"$BIN" keys generate --alg ES256 --out "$WORK/p256.key" >/dev/null
"$BIN" participant register --data "$DATA" --root-key "$WORK/root.key" --id P1 --name P1 \
  --role manufacturer --admin-key "$WORK/admin.key" --at $((NOW - 60)) >/dev/null
for d in ed p256; do
  "$BIN" device register --data "$DATA" --admin-key "$WORK/admin.key" --participant P1 \
    --id "dev-$d" --key "$WORK/$d.key" --at $((NOW - 60)) >/dev/null
done

# The bodies: signed events as a device would send them.
event() {
  printf '{"event_id":"gw-bench-%s","event_type":"production","event_time":"2026-11-01T08:00:00Z","participant":{"id":"P1","role":"manufacturer"},"object":{"product_id":"06945501102041","batch_number":"LOT%s"},"quantity":{"unit":"pcs","value":120},"site":"plant-1/line-3","trace_code":"(01)06945501102041(10)LOT%s"}\n' "$1" "$1" "$1"
}
event 1 > "$WORK/one.json"
for i in $(seq 1 100); do event "$i"; done > "$WORK/hundred.jsonl"
"$BIN" sign --key "$WORK/ed.key" --issuer dev-ed "$WORK/one.json" > "$WORK/ed.jws"
"$BIN" sign --key "$WORK/p256.key" --issuer dev-p256 "$WORK/one.json" > "$WORK/p256.jws"
"$BIN" sign --key "$WORK/p256.key" --issuer dev-p256 --bundle 100 "$WORK/hundred.jsonl" > "$WORK/bundle.json"

# The gateway.
LOG="$WORK/gateway.log"
VERITRACE__SIGNATURES__POLICY=enforce \
  "$BIN" gateway --brokers "127.0.0.1:$KPORT" --listen 127.0.0.1:0 --data "$DATA" 2>"$LOG" &
GW=$!
PIDS+=($GW)
ADDR=""
for _ in $(seq 1 200); do
  ADDR="$(grep -o 'http://[0-9.:]*' "$LOG" | head -1 | sed 's|http://||')" || true
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "$ADDR" ] || { cat "$LOG" >&2; exit 1; }
echo "== gateway at $ADDR, broker at 127.0.0.1:$KPORT; $(nproc) cores; wrk -t2 -c$CONNECTIONS -d$DURATION"

run() {
  local label="$1" file="$2" ct="$3"
  # Warm-up, then the measured run.
  BODY_FILE="$file" CONTENT_TYPE="$ct" wrk -t2 -c"$CONNECTIONS" -d5s -s loadtest/wrk/ingest.lua "http://$ADDR" >/dev/null
  echo "== $label ($(wc -c < "$file") bytes a request)"
  BODY_FILE="$file" CONTENT_TYPE="$ct" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s loadtest/wrk/ingest.lua "http://$ADDR"
}
run "one Ed25519 JWS event per request" "$WORK/ed.jws" application/jose
run "one ES256 JWS event per request" "$WORK/p256.jws" application/jose
run "a bundle of 100 events, one ES256 signature, per request" "$WORK/bundle.json" application/json
echo "gateway RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$GW/status)"
curl -s "http://$ADDR/metrics" | grep -E '^veritrace_gateway_records_total' || true
