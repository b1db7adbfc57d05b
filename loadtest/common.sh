# Shared by the wrk load scripts: the release binary ($BIN) and wrk, or a clear exit 2.
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/veritrace/target}/release/veritrace"
[ -x "$BIN" ] || { echo "no release binary at $BIN: cargo build --release -p veritrace" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
