#!/usr/bin/env bash
# Proxy overhead vs nginx: the same 90/10 split of two static backends in
# nginx (split_clients) and in `serin proxy`, plus the backend directly;
# same wrk settings for all. Prints rps, p50, p99, CPU time per request of
# the proxy process (perf stat task-clock) and the serin/nginx ratios.
#
#   bench/proxy.sh                 # unpinned: everything shares all cores,
#                                  # WRK_ARGS="-t2 -c64 -d10s" by default
#   PIN=1 bench/proxy.sh           # pinned, per core: the nginx split (1 worker)
#                                  # and serin each on core 0 (serin then runs
#                                  # one runtime), backends and wrk on core 1;
#                                  # WRK_ARGS="-t1 -c32 -d5s", ROUNDS=3 by default
#   WRK_ARGS="-t2 -c128 -d20s" bench/proxy.sh
#   SERIN_BIN=/path/to/serin bench/proxy.sh   # an already built binary (or
#                                  # `cargo build --release -p serin-proxy --example serve`)
#   SERIN_BEFORE=/path/to/old/serin bench/proxy.sh
#                                  # also run an older build side by side
#                                  # ("before"), in the same alternating rounds
#   ROUNDS=5 bench/proxy.sh        # direct, nginx, serin[, before] in turn, 5 times;
#                                  # prints every round and the medians
set -euo pipefail
cd "$(dirname "$0")/.."
PIN=${PIN:-0}
if [ "$PIN" = 1 ]; then
    WRK_ARGS=${WRK_ARGS:-"-t1 -c32 -d5s"}
    ROUNDS=${ROUNDS:-3}
    PROXY_CORE=${PROXY_CORE:-0}
    LOAD_CORE=${LOAD_CORE:-1}
    on_proxy=(taskset -c "$PROXY_CORE")
    on_load=(taskset -c "$LOAD_CORE")
else
    WRK_ARGS=${WRK_ARGS:-"-t2 -c64 -d10s"}
    ROUNDS=${ROUNDS:-1}
    on_proxy=()
    on_load=()
fi
HERE=bench/proxy

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v perf >/dev/null || need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# SERIN_BIN=path skips the build (e.g. a release binary built elsewhere).
if [ -n "${SERIN_BIN:-}" ]; then
    SERIN=$SERIN_BIN
else
    echo "building serin (release)" >&2
    cargo build --release -q -p serin
    SERIN=target/release/serin
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

sed "s#__TMP__#$TMP#g" $HERE/nginx-backend.conf >"$TMP/backend.conf"
sed "s#__TMP__#$TMP#g" $HERE/nginx-split.conf >"$TMP/split.conf"
if [ "$PIN" = 1 ]; then
    sed -i 's/^worker_processes .*/worker_processes 1;/' "$TMP/split.conf"
