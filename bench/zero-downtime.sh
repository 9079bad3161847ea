#!/usr/bin/env bash
# Zero-downtime benchmark (issue: local platform, benchmark 1).
# Constant load from wrk through Serin's proxy while the same service is
# rolled out again and again: rolling update, blue-green switch, canary to
# 100 %. Counts every failed request (socket errors, timeouts, non-2xx).
#
# Usage: bench/zero-downtime.sh            (DURATION=90 seconds per kind)
#        SERIN_BIN=target/release/serin DURATION=120 WRK_ARGS="-t1 -c16" bench/zero-downtime.sh
# Loopback only; stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-90}
WRK_ARGS=${WRK_ARGS:-"-t1 -c16"}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
if [ -z "${SERIN_BIN:-}" ]; then
  cargo build --release -q -p serin
  SERIN_BIN=$PWD/target/release/serin
fi
# serin.yaml below names it as the replicas' command, and replicas run in
# their own working directories: a relative path would not resolve there.
SERIN_BIN=$(realpath "$SERIN_BIN")
work=$(mktemp -d /tmp/serin-zd-XXXX)
state=$work/state
mkdir -p "$work/m"
cleanup() {
  [ -n "${up_pid:-}" ] && kill "$up_pid" 2>/dev/null || true
  "$SERIN_BIN" down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/serin.yaml" <<YAML
stateDir: $state
images:
  argoproj/rollouts-demo:
    command: ["$SERIN_BIN", "demo-app"]
    args: ["--demo-version", "{tag}"]
YAML

render() { # kind tag
  sed "s/__TAG__/$2/" "bench/zero-downtime/$1.yaml" > "$work/m/.$1.tmp" && mv "$work/m/.$1.tmp" "$work/m/$1.yaml"
}
for k in rolling bluegreen canary; do render $k blue; done

"$SERIN_BIN" up -c "$work/serin.yaml" "$work/m" > "$work/up.log" 2>&1 &
up_pid=$!

api() { python3 -c "import json;print(json.load(open('$state/endpoints.json'))['api'])"; }
for _ in $(seq 1 100); do [ -f "$state/endpoints.json" ] && break; sleep 0.2; done
stable() { "$SERIN_BIN" get "$1" -o json --state-dir "$state" 2>/dev/null | python3 -c "import json,sys
v=json.load(sys.stdin); s=v['status']; print(s['stable_hash'] if s['phase']=='Healthy' else '')" 2>/dev/null || true; }
wait_healthy_change() { # name old_hash
  for _ in $(seq 1 600); do h=$(stable "$1"); [ -n "$h" ] && [ "$h" != "$2" ] && { echo "$h"; return 0; }; sleep 0.2; done
  echo "timed out waiting for $1" >&2; return 1
}
for n in zd-rolling zd-bluegreen zd-canary; do
  for _ in $(seq 1 300); do [ -n "$(stable $n)" ] && break; sleep 0.2; done
done
listener() { curl -s -H "Authorization: Bearer $(cat "$state/admin.token")" "http://$(api)/v1/services" | python3 -c "import json,sys
print([s['listen'] for s in json.load(sys.stdin)['services'] if s['name']=='$1'][0])"; }

printf '%-10s %12s %10s %14s %12s %12s\n' kind requests non-2xx socket-errors deployments rps
for spec in "rolling zd-rolling zd-rolling" "bluegreen zd-bluegreen zd-bluegreen-active" "canary zd-canary zd-canary-vs"; do
  set -- $spec; kind=$1 name=$2 svc=$3
  addr=$(listener "$svc")
  wrk $WRK_ARGS -d"${DURATION}s" --latency "http://$addr/" > "$work/wrk-$kind.txt" 2>&1 &
  wrk_pid=$!
  deploys=0; tag=yellow; cur=$(stable "$name")
  sleep 2
  while kill -0 $wrk_pid 2>/dev/null; do
    render "$kind" "$tag"
    cur=$(wait_healthy_change "$name" "$cur") || break
    deploys=$((deploys + 1))
    [ "$tag" = yellow ] && tag=blue || tag=yellow
    sleep 1
  done
  wait $wrk_pid || true
  out="$work/wrk-$kind.txt"
  req=$(awk '/requests in/ {print $1}' "$out")
  non2xx=$(awk -F': ' '/Non-2xx/ {print $2}' "$out"); non2xx=${non2xx:-0}
  sock=$(awk '/Socket errors/ {gsub(/,/,""); print $4+$6+$8+$10}' "$out"); sock=${sock:-0}
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  printf '%-10s %12s %10s %14s %12s %12s\n' "$kind" "$req" "$non2xx" "$sock" "$deploys" "$rps"
done
