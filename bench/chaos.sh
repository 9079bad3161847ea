#!/usr/bin/env bash
# Fault catalogue on real traffic: runs `serin chaos` (release build) for
# ROUNDS rounds; every round runs each fault of the catalogue and AA
# good-vs-good canaries at once, RATE requests/s through the real proxy on
# each canary's listener. Prints one row per canary and, per fault, the
# abort rate with 95 % Wilson and Clopper-Pearson intervals and the median /
# p90 time from the first bad response to the abort. The JSON document (every
# row) goes to OUT.
#
#   ROUNDS=10 AA=10 RATE=100 bench/chaos.sh
#
# Time: about (FIRST_PAUSE + SECOND_PAUSE + ~15 s) per round, plus start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
AA=${AA:-10}
RATE=${RATE:-100}
FIRST_PAUSE=${FIRST_PAUSE:-30s}
SECOND_PAUSE=${SECOND_PAUSE:-10s}
OUT=${OUT:-bench/chaos/last.json}
if [ -z "${SERIN_BIN:-}" ]; then
  cargo build --release -q -p serin
  SERIN_BIN=$PWD/target/release/serin
fi
mkdir -p "$(dirname "$OUT")"
echo "serin chaos: $ROUNDS rounds × (catalogue + $AA A/A), $RATE req/s per listener, pauses $FIRST_PAUSE + $SECOND_PAUSE; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
status=0
"$SERIN_BIN" chaos --rounds "$ROUNDS" --aa "$AA" --rate "$RATE" \
  --first-pause "$FIRST_PAUSE" --second-pause "$SECOND_PAUSE" -o json >"$OUT" || status=$?
echo "took $(( $(date +%s) - start )) s; rows in $OUT (exit $status: non-zero when a fault was missed or an A/A canary aborted)"
# The tables from the JSON, so the figures and the rows cannot disagree.
python3 - "$OUT" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print()
print(f"{'fault':<17} {'aborted':>8} {'Wilson 95 %':>18} {'C-P 95 %':>18} {'median b→a':>11} {'p90 b→a':>9} {'median err':>10} {'median rollback':>15}  caught by")
for s in d["summary"]:
    w = "[%.1f, %.1f] %%" % tuple(100 * x for x in s["wilson"])
    c = "[%.1f, %.1f] %%" % tuple(100 * x for x in s["clopper_pearson"])
    ms = lambda v: "-" if v is None else f"{v} ms"
    by = ", ".join(f"{k} {v}" for k, v in s["caught_by"].items())
    print(f"{s['fault']:<17} {str(s['aborted'])+'/'+str(s['runs']):>8} {w:>18} {c:>18} {ms(s['median_detect_ms']):>11} {ms(s['p90_detect_ms']):>9} {str(s['median_client_errors']):>10} {ms(s['median_rollback_ms']):>15}  {by}")
PY
exit "$status"
