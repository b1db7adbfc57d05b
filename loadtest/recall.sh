#!/bin/bash
# Recall at 50 M events (BENCHMARKS.md, "Recall at 50 M events"): fill, compact, merge,
# then cold recalls, each a fresh process. Build first:
#   CARGO_TARGET_DIR=$HOME/.cache/veritrace/target-release cargo build --release -p veritrace-loadtest -p veritrace
set -u
R=${R:-$HOME/.cache/veritrace/target-release/release}
D=${1:-/tmp/tb50m}
log() { echo "[$(date +%H:%M:%S)] $*"; }
log "fill"
/usr/bin/time -f "fill %e s, max RSS %M KB" $R/veritrace-loadtest traces --data $D --events 50000000 --fill-only 2>&1 | tail -5
log "compact"
/usr/bin/time -f "compact %e s" $R/veritrace compact --data $D --min-files 1 --max-files 100000 --grace-secs 0 --merge-fanin 0 2>&1 | tail -3
/usr/bin/time -f "compact again %e s" $R/veritrace compact --data $D --min-files 1 --max-files 100000 --grace-secs 0 --merge-fanin 0 2>&1 | tail -3
/usr/bin/time -f "merge %e s" $R/veritrace compact --data $D --full-merge --grace-secs 0 2>&1 | tail -3
du -sh $D
$R/veritrace sql --data $D "SELECT count(*) AS events FROM events"
$R/veritrace sql --data $D "SELECT count(*) AS edges FROM edges"
LOT=$($R/veritrace sql --data $D --format csv "SELECT parent FROM edges WHERE parent LIKE '(01)04056731102557%' GROUP BY parent ORDER BY count(*) DESC, parent LIMIT 1" | tail -1)
BIKE=$($R/veritrace sql --data $D --format csv "SELECT trace_code FROM events WHERE event_type = 'sale' ORDER BY event_id LIMIT 1" | tail -1)
log "lot $LOT bike $BIKE"
for i in 1 2 3; do
  /usr/bin/time -f "recall forward run $i: %e s, max RSS %M KB" $R/veritrace recall "$LOT" --data $D --format csv > /tmp/recall-fwd.csv
done
echo "forward rows: $(($(wc -l < /tmp/recall-fwd.csv) - 1))"
head -3 /tmp/recall-fwd.csv
cut -d, -f1-3 /tmp/recall-fwd.csv | head -1
for i in 1 2 3; do
  /usr/bin/time -f "recall reverse run $i: %e s, max RSS %M KB" $R/veritrace recall "$BIKE" --reverse --data $D --format csv > /tmp/recall-rev.csv
done
echo "reverse rows: $(($(wc -l < /tmp/recall-rev.csv) - 1))"
head -5 /tmp/recall-rev.csv
/usr/bin/time -f "recall forward with certificate: %e s, max RSS %M KB" $R/veritrace recall "$LOT" --data $D --format csv --certificate /tmp/recall-cert.json > /dev/null
ls -la /tmp/recall-cert.json
/usr/bin/time -f "verify certificate: %e s, max RSS %M KB" $R/veritrace verify /tmp/recall-cert.json --ledger $D/ledger/local.jsonl > /tmp/recall-verify.txt; head -1 /tmp/recall-verify.txt
/usr/bin/time -f "recall forward json: %e s" $R/veritrace recall "$LOT" --data $D --format json > /tmp/recall-fwd.json
log "done"