fi
"${on_load[@]}" "$NGINX" -p "$TMP" -c "$TMP/backend.conf" -g 'daemon off;' 2>"$TMP/backend.err" &
PIDS+=($!)
"${on_proxy[@]}" "$NGINX" -p "$TMP" -c "$TMP/split.conf" -g 'daemon off;' 2>"$TMP/split.err" &
PIDS+=($!)
declare -A PID
"${on_proxy[@]}" "$SERIN" proxy --admin 127.0.0.1:18184 --admin-token-file "$TMP/admin.token" --config $HERE/serin.json >"$TMP/serin.out" 2>"$TMP/serin.err" &
PID[serin]=$!
PIDS+=($!)
SETUPS=(direct nginx serin)
declare -A URLS=([direct]=http://127.0.0.1:18181/ [nginx]=http://127.0.0.1:18180/ [serin]=http://127.0.0.1:18183/)
if [ -n "${SERIN_BEFORE:-}" ]; then
    # An older build, on its own ports; builds before the admin token take no token flag.
    sed 's/127.0.0.1:18183/127.0.0.1:18185/' $HERE/serin.json >"$TMP/before.json"
    "${on_proxy[@]}" "$SERIN_BEFORE" proxy --admin 127.0.0.1:18186 --config "$TMP/before.json" >"$TMP/before.out" 2>"$TMP/before.err" &
    PID[before]=$!
    PIDS+=($!)
    SETUPS+=(before)
    URLS[before]=http://127.0.0.1:18185/
fi

wait_up() { # url
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "not up: $1" >&2
    cat "$TMP"/*.err >&2 || true
    exit 1
}
for s in "${SETUPS[@]}"; do wait_up "${URLS[$s]}"; done
wait_up http://127.0.0.1:18182/
# The split nginx's one worker (pinned) or its workers (unpinned) do the work.
PID[nginx]=$(pgrep -d, -P "$(cat "$TMP/split.pid")")
PID[direct]=$(pgrep -d, -P "$(cat "$TMP/backend.pid")")

# to_ms VALUE: wrk prints 512.00us / 1.20ms / 1.01s
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

declare -A RPS P50 P99 CPU ALL_RPS ALL_P50 ALL_P99 ALL_CPU
run() { # name url
    "${on_load[@]}" wrk -t1 -c16 -d2s "$2" >/dev/null # warm-up: pools, caches
    # CPU time of the process serving this setup while wrk runs.
    perf stat -x, -e task-clock -p "${PID[$1]}" -o "$TMP/$1.perf" 2>/dev/null &
    local perf_pid=$!
    # shellcheck disable=SC2086
    out=$("${on_load[@]}" wrk $WRK_ARGS --latency "$2")
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    echo "$out" >"$TMP/$1.wrk"
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "== $1: errors during the run" >&2
        echo "$out" >&2
    fi
    local requests msec
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    msec=$(awk -F, '/task-clock/ {print $1}' "$TMP/$1.perf" 2>/dev/null || echo 0)
    RPS[$1]=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    P50[$1]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    P99[$1]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    CPU[$1]=$(awk -v m="${msec:-0}" -v n="$requests" 'BEGIN { printf "%.1f", (n > 0) ? m * 1000 / n : 0 }')
    ALL_RPS[$1]+="${RPS[$1]} "
    ALL_P50[$1]+="${P50[$1]} "
    ALL_P99[$1]+="${P99[$1]} "
    ALL_CPU[$1]+="${CPU[$1]} "
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for round in $(seq 1 "$ROUNDS"); do
    line="round $round ($(uptime | sed 's/.*load/load/')):"
    for s in "${SETUPS[@]}"; do
        run "$s" "${URLS[$s]}"
        line+=" $s ${RPS[$s]} rps p50 ${P50[$s]} p99 ${P99[$s]} cpu/req ${CPU[$s]}us;"
    done
    if [ "$ROUNDS" -gt 1 ]; then
        echo "$line"
        awk -v sr="${RPS[serin]}" -v nr="${RPS[nginx]}" 'BEGIN { printf "  serin/nginx rps %.2fx\n", sr / nr }'
    fi
done
if [ "$ROUNDS" -gt 1 ]; then
    for s in "${SETUPS[@]}"; do
        RPS[$s]=$(median <<<"${ALL_RPS[$s]}")
        P50[$s]=$(median <<<"${ALL_P50[$s]}")
        P99[$s]=$(median <<<"${ALL_P99[$s]}")
        CPU[$s]=$(median <<<"${ALL_CPU[$s]}")
    done
    echo "medians of $ROUNDS rounds:"
fi

split=$(curl -fsS -H "Authorization: Bearer $(cat "$TMP/admin.token")" http://127.0.0.1:18184/v1/stats | awk -F: '/"revision"/ {gsub(/[", ]/, "", $2); r=$2} /"requests"/ {gsub(/[, ]/, "", $2); print r "=" $2}' | paste -sd' ')

echo
mode=unpinned
[ "$PIN" = 1 ] && mode="pinned: proxies on core $PROXY_CORE, backends and wrk on core $LOAD_CORE"
echo "wrk $WRK_ARGS --latency; $(nproc) cores, $mode; $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
printf '%-8s %12s %10s %10s %14s\n' setup rps p50_ms p99_ms cpu_us_per_req
for s in "${SETUPS[@]}"; do
    printf '%-8s %12s %10s %10s %14s\n' "$s" "${RPS[$s]}" "${P50[$s]}" "${P99[$s]}" "${CPU[$s]}"
done
ratio() { # name
    awk -v sr="${RPS[$1]}" -v nr="${RPS[nginx]}" -v s50="${P50[$1]}" -v n50="${P50[nginx]}" \
        -v s99="${P99[$1]}" -v n99="${P99[nginx]}" -v sc="${CPU[$1]}" -v nc="${CPU[nginx]}" -v name="$1" 'BEGIN {
        printf "%s/nginx: rps %.2fx, p50 %.2fx, p99 %.2fx, cpu/req %.2fx\n", name, sr / nr, s50 / n50, s99 / n99, (nc > 0) ? sc / nc : 0 }'
}
ratio serin
[ -n "${SERIN_BEFORE:-}" ] && ratio before
echo "added over direct: p50 serin +$(awk -v a="${P50[serin]}" -v b="${P50[direct]}" 'BEGIN {printf "%.3f", a - b}') ms, nginx +$(awk -v a="${P50[nginx]}" -v b="${P50[direct]}" 'BEGIN {printf "%.3f", a - b}') ms; p99 serin +$(awk -v a="${P99[serin]}" -v b="${P99[direct]}" 'BEGIN {printf "%.3f", a - b}') ms, nginx +$(awk -v a="${P99[nginx]}" -v b="${P99[direct]}" 'BEGIN {printf "%.3f", a - b}') ms"
echo "(cpu/req: task-clock of the serving process / requests; direct = the backend nginx)"
echo "serin per-revision requests (incl. warm-up): $split"
