#!/usr/bin/env bash
# The seed's deploy-blue-green.sh, rewritten for Serin: the new version comes
# up behind the preview service and its pre-promotion analysis runs; this
# script smoke-tests the preview, then promotes; Serin switches the active
# service atomically and keeps the old version for scaleDownDelaySeconds.
# The rollout needs `autoPromotionEnabled: false` (a manual gate).
# Exit code: 0 promoted and Healthy (or nothing to promote), 1 smoke test
# failed (aborted) or rollout degraded, 2 timed out.
#   examples/deploy-blue-green.sh manifests/blue-green-rollout.yaml payment-service http://127.0.0.1:8081
set -euo pipefail
file=${1:?manifest file}; rollout=${2:?rollout name}; preview=${3:?preview URL}
serin apply -f "$file"
# Wait for the preview (and its pre-promotion analysis): exit 4 = waiting at the gate.
code=0
serin status "$rollout" --watch --until-gate --no-prompt --timeout 15m || code=$?
case $code in
  0) echo "$rollout: nothing to promote"; exit 0 ;;
  4) ;;
  *) exit "$code" ;;
esac
if ! curl -fsS "$preview/health" >/dev/null; then
  echo "preview smoke test failed; aborting" >&2
  serin abort "$rollout"
  exit 1
fi
serin promote "$rollout"
serin status "$rollout" --watch --no-prompt --timeout 15m
