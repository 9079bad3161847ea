#!/usr/bin/env bash
# OFREP single-flag throughput and latency of `serin flags serve`, pinned to one core.
#
#   bench/ofrep.sh            # DURATION=15s CONNECTIONS=32 PORT=18016 [SERIN_BIN=...]
#
# Builds serin in release, serves bench/ofrep/flags.json (a seed-like flag: a country
# rule around a 25 % fractional rollout) with `taskset -c 0`, and drives
# POST /ofrep/v1/evaluate/flags/new-payment-processor with wrk (one thread, pinned to
# core 1, bench/ofrep/post.lua). Prints rps and p50/p99 against the 40,000 rps / 2 ms
# target and flagd's published ~20,000 rps per CPU (a published figure, not measured here).
# Then measures the SSE change latency: a redb-backed server with keys, an SSE client
# (curl), and five flag writes through the management API.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18016}
SSE_PORT=$((PORT + 1))
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing (util-linux)" >&2; exit 1; }

# SERIN_BIN=path skips the build (e.g. when another crate of the workspace is mid-edit).
if [ -z "${SERIN_BIN:-}" ]; then cargo build --release -p serin --quiet; fi
SERIN=${SERIN_BIN:-target/release/serin}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2; exit 1
}

taskset -c 0 "$SERIN" flags serve --file bench/ofrep/flags.json --listen "127.0.0.1:$PORT" \
  >"$TMP/serve.out" 2>"$TMP/serve.err" &
PIDS+=($!)
wait_port "$PORT"
URL="http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/new-payment-processor"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "sample answer: $(curl -s -X POST -H 'Content-Type: application/json' \
  -d '{"context":{"targetingKey":"user-42","country":"DE"}}' "$URL")"

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
bench() { # name url -> "rps p50ms p99ms"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/ofrep/post.lua "$2" >/dev/null
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/ofrep/post.lua "$2" >"$TMP/$1.txt"
  if grep -qE 'Non-2xx|Socket errors' "$TMP/$1.txt"; then
    echo "$1: errors:" >&2; grep -E 'Non-2xx|Socket errors' "$TMP/$1.txt" >&2
  fi
  echo "$(awk '/^Requests\/sec:/ {print $2}' "$TMP/$1.txt")" \
       "$(to_ms "$(awk '$1=="50%" {print $2}' "$TMP/$1.txt")")" \
       "$(to_ms "$(awk '$1=="99%" {print $2}' "$TMP/$1.txt")")"
}

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
NGINX_PORT=$((PORT + 2))
if [ -x "$NGINX" ]; then
  sed -e "s#__TMP__#$TMP#g" -e "s#__PORT__#$NGINX_PORT#g" bench/ofrep/nginx.conf >"$TMP/nginx.conf"
  taskset -c 0 "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -g 'daemon off;' 2>"$TMP/nginx.err" &
  PIDS+=($!)
  wait_port "$NGINX_PORT"
  read -r N_RPS N_P50 N_P99 < <(bench nginx "http://127.0.0.1:$NGINX_PORT/")
fi
read -r RPS P50MS P99MS < <(bench serin "$URL")

echo
echo "== OFREP single flag: server on core 0 (taskset), wrk -t1 -c$CONNECTIONS -d$DURATION on core 1 =="
echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)  ($(nproc) cores, shared)"
printf '%-40s %12s %10s %10s\n' "" "requests/s" "p50 ms" "p99 ms"
printf '%-40s %12s %10s %10s\n' "serin flags serve (parse+eval+JSON)" "$RPS" "$P50MS" "$P99MS"
[ -n "${N_RPS:-}" ] && printf '%-40s %12s %10s %10s\n' "nginx, constant JSON (ceiling peer)" "$N_RPS" "$N_P50" "$N_P99"
awk -v r="$RPS" -v p="$P99MS" -v n="${N_RPS:-0}" 'BEGIN {
  printf "%-40s %12s\n", "target >= 40,000 rps", (r >= 40000 ? "met" : "MISSED");
  printf "%-40s %12s\n", "target p99 <= 2 ms", (p <= 2 ? "met" : "MISSED");
  printf "%-40s %11.2fx\n", "vs flagd ~20,000 rps/CPU (published)", r / 20000;
  if (n > 0) printf "%-40s %11.2fx\n", "serin / nginx (same run)", r / n }'

# SSE change latency (store mode, keys).
ADMIN=bench-admin-$RANDOM$RANDOM
SERVER=bench-server-$RANDOM$RANDOM
cat >"$TMP/keys.yaml" <<YAML
keys:
  - name: bench-admin
    kind: admin
    environment: production
    sha256: $(printf %s "$ADMIN" | "$SERIN" flags hash-key)
  - name: bench-sdk
    kind: server
    environment: production
    sha256: $(printf %s "$SERVER" | "$SERIN" flags hash-key)
YAML
"$SERIN" flags serve --store "$TMP/flags.redb" --keys "$TMP/keys.yaml" \
  --listen "127.0.0.1:$SSE_PORT" >"$TMP/sse-serve.out" 2>"$TMP/sse-serve.err" &
PIDS+=($!)
wait_port "$SSE_PORT"
curl -sN -H "Authorization: Bearer $SERVER" "http://127.0.0.1:$SSE_PORT/ofrep/v1/events" >"$TMP/events.txt" &
PIDS+=($!)
sleep 0.5
echo
echo "== SSE change latency (PUT acknowledged by redb commit -> refetchEvaluation seen by curl) =="
for i in 1 2 3 4 5; do
  before=$(grep -c refetchEvaluation "$TMP/events.txt" || true)
  start=$(date +%s%N)
  curl -s -o /dev/null -X PUT -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"off\",\"metadata\":{\"n\":$i}}" \
    "http://127.0.0.1:$SSE_PORT/api/v1/environments/production/flags/f"
  while [ "$(grep -c refetchEvaluation "$TMP/events.txt" || true)" -le "$before" ]; do
    [ $(( ($(date +%s%N) - start) / 1000000 )) -gt 5000 ] && { echo "no event within 5 s" >&2; exit 1; }
  done
  echo "change $i: $(( ($(date +%s%N) - start) / 1000 )) us (includes curl start-up and the fsync'd commit)"
done
