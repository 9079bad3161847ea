#!/usr/bin/env bash
# Instructions per proxied request under callgrind (user space of the proxy
# process only; the kernel's loopback path, the same for both, is not
# counted): independent of machine load, so builds, and Serin and nginx,
# compare exactly. 90/10 split of the bench/proxy backends, wrk -t1 -c8.
#   bench/proxy-instructions.sh [SERIN_BIN] [--old]   # --old: a build before the admin token
#   bench/proxy-instructions.sh nginx                  # the nginx split_clients peer (1 worker)
#   KEEP=DIR ...                                       # keep the callgrind files for callgrind_annotate
# Needs valgrind, wrk, nginx.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-target/release/serin}
old=${2:-}
for c in valgrind wrk nginx; do
    command -v $c >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind wrk nginx >/dev/null; break; }
done
TMP=$(mktemp -d)
out=$TMP/cg.out
sed "s#__TMP__#$TMP#g" bench/proxy/nginx-backend.conf >"$TMP/backend.conf"
nginx -p "$TMP" -c "$TMP/backend.conf" -g 'daemon off;' 2>"$TMP/backend.err" &
ngx=$!
port=$((18400 + RANDOM % 500))
if [ "$what" = nginx ]; then
    name="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    sed "s#__TMP__#$TMP#g; s/127.0.0.1:18180/127.0.0.1:$port/; s/^worker_processes .*/worker_processes 1;/" \
        bench/proxy/nginx-split.conf >"$TMP/split.conf"
    valgrind --tool=callgrind --callgrind-out-file=$out nginx -p "$TMP" -c "$TMP/split.conf" \
        -g 'daemon off; master_process off;' >/dev/null 2>"$TMP/cg.err" &
else
    b=$(realpath "$what")
    name=$(basename "$b")
    sed "s/127.0.0.1:18183/127.0.0.1:$port/" bench/proxy/serin.json >"$TMP/serin.json"
    token=()
    [ "$old" = --old ] || token=(--admin-token-file "$TMP/admin.token")
    valgrind --tool=callgrind --callgrind-out-file=$out "$b" proxy --admin 127.0.0.1:0 "${token[@]}" \
        --config "$TMP/serin.json" >/dev/null 2>"$TMP/cg.err" &
fi
pid=$!
for _ in $(seq 1 150); do curl -fsS -o /dev/null http://127.0.0.1:$port/ 2>/dev/null && break; sleep 0.2; done
wrk -t1 -c8 -d3s http://127.0.0.1:$port/ >/dev/null
callgrind_control -z $pid >/dev/null 2>&1
wrk -t1 -c8 -d8s http://127.0.0.1:$port/ >"$TMP/wrk.txt"
callgrind_control -d $pid >/dev/null 2>&1
kill $pid $ngx; wait $pid $ngx 2>/dev/null
reqs=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
ir=$(for f in $out*; do callgrind_annotate $f 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; done | sort -n | tail -1)
echo "$name: $reqs requests, instructions/request: $((ir / reqs))"
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp $out* "$KEEP"/
rm -rf "$TMP"
