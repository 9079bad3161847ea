#!/usr/bin/env bash
# Page weight and first render of the web dashboard on loopback, in headless
# Chromium driven over WebDriver (chromedriver, plain curl).
#
#   bench/dashboard.sh        # ROLLOUTS="10 1000" LOADS=5 [SERIN_BIN=...]
#
# For each count in ROLLOUTS: starts `serin up` with that many Deployments of
# zero replicas (no processes: the page and the API are what is measured),
# waits until the API lists them all, makes a viewer token, signs the page in
# (the token in sessionStorage, as the sign-in form does), then loads the
# overview LOADS times in a fresh navigation each and reads, from the page:
#   first render = performance.now() when the overview table is filled
#                  (navigation start → rows in the DOM; includes
#                  GET /v1/rollouts?view=summary, the first page of 100)
#   bytes        = decoded size of the page, its script and its style sheet
# Prints each load and the median. Loopback only; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROLLOUTS=${ROLLOUTS:-"10 1000"}
LOADS=${LOADS:-5}
command -v chromedriver >/dev/null || { echo "chromedriver missing: apt-get install -y chromium chromium-driver (scripts/test does)" >&2; exit 1; }
command -v chromium >/dev/null || { echo "chromium missing: apt-get install -y chromium" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }

if [ -z "${SERIN_BIN:-}" ]; then cargo build --release -p serin --quiet; fi
SERIN=${SERIN_BIN:-target/release/serin}
SERIN=$(realpath "$SERIN")
TMP=$(mktemp -d)
DRIVER_PID=
cleanup() {
  [ -n "$DRIVER_PID" ] && kill "$DRIVER_PID" 2>/dev/null || true
  for d in "$TMP"/run-*; do [ -d "$d/state" ] && "$SERIN" down --state-dir "$d/state" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$PORT" >"$TMP/chromedriver.log" 2>&1 &
DRIVER_PID=$!
WD="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$WD/status" >/dev/null && break; sleep 0.1; done
CAPS=$(python3 - "$TMP/profile" <<'EOF'
import json, sys
print(json.dumps({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", "--window-size=1400,1000", "--user-data-dir=" + sys.argv[1]]}}}}))
EOF
)
SID=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$CAPS" "$WD/session" | json 'v["value"]["sessionId"]')
exec_js() { # exec_js SCRIPT → the script's JSON value
  python3 -c 'import json,sys; print(json.dumps({"script": sys.argv[1], "args": []}))' "$1" |
    curl -sf -X POST -H 'Content-Type: application/json' -d @- "$WD/session/$SID/execute/sync" | json 'json.dumps(v["value"])'
}
goto() { curl -sf -X POST -H 'Content-Type: application/json' -d "{\"url\": \"$1\"}" "$WD/session/$SID/url" >/dev/null; }

for n in $ROLLOUTS; do
  run="$TMP/run-$n"
  mkdir -p "$run/manifests"
  python3 - "$n" >"$run/manifests/many.yaml" <<'EOF'
import sys
n = int(sys.argv[1])
print("---\n".join(f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i:04d}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: app-{i:04d}}}
  template:
    metadata:
      labels: {{app: app-{i:04d}}}
    spec:
      containers:
        - name: app
          image: example/app:v1
""" for i in range(n)))
EOF
  printf 'stateDir: %s\n' "$run/state" >"$run/serin.yaml"
  "$SERIN" up -c "$run/serin.yaml" "$run/manifests" >"$run/up.log" 2>&1 &
  for _ in $(seq 1 300); do [ -s "$run/state/admin.token" ] && [ -s "$run/state/endpoints.json" ] && break; sleep 0.1; done
  API=$(json 'v["api"]' <"$run/state/endpoints.json")
  ADMIN=$(cat "$run/state/admin.token")
  for _ in $(seq 1 600); do
    got=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://$API/v1/rollouts?view=summary&limit=1" | json 'v["all"]' || echo 0)
    [ "$got" = "$n" ] && break
    sleep 0.2
  done
  VIEWER=$("$SERIN" token bench --role viewer --state-dir "$run/state")
  api_ms=$( { /usr/bin/time -f '%e' curl -sf -o /dev/null -H "Authorization: Bearer $VIEWER" "http://$API/v1/rollouts"; } 2>&1 | tail -1)
  page_ms=$( { /usr/bin/time -f '%e' curl -sf -o /dev/null -H "Authorization: Bearer $VIEWER" "http://$API/v1/rollouts?view=summary&limit=100"; } 2>&1 | tail -1)
  goto "http://$API/ui/"
  exec_js "sessionStorage.setItem('serin.token', '$VIEWER'); return true" >/dev/null
  renders=()
  for i in $(seq 1 "$LOADS"); do
    goto "http://$API/ui/?load=$i"
    fig=null
    for _ in $(seq 1 600); do
      fig=$(exec_js "const f = document.documentElement.dataset.firstRenderMs; if (!f) return null; const n = performance.getEntriesByType('navigation')[0]; const r = performance.getEntriesByType('resource').filter(e => /\\/ui\\//.test(e.name)); return {firstRenderMs: Number(f), bytes: n.decodedBodySize + r.reduce((s, e) => s + e.decodedBodySize, 0), rows: document.querySelectorAll('#rollouts tbody tr').length}")
      [ "$fig" != "null" ] && break
      sleep 0.05
    done
    echo "rollouts=$n load=$i $fig"
    renders+=("$(echo "$fig" | json 'v["firstRenderMs"]')")
    bytes=$(echo "$fig" | json 'v["bytes"]')
  done
  median=$(printf '%s\n' "${renders[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "== rollouts=$n: first render median ${median} ms of $LOADS loads; page weight $bytes bytes; GET /v1/rollouts?view=summary (the page's 100) ${page_ms} s; full GET /v1/rollouts ${api_ms} s"
  "$SERIN" down --state-dir "$run/state" >/dev/null 2>&1 || true
done
curl -sf -X DELETE "$WD/session/$SID" >/dev/null || true
