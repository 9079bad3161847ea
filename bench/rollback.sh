#!/usr/bin/env bash
# Rollback latency: runs the release `serin demo` RUNS times (default 5) and
# prints, for the bad canary, first-bad-response → abort and abort → last
# bad response, as measured by the demo's own clients.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
if [ -z "${SERIN_BIN:-}" ]; then
  cargo build --release -q -p serin
  SERIN_BIN=$PWD/target/release/serin
fi
# serin.yaml below names it as the replicas' command, and replicas run in
# their own working directories: a relative path would not resolve there.
SERIN_BIN=$(realpath "$SERIN_BIN")
printf '%-4s %20s %22s\n' run "first bad → abort" "abort → last bad"
for i in $(seq 1 "$RUNS"); do
  line=$("$SERIN_BIN" demo | grep 'first bad response → abort' || true)
  a=$(sed -E 's/.*abort: ([0-9]+) ms;.*/\1/' <<<"$line")
  b=$(sed -E 's/.*last bad response: ([0-9]+) ms.*/\1/' <<<"$line")
  printf '%-4s %17s ms %19s ms\n' "$i" "${a:-?}" "${b:-?}"
done
