#!/usr/bin/env bash
# Proxy overhead vs nginx: the same 90/10 split of two static backends in
# nginx (split_clients) and in `serin proxy`, plus the backend directly;
# same wrk settings for all three. Prints rps, p50, p99 and serin/nginx ratios.
#
#   bench/proxy.sh                 # WRK_ARGS="-t2 -c64 -d10s" by default
#   WRK_ARGS="-t2 -c128 -d20s" bench/proxy.sh
#   SERIN_BIN=/path/to/serin bench/proxy.sh   # use an already built binary
#   ROUNDS=3 bench/proxy.sh        # direct, nginx, serin in turn, 3 times;
#                                  # prints every round and the medians
set -euo pipefail
cd "$(dirname "$0")/.."
WRK_ARGS=${WRK_ARGS:-"-t2 -c64 -d10s"}
ROUNDS=${ROUNDS:-1}
HERE=bench/proxy

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
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
"$NGINX" -p "$TMP" -c "$TMP/backend.conf" -g 'daemon off;' 2>"$TMP/backend.err" &
PIDS+=($!)
"$NGINX" -p "$TMP" -c "$TMP/split.conf" -g 'daemon off;' 2>"$TMP/split.err" &
PIDS+=($!)
"$SERIN" proxy --admin 127.0.0.1:18184 --admin-token-file "$TMP/admin.token" --config $HERE/serin.json >"$TMP/serin.out" 2>"$TMP/serin.err" &
PIDS+=($!)

wait_up() { # url
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "not up: $1" >&2
    cat "$TMP"/*.err >&2 || true
    exit 1
}
for u in http://127.0.0.1:18181/ http://127.0.0.1:18182/ http://127.0.0.1:18180/ http://127.0.0.1:18183/; do
    wait_up "$u"
done

# to_ms VALUE: wrk prints 512.00us / 1.20ms / 1.01s
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

declare -A RPS P50 P99 ALL_RPS ALL_P50 ALL_P99
run() { # name url
    wrk -t1 -c16 -d2s "$2" >/dev/null # warm-up: pools, caches
    # shellcheck disable=SC2086
    out=$(wrk $WRK_ARGS --latency "$2")
    echo "$out" >"$TMP/$1.wrk"
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "== $1: errors during the run" >&2
        echo "$out" >&2
    fi
    RPS[$1]=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    P50[$1]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    P99[$1]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    ALL_RPS[$1]+="${RPS[$1]} "
    ALL_P50[$1]+="${P50[$1]} "
    ALL_P99[$1]+="${P99[$1]} "
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for round in $(seq 1 "$ROUNDS"); do
    run direct http://127.0.0.1:18181/
    run nginx http://127.0.0.1:18180/
    run serin http://127.0.0.1:18183/
    if [ "$ROUNDS" -gt 1 ]; then
        echo "round $round ($(uptime | sed 's/.*load/load/')): direct ${RPS[direct]} rps; nginx ${RPS[nginx]} rps p50 ${P50[nginx]} p99 ${P99[nginx]}; serin ${RPS[serin]} rps p50 ${P50[serin]} p99 ${P99[serin]}"
    fi
done
if [ "$ROUNDS" -gt 1 ]; then
    for s in direct nginx serin; do
        RPS[$s]=$(median <<<"${ALL_RPS[$s]}")
        P50[$s]=$(median <<<"${ALL_P50[$s]}")
        P99[$s]=$(median <<<"${ALL_P99[$s]}")
    done
    echo "medians of $ROUNDS rounds:"
fi

split=$(curl -fsS -H "Authorization: Bearer $(cat "$TMP/admin.token")" http://127.0.0.1:18184/v1/stats | awk -F: '/"revision"/ {gsub(/[", ]/, "", $2); r=$2} /"requests"/ {gsub(/[, ]/, "", $2); print r "=" $2}' | paste -sd' ')

echo
echo "wrk $WRK_ARGS --latency; $(nproc) cores; $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
printf '%-8s %12s %10s %10s\n' setup rps p50_ms p99_ms
for s in direct nginx serin; do
    printf '%-8s %12s %10s %10s\n' "$s" "${RPS[$s]}" "${P50[$s]}" "${P99[$s]}"
done
awk -v sr="${RPS[serin]}" -v nr="${RPS[nginx]}" -v s50="${P50[serin]}" -v n50="${P50[nginx]}" \
    -v s99="${P99[serin]}" -v n99="${P99[nginx]}" 'BEGIN {
    printf "serin/nginx: rps %.2fx, p50 %.2fx, p99 %.2fx (target: rps >= 1.00x, p99 <= 1.00x)\n", sr / nr, s50 / n50, s99 / n99 }'
echo "serin per-revision requests (incl. warm-up): $split"
