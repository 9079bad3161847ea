#!/usr/bin/env bash
# Fault catalogue on real traffic: runs `serin chaos` (release build) for
# ROUNDS rounds; every round runs each fault of the catalogue and AA
# good-vs-good canaries at once, RATE requests/s through the real proxy on
# each canary's listener. Prints one row per canary and, per fault, the
# abort rate with 95 % Wilson and Clopper-Pearson intervals and the median /
# p90 time from the first bad response to the abort. The JSON document (every
# row) goes to OUT; every round's rows are also appended to ROWS (JSON lines)
# as the round ends, and the tables are computed from ROWS, so a run that is
# interrupted (or a round that fails) still reports the rounds it finished.
#
#   ROUNDS=10 AA=10 RATE=100 bench/chaos.sh
#   ONLY=none AA=10 ROUNDS=5 bench/chaos.sh     # A/A canaries only
#   COPIES=4 AA=0 ROUNDS=5 bench/chaos.sh        # each fault 4× per round
#
# Time: about (FIRST_PAUSE + SECOND_PAUSE + ~15 s) per round, plus start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
AA=${AA:-10}
COPIES=${COPIES:-1}
RATE=${RATE:-100}
ONLY=${ONLY:-}
FIRST_PAUSE=${FIRST_PAUSE:-30s}
SECOND_PAUSE=${SECOND_PAUSE:-10s}
OUT=${OUT:-bench/chaos/last.json}
ROWS=${ROWS:-${OUT%.json}.rows.jsonl}
if [ -z "${SERIN_BIN:-}" ]; then
  cargo build --release -q -p serin
  SERIN_BIN=$PWD/target/release/serin
fi
mkdir -p "$(dirname "$OUT")" "$(dirname "$ROWS")"
: >"$ROWS"
echo "serin chaos: $ROUNDS rounds × (catalogue × $COPIES + $AA A/A), $RATE req/s per listener, pauses $FIRST_PAUSE + $SECOND_PAUSE; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
status=0
"$SERIN_BIN" chaos --rounds "$ROUNDS" --aa "$AA" --copies "$COPIES" --rate "$RATE" ${ONLY:+--only "$ONLY"} \
  --first-pause "$FIRST_PAUSE" --second-pause "$SECOND_PAUSE" -o json \
  --rows "$ROWS" >"$OUT" || status=$?
echo "took $(( $(date +%s) - start )) s; rows in $ROWS, document in $OUT (exit $status: non-zero when a fault was missed, an A/A canary aborted or the run failed)"
# The tables from the rows, so the figures and the rows cannot disagree; the
# same summary as `serin chaos` (nearest-rank quantiles, Wilson and exact
# Clopper-Pearson 95 % intervals).
python3 - "$ROWS" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    sys.exit("no finished round")
def cdf(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p)**(n - i) for i in range(k + 1))
def solve(f, target):
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
    return (lo + hi) / 2
def clopper_pearson(k, n):
    lo = 0.0 if k == 0 else solve(lambda p: cdf(k - 1, n, p), 0.975)
    hi = 1.0 if k == n else solve(lambda p: cdf(k, n, p), 0.025)
    return lo, hi
def wilson(k, n):
    z = 1.959963984540054
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (0.0 if k == 0 else max(c - h, 0.0), 1.0 if k == n else min(c + h, 1.0))
def q(v, x):
    if not v:
        return None
    v = sorted(v)
    return v[min(max(math.ceil(x * len(v)), 1), len(v)) - 1]
order = []
for r in rows:
    if r["fault"] not in order:
        order.append(r["fault"])
order.sort(key=lambda f: f == "a/a")
summary = []
for f in order:
    mine = [r for r in rows if r["fault"] == f]
    n, k = len(mine), sum(r["outcome"] == "aborted" for r in mine)
    detect = [r["first_bad_to_abort_ms"] for r in mine if r["first_bad_to_abort_ms"] is not None]
    by = {}
    for r in mine:
        for m in r["failed_metrics"]:
            by[m] = by.get(m, 0) + 1
    summary.append({"fault": f, "runs": n, "aborted": k, "wilson": wilson(k, n),
        "clopper_pearson": clopper_pearson(k, n), "median_detect_ms": q(detect, 0.5),
        "p90_detect_ms": q(detect, 0.9),
        "median_client_errors": q([r["client_errors"] for r in mine], 0.5),
        "median_rollback_ms": q([r["rollback_ms"] for r in mine if r["rollback_ms"] is not None], 0.5),
        "caught_by": dict(sorted(by.items()))})
print()
print(f"{len(set(r['round'] for r in rows))} rounds finished")
print(f"{'fault':<17} {'aborted':>8} {'Wilson 95 %':>18} {'C-P 95 %':>18} {'median b→a':>11} {'p90 b→a':>9} {'median err':>10} {'median rollback':>15}  caught by")
for s in summary:
    w = "[%.1f, %.1f] %%" % tuple(100 * x for x in s["wilson"])
    c = "[%.1f, %.1f] %%" % tuple(100 * x for x in s["clopper_pearson"])
    ms = lambda v: "-" if v is None else f"{v} ms"
    by = ", ".join(f"{k} {v}" for k, v in s["caught_by"].items())
    print(f"{s['fault']:<17} {str(s['aborted'])+'/'+str(s['runs']):>8} {w:>18} {c:>18} {ms(s['median_detect_ms']):>11} {ms(s['p90_detect_ms']):>9} {str(s['median_client_errors']):>10} {ms(s['median_rollback_ms']):>15}  {by}")
PY
exit "$status"
