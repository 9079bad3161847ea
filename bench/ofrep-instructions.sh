#!/usr/bin/env bash
# Instructions per OFREP single-flag request under callgrind: independent of machine load,
# so two builds compare exactly. Usage: bench/ofrep-instructions.sh [SERIN_BIN] (needs valgrind, wrk).
set -uo pipefail
cd "$(dirname "$0")/.."
b=$(realpath "${1:-target/release/serin}")
port=$((18300 + RANDOM % 500))
out=/tmp/cg.$(basename $b).out
rm -f $out*
valgrind --tool=callgrind --callgrind-out-file=$out $b flags serve --file bench/ofrep/flags.json --listen 127.0.0.1:$port >/dev/null 2>/tmp/cg.err &
pid=$!
for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
wrk -t1 -c8 -d3s -s bench/ofrep/post.lua http://127.0.0.1:$port/ofrep/v1/evaluate/flags/new-payment-processor >/dev/null
callgrind_control -z $pid >/dev/null 2>&1
wrk -t1 -c8 -d8s -s bench/ofrep/post.lua http://127.0.0.1:$port/ofrep/v1/evaluate/flags/new-payment-processor > /tmp/cgw.txt
callgrind_control -d $pid >/dev/null 2>&1
kill $pid; wait $pid 2>/dev/null
reqs=$(awk '/requests in/ {print $1}' /tmp/cgw.txt)
ir=$(for f in $out*; do callgrind_annotate $f 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; done | sort -n | tail -1)
echo "$(basename $b): $reqs requests, instructions/request: $((ir / reqs))"
