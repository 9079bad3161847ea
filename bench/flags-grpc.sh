#!/usr/bin/env bash
# flagd gRPC evaluation vs OFREP single-flag evaluation of `serin flags serve`, the server
# pinned to one core, measured side by side in one run by one client (flags-load, one
# thread, pinned to another core, the same requests in flight, rounds alternated); then the
# latency from a management write to a connected provider's gRPC configuration_change.
#
#   bench/flags-grpc.sh     # SECONDS_PER_ROUND=5 ROUNDS=5 IN_FLIGHT=32 PORT=18026
#                           # [SERIN_BIN=... LOAD_BIN=...] (skip the release build)
#
# Serves bench/ofrep/flags.json (the seed-like flag of bench/ofrep.sh). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-5}
ROUNDS=${ROUNDS:-5}
IN_FLIGHT=${IN_FLIGHT:-32}
PORT=${PORT:-18026}
EV_PORT=$((PORT + 1))
command -v taskset >/dev/null || { echo "taskset missing (util-linux)" >&2; exit 1; }
if [ -z "${SERIN_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  cargo build --release -p serin -p serin-bench --bin serin --bin flags-load --quiet
fi
SERIN=${SERIN_BIN:-target/release/serin}
LOAD=${LOAD_BIN:-target/release/flags-load}
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
echo "== throughput: server on core 0, client on core 1, $IN_FLIGHT in flight =="
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 1 "$LOAD" throughput "127.0.0.1:$PORT" new-payment-processor \
  "$SECONDS_PER_ROUND" "$IN_FLIGHT" "$ROUNDS"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== change events: redb store with keys; PUT (acknowledged after the commit) -> configuration_change =="
ADMIN="bench-admin-$RANDOM$RANDOM"
SERVER="bench-server-$RANDOM$RANDOM"
cat >"$TMP/keys.yaml" <<YAML
keys:
  - name: bench-admin
    kind: admin
    environment: production
    sha256: $(printf %s "$ADMIN" | "$SERIN" flags hash-key)
  - name: bench-server
    kind: server
    environment: production
    sha256: $(printf %s "$SERVER" | "$SERIN" flags hash-key)
YAML
"$SERIN" flags serve --store "$TMP/flags.redb" --keys "$TMP/keys.yaml" \
  --listen "127.0.0.1:$EV_PORT" >"$TMP/ev-serve.out" 2>"$TMP/ev-serve.err" &
PIDS+=($!)
wait_port "$EV_PORT"
"$LOAD" events "127.0.0.1:$EV_PORT" "$ADMIN" "$SERVER" production f 10
